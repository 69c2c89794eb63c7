package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// ESPLabel is the FAT label Ironic gives the EFI system partition.
const ESPLabel = "efi-part"

// diskStorage adapts a disk seen only as ReaderAt/WriterAt (an iSCSI LUN)
// to go-diskfs's backend.Storage. go-diskfs reaches the disk only through
// ReadAt/WriteAt with absolute offsets, plus Stat for the size.
type diskStorage struct {
	r    io.ReaderAt
	w    io.WriterAt
	size int64
	pos  int64
}

var _ backend.Storage = (*diskStorage)(nil)

func (d *diskStorage) Stat() (fs.FileInfo, error) { return sizeInfo(d.size), nil }
func (d *diskStorage) Read(p []byte) (int, error) {
	n, err := d.r.ReadAt(p, d.pos)
	d.pos += int64(n)
	return n, err
}
func (d *diskStorage) Close() error                             { return nil }
func (d *diskStorage) ReadAt(p []byte, off int64) (int, error)  { return d.r.ReadAt(p, off) }
func (d *diskStorage) WriteAt(p []byte, off int64) (int, error) { return d.w.WriteAt(p, off) }
func (d *diskStorage) Sys() (*os.File, error)                   { return nil, backend.ErrNotSuitable }
func (d *diskStorage) Path() string                             { return "" }
func (d *diskStorage) Writable() (backend.WritableFile, error) {
	if d.w == nil {
		return nil, backend.ErrIncorrectOpenMode
	}
	return d, nil
}
func (d *diskStorage) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += d.pos
	case io.SeekEnd:
		off += d.size
	default:
		return 0, fmt.Errorf("seek: whence %d", whence)
	}
	if off < 0 {
		return 0, errors.New("seek: negative offset")
	}
	d.pos = off
	return off, nil
}

type sizeInfo int64

func (s sizeInfo) Name() string       { return "disk" }
func (s sizeInfo) Size() int64        { return int64(s) }
func (s sizeInfo) Mode() fs.FileMode  { return 0o600 }
func (s sizeInfo) ModTime() time.Time { return time.Time{} }
func (s sizeInfo) IsDir() bool        { return false }
func (s sizeInfo) Sys() any           { return nil }

// espFile is one file to place on a new FAT32 file system.
type espFile struct {
	path string // e.g. /EFI/BOOT/BOOTX64.EFI
	src  io.Reader
}

// makeFAT32 formats [start, start+size) of the disk as FAT32 with a label
// (what `mkfs.vfat -F 32 -n label` does) and copies files onto it.
//
// go-diskfs v1.9.4 formats; its formatted empty file system passes
// fsck.vfat. Its directory writer does not (it points ".." of a
// subdirectory of the root at cluster 2, where FAT requires 0), so files
// go on with fatWriter below.
func makeFAT32(disk Disk, diskSize, start, size int64, label string, files []espFile) error {
	st := &diskStorage{r: disk, w: disk, size: diskSize}
	if _, err := fat32.Create(st, size, start, SectorSize, label, false); err != nil {
		return fmt.Errorf("format FAT32 at byte %d: %w", start, err)
	}
	// go-diskfs v1.9.4 also sizes the FAT two entries short for some volume
	// sizes (64 MiB is one), which Linux refuses to mount. Check the result
	// with our own reader, which applies the kernel's rule.
	f, err := openFAT(io.NewSectionReader(disk, start, size), size)
	if err != nil {
		return fmt.Errorf("FAT32 of %d bytes as laid out by go-diskfs is unsound: %w", size, err)
	}
	if len(files) == 0 {
		return nil
	}
	w, err := newFATWriter(disk, f, start)
	if err != nil {
		return err
	}
	for _, ef := range files {
		data, err := io.ReadAll(io.LimitReader(ef.src, size+1))
		if err != nil {
			return fmt.Errorf("FAT32 %s: %w", ef.path, err)
		}
		if err := w.addFile(ef.path, data); err != nil {
			return fmt.Errorf("FAT32 %s: %w", ef.path, err)
		}
	}
	return w.writeFSInfo()
}

