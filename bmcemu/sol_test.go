package bmcemu

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestSOLActivate drives `ipmitool sol activate` (console output reaches
// ipmitool, keystrokes reach the machine, `~.` ends the session cleanly and
// detaches the console) with a pipe for stdin and, as a person does, on a
// terminal (script(1) gives it a pty): on a terminal
// ipmitool takes longer to enter its SOL loop, where a re-sent Activate
// Payload reply once made it report "SOL session closed by BMC".
func TestSOLActivate(t *testing.T) {
	for _, c := range []struct {
		suite string
		tty   bool
	}{{"3", false}, {"17", false}, {"3", true}, {"17", true}} {
		name := "C" + c.suite
		if c.tty {
			name += "-tty"
		}
		suite := c.suite
		t.Run(name, func(t *testing.T) {
			bin := testenv.RequireTool(t, "ipmitool", "ipmitool")
			m := newTestMachine()
			_, port := startBMC(t, m, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			args := []string{bin, "-I", "lanplus", "-C", suite, "-H", "127.0.0.1",
				"-p", strconv.Itoa(port), "-U", "admin", "-P", "password", "-L", "ADMINISTRATOR", "sol", "activate"}
			if c.tty {
				script := testenv.RequireTool(t, "script", "bsdutils")
				args = []string{script, "-qfec", strings.Join(args, " "), "/dev/null"}
			}
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var out testenv.SyncBuffer
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

			if _, err := io.WriteString(stdin, "root\r"); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, func() bool { return strings.Contains(m.keystrokes(), "root") },
				"keystrokes to reach the machine")

			// ipmitool's escape: "~." at the start of a line.
			if _, err := io.WriteString(stdin, "\r~."); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil || strings.Contains(out.String(), "closed by BMC") {
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
