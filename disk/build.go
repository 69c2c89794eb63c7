package disk

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"

	// The instance kernel ships in this module as the file vmlinuz (the Go
	// package is empty). Importing it keeps the module, at the version in
	// go.mod, a dependency; defaultKernel finds the file in the module cache.
	_ "github.com/gokrazy/kernel.amd64"
)

// Kind is the kind of instance image to build.
type Kind string

// Image kinds.
const (
	KindPartition Kind = "partition"  // a bare ext4 root file system
	KindWholeDisk Kind = "whole-disk" // a disk with a partition table
)

const (
	kernelModule      = "github.com/gokrazy/kernel.amd64"
	defaultHostname   = "metalbed-instance"
	rootFSLabel       = "metalbed-root"
	wholeDiskESPMB    = 100 // go-diskfs lays out a sound FAT32 for 100 MiB, not for 64
	defaultPartSizeMB = 64
	defaultDiskSizeMB = 192
)

//go:embed internal/instanceinit/main.go
var instanceInitSource []byte

// BuildConfig says what image to build.
type BuildConfig struct {
	Kind     Kind   // KindPartition or KindWholeDisk; required
	BootMode string // bios (default) or uefi; whole-disk images only
	Out      string // output file; required, overwritten
	// SizeMB is the image size: default 64 for partition images, 192 for
	// whole-disk images.
	SizeMB int64
	// Kernel is the bzImage copied to /boot/vmlinuz; default: vmlinuz of
	// github.com/gokrazy/kernel.amd64 at the version in go.mod.
	Kernel string
	// Init is a static binary copied to /sbin/init; default: the program in
	// ./internal/instanceinit, compiled with the Go toolchain on PATH.
	Init     string
	Hostname string // /etc/hostname; default metalbed-instance
	// Grub are the boot loader images of whole-disk images; nil: made with
	// MakeGrubImages from DefaultGrubLibDir, and an error naming the
	// Debian packages when GRUB is not there, unless PlaceholderLoader.
	Grub *GrubImages
	// PlaceholderLoader builds whole-disk images with metalbed's
	// placeholder loader instead of GRUB (see InstallBootloader): they
	// boot on the simulated firmware only.
	PlaceholderLoader bool
}

// Built describes a built image.
type Built struct {
	Path     string
	Size     int64
	SHA256   string
	MD5      string
	RootUUID string // UUID of the root ext4 file system
	DiskID   string // whole-disk: MBR identifier (0x%08x) or GPT disk GUID
	// KernelPE is set when the kernel is a PE/COFF image (EFI stub).
	KernelPE bool
	// BootLoader is the whole-disk image's loader: "grub", or "metalbed"
	// for the placeholder; empty for partition images.
	BootLoader string
}

