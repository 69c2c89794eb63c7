package iso9660

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf16"
)

// Writer lays out and writes an ISO 9660 image the way `mkisofs -r -J -l`
// does: a primary tree with upper-case ISO names and Rock Ridge (SUSP SP,
// ER, PX, NM) entries carrying the real names, a Joliet tree, both pairs of
// path tables, and optionally an El Torito boot catalog with a BIOS and an
// EFI entry. File contents are read only while Write runs, each once, in
// order, so files of hundreds of megabytes are streamed.
type Writer struct {
	// VolumeID is the volume label (at most 32 characters; Joliet keeps
	// the first 16).
	VolumeID string
	// Publisher is the publisher identifier (optional).
	Publisher string
	// Time stamps the volume and its files; zero means time.Now.
	Time time.Time

	files []*node
	boot  []*BootSpec
}

// BootSpec is an El Torito entry: the file on the image that firmware of
// Platform boots, without emulation.
type BootSpec struct {
	Platform Platform
	// Path is the boot file, added with AddFile.
	Path string
	// Sectors is the count of 512-byte sectors a BIOS loads (4 for
	// ISOLINUX, as -boot-load-size 4); 0 means the file's size (capped to
	// the 16-bit field; an EFI entry that does not fit gets 0, which EDK2
	// reads as "to the end of the medium", and a FAT image says its size).
	Sectors uint16
	// InfoTable patches the El Torito boot information table into the
	// file at byte 8, as -boot-info-table does (ISOLINUX needs it). The
	// file is then read into memory: boot files are small.
	InfoTable bool
}

// Limits of what Writer writes.
const (
	// MaxFileSize is the largest file: one extent (no multi-extent files).
	MaxFileSize     = 1<<32 - 1
	maxBootInfoFile = 64 << 20
	maxNameBytes    = 120 // a name component; keeps a record with Rock Ridge under 255 bytes
)

// node is a file or directory of the image being written.
type node struct {
	name      string // the real name (Rock Ridge, Joliet)
	isoName   string // the primary tree's identifier
	dir       bool
	parent    *node
	children  []*node     // sorted by ISO 9660 identifier
	jchildren []*node     // sorted by Joliet identifier
	src       io.ReaderAt // files
	size      int64
	data      []byte // files patched in memory (boot info table)
	lba       int64  // primary extent (files: the data)
	jlba      int64  // Joliet directory extent
	dirSize   int64  // primary directory extent bytes
	jdirSize  int64
	number    int // path table directory number (1-based)
	jnumber   int
}

// AddFile adds the file p (slash-separated) with size bytes read from src
// while Write runs. Parent directories are created.
func (w *Writer) AddFile(p string, src io.ReaderAt, size int64) error {
	if size < 0 || size > MaxFileSize {
		return fmt.Errorf("iso9660: %s: %d bytes (a file must be smaller than 4 GiB)", p, size)
	}
	if src == nil {
		return fmt.Errorf("iso9660: %s: no contents", p)
	}
	clean := strings.Trim(path.Clean("/"+p), "/")
	if clean == "" {
		return fmt.Errorf("iso9660: %q is not a file name", p)
	}
	for _, part := range strings.Split(clean, "/") {
		if len(part) > maxNameBytes {
			return fmt.Errorf("iso9660: %s: name %q is longer than %d bytes", p, part, maxNameBytes)
		}
	}
	for _, f := range w.files {
		if strings.EqualFold(f.name, clean) {
			return fmt.Errorf("iso9660: %s added twice", clean)
		}
	}
	w.files = append(w.files, &node{name: clean, src: src, size: size})
	return nil
}

// AddBoot adds an El Torito entry. The first entry is the catalog's
// initial (default) entry; each further one gets a section of its own.
func (w *Writer) AddBoot(b BootSpec) error {
	if b.Platform != PlatformBIOS && b.Platform != PlatformEFI {
		return fmt.Errorf("iso9660: boot entry for %s (only BIOS and EFI are written)", b.Platform)
	}
	w.boot = append(w.boot, &b)
	return nil
}