// fatWriter adds directories and files, each in contiguous clusters after
// the last used one, to a FAT32 file system. Names must fit 8.3 (all of an
// ESP's standard paths do); existing files are not replaced.
type fatWriter struct {
	fs     *fatFS
	disk   Disk
	base   int64
	next   uint32            // next free cluster: after the last used one
	free   uint32            // free clusters before this writer allocated
	alloc0 uint32            // next at the start
	dirs   map[string]uint32 // directory path -> first cluster
}

// newFATWriter scans the FAT of the FAT32 file system at byte base of disk
// for its last used cluster.
func newFATWriter(disk Disk, f *fatFS, base int64) (*fatWriter, error) {
	if !f.fat32 {
		return nil, errors.New("fat: only FAT32 can be written")
	}
	w := &fatWriter{fs: f, disk: disk, base: base, next: 2, dirs: map[string]uint32{"/": f.rootCluster}}
	total := int64(f.clusters) + 2
	buf := make([]byte, 1<<20)
	for first := int64(0); first < total; first += int64(len(buf)) / 4 {
		n := min(int64(len(buf))/4, total-first)
		chunk := buf[:4*n]
		if _, err := disk.ReadAt(chunk, base+f.fatStart+4*first); err != nil {
			return nil, fmt.Errorf("fat: read FAT: %w", err)
		}
		for i := int64(0); i < n; i++ {
			c := first + i
			if c < 2 {
				continue
			}
			if binary.LittleEndian.Uint32(chunk[4*i:])&0x0fffffff == 0 {
				w.free++
			} else {
				w.next = uint32(c) + 1
			}
		}
	}
	w.alloc0 = w.next
	return w, nil
}

func (w *fatWriter) clusterOff(c uint32) int64 {
	return w.base + w.fs.dataStart + int64(c-2)*w.fs.clusterBytes
}

// alloc reserves n contiguous clusters, chained, and returns the first.
func (w *fatWriter) alloc(n int64) (uint32, error) {
	if n < 1 {
		n = 1
	}
	first := w.next
	if int64(first)+n > int64(w.fs.clusters)+2 {
		return 0, errors.New("file system full")
	}
	fat := make([]byte, 4*n)
	for i := int64(0); i < n; i++ {
		v := uint32(0x0fffffff)
		if i < n-1 {
			v = first + uint32(i) + 1
		}
		binary.LittleEndian.PutUint32(fat[4*i:], v)
	}
	for k := int64(0); k < w.fs.nfats; k++ {
		off := w.base + w.fs.fatStart + k*w.fs.fatBytes + int64(first)*4
		if _, err := w.disk.WriteAt(fat, off); err != nil {
			return 0, fmt.Errorf("write FAT: %w", err)
		}
	}
	w.next += uint32(n)
	return first, nil
}

// shortName encodes an 8.3 name and the NT case flags for lower case.
func shortName(name string) ([11]byte, byte, error) {
	var out [11]byte
	for i := range out {
		out[i] = ' '
	}
	base, ext, _ := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 || strings.ContainsAny(ext, ".") {
		return out, 0, fmt.Errorf("%q is not an 8.3 name", name)
	}
	var flags byte
	caseOf := func(s string, lowerFlag byte) error {
		up, low := strings.ToUpper(s), strings.ToLower(s)
		switch s {
		case up:
		case low:
			flags |= lowerFlag
		default:
			return fmt.Errorf("%q mixes cases; 8.3 cannot hold it", name)
		}
		for _, r := range up {
			if r > 0x7e || r < 0x21 || strings.ContainsRune(`"*+,/:;<=>?[\]|`, r) {
				return fmt.Errorf("%q: character %q not allowed in 8.3", name, r)
			}
		}
		return nil
	}
	if err := caseOf(base, 0x08); err != nil {
		return out, 0, err
	}
	if err := caseOf(ext, 0x10); err != nil {
		return out, 0, err
	}
	copy(out[:8], strings.ToUpper(base))
	copy(out[8:], strings.ToUpper(ext))
	return out, flags, nil
}

