package pxe

import (
	"bufio"
	"bytes"
	"errors"
	"hash"
	"hash/crc32"
	"io"
	"sync"

	"github.com/metalbed/metalbed/vms/ramdisk"
)

// HeadSize is how much of a loaded file a machine keeps: the Linux boot
// protocol header, a whole iPXE script.
const HeadSize = 64 << 10

// File is a file firmware loaded. A simulated machine keeps what its
// kernel looks at — the first bytes, the size, a checksum, and for an
// initrd what unpacking it as an initramfs found — not the bytes: a deploy
// kernel and ramdisk are tens of MB, and a fleet boots them by the
// hundred.
type File struct {
	Name string
	Size int64
	Sum  uint32 // Checksum of the bytes: which file this is
	Head []byte // the first HeadSize bytes, all of a shorter file
	// Initramfs is the file unpacked as an initramfs when it is a
	// metalbed ramdisk; else NotInitramfs says why it is not one.
	Initramfs    *ramdisk.Initramfs
	NotInitramfs error
}

// Whole reports whether Head holds all of the file.
func (f File) Whole() bool { return f.Size == int64(len(f.Head)) }

// castagnoli is CRC-32C's table: computed by the CPU (SSE 4.2), so a fleet
// booting tens of MB per machine pays next to nothing for knowing what it
// booted.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is File.Sum of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Load reads a file to its end, as firmware loads it into memory.
func Load(name string, r io.Reader) (File, error) {
	l := newLoading(name, nil)
	_, err := io.Copy(l, r)
	return l.finish(err)
}

// LoadBytes is Load of a file in memory.
func LoadBytes(name string, b []byte) File {
	f, _ := Load(name, bytes.NewReader(b)) // a bytes.Reader does not fail
	return f
}

// An Unpacker is where a testbed's machines unpack the files they load.
// Simulated machines share the host's few CPUs: a thousand booting at
// once, each inflating tens of MB, would leave the rest of the process
// (the API their agents look up in, the BMCs) a thousandth of the CPU
// each, and lookups time out. So:
//   - unpacking takes turns, as many at once as NewUnpacker says (the
//     CPUs): as fast in sum. A turn is the unpacking of bytes already
//     received: a slow transfer (TFTP) holds no turn while it waits;
//   - a file whose bytes another machine has unpacked, or is unpacking,
//     is not unpacked again: its loading compares what it receives with
//     those bytes (held once, not per machine) and takes that unpacking's
//     result when its file ends where the other's did. Bytes that differ
//     give the loading an unpacking of its own. Identical bytes unpack
//     identically, so a machine finds what it would have found alone.
//
// A nil Unpacker bounds nothing and shares nothing.
type Unpacker struct {
	turns chan struct{}
	mu    sync.Mutex
	files []*shared // newest first
}

// NewUnpacker lets n unpackings run at once.
func NewUnpacker(n int) *Unpacker { return &Unpacker{turns: make(chan struct{}, max(n, 1))} }

// Files already unpacked are kept for the next boots (a fleet's cleaning
// boots the same ramdisk again) up to these bounds.
const (
	keepFiles = 4
	keepBytes = 256 << 20
)

func (u *Unpacker) take() {
	if u != nil {
		u.turns <- struct{}{}
	}
}

func (u *Unpacker) give() {
	if u != nil {
		<-u.turns
	}
}

// join finds the file named name whose bytes start as p does, newest
// first, or starts one with p: the loading follows it from len(p) on.
func (u *Unpacker) join(name string, p []byte) *shared {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.files {
		if s.name == name && s.admit(p) {
			return s
		}
	}
	s := &shared{u: u, name: name, users: 1, parsed: make(chan struct{})}
	s.buf.append(p)
	s.more.L = &s.mu
	go s.unpack()
	u.files = append([]*shared{s}, u.files...)
	u.trim()
	return s
}

// trim drops abandoned files and the oldest finished ones beyond the
// bounds; u.mu is held.
func (u *Unpacker) trim() {
	kept, n, bytes := u.files[:0], 0, int64(0)
	for _, s := range u.files {
		s.mu.Lock()
		size, busy, gone := s.buf.n, !s.ended && !s.early, s.gone
		s.mu.Unlock()
		switch {
		case gone:
		case busy || n < keepFiles && bytes+size <= keepBytes:
			kept = append(kept, s)
			n++
			bytes += size
		}
	}
	clear(u.files[len(kept):])
	u.files = kept
}

// shared is a file's bytes as machines receive them, unpacked once.
type shared struct {
	u    *Unpacker
	name string

	mu    sync.Mutex
	more  sync.Cond // bytes came, the file ended, or it was abandoned
	buf   chunks
	ended bool // the file ends at buf.n
	gone  bool // every loading left before the end: nothing to unpack for
	users int  // loadings following it, before its end
	// early: the unpacking returned before the end of the file (a kernel
	// is no initramfs), having read buf, now only those bytes: any file
	// starting with them and going on past them unpacks the same.
	early bool

	parsed chan struct{} // closed once the unpacking returned
	init   *ramdisk.Initramfs
	err    error
}

