package images

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
func makeFAT32(disk Disk, diskSize, start, size int64, label string, files []espFile) error {
	st := &diskStorage{r: disk, w: disk, size: diskSize}
	f, err := fat32.Create(st, size, start, SectorSize, label, false)
	if err != nil {
		return fmt.Errorf("format FAT32 at byte %d: %w", start, err)
	}
	for _, ef := range files {
		if dir := path.Dir(ef.path); dir != "/" {
			if err := f.Mkdir(dir); err != nil {
				return fmt.Errorf("FAT32 mkdir %s: %w", dir, err)
			}
		}
		w, err := f.OpenFile(ef.path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("FAT32 create %s: %w", ef.path, err)
		}
		if _, err := io.Copy(w, ef.src); err != nil {
			return fmt.Errorf("FAT32 write %s: %w", ef.path, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("FAT32 close %s: %w", ef.path, err)
		}
	}
	return nil
}

// fatFS is a minimal read-only FAT16/FAT32 reader for untrusted disks.
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
	fat32              bool
	label              string
}

const fatMaxFileBytes = 64 << 20

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
	f.fatStart = reserved * f.bps
	f.rootStart = f.fatStart + nfats*fatSz*f.bps
	f.rootLen = rootEntries * 32
	f.dataStart = f.rootStart + (f.rootLen+f.bps-1)/f.bps*f.bps
	if total*f.bps > size || f.dataStart >= total*f.bps {
		return nil, errors.New("fat: layout larger than its partition")
	}
	f.clusters = uint32((total*f.bps - f.dataStart) / f.clusterBytes)
	switch {
	case f.clusters < 4085:
		return nil, errors.New("fat: FAT12 is not supported")
	case f.clusters < 65525:
		if fatSz*f.bps < int64(f.clusters+2)*2 {
			return nil, errors.New("fat: FAT too small for its clusters")
		}
		if bs[0x26] == 0x29 {
			f.label = string(bs[0x2B : 0x2B+11])
		}
	default:
		f.fat32 = true
		if fatSz*f.bps < int64(f.clusters+2)*4 {
			return nil, errors.New("fat: FAT too small for its clusters")
		}
		f.rootCluster = binary.LittleEndian.Uint32(bs[0x2C:])
		if bs[0x42] == 0x29 {
			f.label = string(bs[0x47 : 0x47+11])
		}
	}
	f.label = strings.TrimRight(f.label, " ")
	if f.label == "NO NAME" {
		f.label = ""
	}
	return f, nil
}

func (f *fatFS) next(c uint32) (uint32, error) {
	var b [4]byte
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
	if f.fat32 {
		return c >= 0x0ffffff8
	}
	return c >= 0xfff8
}

// readChain reads up to limit bytes following the cluster chain from first.
func (f *fatFS) readChain(first uint32, limit int64) ([]byte, error) {
	var out []byte
	c := first
	for steps := uint32(0); ; steps++ {
		if c < 2 || c >= f.clusters+2 {
			return nil, fmt.Errorf("fat: cluster %d out of range", c)
		}
		if steps > f.clusters || int64(len(out))+f.clusterBytes > limit+f.clusterBytes {
			return nil, errors.New("fat: cluster chain loops or is too long")
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

// ReadFATFile reads a file of at most limit bytes from the FAT16/32 file
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
