package disk

import (
	"encoding/binary"
	"fmt"
)

// Linux swap area, version 1 (what mkswap writes): in the first page, the
// 1024 boot-block bytes stay zero, then version, last page, bad-page count,
// UUID and a 16-byte label; the page ends with the signature SWAPSPACE2.
const (
	swapPageSize  = 4096
	swapSignature = "SWAPSPACE2"
	swapLabel     = "swap1"
)

// swapHeader returns the first page of a swap area of size bytes.
func swapHeader(size int64, uuid [16]byte, label string) ([]byte, error) {
	pages := size / swapPageSize
	if pages < 10 {
		return nil, fmt.Errorf("swap: %d bytes is less than the 10 pages mkswap requires", size)
	}
	if len(label) > 16 {
		return nil, fmt.Errorf("swap: label %q longer than 16 bytes", label)
	}
	p := make([]byte, swapPageSize)
	binary.LittleEndian.PutUint32(p[1024:], 1)
	binary.LittleEndian.PutUint32(p[1028:], uint32(pages-1))
	binary.LittleEndian.PutUint32(p[1032:], 0)
	copy(p[1036:1052], uuid[:])
	copy(p[1052:1068], label)
	copy(p[swapPageSize-len(swapSignature):], swapSignature)
	return p, nil
}

// parseSwap recognises a swap header and returns its UUID and label.
func parseSwap(p []byte) (uuid, label string, ok bool) {
	if len(p) < swapPageSize || string(p[swapPageSize-len(swapSignature):swapPageSize]) != swapSignature {
		return "", "", false
	}
	var u [16]byte
	copy(u[:], p[1036:1052])
	return formatUUID(u), cString(p[1052:1068]), true
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
