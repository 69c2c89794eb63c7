package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/testbed"
)

// fleetNodes is how many machines TestFleetDeployAtOnce deploys: CI's
// version of the 1 000 of ci/bench/scale.sh (.ci/run runs it without
// -race). Under -race, which makes each machine's ramdisk unpacking ten
// times dearer, 10 machines look for races in the same run.
func fleetNodes() int {
	if raceDetector {
		return 10
	}
	return 50
}

// TestFleetDeployAtOnce is issue 18's fleet run at CI size: `metalbed up
// --nodes 50 --enroll`, all 50 made available, all 50 deployed at once
// (direct deploy, iPXE over HTTP, one whole-disk image) until every one is
// active with the image on its disk, then all 50 undeployed at once with
// automated cleaning until every one is available. Nothing may fail.
func TestFleetDeployAtOnce(t *testing.T) {
	u := startLongUp(t, "deploys a fleet of machines", "--nodes", fmt.Sprint(fleetNodes()), "--boot-interface", "ipxe", "--automated-clean=false", "--log-level", "warn")
	api := testbed.NewClient(u.inv.API)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	img, err := disk.Build(ctx, disk.BuildConfig{Kind: disk.KindWholeDisk, PlaceholderLoader: true, SizeMB: 32, Out: filepath.Join(t.TempDir(), "fleet.img")})
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(u.inv.Nodes))
	for i, n := range u.inv.Nodes {
		names[i] = n.Name
	}
	info := []map[string]any{{"op": "replace", "path": "/deploy_interface", "value": "direct"}}
	for k, v := range map[string]any{"image_source": "file://" + img.Path, "image_checksum": img.MD5, "image_type": "whole-disk"} {
		info = append(info, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
	}
	all := func(what string, each func(node string) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, len(names))
		for _, n := range names {
			wg.Go(func() {
				if err := each(n); err != nil {
					errs <- fmt.Errorf("%s: %s: %w", n, what, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	step := func(target, want string) {
		t.Helper()
		start := time.Now()
		all(target, func(n string) error { return api.Provision(ctx, n, target) })
		waitFleet(t, ctx, api, want, u.inv.Nodes)
		t.Logf("%d nodes %s -> %s in %s", len(names), target, want, time.Since(start).Round(time.Millisecond))
	}
	step("manage", "manageable")
	step("provide", "available")
	all("instance_info", func(n string) error {
		return api.Patch(ctx, n, append(info, map[string]any{"op": "replace", "path": "/automated_clean", "value": true}))
	})
	step("active", "active")
	want, err := readPrefix(img.Path, img.Size)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range u.inv.Nodes {
		got, err := readPrefix(n.Disk.Path, img.Size)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: the disk does not hold the image (%v)", n.Name, err)
		}
	}
	step("deleted", "available")
}

// waitFleet polls the node list until every node rests in want; a failed
// node fails the test at once with its last_error and the end of its
// console.
func waitFleet(t *testing.T, ctx context.Context, api *testbed.Client, want string, nodes []testbed.InventoryNode) {
	t.Helper()
	for {
		var list struct {
			Nodes []struct {
				Name      string  `json:"name"`
				State     string  `json:"provision_state"`
				Target    *string `json:"target_provision_state"`
				LastError string  `json:"last_error"` // null decodes as ""
			} `json:"nodes"`
		}
		if err := api.Do(ctx, "GET", "/v1/nodes?fields=name,provision_state,target_provision_state,last_error", nil, &list); err != nil {
			t.Fatal(err)
		}
		resting := 0
		for _, n := range list.Nodes {
			switch {
			case n.State == "deploy failed" || n.State == "clean failed" || n.State == "error":
				t.Fatalf("%s: %s: %v\nconsole:\n%s", n.Name, n.State, n.LastError, consoleTail(nodes, n.Name))
			case n.State == want && n.Target == nil:
				resting++
			}
		}
		if resting == len(list.Nodes) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d nodes %s when the time ran out", resting, len(list.Nodes), want)
		case <-time.After(time.Second):
		}
	}
}

// consoleTail is the end of the console log of the node named name.
func consoleTail(nodes []testbed.InventoryNode, name string) string {
	for _, n := range nodes {
		if n.Name == name {
			b, err := os.ReadFile(n.ConsoleLog)
			if err != nil {
				return err.Error()
			}
			return string(b[max(0, len(b)-3000):])
		}
	}
	return "no such node"
}

// readPrefix reads the first n bytes of the file at path.
func readPrefix(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	_, err = io.ReadFull(f, b)
	return b, err
}
