package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// mbrImage is a small whole-disk image: random bytes with a valid MBR
// holding one partition.
func mbrImage(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	clear(b[446:512])
	copy(b[440:444], []byte{0x78, 0x56, 0x34, 0x12})
	p := b[446:462]
	p[4] = 0x83
	p[8] = 2048 & 0xff
	p[9] = 2048 >> 8
	sectors := uint32(size/512 - 2048)
	p[12], p[13], p[14], p[15] = byte(sectors), byte(sectors>>8), byte(sectors>>16), byte(sectors>>24)
	b[510], b[511] = 0x55, 0xAA
	return b
}

func smallAgent(t *testing.T, mod func(*Config)) (*harness, *imageServer) {
	dsk := sparseDisk(t, "vda", 64<<20)
	env := newTestEnv(dsk)
	ironic := newFakeIronic(t)
	h := startAgent(t, ironic, env, func(c *Config) {
		c.MinDiskBytes = -1
		if mod != nil {
			mod(c)
		}
	})
	return h, newImageServer(t)
}

func imageInfoFor(url string, img []byte) map[string]any {
	return map[string]any{"id": "img", "urls": []any{url}, "disk_format": "raw", "stream_raw_images": true,
		"os_hash_algo": "sha256", "os_hash_value": sha256Hex(img)}
}

func TestWholeDiskPrepareImage(t *testing.T) {
	h, is := smallAgent(t, nil)
	img := mbrImage(3<<20 + 512*3 + 100) // not a whole number of sectors
	info := imageInfoFor(is.put("/w.raw", img), img)
	info["os_hash_algo"], info["os_hash_value"] = nil, nil
	info["checksum"] = md5Hex(img)
	st, got := h.command("standby.prepare_image", map[string]any{"image_info": info}, true)
	if st != 200 || got["command_status"] != statusSucceeded {
		t.Fatalf("prepare_image: %d %v", st, got)
	}
	res := got["command_result"].(map[string]any)["result"].(string)
	if want := "prepare_image: image (img) written to device /dev/vda root_uuid=0x12345678"; res != want {
		t.Errorf("result %q, want %q", res, want)
	}
	if on := readDisk(t, h.env.disks[0], len(img)); !bytes.Equal(on, img) {
		t.Error("disk does not hold the image")
	}
	_, pu := h.command("standby.get_partition_uuids", map[string]any{}, true)
	if r := pu["command_result"].(map[string]any); r["root uuid"] != "0x12345678" {
		t.Errorf("get_partition_uuids: %v", r)
	}
}

func md5Hex(b []byte) string {
	h := newHash("md5")
	h.Write(b)
	return hexSum(h)
}

func TestChecksumMismatchFails(t *testing.T) {
	h, is := smallAgent(t, nil)
	img := mbrImage(1 << 20)
	info := imageInfoFor(is.put("/w.raw", img), img)
	info["os_hash_algo"], info["os_hash_value"] = "sha512", strings.Repeat("0", 128)
	_, got := h.command("standby.prepare_image", map[string]any{"image_info": info}, true)
	if got["command_status"] != statusFailed {
		t.Fatalf("status %v", got)
	}
	e := got["command_error"].(map[string]any)
	if e["type"] != "ImageChecksumError" || e["code"] != 500.0 || e["message"] != "Error verifying image checksum" ||
		!strings.HasPrefix(e["details"].(string), "Image failed to verify against checksum. location: /dev/vda; image ID: img; image checksum: 0000") {
		t.Errorf("command_error %v", e)
	}
}

