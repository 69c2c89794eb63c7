//go:build libvirt_dlopen

package libvirt

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"time"

	"github.com/metalbed/metalbed/vms"
)

// consolePoll is how often watchConsole reads new serial log output.
const consolePoll = 250 * time.Millisecond

// watchConsole follows the serial log and emits the lines worth a timeline
// entry as vms.EventConsole, worded as the simulated machines word them:
//
//	metalbed-instance: booted H root=R  ->  "instance booted H root=R"
//	metalbed-ramdisk: TEXT               ->  "ramdisk TEXT"
//	metalbed-milestone: KIND DETAIL      ->  "milestone KIND DETAIL"
//
// QEMU recreates the log on every start, so a file that shrank is read
// again from its beginning.
func (m *Machine) watchConsole(ctx context.Context) {
	var off int64
	var partial []byte
	t := time.NewTicker(consolePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f, err := os.Open(m.cfg.SerialLog)
		if err != nil {
			continue // not created yet
		}
		if st, err := f.Stat(); err == nil && st.Size() < off {
			off, partial = 0, nil // a new start's log
		}
		b, _ := io.ReadAll(io.NewSectionReader(f, off, 1<<24))
		f.Close()
		off += int64(len(b))
		partial = append(partial, b...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			line := strings.TrimRight(string(partial[:i]), "\r")
			partial = partial[i+1:]
			if detail, ok := consoleMilestone(line); ok {
				m.emit(vms.EventConsole, detail)
			}
		}
		if len(partial) > 1<<16 {
			partial = nil // no newline in 64 KiB: not a line anyone prints
		}
	}
}

// consoleMilestone maps a serial console line to an event detail.
func consoleMilestone(line string) (string, bool) {
	// The kernel may interleave its own output: look for the tag anywhere.
	for _, p := range []struct{ tag, word string }{
		{"metalbed-instance: booted ", "instance booted "},
		{"metalbed-ramdisk: ", "ramdisk "},
		{"metalbed-milestone: ", "milestone "},
	} {
		if i := strings.Index(line, p.tag); i >= 0 {
			return p.word + strings.TrimSpace(line[i+len(p.tag):]), true
		}
	}
	return "", false
}
