package ramdisk

import (
	"fmt"
	"io"
	"strings"

	"github.com/metalbed/metalbed/internal/events"
)

// ConsoleRecorder writes each ramdisk or agent step on the serial console
// as "metalbed-milestone: KIND DETAIL" and passes it on to next (nil:
// nowhere). A real VM's console is the only way its steps reach the host,
// which reads them back into the node's timeline (vms/libvirt); a
// simulated machine records them directly through next and prints the same
// line for a person reading its console.
func ConsoleRecorder(console io.Writer, next events.Recorder) events.Recorder {
	return consoleRecorder{console: console, next: events.OrDiscard(next)}
}

type consoleRecorder struct {
	console io.Writer
	next    events.Recorder
}

func (c consoleRecorder) Record(e events.Event) {
	fmt.Fprintf(c.console, "metalbed-milestone: %s %s\n", e.Kind, strings.Join(strings.Fields(e.Detail), " "))
	c.next.Record(e)
}