func TestTokenRequired(t *testing.T) {
	h, _ := smallAgent(t, nil)
	body := map[string]any{"name": "standby.sync", "params": map[string]any{}}
	for _, q := range []string{"", "&agent_token=wrong"} {
		st, got := h.call("POST", "/v1/commands/?wait=true"+q, body)
		if st != 401 || got["faultstring"] != "401 Unauthorized: Token invalid." || got["faultcode"] != "Client" {
			t.Errorf("token %q: %d %v", q, st, got)
		}
	}
	if st, got := h.command("standby.sync", map[string]any{}, true); st != 200 || got["command_status"] != statusSucceeded {
		t.Errorf("with token: %d %v", st, got)
	}
	// Ironic 21.4 polls without a token: allowed until a GET carries one.
	if st, _ := h.call("GET", "/v1/commands/", nil); st != 200 {
		t.Errorf("GET without token: %d", st)
	}
	if st, _ := h.call("GET", "/v1/commands/?agent_token=wrong", nil); st != 401 {
		t.Errorf("GET with a wrong token: %d", st)
	}
	if st, _ := h.call("GET", "/v1/commands/", nil); st != 401 {
		t.Errorf("GET without token after a tokened GET: %d", st)
	}
	if st, _ := h.call("GET", "/v1/commands/?agent_token="+h.token, nil); st != 200 {
		t.Errorf("GET with the token: %d", st)
	}
}

func TestBusyWaitAndStall(t *testing.T) {
	h, is := smallAgent(t, func(c *Config) { c.DownloadTimeout = 300 * time.Millisecond; c.DownloadRetries = -1 })
	img := mbrImage(2 << 20)
	url := is.put("/slow.raw", img)
	release := is.hold("/slow.raw")
	defer release()
	st, got := h.command("standby.prepare_image", map[string]any{"image_info": imageInfoFor(url, img)}, false)
	if st != 200 || got["command_status"] != statusRunning || got["command_result"] != nil || got["command_name"] != "prepare_image" {
		t.Fatalf("wait=false: %d %v", st, got)
	}
	id := got["id"].(string)
	st, busy := h.command("standby.get_partition_uuids", map[string]any{}, true)
	if st != 409 || busy["faultstring"] != "Agent is busy: executing command prepare_image" {
		t.Errorf("busy: %d %v", st, busy)
	}
	// The held download stalls past DownloadTimeout: the command fails.
	_, done := h.call("GET", "/v1/commands/"+id+"?wait=true", nil)
	e, _ := done["command_error"].(map[string]any)
	if done["command_status"] != statusFailed || e["type"] != "ImageDownloadError" || !strings.Contains(e["details"].(string), "Timed out reading next chunk from webserver") {
		t.Fatalf("stalled download: %v", done)
	}
	release()
	// Not busy any more; wait=true returns the finished command.
	st, got = h.command("standby.prepare_image", map[string]any{"image_info": imageInfoFor(is.put("/fast.raw", img), img)}, true)
	if st != 200 || got["command_status"] != statusSucceeded {
		t.Fatalf("wait=true: %d %v", st, got)
	}
	_, one := h.call("GET", "/v1/commands/"+got["id"].(string), nil)
	if one["id"] != got["id"] || one["command_status"] != statusSucceeded {
		t.Errorf("GET one command: %v", one)
	}
	if st, nf := h.call("GET", "/v1/commands/nope", nil); st != 404 || nf["faultstring"] != "Not found: Command Result with id nope not found." {
		t.Errorf("unknown command id: %d %v", st, nf)
	}
}

