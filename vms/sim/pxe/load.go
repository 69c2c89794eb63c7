package pxe

import (
	"bufio"
	"bytes"
	"errors"
	"hash"
	"hash/crc32"
	"io"

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

// A Gate bounds how many loadings unpack at the same moment. Simulated
// machines share the host's few CPUs: a thousand booting at once, each
// inflating tens of MB, would leave the rest of the process (the API
// their agents look up in, the BMCs) a thousandth of the CPU each, and
// lookups time out. Through a gate as wide as the CPUs they take turns, as
// fast in sum. A turn is the unpacking of bytes already received: a slow
// transfer (TFTP) holds no turn while it waits. A nil Gate bounds nothing.
type Gate chan struct{}

// NewGate lets n loadings unpack at once.
func NewGate(n int) Gate { return make(Gate, max(n, 1)) }

// loading is a file being loaded: an io.Writer that keeps the head, sums
// the bytes and unpacks them as an initramfs as they arrive.
type loading struct {
	f    File
	sum  hash.Hash32
	pw   *io.PipeWriter
	bw   *bufio.Writer // batches the transfer's blocks for the unpacking
	gate Gate
	done chan struct{}
}

// errUnpacked ends writes to an unpacking that has finished (or given up:
// a kernel is not an initramfs).
var errUnpacked = errors.New("unpacked")

// newLoading starts loading a file; its unpacking takes turns through gate.
func newLoading(name string, gate Gate) *loading {
	pr, pw := io.Pipe()
	l := &loading{f: File{Name: name}, sum: crc32.New(castagnoli), pw: pw, bw: bufio.NewWriterSize(pw, 256<<10), gate: gate, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.f.Initramfs, l.f.NotInitramfs = ramdisk.ParseInitramfs(pr, name)
		pr.CloseWithError(errUnpacked)
	}()
	return l
}

func (l *loading) Write(p []byte) (int, error) {
	if n := HeadSize - len(l.f.Head); n > 0 {
		l.f.Head = append(l.f.Head, p[:min(n, len(p))]...)
	}
	l.f.Size += int64(len(p))
	l.sum.Write(p)
	if l.bw != nil {
		// A write the buffer cannot take hands a batch to the unpacking
		// and returns once it is consumed: the turn covers that work.
		l.turn(func() error {
			_, err := l.bw.Write(p)
			return err
		})
	}
	return len(p), nil
}

// turn runs fn (a hand-over to the unpacking) holding a turn of the gate;
// an error means the unpacking is over: the rest is only summed.
func (l *loading) turn(fn func() error) {
	if l.gate != nil {
		l.gate <- struct{}{}
		defer func() { <-l.gate }()
	}
	if err := fn(); err != nil {
		l.bw = nil
	}
}

// finish ends the file; err is the transfer's (nil: it is complete).
func (l *loading) finish(err error) (File, error) {
	if l.bw != nil && err == nil {
		l.turn(l.bw.Flush)
	}
	l.pw.CloseWithError(err) // nil: the unpacking sees the end of the file
	<-l.done
	l.f.Sum = l.sum.Sum32()
	return l.f, err
}
