package cli

import (
	"context"
	"fmt"
	"net"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/web"
)

// runWeb serves the dashboard over a recorded timeline (timeline.jsonl of
// a state directory, a CI artifact or a `scenario run` failure): the
// fleet and each node's swimlanes, played back at --speed, with no
// testbed running.
func runWeb(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("web", s)
	replay := fs.String("replay", "", "timeline.jsonl to play back (required; its rotated files .1, .2 … are read first)")
	addr := fs.String("web-addr", web.DefaultAddr, "HOST:PORT to serve on (port 0: a free one)")
	speed := fs.Float64("speed", 1, "playback speed at start: 1 = as recorded (gaps over 5 s shortened), 10, 100 …, 0 = at once; the page changes it")
	logLevel := fs.String("log-level", "warn", "log level on stderr: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *replay == "" {
		return usageError("web: --replay FILE is required (a timeline.jsonl)")
	}
	if *speed < 0 {
		return usageError("--speed %v: want 0 (at once) or more", *speed)
	}
	if *speed == 0 {
		*speed = -1 // web.Config: negative plays at once
	}
	log, err := newLogger(s, *logLevel)
	if err != nil {
		return err
	}
	entries, err := events.ReadLog(*replay)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("web: %s: no timeline entries", *replay)
	}
	srv, err := web.New(web.Config{Replay: entries, Speed: *speed, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	defer ln.Close()
	fmt.Fprintf(s.Out, "metalbed web: replaying %d events of %s at http://%s (until interrupted)\n", len(entries), *replay, ln.Addr())
	return srv.Serve(ctx, ln)
}