func TestBadRequests(t *testing.T) {
	h, _ := smallAgent(t, nil)
	tok := "&agent_token=" + h.token
	cases := []struct {
		body   string
		status int
		fault  string
	}{
		{`{`, 400, "400 Bad Request: Failed to decode JSON object"},
		{`[1,2]`, 400, "400 Bad Request: Failed to decode JSON object"},
		{`{"name":"standby.sync"}`, 400, "400 Bad Request: Missing or invalid name or params"},
		{`{"name":"standby.sync","params":[]}`, 400, "400 Bad Request: Missing or invalid name or params"},
		{`{"name":7,"params":{}}`, 400, "400 Bad Request: Missing or invalid name or params"},
		{`{"name":"sync","params":{}}`, 400, "Invalid command: Command name must be of the form <extension>.<name>"},
		{`{"name":"nope.sync","params":{}}`, 404, "Not found: Extension with id nope not found."},
		{`{"name":"standby.nope","params":{}}`, 400, "Invalid command: Unknown command: nope"},
		{`{"name":"standby.prepare_image","params":{"image_info":{"id":"x"}}}`, 400, "Invalid command parameters: Image is missing 'urls' field."},
		{`{"name":"standby.prepare_image","params":{"image_info":{"id":"x","urls":[]}}}`, 400, "Invalid command parameters: Image 'urls' must be a list with at least one element."},
		{`{"name":"standby.prepare_image","params":{"image_info":{"id":"x","urls":["http://127.0.0.1:1/"]}}}`, 400, "Invalid command parameters: Image checksum is not available"},
		{`{"name":"standby.prepare_image","params":{"image_info":{"id":"x","urls":["u"],"checksum":"a"},"bogus":1}}`, 400, "Invalid command parameters: prepare_image() got an unexpected keyword argument 'bogus'"},
		{`{"name":"image.install_bootloader","params":{}}`, 400, "Invalid command parameters: install_bootloader() missing 1 required positional argument(s): 'root_uuid'"},
	}
	for _, c := range cases {
		st, got := h.call("POST", "/v1/commands/?wait=true"+tok, c.body)
		fs, _ := got["faultstring"].(string)
		if st != c.status || !strings.HasPrefix(fs, c.fault) {
			t.Errorf("%s: %d %q, want %d %q", c.body, st, fs, c.status, c.fault)
		}
	}
	// A sync command called with bad arguments is a failed result, as
	// Python's TypeError inside IPA's execute_command.
	st, got := h.command("standby.sync", map[string]any{"x": 1}, true)
	if st != 200 || got["command_status"] != statusFailed || got["command_error"].(map[string]any)["type"] != "CommandExecutionError" {
		t.Errorf("sync with params: %d %v", st, got)
	}
	if st, got := h.call("DELETE", "/v1/commands/", nil); st != 405 || got["faultcode"] != "Client" {
		t.Errorf("DELETE: %d %v", st, got)
	}
	if st, _ := h.call("GET", "/v2/nothing", nil); st != 404 {
		t.Errorf("unknown path: %d", st)
	}
	// The documents IPA serves.
	if _, root := h.call("GET", "/", nil); root["name"] != "OpenStack Ironic Python Agent API" || root["default_version"].(map[string]any)["id"] != "v1" {
		t.Errorf("root %v", root)
	}
	if _, v1 := h.call("GET", "/v1/", nil); v1["media_types"] == nil || v1["commands"] == nil {
		t.Errorf("v1 %v", v1)
	}
	if _, st := h.call("GET", "/v1/status", nil); st["version"] != DefaultVersion || st["started_at"].(float64) <= 0 {
		t.Errorf("status %v", st)
	}
}

