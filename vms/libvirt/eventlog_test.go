package libvirt_test

import (
	"fmt"
	"strings"
	"sync"
)

// eventLog collects lines from server observers, safe for concurrent use.
type eventLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *eventLog) add(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", a...)
}

// Write collects a child's output.
func (l *eventLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
