package disk

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// strictDisk is a disk that, like a SCSI LUN, moves whole sectors only.
type strictDisk struct{ f *os.File }

func (s strictDisk) ReadAt(p []byte, off int64) (int, error) {
	if !aligned(off, len(p)) {
		return 0, fmt.Errorf("unaligned read of %d bytes at %d", len(p), off)
	}
	return s.f.ReadAt(p, off)
}

func (s strictDisk) WriteAt(p []byte, off int64) (int, error) {
	if !aligned(off, len(p)) {
		return 0, fmt.Errorf("unaligned write of %d bytes at %d", len(p), off)
	}
	return s.f.WriteAt(p, off)
}

func TestSectorDiskMatchesByteWrites(t *testing.T) {
	const size = 64 << 10
	ref, under := make(memDisk, size), make(memDisk, size)
	sd := &sectorDisk{r: under, w: under, size: size}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		n := r.IntN(3000) + 1
		off := r.Int64N(size - int64(n))
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(r.IntN(256))
		}
		ref.WriteAt(p, off)
		if _, err := sd.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, r.IntN(3000)+1)
		roff := r.Int64N(size - int64(len(got)))
		if _, err := sd.ReadAt(got, roff); err != nil || !bytes.Equal(got, ref[roff:roff+int64(len(got))]) {
			t.Fatalf("read %d at %d differs (%v)", len(got), roff, err)
		}
	}
	if !bytes.Equal(ref, under) {
		t.Fatal("disks differ")
	}
	if _, err := sd.WriteAt([]byte{1}, size); err == nil {
		t.Fatal("wrote beyond the disk")
	}
}

// TestDeployOnWholeSectorDisk deploys through a disk that refuses partial
// sectors, as an iSCSI LUN would.
func TestDeployOnWholeSectorDisk(t *testing.T) {
	img := buildImage(t, KindPartition, "")
	imgFile := openImage(t, img)
	f := sparseDisk(t, testDiskSize)
	p := PartitionParams{BootMode: BootModeUEFI, BootOption: BootOptionLocal, RootMB: 100, SwapMB: 16, EphemeralMB: 32, ConfigDrive: fatConfigDrive(t)}
	res, err := DeployPartitionImage(t.Context(), strictDisk{f}, testDiskSize, imgFile, img.Size, p)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := Inspect(strictDisk{f}, testDiskSize)
	if err != nil || len(ins.Problems) > 0 || ins.ESP == 0 || len(ins.Layout.Partitions) != 5 {
		t.Fatalf("inspect %+v %v", ins, err)
	}
	if res.RootUUID != img.RootUUID || ins.Layout.Find(RoleRoot).UUID != img.RootUUID {
		t.Fatalf("root UUID %s / %s, image %s", res.RootUUID, ins.Layout.Find(RoleRoot).UUID, img.RootUUID)
	}
	wd := buildImage(t, KindWholeDisk, BootModeUEFI)
	wdFile, err := os.Open(wd.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer wdFile.Close()
	if res, err := DeployWholeDiskImage(t.Context(), strictDisk{f}, testDiskSize, wdFile, wd.Size); err != nil || res.DiskGUID != wd.DiskID {
		t.Fatalf("whole disk: %+v %v", res, err)
	}
}