// Build makes a test instance image: an ext4 root file system holding
// /boot/vmlinuz, /sbin/init, /etc/hostname, /etc/fstab and
// /boot/grub/grub.cfg; for KindWholeDisk, a disk image with that file system
// in its root partition, GRUB installed as InstallBootloader does (bios:
// boot.img and core.img before the root partition; uefi: an ESP holding
// GRUB as EFI/BOOT/BOOTX64.EFI with the grub.cfg beside it), or with
// PlaceholderLoader metalbed's placeholder (uefi: the kernel as
// BOOTX64.EFI).
func Build(ctx context.Context, cfg BuildConfig) (*Built, error) {
	if cfg.Out == "" {
		return nil, errors.New("image build: no output file")
	}
	if cfg.BootMode == "" {
		cfg.BootMode = BootModeBIOS
	}
	if cfg.BootMode != BootModeBIOS && cfg.BootMode != BootModeUEFI {
		return nil, fmt.Errorf("image build: boot mode %q: want bios or uefi", cfg.BootMode)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = defaultHostname
	}
	switch cfg.Kind {
	case KindPartition:
		if cfg.SizeMB == 0 {
			cfg.SizeMB = defaultPartSizeMB
		}
	case KindWholeDisk:
		if cfg.SizeMB == 0 {
			cfg.SizeMB = defaultDiskSizeMB
		}
	default:
		return nil, fmt.Errorf("image build: kind %q: want partition or whole-disk", cfg.Kind)
	}
	if cfg.SizeMB < 8 || cfg.SizeMB > 1<<20 {
		return nil, fmt.Errorf("image build: size %d MiB out of range", cfg.SizeMB)
	}
	work, err := os.MkdirTemp("", "metalbed-image-*")
	if err != nil {
		return nil, fmt.Errorf("image build: %w", err)
	}
	defer os.RemoveAll(work)

	if cfg.Kernel == "" {
		if cfg.Kernel, err = DefaultKernel(ctx); err != nil {
			return nil, fmt.Errorf("image build: %w", err)
		}
	}
	kernel, err := os.ReadFile(cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("image build: kernel: %w", err)
	}
	if cfg.Init == "" {
		if cfg.Init, err = BuildInit(ctx, work); err != nil {
			return nil, fmt.Errorf("image build: %w", err)
		}
	}
	if err := checkStatic(cfg.Init); err != nil {
		return nil, fmt.Errorf("image build: %w", err)
	}

	uuid, err := randomUUID()
	if err != nil {
		return nil, err
	}
	rootUUID := formatUUID(uuid)
	grubCfg := GrubConfigText(rootUUID)
	out := &Built{Path: cfg.Out, RootUUID: rootUUID, KernelPE: IsPE(kernel)}

	rootSizeMB := cfg.SizeMB
	var esp, rootStart int64
	if cfg.Kind == KindWholeDisk {
		rootStart = mib
		if cfg.BootMode == BootModeUEFI {
			esp = wholeDiskESPMB
			rootStart += esp * mib
		}
		// Leave room for the backup GPT: root ends 1 MiB before the end.
		rootSizeMB = cfg.SizeMB - rootStart/mib - 1
		if rootSizeMB < 24 {
			return nil, fmt.Errorf("image build: %d MiB leaves %d MiB for the root file system", cfg.SizeMB, rootSizeMB)
		}
	}
	rootImg := cfg.Out
	if cfg.Kind == KindWholeDisk {
		rootImg = filepath.Join(work, "root.ext4")
	}
	if err := makeRootFS(ctx, work, rootImg, rootSizeMB, rootUUID, cfg, kernel, grubCfg); err != nil {
		return nil, fmt.Errorf("image build: %w", err)
	}
	if cfg.Kind == KindWholeDisk {
		if cfg.Grub == nil && !cfg.PlaceholderLoader {
			if cfg.Grub, err = MakeGrubImages(ctx, ""); err != nil {
				return nil, fmt.Errorf("image build: whole-disk boot loader: %w", err)
			}
		}
		if cfg.PlaceholderLoader {
			cfg.Grub = nil
		}
		out.BootLoader = "metalbed"
		if cfg.Grub.Has(cfg.BootMode) {
			out.BootLoader = "grub"
		} else if !cfg.PlaceholderLoader {
			return nil, fmt.Errorf("image build: %w: no %s images", ErrNoGrub, cfg.BootMode)
		}
		if out.DiskID, err = assembleDisk(ctx, cfg, rootImg, rootStart, esp, kernel, grubCfg); err != nil {
			return nil, fmt.Errorf("image build: %w", err)
		}
	}
	if err := out.checksum(); err != nil {
		return nil, fmt.Errorf("image build: %w", err)
	}
	return out, nil
}

// GrubConfigText is the grub.cfg of instance images: one entry that finds
// the root file system by UUID, asks GRUB for that partition's PARTUUID
// (probe --part-uuid, GPT GUID or MBR "<disk id>-<nn>", as Linux names
// them) and boots /boot/vmlinuz with root=PARTUUID=: the instance kernel
// has no initramfs and cannot resolve root=UUID= itself, and a partition
// image's PARTUUID is only known once the conductor partitioned the disk.
func GrubConfigText(rootUUID string) string {
	return fmt.Sprintf(`set default=0
set timeout=1
menuentry "metalbed instance" {
	search --no-floppy --fs-uuid --set=root %s
	probe --set=partuuid --part-uuid $root
	linux /boot/vmlinuz root=PARTUUID=$partuuid ro console=ttyS0
}
`, rootUUID)
}

