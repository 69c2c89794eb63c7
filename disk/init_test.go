package disk

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// rootTree dumps the root file system of a partition image with debugfs
// (e2fsprogs), a reader nobody here wrote, and returns the directory.
func rootTree(t *testing.T, img *Built) string {
	t.Helper()
	debugfs := testenv.RequireTool(t, "debugfs", "e2fsprogs")
	dir := t.TempDir()
	run(t, debugfs, "-R", "rdump / "+dir, img.Path)
	return dir
}

func TestInstanceImageContents(t *testing.T) {
	img := buildImage(t, KindPartition, "")
	dir := rootTree(t, img)
	f := openImage(t, img)
	for _, p := range []string{"/sbin/init", "/etc/hostname", "/etc/fstab", "/boot/grub/grub.cfg", "/boot/vmlinuz"} {
		want, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatalf("debugfs dump lacks %s: %v", p, err)
		}
		got, err := ReadExt4File(f, img.Size, p, 64<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadExt4File(%s): %d bytes, %v; debugfs: %d bytes", p, len(got), err, len(want))
		}
	}
	fstab, _ := os.ReadFile(filepath.Join(dir, "etc/fstab"))
	if !strings.HasPrefix(string(fstab), "UUID="+img.RootUUID+" / ext4") {
		t.Fatalf("fstab %q", fstab)
	}
	if err := checkStatic(filepath.Join(dir, "sbin/init")); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "sbin/init")); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("/sbin/init not executable: %v %v", st, err)
	}
	if !img.KernelPE {
		t.Fatal("the gokrazy kernel is expected to carry the EFI stub (MZ + PE header)")
	}
	// The init from the image, run as an ordinary process.
	cmd := exec.CommandContext(t.Context(), filepath.Join(dir, "sbin/init"))
	cmd.Env = []string{"METALBED_INSTANCE_ROOT=" + dir, "METALBED_INSTANCE_CMDLINE=root=UUID=" + img.RootUUID + " ro console=ttyS0"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "metalbed-instance: booted metalbed-instance root=UUID=" + img.RootUUID + "\n"; string(out) != want {
		t.Fatalf("init said %q, want %q", out, want)
	}
	// Checksums agree with coreutils.
	sum := strings.Fields(run(t, testenv.RequireTool(t, "sha256sum", "coreutils"), img.Path))[0]
	md := strings.Fields(run(t, testenv.RequireTool(t, "md5sum", "coreutils"), img.Path))[0]
	if sum != img.SHA256 || md != img.MD5 {
		t.Fatalf("checksums %s %s, coreutils %s %s", img.SHA256, img.MD5, sum, md)
	}
}

// TestInstanceInitAsPID1 runs the image's /sbin/init as PID 1 of new PID,
// mount and UTS namespaces, chrooted into the image's tree: it mounts
// /proc, /sys and /dev, sets the host name, announces the boot, and powers
// off (which ends the namespace) on SIGTERM.
func TestInstanceInitAsPID1(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for unshare --pid --mount --uts")
	}
	unshare := testenv.RequireTool(t, "unshare", "util-linux")
	chroot := testenv.RequireTool(t, "chroot", "coreutils")
	img := buildImage(t, KindPartition, "")
	dir := rootTree(t, img)
	cmd := exec.CommandContext(t.Context(), unshare, "--fork", "--pid", "--mount", "--uts", "--propagation", "private", chroot, dir, "/sbin/init")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "metalbed-instance: booted metalbed-instance root=") {
			t.Fatalf("first console line %q", l)
		}
	case <-deadline:
		t.Fatalf("no boot line; stderr: %s", stderr.String())
	}
	// The init's PID on the host is unshare's child.
	children, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task/" + strconv.Itoa(cmd.Process.Pid) + "/children")
	if err != nil || len(strings.Fields(string(children))) != 1 {
		t.Fatalf("children of unshare: %q %v", children, err)
	}
	initPID, _ := strconv.Atoi(strings.Fields(string(children))[0])
	if err := syscall.Kill(initPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	cmd.Wait() // the namespace's init ends by reboot(2): not a clean exit
	if len(rest) == 0 || !strings.Contains(rest[0], "powering off") {
		t.Fatalf("after SIGTERM: %q; stderr: %s", rest, stderr.String())
	}
	if strings.Contains(stderr.String(), "mount /proc") || strings.Contains(stderr.String(), "sethostname") {
		t.Fatalf("init as PID 1 failed to set up: %s", stderr.String())
	}
}