// TestPartitionImageLocalBoot deploys a partition image through the
// write_image deploy step, installs the boot loader and finds root uuid and
// grub.cfg on the disk; then cleaning erases the partition table.
func TestPartitionImageLocalBoot(t *testing.T) {
	for _, mode := range []string{disk.BootModeUEFI, disk.BootModeBIOS} {
		t.Run(mode, func(t *testing.T) {
			built, img := buildImage(t, disk.KindPartition, "")
			is := newImageServer(t)
			dsk := sparseDisk(t, "vda", 5<<30)
			env := newTestEnv(dsk)
			ironic := newFakeIronic(t)
			h := startAgent(t, ironic, env, nil)
			node := map[string]any{"uuid": "603c03f7-93d4-4e40-99ff-26d6c463d0d3", "properties": map[string]any{}, "instance_info": map[string]any{}}
			_, steps := h.command("deploy.get_deploy_steps", map[string]any{"node": node, "ports": []any{}}, true)
			version := steps["command_result"].(map[string]any)["hardware_manager_version"]
			info := imageInfoFor(is.put("/p.img", img), img)
			info["image_type"] = "partition"
			info["root_mb"] = 128
			info["swap_mb"] = 16
			info["ephemeral_mb"] = 0
			info["deploy_boot_mode"] = mode
			info["boot_option"] = "local"
			var configdrive any
			if mode == disk.BootModeBIOS {
				configdrive = isoConfigDrive(t)
			}
			step := map[string]any{"interface": "deploy", "step": "write_image", "args": map[string]any{"image_info": info, "configdrive": configdrive}}
			_, got := h.command("deploy.execute_deploy_step", map[string]any{"step": step, "node": node, "ports": []any{}, "deploy_version": version}, false)
			done := h.finished(got["id"].(string))
			if done["command_status"] != statusSucceeded {
				t.Fatalf("write_image: %v", done)
			}
			dr := done["command_result"].(map[string]any)
			if dr["deploy_step"].(map[string]any)["step"] != "write_image" || !strings.Contains(dr["deploy_result"].(map[string]any)["result"].(string), "root_uuid="+built.RootUUID) {
				t.Errorf("deploy result %v", dr)
			}
			_, pu := h.command("standby.get_partition_uuids", map[string]any{}, true)
			r := pu["command_result"].(map[string]any)
			if r["root uuid"] != built.RootUUID {
				t.Fatalf("root uuid %v, want %s", r["root uuid"], built.RootUUID)
			}
			parts := r["partitions"].(map[string]any)
			if parts["root"] == nil || parts["swap"] == nil || (configdrive != nil) != (parts["configdrive"] != nil) {
				t.Errorf("partitions %v", parts)
			}
			if configdrive != nil {
				// The command list does not echo the config drive.
				_, list := h.call("GET", "/v1/commands/", nil)
				cmds := list["commands"].([]any)
				args := cmds[1].(map[string]any)["command_params"].(map[string]any)["step"].(map[string]any)["args"].(map[string]any)
				if args["configdrive"] != "<...>" {
					t.Errorf("configdrive echoed as %.40v", args["configdrive"])
				}
			}
			esp, _ := r["efi system partition uuid"].(string)
			if (mode == disk.BootModeUEFI) != (esp != "") {
				t.Errorf("efi system partition uuid %v in %s mode", r["efi system partition uuid"], mode)
			}
			_, bl := h.command("image.install_bootloader", map[string]any{"root_uuid": built.RootUUID, "efi_system_part_uuid": r["efi system partition uuid"], "prep_boot_part_uuid": nil, "target_boot_mode": mode}, true)
			if bl["command_status"] != statusSucceeded || bl["command_result"] != nil {
				t.Fatalf("install_bootloader: %v", bl)
			}
			ins, err := disk.Inspect(dsk.Dev, dsk.SizeBytes)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, g := range ins.GrubConfigs {
				if g.FSUUID == built.RootUUID && strings.Contains(g.Text, "--set=root "+built.RootUUID) {
					found = true
				}
			}
			if !found {
				t.Errorf("no grub.cfg of root %s: %+v", built.RootUUID, ins.GrubConfigs)
			}
			if mode == disk.BootModeUEFI && !ins.ESPLoader || mode == disk.BootModeBIOS && !ins.BootCode {
				t.Errorf("%s: not bootable: %+v", mode, ins)
			}
			// A wrong root uuid is IPA's DeviceNotFound.
			_, bad := h.command("image.install_bootloader", map[string]any{"root_uuid": "11111111-2222-3333-4444-555555555555", "target_boot_mode": mode}, true)
			if e, _ := bad["command_error"].(map[string]any); bad["command_status"] != statusFailed || e["type"] != "DeviceNotFound" {
				t.Errorf("wrong root uuid: %v", bad)
			}

			// Cleaning: erase_devices_metadata leaves no partition table.
			_, cs := h.command("clean.get_clean_steps", map[string]any{"node": node, "ports": []any{}}, true)
			stepsByName := map[string]float64{}
			for _, s := range cs["command_result"].(map[string]any)["clean_steps"].(map[string]any)[hwManagerClass].([]any) {
				sm := s.(map[string]any)
				stepsByName[sm["step"].(string)] = sm["priority"].(float64)
			}
			if stepsByName["erase_devices_metadata"] != 99 || stepsByName["erase_devices"] != 10 {
				t.Errorf("clean steps %v", stepsByName)
			}
			cstep := map[string]any{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99}
			_, c := h.command("clean.execute_clean_step", map[string]any{"step": cstep, "node": node, "ports": []any{}, "clean_version": version}, true)
			if c["command_status"] != statusSucceeded || c["command_result"].(map[string]any)["clean_step"].(map[string]any)["step"] != "erase_devices_metadata" {
				t.Fatalf("clean: %v", c)
			}
			ins, err = disk.Inspect(dsk.Dev, dsk.SizeBytes)
			if err != nil || ins.Layout.Label != "" || len(ins.Layout.Partitions) != 0 {
				t.Errorf("after erase_devices_metadata: %v %+v", err, ins.Layout)
			}
			// A stale hardware manager version is IPA's version mismatch.
			_, vm := h.command("clean.execute_clean_step", map[string]any{"step": cstep, "node": node, "ports": []any{}, "clean_version": map[string]any{hwManagerName: "0.1"}}, true)
			if vm["command_status"] != statusVersionMismatch || vm["command_error"].(map[string]any)["type"] != "VersionMismatch" {
				t.Errorf("version mismatch: %v", vm)
			}
		})
	}
}

