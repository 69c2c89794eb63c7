// Package iso9660 reads ISO 9660 images the way firmware and a boot loader
// do: the primary volume descriptor, directories and files (Rock Ridge or
// Joliet names when the image has them, else its 8.3 names, matched
// case-insensitively), and the El Torito boot catalog with its BIOS and EFI
// boot images. It reads through an io.ReaderAt, so an image behind HTTP
// range requests is read only where needed. Images are untrusted input:
// every structure is bounded. Writer writes images (writer.go).
package iso9660

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf16"
)

// SectorSize is the CD-ROM sector (ISO 9660 logical sector) size.
const SectorSize = 2048

// Limits on untrusted images.
const (
	maxDirBytes   = 16 << 20 // one directory's extent
	maxDepth      = 32       // path components
	maxDescriptor = 64       // volume descriptors before the terminator
)

// ErrNotISO9660 says the image has no ISO 9660 primary volume descriptor.
var ErrNotISO9660 = errors.New("iso9660: not an ISO 9660 image (no CD001 primary volume descriptor)")

// ErrNotExist says a path is not in the image.
var ErrNotExist = errors.New("iso9660: file does not exist")

// Image is an opened ISO 9660 image.
type Image struct {
	r        io.ReaderAt
	size     int64
	block    int64 // logical block size (2048 on every real image)
	volumeID string
	root     record // the primary tree's root
	joliet   *record
	rr       bool  // the primary tree carries Rock Ridge names
	suspSkip int   // SUSP bytes to skip in each system use area (SP entry)
	bootLBA  int64 // El Torito boot catalog sector; -1: none
}

// record is one directory record.
type record struct {
	name  string // the name as the tree in use spells it ("" for . and ..)
	lba   int64
	size  int64
	dir   bool
	multi bool // more extents follow (files over 4 GiB)
}

// Entry is a file or directory in an image.
type Entry struct {
	Name  string
	Size  int64
	IsDir bool
	// LBA is the first sector of its extent.
	LBA int64
}

// Open reads the volume descriptors of the image in the first size bytes of r.
func Open(r io.ReaderAt, size int64) (*Image, error) {
	im := &Image{r: r, size: size, bootLBA: -1}
	var pvd []byte
	buf := make([]byte, SectorSize)
	for i := int64(0); i < maxDescriptor; i++ {
		off := (16 + i) * SectorSize
		if off+SectorSize > size {
			break
		}
		if _, err := r.ReadAt(buf, off); err != nil {
			return nil, fmt.Errorf("iso9660: read volume descriptor %d: %w", i, err)
		}
		if string(buf[1:6]) != "CD001" {
			break
		}
		typ := buf[0]
		switch typ {
		case 0: // boot record
			if bytes.HasPrefix(buf[7:39], []byte("EL TORITO SPECIFICATION")) {
				im.bootLBA = int64(binary.LittleEndian.Uint32(buf[0x47:]))
			}
		case 1:
			if pvd == nil {
				pvd = append([]byte(nil), buf...)
			}
		case 2:
			// A supplementary descriptor with a UCS-2 escape sequence is Joliet.
			esc := buf[88:91]
			if im.joliet == nil && esc[0] == '%' && esc[1] == '/' && (esc[2] == '@' || esc[2] == 'C' || esc[2] == 'E') {
				if rec, _, err := parseRecord(buf[156:190], true); err == nil && rec.dir {
					im.joliet = &rec
				}
			}
		}
		if typ == 255 {
			break
		}
	}
	if pvd == nil {
		return nil, ErrNotISO9660
	}
	im.block = int64(binary.LittleEndian.Uint16(pvd[128:]))
	if im.block != SectorSize {
		return nil, fmt.Errorf("iso9660: logical block size %d (only %d is supported)", im.block, SectorSize)
	}
	im.volumeID = strings.TrimRight(string(pvd[40:72]), " \x00")
	rec, _, err := parseRecord(pvd[156:190], false)
	if err != nil || !rec.dir {
		return nil, fmt.Errorf("iso9660: bad root directory record")
	}
	im.root = rec
	im.detectRockRidge()
	return im, nil
}

// VolumeID is the primary volume's identifier (the label).
func (im *Image) VolumeID() string { return im.volumeID }