func makeRootFS(ctx context.Context, work, img string, sizeMB int64, rootUUID string, cfg BuildConfig, kernel []byte, grubCfg string) error {
	tree := filepath.Join(work, "root")
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"boot/vmlinuz", kernel, 0o644},
		{"boot/grub/grub.cfg", []byte(grubCfg), 0o644},
		{"etc/hostname", []byte(cfg.Hostname + "\n"), 0o644},
		{"etc/fstab", []byte(fmt.Sprintf("UUID=%s / ext4 defaults,ro 0 1\n", rootUUID)), 0o644},
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "root", "sbin", "etc", "boot/grub"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(tree, f.path), f.data, f.mode); err != nil {
			return err
		}
	}
	initBin, err := os.ReadFile(cfg.Init)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tree, "sbin/init"), initBin, 0o755); err != nil {
		return err
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return fmt.Errorf("mkfs.ext4 (Debian package e2fsprogs): %w", err)
	}
	if err := os.Remove(img); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	args := []string{"-F", "-q", "-t", "ext4", "-U", rootUUID, "-L", rootFSLabel,
		"-E", "root_owner=0:0", "-d", tree, img, fmt.Sprintf("%dM", sizeMB)}
	if o, err := exec.CommandContext(ctx, mkfs, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, bytes.TrimSpace(o))
	}
	return nil
}

