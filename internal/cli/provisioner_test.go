package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/testbed"
)

func TestProvisionerServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var out testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"provisioner", "serve", "--addr", "127.0.0.1:0", "--state-dir", t.TempDir(),
			"--drivers", "fake-hardware", "--boot-servers=false"}, &out, io.Discard)
	}()
	re := regexp.MustCompile(`provisioner API on (http://127\.0\.0\.1:\d+)`)
	var url string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address printed: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	res, err := http.Get(url + "/v1/drivers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Contains(body, []byte(`"fake-hardware"`)) {
		t.Fatalf("drivers: %d %s", res.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if err := Run(t.Context(), []string{"provisioner", "serve", "--drivers", "nonesuch"}, io.Discard, io.Discard); ExitCode(err) != 2 {
		t.Fatalf("bad --drivers: %v", err)
	}
	if err := Run(t.Context(), []string{"provisioner", "serve", "--drivers", "ipmi"}, io.Discard, io.Discard); ExitCode(err) != 2 {
		t.Fatalf("boot servers with --drivers ipmi: %v", err)
	}
}

// TestProvisionerServeDeploys deploys a machine with `metalbed provisioner
// serve` on its own: its boot servers on free ports, the machine and its
// BMC in another `metalbed up --no-provisioner` whose PXE ROMs ask the
// provisioner's DHCP server. The node is enrolled through the API with its
// BMC's address, as a user would, and deployed by the agent (deploy
// interface direct) to active; its instance boots.
func TestProvisionerServeDeploys(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys a machine")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	pctx, stop := context.WithCancel(ctx)
	var out, errb testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(pctx, []string{"provisioner", "serve", "--boot-servers", "--addr", "127.0.0.1:0", "--state-dir", filepath.Join(dir, "provisioner"),
			"--ipmi-client", "native", "--ipmi-min-command-interval", "10ms", "--ipmi-poll-interval", "100ms", "--notify-delay", "100ms",
			"--dhcp-addr", "127.0.0.1:0", "--tftp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, &out, &errb)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("provisioner serve: %v", err)
		}
	})
	re := regexp.MustCompile(`provisioner API on (http://\S+) .*\nboot servers: dhcp (\S+) \(range \S+\), tftp 127\.0\.0\.1:(\d+), http (\S+)\n`)
	var m []string
	for m == nil {
		if m = re.FindStringSubmatch(out.String()); m != nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("provisioner serve ended: %v\n%s\n%s", err, out.String(), errb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	apiURL, dhcpAddr, tftpPort := m[1], m[2], m[3]
	u := startUp(t, filepath.Join(dir, "machines"), "--nodes", "1", "--netboot-dhcp", dhcpAddr, "--netboot-tftp-port", tftpPort)
	n := u.inv.Nodes[0]

	kernel, ramdisk, err := testbed.DeployImages(ctx, filepath.Join(dir, "images"), version())
	if err != nil {
		t.Fatal(err)
	}
	img, err := disk.Build(ctx, disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(dir, "part.img"), Hostname: "standalone"})
	if err != nil {
		t.Fatal(err)
	}
	api := testbed.NewClient(apiURL)
	var node testbed.Node
	if err := api.Do(ctx, http.MethodPost, "/v1/nodes", map[string]any{
		"name": n.Name, "driver": "ipmi", "deploy_interface": "direct", "boot_interface": "ipxe",
		"driver_info": map[string]any{
			"ipmi_address": n.BMC.Address, "ipmi_port": n.BMC.Port, "ipmi_username": n.BMC.Username, "ipmi_password": n.BMC.Password,
			"deploy_kernel": kernel, "deploy_ramdisk": ramdisk,
		},
		"properties": map[string]any{"cpus": 2, "memory_mb": 2048, "local_gb": n.Disk.SizeBytes >> 30, "cpu_arch": "x86_64",
			"capabilities": "boot_mode:" + string(n.BootMode)},
	}, &node); err != nil {
		t.Fatal(err)
	}
	if err := api.Do(ctx, http.MethodPost, "/v1/ports", map[string]any{"address": n.MACs[0], "node_uuid": node.UUID, "pxe_enabled": true}, nil); err != nil {
		t.Fatal(err)
	}
	for _, step := range [][2]string{{"manage", "manageable"}, {"provide", "available"}} {
		if err := api.Provision(ctx, node.UUID, step[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := api.WaitState(ctx, node.UUID, step[1], nil); err != nil {
			t.Fatal(err)
		}
	}
	var ops []map[string]any
	for k, v := range map[string]any{"image_source": img.Path, "image_checksum": img.MD5, "root_gb": 1, "image_type": "partition",
		"capabilities": map[string]any{"boot_option": "local"}} {
		ops = append(ops, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
	}
	if err := api.Patch(ctx, node.UUID, ops); err != nil {
		t.Fatal(err)
	}
	if err := api.Provision(ctx, node.UUID, "active"); err != nil {
		t.Fatal(err)
	}
	if _, err := api.WaitState(ctx, node.UUID, "active", nil); err != nil {
		b, _ := os.ReadFile(n.ConsoleLog)
		t.Fatalf("%v\nconsole:\n%s\nprovisioner:\n%s", err, b, errb.String())
	}
	waitConsole(t, n.ConsoleLog, "metalbed-instance: booted standalone root=")
	u.stop(t)
}

// TestProvisionerServeClaimsBlock: `provisioner serve` leases from a
// loopback block of its own, held in the host's registry of testbed
// blocks: a second one takes another block, a --dhcp-range overlapping a
// running one's block is refused naming the flag and the holder, and a
// restart of the same state dir asks for its block again.
func TestProvisionerServeClaimsBlock(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // a registry of this test's own
	serve := func(stateDir string, extra ...string) (rng string, stop func()) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		var out, errb testenv.SyncBuffer
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, append([]string{"provisioner", "serve", "--addr", "127.0.0.1:0", "--state-dir", stateDir,
				"--dhcp-addr", "127.0.0.1:0", "--tftp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, extra...), &out, &errb)
		}()
		stop = func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("provisioner serve: %v", err)
			}
		}
		re := regexp.MustCompile(`boot servers: dhcp \S+ \(range (\S+)\)`)
		ended := false
		testenv.Eventually(t, 20*time.Second, func() bool {
			select {
			case err := <-done:
				t.Errorf("provisioner serve ended: %v\n%s", err, errb.String())
				ended = true
			default:
			}
			return ended || re.MatchString(out.String())
		}, "the ready line of provisioner serve: %q", &out)
		if ended {
			t.FailNow()
		}
		return re.FindStringSubmatch(out.String())[1], stop
	}
	block := regexp.MustCompile(`^127\.(\d+)\.0\.10-127\.(\d+)\.255\.250$`)
	dirA, dirB := t.TempDir(), t.TempDir()
	rangeA, stopA := serve(dirA)
	rangeB, stopB := serve(dirB)
	if !block.MatchString(rangeA) || !block.MatchString(rangeB) || rangeA == rangeB {
		t.Fatalf("provisioners lease from %s and %s: want two blocks 127.N.0.10-127.N.255.250", rangeA, rangeB)
	}

	n := block.FindStringSubmatch(rangeA)[1]
	overlap := "127." + n + ".0.50-127." + n + ".0.60"
	var out bytes.Buffer
	err := Run(t.Context(), []string{"provisioner", "serve", "--addr", "127.0.0.1:0", "--state-dir", t.TempDir(), "--dhcp-range", overlap,
		"--dhcp-addr", "127.0.0.1:0", "--tftp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, &out, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "--dhcp-range "+overlap+": ") || !strings.Contains(err.Error(), dirA) || out.Len() != 0 {
		t.Errorf("--dhcp-range %s inside %s held by %s: %v (printed %q), want it refused naming the flag and the holder", overlap, rangeA, dirA, err, out.String())
	}
	if err := Run(t.Context(), []string{"provisioner", "serve", "--state-dir", t.TempDir(), "--dhcp-range", "127.9.0.9"}, io.Discard, io.Discard); ExitCode(err) != 2 {
		t.Errorf("--dhcp-range without a LAST: %v, want a usage error", err)
	}

	stopA()
	stopB()
	// rangeA, the lower block, is free now: B asks for its own again.
	again, stop := serve(dirB)
	stop()
	if again != rangeB {
		t.Errorf("restarted, B leases from %s, before %s", again, rangeB)
	}
	// An explicit range nobody holds is taken as given.
	given := "127." + n + ".7.10-127." + n + ".7.20"
	got, stop := serve(t.TempDir(), "--dhcp-range", given)
	stop()
	if got != given {
		t.Errorf("--dhcp-range %s: leases from %s", given, got)
	}
}