// layout is an image's sectors, decided before any byte is written.
type layout struct {
	root, jroot *node
	dirs, jdirs []*node // breadth first: path table order
	files       []*node // data order
	bootFiles   []*node // per w.boot
	catalogLBA  int64
	pathLBA     [4]int64 // L, M, Joliet L, Joliet M
	pathSize    int64    // primary path table bytes
	jpathSize   int64
	total       int64 // sectors
	descriptors int64 // volume descriptors incl. terminator
	when        time.Time
}

// Write writes the image to out, reading every file once.
func (w *Writer) Write(out io.Writer) error {
	if len(w.VolumeID) > 32 {
		return fmt.Errorf("iso9660: volume ID %q is longer than 32 characters", w.VolumeID)
	}
	l, err := w.layout()
	if err != nil {
		return err
	}
	if err := w.patchBootInfo(l); err != nil {
		return err
	}
	ww := &sectorWriter{w: out}
	ww.pad(16 * SectorSize) // system area
	ww.write(w.pvd(l, false))
	if len(w.boot) > 0 {
		ww.write(bootRecord(l.catalogLBA))
	}
	ww.write(w.pvd(l, true))
	term := make([]byte, SectorSize)
	term[0] = 255
	copy(term[1:], "CD001\x01")
	ww.write(term)
	if len(w.boot) > 0 {
		ww.write(w.catalog(l))
	}
	for i, t := range []struct {
		joliet, bigEndian bool
	}{{false, false}, {false, true}, {true, false}, {true, true}} {
		if ww.n != l.pathLBA[i]*SectorSize {
			return fmt.Errorf("iso9660: internal layout error at path table %d", i)
		}
		ww.write(padSector(pathTable(l.treeDirs(t.joliet), t.joliet, t.bigEndian)))
	}
	for _, joliet := range []bool{false, true} {
		for _, d := range l.treeDirs(joliet) {
			ww.write(dirExtent(d, joliet, l))
		}
	}
	for _, f := range l.files {
		if ww.err == nil && ww.n != f.lba*SectorSize {
			return fmt.Errorf("iso9660: internal layout error at %s", f.name)
		}
		ww.copyFile(f)
	}
	if ww.err == nil && ww.n != l.total*SectorSize {
		return fmt.Errorf("iso9660: internal layout error: wrote %d bytes, laid out %d sectors", ww.n, l.total)
	}
	return ww.err
}

// layout builds the trees and assigns every sector.
func (w *Writer) layout() (*layout, error) {
	l := &layout{when: w.Time}
	if l.when.IsZero() {
		l.when = time.Now()
	}
	l.when = l.when.UTC().Truncate(time.Second)
	l.root = &node{dir: true}
	for _, f := range w.files {
		if err := insert(l.root, f); err != nil {
			return nil, err
		}
	}
	if err := assignISONames(l.root); err != nil {
		return nil, err
	}
	l.dirs, l.jdirs = breadthFirst(l.root, false), breadthFirst(l.root, true)
	for i := range l.dirs {
		l.dirs[i].number, l.jdirs[i].jnumber = i+1, i+1
	}
	for _, b := range w.boot {
		f := find(l.root, b.Path)
		if f == nil || f.dir {
			return nil, fmt.Errorf("iso9660: boot file %s is not a file on the image", b.Path)
		}
		l.bootFiles = append(l.bootFiles, f)
	}
	// Sectors: 16 system, descriptors, catalog, path tables, directories, files.
	next := int64(16)
	l.descriptors = 2 + 1 // PVD, Joliet SVD, terminator
	if len(w.boot) > 0 {
		l.descriptors++
	}
	next += l.descriptors
	if len(w.boot) > 0 {
		l.catalogLBA = next
		next++
	}
	l.pathSize = int64(len(pathTable(l.dirs, false, false)))
	l.jpathSize = int64(len(pathTable(l.jdirs, true, false)))
	for i, size := range []int64{l.pathSize, l.pathSize, l.jpathSize, l.jpathSize} {
		l.pathLBA[i] = next
		next += sectors(size)
	}
	for _, joliet := range []bool{false, true} {
		for _, d := range l.treeDirs(joliet) {
			size := dirSize(d, joliet)
			if joliet {
				d.jlba, d.jdirSize = next, size
			} else {
				d.lba, d.dirSize = next, size
			}
			next += sectors(size)
		}
	}
	l.files = filesInOrder(l.root)
	for _, f := range l.files {
		f.lba = next
		next += sectors(f.size)
	}
	if next > 1<<32-1 {
		return nil, errors.New("iso9660: image larger than 8 TiB")
	}
	l.total = next
	return l, nil
}