// entry writes a 32-byte directory entry into the first free slot of the
// single-cluster directory dir.
func (w *fatWriter) entry(dir uint32, name string, attr byte, cluster uint32, size int64) error {
	sn, flags, err := shortName(name)
	if err != nil {
		return err
	}
	buf := make([]byte, w.fs.clusterBytes)
	if _, err := w.disk.ReadAt(buf, w.clusterOff(dir)); err != nil {
		return fmt.Errorf("read directory: %w", err)
	}
	for off := 0; off+32 <= len(buf); off += 32 {
		if buf[off] != 0 && buf[off] != 0xe5 {
			continue
		}
		e := buf[off : off+32]
		putFATEntry(e, sn, attr, flags, cluster, size)
		if _, err := w.disk.WriteAt(e, w.clusterOff(dir)+int64(off)); err != nil {
			return fmt.Errorf("write directory entry: %w", err)
		}
		return nil
	}
	return errors.New("directory cluster full")
}

// putFATEntry encodes a 32-byte directory entry with the 8.3 name sn and
// NT case flags, dated 1980-01-01 so images are reproducible.
func putFATEntry(e []byte, sn [11]byte, attr, flags byte, cluster uint32, size int64) {
	clear(e[:32])
	copy(e[0:11], sn[:])
	e[11], e[12] = attr, flags
	const dosDate = 0x0021
	binary.LittleEndian.PutUint16(e[16:], dosDate)
	binary.LittleEndian.PutUint16(e[18:], dosDate)
	binary.LittleEndian.PutUint16(e[24:], dosDate)
	binary.LittleEndian.PutUint16(e[20:], uint16(cluster>>16))
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], uint32(size))
}

// putDotEntries writes the "." and ".." entries that start the directory
// cluster c (dotdot is 0 for a child of the root).
func putDotEntries(blk []byte, c, dotdot uint32) {
	for i, d := range []struct {
		name string
		c    uint32
	}{{".", c}, {"..", dotdot}} {
		var sn [11]byte
		copy(sn[:], fmt.Sprintf("%-11s", d.name))
		putFATEntry(blk[32*i:], sn, 0x10, 0, d.c, 0)
	}
}

func (w *fatWriter) mkdirAll(dir string) (uint32, error) {
	if c, ok := w.dirs[dir]; ok {
		return c, nil
	}
	if e, err := w.fs.stat(dir); err == nil {
		if !e.dir {
			return 0, fmt.Errorf("%s exists and is not a directory", dir)
		}
		w.dirs[dir] = e.cluster
		return e.cluster, nil
	}
	parentPath := path.Dir(dir)
	parent, err := w.mkdirAll(parentPath)
	if err != nil {
		return 0, err
	}
	c, err := w.alloc(1)
	if err != nil {
		return 0, err
	}
	blk := make([]byte, w.fs.clusterBytes)
	dotdot := parent
	if parentPath == "/" {
		dotdot = 0 // FAT: ".." of a child of the root names cluster 0
	}
	putDotEntries(blk, c, dotdot)
	if _, err := w.disk.WriteAt(blk, w.clusterOff(c)); err != nil {
		return 0, fmt.Errorf("write directory: %w", err)
	}
	if err := w.entry(parent, path.Base(dir), 0x10, c, 0); err != nil {
		return 0, err
	}
	w.dirs[dir] = c
	return c, nil
}

