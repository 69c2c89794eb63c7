package ramdisk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// InstanceRoot is what the ramdisk does as an instance's initramfs (a
// netboot instance: the kernel and this initramfs come over the network,
// the root file system is on the deployed disk): the kernel cannot resolve
// root=UUID= itself, so the initramfs finds the file system with that
// UUID, mounts it and hands over to its init, as a distribution's
// initramfs does.
type InstanceRoot struct {
	// UUID is the root file system's UUID (root=UUID=...).
	UUID string
	// ReadOnly mounts it read-only (the kernel parameter "ro").
	ReadOnly bool
	// Init is the program started on the new root; default /sbin/init.
	Init string
	// Wait bounds the wait for the disk to appear; default 60 s.
	Wait    time.Duration
	Console io.Writer // nil => discard
}

// ParseInstanceRoot reads an instance boot's kernel command line: ok is
// false unless it names root=UUID= and carries none of the deploy
// ramdisk's parameters (deployment_id=, ipa-api-url=).
func ParseInstanceRoot(cmdline string) (InstanceRoot, bool) {
	var r InstanceRoot
	for _, f := range strings.Fields(cmdline) {
		switch {
		case strings.HasPrefix(f, "deployment_id="), strings.HasPrefix(f, "ipa-api-url="):
			return InstanceRoot{}, false
		case strings.HasPrefix(f, "root=UUID="):
			r.UUID = strings.ToLower(strings.TrimPrefix(f, "root=UUID="))
		case f == "ro":
			r.ReadOnly = true
		case f == "rw":
			r.ReadOnly = false
		case strings.HasPrefix(f, "init="):
			r.Init = strings.TrimPrefix(f, "init=")
		}
	}
	return r, r.UUID != ""
}

// SwitchTo finds the root, mounts it on /root, moves /dev, /proc and /sys
// into it, makes it the root and executes its init. It returns only when
// one of those fails. It must run as PID 1 with Mount done.
func (r InstanceRoot) SwitchTo(ctx context.Context) error {
	if r.Init == "" {
		r.Init = "/sbin/init"
	}
	if r.Wait == 0 {
		r.Wait = 60 * time.Second
	}
	if r.Console == nil {
		r.Console = io.Discard
	}
	dev, fstype, err := r.find(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.Console, "metalbed-ramdisk: instance root UUID=%s is %s (%s)\n", r.UUID, dev, fstype)
	const newRoot = "/root"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	var flags uintptr
	if r.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, newRoot, fstype, flags, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, newRoot, err)
	}
	if _, err := os.Stat(filepath.Join(newRoot, r.Init)); err != nil {
		return fmt.Errorf("instance root %s has no %s: %w", dev, r.Init, err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		dst := filepath.Join(newRoot, m)
		if _, err := os.Stat(dst); err != nil {
			continue // the instance mounts it itself, if it has the directory
		}
		if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the instance root: %w", m, err)
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the instance root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	fmt.Fprintf(r.Console, "metalbed-ramdisk: switching to the instance's %s\n", r.Init)
	err = unix.Exec(r.Init, []string{r.Init}, os.Environ())
	return fmt.Errorf("exec %s: %w", r.Init, err)
}

// find waits for the block device holding an ext2/3/4 file system with
// the root's UUID.
func (r InstanceRoot) find(ctx context.Context) (dev, fstype string, err error) {
	deadline := time.Now().Add(r.Wait)
	for {
		names, _ := os.ReadDir("/sys/class/block")
		for _, n := range names {
			p := "/dev/" + n.Name()
			if u, t, ok := extUUID(p); ok && u == r.UUID {
				return p, t, nil
			}
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("no block device holds the root file system UUID=%s after %v", r.UUID, r.Wait)
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// extUUID reads an ext2/3/4 superblock's UUID (and whether the file system
// is ext4: extents or 64bit features) from a block device.
func extUUID(path string) (uuid, fstype string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil && !errors.Is(err, io.EOF) {
		return "", "", false
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xef53 {
		return "", "", false
	}
	u := sb[0x68:0x78]
	uuid = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	fstype = "ext2"
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	if compat := binary.LittleEndian.Uint32(sb[0x5c:]); compat&0x4 != 0 {
		fstype = "ext3" // has a journal
	}
	if incompat&(0x40|0x80) != 0 { // extents, 64bit
		fstype = "ext4"
	}
	return uuid, fstype, true
}