// admit adds a loading whose first bytes are p, if they are this file's;
// s.u.mu is held.
func (s *shared) admit(p []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone || s.ended && int64(len(p)) > s.buf.n || !s.buf.equal(0, p) {
		return false
	}
	if int64(len(p)) > s.buf.n && !s.early {
		s.buf.append(p[s.buf.n:])
		s.more.Broadcast()
	}
	if !s.ended {
		s.users++
	}
	return true
}

// follow checks p, received at offset pos, against the file's bytes and
// adds what it has not seen. When p is not this file's it returns
// other, and first: the bytes before pos, which the two files share.
func (s *shared) follow(pos int64, p []byte) (other bool, first [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone || pos > s.buf.n && !s.early || !s.buf.equal(pos, p) {
		return true, s.buf.prefix(pos)
	}
	n := min(int64(len(p)), max(s.buf.n-pos, 0))
	if rest := p[n:]; len(rest) > 0 && !s.early {
		if s.ended {
			return true, s.buf.prefix(pos) // a longer file
		}
		s.buf.append(rest)
		s.more.Broadcast()
	}
	return false, nil
}

// leave drops a loading that stopped following before the end; the last
// to leave abandons the file.
func (s *shared) leave() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.users--
	abandon := s.users == 0
	if abandon {
		s.gone = true
		s.more.Broadcast()
	}
	s.mu.Unlock()
	if abandon {
		s.u.mu.Lock()
		s.u.trim()
		s.u.mu.Unlock()
	}
}

// end says a loading's file ended at size; when that is where this file
// ends it returns what unpacking it found, else ok is false and first is
// the loading's bytes (a shorter file's).
func (s *shared) end(size int64) (init *ramdisk.Initramfs, err error, ok bool, first [][]byte) {
	s.mu.Lock()
	switch {
	case s.early:
		// The file went on past what the unpacking read: so must this one.
		defer s.mu.Unlock()
		if size <= s.buf.n {
			return nil, nil, false, s.buf.prefix(size)
		}
		return s.init, s.err, true, nil
	case s.gone || size != s.buf.n:
		defer s.mu.Unlock()
		return nil, nil, false, s.buf.prefix(size)
	case !s.ended:
		s.ended = true
		s.more.Broadcast()
	}
	s.mu.Unlock()
	<-s.parsed
	return s.init, s.err, true, nil
}

// unpack unpacks the file as its bytes come.
func (s *shared) unpack() {
	r := &sharedReader{s: s}
	s.init, s.err = ramdisk.ParseInitramfs(r, s.name)
	if r.turn {
		s.u.give()
	}
	s.mu.Lock()
	if !s.ended && !s.gone {
		s.early = true
		s.buf = s.buf.cut(r.pos)
	}
	s.mu.Unlock()
	close(s.parsed)
}

// sharedReader reads a shared file as it grows. The unpacking holds a
// turn of the Unpacker from one read to the next: while it works on the
// bytes it got.
type sharedReader struct {
	s    *shared
	pos  int64
	turn bool
}

// errLeft ends the unpacking of a file every loading left.
var errLeft = errors.New("every loading of the file stopped")

func (r *sharedReader) Read(p []byte) (int, error) {
	s := r.s
	if r.turn {
		s.u.give()
		r.turn = false
	}
	s.mu.Lock()
	for r.pos == s.buf.n && !s.ended && !s.gone {
		s.more.Wait()
	}
	var next []byte
	if r.pos < s.buf.n {
		next = s.buf.at(r.pos)
	}
	ended, gone := s.ended, s.gone
	s.mu.Unlock()
	switch {
	case gone:
		return 0, errLeft
	case len(next) == 0 && ended:
		return 0, io.EOF
	}
	s.u.take()
	r.turn = true
	n := copy(p, next)
	r.pos += int64(n)
	return n, nil
}

// chunks holds a file's bytes in blocks of chunkSize: holding a file costs
// its size, not the doublings of a growing buffer. Bytes below n never
// change, so a slice of them read under the lock may be used after it.
type chunks struct {
	c [][]byte // all full but the last
	n int64
}

const chunkSize = 1 << 20

// equal reports whether p is what the file holds from off on, as far as
// it goes.
func (b *chunks) equal(off int64, p []byte) bool {
	for len(p) > 0 && off < b.n {
		c := b.at(off)
		k := min(len(p), len(c))
		if !bytes.Equal(p[:k], c[:k]) {
			return false
		}
		p, off = p[k:], off+int64(k)
	}
	return true
}