// Size is the image size Open was given.
func (im *Image) Size() int64 { return im.size }

// RockRidge reports whether names come from Rock Ridge NM entries.
func (im *Image) RockRidge() bool { return im.rr }

// Joliet reports whether the image has a Joliet tree.
func (im *Image) Joliet() bool { return im.joliet != nil }

// detectRockRidge looks for the SUSP "SP" entry in the root's "." record,
// which says the tree carries System Use entries (Rock Ridge among them).
func (im *Image) detectRockRidge() {
	b := make([]byte, SectorSize)
	if im.root.lba*SectorSize+SectorSize > im.size {
		return
	}
	if _, err := im.r.ReadAt(b, im.root.lba*SectorSize); err != nil {
		return
	}
	n := int(b[0])
	if n < 34 || n > len(b) {
		return
	}
	su := systemUse(b[:n])
	if len(su) >= 7 && string(su[0:2]) == "SP" && su[4] == 0xbe && su[5] == 0xef {
		im.suspSkip = int(su[6])
		im.rr = true
	}
}

// systemUse is the System Use area of a directory record.
func systemUse(rec []byte) []byte {
	nameLen := int(rec[32])
	start := 33 + nameLen
	if nameLen%2 == 0 {
		start++ // padding byte
	}
	if start > len(rec) {
		return nil
	}
	return rec[start:]
}

// rockRidgeName returns the NM name in a System Use area ("" if none).
func rockRidgeName(su []byte) string {
	var name []byte
	found := false
	for len(su) >= 4 {
		l := int(su[2])
		if l < 4 || l > len(su) {
			break
		}
		if string(su[0:2]) == "NM" && l >= 5 {
			flags := su[4]
			if flags&0x06 == 0 { // not "current" or "parent"
				name = append(name, su[5:l]...)
				found = true
			}
			if flags&0x01 == 0 { // no continuation in a further NM
				if found {
					return string(name)
				}
			}
		}
		if string(su[0:2]) == "ST" {
			break
		}
		su = su[l:]
	}
	if found {
		return string(name)
	}
	return ""
}

// parseRecord decodes one directory record; joliet decodes its name as UCS-2.
func parseRecord(b []byte, joliet bool) (record, int, error) {
	if len(b) < 1 {
		return record{}, 0, errors.New("iso9660: short directory record")
	}
	n := int(b[0])
	if n < 34 || n > len(b) {
		return record{}, 0, fmt.Errorf("iso9660: directory record of %d bytes", n)
	}
	nameLen := int(b[32])
	if 33+nameLen > n {
		return record{}, 0, errors.New("iso9660: directory record name overruns the record")
	}
	raw := b[33 : 33+nameLen]
	rec := record{
		lba:   int64(binary.LittleEndian.Uint32(b[2:])),
		size:  int64(binary.LittleEndian.Uint32(b[10:])),
		dir:   b[25]&0x02 != 0,
		multi: b[25]&0x80 != 0,
	}
	switch {
	case nameLen == 1 && (raw[0] == 0 || raw[0] == 1):
		// "." and ".."
	case joliet:
		u := make([]uint16, nameLen/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(raw[2*i:])
		}
		rec.name = cleanName(string(utf16.Decode(u)))
	default:
		rec.name = cleanName(string(raw))
	}
	return rec, n, nil
}

// cleanName drops the version (";1") and a trailing dot of an ISO name.
func cleanName(s string) string {
	if i := strings.LastIndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSuffix(s, ".")
}

// readDir lists the records of the directory rec (without . and ..).
func (im *Image) readDir(rec record, joliet bool) ([]record, error) {
	if !rec.dir {
		return nil, errors.New("iso9660: not a directory")
	}
	if rec.size > maxDirBytes {
		return nil, fmt.Errorf("iso9660: directory of %d bytes (more than %d)", rec.size, maxDirBytes)
	}
	if rec.lba*SectorSize+rec.size > im.size || rec.lba < 16 {
		return nil, fmt.Errorf("iso9660: directory at sector %d (%d bytes) is outside the image", rec.lba, rec.size)
	}
	data := make([]byte, rec.size)
	if _, err := im.r.ReadAt(data, rec.lba*SectorSize); err != nil {
		return nil, fmt.Errorf("iso9660: read directory at sector %d: %w", rec.lba, err)
	}
	var out []record
	for off := 0; off < len(data); {
		if data[off] == 0 {
			// Records never cross a sector: the rest of this one is padding.
			off = (off/SectorSize + 1) * SectorSize
			continue
		}
		r, n, err := parseRecord(data[off:], joliet)
		if err != nil {
			return nil, err
		}
		if r.name != "" { // not "." or ".."
			if im.rr && !joliet {
				su := systemUse(data[off : off+n])
				if im.suspSkip < len(su) {
					su = su[im.suspSkip:]
				}
				if nm := rockRidgeName(su); nm != "" && !strings.ContainsRune(nm, '/') {
					r.name = nm
				}
			}
			out = append(out, r)
		}
		off += n
	}
	return out, nil
}

