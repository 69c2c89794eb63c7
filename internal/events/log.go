package events

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
)

// LogName is the timeline log's file name in a provisioner's state
// directory.
const LogName = "timeline.jsonl"

// DefaultLogMax is the size at which OpenLog rotates: timeline.jsonl
// becomes timeline.jsonl.1 (the older ones shift up, the oldest of Keep
// dropped) and a new file starts.
const DefaultLogMax = 32 << 20

// Log is an append-only file rotated by size: the Timeline's durable sink
// (JSON lines) and a simulated machine's console.log.
type Log struct {
	path string
	max  int64
	keep int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenLog opens (appending) the log at path, rotated once it passes max
// bytes (0: DefaultLogMax), keeping keep older files (0: 2).
func OpenLog(path string, max int64, keep int) (*Log, error) {
	if max <= 0 {
		max = DefaultLogMax
	}
	if keep <= 0 {
		keep = 2
	}
	l := &Log{path: path, max: max, keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends p (one or more whole lines for the timeline), rotating
// first when p would take the file past its limit.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, fmt.Errorf("log %s is closed", l.path)
	}
	if l.size > 0 && l.size+int64(len(p)) > l.max {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

func (l *Log) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	l.f = nil
	for i := l.keep; i >= 1; i-- {
		from := l.path
		if i > 1 {
			from = l.path + "." + strconv.Itoa(i-1)
		}
		if err := os.Rename(from, l.path+"."+strconv.Itoa(i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("log: rotate: %w", err)
		}
	}
	return l.open()
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// ReadLog reads a timeline log written through OpenLog, its rotated files
// first (oldest first). A missing log is empty; a torn last line (a crash
// mid-write) is skipped.
func ReadLog(path string) ([]Entry, error) {
	var files []string
	for i := 1; ; i++ {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		files = append([]string{p}, files...)
	}
	files = append(files, path)
	var out []Entry
	for _, p := range files {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("timeline log: %w", err)
		}
		es, err := readLines(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("timeline log %s: %w", p, err)
		}
		out = append(out, es...)
	}
	return out, nil
}

func readLines(r io.Reader) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue // a torn line
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func writeLine(w io.Writer, e Entry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(line, '\n'))
	return err
}
