package disk

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

const testDiskSize = 2 << 30

// fatConfigDrive makes a config drive the way nova does with
// config_drive_format=vfat, with mkfs.fat from dosfstools, and returns it
// base64-gzipped as Ironic receives it.
func fatConfigDrive(t testing.TB) []byte {
	t.Helper()
	mkfs := testenv.RequireTool(t, "mkfs.fat", "dosfstools")
	p := filepath.Join(t.TempDir(), "cd.img")
	run(t, mkfs, "-C", "-n", "config-2", p, "16384")
	_, cd := readConfigDrive(t, p)
	return cd
}

// readConfigDrive reads the config drive image at path and returns it and
// the base64-gzipped form Ironic receives.
func readConfigDrive(t testing.TB, path string) (raw, encoded []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	return raw, []byte(base64.StdEncoding.EncodeToString(gz.Bytes()))
}

func wantRoles(p PartitionParams) []string {
	var r []string
	if p.BootMode == BootModeUEFI && p.BootOption == BootOptionLocal {
		r = append(r, RoleESP)
	}
	if p.BootMode == BootModeBIOS && p.BootOption == BootOptionLocal && p.DiskLabel == LabelGPT {
		r = append(r, RoleBIOSBoot)
	}
	if p.EphemeralMB > 0 {
		r = append(r, RoleEphemeral)
	}
	if p.SwapMB > 0 {
		r = append(r, RoleSwap)
	}
	if p.ConfigDrive != nil {
		r = append(r, RoleConfigDrive)
	}
	return append(r, RoleRoot)
}

func TestDeployPartitionImageMatrix(t *testing.T) {
	img := buildImage(t, KindPartition, "")
	imgFile := openImage(t, img)
	cd := fatConfigDrive(t)
	for _, mode := range []string{BootModeBIOS, BootModeUEFI} {
		for _, opt := range []string{BootOptionNetboot, BootOptionLocal} {
			for _, label := range []string{LabelMSDOS, LabelGPT} {
				t.Run(mode+"-"+opt+"-"+label, func(t *testing.T) {
					p := PartitionParams{BootMode: mode, BootOption: opt, DiskLabel: label,
						RootMB: 128, SwapMB: 64, EphemeralMB: 64, ConfigDrive: cd}
					if mode == BootModeUEFI && opt == BootOptionLocal && label == LabelMSDOS {
						p.EphemeralMB = 0 // 5 partitions do not fit msdos; see TestDeployBadInputs
					}
					disk := sparseDisk(t, testDiskSize)
					res, err := DeployPartitionImage(t.Context(), disk, testDiskSize, imgFile, img.Size, p)
					if err != nil {
						t.Fatalf("DeployPartitionImage: %v", err)
					}
					checkDeployed(t, disk, res, p, img)
				})
			}
		}
	}
}

