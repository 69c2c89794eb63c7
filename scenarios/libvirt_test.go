//go:build libvirt_dlopen

package scenarios

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestLibvirtFeatures runs the @libvirt scenarios on real VMs: the
// metalbed binary built with libvirt support, the deploy ramdisk built by
// `metalbed ramdisk build`, every testbed a `metalbed up --backend
// libvirt`. It needs root and a running libvirtd (ci/libvirt/start.sh);
// without them it skips, unless METALBED_LIBVIRT=required (ci/libvirt/test.sh).
func TestLibvirtFeatures(t *testing.T) {
	requireLibvirtVMs(t)
	tools := map[string]string{
		"ipmitool":  testenv.RequireTool(t, "ipmitool", "ipmitool"),
		"baremetal": testenv.RequireTool(t, "baremetal", "python3-ironicclient"),
	}
	work := t.TempDir()
	bin, rd := buildLibvirtMetalbed(t, work)
	tags := LibvirtTags
	if *optTags != DefaultTags {
		tags = *optTags
	}
	res, err := RunSuite(t.Context(), Options{
		Bin:         bin,
		Paths:       strings.Split(*optPaths, ","),
		Tags:        tags,
		Format:      "pretty",
		Concurrency: 1, // TCG on 2 cores: one VM boots at a time well
		Tools:       tools,
		Work:        work,
		Out:         os.Stdout,
		NoColors:    true,
		Backend:     "libvirt",
		RamdiskDir:  rd,
		Rerun: func(ref string) string {
			return "go test -tags libvirt_dlopen -count=1 ./scenarios -run TestLibvirtFeatures -args -godog.paths=" + ref
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Summary())
	if !res.OK() {
		t.Fatalf("%s", res.Summary())
	}
	if res.Passed == 0 {
		t.Fatal("no @libvirt scenario ran")
	}
}

// requireLibvirtVMs skips a test of real VMs (or, under
// METALBED_LIBVIRT=required, fails it) unless this process is root and
// libvirtd runs (ci/libvirt/start.sh); -short skips it.
func requireLibvirtVMs(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real VMs; skipped with -short")
	}
	testenv.RequireLibvirt(t)
}

// buildLibvirtMetalbed builds the metalbed binary with libvirt support
// into dir and the deploy kernel and ramdisk real VMs boot (`metalbed
// ramdisk build`, vmlinuz and initramfs) into dir/ramdisk; it returns both
// paths.
func buildLibvirtMetalbed(t *testing.T, dir string) (bin, ramdiskDir string) {
	t.Helper()
	bin = filepath.Join(dir, "metalbed")
	build := exec.CommandContext(t.Context(), "go", "build", "-tags", "libvirt_dlopen", "-o", bin, "github.com/metalbed/metalbed/cmd/metalbed")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags libvirt_dlopen metalbed: %v\n%s", err, out)
	}
	ramdiskDir = filepath.Join(dir, "ramdisk")
	if out, err := exec.CommandContext(t.Context(), bin, "ramdisk", "build", "--out", ramdiskDir, "--src", "..").CombinedOutput(); err != nil {
		t.Fatalf("metalbed ramdisk build: %v\n%s", err, out)
	}
	return bin, ramdiskDir
}

// TestLibvirtDemo runs the README's `metalbed demo --backend libvirt`: four
// VMs deployed at once, as the simulated demo, every instance booted and
// every node undeployed.
func TestLibvirtDemo(t *testing.T) {
	requireLibvirtVMs(t)
	bin, rd := buildLibvirtMetalbed(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "demo", "--backend", "libvirt", "--ramdisk-dir", rd, "--log-level", "warn").CombinedOutput()
	t.Logf("metalbed demo --backend libvirt:\n%s", out)
	if err != nil {
		t.Fatalf("metalbed demo --backend libvirt: %v", err)
	}
	if s := string(out); !strings.Contains(s, "4 of 4 instances booted") || strings.Count(s, "available again in") != 4 {
		t.Errorf("the demo on VMs did not boot and undeploy all four machines")
	}
}
