package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path"
	"sort"
	"strings"
)

// fatImageFile is a file of a FAT image built in memory.
type fatImageFile struct {
	path string // slash-separated, 8.3 components, e.g. EFI/BOOT/BOOTX64.EFI
	data []byte
}

// FAT image geometry: what `mkfs.vfat -C` picks for images of a few
// megabytes (512-byte sectors, 2 KiB clusters, 512 root entries, 2 FATs).
const (
	fatImgSector      = 512
	fatImgSPC         = 4
	fatImgCluster     = fatImgSector * fatImgSPC
	fatImgRootEntries = 512
	fatImgMaxClusters = 65524 // FAT16's last
	fat12MaxClusters  = 4084
)

// makeFATImage builds a FAT12 (or, past about 8 MB, FAT16) file system
// image holding files, sized to them with some room to spare, as
// `mkfs.vfat -C` and mcopy would. It is for an El Torito EFI image
// (efiboot.img): FAT32 (makeFAT32) needs at least 33 MB, most of it
// empty, in every ISO. Directories get one cluster each (64 entries).
func makeFATImage(label string, files []fatImageFile) ([]byte, error) {
	lab, err := fatLabel(label)
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	dirs := map[string]bool{}
	used := int64(0)
	for _, f := range files {
		for d := path.Dir(f.path); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			used++
		}
		used += (int64(len(f.data)) + fatImgCluster - 1) / fatImgCluster
	}
	n := used + used/8 + 16
	if n > fat12MaxClusters-16 && n < fat12MaxClusters+16 {
		n = fat12MaxClusters + 16 // stay clear of the FAT12/FAT16 boundary
	}
	if n > fatImgMaxClusters {
		return nil, fmt.Errorf("FAT image: %d clusters of files (FAT16 holds %d)", used, fatImgMaxClusters)
	}
	fat12 := n <= fat12MaxClusters
	fatBytes := (n + 2) * 2
	if fat12 {
		fatBytes = ((n+2)*3 + 1) / 2
	}
	fatSecs := (fatBytes + fatImgSector - 1) / fatImgSector
	rootSecs := int64(fatImgRootEntries * 32 / fatImgSector)
	dataSec := 1 + 2*fatSecs + rootSecs
	total := dataSec + n*fatImgSPC
	total = (total + 3) / 4 * 4 // whole CD sectors
	img := make([]byte, total*fatImgSector)
	b := &fatImage{img: img, fat12: fat12, fatSecs: fatSecs, dataOff: dataSec * fatImgSector,
		rootOff: (1 + 2*fatSecs) * fatImgSector, next: 2, max: uint32(n + 1), dirs: map[string]uint32{"/": 0}}
	b.bootSector(total, lab, files)
	b.set(0, 0xfffff8)
	b.set(1, 0xffffff)
	var root [11]byte
	copy(root[:], lab)
	putFATEntry(img[b.rootOff:], root, 0x08, 0, 0, 0) // the volume label
	for _, f := range files {
		if err := b.addFile(f); err != nil {
			return nil, fmt.Errorf("FAT image %s: %w", f.path, err)
		}
	}
	copy(img[(1+fatSecs)*fatImgSector:], img[fatImgSector:(1+fatSecs)*fatImgSector]) // the second FAT
	return img, nil
}

// fatLabel pads a FAT volume label to 11 upper-case bytes.
func fatLabel(label string) (string, error) {
	if label == "" {
		label = "NO NAME"
	}
	up := strings.ToUpper(label)
	if len(up) > 11 || strings.ContainsAny(up, `"*+,./:;<=>?[\]|`) {
		return "", fmt.Errorf("FAT label %q: at most 11 characters, no punctuation", label)
	}
	return fmt.Sprintf("%-11s", up), nil
}

type fatImage struct {
	img              []byte
	fat12            bool
	fatSecs          int64
	dataOff, rootOff int64
	next, max        uint32 // next free cluster, last cluster
	dirs             map[string]uint32
}

