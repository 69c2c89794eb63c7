package httpboot

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: requests by method and status, body bytes sent.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	image := []byte("an image")
	s, err := New(Config{Files: memFiles{"disk.img": image}, Registerer: reg})
	must(t, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	get := func(p string) {
		res, err := http.Get("http://" + ln.Addr().String() + p)
		must(t, err)
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	// The server counts once the handler returned, which may be after the
	// client has read the answer.
	wait := func(c prometheus.Collector, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for testutil.ToFloat64(c) < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	get("/disk.img")
	wait(s.requests.WithLabelValues("GET", "200"), 1)
	sent := testutil.ToFloat64(s.sent)
	get("/missing")
	wait(s.requests.WithLabelValues("GET", "404"), 1)
	for _, w := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{s.requests.WithLabelValues("GET", "200"), 1},
		{s.requests.WithLabelValues("GET", "404"), 1},
	} {
		if got := testutil.ToFloat64(w.c); got != w.want {
			t.Errorf("%v = %v, want %v", w.c, got, w.want)
		}
	}
	if sent != float64(len(image)) {
		t.Errorf("sent %v bytes for the image, want %d", sent, len(image))
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
