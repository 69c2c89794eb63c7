//go:build libvirt_dlopen

package scenarios

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestLibvirtFeatures runs the @libvirt scenarios on real VMs: the
// metalbed binary built with libvirt support, the deploy ramdisk built by
// `metalbed ramdisk build`, every testbed a `metalbed up --backend
// libvirt`. It needs root and a running libvirtd (ci/libvirt/start.sh);
// without them it skips, unless METALBED_LIBVIRT=required (ci/libvirt/test.sh).
func TestLibvirtFeatures(t *testing.T) {
	if testing.Short() {
		t.Skip("real VMs; skipped with -short")
	}
	fail := t.Skipf
	if os.Getenv("METALBED_LIBVIRT") == "required" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("real VMs need root (network namespaces, bridges, qemu:///system)")
	}
	if _, err := os.Stat("/var/run/libvirt/libvirt-sock"); err != nil {
		fail("libvirtd is not running (ci/libvirt/start.sh): %v", err)
	}
	tools := map[string]string{
		"ipmitool":  testenv.RequireTool(t, "ipmitool", "ipmitool"),
		"baremetal": testenv.RequireTool(t, "baremetal", "python3-ironicclient"),
	}
	work := t.TempDir()
	bin := filepath.Join(work, "metalbed")
	build := exec.CommandContext(t.Context(), "go", "build", "-tags", "libvirt_dlopen", "-o", bin, "github.com/metalbed/metalbed/cmd/metalbed")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags libvirt_dlopen metalbed: %v\n%s", err, out)
	}
	rd := filepath.Join(work, "ramdisk")
	if out, err := exec.CommandContext(t.Context(), bin, "ramdisk", "build", "--out", rd, "--src", "..").CombinedOutput(); err != nil {
		t.Fatalf("metalbed ramdisk build: %v\n%s", err, out)
	}
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
