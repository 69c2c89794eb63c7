package deploy_test

import (
	"context"
	"errors"
	"github.com/metalbed/metalbed/internal/events"
	"io/fs"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

func newCore(t *testing.T, rec events.Recorder) *deploy.Core {
	t.Helper()
	cache, err := imagecache.New(imagecache.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := deploy.New("test", deploy.Config{Images: cache, Recorder: rec}, map[string]string{"Thing": "set"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fakeTask(t *testing.T) *drivers.Task {
	t.Helper()
	task, err := drivers.NewFakeHardware().NewTask(&provisioner.Node{UUID: "n1", PowerState: provisioner.PowerOn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestNewNamesWhatIsMissing(t *testing.T) {
	_, err := deploy.New("iscsi", deploy.Config{}, map[string]string{"ImagesDir": "", "APIURL": "x"})
	if err == nil || err.Error() != "iscsi deploy: missing Images, ImagesDir" {
		t.Errorf("New: %v", err)
	}
	_, err = deploy.New("direct", deploy.Config{Images: &imagecache.Cache{}, DefaultBootMode: "efi"}, nil)
	if err == nil || !strings.Contains(err.Error(), "want uefi or bios") {
		t.Errorf("bad boot mode: %v", err)
	}
}

// TestFailKeepsCause: Fail powers the node off and returns a DeployError
// whose message is last_error's and whose cause errors.Is finds.
func TestFailKeepsCause(t *testing.T) {
	c := newCore(t, nil)
	task := fakeTask(t)
	cause := fs.ErrNotExist
	err := c.Fail(t.Context(), task, cause, "Deploy failed for instance None. Error: gone")
	var de *drivers.DeployError
	if !errors.As(err, &de) || de.Msg != "Deploy failed for instance None. Error: gone" || err.Error() != de.Msg {
		t.Fatalf("Fail: %#v", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("the cause is lost")
	}
	if task.Node.PowerState != provisioner.PowerOff {
		t.Errorf("power %s after Fail, want off", task.Node.PowerState)
	}
	// A power off that fails too is told in the message and kept as a cause.
	task.Power = brokenPower{task.Power}
	err = c.Fail(t.Context(), task, cause, "Failed.")
	if !strings.HasPrefix(err.Error(), "Failed. Also failed to power off node n1. Error: BMC unreachable") ||
		!errors.Is(err, errBMC) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Fail with a broken BMC: %v", err)
	}
}

var errBMC = errors.New("BMC unreachable")

type brokenPower struct{ drivers.PowerInterface }

func (brokenPower) SetPowerState(context.Context, *provisioner.Node, provisioner.PowerState) error {
	return errBMC
}

// TestMilestonesGoThroughOneSink: the steps' milestones reach the
// Config.Milestone hook.
func TestMilestonesGoThroughOneSink(t *testing.T) {
	var got []string
	c := newCore(t, events.RecorderFunc(func(e events.Event) { got = append(got, e.Node+" "+string(e.Kind)+": "+e.Detail) }))
	task := fakeTask(t)
	step, err := c.BootRamdisk(t.Context(), task, "booting the deploy ramdisk")
	if err != nil || step != drivers.StepWait {
		t.Fatalf("BootRamdisk: %v, %v", step, err)
	}
	if len(got) != 1 || got[0] != "n1 conductor.power_on: booting the deploy ramdisk" {
		t.Errorf("milestones %q", got)
	}
	if step, err := c.FinishCleaning(t.Context(), task); err != nil || step != drivers.StepDone || task.Node.PowerState != provisioner.PowerOff {
		t.Errorf("FinishCleaning: %v, %v, power %s", step, err, task.Node.PowerState)
	}
}
