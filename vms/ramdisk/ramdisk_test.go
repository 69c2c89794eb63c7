package ramdisk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// fileDev is a disk backed by a sparse temp file.
type fileDev struct {
	*os.File
	size int64
}

func (f fileDev) Size() int64 { return f.size }

func newDisk(t *testing.T, name string, size int64) Disk {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name+".img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return Disk{Name: name, SizeBytes: size, Model: "QEMU HARDDISK", Serial: "S-" + name, Dev: fileDev{f, size}}
}

// testEnv is a machine on its own loopback address, as each simulated
// machine has. Listening uses real sockets.
type testEnv struct {
	ip       net.IP
	disks    []Disk
	mu       sync.Mutex
	rebooted bool
}

func newEnv(disks ...Disk) *testEnv {
	// A random 127.77.x.y address keeps fixed ports (3260, 10000) free of
	// collisions with anything else on the machine.
	ip := net.IPv4(127, 77, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1))
	return &testEnv{ip: ip, disks: disks}
}

func (e *testEnv) Disks(context.Context) ([]Disk, error) { return e.disks, nil }
func (e *testEnv) Listen(_ context.Context, port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort(e.ip.String(), fmt.Sprint(port)))
}
func (e *testEnv) Reboot(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rebooted = true
	return nil
}
func (e *testEnv) didReboot() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rebooted
}

// conductor is the API side of the callbacks: it records every callback and
// answers it by knocking on the ramdisk's notice port, as Ironic did.
type conductor struct {
	t     *testing.T
	srv   *httptest.Server
	mu    sync.Mutex
	calls []call
	// onDeployInfo runs between receiving pass_deploy_info and the notice
	// (where the real conductor writes the image over iSCSI).
	onDeployInfo func(info deployInfo)
}

type call struct {
	method string
	token  string
	body   map[string]string
}

func newConductor(t *testing.T) *conductor {
	c := &conductor{t: t}
	c.srv = httptest.NewServer(http.HandlerFunc(c.handle))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *conductor) handle(w http.ResponseWriter, r *http.Request) {
	method := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
		return
	}
	c.mu.Lock()
	c.calls = append(c.calls, call{method: method, token: r.Header.Get("X-Auth-Token"), body: body})
	c.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	go func() {
		if method == "pass_deploy_info" && c.onDeployInfo != nil {
			c.onDeployInfo(deployInfo{Address: body["address"], IQN: body["iqn"], Key: body["key"], Error: body["error"]})
		}
		conn, err := net.Dial("tcp", net.JoinHostPort(body["address"], "10000"))
		if err != nil {
			c.t.Errorf("notify %s: %v", body["address"], err)
			return
		}
		io.WriteString(conn, "done")
		conn.Close()
	}()
}

func (c *conductor) recorded() []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]call(nil), c.calls...)
}

func cmdline(c *conductor, extra string) string {
	return "deployment_id=1be26c0b-03f2-4d2e-ae87-c02d7f33c123 deployment_key=0123456789ABCDEFGHIJKLMNOPQRSTUV " +
		"iscsi_target_iqn=iqn.2008-10.org.openstack:1be26c0b-03f2-4d2e-ae87-c02d7f33c123 " +
		"ironic_api_url=" + c.srv.URL + " disk=cciss/c0d0,sda,hda,vda troubleshoot=0 " + extra
}

// recordingExporter serves the real listener: it accepts connections and
// reports what it was asked to export. The real iSCSI target is covered by
// the iscsitarget package and the end-to-end deploy tests.
type recordingExporter struct {
	mu   sync.Mutex
	iqn  string
	dev  BlockDevice
	done chan struct{}
}

func (x *recordingExporter) export(ctx context.Context, ln net.Listener, iqn string, dev BlockDevice) error {
	x.mu.Lock()
	x.iqn, x.dev, x.done = iqn, dev, make(chan struct{})
	x.mu.Unlock()
	defer close(x.done)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	<-ctx.Done()
	return nil
}

