package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/metalbed/metalbed/testbed"
)

// errNotRunning is `metalbed status` on a state dir nothing runs on; the
// process exits 3, as an LSB init script's status does.
var errNotRunning = errors.New("not running")

// holderOf resolves --state-dir as up does and says whether a process
// runs a testbed there, and its PID.
func holderOf(stateDir string) (dir string, pid int, running bool, err error) {
	if stateDir == "" {
		if stateDir, err = defaultStateDir(); err != nil {
			return "", 0, false, err
		}
	}
	if dir, err = filepath.Abs(stateDir); err != nil {
		return "", 0, false, err
	}
	pid, running, err = testbed.Holder(dir)
	return dir, pid, running, err
}

// runStatus says whether a `metalbed up` runs on a state dir, its PID and
// what it serves (from inventory.json).
func runStatus(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("status", s)
	stateDir := fs.String("state-dir", "", "state directory `DIR` (default as up's)")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, pid, running, err := holderOf(*stateDir)
	if err != nil {
		return err
	}
	var inv *testbed.Inventory
	if b, err := os.ReadFile(filepath.Join(dir, testbed.InventoryFile)); err == nil {
		inv = new(testbed.Inventory)
		if json.Unmarshal(b, inv) != nil {
			inv = nil
		}
	}
	if *asJSON {
		doc := struct {
			StateDir  string             `json:"state_dir"`
			Running   bool               `json:"running"`
			PID       int                `json:"pid,omitempty"`
			Inventory *testbed.Inventory `json:"inventory,omitempty"`
		}{dir, running, pid, inv}
		if !running {
			doc.Inventory = nil
		}
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else if running {
		fmt.Fprintf(s.Out, "metalbed up is running on %s (pid %d)\n", dir, pid)
		if inv != nil {
			fmt.Fprintf(s.Out, "  machines:  %d\n", len(inv.Nodes))
			for _, kv := range [][2]string{{"api", inv.API}, {"timeline", inv.Timeline}, {"web", inv.Web}} {
				if kv[1] != "" {
					fmt.Fprintf(s.Out, "  %-9s  %s\n", kv[0]+":", kv[1])
				}
			}
		}
	} else {
		fmt.Fprintf(s.Out, "nothing runs on %s\n", dir)
	}
	if !running {
		return errNotRunning
	}
	return nil
}

// runDown stops the `metalbed up` running on a state dir: SIGTERM to the
// process holding its lock, then wait until the lock is free.
func runDown(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("down", s)
	stateDir := fs.String("state-dir", "", "state directory `DIR` (default as up's)")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for it to stop")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, pid, running, err := holderOf(*stateDir)
	if err != nil {
		return err
	}
	if !running {
		fmt.Fprintf(s.Out, "nothing runs on %s\n", dir)
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop pid %d (metalbed up on %s): %w", pid, dir, err)
	}
	deadline := time.NewTimer(*timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, still, err := testbed.Holder(dir); err == nil && !still {
			fmt.Fprintf(s.Out, "stopped metalbed up on %s (pid %d)\n", dir, pid)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("metalbed up on %s (pid %d) still runs %s after SIGTERM", dir, pid, *timeout)
		case <-tick.C:
		}
	}
}