func (w *fatWriter) addFile(p string, data []byte) error {
	if _, err := w.fs.stat(p); err == nil {
		return fmt.Errorf("%s already exists", p)
	}
	dir, err := w.mkdirAll(path.Dir(p))
	if err != nil {
		return err
	}
	var first uint32
	if len(data) > 0 {
		n := (int64(len(data)) + w.fs.clusterBytes - 1) / w.fs.clusterBytes
		if first, err = w.alloc(n); err != nil {
			return err
		}
		if _, err := w.disk.WriteAt(data, w.clusterOff(first)); err != nil {
			return fmt.Errorf("write data: %w", err)
		}
		// Zero the tail of the last cluster: the partition may hold old bytes.
		if tail := n*w.fs.clusterBytes - int64(len(data)); tail > 0 {
			if _, err := w.disk.WriteAt(make([]byte, tail), w.clusterOff(first)+int64(len(data))); err != nil {
				return fmt.Errorf("write data: %w", err)
			}
		}
	}
	return w.entry(dir, path.Base(p), 0x20, first, int64(len(data)))
}

// writeFSInfo records the free cluster count and next free hint in the
// FSInfo sector and in the one after the backup boot sector.
func (w *fatWriter) writeFSInfo() error {
	var b [8]byte
	binary.LittleEndian.PutUint32(b[0:], w.free-(w.next-w.alloc0))
	binary.LittleEndian.PutUint32(b[4:], w.next)
	for _, sec := range w.fs.fsInfo {
		if _, err := w.disk.WriteAt(b[:], w.base+sec*w.fs.bps+488); err != nil {
			return fmt.Errorf("write FSInfo: %w", err)
		}
	}
	return nil
}

// fatFS is a minimal read-only FAT12/FAT16/FAT32 reader for untrusted disks.
type fatFS struct {
	r                  io.ReaderAt
	size               int64
	bps                int64
	clusterBytes       int64
	fatStart           int64
	dataStart          int64
	rootStart, rootLen int64 // FAT16 fixed root directory
	rootCluster        uint32
	clusters           uint32
	fat32, fat12       bool
	label              string
	serial             string  // volume serial as blkid prints it: XXXX-XXXX
	fsInfo             []int64 // FAT32 FSInfo sector and its backup
	nfats, fatBytes    int64
}

