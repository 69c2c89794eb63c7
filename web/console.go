package web

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"
)

// consoleBacklog is how much of the console file a page starts with.
const consoleBacklog = 32 << 10

// consoleTick is how often the console file is checked for more (tail -f).
const consoleTick = 200 * time.Millisecond

// console streams the node's serial console file to the page, one SSE
// message per line: its last consoleBacklog bytes, then what is
// appended, as tail -F (a file that shrinks was rotated or truncated: it
// is read again from its start).
func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	st, _, ok := s.node(r.PathValue("name"))
	if !ok || st.Machine.ConsoleLog == "" {
		http.Error(w, "no console", http.StatusNotFound)
		return
	}
	send, ok := sse(w)
	if !ok {
		return
	}
	path := st.Machine.ConsoleLog
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var off int64
	var partial []byte
	tick := time.NewTicker(consoleTick)
	defer tick.Stop()
	for {
		if f == nil {
			var err error
			f, err = os.Open(path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				send("", []byte("[console: "+err.Error()+"]"))
				return
			}
			if f != nil {
				if fi, err := f.Stat(); err == nil && fi.Size() > consoleBacklog {
					off = fi.Size() - consoleBacklog
				}
			}
		}
		if f != nil {
			if fi, err := f.Stat(); err == nil && fi.Size() < off {
				off, partial = 0, nil
			}
			buf := make([]byte, 64<<10)
			for {
				n, err := f.ReadAt(buf, off)
				off += int64(n)
				partial = append(partial, buf[:n]...)
				if err == io.EOF || n == 0 {
					break
				}
				if err != nil {
					return
				}
			}
			if i := bytes.LastIndexByte(partial, '\n'); i >= 0 {
				sc := bufio.NewScanner(bytes.NewReader(partial[:i+1]))
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					if err := send("", []byte(printable(sc.Text()))); err != nil {
						return
					}
				}
				partial = append([]byte(nil), partial[i+1:]...)
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// printable drops carriage returns and escape sequences' ESC bytes a
// serial console carries.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == 0x1b || (r < 0x20 && r != '\t') {
			return -1
		}
		return r
	}, s)
}
