package ramdisk

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/metalbed/metalbed/disk"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

// MarkerPath is where a metalbed ramdisk's initramfs says what it is.
const MarkerPath = "etc/metalbed-ramdisk.json"

// Marker describes a metalbed deploy ramdisk. Simulated firmware reads it
// to decide whether it can start the ramdisk in-process; a real kernel just
// runs /init.
type Marker struct {
	Program string   `json:"program"` // always "metalbed-ramdisk"
	Version string   `json:"version"`
	Modes   []string `json:"modes"` // deploy modes /init speaks: "iscsi", later "agent"
	// Loader is LoaderPlaceholder when the ramdisk was built to install
	// metalbed's placeholder loader where it carries no GRUB (`metalbed
	// ramdisk build --no-grub`); else empty.
	Loader string `json:"loader,omitempty"`
}

// LoaderPlaceholder is Marker.Loader of a ramdisk built without GRUB on
// purpose.
const LoaderPlaceholder = "placeholder"

const markerProgram = "metalbed-ramdisk"

// ErrNotRamdisk says an initrd is not a metalbed ramdisk.
var ErrNotRamdisk = errors.New("not a metalbed ramdisk")

// ImageConfig describes an initramfs to build.
type ImageConfig struct {
	// Init is the program that becomes /init: the metalbed binary, which
	// runs the ramdisk when started as PID 1.
	Init string
	// Version goes into the marker.
	Version string
	// Grub, when set, goes into disk.GrubImagesDir, where the bootloader
	// step (InstallBootloader, the agent's image.install_bootloader) takes
	// the GRUB images it writes; without it those install metalbed's
	// placeholder loader, which real firmware does not boot.
	Grub *disk.GrubImages
	// Placeholder says the user asked for metalbed's placeholder loader
	// where Grub has no images (the marker says so): the bootloader step
	// then installs it without reporting a fallback.
	Placeholder bool
}

// BuildInitramfs writes a gzip-compressed newc cpio archive — the format
// Linux unpacks as its initramfs — holding /init, the directories a kernel
// needs before /init mounts anything, /dev/console, the marker, and the
// GRUB images when cfg.Grub is set.
func BuildInitramfs(w io.Writer, cfg ImageConfig) error {
	// /init is streamed from the program's file (tens of MB, never held).
	init, err := os.Open(cfg.Init)
	if err != nil {
		return fmt.Errorf("read init program: %w", err)
	}
	defer init.Close()
	st, err := init.Stat()
	if err != nil {
		return fmt.Errorf("read init program: %w", err)
	}
	m := Marker{Program: markerProgram, Version: cfg.Version, Modes: []string{"iscsi"}}
	if cfg.Placeholder {
		m.Loader = LoaderPlaceholder
	}
	marker, err := json.Marshal(m)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(w)
	rw := cpio.Newc.Writer(zw)
	records := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("etc", 0o755),
		cpio.StaticFile(MarkerPath, string(marker), 0o644),
		{ReaderAt: init, Info: cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755, FileSize: uint64(st.Size())}},
		cpio.Directory("proc", 0o555),
		cpio.Directory("sys", 0o555),
		cpio.Directory("tmp", 0o1777),
	}
	if cfg.Grub != nil {
		dir := strings.TrimPrefix(disk.GrubImagesDir, "/")
		files := cfg.Grub.Files()
		for _, name := range slices.Sorted(maps.Keys(files)) {
			records = append(records, cpio.StaticFile(path.Join(dir, name), string(files[name]), 0o644))
		}
	}
	if err := cpio.WriteRecordsAndDirs(rw, records); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return zw.Close()
}

// maxMarker bounds the marker read from untrusted bytes.
const maxMarker = 64 << 10

// maxGrubFile bounds one GRUB image read from an initramfs (the UEFI
// image is the largest, a few MiB).
const maxGrubFile = 32 << 20

// Initramfs is what simulated firmware takes from a metalbed ramdisk's
// initramfs: what it is, and the boot loaders its bootloader step installs.
type Initramfs struct {
	Marker      Marker
	Bootloaders Bootloaders
}

// ReadMarker inspects an initrd (gzip-compressed or plain newc cpio) and
// returns its marker, or an error wrapping ErrNotRamdisk saying why not.
func ReadMarker(initrd io.ReaderAt, size int64) (Marker, error) {
	i, err := ReadInitramfs(initrd, size, "initramfs")
	if err != nil {
		return Marker{}, err
	}
	return i.Marker, nil
}

// ReadInitramfs reads a metalbed ramdisk's initrd (gzip-compressed or
// plain newc cpio), as a kernel unpacks it: the marker, and the GRUB
// images under disk.GrubImagesDir. name names the initrd in messages. An
// initrd that is not a metalbed ramdisk is an error wrapping
// ErrNotRamdisk; unusable GRUB images are Bootloaders.Err.
func ReadInitramfs(initrd io.ReaderAt, size int64, name string) (*Initramfs, error) {
	return ParseInitramfs(io.NewSectionReader(initrd, 0, size), name)
}