// isoConfigDrive is a config drive as nova makes it: ISO 9660 labelled
// config-2, gzipped and base64 encoded as Ironic passes it.
func isoConfigDrive(t *testing.T) string {
	geniso := testenv.RequireTool(t, "genisoimage", "genisoimage")
	tree := filepath.Join(t.TempDir(), "cd")
	if err := os.MkdirAll(filepath.Join(tree, "openstack/latest"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "openstack/latest/meta_data.json"), []byte(`{"uuid": "u", "hostname": "bm0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(t.TempDir(), "cd.iso")
	if out, err := exec.Command(geniso, "-o", iso, "-quiet", "-J", "-r", "-V", "config-2", tree).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v %s", err, out)
	}
	raw, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	return base64.StdEncoding.EncodeToString(gz.Bytes())
}

func TestEraseDevicesAndLogs(t *testing.T) {
	h, is := smallAgent(t, nil)
	img := mbrImage(2 << 20)
	if _, got := h.command("standby.prepare_image", map[string]any{"image_info": imageInfoFor(is.put("/w.raw", img), img)}, true); got["command_status"] != statusSucceeded {
		t.Fatal(got)
	}
	node := map[string]any{"uuid": "u", "driver_internal_info": map[string]any{"agent_erase_devices_iterations": 1}}
	step := map[string]any{"interface": "deploy", "step": "erase_devices", "priority": 10}
	_, got := h.command("clean.execute_clean_step", map[string]any{"step": step, "node": node, "ports": []any{}}, true)
	if got["command_status"] != statusSucceeded {
		t.Fatal(got)
	}
	if r := got["command_result"].(map[string]any)["clean_result"].(map[string]any); len(r) != 1 {
		t.Errorf("clean_result %v", r)
	}
	if on := readDisk(t, h.env.disks[0], 64<<20); !bytes.Equal(on, make([]byte, 64<<20)) {
		t.Error("disk not zeroed by erase_devices")
	}
	_, unknown := h.command("clean.execute_clean_step", map[string]any{"step": map[string]any{"step": "burnin_cpu"}, "node": node, "ports": []any{}}, true)
	if e, _ := unknown["command_error"].(map[string]any); e["type"] != "HardwareManagerMethodNotFound" {
		t.Errorf("unknown step: %v", unknown)
	}

	_, logs := h.command("log.collect_system_logs", map[string]any{}, true)
	enc := logs["command_result"].(map[string]any)["system_logs"].(string)
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[hdr.Name] = string(b)
	}
	if !strings.Contains(files["journal"], "lookup succeeded") || !strings.Contains(files["commands.txt"], "execute_clean_step SUCCEEDED") {
		t.Errorf("logs %v", files)
	}
	var inv Inventory
	if err := json.Unmarshal([]byte(files["inventory.json"]), &inv); err != nil || inv.Disks[0].Name != "/dev/vda" || inv.Interfaces[0].MACAddress != "52:54:00:12:34:56" {
		t.Errorf("inventory %v %+v", err, inv)
	}
}

func TestPowerOffAndRunImage(t *testing.T) {
	h, _ := smallAgent(t, nil)
	st, got := h.command("standby.power_off", map[string]any{}, false)
	if st != 200 || got["command_name"] != "power_off" {
		t.Fatal(st, got)
	}
	waitFor(t, "power off", func() (int, bool) { po, _ := h.env.counts(); return po, po == 1 })
	h.finished(got["id"].(string))
	_, got = h.command("standby.run_image", map[string]any{}, false)
	waitFor(t, "reboot", func() (int, bool) { _, rb := h.env.counts(); return rb, rb == 1 })
}

// TestRootDeviceHints: the node's root_device hints pick the disk; without
// them the smallest disk of at least MinDiskBytes, as IPA.
func TestRootDeviceHints(t *testing.T) {
	vda, vdb, vdc := sparseDisk(t, "vda", 32<<20), sparseDisk(t, "vdb", 64<<20), sparseDisk(t, "vdc", 48<<20)
	env := newTestEnv(vda, vdb, vdc)
	h := startAgent(t, newFakeIronic(t), env, func(c *Config) { c.MinDiskBytes = 40 << 20 })
	is := newImageServer(t)
	img := mbrImage(2 << 20)
	info := imageInfoFor(is.put("/w.raw", img), img)
	_, got := h.command("standby.prepare_image", map[string]any{"image_info": info}, true)
	if r, _ := got["command_result"].(map[string]any)["result"].(string); !strings.Contains(r, "/dev/vdc") {
		t.Errorf("without hints: %v", got)
	}
	node := map[string]any{"uuid": "u", "properties": map[string]any{"root_device": map[string]any{"serial": "VDB-SERIAL", "size": ">= 0"}}}
	h.command("deploy.get_deploy_steps", map[string]any{"node": node, "ports": []any{}}, true)
	info["id"] = "img2"
	_, got = h.command("standby.prepare_image", map[string]any{"image_info": info}, true)
	if r, _ := got["command_result"].(map[string]any)["result"].(string); !strings.Contains(r, "/dev/vdb") {
		t.Errorf("with hints: %v", got)
	}
	if !bytes.Equal(readDisk(t, vdb, len(img)), img) {
		t.Error("vdb does not hold the image")
	}
	node["properties"] = map[string]any{"root_device": map[string]any{"name": "/dev/sdz"}}
	h.command("deploy.get_deploy_steps", map[string]any{"node": node, "ports": []any{}}, true)
	info["id"] = "img3"
	_, got = h.command("standby.prepare_image", map[string]any{"image_info": info}, true)
	if e, _ := got["command_error"].(map[string]any); e["type"] != "DeviceNotFound" {
		t.Errorf("no matching disk: %v", got)
	}
}

// TestRedactedTokenRefusesAll: an agent whose lookup was answered with
// "******" (the token went to an earlier lookup) has no token and refuses
// every command, an empty token as much as a guessed one, and says so on
// its console and in the timeline.
func TestRedactedTokenRefusesAll(t *testing.T) {
	ironic := newFakeIronic(t)
	var doc map[string]any
	if err := json.Unmarshal(ironic.lookup, &doc); err != nil {
		t.Fatal(err)
	}
	doc["config"].(map[string]any)["agent_token"] = "******"
	ironic.lookup, _ = json.Marshal(doc)
	var console testenv.SyncBuffer
	var mu sync.Mutex
	var kinds []events.Kind
	h := startAgent(t, ironic, newTestEnv(sparseDisk(t, "vda", 64<<20)), func(c *Config) {
		c.MinDiskBytes = -1
		c.Console = &console
		c.Recorder = events.RecorderFunc(func(e events.Event) {
			mu.Lock()
			kinds = append(kinds, e.Kind)
			mu.Unlock()
		})
	})
	body := map[string]any{"name": "standby.sync", "params": map[string]any{}}
	for _, q := range []string{"", "&agent_token=", "&agent_token=******", "&agent_token=guess"} {
		if st, got := h.call("POST", "/v1/commands/?wait=true"+q, body); st != 401 || got["faultstring"] != "401 Unauthorized: Token invalid." {
			t.Errorf("command with token query %q: %d %v", q, st, got)
		}
	}
	if !strings.Contains(console.String(), "ERROR: the lookup gave no agent token") {
		t.Errorf("console does not say the token is missing:\n%s", console.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(kinds, events.AgentTokenMissing) {
		t.Errorf("no %s event; got %v", events.AgentTokenMissing, kinds)
	}
}
