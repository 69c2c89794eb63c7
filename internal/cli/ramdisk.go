package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/ramdisk/pid1"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// gokrazyKernel is the module whose vmlinuz is the default deploy kernel
// (virtio, e1000 and the 8250 UART built in; no modules needed).
const gokrazyKernel = "github.com/gokrazy/kernel.amd64"

// runRamdiskBuild writes a deploy kernel and an initramfs a real machine
// boots: /init is metalbed itself, built static (CGO_ENABLED=0) from a
// source tree with the Go toolchain, which runs the ramdisk when it is PID 1.
func runRamdiskBuild(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("ramdisk build", s)
	out := fs.String("out", "", "directory to write vmlinuz and initramfs to (required)")
	kernel := fs.String("kernel", "", "deploy kernel (bzImage); default the vmlinuz of "+gokrazyKernel+" at the version the source tree's go.mod pins")
	grubDir := fs.String("grub-dir", disk.DefaultGrubLibDir, "GRUB 2 platform modules (i386-pc, x86_64-efi) the bootloader step's GRUB images are made from with grub-mkimage; Debian packages grub-pc-bin, grub-efi-amd64-bin")
	noGrub := fs.Bool("no-grub", false, "leave GRUB out: the bootloader step then installs metalbed's placeholder loader, which only simulated firmware boots")
	src := fs.String("src", ".", "metalbed source tree `DIR` /init is built from; needs the Go toolchain (go on PATH): the running binary is usually dynamically linked and cannot be /init")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError("--out is required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(*out, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	init := filepath.Join(tmp, "init")
	if err := buildStaticInit(ctx, *src, init); err != nil {
		return err
	}
	kpath := *kernel
	if kpath == "" {
		dir, err := goCmd(ctx, *src, nil, "list", "-m", "-f", "{{.Dir}}", gokrazyKernel)
		if err != nil {
			return fmt.Errorf("locate the deploy kernel (give --kernel): %w", err)
		}
		kpath = filepath.Join(strings.TrimSpace(dir), "vmlinuz")
	}
	k, err := os.ReadFile(kpath)
	if err != nil {
		return fmt.Errorf("read kernel: %w", err)
	}
	if err := pxe.CheckBzImage(k); err != nil {
		return fmt.Errorf("kernel %s: %w", kpath, err)
	}
	var grub *disk.GrubImages
	loader := "no GRUB (--no-grub): local boot gets metalbed's placeholder loader"
	if !*noGrub {
		if grub, err = disk.MakeGrubImages(ctx, *grubDir); err != nil {
			return fmt.Errorf("GRUB images for the bootloader step: %w (or pass --no-grub)", err)
		}
		var modes []string
		if len(grub.BIOSCore) > 0 {
			modes = append(modes, "bios")
		}
		if len(grub.EFI) > 0 {
			modes = append(modes, "uefi")
		}
		loader = fmt.Sprintf("GRUB 2 for %s in %s", strings.Join(modes, " and "), disk.GrubImagesDir)
	}
	var rd bytes.Buffer
	if err := ramdisk.BuildInitramfs(&rd, ramdisk.ImageConfig{Init: init, Version: version(), Grub: grub, Placeholder: *noGrub}); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"vmlinuz": k, "initramfs": rd.Bytes()} {
		if err := writeFileAtomic(filepath.Join(*out, name), b); err != nil {
			return err
		}
	}
	fmt.Fprintf(s.Out, "wrote %s (%d bytes, %s) and %s (%d bytes; %s)\n",
		filepath.Join(*out, "vmlinuz"), len(k), kpath, filepath.Join(*out, "initramfs"), rd.Len(), loader)
	return nil
}

// buildStaticInit builds cmd/metalbed from src as a static linux/amd64
// executable at dst and checks it has no program interpreter.
func buildStaticInit(ctx context.Context, src, dst string) error {
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}
	if _, err := goCmd(ctx, src, env, "build", "-trimpath", "-o", dst, "github.com/metalbed/metalbed/cmd/metalbed"); err != nil {
		return fmt.Errorf("build /init from %s: %w", src, err)
	}
	f, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := ramdisk.CheckStatic(f); err != nil {
		return fmt.Errorf("/init: %w", err)
	}
	return nil
}

func goCmd(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// runRamdiskInit is /init of a real machine's deploy ramdisk (pid1.Run):
// cmd/metalbed runs it when it is PID 1. It never returns as PID 1: a
// failed deploy stays on the console until the conductor times out and
// powers the machine off.
func runRamdiskInit(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("ramdisk init", s)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if os.Getpid() != 1 {
		return usageError("ramdisk init runs only as PID 1 (the initramfs's /init); it mounts file systems and reconfigures the network")
	}
	err := pid1.Run(ctx, pid1.Config{Console: s.Out, Log: s.Err, Version: version()})
	fmt.Fprintf(s.Out, "metalbed-ramdisk: FAILED: %v\n", err)
	select {} // PID 1 must not exit: the kernel would panic
}