// ParseInitramfs is ReadInitramfs over a stream, read once from start to
// end as a kernel unpacks it: nothing but the marker and the GRUB images is
// kept, so a ramdisk of tens of MB costs a machine no more than those.
func ParseInitramfs(initrd io.Reader, name string) (*Initramfs, error) {
	br := bufio.NewReader(initrd)
	head, err := br.Peek(6)
	if err != nil {
		return nil, fmt.Errorf("%w: %d bytes, too short for an initramfs", ErrNotRamdisk, len(head))
	}
	var r io.Reader = br
	if head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: bad gzip: %v", ErrNotRamdisk, err)
		}
		// Bound the decompressed size: a ramdisk larger than 1 GiB is not ours.
		zbr := bufio.NewReaderSize(gunzipErrors{io.LimitReader(zr, 1<<30)}, 64<<10)
		if head, err = zbr.Peek(6); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: empty archive", ErrNotRamdisk)
			}
			return nil, fmt.Errorf("%w: %v", ErrNotRamdisk, err)
		}
		r = zbr
	}
	if string(head) != "070701" {
		return nil, fmt.Errorf("%w: no newc cpio archive (magic %q)", ErrNotRamdisk, head)
	}
	rr := cpio.Newc.Reader(&forward{r: r})
	hasInit, found := false, false
	var m Marker
	grubDir := strings.TrimPrefix(disk.GrubImagesDir, "/")
	grub := map[string][]byte{}
	var grubErr error // an unreadable GRUB image: the bootloader step fails with it
	for {
		rec, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: cpio: %v", ErrNotRamdisk, err)
		}
		file := path.Clean(strings.TrimPrefix(rec.Name, "/"))
		switch {
		case file == "init":
			hasInit = rec.Mode&0o111 != 0
		case file == MarkerPath:
			b, err := readRecord(rec, maxMarker)
			if err != nil {
				return nil, fmt.Errorf("%w: marker: %v", ErrNotRamdisk, err)
			}
			if err := json.Unmarshal(b, &m); err != nil || m.Program != markerProgram {
				return nil, fmt.Errorf("%w: marker %s is not metalbed's", ErrNotRamdisk, MarkerPath)
			}
			found = true
		case path.Dir(file) == grubDir && rec.Mode&cpio.S_IFMT == cpio.S_IFREG:
			b, err := readRecord(rec, maxGrubFile)
			if err != nil && grubErr == nil {
				grubErr = fmt.Errorf("GRUB images in %s:/%s: %w", name, file, err)
			}
			grub[path.Base(file)] = b // a later record replaces an earlier one, as unpacking does
		}
	}
	// What follows the trailer is unpacked too (and a gzip stream's
	// checksum checked), as the kernel does.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRamdisk, err)
	}
	switch {
	case !found:
		return nil, fmt.Errorf("%w: no %s in the archive", ErrNotRamdisk, MarkerPath)
	case !hasInit:
		return nil, fmt.Errorf("%w: no executable /init", ErrNotRamdisk)
	}
	bl := Bootloaders{Placeholder: m.Loader == LoaderPlaceholder, From: name + ":" + disk.GrubImagesDir}
	g, err := disk.GrubImagesFromFiles(grub, bl.From)
	switch {
	case grubErr != nil:
		bl.Err = grubErr
	case err == nil:
		bl.Grub = g
	case !errors.Is(err, disk.ErrNoGrub):
		bl.Err = err // the kernel unpacks it all the same; the bootloader step fails
	}
	return &Initramfs{Marker: m, Bootloaders: bl}, nil
}

// gunzipErrors says a decompression error is one, as unpacking reports it.
type gunzipErrors struct{ r io.Reader }

func (g gunzipErrors) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("gunzip: %w", err)
	}
	return n, err
}

// forward is an io.ReaderAt over a stream for a reader that only moves
// forward (the cpio reader: each record's header, then its contents or a
// skip past them): what lies between is read and dropped.
type forward struct {
	r   io.Reader
	pos int64
}

func (f *forward) ReadAt(p []byte, off int64) (int, error) {
	if off < f.pos {
		return 0, fmt.Errorf("read at %d of a stream already at %d", off, f.pos)
	}
	if off > f.pos {
		n, err := io.CopyN(io.Discard, f.r, off-f.pos)
		f.pos += n
		if err != nil {
			return 0, err
		}
	}
	n, err := io.ReadFull(f.r, p)
	f.pos += int64(n)
	return n, err
}

// readRecord reads a cpio file of at most limit bytes.
func readRecord(rec cpio.Record, limit uint64) ([]byte, error) {
	if rec.FileSize > limit {
		return nil, fmt.Errorf("%d bytes, more than %d", rec.FileSize, limit)
	}
	return io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
}

// CheckStatic reports whether prog is an ELF executable a bare initramfs
// can run as /init: one without a program interpreter (PT_INTERP), i.e.
// statically linked. A dynamic /init fails with "Failed to execute /init
// (error -2)" because its loader is not in the archive.
func CheckStatic(prog io.ReaderAt) error {
	f, err := elf.NewFile(prog)
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			p.ReadAt(b, 0)
			return fmt.Errorf("dynamically linked (interpreter %s): build it with CGO_ENABLED=0", bytes.TrimRight(b, "\x00"))
		}
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	return nil
}