func TestNetbootDeploy(t *testing.T) {
	c := newConductor(t)
	sda := newDisk(t, "sda", 1<<30)
	env := newEnv(newDisk(t, "sdb", 2<<30), sda)
	exp := &recordingExporter{}
	var reached []string
	c.onDeployInfo = func(info deployInfo) {
		// The target must be up while the conductor works.
		conn, err := net.Dial("tcp", net.JoinHostPort(info.Address, "3260"))
		if err != nil {
			t.Errorf("iSCSI portal not reachable during deploy: %v", err)
			return
		}
		conn.Close()
	}
	p, err := ParseCmdline(cmdline(c, "ip="+env.ip.String()+":127.0.0.9:127.0.0.1:255.0.0.0 BOOTIF=01-52-54-00-12-34-56"))
	if err != nil {
		t.Fatal(err)
	}
	var console strings.Builder
	err = Run(t.Context(), Config{
		Params: p, Env: env, Export: exp.export,
		FetchToken: func(_ context.Context, server net.IP, port int, name string) ([]byte, error) {
			if !server.Equal(net.ParseIP("127.0.0.9")) || port != 69 || name != "token-"+p.DeploymentID {
				return nil, fmt.Errorf("unexpected fetch %s:%d/%s", server, port, name)
			}
			return []byte("s3cret-token\n"), nil
		},
		Console:  &console,
		Recorder: events.RecorderFunc(func(e events.Event) { reached = append(reached, string(e.Kind)) }),
	})
	if err != nil {
		t.Fatalf("Run: %v\nconsole:\n%s", err, console.String())
	}
	calls := c.recorded()
	if len(calls) != 1 || calls[0].method != "pass_deploy_info" {
		t.Fatalf("callbacks = %+v", calls)
	}
	want := map[string]string{"address": env.ip.String(), "key": p.DeploymentKey, "iqn": p.ISCSITargetIQN, "error": ""}
	if fmt.Sprint(calls[0].body) != fmt.Sprint(want) {
		t.Errorf("pass_deploy_info body = %v, want %v", calls[0].body, want)
	}
	if calls[0].token != "s3cret-token" {
		t.Errorf("X-Auth-Token = %q", calls[0].token)
	}
	if exp.iqn != p.ISCSITargetIQN || exp.dev != sda.Dev {
		t.Errorf("exported %q %v, want sda under %q", exp.iqn, exp.dev, p.ISCSITargetIQN)
	}
	select {
	case <-exp.done:
	default:
		t.Error("iSCSI target still running after the notice")
	}
	if !env.didReboot() {
		t.Error("ramdisk did not reboot")
	}
	if got := strings.Join(reached, ","); got != "ramdisk.up,ramdisk.disk,ramdisk.iscsi,ramdisk.pass_deploy_info,ramdisk.notice,ramdisk.reboot" {
		t.Errorf("milestones = %s", got)
	}
	if p.BootIF.String() != "52:54:00:12:34:56" {
		t.Errorf("BOOTIF parsed as %v", p.BootIF)
	}
}

func TestMissingDiskGoesIntoErrorField(t *testing.T) {
	c := newConductor(t)
	env := newEnv(newDisk(t, "nvme0n1", 1<<30)) // not a candidate
	p, err := ParseCmdline(cmdline(c, ""))
	if err != nil {
		t.Fatal(err)
	}
	err = Run(t.Context(), Config{Params: p, Env: env, Export: (&recordingExporter{}).export, DiskWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	calls := c.recorded()
	if len(calls) != 1 || !strings.Contains(calls[0].body["error"], "could not find disk to use") {
		t.Fatalf("callbacks = %+v, want the disk error in the error field", calls)
	}
}

func TestLocalBoot(t *testing.T) {
	for _, tc := range []struct {
		name       string
		installErr error
		wantStatus string
	}{
		{"succeeded", nil, "SUCCEEDED"},
		{"failed", errors.New("no ESP labelled efi-part"), "FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConductor(t)
			vda := newDisk(t, "vda", 1<<30)
			env := newEnv(vda)
			p, err := ParseCmdline(cmdline(c, "boot_option=local boot_mode=uefi"))
			if err != nil {
				t.Fatal(err)
			}
			var gotMode string
			err = Run(t.Context(), Config{
				Params: p, Env: env, Export: (&recordingExporter{}).export,
				Bootloader: func(_ context.Context, d Disk, mode string) (Installed, error) {
					if d.Name != "vda" {
						t.Errorf("bootloader on %s", d.Name)
					}
					gotMode = mode
					return Installed{Loader: "GRUB 2", Grub: true}, tc.installErr
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			calls := c.recorded()
			if len(calls) != 2 || calls[1].method != "pass_bootloader_install_info" {
				t.Fatalf("callbacks = %+v", calls)
			}
			if calls[1].body["status"] != tc.wantStatus || gotMode != "uefi" {
				t.Errorf("bootloader callback = %v (mode %q)", calls[1].body, gotMode)
			}
			if tc.installErr != nil && calls[1].body["error"] != tc.installErr.Error() {
				t.Errorf("error field = %q", calls[1].body["error"])
			}
			if !env.didReboot() {
				t.Error("no reboot")
			}
		})
	}
}

func TestCallbackRefusedIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error_message": "bad key"}`, http.StatusBadRequest)
	}))
	defer srv.Close()
	env := newEnv(newDisk(t, "sda", 1<<30))
	p, _ := ParseCmdline("deployment_id=u deployment_key=k iscsi_target_iqn=iqn.x ironic_api_url=" + srv.URL)
	err := Run(t.Context(), Config{Params: p, Env: env, Export: (&recordingExporter{}).export})
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("Run = %v, want the refusal", err)
	}
	if env.didReboot() {
		t.Error("rebooted after a refused callback")
	}
}

