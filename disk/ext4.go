package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A minimal read-only ext2/3/4 reader: superblock, group descriptors,
// inodes, extent trees and classic block maps, linear directories. It reads
// untrusted disks, so every size, count and offset is bounded before use.

const (
	ext4SuperOffset   = 1024
	ext4Magic         = 0xEF53
	ext4RootInode     = 2
	ext4ExtentsFlag   = 0x80000
	ext4InlineFlag    = 0x10000000
	ext4Incompat64Bit = 0x80
	ext4IncompatMeta  = 0x10
	ext4ExtentMagic   = 0xF30A
	ext4MaxDepth      = 5
	ext4MaxPathParts  = 32
	ext4MaxDirBytes   = 4 << 20
	ext4MaxExtentRefs = 4096
	ext4ModeDir       = 0x4000
	ext4ModeReg       = 0x8000
	ext4ModeMask      = 0xF000
)

// ErrNotExt4 means the bytes hold no ext2/3/4 superblock.
var ErrNotExt4 = errors.New("no ext2/3/4 file system")

// Ext4Super is what metalbed needs of an ext2/3/4 superblock.
type Ext4Super struct {
	UUID  string // as blkid prints it
	Label string
	// BlockSize in bytes and Blocks the file system size in blocks.
	BlockSize int64
	Blocks    int64
}

// Size is the file system size in bytes.
func (s Ext4Super) Size() int64 { return s.BlockSize * s.Blocks }

// ReadExt4Super reads the superblock of the file system starting at byte 0 of r.
func ReadExt4Super(r io.ReaderAt) (Ext4Super, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, ext4SuperOffset); err != nil {
		return Ext4Super{}, fmt.Errorf("%w: read superblock: %v", ErrNotExt4, err)
	}
	return parseExt4Super(sb)
}