// tree is the root of the tree names are looked up in: Rock Ridge on the
// primary tree when present, else Joliet, else the primary's 8.3 names.
func (im *Image) tree() (record, bool) {
	if !im.rr && im.joliet != nil {
		return *im.joliet, true
	}
	return im.root, false
}

// lookup finds p (slash-separated, absolute or relative to the root).
func (im *Image) lookup(p string) (record, error) {
	root, joliet := im.tree()
	parts := strings.FieldsFunc(path.Clean("/"+p), func(r rune) bool { return r == '/' })
	if len(parts) > maxDepth {
		return record{}, fmt.Errorf("iso9660: %s: too deep", p)
	}
	cur := root
	for _, part := range parts {
		if !cur.dir {
			return record{}, fmt.Errorf("iso9660: %s: %q is not a directory", p, cur.name)
		}
		entries, err := im.readDir(cur, joliet)
		if err != nil {
			return record{}, fmt.Errorf("iso9660: %s: %w", p, err)
		}
		var found *record
		for i := range entries {
			if entries[i].name == part {
				found = &entries[i]
				break
			}
		}
		if found == nil {
			for i := range entries {
				if strings.EqualFold(entries[i].name, part) {
					found = &entries[i]
					break
				}
			}
		}
		if found == nil {
			return record{}, fmt.Errorf("%w: %s", ErrNotExist, p)
		}
		cur = *found
	}
	return cur, nil
}

func (r record) entry() Entry { return Entry{Name: r.name, Size: r.size, IsDir: r.dir, LBA: r.lba} }

// Stat describes the file or directory at p.
func (im *Image) Stat(p string) (Entry, error) {
	r, err := im.lookup(p)
	if err != nil {
		return Entry{}, err
	}
	e := r.entry()
	if e.Name == "" {
		e.Name = "/"
	}
	return e, nil
}

// ReadDir lists the directory at p.
func (im *Image) ReadDir(p string) ([]Entry, error) {
	r, err := im.lookup(p)
	if err != nil {
		return nil, err
	}
	_, joliet := im.tree()
	recs, err := im.readDir(r, joliet)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(recs))
	for i, rec := range recs {
		out[i] = rec.entry()
	}
	return out, nil
}

// Open returns the file at p for reading.
func (im *Image) Open(p string) (*io.SectionReader, error) {
	r, err := im.lookup(p)
	if err != nil {
		return nil, err
	}
	if r.dir {
		return nil, fmt.Errorf("iso9660: %s is a directory", p)
	}
	if r.multi {
		return nil, fmt.Errorf("iso9660: %s spans several extents (not supported)", p)
	}
	if r.lba*SectorSize+r.size > im.size {
		return nil, fmt.Errorf("iso9660: %s: extent at sector %d (%d bytes) is outside the image", p, r.lba, r.size)
	}
	return io.NewSectionReader(im.r, r.lba*SectorSize, r.size), nil
}

// ReadFile reads the file at p, refusing one larger than limit bytes.
func (im *Image) ReadFile(p string, limit int64) ([]byte, error) {
	sr, err := im.Open(p)
	if err != nil {
		return nil, err
	}
	if sr.Size() > limit {
		return nil, fmt.Errorf("iso9660: %s has %d bytes, more than %d", p, sr.Size(), limit)
	}
	b := make([]byte, sr.Size())
	if _, err := sr.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && len(b) == 0) {
		return nil, fmt.Errorf("iso9660: read %s: %w", p, err)
	}
	return b, nil
}