func TestParseCmdline(t *testing.T) {
	p, err := ParseCmdline("initrd=x/deploy_ramdisk deployment_id=u deployment_key=k iscsi_target_iqn=iqn-u " +
		"ironic_api_url=http://127.0.0.1:6385/ root_device=serial=S%20123,size=10 disk=sda,vda")
	if err != nil {
		t.Fatal(err)
	}
	if p.IronicAPIURL != "http://127.0.0.1:6385" || p.BootOption != "netboot" || p.BootMode != "bios" {
		t.Errorf("parsed %+v", p)
	}
	if p.RootDevice["serial"] != "S 123" || p.RootDevice["size"] != "10" || len(p.Disks) != 2 {
		t.Errorf("hints %v disks %v", p.RootDevice, p.Disks)
	}
	if err := p.CheckISCSIDeploy(); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{
		"boot_option=cloud", "boot_mode=efi", "root_device=colour=red", "root_device=serial",
		"ip=1.2.3", "ip=a:b:c:d", "BOOTIF=01-zz",
	} {
		if _, err := ParseCmdline(bad); err == nil {
			t.Errorf("ParseCmdline(%q) accepted", bad)
		}
	}
	p, _ = ParseCmdline("deployment_id=u")
	if err := p.CheckISCSIDeploy(); err == nil || !strings.Contains(err.Error(), "deployment_key, iscsi_target_iqn, ironic_api_url") {
		t.Errorf("CheckISCSIDeploy = %v", err)
	}
}

func TestPickDisk(t *testing.T) {
	disks := []Disk{
		{Name: "sda", SizeBytes: 20 * gib, Model: "SSD 1", Serial: "A1", Rotational: false},
		{Name: "sdb", SizeBytes: 10 * gib, Model: "HDD 2", Serial: "B2", Rotational: true},
		{Name: "vda", SizeBytes: 10 * gib},
	}
	cases := []struct {
		cmd  string
		want string
	}{
		{"", "sda"},
		{"disk=vda,sda", "vda"},
		{"disk=hda,sdb", "sdb"},
		{"root_device=size=10", "sdb"},
		{"root_device=size=10,rotational=false", "vda"},
		{"root_device=model=hdd%202", "sdb"},
		{"root_device=name=/dev/vda", "vda"},
		{"root_device=serial=zz", ""},
		{"disk=nvme0n1", ""},
	}
	for _, c := range cases {
		p, err := ParseCmdline(c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		d, err := pickDisk(disks, p)
		if d.Name != c.want || (c.want == "") != (err != nil) {
			t.Errorf("%q: picked %q (%v), want %q", c.cmd, d.Name, err, c.want)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("deployment_id=u deployment_key=k iscsi_target_iqn=iqn ironic_api_url=http://x ip=1.2.3.4:5.6.7.8:9.9.9.9:255.255.255.0 BOOTIF=01-52-54-00-00-00-01")
	f.Add("root_device=serial=%zz,size=1 disk=,,")
	f.Fuzz(func(t *testing.T, s string) {
		p, _ := ParseCmdline(s)
		_ = p.CheckISCSIDeploy()
		pickDisk([]Disk{{Name: "sda"}}, p)
	})
}

// TestCallbackAnswerLost: a pass_deploy_info the API took but answered
// too late (a conductor deploying a thousand machines) is not given up on
// when the retry finds the node locked: the conductor is deploying it, and
// the ramdisk waits for its notice (at 1 000 iSCSI deploys at once the
// ramdisk gave up instead, and the conductor was left writing to a target
// that had gone).
func TestCallbackAnswerLost(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n > 1 {
			http.Error(w, `{"error_message": "Node is locked by host vm, please retry after the current operation is completed."}`, http.StatusConflict)
			return
		}
		go func() { // the deploy the first call started, noticed when done
			time.Sleep(time.Second)
			conn, err := net.Dial("tcp", net.JoinHostPort(body["address"], "10000"))
			if err != nil {
				t.Errorf("notify: %v", err)
				return
			}
			io.WriteString(conn, "done")
			conn.Close()
		}()
		time.Sleep(800 * time.Millisecond) // past the client's timeout
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	env := newEnv(newDisk(t, "sda", 1<<30))
	p, err := ParseCmdline("deployment_id=u deployment_key=k iscsi_target_iqn=iqn.x ironic_api_url=" + srv.URL + " ip=" + env.ip.String() + ":127.0.0.9:127.0.0.1:255.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	var console testenv.SyncBuffer
	err = Run(t.Context(), Config{Params: p, Env: env, Export: (&recordingExporter{}).export, Console: &console,
		HTTP: &http.Client{Timeout: 300 * time.Millisecond}})
	if err != nil {
		t.Fatalf("Run: %v\nconsole:\n%s", err, console.String())
	}
	if !env.didReboot() {
		t.Errorf("no reboot after the notice\nconsole:\n%s", console.String())
	}
	if !strings.Contains(console.String(), "conductor has taken the node since") {
		t.Errorf("console does not say why it went on:\n%s", console.String())
	}
}
