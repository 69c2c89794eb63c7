package scenarios

import (
	"cmp"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// Netboot is one running `metalbed netboot serve`: the DHCP, TFTP and HTTP
// servers a standalone Ironic (dhcp_provider = none) relies on.
type Netboot struct {
	DHCPAddr string // 127.0.0.1:<port>
	TFTPAddr string
	HTTPURL  string // http://127.0.0.1:<port> (no trailing slash)
	Stdout   *testenv.SyncBuffer
	Stderr   *testenv.SyncBuffer
	stopFn   func(testing.TB)
}

// NetbootOptions configure `metalbed netboot serve` on loopback.
type NetbootOptions struct {
	TFTPRoot, HTTPRoot string
	// IPXEScript is the URL answered to iPXE clients ("" = none), e.g.
	// Ironic's <http_url>/boot.ipxe. Only known once HTTPURL is: give
	// IPXEScriptPath instead to have it built from the HTTP address.
	IPXEScriptPath string
	MACs           []string // answered hosts
	// AnswerUnknown answers every MAC (--answer-unknown), for machines
	// started after the server, which point their ROMs at it.
	AnswerUnknown bool
	// Range is the leases, FIRST-LAST; "" = 127.0.0.100-127.0.0.199. Two
	// servers whose machines run at once need ranges apart: each agent
	// listens on its lease's port 9999.
	Range string
	// NetNS runs the server inside that network namespace (a real-VM boot
	// network), its DHCP on 0.0.0.0:67 bound to Iface (broadcast replies on
	// a real link) and TFTP and HTTP on ServerIP. "" = on loopback.
	NetNS, Iface, ServerIP string
}

// TFTPPort is the port of nb's TFTP server.
func (nb *Netboot) TFTPPort(t testing.TB) string {
	t.Helper()
	_, port, err := net.SplitHostPort(nb.TFTPAddr)
	if err != nil {
		t.Fatalf("netboot serve's TFTP address %q: %v", nb.TFTPAddr, err)
	}
	return port
}

// startNetboot runs `metalbed netboot serve` with DHCP, TFTP and HTTP on
// ephemeral loopback ports (server 127.0.0.1, leases 127.0.0.100-199) and
// reads the addresses from its listen lines. The iPXE script URL needs the
// HTTP port, so the server is started once to learn it and, when a script
// is wanted, once more with --http-addr pinned to that port.
func startNetboot(t testing.TB, bin string, o NetbootOptions) *Netboot {
	t.Helper()
	nb := runNetboot(t, bin, o, net.JoinHostPort(cmp.Or(o.ServerIP, "127.0.0.1"), "0"), "")
	if o.IPXEScriptPath == "" {
		return nb
	}
	httpAddr := strings.TrimPrefix(nb.HTTPURL, "http://")
	nb.stop(t)
	return runNetboot(t, bin, o, httpAddr, nb.HTTPURL+"/"+strings.TrimPrefix(o.IPXEScriptPath, "/"))
}

func runNetboot(t testing.TB, bin string, o NetbootOptions, httpAddr, script string) *Netboot {
	t.Helper()
	nb := &Netboot{Stdout: &testenv.SyncBuffer{}, Stderr: &testenv.SyncBuffer{}}
	server, dhcpAddr := cmp.Or(o.ServerIP, "127.0.0.1"), "127.0.0.1:0"
	if o.NetNS != "" {
		dhcpAddr = "0.0.0.0:67"
	}
	args := []string{"netboot", "serve", "--verbose",
		"--dhcp-addr", dhcpAddr, "--server-ip", server, "--range", cmp.Or(o.Range, "127.0.0.100-127.0.0.199"),
		"--tftp-root", o.TFTPRoot, "--tftp-addr", net.JoinHostPort(server, "0"),
		"--http-root", o.HTTPRoot, "--http-addr", httpAddr}
	if o.Iface != "" {
		args = append(args, "--dhcp-iface", o.Iface)
	}
	for _, m := range o.MACs {
		args = append(args, "--host", m)
	}
	if o.AnswerUnknown {
		args = append(args, "--answer-unknown")
	}
	if script != "" {
		args = append(args, "--ipxe-script", script)
	}
	cmd := exec.Command(bin, args...)
	if o.NetNS != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", o.NetNS, bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = nb.Stdout, nb.Stderr
	// A test killed by -timeout runs no cleanup: the child then gets SIGTERM.
	if err := testenv.StartTied(cmd, syscall.SIGTERM); err != nil {
		t.Fatalf("metalbed netboot serve: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	nb.stopFn = func(t testing.TB) {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("metalbed netboot serve did not stop within 20 s of SIGINT")
		}
	}
	t.Cleanup(func() { nb.stop(t) })
	re := regexp.MustCompile(`(?m)^dhcp  (\S+) [^\n]*\n(?:[^\n]*\n)*?tftp  (\S+) [^\n]*\n(?:[^\n]*\n)*?http  http://(\S+)/ `)
	var m []string
	_, err := pollUntil(t.Context(), 30*time.Second, 20*time.Millisecond, "netboot serve listen lines", func() (bool, string) {
		select {
		case err := <-done:
			done <- err
			return false, fmt.Sprintf("exited: %v: %s", err, nb.Stderr)
		default:
		}
		m = re.FindStringSubmatch(nb.Stdout.String())
		return m != nil, nb.Stdout.String() + nb.Stderr.String()
	})
	if err != nil {
		t.Fatal(err)
	}
	nb.DHCPAddr, nb.TFTPAddr, nb.HTTPURL = m[1], m[2], "http://"+m[3]
	return nb
}

func (nb *Netboot) stop(t testing.TB) { nb.stopFn(t) }

// DeployArtifacts are what an Ironic node's deploy needs, as files.
type DeployArtifacts struct {
	Kernel, Ramdisk string // deploy kernel (bzImage) and initramfs
	Image           string // whole-disk instance image
	ImageMD5        string
	ImageSize       int64
}

// buildDeployArtifacts writes the deploy kernel (the gokrazy bzImage
// metalbed's simulated kernel boots), the deploy ramdisk (metalbed's
// initramfs with the metalbed binary as /init: vms/ramdisk.BuildInitramfs,
// which has no CLI yet) and a whole-disk image (`metalbed image build`) into
// dir; the image boots in bootMode (bios or uefi).
func buildDeployArtifacts(t testing.TB, bin, dir, bootMode string) DeployArtifacts {
	t.Helper()
	a := DeployArtifacts{
		Kernel:  filepath.Join(dir, "deploy-"+bootMode+".kernel"),
		Ramdisk: filepath.Join(dir, "deploy-"+bootMode+".initramfs"),
		Image:   filepath.Join(dir, "instance-"+bootMode+".img"),
	}
	mod := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Dir}}", "github.com/gokrazy/kernel.amd64")
	mod.Dir = repoRoot(t)
	out, err := mod.Output()
	if err != nil {
		t.Fatalf("locate the gokrazy kernel module: %v", err)
	}
	copyFile(t, filepath.Join(strings.TrimSpace(string(out)), "vmlinuz"), a.Kernel)

	f, err := os.Create(a.Ramdisk)
	if err != nil {
		t.Fatal(err)
	}
	if err := ramdisk.BuildInitramfs(f, ramdisk.ImageConfig{Init: bin, Version: "scenarios"}); err != nil {
		t.Fatalf("build the deploy initramfs: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	buildWholeDiskImage(t, bin, bootMode, &a)
	return a
}

// buildWholeDiskImage builds a whole-disk image booting in bootMode with
// `metalbed image build` at a.Image and fills in its md5 and size.
func buildWholeDiskImage(t testing.TB, bin, bootMode string, a *DeployArtifacts) {
	t.Helper()
	build := exec.CommandContext(t.Context(), bin, "image", "build", "--kind", "whole-disk", "--boot-mode", bootMode, "--out", a.Image)
	build.Dir = repoRoot(t)
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("metalbed image build: %v\n%s", err, out)
	}
	a.ImageMD5 = fileMD5(t, a.Image)
	st, err := os.Stat(a.Image)
	if err != nil {
		t.Fatal(err)
	}
	a.ImageSize = st.Size()
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func fileMD5(t testing.TB, path string) string {
	t.Helper()
	return diskPrefixMD5(t, path, -1)
}

// diskPrefixMD5 is the md5 of the first n bytes of a file (n < 0: all of it).
func diskPrefixMD5(t testing.TB, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if n >= 0 {
		r = io.LimitReader(f, n)
	}
	h := md5.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