func (b *chunks) append(p []byte) {
	for len(p) > 0 {
		if len(b.c) == 0 || len(b.c[len(b.c)-1]) == chunkSize {
			b.c = append(b.c, make([]byte, 0, chunkSize))
		}
		last := &b.c[len(b.c)-1]
		k := min(len(p), chunkSize-len(*last))
		*last = append(*last, p[:k]...)
		p, b.n = p[k:], b.n+int64(k)
	}
}

// at is the bytes from off (< n) to the end of its block.
func (b *chunks) at(off int64) []byte { return b.c[off/chunkSize][off%chunkSize:] }

// prefix is the first n bytes (at most all), block by block.
func (b *chunks) prefix(n int64) [][]byte {
	var out [][]byte
	for off := int64(0); off < min(n, b.n); {
		c := b.at(off)
		c = c[:min(int64(len(c)), min(n, b.n)-off)]
		out = append(out, c)
		off += int64(len(c))
	}
	return out
}

// cut is a copy of the first n bytes, in blocks of their size.
func (b *chunks) cut(n int64) chunks {
	var out chunks
	for _, c := range b.prefix(n) {
		out.c = append(out.c, bytes.Clone(c))
		out.n += int64(len(c))
	}
	return out
}

// loading is a file being loaded: an io.Writer that keeps the head, sums
// the bytes and unpacks them as they arrive, following a shared file
// while the bytes are the same, else on its own.
type loading struct {
	f   File
	sum hash.Hash32
	u   *Unpacker
	s   *shared // the file followed, until the bytes differ

	// An unpacking of its own: the bytes are piped to it.
	pw   *io.PipeWriter
	bw   *bufio.Writer // batches the transfer's blocks for the unpacking
	done chan struct{}
}

// errUnpacked ends writes to an unpacking that has finished (or given up:
// a kernel is not an initramfs).
var errUnpacked = errors.New("unpacked")

// newLoading starts loading a file; its unpacking goes through u.
func newLoading(name string, u *Unpacker) *loading {
	l := &loading{f: File{Name: name}, sum: crc32.New(castagnoli), u: u}
	if u == nil {
		l.unpackAlone(nil)
	}
	return l
}

// unpackAlone starts the loading's own unpacking, handing it first.
func (l *loading) unpackAlone(first [][]byte) {
	pr, pw := io.Pipe()
	l.pw, l.bw, l.done = pw, bufio.NewWriterSize(pw, 256<<10), make(chan struct{})
	go func() {
		defer close(l.done)
		l.f.Initramfs, l.f.NotInitramfs = ramdisk.ParseInitramfs(pr, l.f.Name)
		pr.CloseWithError(errUnpacked)
	}()
	for _, p := range first {
		l.feed(p)
	}
}

func (l *loading) Write(p []byte) (int, error) {
	pos := l.f.Size
	if n := HeadSize - len(l.f.Head); n > 0 {
		l.f.Head = append(l.f.Head, p[:min(n, len(p))]...)
	}
	l.f.Size += int64(len(p))
	l.sum.Write(p)
	switch {
	case l.u != nil && l.s == nil && l.done == nil: // the first bytes
		l.s = l.u.join(l.f.Name, p)
	case l.s != nil:
		if other, first := l.s.follow(pos, p); other {
			l.diverge(first)
			l.feed(p)
		}
	case l.s == nil:
		l.feed(p)
	}
	return len(p), nil
}

// diverge leaves the shared file, whose first bytes, first, were this
// file's, for an unpacking of its own, handed them first.
func (l *loading) diverge(first [][]byte) {
	l.s.leave()
	l.s = nil
	l.unpackAlone(first)
}

// feed hands p to the loading's own unpacking.
func (l *loading) feed(p []byte) {
	if l.bw != nil {
		// A write the buffer cannot take hands a batch to the unpacking
		// and returns once it is consumed: the turn covers that work.
		l.turn(func() error {
			_, err := l.bw.Write(p)
			return err
		})
	}
}

// turn runs fn (a hand-over to the unpacking) holding a turn; an error
// means the unpacking is over: the rest is only summed.
func (l *loading) turn(fn func() error) {
	l.u.take()
	defer l.u.give()
	if err := fn(); err != nil {
		l.bw = nil
	}
}

// finish ends the file; err is the transfer's (nil: it is complete).
func (l *loading) finish(err error) (File, error) {
	l.f.Sum = l.sum.Sum32()
	if s := l.s; s != nil {
		if err != nil {
			s.leave()
			return l.f, err
		}
		init, nerr, ok, first := s.end(l.f.Size)
		if ok {
			l.f.Initramfs, l.f.NotInitramfs = init, nerr
			return l.f, nil
		}
		l.diverge(first) // a shorter file
	}
	if l.done == nil { // nothing was received
		l.unpackAlone(nil)
	}
	if l.bw != nil && err == nil {
		l.turn(l.bw.Flush)
	}
	l.pw.CloseWithError(err) // nil: the unpacking sees the end of the file
	<-l.done
	return l.f, err
}