func checkDeployed(t *testing.T, disk *os.File, res *Result, p PartitionParams, img *Built) {
	t.Helper()
	var roles []string
	for _, pt := range res.Layout.Partitions {
		roles = append(roles, pt.Role)
	}
	if want := wantRoles(p); !slices.Equal(roles, want) {
		t.Fatalf("roles %v, want Ironic's order %v", roles, want)
	}
	if res.RootUUID != img.RootUUID {
		t.Fatalf("root UUID %s, the image's is %s", res.RootUUID, img.RootUUID)
	}
	// Our own reader.
	ins, err := Inspect(disk, testDiskSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins.Problems) > 0 {
		t.Fatalf("inspect problems: %v", ins.Problems)
	}
	if ins.Layout.Label != p.DiskLabel || ins.Layout.DiskID != res.Layout.DiskID {
		t.Fatalf("inspect label %s id %s, deployed %s %s", ins.Layout.Label, ins.Layout.DiskID, p.DiskLabel, res.Layout.DiskID)
	}
	if len(ins.Layout.Partitions) != len(res.Layout.Partitions) {
		t.Fatalf("inspect found %d partitions, deployed %d", len(ins.Layout.Partitions), len(res.Layout.Partitions))
	}
	start := mib
	for i, got := range ins.Layout.Partitions {
		want := res.Layout.Partitions[i]
		if got.Number != want.Number || got.Start != want.Start || got.Size != want.Size || !strings.EqualFold(got.Type, want.Type) ||
			got.Role != want.Role || got.Label != want.Label || got.UUID != want.UUID || got.PartUUID != want.PartUUID {
			t.Errorf("partition %d: inspect %+v, deployed %+v", i+1, got, want)
		}
		if got.Start != start || got.Start%mib != 0 {
			t.Errorf("partition %d starts at %d, want %d (contiguous from 1 MiB, aligned)", i+1, got.Start, start)
		}
		start += got.Size
	}
	if len(ins.GrubConfigs) != 1 || !strings.Contains(ins.GrubConfigs[0].Text, "--set=root "+img.RootUUID) {
		t.Fatalf("grub.cfg from the root partition: %+v", ins.GrubConfigs)
	}
	if ge, err := ParseGrubConfig(ins.GrubConfigs[0].Text); err != nil || ge.RootUUID != img.RootUUID || ge.Kernel != "/boot/vmlinuz" {
		t.Fatalf("parsed grub.cfg %+v, %v", ge, err)
	}
	if (ins.ESP != 0) != (p.BootMode == BootModeUEFI && p.BootOption == BootOptionLocal) {
		t.Fatalf("ESP = partition %d for %s/%s", ins.ESP, p.BootMode, p.BootOption)
	}
	if esp := res.Layout.Find(RoleESP); (esp != nil) != (res.ESPUUID != "") || (esp != nil && esp.UUID != res.ESPUUID) {
		t.Fatalf("ESP UUID %q, layout %+v", res.ESPUUID, esp)
	}

	// Real tools nobody here wrote.
	tab := sfdiskJSON(t, disk.Name())
	wantLabel := map[string]string{LabelMSDOS: "dos", LabelGPT: "gpt"}[p.DiskLabel]
	if tab.PartitionTable.Label != wantLabel || len(tab.PartitionTable.Partitions) != len(res.Layout.Partitions) {
		t.Fatalf("sfdisk: %+v", tab.PartitionTable)
	}
	for i, sp := range tab.PartitionTable.Partitions {
		want := res.Layout.Partitions[i]
		if sp.Start*SectorSize != want.Start || sp.Size*SectorSize != want.Size {
			t.Errorf("sfdisk partition %d: start %d size %d sectors, want %d %d bytes", i+1, sp.Start, sp.Size, want.Start, want.Size)
		}
		wantType := strings.TrimPrefix(want.Type, "0x")
		if p.DiskLabel == LabelMSDOS {
			wantType = strings.TrimPrefix(wantType, "0")
		}
		if !strings.EqualFold(sp.Type, wantType) {
			t.Errorf("sfdisk partition %d type %s, want %s", i+1, sp.Type, wantType)
		}
		if p.DiskLabel == LabelGPT && !strings.EqualFold(sp.UUID, want.PartUUID) {
			t.Errorf("sfdisk partition %d uuid %s, want %s", i+1, sp.UUID, want.PartUUID)
		}
		if p.DiskLabel == LabelMSDOS && sp.Bootable != want.Bootable {
			t.Errorf("sfdisk partition %d bootable %v, want %v", i+1, sp.Bootable, want.Bootable)
		}
	}
	whole := blkidAt(t, disk.Name(), 0, testDiskSize)
	wantPTUUID := strings.ToLower(strings.TrimPrefix(res.Layout.DiskID, "0x"))
	if whole["PTTYPE"] != wantLabel || whole["PTUUID"] != wantPTUUID {
		t.Errorf("blkid whole disk %v, want PTTYPE=%s PTUUID=%s", whole, wantLabel, wantPTUUID)
	}
	if p.DiskLabel == LabelGPT {
		sgdisk := testenv.RequireTool(t, "sgdisk", "gdisk")
		if out := run(t, sgdisk, "-v", disk.Name()); !strings.Contains(out, "No problems found") {
			t.Errorf("sgdisk -v: %s", out)
		}
		out := run(t, sgdisk, "-p", disk.Name())
		if !strings.Contains(out, "Disk identifier (GUID): "+res.Layout.DiskID) {
			t.Errorf("sgdisk -p does not show disk GUID %s:\n%s", res.Layout.DiskID, out)
		}
	}
	for _, pt := range res.Layout.Partitions {
		if pt.Role == RoleBIOSBoot {
			continue
		}
		tags := blkidAt(t, disk.Name(), pt.Start, pt.Size)
		want := map[string][2]string{
			RoleESP:         {"vfat", "efi-part"},
			RoleEphemeral:   {"ext4", "ephemeral0"},
			RoleSwap:        {"swap", "swap1"},
			RoleConfigDrive: {"vfat", "config-2"},
			RoleRoot:        {"ext4", rootFSLabel},
		}[pt.Role]
		if tags["TYPE"] != want[0] || tags["LABEL"] != want[1] {
			t.Errorf("blkid %s: %v, want TYPE=%s LABEL=%s", pt.Role, tags, want[0], want[1])
		}
		if pt.Role == RoleRoot && tags["UUID"] != res.RootUUID {
			t.Errorf("blkid root UUID %s, returned %s", tags["UUID"], res.RootUUID)
		}
		if pt.Role != RoleRoot && tags["UUID"] != pt.UUID {
			t.Errorf("blkid %s UUID %s, returned %s", pt.Role, tags["UUID"], pt.UUID)
		}
		switch pt.Role {
		case RoleRoot, RoleEphemeral:
			fsck := testenv.RequireTool(t, "fsck.ext4", "e2fsprogs")
			run(t, fsck, "-n", "-f", extract(t, disk, pt.Start, pt.Size, pt.Role+".ext4"))
		case RoleESP:
			esp := extract(t, disk, pt.Start, pt.Size, "esp.img")
			run(t, testenv.RequireTool(t, "fsck.vfat", "dosfstools"), "-n", esp)
			out := run(t, testenv.RequireTool(t, "mdir", "mtools"), "-i", esp, "::/")
			if !strings.Contains(out, "efi-part") && !strings.Contains(out, "EFI-PART") {
				t.Errorf("mdir of the ESP shows no efi-part label:\n%s", out)
			}
		}
	}
}