func sectors(n int64) int64 { return (n + SectorSize - 1) / SectorSize }

// insert puts file f under root, creating directories.
func insert(root *node, f *node) error {
	parts := strings.Split(f.name, "/")
	cur := root
	for i, part := range parts {
		var next *node
		for _, c := range cur.children {
			if c.name == part {
				next = c
			}
		}
		last := i == len(parts)-1
		switch {
		case next == nil && last:
			f.name, f.parent = part, cur
			cur.children = append(cur.children, f)
			return nil
		case next == nil:
			next = &node{name: part, dir: true, parent: cur}
			cur.children = append(cur.children, next)
		case last || !next.dir:
			return fmt.Errorf("iso9660: %s is both a file and a directory", strings.Join(parts[:i+1], "/"))
		}
		cur = next
	}
	return nil
}

// find looks up a slash-separated path by real names.
func find(root *node, p string) *node {
	cur := root
	for _, part := range strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/") {
		var next *node
		for _, c := range cur.children {
			if c.name == part {
				next = c
			}
		}
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

// assignISONames gives every node an identifier of d-characters (upper
// case letters, digits, "_"), at most 30 characters as -l allows, files
// with a version (";1"), and sorts each directory by identifier as
// ISO 9660 requires. Two names that map to one identifier are an error.
func assignISONames(d *node) error {
	seen := map[string]string{}
	for _, c := range d.children {
		c.isoName = isoName(c.name, c.dir)
		if prev, ok := seen[c.isoName]; ok {
			return fmt.Errorf("iso9660: %q and %q have the same ISO 9660 name %s", prev, c.name, c.isoName)
		}
		seen[c.isoName] = c.name
		if c.dir {
			if err := assignISONames(c); err != nil {
				return err
			}
		}
	}
	sort.Slice(d.children, func(i, j int) bool { return d.children[i].isoName < d.children[j].isoName })
	d.jchildren = slices.Clone(d.children)
	sort.Slice(d.jchildren, func(i, j int) bool {
		return bytes.Compare(jolietName(d.jchildren[i]), jolietName(d.jchildren[j])) < 0
	})
	return nil
}

func isoName(name string, dir bool) string {
	dchars := func(s string, max int) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			if b.Len() == max {
				break
			}
			if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	if dir {
		return dchars(name, 31)
	}
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	ext = dchars(ext, 3)
	return dchars(base, 30-len(ext)) + "." + ext + ";1"
}

// breadthFirst lists the directories in path table order: by level, then
// parent, then name (of the Joliet tree or the primary one).
func breadthFirst(root *node, joliet bool) []*node {
	out := []*node{root}
	for i := 0; i < len(out); i++ {
		for _, c := range out[i].sorted(joliet) {
			if c.dir {
				out = append(out, c)
			}
		}
	}
	return out
}

func (n *node) sorted(joliet bool) []*node {
	if joliet {
		return n.jchildren
	}
	return n.children
}

func (l *layout) treeDirs(joliet bool) []*node {
	if joliet {
		return l.jdirs
	}
	return l.dirs
}

// filesInOrder lists the files depth first, in directory order.
func filesInOrder(d *node) []*node {
	var out []*node
	var walk func(*node)
	walk = func(d *node) {
		for _, c := range d.children {
			if c.dir {
				walk(c)
			} else {
				out = append(out, c)
			}
		}
	}
	walk(d)
	return out
}

// jolietName is a node's Joliet identifier (UCS-2, at most 64
// characters, without a version as genisoimage writes it).
func jolietName(n *node) []byte {
	u := utf16.Encode([]rune(n.name))
	if len(u) > 64 { // Joliet's limit
		u = u[:64]
	}
	return ucs2(u)
}

func ucs2(u []uint16) []byte {
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// Rock Ridge: the entries SUSP and RRIP 1.10 define, as far as readers
// need them for names and modes.
const (
	rrID   = "RRIP_1991A"
	rrDesc = "THE ROCK RIDGE INTERCHANGE PROTOCOL"
	rrSrc  = "IEEE P1282"
)

// systemUseFor is the Rock Ridge area of a record: SP and ER on the root's
// ".", PX on every record, NM on named ones.
func systemUseFor(n *node, self, rootDot bool) []byte {
	var su []byte
	if rootDot {
		su = append(su, 'S', 'P', 7, 1, 0xbe, 0xef, 0)
		er := []byte{'E', 'R', byte(8 + len(rrID) + len(rrDesc) + len(rrSrc)), 1, byte(len(rrID)), byte(len(rrDesc)), byte(len(rrSrc)), 1}
		er = append(er, rrID+rrDesc+rrSrc...)
		su = append(su, er...)
	}
	mode, links := uint32(0o100444), uint32(1)
	if n.dir {
		mode, links = 0o40555, 2
	}
	px := make([]byte, 36)
	copy(px, "PX")
	px[2], px[3] = 36, 1
	bothEndian32(px[4:], mode)
	bothEndian32(px[12:], links)
	su = append(su, px...)
	if !self {
		name := []byte(n.name)
		if len(name) > 255-5 {
			name = name[:250]
		}
		su = append(su, 'N', 'M', byte(5+len(name)), 1, 0)
		su = append(su, name...)
	}
	return su
}

// encodeRecord encodes a directory record: target's extent, ident, and for the
// primary tree the Rock Ridge area of rr.
func encodeRecord(target *node, ident []byte, joliet bool, su []byte, l *layout, when time.Time) []byte {
	n := 33 + len(ident)
	if len(ident)%2 == 0 {
		n++
	}
	if !joliet {
		n += len(su)
	}
	if n%2 == 1 {
		n++
	}
	b := make([]byte, n)
	b[0] = byte(n)
	lba, size := target.lba, target.size
	if target.dir {
		lba, size = target.lba, target.dirSize
		if joliet {
			lba, size = target.jlba, target.jdirSize
		}
	}
	if l == nil { // sizing pass
		lba, size = 0, 0
	}
	bothEndian32(b[2:], uint32(lba))
	bothEndian32(b[10:], uint32(size))
	copy(b[18:25], recordTime(when))
	if target.dir {
		b[25] = 0x02
	}
	bothEndian16(b[28:], 1)
	b[32] = byte(len(ident))
	copy(b[33:], ident)
	if !joliet {
		off := 33 + len(ident)
		if len(ident)%2 == 0 {
			off++
		}
		copy(b[off:], su)
	}
	return b
}

// dirRecords are the records of directory d's extent in order: ".", "..",
// then the children.
func dirRecords(d *node, joliet bool, l *layout) [][]byte {
	var when time.Time
	if l != nil {
		when = l.when
	}
	parent := d.parent
	if parent == nil {
		parent = d
	}
	recs := [][]byte{
		encodeRecord(d, []byte{0}, joliet, systemUseFor(d, true, d.parent == nil), l, when),
		encodeRecord(parent, []byte{1}, joliet, systemUseFor(parent, true, false), l, when),
	}
	for _, c := range d.sorted(joliet) {
		ident := []byte(c.isoName)
		if joliet {
			ident = jolietName(c)
		}
		recs = append(recs, encodeRecord(c, ident, joliet, systemUseFor(c, false, false), l, when))
	}
	return recs
}

// packRecords lays records into sectors (none crosses a sector boundary).
func packRecords(recs [][]byte) []byte {
	var out []byte
	for _, r := range recs {
		if room := SectorSize - len(out)%SectorSize; len(r) > room {
			out = append(out, make([]byte, room)...)
		}
		out = append(out, r...)
	}
	return padSector(out)
}

func dirSize(d *node, joliet bool) int64 { return int64(len(packRecords(dirRecords(d, joliet, nil)))) }

func dirExtent(d *node, joliet bool, l *layout) []byte {
	return packRecords(dirRecords(d, joliet, l))
}

// pathTable encodes a path table (L: little endian, M: big endian).
func pathTable(dirs []*node, joliet, bigEndian bool) []byte {
	var order binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		order = binary.BigEndian
	}
	var out []byte
	for _, d := range dirs {
		ident := []byte{0}
		if d.parent != nil {
			ident = []byte(d.isoName)
			if joliet {
				ident = jolietName(d)
			}
		}
		e := make([]byte, 8+len(ident)+len(ident)%2)
		e[0] = byte(len(ident))
		lba := d.lba
		if joliet {
			lba = d.jlba
		}
		order.PutUint32(e[2:], uint32(lba))
		parent := 1
		switch {
		case d.parent != nil && joliet:
			parent = d.parent.jnumber
		case d.parent != nil:
			parent = d.parent.number
		}
		order.PutUint16(e[6:], uint16(parent))
		copy(e[8:], ident)
		out = append(out, e...)
	}
	return out
}

// pvd is the primary volume descriptor, or the Joliet supplementary one.
func (w *Writer) pvd(l *layout, joliet bool) []byte {
	b := make([]byte, SectorSize)
	b[0] = 1
	copy(b[1:], "CD001\x01")
	text := func(off, n int, s string) {
		if joliet {
			u := utf16.Encode([]rune(s))
			for len(u)*2 < n {
				u = append(u, ' ')
			}
			copy(b[off:off+n], ucs2(u[:n/2]))
			return
		}
		copy(b[off:off+n], fmt.Sprintf("%-*s", n, s))
	}
	if joliet {
		b[0] = 2
		copy(b[88:], "%/E")
	}
	text(8, 32, "LINUX")
	text(40, 32, w.VolumeID)
	bothEndian32(b[80:], uint32(l.total))
	bothEndian16(b[120:], 1)
	bothEndian16(b[124:], 1)
	bothEndian16(b[128:], SectorSize)
	size, lpath, mpath, root := l.pathSize, l.pathLBA[0], l.pathLBA[1], l.root
	if joliet {
		size, lpath, mpath = l.jpathSize, l.pathLBA[2], l.pathLBA[3]
	}
	bothEndian32(b[132:], uint32(size))
	binary.LittleEndian.PutUint32(b[140:], uint32(lpath))
	binary.BigEndian.PutUint32(b[148:], uint32(mpath))
	copy(b[156:190], encodeRecord(root, []byte{0}, joliet, nil, l, l.when))
	text(190, 128, "")
	text(318, 128, w.Publisher)
	text(446, 128, "")
	text(574, 128, "METALBED")
	text(702, 37, "")
	text(739, 37, "")
	text(776, 37, "")
	stamp := volumeTime(l.when)
	copy(b[813:], stamp)
	copy(b[830:], stamp)
	copy(b[847:], "0000000000000000")
	copy(b[864:], stamp)
	b[881] = 1
	return b
}

func bootRecord(catalog int64) []byte {
	b := make([]byte, SectorSize)
	copy(b[1:], "CD001\x01")
	copy(b[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(b[0x47:], uint32(catalog))
	return b
}

// catalog is the El Torito boot catalog: the validation entry (its
// platform is the first entry's), the initial entry, and a section per
// further entry.
func (w *Writer) catalog(l *layout) []byte {
	b := make([]byte, SectorSize)
	v := b[:32]
	v[0], v[1] = 1, byte(w.boot[0].Platform)
	v[30], v[31] = 0x55, 0xAA
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(v[i:])
	}
	binary.LittleEndian.PutUint16(v[28:], -sum)
	off := 32
	for i, spec := range w.boot {
		if i > 0 {
			h := b[off : off+32]
			h[0] = 0x90
			if i == len(w.boot)-1 {
				h[0] = 0x91
			}
			h[1] = byte(spec.Platform)
			binary.LittleEndian.PutUint16(h[2:], 1)
			off += 32
		}
		e := b[off : off+32]
		e[0] = 0x88
		binary.LittleEndian.PutUint16(e[6:], bootSectors(spec, l.bootFiles[i].size))
		binary.LittleEndian.PutUint32(e[8:], uint32(l.bootFiles[i].lba))
		off += 32
	}
	return b
}

func bootSectors(spec *BootSpec, size int64) uint16 {
	if spec.Sectors != 0 {
		return spec.Sectors
	}
	n := (size + 511) / 512
	if n > 0xffff {
		return 0
	}
	return uint16(n)
}

// patchBootInfo reads the files with InfoTable into memory and writes the
// boot information table: the PVD's sector, the file's sector and length,
// and the 32-bit sum of the file's words from byte 64 on.
func (w *Writer) patchBootInfo(l *layout) error {
	for i, spec := range w.boot {
		if !spec.InfoTable {
			continue
		}
		f := l.bootFiles[i]
		if f.size < 64 || f.size > maxBootInfoFile {
			return fmt.Errorf("iso9660: boot file %s: %d bytes cannot hold a boot information table", spec.Path, f.size)
		}
		data := make([]byte, f.size, f.size+3)
		if _, err := f.src.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("iso9660: read boot file %s: %w", spec.Path, err)
		}
		padded := data[:len(data)+(4-len(data)%4)%4]
		var sum uint32
		for off := 64; off < len(padded); off += 4 {
			sum += binary.LittleEndian.Uint32(padded[off:])
		}
		t := data[8:64]
		clear(t)
		binary.LittleEndian.PutUint32(t[0:], 16)
		binary.LittleEndian.PutUint32(t[4:], uint32(f.lba))
		binary.LittleEndian.PutUint32(t[8:], uint32(f.size))
		binary.LittleEndian.PutUint32(t[12:], sum)
		f.data = data
	}
	return nil
}

// BootInfoTable is the El Torito boot information table of a boot file.
type BootInfoTable struct {
	PVD, File int64 // sectors of the primary volume descriptor and of the file
	Length    int64
	Checksum  uint32
}

// ReadBootInfoTable decodes the table at byte 8 of a boot file, and
// reports whether its checksum matches the file's bytes from 64 on.
func ReadBootInfoTable(file []byte) (BootInfoTable, bool, error) {
	if len(file) < 64 {
		return BootInfoTable{}, false, fmt.Errorf("iso9660: boot file of %d bytes has no boot information table", len(file))
	}
	t := BootInfoTable{
		PVD:      int64(binary.LittleEndian.Uint32(file[8:])),
		File:     int64(binary.LittleEndian.Uint32(file[12:])),
		Length:   int64(binary.LittleEndian.Uint32(file[16:])),
		Checksum: binary.LittleEndian.Uint32(file[20:]),
	}
	padded := append(bytes.Clone(file), make([]byte, (4-len(file)%4)%4)...)
	var sum uint32
	for off := 64; off+4 <= len(padded); off += 4 {
		sum += binary.LittleEndian.Uint32(padded[off:])
	}
	return t, sum == t.Checksum, nil
}

func bothEndian32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func bothEndian16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

// recordTime is a directory record's 7-byte time (UTC).
func recordTime(t time.Time) []byte {
	if t.IsZero() {
		return make([]byte, 7)
	}
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

// volumeTime is a volume descriptor's 17-byte time (UTC).
func volumeTime(t time.Time) []byte {
	return append([]byte(t.Format("20060102150405")+"00"), 0)
}

// sectorWriter writes to an io.Writer, counting bytes and keeping the
// first error.
type sectorWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (s *sectorWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	n, err := s.w.Write(b)
	s.n += int64(n)
	s.err = err
}

func (s *sectorWriter) pad(n int64) {
	for s.err == nil && n > 0 {
		k := min(n, SectorSize)
		s.write(make([]byte, k))
		n -= k
	}
}

// copyFile writes a file's data and pads it to a whole sector; a source
// shorter or longer than it said is an error.
func (s *sectorWriter) copyFile(f *node) {
	if s.err != nil {
		return
	}
	var src io.Reader = io.NewSectionReader(f.src, 0, f.size)
	if f.data != nil {
		src = bytes.NewReader(f.data)
	}
	n, err := io.Copy(s, src)
	if err == nil && s.err == nil && n != f.size {
		err = fmt.Errorf("%d of %d bytes (did it shrink?)", n, f.size)
	}
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("iso9660: %s: %w", f.name, err)
		return
	}
	if r := f.size % SectorSize; r != 0 {
		s.pad(SectorSize - r)
	}
}

// Write implements io.Writer for io.Copy.
func (s *sectorWriter) Write(p []byte) (int, error) {
	s.write(p)
	if s.err != nil {
		return 0, s.err
	}
	return len(p), nil
}

// padSector pads b to whole sectors.
func padSector(b []byte) []byte {
	if r := len(b) % SectorSize; r != 0 {
		b = append(b, make([]byte, SectorSize-r)...)
	}
	return b
}
