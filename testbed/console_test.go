package testbed

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestConsoleOverSOL enables the serial console of an enrolled node
// (console interface ipmitool-socat) through the API, connects to the
// tcp:// URL it gets, powers the machine on through the API and reads the
// firmware's boot lines that came over the BMC's Serial-over-LAN; then
// disables it and the port is closed. Both IPMI clients: native go-ipmi,
// and the real ipmitool on a pseudo-terminal.
func TestConsoleOverSOL(t *testing.T) {
	for _, client := range []string{"native", "ipmitool"} {
		t.Run(client, func(t *testing.T) {
			if client == "ipmitool" {
				testenv.RequireTool(t, "ipmitool", "ipmitool")
			}
			p := free()
			p.IPMIClient = client
			tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: p, Enroll: true})
			if err != nil {
				t.Fatal(err)
			}
			serve(t, tb)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			c := NewClient(tb.APIURL())
			id := tb.NodeUUIDs()["node-0"]
			var n struct {
				ConsoleInterface string `json:"console_interface"`
			}
			if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id, nil, &n); err != nil {
				t.Fatal(err)
			}
			if n.ConsoleInterface != "ipmitool-socat" {
				t.Fatalf("enrolled with console_interface %q", n.ConsoleInterface)
			}
			type consoleDoc struct {
				Enabled bool           `json:"console_enabled"`
				Info    map[string]any `json:"console_info"`
			}
			var st consoleDoc
			if err := c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/states/console", map[string]any{"enabled": true}, nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id+"/states/console", nil, &st); err != nil {
				t.Fatal(err)
			}
			url, _ := st.Info["url"].(string)
			if !st.Enabled || st.Info["type"] != "socat" || !strings.HasPrefix(url, "tcp://127.0.0.1:") {
				t.Fatalf("console state %+v", st)
			}
			conn, err := net.Dial("tcp", strings.TrimPrefix(url, "tcp://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			lines := make(chan string, 256)
			go func() {
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			// Keystrokes go to the machine, which echoes them: once the
			// echo comes back the session is up both ways.
			var seen []string
			echoed := false
			for try := 0; try < 60 && !echoed; try++ {
				if _, err := conn.Write([]byte("metalbed-ping\r")); err != nil {
					t.Fatal(err)
				}
				wait := time.After(500 * time.Millisecond)
			echo:
				for {
					select {
					case l := <-lines:
						seen = append(seen, l)
						if strings.Contains(l, "metalbed-ping") {
							echoed = true
							break echo
						}
					case <-wait:
						break echo
					}
				}
			}
			if !echoed {
				t.Fatalf("keystrokes never echoed back over SOL; got:\n%s", strings.Join(seen, "\n"))
			}
			// One client at a time, as socat's max-children=1.
			second, err := net.Dial("tcp", strings.TrimPrefix(url, "tcp://"))
			if err != nil {
				t.Fatal(err)
			}
			second.SetReadDeadline(time.Now().Add(10 * time.Second))
			msg, _ := io.ReadAll(second)
			second.Close()
			if !strings.Contains(string(msg), "the console is in use by another client") {
				t.Errorf("second client got %q", msg)
			}
			if err := c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/states/power", map[string]any{"target": "power on"}, nil); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(60 * time.Second)
		read:
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("console closed; got:\n%s", strings.Join(seen, "\n"))
					}
					seen = append(seen, l)
					if strings.Contains(l, "PXE") || strings.Contains(l, "iPXE") || strings.Contains(l, "Booting") {
						t.Logf("boot line over SOL: %q", l)
						break read
					}
				case <-deadline:
					t.Fatalf("no boot line on the console within 60 s; got:\n%s", strings.Join(seen, "\n"))
				}
			}
			if err := c.Do(ctx, http.MethodPut, "/v1/nodes/"+id+"/states/console", map[string]any{"enabled": false}, nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+id+"/states/console", nil, &st); err != nil {
				t.Fatal(err)
			}
			if st.Enabled || st.Info != nil {
				t.Errorf("after disable: %+v", st)
			}
			if _, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "tcp://"), 2*time.Second); err == nil {
				t.Errorf("console port %s still open after disable", url)
			}
		})
	}
}