// bootSector writes the BIOS parameter block of a FAT12/16 volume and a
// boot program that halts (the image is never booted by a BIOS).
func (b *fatImage) bootSector(total int64, label string, files []fatImageFile) {
	bs := b.img[:fatImgSector]
	copy(bs, []byte{0xeb, 0x3c, 0x90})
	copy(bs[3:], "METALBED")
	binary.LittleEndian.PutUint16(bs[0x0b:], fatImgSector)
	bs[0x0d] = fatImgSPC
	binary.LittleEndian.PutUint16(bs[0x0e:], 1) // reserved sectors
	bs[0x10] = 2
	binary.LittleEndian.PutUint16(bs[0x11:], fatImgRootEntries)
	if total < 1<<16 {
		binary.LittleEndian.PutUint16(bs[0x13:], uint16(total))
	} else {
		binary.LittleEndian.PutUint32(bs[0x20:], uint32(total))
	}
	bs[0x15] = 0xf8
	binary.LittleEndian.PutUint16(bs[0x16:], uint16(b.fatSecs))
	binary.LittleEndian.PutUint16(bs[0x18:], 32) // sectors per track
	binary.LittleEndian.PutUint16(bs[0x1a:], 64) // heads
	bs[0x24], bs[0x26] = 0x80, 0x29
	h := crc32.NewIEEE()
	for _, f := range files {
		h.Write([]byte(f.path))
		h.Write(f.data)
	}
	binary.LittleEndian.PutUint32(bs[0x27:], h.Sum32()) // serial: from the contents
	copy(bs[0x2b:], label)
	copy(bs[0x36:], "FAT16   ")
	if b.fat12 {
		copy(bs[0x36:], "FAT12   ")
	}
	copy(bs[0x3e:], []byte{0xfa, 0xf4, 0xeb, 0xfd}) // cli; hlt; jmp $-1
	bs[510], bs[511] = 0x55, 0xaa
}

// set writes FAT entry c (12 or 16 bits of v).
func (b *fatImage) set(c uint32, v uint32) {
	fat := b.img[fatImgSector : (1+b.fatSecs)*fatImgSector]
	if !b.fat12 {
		binary.LittleEndian.PutUint16(fat[2*c:], uint16(v))
		return
	}
	off := c * 3 / 2
	cur := binary.LittleEndian.Uint16(fat[off:])
	if c%2 == 0 {
		cur = cur&0xf000 | uint16(v&0xfff)
	} else {
		cur = cur&0x000f | uint16(v&0xfff)<<4
	}
	binary.LittleEndian.PutUint16(fat[off:], cur)
}

// alloc chains n (at least 1) free clusters and returns the first.
func (b *fatImage) alloc(n int64) (uint32, error) {
	n = max(n, 1)
	first := b.next
	if int64(first)+n-1 > int64(b.max) {
		return 0, errors.New("FAT image full")
	}
	for i := uint32(0); i < uint32(n); i++ {
		v := first + i + 1
		if int64(i) == n-1 {
			v = 0xffff // end of chain (0xfff in FAT12)
		}
		b.set(first+i, v)
	}
	b.next += uint32(n)
	return first, nil
}

func (b *fatImage) clusterOff(c uint32) int64 { return b.dataOff + int64(c-2)*fatImgCluster }

// dirArea is where the entries of a directory live: the fixed root
// region, or the directory's one cluster.
func (b *fatImage) dirArea(c uint32) []byte {
	if c == 0 {
		return b.img[b.rootOff : b.rootOff+fatImgRootEntries*32]
	}
	return b.img[b.clusterOff(c) : b.clusterOff(c)+fatImgCluster]
}

// entry adds a directory entry to directory dir (0: the root).
func (b *fatImage) entry(dir uint32, name string, attr byte, cluster uint32, size int64) error {
	sn, flags, err := shortName(name)
	if err != nil {
		return err
	}
	area := b.dirArea(dir)
	for off := 0; off+32 <= len(area); off += 32 {
		if area[off] == 0 {
			putFATEntry(area[off:], sn, attr, flags, cluster, size)
			return nil
		}
		if [11]byte(area[off:off+11]) == sn {
			return fmt.Errorf("%s already exists", name)
		}
	}
	return errors.New("directory full")
}

func (b *fatImage) mkdirAll(dir string) (uint32, error) {
	if c, ok := b.dirs[dir]; ok {
		return c, nil
	}
	parent, err := b.mkdirAll(path.Dir(dir))
	if err != nil {
		return 0, err
	}
	c, err := b.alloc(1)
	if err != nil {
		return 0, err
	}
	putDotEntries(b.dirArea(c), c, parent)
	if err := b.entry(parent, path.Base(dir), 0x10, c, 0); err != nil {
		return 0, err
	}
	b.dirs[dir] = c
	return c, nil
}

func (b *fatImage) addFile(f fatImageFile) error {
	p := path.Clean("/" + f.path)
	dir, err := b.mkdirAll(path.Dir(p))
	if err != nil {
		return err
	}
	var first uint32
	if len(f.data) > 0 {
		if first, err = b.alloc((int64(len(f.data)) + fatImgCluster - 1) / fatImgCluster); err != nil {
			return err
		}
		copy(b.img[b.clusterOff(first):], f.data)
	}
	return b.entry(dir, path.Base(p), 0x20, first, int64(len(f.data)))
}