func TestDeployWholeDiskImage(t *testing.T) {
	for _, mode := range []string{BootModeBIOS, BootModeUEFI} {
		t.Run(mode, func(t *testing.T) {
			img := buildImage(t, KindWholeDisk, mode)
			f := openImage(t, img)
			disk := sparseDisk(t, testDiskSize)
			res, err := DeployWholeDiskImage(t.Context(), disk, testDiskSize, f, img.Size)
			if err != nil {
				t.Fatal(err)
			}
			if res.RootUUIDOrDiskID() != img.DiskID {
				t.Fatalf("disk id %s, built %s", res.RootUUIDOrDiskID(), img.DiskID)
			}
			// Written as is.
			got := make([]byte, img.Size)
			want, _ := os.ReadFile(img.Path)
			if _, err := disk.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("disk does not hold the image bytes (%v)", err)
			}
			tab := sfdiskJSON(t, disk.Name())
			ins, err := Inspect(disk, testDiskSize)
			if err != nil {
				t.Fatal(err)
			}
			root := ins.Layout.Find(RoleRoot)
			if root == nil || root.UUID != img.RootUUID || len(ins.GrubConfigs) != 1 {
				t.Fatalf("inspect: %+v", ins)
			}
			run(t, testenv.RequireTool(t, "fsck.ext4", "e2fsprogs"), "-n", "-f", extract(t, disk, root.Start, root.Size, "root.ext4"))
			if mode == BootModeBIOS {
				if tab.PartitionTable.Label != "dos" || tab.PartitionTable.ID != img.DiskID || !tab.PartitionTable.Partitions[0].Bootable {
					t.Fatalf("sfdisk: %+v", tab.PartitionTable)
				}
				if !ins.BootCode || !ins.BootSignature || res.DiskIdentifier != img.DiskID {
					t.Fatalf("MBR boot code %v signature %v id %s", ins.BootCode, ins.BootSignature, res.DiskIdentifier)
				}
				return
			}
			if tab.PartitionTable.Label != "gpt" || !strings.EqualFold(tab.PartitionTable.ID, img.DiskID) {
				t.Fatalf("sfdisk: %+v", tab.PartitionTable)
			}
			if ins.ESP == 0 || !ins.ESPLoader || !ins.ESPLoaderPE || !strings.Contains(ins.ESPGrubConfig, img.RootUUID) {
				t.Fatalf("ESP %d loader %v PE %v grub %q", ins.ESP, ins.ESPLoader, ins.ESPLoaderPE, ins.ESPGrubConfig)
			}
			esp := ins.Partition(ins.ESP)
			espImg := extract(t, disk, esp.Start, esp.Size, "esp.img")
			run(t, testenv.RequireTool(t, "fsck.vfat", "dosfstools"), "-n", espImg)
			out := run(t, testenv.RequireTool(t, "mdir", "mtools"), "-i", espImg, "-/", "::/EFI")
			if !strings.Contains(out, "BOOTX64") && !strings.Contains(out, "BOOTX64.EFI") {
				t.Fatalf("mdir -/ ::/EFI:\n%s", out)
			}
			// The loader on the ESP is GRUB's EFI image, byte for byte.
			loader := run(t, testenv.RequireTool(t, "mtype", "mtools"), "-i", espImg, "::/EFI/BOOT/BOOTX64.EFI")
			if loader != string(grubImages(t).EFI) || !ins.ESPLoaderGrub {
				t.Fatalf("BOOTX64.EFI (%d bytes, GRUB %v) is not GRUB's image (%d bytes)", len(loader), ins.ESPLoaderGrub, len(grubImages(t).EFI))
			}
		})
	}
}