func openFAT(r io.ReaderAt, size int64) (*fatFS, error) {
	bs := make([]byte, 512)
	if size < 512 {
		return nil, errors.New("fat: region too small")
	}
	if _, err := r.ReadAt(bs, 0); err != nil {
		return nil, fmt.Errorf("fat: read boot sector: %w", err)
	}
	if bs[510] != 0x55 || bs[511] != 0xaa {
		return nil, errors.New("fat: no boot sector signature")
	}
	f := &fatFS{r: r, size: size}
	f.bps = int64(binary.LittleEndian.Uint16(bs[0x0B:]))
	spc := int64(bs[0x0D])
	reserved := int64(binary.LittleEndian.Uint16(bs[0x0E:]))
	nfats := int64(bs[0x10])
	rootEntries := int64(binary.LittleEndian.Uint16(bs[0x11:]))
	total := int64(binary.LittleEndian.Uint16(bs[0x13:]))
	if total == 0 {
		total = int64(binary.LittleEndian.Uint32(bs[0x20:]))
	}
	fatSz := int64(binary.LittleEndian.Uint16(bs[0x16:]))
	if fatSz == 0 {
		fatSz = int64(binary.LittleEndian.Uint32(bs[0x24:]))
	}
	switch f.bps {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("fat: %d bytes per sector", f.bps)
	}
	if spc == 0 || spc&(spc-1) != 0 || reserved == 0 || nfats == 0 || nfats > 4 || fatSz == 0 || total == 0 {
		return nil, errors.New("fat: inconsistent BIOS parameter block")
	}
	f.clusterBytes = spc * f.bps
	f.nfats, f.fatBytes = nfats, fatSz*f.bps
	f.fatStart = reserved * f.bps
	f.rootStart = f.fatStart + nfats*fatSz*f.bps
	f.rootLen = rootEntries * 32
	f.dataStart = f.rootStart + (f.rootLen+f.bps-1)/f.bps*f.bps
	if total*f.bps > size || f.dataStart >= total*f.bps {
		return nil, errors.New("fat: layout larger than its partition")
	}
	f.clusters = uint32((total*f.bps - f.dataStart) / f.clusterBytes)
	switch {
	case f.clusters < 65525:
		// FAT12 (small images: an El Torito EFI image, a floppy-sized
		// stick) or FAT16: both keep the extended boot record at 0x24.
		f.fat12 = f.clusters < 4085
		need := int64(f.clusters+2) * 2
		if f.fat12 {
			need = (int64(f.clusters+2)*3 + 1) / 2
		}
		if fatSz*f.bps < need {
			return nil, errors.New("fat: FAT too small for its clusters")
		}
		if bs[0x26] == 0x29 {
			f.label = string(bs[0x2B : 0x2B+11])
			f.serial = fatSerial(bs[0x27:])
		}
	default:
		f.fat32 = true
		if fatSz*f.bps < int64(f.clusters+2)*4 {
			return nil, errors.New("fat: FAT too small for its clusters")
		}
		f.rootCluster = binary.LittleEndian.Uint32(bs[0x2C:])
		if fsi := int64(binary.LittleEndian.Uint16(bs[0x30:])); fsi > 0 && fsi < reserved {
			f.fsInfo = append(f.fsInfo, fsi)
			if bk := int64(binary.LittleEndian.Uint16(bs[0x32:])); bk > 0 && bk+fsi < reserved {
				f.fsInfo = append(f.fsInfo, bk+fsi)
			}
		}
		if bs[0x42] == 0x29 {
			f.label = string(bs[0x47 : 0x47+11])
			f.serial = fatSerial(bs[0x43:])
		}
	}
	f.label = strings.TrimRight(f.label, " ")
	if f.label == "NO NAME" {
		f.label = ""
	}
	return f, nil
}

func fatSerial(b []byte) string {
	v := binary.LittleEndian.Uint32(b)
	return fmt.Sprintf("%04X-%04X", v>>16, v&0xffff)
}

func (f *fatFS) next(c uint32) (uint32, error) {
	var b [4]byte
	if f.fat12 {
		// 12-bit entries, two in three bytes: entry c starts at byte c*1.5.
		if _, err := f.r.ReadAt(b[:2], f.fatStart+int64(c)+int64(c/2)); err != nil {
			return 0, fmt.Errorf("fat: read FAT: %w", err)
		}
		v := uint32(binary.LittleEndian.Uint16(b[:2]))
		if c&1 == 1 {
			return v >> 4, nil
		}
		return v & 0xfff, nil
	}
	if f.fat32 {
		if _, err := f.r.ReadAt(b[:4], f.fatStart+int64(c)*4); err != nil {
			return 0, fmt.Errorf("fat: read FAT: %w", err)
		}
		return binary.LittleEndian.Uint32(b[:]) & 0x0fffffff, nil
	}
	if _, err := f.r.ReadAt(b[:2], f.fatStart+int64(c)*2); err != nil {
		return 0, fmt.Errorf("fat: read FAT: %w", err)
	}
	return uint32(binary.LittleEndian.Uint16(b[:2])), nil
}

func (f *fatFS) isEnd(c uint32) bool {
	switch {
	case f.fat32:
		return c >= 0x0ffffff8
	case f.fat12:
		return c >= 0xff8
	}
	return c >= 0xfff8
}

