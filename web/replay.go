package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
)

// maxGap caps the wait between two replayed entries at 1×: an idle
// testbed's hours pass in seconds.
const maxGap = 5 * time.Second

// speeds are the speeds the page offers; -1 plays at once.
var speeds = []float64{1, 10, 100, -1}

// replayer plays a recorded timeline into a fresh events.Timeline, with
// the time between entries divided by the speed.
type replayer struct {
	s       *Server
	entries []events.Entry

	mu      sync.Mutex
	speed   float64
	played  int
	restart chan struct{}
	changed chan struct{} // the speed changed: recompute the wait
}

func newReplayer(s *Server, es []events.Entry, speed float64) *replayer {
	return &replayer{s: s, entries: es, speed: speed, restart: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
}

func (rp *replayer) run(ctx context.Context) {
	for {
		tl := events.New(events.Config{PerNode: len(rp.entries) + 1})
		unsub := tl.Subscribe(rp.s.publish)
		rp.s.restart(tl)
		rp.mu.Lock()
		rp.played = 0
		rp.mu.Unlock()
		again := rp.play(ctx, tl)
		unsub()
		if !again {
			return
		}
	}
}

// play feeds the entries; it returns true to start over, false when ctx ends.
func (rp *replayer) play(ctx context.Context, tl *events.Timeline) bool {
	for i, e := range rp.entries {
		if i > 0 {
			gap := min(e.Time.Sub(rp.entries[i-1].Time), maxGap)
			for waited := false; !waited; {
				rp.mu.Lock()
				speed := rp.speed
				rp.mu.Unlock()
				if speed <= 0 || gap <= 0 {
					break
				}
				t := time.NewTimer(time.Duration(float64(gap) / speed))
				select {
				case <-ctx.Done():
					t.Stop()
					return false
				case <-rp.restart:
					t.Stop()
					return true
				case <-rp.changed:
					t.Stop()
				case <-t.C:
					waited = true
				}
			}
		}
		tl.Record(events.Event{Time: e.Time, Kind: e.Kind, Detail: e.Detail, Who: e.Who})
		rp.mu.Lock()
		rp.played = i + 1
		rp.mu.Unlock()
	}
	select {
	case <-ctx.Done():
		return false
	case <-rp.restart:
		return true
	}
}

func (rp *replayer) view() *replayView {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	st := fmt.Sprintf("%d of %d events", rp.played, len(rp.entries))
	return &replayView{Speed: rp.speed, Speeds: speeds, Status: st}
}

// replayControl sets the speed (speed=N, negative: at once) or starts over
// (restart=1), then sends the browser back.
func (s *Server) replayControl(w http.ResponseWriter, r *http.Request) {
	rp := s.replay
	if rp == nil {
		http.Error(w, "not a replay", http.StatusNotFound)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if v := r.PostForm.Get("speed"); v != "" {
		sp, err := strconv.ParseFloat(v, 64)
		if err != nil || sp == 0 {
			http.Error(w, "speed: want a number, negative for at once", http.StatusBadRequest)
			return
		}
		rp.mu.Lock()
		rp.speed = sp
		rp.mu.Unlock()
		select {
		case rp.changed <- struct{}{}:
		default:
		}
	}
	if r.PostForm.Get("restart") != "" {
		select {
		case rp.restart <- struct{}{}:
		default:
		}
	}
	back := r.Referer()
	if back == "" {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
