package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// Names of the deploy images in the provisioner's state directory.
const (
	DeployKernelName  = "deploy_kernel"
	DeployRamdiskName = "deploy_ramdisk"
)

// DeployImages makes the deploy kernel (the gokrazy bzImage from the module
// cache) and the deploy ramdisk (an initramfs whose /init is this metalbed
// binary, with GRUB 2 images made by disk.MakeGrubImages when the host has
// GRUB) in dir, reusing what an earlier start left there while its
// source is unchanged. It returns their paths.
func DeployImages(ctx context.Context, dir, version string) (kernelPath, ramdiskPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("deploy images: %w", err)
	}
	src, err := disk.DefaultKernel(ctx)
	if err != nil {
		return "", "", fmt.Errorf("deploy kernel: %w", err)
	}
	kernelPath = filepath.Join(dir, DeployKernelName)
	if err := refresh(kernelPath, src, version, func(w io.Writer) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}); err != nil {
		return "", "", fmt.Errorf("deploy kernel: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", "", fmt.Errorf("deploy ramdisk: this program's path: %w", err)
	}
	// GRUB goes in when this host has it, so the bootloader step installs
	// what real firmware boots; without it the step reports a fallback to
	// metalbed's placeholder loader on every deploy.
	_, noGrub := exec.LookPath("grub-mkimage")
	ramdiskPath = filepath.Join(dir, DeployRamdiskName)
	if err := refresh(ramdiskPath, exe, fmt.Sprintf("%s grub-mkimage=%v", version, noGrub == nil), func(w io.Writer) error {
		grub, err := disk.MakeGrubImages(ctx, "")
		if err != nil && !errors.Is(err, disk.ErrNoGrub) {
			return fmt.Errorf("GRUB images: %w", err)
		}
		return ramdisk.BuildInitramfs(w, ramdisk.ImageConfig{Init: exe, Version: version, Grub: grub})
	}); err != nil {
		return "", "", fmt.Errorf("deploy ramdisk: %w", err)
	}
	return kernelPath, ramdiskPath, nil
}

// refresh rebuilds out with build unless out.src records the same source
// (path, size, modification time) as src has now. The new file replaces
// the old one atomically.
func refresh(out, src, version string, build func(io.Writer) error) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	stamp := []byte(fmt.Sprintf("%s %d %d %s\n", src, fi.Size(), fi.ModTime().UnixNano(), version))
	if old, err := os.ReadFile(out + ".src"); err == nil && bytes.Equal(old, stamp) {
		if _, err := os.Stat(out); err == nil {
			return nil
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp*")
	if err != nil {
		return err
	}
	err = build(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.WriteFile(out+".src", stamp, 0o644)
}