// readChain follows the cluster chain from first and returns its data,
// stopping once it holds at least limit bytes.
func (f *fatFS) readChain(first uint32, limit int64) ([]byte, error) {
	var out []byte
	c := first
	for steps := uint32(0); ; steps++ {
		if c < 2 || c >= f.clusters+2 {
			return nil, fmt.Errorf("fat: cluster %d out of range", c)
		}
		if steps > f.clusters {
			return nil, errors.New("fat: cluster chain loops")
		}
		if int64(len(out)) >= limit {
			return out, nil // enough for the caller
		}
		buf := make([]byte, f.clusterBytes)
		if _, err := f.r.ReadAt(buf, f.dataStart+int64(c-2)*f.clusterBytes); err != nil {
			return nil, fmt.Errorf("fat: read cluster %d: %w", c, err)
		}
		out = append(out, buf...)
		n, err := f.next(c)
		if err != nil {
			return nil, err
		}
		if f.isEnd(n) {
			return out, nil
		}
		c = n
	}
}

type fatEntry struct {
	name    string // 8.3 as "NAME.EXT", upper case
	dir     bool
	cluster uint32
	size    int64
}

func parseFATDir(b []byte) []fatEntry {
	var out []fatEntry
	for off := 0; off+32 <= len(b); off += 32 {
		e := b[off : off+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xe5 || e[11]&0x0f == 0x0f || e[11]&0x08 != 0 {
			continue // deleted, long-name part, or volume label
		}
		base := strings.TrimRight(string(e[0:8]), " ")
		ext := strings.TrimRight(string(e[8:11]), " ")
		name := base
		if ext != "" {
			name += "." + ext
		}
		out = append(out, fatEntry{
			name:    strings.ToUpper(name),
			dir:     e[11]&0x10 != 0,
			cluster: uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:])),
			size:    int64(binary.LittleEndian.Uint32(e[28:])),
		})
	}
	return out
}

// stat finds a path by its 8.3 names (EFI/BOOT/BOOTX64.EFI has only such).
func (f *fatFS) stat(p string) (fatEntry, error) {
	var dir []byte
	var err error
	if f.fat32 {
		dir, err = f.readChain(f.rootCluster, 4<<20)
	} else {
		dir = make([]byte, f.rootLen)
		_, err = f.r.ReadAt(dir, f.rootStart)
	}
	if err != nil {
		return fatEntry{}, err
	}
	parts := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
	if len(parts) == 0 || len(parts) > 16 {
		return fatEntry{}, fmt.Errorf("fat: bad path %q", p)
	}
	for i, part := range parts {
		var found *fatEntry
		for _, e := range parseFATDir(dir) {
			if e.name == strings.ToUpper(part) {
				found = &e
				break
			}
		}
		if found == nil {
			return fatEntry{}, fmt.Errorf("fat: %s: %q not found", p, part)
		}
		if i == len(parts)-1 {
			return *found, nil
		}
		if !found.dir {
			return fatEntry{}, fmt.Errorf("fat: %s: %q is not a directory", p, part)
		}
		if dir, err = f.readChain(found.cluster, 4<<20); err != nil {
			return fatEntry{}, err
		}
	}
	return fatEntry{}, fmt.Errorf("fat: %s not found", p)
}

// ReadFATFile reads a file of at most limit bytes from the FAT12/16/32 file
// system in the first size bytes of r.
func ReadFATFile(r io.ReaderAt, size int64, p string, limit int64) ([]byte, error) {
	f, err := openFAT(r, size)
	if err != nil {
		return nil, err
	}
	e, err := f.stat(p)
	if err != nil {
		return nil, err
	}
	if e.dir {
		return nil, fmt.Errorf("fat: %s is a directory", p)
	}
	if e.size > limit {
		return nil, fmt.Errorf("fat: %s has %d bytes, more than %d", p, e.size, limit)
	}
	if e.size == 0 {
		return []byte{}, nil
	}
	b, err := f.readChain(e.cluster, e.size)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) < e.size {
		return nil, fmt.Errorf("fat: %s: chain shorter than its size", p)
	}
	return b[:e.size], nil
}
