package httpserve

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// serve runs h behind Server with stall timeout d on a free loopback
// port; closed is told of every connection the server closes.
func serve(t *testing.T, h http.Handler, d time.Duration, closed chan<- struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Server(h, Options{StallTimeout: d, BaseContext: t.Context()})
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed && closed != nil {
			closed <- struct{}{}
		}
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// bigFile is a file of n random bytes.
func bigFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	path := filepath.Join(t.TempDir(), "big.img")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

// TestStalledReaderIsCutOff: a client that asks for a large file (through
// http.ServeFile's sendfile path, and through plain writes) and then reads
// nothing ties the handler up only until a write has waited the stall
// timeout; the handler then returns and the connection is closed.
func TestStalledReaderIsCutOff(t *testing.T) {
	path, _ := bigFile(t, 64<<20)
	for _, c := range []struct {
		name  string
		write func(w http.ResponseWriter, r *http.Request) error
	}{
		{"sendfile", func(w http.ResponseWriter, r *http.Request) error {
			http.ServeFile(w, r, path)
			return nil
		}},
		{"writes", func(w http.ResponseWriter, r *http.Request) error {
			chunk := make([]byte, 64<<10)
			for range 1024 {
				if _, err := w.Write(chunk); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			done, closed := make(chan error, 1), make(chan struct{}, 1)
			addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				done <- c.write(w, r)
			}), 300*time.Millisecond, closed)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A tiny receive window: the server's writes block at once.
			conn.(*net.TCPConn).SetReadBuffer(4096)
			fmt.Fprintf(conn, "GET /big.img HTTP/1.1\r\nHost: x\r\n\r\n")
			start := time.Now()
			select {
			case err := <-done:
				if c.name == "writes" && err == nil {
					t.Error("the handler's writes to a client that reads nothing all succeeded")
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the handler still writes to a client that stopped reading 30 s ago")
			}
			t.Logf("handler returned %v after the client stopped reading", time.Since(start).Round(10*time.Millisecond))
			// The server let go of the connection (the kernel may still
			// be delivering what it had queued).
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Error("the server kept the connection open after the stall")
			}
		})
	}
}

// TestSlowDownloadThatMovesCompletes: a client reading slower than the
// whole response could be sent within the stall timeout still gets every
// byte, as each write has the timeout of its own (http.Server's
// WriteTimeout would have cut it).
func TestSlowDownloadThatMovesCompletes(t *testing.T) {
	path, want := bigFile(t, 8<<20)
	const stall = time.Second
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) }), stall, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(conn, "GET /big.img HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // at most 6 MiB/s: 1.3 s or more in all
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("got %d bytes, want the file's %d", got.Len(), len(want))
	}
	if took := time.Since(start); took < stall {
		t.Logf("the download took %v, within one stall timeout: the test proved nothing", took)
	}
}

// TestEventStreamKeepsFlushing: a server-sent event stream quieter than
// the stall timeout between events stays open (the deadline is armed by
// each write, not left running between them), and flushing works through
// the guard.
func TestEventStreamKeepsFlushing(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 4 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(250 * time.Millisecond) // longer than the stall timeout in all
		}
	}), 200*time.Millisecond, nil)
	resp, err := http.Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines testenv.SyncBuffer
	if _, err := io.Copy(&lines, resp.Body); err != nil {
		t.Fatalf("event stream: %v after %q", err, lines.String())
	}
	if got := strings.Count(lines.String(), "data: "); got != 4 {
		t.Errorf("%d events, want 4: %q", got, lines.String())
	}
}
