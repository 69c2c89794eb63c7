package iscsi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/iscsitarget/iscsitest"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

// spanDisk is a ramdisk's disk whose writes take 100 ms each; it records
// when its first write began and its last one ended.
type spanDisk struct {
	mu          sync.Mutex
	b           []byte
	first, last time.Time
}

func (d *spanDisk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return copy(p, d.b[off:]), nil
}

func (d *spanDisk) WriteAt(p []byte, off int64) (int, error) {
	began := time.Now()
	time.Sleep(100 * time.Millisecond)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.first.IsZero() || began.Before(d.first) {
		d.first = began
	}
	d.last = time.Now()
	return copy(d.b[off:], p), nil
}

func (d *spanDisk) span() (first, last time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.first, d.last
}

// TestWritesTakeTurns: with MaxWrites 1 three nodes' images are written
// one after the other; with 3 the same three are written at once.
func TestWritesTakeTurns(t *testing.T) {
	img := make([]byte, 4<<20)
	img[510], img[511] = 0x55, 0xaa
	r := rand.NewChaCha8([32]byte{7})
	r.Read(img[1<<20 : 4<<20])
	for _, maxWrites := range []int{1, 3} {
		t.Run(fmt.Sprint("MaxWrites=", maxWrites), func(t *testing.T) {
			portals := map[string]string{} // the node's address -> its target's listener
			var disks []*spanDisk
			for i := range 3 {
				d := &spanDisk{b: make([]byte, 16<<20)}
				_, portal := iscsitest.Serve(t, iscsitarget.Config{IQN: fmt.Sprintf("iqn.2026-12.io.metalbed.test:n%d", i), Disk: d, Size: int64(len(d.b))})
				portals[fmt.Sprintf("127.0.0.%d:3260", 11+i)] = portal
				disks = append(disks, d)
			}
			cache, err := imagecache.New(imagecache.Config{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				real, ok := portals[addr]
				if !ok {
					return nil, fmt.Errorf("no ramdisk at %s", addr)
				}
				return (&net.Dialer{}).DialContext(ctx, network, real)
			}
			dir := t.TempDir()
			d, err := New(Config{Config: deploy.Config{Images: cache, DialContext: dial}, ImagesDir: dir, MaxWrites: maxWrites})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for i := range 3 {
				n := &provisioner.Node{UUID: fmt.Sprintf("00000000-0000-0000-0000-00000000000%d", i),
					DriverInternalInfo: map[string]any{"is_whole_disk_image": true}}
				if err := os.MkdirAll(d.imageDir(n), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d.imageDir(n), "disk"), img, 0o600); err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := d.writeImage(t.Context(), n, fmt.Sprintf("127.0.0.%d", 11+i), fmt.Sprintf("iqn.2026-12.io.metalbed.test:n%d", i)); err != nil {
						t.Errorf("node %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			overlaps := 0
			for i, a := range disks {
				af, al := a.span()
				if af.IsZero() {
					t.Fatalf("disk %d was not written", i)
				}
				for _, b := range disks[i+1:] {
					if bf, bl := b.span(); af.Before(bl) && bf.Before(al) {
						overlaps++
					}
				}
			}
			switch {
			case maxWrites == 1 && overlaps > 0:
				t.Errorf("MaxWrites 1: %d pairs of images were written at the same time", overlaps)
			case maxWrites == 3 && overlaps < 3:
				t.Errorf("MaxWrites 3: only %d of 3 pairs of images were written at the same time", overlaps)
			}
		})
	}
}