func TestDeployBadInputs(t *testing.T) {
	img := buildImage(t, KindPartition, "")
	imgFile := openImage(t, img)
	const size = 600 << 20
	cases := []struct {
		name     string
		diskSize int64
		p        PartitionParams
		want     string
		is       error
	}{
		{"image bigger than root_mb", size, PartitionParams{RootMB: 32}, "root partition is too small", nil},
		{"disk too small", size, PartitionParams{RootMB: 512, SwapMB: 128}, "too small", nil},
		{"garbage configdrive", size, PartitionParams{RootMB: 128, ConfigDrive: []byte("not a config drive!")}, "config drive", ErrBadConfigDrive},
		{"base64 of garbage", size, PartitionParams{RootMB: 128, ConfigDrive: []byte(base64.StdEncoding.EncodeToString([]byte("garbage")))}, "config drive", ErrBadConfigDrive},
		{"msdos with five partitions", size, PartitionParams{RootMB: 100, BootMode: BootModeUEFI, BootOption: BootOptionLocal, DiskLabel: LabelMSDOS, SwapMB: 16, EphemeralMB: 16, ConfigDrive: fatConfigDrive(t)}, "4 primary partitions", nil},
		{"bad boot mode", size, PartitionParams{RootMB: 128, BootMode: "bios2"}, "boot_mode", nil},
		{"no root_mb", size, PartitionParams{}, "root_mb", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			disk := sparseDisk(t, c.diskSize)
			fillEnds(t, disk, c.diskSize)
			before := digest(t, disk)
			_, err := DeployPartitionImage(t.Context(), disk, c.diskSize, imgFile, img.Size, c.p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("error %v is not %v", err, c.is)
			}
			if digest(t, disk) != before {
				t.Fatal("the disk changed")
			}
		})
	}
	t.Run("not ext4", func(t *testing.T) {
		disk := sparseDisk(t, size)
		junk := bytes.NewReader(make([]byte, 4<<20))
		if _, err := DeployPartitionImage(t.Context(), disk, size, junk, 4<<20, PartitionParams{RootMB: 8}); !errors.Is(err, ErrNotExt4) {
			t.Fatalf("error %v, want ErrNotExt4", err)
		}
	})
	t.Run("whole-disk image bigger than disk", func(t *testing.T) {
		disk := sparseDisk(t, 32<<20)
		before := digest(t, disk)
		if _, err := DeployWholeDiskImage(t.Context(), disk, 32<<20, imgFile, img.Size); err == nil || !strings.Contains(err.Error(), "does not fit") {
			t.Fatalf("error %v", err)
		}
		if digest(t, disk) != before {
			t.Fatal("the disk changed")
		}
	})
}

func TestDestroyDiskMetadata(t *testing.T) {
	img := buildImage(t, KindPartition, "")
	imgFile := openImage(t, img)
	disk := sparseDisk(t, testDiskSize)
	if _, err := DeployPartitionImage(t.Context(), disk, testDiskSize, imgFile, img.Size, PartitionParams{BootMode: BootModeUEFI, RootMB: 100}); err != nil {
		t.Fatal(err)
	}
	if err := DestroyDiskMetadata(disk, testDiskSize); err != nil {
		t.Fatal(err)
	}
	ins, err := Inspect(disk, testDiskSize)
	if err != nil {
		t.Fatal(err)
	}
	if ins.Layout.Label != "" || len(ins.Layout.Partitions) != 0 {
		t.Fatalf("after wipe: %+v", ins.Layout)
	}
	if tags := blkidAt(t, disk.Name(), 0, testDiskSize); tags["PTTYPE"] != "" {
		t.Fatalf("blkid still finds a partition table: %v", tags)
	}
}

