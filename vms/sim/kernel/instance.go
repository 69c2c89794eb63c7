package kernel

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// initLimit bounds the /sbin/init read from an untrusted disk.
const initLimit = 256 << 20

// rootArg returns the root= argument of a command line.
func rootArg(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "root="); ok {
			return v
		}
	}
	return ""
}

// bootInstance is the kernel mounting the deployed root file system and
// starting its init. The simulated machine does not execute the instance's
// code: it checks everything a real boot depends on — the root device named
// by root= exists and is ext2/3/4, /sbin/init is an x86-64 ELF executable —
// and then announces the boot in the words of metalbed's instance init
// (disk/internal/instanceinit), with the host name read from the disk.
func bootInstance(ctx context.Context, b *sim.BootContext, root string) error {
	con := b.Console
	panicf := func(format string, a ...any) error {
		msg := fmt.Sprintf(format, a...)
		fmt.Fprintf(con, "[    1.900000] Kernel panic - not syncing: %s\r\n", msg)
		return fmt.Errorf("%w: %s", ErrPanic, msg)
	}
	if b.Disk == nil {
		fmt.Fprintf(con, "[    1.800000] VFS: Cannot open root device %q or unknown-block(0,0): error -6\r\n", root)
		return panicf("VFS: Unable to mount root fs on unknown-block(0,0)")
	}
	ins, err := disk.Inspect(b.Disk, b.Disk.Size())
	if err != nil {
		return panicf("reading the disk: %v", err)
	}
	part, dev := findRoot(ins, root)
	if part == nil {
		fmt.Fprintf(con, "[    1.800000] VFS: Cannot open root device %q or unknown-block(0,0): error -6\r\n", root)
		fmt.Fprintf(con, "[    1.800000] Please append a correct \"root=\" boot option; here are the available partitions:\r\n")
		for _, p := range ins.Layout.Partitions {
			fmt.Fprintf(con, "[    1.800000] vda%d %d %s %s\r\n", p.Number, p.Size>>10, p.FSType, p.UUID)
		}
		return panicf("VFS: Unable to mount root fs on unknown-block(0,0)")
	}
	if !strings.HasPrefix(part.FSType, "ext") {
		return panicf("VFS: Unable to mount root fs on %s (%s is not ext2/3/4)", dev, part.FSType)
	}
	fs := io.NewSectionReader(b.Disk, part.Start, part.Size)
	fmt.Fprintf(con, "[    1.800000] EXT4-fs (%s): mounted filesystem %s ro with ordered data mode\r\n", dev, part.UUID)
	init, err := disk.ReadExt4File(fs, part.Size, "/sbin/init", initLimit)
	if err != nil {
		fmt.Fprintf(con, "[    1.850000] Run /sbin/init as init process\r\n")
		fmt.Fprintf(con, "[    1.850000] Failed to execute /sbin/init (error -2)\r\n")
		return panicf("No working init found.  Try passing init= option to kernel.")
	}
	if err := checkELF(init); err != nil {
		fmt.Fprintf(con, "[    1.850000] Run /sbin/init as init process\r\n")
		fmt.Fprintf(con, "[    1.850000] Requested init /sbin/init failed (error -8: %v)\r\n", err)
		return panicf("No working init found.  Try passing init= option to kernel.")
	}
	hostname := "(none)"
	if h, err := disk.ReadExt4File(fs, part.Size, "/etc/hostname", 256); err == nil && len(bytes.TrimSpace(h)) > 0 {
		hostname = string(bytes.TrimSpace(h))
	}
	fmt.Fprintf(con, "[    1.850000] Run /sbin/init as init process\r\n")
	fmt.Fprintf(con, "metalbed-instance: booted %s root=%s\r\n", hostname, root)
	b.Emit(vms.EventConsole, fmt.Sprintf("instance booted %s root=%s", hostname, root))
	<-ctx.Done() // the instance runs until power goes away
	return nil
}

// findRoot resolves root=UUID=…, root=PARTUUID=… or root=/dev/vdaN.
func findRoot(ins *disk.Inspection, root string) (*disk.Partition, string) {
	for i := range ins.Layout.Partitions {
		p := &ins.Layout.Partitions[i]
		dev := fmt.Sprintf("vda%d", p.Number)
		switch {
		case strings.HasPrefix(root, "UUID=") && p.UUID != "" && strings.EqualFold(root[5:], p.UUID),
			strings.HasPrefix(root, "PARTUUID=") && p.PartUUID != "" && strings.EqualFold(root[9:], p.PartUUID),
			root == "/dev/"+dev:
			return p, dev
		}
	}
	return nil, ""
}

// checkELF accepts a 64-bit little-endian x86-64 executable.
func checkELF(b []byte) error {
	if len(b) < 64 || string(b[:4]) != "\x7fELF" {
		return fmt.Errorf("not an ELF file")
	}
	if b[4] != 2 || b[5] != 1 {
		return fmt.Errorf("not a 64-bit little-endian ELF")
	}
	if typ := binary.LittleEndian.Uint16(b[16:]); typ != 2 && typ != 3 {
		return fmt.Errorf("ELF type %d is not an executable", typ)
	}
	if m := binary.LittleEndian.Uint16(b[18:]); m != 62 {
		return fmt.Errorf("ELF machine %d is not x86-64", m)
	}
	return nil
}
