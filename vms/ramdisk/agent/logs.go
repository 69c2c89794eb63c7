package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// maxLogBytes bounds the agent's own log kept for collect_system_logs.
const maxLogBytes = 1 << 20

// consoleLog writes the agent's lines to the console and keeps the most
// recent ones, as journald does for IPA.
type consoleLog struct {
	out io.Writer
	mu  sync.Mutex
	buf []byte
}

func newConsoleLog(out io.Writer) *consoleLog { return &consoleLog{out: out} }

func (l *consoleLog) printf(format string, args ...any) {
	line := fmt.Sprintf("ironic-python-agent: "+format+"\n", args...)
	stamped := time.Now().UTC().Format("2006-01-02 15:04:05.000 ") + line
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, stamped...)
	if over := len(l.buf) - maxLogBytes; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	l.out.Write([]byte(line))
}

func (l *consoleLog) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf)
}

// systemLogs is log.collect_system_logs: a gzipped tar, base64 encoded, of
// the agent's journal and what it knows of the machine (IPA tars the
// journal, dmesg and the outputs of lsblk, ip addr and friends).
func (a *Agent) systemLogs() (map[string]any, error) {
	files := []struct {
		name string
		data []byte
	}{{"journal", a.log.bytes()}}
	if inv, err := a.inventory(a.runContext()); err == nil {
		b, _ := json.MarshalIndent(inv, "", "  ")
		files = append(files, struct {
			name string
			data []byte
		}{"inventory.json", b})
	}
	a.mu.Lock()
	var cmds bytes.Buffer
	for _, c := range a.commands {
		fmt.Fprintf(&cmds, "%s %s %s\n", c.id, c.name, c.statusNow())
	}
	a.mu.Unlock()
	files = append(files, struct {
		name string
		data []byte
	}{"commands.txt", cmds.Bytes()})

	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	now := time.Now()
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return map[string]any{"system_logs": base64.StdEncoding.EncodeToString(out.Bytes())}, nil
}
