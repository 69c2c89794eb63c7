package sim

import (
	"context"
	"testing"
	"time"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/timing"
)

// paceFirmware writes n bytes to the boot disk in 64 KiB writes and
// reports the boot's pace and how long the writes took.
type paceFirmware struct {
	n    int
	done chan paceResult
}

type paceResult struct {
	pace timing.Figures
	took time.Duration
	err  error
}

func (f paceFirmware) Boot(ctx context.Context, b *BootContext) error {
	buf := make([]byte, 64<<10)
	start := time.Now()
	var err error
	for off := 0; off < f.n && err == nil; off += len(buf) {
		_, err = b.Disk.WriteAt(buf, int64(off))
	}
	f.done <- paceResult{pace: b.Pace, took: time.Since(start), err: err}
	<-ctx.Done()
	return nil
}

// TestDiskWriteRate: a machine whose pace gives its disk 8 MB/s takes at
// least 0.5 s to have 4 MB written (a lower bound: a loaded host only
// makes it slower), and its firmware sees its pace.
func TestDiskWriteRate(t *testing.T) {
	pace := timing.Figures{DiskWriteBytesPerSec: 8e6, POST: time.Millisecond}
	fw := paceFirmware{n: 4e6, done: make(chan paceResult, 1)}
	m := open(t, Config{StateDir: t.TempDir(), DiskBytes: 8 << 20, Pace: pace, Firmware: fw})
	mustPower(t, m, vms.ActionOn)
	r := <-fw.done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.pace != pace {
		t.Errorf("the firmware saw pace %v, want %v", r.pace, pace)
	}
	t.Logf("4 MB written in %v", r.took)
	if r.took < 450*time.Millisecond {
		t.Errorf("4 MB written in %v at 8 MB/s", r.took)
	}
}
