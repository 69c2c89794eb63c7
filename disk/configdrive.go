package disk

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ConfigDriveMaxBytes is Ironic's limit on a config drive (64 MiB), and the
// size of the partition it gets.
const ConfigDriveMaxBytes = 64 << 20

const configDriveLabel = "config-2"

// ErrBadConfigDrive marks a config drive that decodes to nothing usable.
var ErrBadConfigDrive = errors.New("bad config drive")

// decodeConfigDrive accepts what Ironic accepts in instance_info.configdrive:
// a base64-encoded gzipped image; and, for callers holding the image itself,
// a raw ISO 9660 or FAT image (gzipped or not). It returns the image bytes.
func decodeConfigDrive(in []byte) ([]byte, error) {
	if len(in) == 0 {
		return nil, nil
	}
	data := in
	if !isRawImage(in) && !isGzip(in) {
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(in)))
		if err != nil {
			return nil, fmt.Errorf("%w: neither a disk image nor base64: %v", ErrBadConfigDrive, err)
		}
		data = dec
	}
	if isGzip(data) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrBadConfigDrive, err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, ConfigDriveMaxBytes+1))
		if err != nil {
			return nil, fmt.Errorf("%w: gunzip: %v", ErrBadConfigDrive, err)
		}
		data = out
	}
	if len(data) > ConfigDriveMaxBytes {
		return nil, fmt.Errorf("%w: config drive larger than the 64 MiB Ironic allows", ErrBadConfigDrive)
	}
	if !isRawImage(data) {
		return nil, fmt.Errorf("%w: decoded %d bytes hold no ISO 9660 or FAT file system", ErrBadConfigDrive, len(data))
	}
	return data, nil
}

func isGzip(b []byte) bool { return len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b }

// isRawImage recognises ISO 9660 (CD001 at 32769) or a FAT boot sector.
func isRawImage(b []byte) bool {
	if len(b) >= 32774 && string(b[32769:32774]) == "CD001" {
		return true
	}
	if len(b) >= 512 && b[510] == 0x55 && b[511] == 0xaa && (string(b[0x36:0x39]) == "FAT" || string(b[0x52:0x57]) == "FAT32") {
		return true
	}
	return false
}

// isoLabel returns the volume identifier of an ISO 9660 image.
func isoLabel(pvd []byte) string {
	if len(pvd) < 72 {
		return ""
	}
	return strings.TrimRight(string(pvd[40:72]), " ")
}
