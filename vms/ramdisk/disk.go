package ramdisk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Disk is one block device the ramdisk sees.
type Disk struct {
	Name       string // kernel name: sda, vda, cciss/c0d0
	SizeBytes  int64
	Model      string
	Vendor     string
	Serial     string
	WWN        string
	Rotational bool
	HCTL       string
	ByPath     string
	// Dev is the device's bytes; the iSCSI export and the bootloader install
	// read and write through it.
	Dev BlockDevice
}

// BlockDevice is a disk's contents.
type BlockDevice interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
}

const gib = 1 << 30

// matchHints reports whether d satisfies every root device hint, with
// Ironic's semantics: size in GiB, strings compared case-insensitively,
// name with or without /dev/.
func matchHints(d Disk, hints map[string]string) bool {
	for k, v := range hints {
		var ok bool
		switch k {
		case "name":
			ok = strings.TrimPrefix(v, "/dev/") == d.Name
		case "size":
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			ok = err == nil && d.SizeBytes/gib == n
		case "model":
			ok = strings.EqualFold(strings.TrimSpace(v), d.Model)
		case "vendor":
			ok = strings.EqualFold(strings.TrimSpace(v), d.Vendor)
		case "serial":
			ok = strings.EqualFold(v, d.Serial)
		case "wwn", "wwn_with_extension":
			ok = strings.EqualFold(v, d.WWN)
		case "rotational":
			b, err := strconv.ParseBool(v)
			ok = err == nil && b == d.Rotational
		case "hctl":
			ok = v == d.HCTL
		case "by_path":
			ok = strings.TrimPrefix(v, "/dev/disk/by-path/") == strings.TrimPrefix(d.ByPath, "/dev/disk/by-path/")
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

// pickDisk chooses the deploy disk once: with root device hints, the first
// disk matching all of them; else the first of the disk= candidates present.
func pickDisk(disks []Disk, p Params) (Disk, error) {
	if len(p.RootDevice) > 0 {
		for _, d := range disks {
			if matchHints(d, p.RootDevice) {
				return d, nil
			}
		}
		return Disk{}, fmt.Errorf("no disk matches root device hints %v", p.RootDevice)
	}
	candidates := p.Disks
	if len(candidates) == 0 {
		candidates = []string{"cciss/c0d0", "sda", "hda", "vda"}
	}
	for _, c := range candidates {
		for _, d := range disks {
			if d.Name == strings.TrimPrefix(c, "/dev/") {
				return d, nil
			}
		}
	}
	return Disk{}, fmt.Errorf("none of the disks %v present", candidates)
}

// errNoDisk wraps the last reason when the wait for a disk ran out.
var errNoDisk = errors.New("could not find disk to use")

// findDisk retries pickDisk once a second for up to wait (the bash ramdisk
// waited 60 s for slow controllers to appear).
func findDisk(ctx context.Context, list func(context.Context) ([]Disk, error), p Params, wait time.Duration) (Disk, error) {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		disks, err := list(ctx)
		if err == nil {
			var d Disk
			if d, err = pickDisk(disks, p); err == nil {
				return d, nil
			}
		}
		if !time.Now().Before(deadline) {
			return Disk{}, fmt.Errorf("%w: %v", errNoDisk, err)
		}
		select {
		case <-ctx.Done():
			return Disk{}, ctx.Err()
		case <-tick.C:
		}
	}
}
