package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

//go:embed assets
var assets embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"lane": laneOf,
	"tone": func(s string) string { c, _ := tone(s); return c },
	"toneIcon": func(s string) string {
		_, i := tone(s)
		return i
	},
	"state": func(state, target string) template.HTML {
		c, i := tone(state)
		if state == "" {
			return `<span class="badge tone-none">· not enrolled</span>`
		}
		label := state
		if target != "" {
			label += " → " + target
		}
		return template.HTML(fmt.Sprintf(`<span class="badge tone-%s" data-state="%s">%s %s</span>`, c,
			template.HTMLEscapeString(state), i, template.HTMLEscapeString(label)))
	},
	"power": func(p string) template.HTML {
		switch p {
		case "power on":
			return `<span class="badge pw-on" data-power="on">● on</span>`
		case "power off":
			return `<span class="badge pw-off" data-power="off">○ off</span>`
		}
		return `<span class="badge tone-none" data-power="">? unknown</span>`
	},
	"dur":   func(d time.Duration) string { return fmtDur(d) },
	"clock": func(t time.Time) string { return t.Format("15:04:05.000") },
}).ParseFS(assets, "assets/pages.html"))

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// page is what every page template reads.
type page struct {
	Title      string
	Gen        int
	Flash      string
	FlashClass string
	Replay     *replayView

	Nodes []*nodeState

	Node      *nodeState
	Entries   []events.Entry
	Recent    []events.Entry
	Phases    []phase
	SVG       template.HTML
	Actions   bool
	FaultsOn  bool
	Faults    []fault.Rule
	FaultsErr string
}

type replayView struct {
	Speed  float64
	Speeds []float64
	Status string
}

func render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// nodePage fills the node view's live part: phases, swimlane, events.
func (s *Server) nodePage(p *page, st *nodeState, es []events.Entry) {
	p.Node, p.Entries = st, es
	end := time.Now()
	if s.replay != nil && len(es) > 0 {
		end = es[len(es)-1].Time // a replay's now is its last entry
	}
	p.Phases = phases(es, end)
	p.SVG = swimlanes(es, p.Phases, end)
	n := len(es)
	for i := n - 1; i >= 0 && i >= n-200; i-- {
		p.Recent = append(p.Recent, es[i])
	}
}

// phaseFill colours the phase band by tone, with the state's name written
// in the bar whenever it fits (colour never alone).
var phaseFill = map[string]string{"good": "#009E73", "bad": "#D55E00", "busy": "#0072B2", "idle": "#56B4E9", "none": "#999"}

// laneFill is each lane's marker colour and shape.
var laneMark = map[string]struct{ fill, shape string }{
	"conductor": {"#0072B2", "circle"}, "bmc": {"#E69F00", "diamond"}, "machine": {"#111", "square"},
	"dhcp": {"#56B4E9", "circle"}, "boot": {"#CC79A7", "diamond"}, "ramdisk": {"#009E73", "square"},
	"iscsi": {"#F0E442", "circle"}, "fault": {"#D55E00", "cross"},
}

// swimlanes renders es as one row per layer on a time axis, under a band
// of the provision-state phases: an SVG, server-side.
func swimlanes(es []events.Entry, ps []phase, end time.Time) template.HTML {
	const (
		w, left, right = 1200.0, 170.0, 20.0
		laneH, bandH   = 34.0, 40.0
		top            = 24.0
	)
	var b strings.Builder
	h := top + bandH + laneH*float64(len(lanes)) + 10
	fmt.Fprintf(&b, `<svg class="lanes" id="lanes" viewBox="0 0 %.0f %.0f" role="img" aria-label="timeline by layer">`, w, h)
	if len(es) == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">no events yet</text></svg>`, left, top+20)
		return template.HTML(b.String())
	}
	t0 := es[0].Time
	span := end.Sub(t0)
	if span <= 0 {
		span = time.Second
	}
	x := func(t time.Time) float64 { return left + (w-left-right)*float64(t.Sub(t0))/float64(span) }
	// Time axis: about 8 ticks at a round step.
	step := niceStep(span / 8)
	for d := time.Duration(0); d <= span; d += step {
		xx := x(t0.Add(d))
		fmt.Fprintf(&b, `<line class="axis" x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke-dasharray="2 4"/><text x="%.1f" y="16" text-anchor="middle">+%s</text>`,
			xx, xx, top, h-10, xx, fmtDur(d))
	}
	// The phase band.
	fmt.Fprintf(&b, `<text x="8" y="%.0f" font-weight="700">Provision state</text>`, top+bandH/2+5)
	for _, p := range ps {
		x1, x2 := x(p.Start), x(p.End)
		if x2-x1 < 1 {
			x2 = x1 + 1
		}
		c, _ := tone(p.State)
		fmt.Fprintf(&b, `<g class="phase" data-state="%s"><rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="%s" stroke="#fff"/><title>%s: %s</title>`,
			esc(p.State), x1, top+2, x2-x1, bandH-4, phaseFill[c], esc(p.Label()), fmtDur(p.Duration()))
		label := p.State + " " + fmtDur(p.Duration())
		if float64(len([]rune(label)))*8.5+8 < x2-x1 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" fill="#fff" style="fill:%s">%s</text>`, x1+4, top+bandH/2+5, textOn(c), esc(label))
		}
		b.WriteString(`</g>`)
	}
	for i, l := range lanes {
		y := top + bandH + laneH*float64(i)
		if i%2 == 0 {
			fmt.Fprintf(&b, `<rect class="lane-bg" x="0" y="%.0f" width="%.0f" height="%.0f"/>`, y, w, laneH)
		}
		fmt.Fprintf(&b, `<text x="8" y="%.0f">%s</text>`, y+laneH/2+5, esc(l.Label))
	}
	row := map[string]int{}
	for i, l := range lanes {
		row[l.ID] = i
	}
	for _, e := range es {
		id := laneOf(e.Kind)
		m := laneMark[id]
		cx, cy := x(e.Time), top+bandH+laneH*float64(row[id])+laneH/2
		fmt.Fprintf(&b, `<g class="ev" data-kind="%s"><title>%s %s %s</title>`, esc(string(e.Kind)), e.Time.Format("15:04:05.000"), esc(string(e.Kind)), esc(e.Detail))
		switch m.shape {
		case "circle":
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="6" fill="%s" stroke="#111"/>`, cx, cy, m.fill)
		case "diamond":
			fmt.Fprintf(&b, `<path d="M%.1f %.1fl7 7-7 7-7-7z" fill="%s" stroke="#111"/>`, cx, cy-7, m.fill)
		case "square":
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="11" height="11" fill="%s" stroke="#111"/>`, cx-5.5, cy-5.5, m.fill)
		default:
			fmt.Fprintf(&b, `<path d="M%.1f %.1fl12 12m0-12l-12 12" stroke="%s" stroke-width="3"/>`, cx-6, cy-6, m.fill)
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func textOn(tone string) string {
	if tone == "idle" {
		return "#111"
	}
	return "#fff"
}

func esc(s string) string { return template.HTMLEscapeString(s) }

// niceStep rounds d up to 1, 2 or 5 times a power of ten of a second's
// fractions and multiples.
func niceStep(d time.Duration) time.Duration {
	for _, s := range []time.Duration{
		10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
		200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
		10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
		10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	} {
		if d <= s {
			return s
		}
	}
	return d.Round(time.Hour) + time.Hour
}
