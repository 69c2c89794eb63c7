package ramdisk

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
)

// TestFaultPassDeployInfoError: layer ramdisk "error" (op
// pass_deploy_info) sends Arg, or "injected fault", as the ramdisk's
// error; the ramdisk asks with the node's UUID (deployment_id).
func TestFaultPassDeployInfoError(t *testing.T) {
	for arg, want := range map[string]string{"disk on fire": "disk on fire", "": "injected fault"} {
		c := newConductor(t)
		env := newEnv(newDisk(t, "vda", 1<<30))
		p, err := ParseCmdline(cmdline(c, ""))
		if err != nil {
			t.Fatal(err)
		}
		in := faulttest.New(t, fault.Rule{Layer: fault.Ramdisk, Op: "pass_deploy_info", Action: "error", Arg: arg})
		if err := Run(t.Context(), Config{Params: p, Env: env, Export: (&recordingExporter{}).export, Faults: in}); err != nil {
			t.Fatal(err)
		}
		calls := c.recorded()
		if len(calls) != 1 || calls[0].body["error"] != want {
			t.Errorf("arg %q: callbacks %+v, want error %q", arg, calls, want)
		}
		if h := in.Hits(); len(h) != 1 || h[0].Who.Node != p.DeploymentID {
			t.Errorf("hits %+v", h)
		}
	}
}

// cancelOn is a console that cancels when a line contains text.
type cancelOn struct {
	mu     sync.Mutex
	b      strings.Builder
	text   string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b.Write(p)
	if strings.Contains(c.b.String(), c.text) {
		c.cancel()
	}
	return len(p), nil
}

// TestFaultNoCallback: "no-callback" keeps the ramdisk from calling back
// until the machine goes away (ctx ends).
func TestFaultNoCallback(t *testing.T) {
	c := newConductor(t)
	env := newEnv(newDisk(t, "vda", 1<<30))
	p, err := ParseCmdline(cmdline(c, ""))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	con := &cancelOn{text: "not calling back", cancel: cancel}
	err = Run(ctx, Config{Params: p, Env: env, Export: (&recordingExporter{}).export, Console: con,
		Faults: faulttest.New(t, fault.Rule{Layer: fault.Ramdisk, Action: "no-callback"})})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want the machine gone", err)
	}
	if calls := c.recorded(); len(calls) != 0 {
		t.Errorf("callbacks %+v", calls)
	}
}

// TestFaultBootloaderFailed: "bootloader-failed" (op bootloader) fails the
// install, without running the installer, with Arg (or a grub-install
// message) as the FAILED callback's error.
func TestFaultBootloaderFailed(t *testing.T) {
	for arg, want := range map[string]string{"grub-install: error: disk not found": "grub-install: error: disk not found", "": "injected fault: grub-install failed"} {
		c := newConductor(t)
		env := newEnv(newDisk(t, "vda", 1<<30))
		p, err := ParseCmdline(cmdline(c, "boot_option=local"))
		if err != nil {
			t.Fatal(err)
		}
		ran := false
		err = Run(t.Context(), Config{Params: p, Env: env, Export: (&recordingExporter{}).export,
			Bootloader: func(context.Context, Disk, string) (Installed, error) { ran = true; return Installed{}, nil },
			Faults:     faulttest.New(t, fault.Rule{Layer: fault.Ramdisk, Op: "bootloader", Action: "bootloader-failed", Arg: arg})})
		if err != nil {
			t.Fatal(err)
		}
		calls := c.recorded()
		if len(calls) != 2 || calls[1].body["status"] != "FAILED" || calls[1].body["error"] != want {
			t.Errorf("arg %q: callbacks %+v", arg, calls)
		}
		if ran {
			t.Error("the installer ran despite the fault")
		}
	}
}