func parseExt4Super(sb []byte) (Ext4Super, error) {
	if binary.LittleEndian.Uint16(sb[0x38:]) != ext4Magic {
		return Ext4Super{}, ErrNotExt4
	}
	logBS := binary.LittleEndian.Uint32(sb[0x18:])
	if logBS > 6 {
		return Ext4Super{}, fmt.Errorf("%w: block size 2^%d KiB", ErrNotExt4, logBS)
	}
	var u [16]byte
	copy(u[:], sb[0x68:0x78])
	s := Ext4Super{
		UUID:      formatUUID(u),
		Label:     strings.TrimRight(string(sb[0x78:0x88]), "\x00"),
		BlockSize: 1024 << logBS,
		Blocks:    int64(binary.LittleEndian.Uint32(sb[0x04:])),
	}
	if binary.LittleEndian.Uint32(sb[0x60:])&ext4Incompat64Bit != 0 {
		s.Blocks |= int64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	return s, nil
}

// ext4FS is an opened read-only file system over a bounded region.
type ext4FS struct {
	r              io.ReaderAt
	size           int64
	bs             int64
	inodesPerGroup uint32
	inodesCount    uint32
	inodeSize      int64
	descSize       int64
	gdtBlock       int64
	is64           bool
	metaBG         bool
	groups         int64
}

func openExt4(r io.ReaderAt, size int64) (*ext4FS, error) {
	sb := make([]byte, 1024)
	if size < ext4SuperOffset+1024 {
		return nil, ErrNotExt4
	}
	if _, err := r.ReadAt(sb, ext4SuperOffset); err != nil {
		return nil, fmt.Errorf("%w: read superblock: %v", ErrNotExt4, err)
	}
	s, err := parseExt4Super(sb)
	if err != nil {
		return nil, err
	}
	fs := &ext4FS{r: r, size: size, bs: s.BlockSize}
	fs.inodesCount = binary.LittleEndian.Uint32(sb[0x00:])
	firstData := int64(binary.LittleEndian.Uint32(sb[0x14:]))
	blocksPerGroup := int64(binary.LittleEndian.Uint32(sb[0x20:]))
	fs.inodesPerGroup = binary.LittleEndian.Uint32(sb[0x28:])
	fs.inodeSize = 128
	if binary.LittleEndian.Uint32(sb[0x4C:]) >= 1 {
		fs.inodeSize = int64(binary.LittleEndian.Uint16(sb[0x58:]))
	}
	fs.is64 = binary.LittleEndian.Uint32(sb[0x60:])&ext4Incompat64Bit != 0
	fs.metaBG = binary.LittleEndian.Uint32(sb[0x60:])&ext4IncompatMeta != 0
	fs.descSize = 32
	if fs.is64 {
		fs.descSize = int64(binary.LittleEndian.Uint16(sb[0xFE:]))
	}
	switch {
	case fs.inodeSize < 128 || fs.inodeSize > fs.bs || fs.inodeSize&(fs.inodeSize-1) != 0:
		return nil, fmt.Errorf("ext4: bad inode size %d", fs.inodeSize)
	case fs.descSize < 32 || fs.descSize > 1024 || fs.descSize&(fs.descSize-1) != 0:
		return nil, fmt.Errorf("ext4: bad group descriptor size %d", fs.descSize)
	case fs.inodesPerGroup == 0 || blocksPerGroup == 0:
		return nil, fmt.Errorf("ext4: zero inodes or blocks per group")
	case firstData > 1:
		return nil, fmt.Errorf("ext4: first data block %d", firstData)
	}
	fs.groups = (s.Blocks - firstData + blocksPerGroup - 1) / blocksPerGroup
	if fs.groups <= 0 || fs.groups > 1<<24 {
		return nil, fmt.Errorf("ext4: %d block groups", fs.groups)
	}
	fs.gdtBlock = firstData + 1
	return fs, nil
}

// readBlockRange reads n bytes at byte offset off inside the file system,
// refusing anything outside the region.
func (fs *ext4FS) readAt(p []byte, off int64) error {
	if off < 0 || off > fs.size || int64(len(p)) > fs.size-off {
		return fmt.Errorf("ext4: read of %d bytes at %d outside the %d-byte file system", len(p), off, fs.size)
	}
	if _, err := fs.r.ReadAt(p, off); err != nil {
		return fmt.Errorf("ext4: read at %d: %w", off, err)
	}
	return nil
}

type ext4Inode struct {
	mode  uint16
	size  int64
	flags uint32
	block [60]byte
}

func (fs *ext4FS) inode(n uint32) (ext4Inode, error) {
	var in ext4Inode
	if n == 0 || n > fs.inodesCount {
		return in, fmt.Errorf("ext4: inode %d out of range", n)
	}
	group := int64((n - 1) / fs.inodesPerGroup)
	index := int64((n - 1) % fs.inodesPerGroup)
	if group >= fs.groups {
		return in, fmt.Errorf("ext4: inode %d in group %d beyond %d groups", n, group, fs.groups)
	}
	if fs.metaBG && group >= fs.bs/fs.descSize {
		// With meta_bg, descriptors past the first block live elsewhere.
		return in, fmt.Errorf("ext4: inode %d: meta_bg group descriptors are not supported", n)
	}
	d := make([]byte, fs.descSize)
	if err := fs.readAt(d, fs.gdtBlock*fs.bs+group*fs.descSize); err != nil {
		return in, err
	}
	table := int64(binary.LittleEndian.Uint32(d[0x8:]))
	if fs.is64 && fs.descSize >= 64 {
		table |= int64(binary.LittleEndian.Uint32(d[0x28:])) << 32
	}
	raw := make([]byte, 128)
	if table <= 0 || table > fs.size/fs.bs {
		return in, fmt.Errorf("ext4: inode table of group %d at block %d", group, table)
	}
	if err := fs.readAt(raw, table*fs.bs+index*fs.inodeSize); err != nil {
		return in, err
	}
	in.mode = binary.LittleEndian.Uint16(raw[0x0:])
	in.size = int64(binary.LittleEndian.Uint32(raw[0x4:])) | int64(binary.LittleEndian.Uint32(raw[0x6C:]))<<32
	in.flags = binary.LittleEndian.Uint32(raw[0x20:])
	copy(in.block[:], raw[0x28:0x28+60])
	if in.size < 0 {
		return in, fmt.Errorf("ext4: inode %d has negative size", n)
	}
	return in, nil
}

// readData returns the first min(size, limit) bytes of an inode's data.
func (fs *ext4FS) readData(in ext4Inode, limit int64) ([]byte, error) {
	if in.size > limit {
		return nil, fmt.Errorf("ext4: %d bytes, more than the %d this reader accepts", in.size, limit)
	}
	out := make([]byte, in.size)
	if in.flags&ext4InlineFlag != 0 {
		if in.size > 60 {
			return nil, errors.New("ext4: inline data beyond i_block is not supported")
		}
		copy(out, in.block[:in.size])
		return out, nil
	}
	budget := ext4MaxExtentRefs
	// fill reads count blocks from physical on into the file from block
	// logical, as one read (an extent is contiguous on disk).
	fill := func(logical, physical, count int64) error {
		off := logical * fs.bs
		if off >= in.size {
			return nil
		}
		count = min(count, (in.size-off+fs.bs-1)/fs.bs) // blocks past the end are not read
		switch last := fs.size/fs.bs - 1; {
		case physical <= 0:
			return fmt.Errorf("ext4: data block %d outside the file system", physical)
		case physical+count-1 > last:
			return fmt.Errorf("ext4: data block %d outside the file system", max(physical, last+1))
		}
		return fs.readAt(out[off:min(off+count*fs.bs, in.size)], physical*fs.bs)
	}
	if in.flags&ext4ExtentsFlag != 0 {
		if err := fs.walkExtents(in.block[:], 0, &budget, fill); err != nil {
			return nil, err
		}
		return out, nil
	}
	// Classic block map: 12 direct blocks and one indirect block.
	for i := 0; i < 12; i++ {
		b := int64(binary.LittleEndian.Uint32(in.block[4*i:]))
		if b != 0 {
			if err := fill(int64(i), b, 1); err != nil {
				return nil, err
			}
		}
	}
	if ind := int64(binary.LittleEndian.Uint32(in.block[48:])); ind != 0 && in.size > 12*fs.bs {
		if ind >= fs.size/fs.bs {
			return nil, fmt.Errorf("ext4: indirect block %d outside the file system", ind)
		}
		blk := make([]byte, fs.bs)
		if err := fs.readAt(blk, ind*fs.bs); err != nil {
			return nil, err
		}
		for i := int64(0); i < fs.bs/4; i++ {
			b := int64(binary.LittleEndian.Uint32(blk[4*i:]))
			if b != 0 {
				if err := fill(12+i, b, 1); err != nil {
					return nil, err
				}
			}
		}
		if in.size > (12+fs.bs/4)*fs.bs {
			return nil, errors.New("ext4: double-indirect block maps are not supported")
		}
	}
	return out, nil
}

func (fs *ext4FS) walkExtents(node []byte, depth int, budget *int, fill func(logical, physical, count int64) error) error {
	if depth > ext4MaxDepth {
		return errors.New("ext4: extent tree too deep")
	}
	if len(node) < 12 || binary.LittleEndian.Uint16(node[0:]) != ext4ExtentMagic {
		return errors.New("ext4: bad extent header")
	}
	entries := int(binary.LittleEndian.Uint16(node[2:]))
	treeDepth := binary.LittleEndian.Uint16(node[6:])
	if 12+12*entries > len(node) {
		return fmt.Errorf("ext4: %d extents overflow their node", entries)
	}
	for i := 0; i < entries; i++ {
		*budget--
		if *budget < 0 {
			return errors.New("ext4: too many extents")
		}
		e := node[12+12*i : 24+12*i]
		logical := int64(binary.LittleEndian.Uint32(e[0:]))
		if treeDepth == 0 {
			n := int64(binary.LittleEndian.Uint16(e[4:]))
			if n > 32768 { // unwritten extent: reads as zeros
				continue
			}
			phys := int64(binary.LittleEndian.Uint16(e[6:]))<<32 | int64(binary.LittleEndian.Uint32(e[8:]))
			if err := fill(logical, phys, n); err != nil {
				return err
			}
			continue
		}
		leaf := int64(binary.LittleEndian.Uint32(e[4:])) | int64(binary.LittleEndian.Uint16(e[8:]))<<32
		if leaf <= 0 || leaf >= fs.size/fs.bs {
			return fmt.Errorf("ext4: extent node at block %d outside the file system", leaf)
		}
		child := make([]byte, fs.bs)
		if err := fs.readAt(child, leaf*fs.bs); err != nil {
			return err
		}
		if err := fs.walkExtents(child, depth+1, budget, fill); err != nil {
			return err
		}
	}
	return nil
}

// lookup resolves an absolute path to an inode number.
func (fs *ext4FS) lookup(path string) (uint32, ext4Inode, error) {
	parts := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	if len(parts) > ext4MaxPathParts {
		return 0, ext4Inode{}, fmt.Errorf("ext4: path %q too deep", path)
	}
	ino := uint32(ext4RootInode)
	in, err := fs.inode(ino)
	if err != nil {
		return 0, in, err
	}
	for _, name := range parts {
		if in.mode&ext4ModeMask != ext4ModeDir {
			return 0, in, fmt.Errorf("ext4: %q: not a directory on the way", path)
		}
		data, err := fs.readData(in, ext4MaxDirBytes)
		if err != nil {
			return 0, in, err
		}
		next, err := fs.findEntry(data, name)
		if err != nil {
			return 0, in, fmt.Errorf("ext4: %s: %w", path, err)
		}
		ino = next
		if in, err = fs.inode(ino); err != nil {
			return 0, in, err
		}
	}
	return ino, in, nil
}

// findEntry scans a directory linearly. Hash-tree directories read the same
// way: their index blocks look like empty entries to a linear scan.
func (fs *ext4FS) findEntry(data []byte, name string) (uint32, error) {
	for blk := int64(0); blk*fs.bs < int64(len(data)); blk++ {
		b := data[blk*fs.bs : min((blk+1)*fs.bs, int64(len(data)))]
		for off := 0; off+8 <= len(b); {
			ino := binary.LittleEndian.Uint32(b[off:])
			recLen := int(binary.LittleEndian.Uint16(b[off+4:]))
			nameLen := int(b[off+6])
			if recLen < 8 || off+recLen > len(b) {
				break
			}
			if ino != 0 && 8+nameLen <= recLen && string(b[off+8:off+8+nameLen]) == name {
				return ino, nil
			}
			off += recLen
		}
	}
	return 0, fmt.Errorf("%q not found", name)
}

// ReadExt4File reads a regular file of at most limit bytes from the ext2/3/4
// file system held in the first size bytes of r.
func ReadExt4File(r io.ReaderAt, size int64, path string, limit int64) ([]byte, error) {
	fs, err := openExt4(r, size)
	if err != nil {
		return nil, err
	}
	_, in, err := fs.lookup(path)
	if err != nil {
		return nil, err
	}
	if in.mode&ext4ModeMask != ext4ModeReg {
		return nil, fmt.Errorf("ext4: %s is not a regular file", path)
	}
	return fs.readData(in, limit)
}