// assembleDisk writes the whole-disk image: label, optional ESP, root.
func assembleDisk(ctx context.Context, cfg BuildConfig, rootImg string, rootStart, espMB int64, kernel []byte, grubCfg string) (string, error) {
	root, err := os.Open(rootImg)
	if err != nil {
		return "", err
	}
	defer root.Close()
	st, err := root.Stat()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(cfg.Out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	size := cfg.SizeMB * mib
	if err := f.Truncate(size); err != nil {
		return "", err
	}
	sectors := size / SectorSize
	rootEntry := tableEntry{startLBA: rootStart / SectorSize, sectors: st.Size() / SectorSize}
	var id string
	if cfg.BootMode == BootModeUEFI {
		dg, err := randomGUID()
		if err != nil {
			return "", err
		}
		espGUID, err := randomGUID()
		if err != nil {
			return "", err
		}
		if rootEntry.partGUID, err = randomGUID(); err != nil {
			return "", err
		}
		rootEntry.typeGUID, rootEntry.name = mustGUID(TypeGUIDLinuxFS), "root"
		entries := []tableEntry{
			{startLBA: mib / SectorSize, sectors: espMB * mib / SectorSize, typeGUID: mustGUID(TypeGUIDESP), partGUID: espGUID, name: "EFI System Partition"},
			rootEntry,
		}
		if err := writeGPT(f, sectors, dg, entries); err != nil {
			return "", err
		}
		loader := kernel
		if cfg.Grub.Has(BootModeUEFI) {
			loader = cfg.Grub.EFI
		}
		err = makeFAT32(f, size, mib, espMB*mib, ESPLabel, []espFile{
			{ESPLoaderPath, bytes.NewReader(loader)},
			{ESPGrubCfgPath, strings.NewReader(grubCfg)},
		})
		if err != nil {
			return "", fmt.Errorf("ESP: %w", err)
		}
		id = dg.String()
	} else {
		u, err := randomUUID()
		if err != nil {
			return "", err
		}
		diskID := binary.LittleEndian.Uint32(u[:4]) | 1
		rootEntry.mbrType, rootEntry.bootable = mbrTypeLinux, true
		code := biosBootCode()
		if cfg.Grub.Has(BootModeBIOS) {
			code = nil // installGrubBIOS writes boot.img
		}
		if err := writeMBR(f, code, diskID, []tableEntry{rootEntry}); err != nil {
			return "", err
		}
		if cfg.Grub.Has(BootModeBIOS) {
			if err := installGrubBIOS(f, cfg.Grub, 1, rootStart/SectorSize); err != nil {
				return "", err
			}
		}
		id = fmt.Sprintf("0x%08x", diskID)
	}
	if err := copyRange(ctx, f, rootStart, root, st.Size()); err != nil {
		return "", fmt.Errorf("copy root file system: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return id, nil
}

// biosBootCode is real 16-bit x86 code for the MBR boot code area, written
// here byte by byte: metalbed's placeholder loader, used when GRUB is not
// available (see GrubImages). Under a real BIOS this code says so on the
// screen and halts; it does not pretend to boot. The simulated firmware
// only requires the area to be non-empty and follows grub.cfg.
//
//	cli; xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x7c00; sti
//	mov si,msg
//	l: lodsb; test al,al; jz h; mov ah,0x0e; mov bx,7; int 0x10; jmp l
//	h: hlt; jmp h
func biosBootCode() []byte {
	code := []byte{
		0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfb,
		0xbe, 0x1f, 0x7c, // mov si, 0x7c00+31
		0xac, 0x84, 0xc0, 0x74, 0x09, 0xb4, 0x0e, 0xbb, 0x07, 0x00, 0xcd, 0x10, 0xeb, 0xf2,
		0xf4, 0xeb, 0xfd,
	}
	code = append(code, "metalbed: no BIOS boot loader on this disk yet (see grub.cfg)\r\n\x00"...)
	return code
}

func (b *Built) checksum() error {
	f, err := os.Open(b.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	s, m := sha256.New(), md5.New()
	n, err := io.Copy(io.MultiWriter(s, m), f)
	if err != nil {
		return fmt.Errorf("checksum %s: %w", b.Path, err)
	}
	b.Size, b.SHA256, b.MD5 = n, hex.EncodeToString(s.Sum(nil)), hex.EncodeToString(m.Sum(nil))
	return nil
}

// checkStatic refuses an init that needs a dynamic loader: the instance
// root file system has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("init %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("init %s is dynamically linked; the instance has no libc, build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// BuildInit compiles ./internal/instanceinit (embedded in this package as source)
// into dir with the Go toolchain, static, and returns the binary's path.
func BuildInit(ctx context.Context, dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building the instance init needs the Go toolchain: %w", err)
	}
	src := filepath.Join(dir, "instanceinit")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module metalbed-instance-init\n\ngo 1.24\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), instanceInitSource, 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "init")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if o, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build instance init: %w: %s", err, bytes.TrimSpace(o))
	}
	return out, nil
}

// DefaultKernel returns the path of vmlinuz in the module cache copy of
// github.com/gokrazy/kernel.amd64, at the version this binary was built
// with (or, without build information, the version of the main module's
// go.mod), downloading the module when the cache lacks it.
func DefaultKernel(ctx context.Context) (string, error) {
	version := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == kernelModule {
				version = d.Version
			}
		}
	}
	goTool, lookErr := exec.LookPath("go")
	if version != "" {
		cache := os.Getenv("GOMODCACHE")
		if cache == "" && lookErr == nil {
			if o, err := exec.CommandContext(ctx, goTool, "env", "GOMODCACHE").Output(); err == nil {
				cache = strings.TrimSpace(string(o))
			}
		}
		if cache != "" {
			p := filepath.Join(cache, kernelModule+"@"+version, "vmlinuz")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	if lookErr != nil {
		return "", fmt.Errorf("default kernel: %s not in the module cache and no Go toolchain to fetch it: %w", kernelModule, lookErr)
	}
	args := []string{"mod", "download", "-json", kernelModule + "@" + version}
	if version == "" {
		args = []string{"list", "-m", "-json", kernelModule}
	}
	o, err := exec.CommandContext(ctx, goTool, args...).Output()
	if err != nil {
		return "", fmt.Errorf("default kernel: go %s: %w", strings.Join(args, " "), err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(o, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("default kernel: no directory for %s in %q", kernelModule, o)
	}
	return filepath.Join(m.Dir, "vmlinuz"), nil
}
