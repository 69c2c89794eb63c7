package bmcemu

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSOLActivate drives `ipmitool sol activate` over a stdin pipe: console
// output reaches ipmitool, keystrokes reach the machine, and `~.` ends the
// session cleanly and detaches the console.
func TestSOLActivate(t *testing.T) {
	for _, suite := range []string{"3", "17"} {
		t.Run("C"+suite, func(t *testing.T) {
			bin := requireTool(t, "ipmitool", "ipmitool")
			m := newTestMachine()
			_, port := startBMC(t, m, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-I", "lanplus", "-C", suite, "-H", "127.0.0.1",
				"-p", strconv.Itoa(port), "-U", "admin", "-P", "password", "-L", "ADMINISTRATOR", "sol", "activate")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				t.Logf("ipmitool sol output:\n%s", out.String())
			}()

			eventually(t, 20*time.Second, func() bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return m.console != nil
			}, "SOL to attach the machine console")

			const banner = "metalbed login: "
			if err := m.writeConsole([]byte("\r\nDebian GNU/Linux 12 node-0 ttyS0\r\n\r\n" + banner)); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), banner) },
				"console output to reach ipmitool")

			if _, err := io.WriteString(stdin, "root\n"); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, func() bool { return strings.Contains(m.keystrokes(), "root") },
				"keystrokes to reach the machine")

			// ipmitool's escape: "~." at the start of a line.
			if _, err := io.WriteString(stdin, "\n~.\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("ipmitool sol activate exited with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("ipmitool did not exit after ~.")
			}
			eventually(t, 20*time.Second, func() bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return m.console == nil
			}, "the console to be detached after deactivation")
		})
	}
}