func TestGUIDRoundTrip(t *testing.T) {
	for _, s := range []string{TypeGUIDESP, TypeGUIDBIOSBoot, TypeGUIDLinuxFS, TypeGUIDLinuxSwap} {
		g, err := parseGUID(s)
		if err != nil || g.String() != s {
			t.Fatalf("%s -> %v (%v)", s, g, err)
		}
	}
	// The ESP type GUID's on-disk bytes as the UEFI specification lists them.
	want := []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if g := mustGUID(TypeGUIDESP); !bytes.Equal(g[:], want) {
		t.Fatalf("ESP GUID bytes % x", g[:])
	}
	if _, err := parseGUID("zz"); err == nil {
		t.Fatal("parsed a malformed GUID")
	}
}

func TestParseGrubConfig(t *testing.T) {
	e, err := ParseGrubConfig(GrubConfigText("1234"))
	if err != nil || e.Kernel != "/boot/vmlinuz" || e.RootUUID != "1234" || !strings.Contains(e.Cmdline, "console=ttyS0") {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := ParseGrubConfig("set default=0\n"); err == nil {
		t.Fatal("no error without a linux line")
	}
}

func TestSwapHeaderWithBlkid(t *testing.T) {
	u, _ := randomUUID()
	hdr, err := swapHeader(64*mib, u, "swap1")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "swap")
	if err := os.WriteFile(p, append(hdr, make([]byte, 64*mib-int64(len(hdr)))...), 0o644); err != nil {
		t.Fatal(err)
	}
	tags := blkidAt(t, p, 0, 64*mib)
	if tags["TYPE"] != "swap" || tags["LABEL"] != "swap1" || tags["UUID"] != formatUUID(u) || tags["VERSION"] != "1" {
		t.Fatalf("blkid: %v", tags)
	}
	if _, err := swapHeader(4096, u, "x"); err == nil {
		t.Fatal("accepted a one-page swap area")
	}
}

// TestDeployISOConfigDrive uses the config drive format nova makes by
// default: ISO 9660 labelled config-2, built here with genisoimage.
func TestDeployISOConfigDrive(t *testing.T) {
	geniso := testenv.RequireTool(t, "genisoimage", "genisoimage")
	tree := filepath.Join(t.TempDir(), "cd")
	if err := os.MkdirAll(filepath.Join(tree, "openstack/latest"), 0o755); err != nil {
		t.Fatal(err)
	}
	meta := []byte(`{"uuid": "9f2b1c3e-1111-2222-3333-444455556666", "hostname": "node-0"}`)
	if err := os.WriteFile(filepath.Join(tree, "openstack/latest/meta_data.json"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(t.TempDir(), "cd.iso")
	run(t, geniso, "-o", iso, "-ldots", "-allow-lowercase", "-allow-multidot", "-l", "-quiet", "-J", "-r", "-V", "config-2", tree)
	raw, encoded := readConfigDrive(t, iso)
	img := buildImage(t, KindPartition, "")
	imgFile := openImage(t, img)
	disk := sparseDisk(t, testDiskSize)
	res, err := DeployPartitionImage(t.Context(), disk, testDiskSize, imgFile, img.Size,
		PartitionParams{RootMB: 100, ConfigDrive: encoded})
	if err != nil {
		t.Fatal(err)
	}
	cd := res.Layout.Find(RoleConfigDrive)
	if cd == nil || cd.FSType != "iso9660" || cd.Label != "config-2" || cd.Size != ConfigDriveMaxBytes {
		t.Fatalf("config drive partition %+v", cd)
	}
	if tags := blkidAt(t, disk.Name(), cd.Start, cd.Size); tags["TYPE"] != "iso9660" || tags["LABEL"] != "config-2" {
		t.Fatalf("blkid: %v", tags)
	}
	got := make([]byte, len(raw))
	if _, err := disk.ReadAt(got, cd.Start); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("config drive bytes differ (%v)", err)
	}
	ins, err := Inspect(disk, testDiskSize)
	if err != nil || ins.Partition(cd.Number).Role != RoleConfigDrive {
		t.Fatalf("inspect: %+v %v", ins, err)
	}
}
