package iscsitarget

// Interop tests drive real initiators nobody here wrote: libiscsi's tools
// (Debian libiscsi-bin) and qemu-img/qemu-io (qemu-utils with
// qemu-block-extra, which speak iSCSI through libiscsi).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// fileTarget serves a sparse file of size bytes; it returns the file path
// and the iscsi:// URL of LUN 1.
func fileTarget(t *testing.T, size int64, cfg Config) (string, string, *Target) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	cfg.Disk = f
	if cfg.IQN == "" {
		cfg.IQN = testIQN
	}
	tg, addr := startTarget(t, cfg)
	return path, fmt.Sprintf("iscsi://%s/%s/1", addr, cfg.IQN), tg
}

func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func TestInteropLibiscsiTools(t *testing.T) {
	testenv.RequireTool(t, "iscsi-ls", "libiscsi-bin")
	_, url, _ := fileTarget(t, 64<<20, Config{})
	portal := strings.TrimSuffix(url, "/"+testIQN+"/1")
	out, err := runTool(t, "iscsi-ls", "-s", portal)
	if err != nil {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Target:"+testIQN) || !regexp.MustCompile(`Lun:1\s+Type:DIRECT_ACCESS \(Size:6[34]M\)`).MatchString(out) ||
		!strings.Contains(out, "Lun:0") {
		t.Errorf("iscsi-ls does not show LUN 0 and a 64M LUN 1:\n%s", out)
	}
	out, err = runTool(t, "iscsi-inq", url)
	if err != nil || !strings.Contains(out, "Peripheral Device Type:DIRECT_ACCESS") || !strings.Contains(out, "Vendor:METALBED") {
		t.Errorf("iscsi-inq: %v\n%s", err, out)
	}
	out, err = runTool(t, "iscsi-inq", "-e", "1", "-c", "0x83", url)
	if err != nil {
		t.Errorf("iscsi-inq VPD 0x83: %v\n%s", err, out)
	}
	out, err = runTool(t, "iscsi-readcapacity16", url)
	if err != nil || !strings.Contains(out, "Total size:67108864") {
		t.Errorf("iscsi-readcapacity16: %v\n%s", err, out)
	}
}

func TestInteropCHAP(t *testing.T) {
	testenv.RequireTool(t, "iscsi-inq", "libiscsi-bin")
	_, url, _ := fileTarget(t, 16<<20, Config{CHAP: CHAP{Username: "conductor", Secret: "s3cret-123456"}})
	withCreds := func(user, secret string) string {
		return strings.Replace(url, "iscsi://", "iscsi://"+user+"%"+secret+"@", 1)
	}
	if out, err := runTool(t, "iscsi-inq", withCreds("conductor", "s3cret-123456")); err != nil {
		t.Errorf("right secret refused: %v\n%s", err, out)
	}
	if out, err := runTool(t, "iscsi-inq", withCreds("conductor", "wrong-secret")); err == nil {
		t.Errorf("wrong secret logged in:\n%s", out)
	}
	if out, err := runTool(t, "iscsi-inq", url); err == nil {
		t.Errorf("no credentials logged in:\n%s", out)
	}
}

// TestInteropMutualCHAP: libiscsi authenticates the target too
// (LIBISCSI_CHAP_TARGET_USERNAME/PASSWORD) and rejects a wrong answer.
func TestInteropMutualCHAP(t *testing.T) {
	tool := testenv.RequireTool(t, "iscsi-readcapacity16", "libiscsi-bin")
	_, url, _ := fileTarget(t, 16<<20, Config{CHAP: CHAP{
		Username: "conductor", Secret: "s3cret-123456", MutualUsername: "ramdisk", MutualSecret: "mutual-654321"}})
	url = strings.Replace(url, "iscsi://", "iscsi://conductor%s3cret-123456@", 1)
	run := func(targetSecret string) (string, error) {
		cmd := exec.CommandContext(t.Context(), tool, "-s", url)
		cmd.Env = append(os.Environ(), "LIBISCSI_CHAP_TARGET_USERNAME=ramdisk", "LIBISCSI_CHAP_TARGET_PASSWORD="+targetSecret)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("mutual-654321"); err != nil || strings.TrimSpace(out) != "16777216" {
		t.Errorf("mutual CHAP: %v\n%s", err, out)
	}
	if out, err := run("not-the-secret"); err == nil || !strings.Contains(out, "CHAP_R") {
		t.Errorf("initiator accepted a target that does not know the mutual secret: %v\n%s", err, out)
	}
}

func sha256File(t *testing.T, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func randomFile(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// qemuRoundTrip writes src through qemu-img to url, reads it back and
// returns the read-back path.
func qemuRoundTrip(t *testing.T, src, url string) string {
	t.Helper()
	if out, err := runTool(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, url); err != nil {
		t.Fatalf("qemu-img write: %v\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "back.img")
	if out, err := runTool(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", url, back); err != nil {
		t.Fatalf("qemu-img read: %v\n%s", err, out)
	}
	return back
}

func TestInteropQemuImg256MiB(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils (with qemu-block-extra)")
	const size = 256 << 20
	disk, url, _ := fileTarget(t, size, Config{})
	src := randomFile(t, size)
	back := qemuRoundTrip(t, src, url)
	want := sha256File(t, src, size)
	if got := sha256File(t, disk, size); got != want {
		t.Errorf("target disk sha256 %s, source %s", got, want)
	}
	if got := sha256File(t, back, size); got != want {
		t.Errorf("read-back sha256 %s, source %s", got, want)
	}
}

func TestInteropTwoTargetsConcurrent(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils (with qemu-block-extra)")
	const size = 32 << 20
	diskA, urlA, _ := fileTarget(t, size, Config{IQN: "iqn.2026-11.org.metalbed.test:a"})
	diskB, urlB, _ := fileTarget(t, size, Config{IQN: "iqn.2026-11.org.metalbed.test:b"})
	srcA, srcB := randomFile(t, size), randomFile(t, size)
	var wg sync.WaitGroup
	for _, x := range [][2]string{{srcA, urlA}, {srcB, urlB}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := runTool(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", x[0], x[1]); err != nil {
				t.Errorf("qemu-img %s: %v\n%s", x[1], err, out)
			}
		}()
	}
	wg.Wait()
	if sha256File(t, diskA, size) != sha256File(t, srcA, size) {
		t.Error("target A does not hold exactly its own bytes")
	}
	if sha256File(t, diskB, size) != sha256File(t, srcB, size) {
		t.Error("target B does not hold exactly its own bytes")
	}
}

// TestInteropHeaderDigest: qemu-img (libiscsi) with HeaderDigest=CRC32C,
// which gotgt agreed to and then did not process.
func TestInteropHeaderDigest(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils (with qemu-block-extra)")
	const size = 16 << 20
	h := &countingHandler{counts: map[string]int{}}
	disk, url, _ := fileTarget(t, size, Config{Logger: slog.New(h)})
	addr := strings.Split(strings.TrimPrefix(url, "iscsi://"), "/")[0]
	opts := fmt.Sprintf("driver=iscsi,transport=tcp,portal=%s,target=%s,lun=1,header-digest=crc32c", addr, testIQN)
	src := randomFile(t, size)
	if out, err := runTool(t, "qemu-img", "convert", "-n", "-f", "raw", src, "--target-image-opts", opts); err != nil {
		t.Fatalf("qemu-img write: %v\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "back.img")
	if out, err := runTool(t, "qemu-img", "convert", "-O", "raw", "--image-opts", opts, back); err != nil {
		t.Fatalf("qemu-img read: %v\n%s", err, out)
	}
	want := sha256File(t, src, size)
	if sha256File(t, disk, size) != want || sha256File(t, back, size) != want {
		t.Error("data differs after a round trip with header digests")
	}
	if n := h.count("iscsi login header_digest=true"); n < 2 {
		t.Errorf("%d logins with HeaderDigest=CRC32C, want 2", n)
	}
}

// countingHandler counts log records by message (and, for logins, by
// message plus the header_digest attribute).
type countingHandler struct {
	mu     sync.Mutex
	counts map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.counts[r.Message]++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "header_digest" {
			h.counts[r.Message+" header_digest="+a.Value.String()]++
		}
		return true
	})
	h.mu.Unlock()
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}

// TestInteropIdleKeepalive keeps a libiscsi session (qemu-io) idle for
// 30 s, with NOPs flowing both ways, then reads again.
func TestInteropIdleKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s idle session; skipped with -short")
	}
	testenv.RequireTool(t, "qemu-io", "qemu-utils (with qemu-block-extra)")
	h := &countingHandler{counts: map[string]int{}}
	disk, url, _ := fileTarget(t, 16<<20, Config{Logger: slog.New(h), NopInterval: 4 * time.Second, NopTimeout: 10 * time.Second})
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("metalbed-keepalive-1"), 4096)
	f.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-io", "-f", "raw", url)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string) {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("qemu-io never printed %q:\n%s", what, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	io.WriteString(stdin, "read -v 4096 20\n")
	waitFor("read 20/20 bytes at offset 4096")
	if !strings.Contains(out.String(), "6d 65 74 61 6c 62 65 64") { // "metalbed"
		t.Fatalf("qemu-io read the wrong bytes:\n%s", out.String())
	}
	pingsBefore, nopsBefore := h.count("iscsi nop-in ping"), h.count("iscsi nop-out")
	// The subject of the test: 30 s without any I/O.
	select {
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	io.WriteString(stdin, "read -v 8192 16\n")
	waitFor("read 16/16 bytes at offset 8192")
	io.WriteString(stdin, "quit\n")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("qemu-io: %v\n%s", err, out.String())
	}
	pings, nops := h.count("iscsi nop-in ping")-pingsBefore, h.count("iscsi nop-out")-nopsBefore
	t.Logf("during 30 s idle: %d NOP-In pings sent, %d NOP-Outs received", pings, nops)
	if nops == 0 {
		t.Error("no NOP-Out from the initiator during 30 s idle")
	}
	if h.count("iscsi connection dropped") > 0 {
		t.Error("target dropped the idle connection")
	}
}
