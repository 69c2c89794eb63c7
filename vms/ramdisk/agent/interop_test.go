package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
)

// ironicClientScript drives the agent with the agent client of the real
// Ironic 21.4 (Debian python3-ironic): the code a real conductor runs.
const ironicClientScript = `
import json, sys, urllib.request
from ironic.conf import CONF
CONF([], project='ironic', default_config_files=[])
from ironic.common import exception
from ironic.drivers.modules import agent_client

cfg = json.load(sys.stdin)

class Obj:
    def __init__(self, d):
        self.d = d
        self.uuid = d['uuid']
        self.driver_internal_info = d.setdefault('driver_internal_info', {})
        self.driver_info = d.setdefault('driver_info', {})
        self.instance_info = d.setdefault('instance_info', {})
    def as_dict(self, secure=False, mask_configdrive=True):
        return dict(self.d)
    def save(self):
        pass
    def set_driver_internal_info(self, k, v):
        self.driver_internal_info[k] = v
    def timestamp_driver_internal_info(self, k):
        self.driver_internal_info[k] = 'now'

node = Obj({'uuid': cfg['uuid'], 'properties': {}, 'driver_internal_info': {
    'agent_url': cfg['agent_url'], 'agent_secret_token': cfg['token']}})
port = Obj({'uuid': 'eed9cf42-1818-4292-8b53-b78f8f3be423', 'address': '52:54:00:12:34:56'})
c = agent_client.AgentClient()
out = {}

# The conductor's own processing of the agent's step lists.
from ironic.drivers.modules import agent_base
class Task:
    pass
task = Task()
task.node, task.ports = node, [port]
for kind in ('deploy', 'clean'):
    agent_base.AgentBaseMixin().refresh_steps(task, kind)
out['cached_clean_steps'] = sorted(s['step'] for s in node.driver_internal_info['agent_cached_clean_steps']['deploy'])

steps = c.get_deploy_steps(node, [port])
out['deploy_steps'] = steps['command_result']['deploy_steps']
node.driver_internal_info['hardware_manager_version'] = steps['command_result']['hardware_manager_version']

step = {'interface': 'deploy', 'step': 'write_image', 'priority': 80,
        'args': {'image_info': cfg['image_info'], 'configdrive': None}}
r = c.execute_deploy_step(step, node, [port])
out['write_image_first'] = r['command_status']
try:
    c.get_partition_uuids(node)
    out['busy'] = 'not refused'
except exception.AgentInProgress as e:
    out['busy'] = str(e)
urllib.request.urlopen(cfg['release_url']).read()
r = c._wait_for_command(node, 'deploy.execute_deploy_step')
out['write_image'] = r['command_status']
out['deploy_result'] = r['command_result']['deploy_result']

pu = c.get_partition_uuids(node)['command_result']
out['root_uuid'] = pu.get('root uuid')
r = c.install_bootloader(node, root_uuid=pu.get('root uuid'), target_boot_mode='uefi',
                         efi_system_part_uuid=pu.get('efi system partition uuid'))
out['install_bootloader'] = r['command_status']
logs = c.collect_system_logs(node)
out['logs_bytes'] = len(logs['command_result']['system_logs'])
out['last'] = c.get_last_command_status(node, 'log.collect_system_logs')['command_status']
try:
    c._command(node, 'standby.nope', {}, wait=True)
    out['unknown'] = 'accepted'
except exception.AgentAPIError as e:
    out['unknown'] = str(e)
c.power_off(node)
print(json.dumps(out))
`

// TestIronicAgentClientInterop runs Ironic 21.4's own AgentClient against
// the agent: get_deploy_steps, write_image (busy while it runs, then
// polled to the end), get_partition_uuids, install_bootloader (uefi,
// polled), collect_system_logs, an unknown command and power_off.
func TestIronicAgentClientInterop(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import ironic.drivers.modules.agent_client").Run(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("Ironic's python library not importable; install the Debian package python3-ironic: %v", err))
	}
	_, img := buildImage(t, disk.KindWholeDisk, disk.BootModeUEFI)
	is := newImageServer(t)
	url := is.put("/image.raw", img)
	release := is.hold("/image.raw")
	releaseSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { release() })}
	ln := listenLoopback(t)
	go releaseSrv.Serve(ln)
	t.Cleanup(func() { releaseSrv.Close() })

	disk := sparseDisk(t, "vda", 5<<30)
	env := newTestEnv(disk)
	ironic := newFakeIronic(t)
	h := startAgent(t, ironic, env, nil)

	in, _ := json.Marshal(map[string]any{
		"uuid": "603c03f7-93d4-4e40-99ff-26d6c463d0d3", "agent_url": h.url, "token": h.token,
		"release_url": "http://" + ln.Addr().String() + "/",
		"image_info": map[string]any{"id": "image.raw", "urls": []string{url}, "disk_format": "raw", "container_format": nil,
			"stream_raw_images": true, "os_hash_algo": "sha256", "os_hash_value": sha256Hex(img), "node_uuid": "603c03f7-93d4-4e40-99ff-26d6c463d0d3"},
	})
	script := filepath.Join(t.TempDir(), "drive.py")
	if err := os.WriteFile(script, []byte(ironicClientScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("Ironic's agent client: %v\n%s", err, tail(stderr.String(), 4000))
	}
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("script output %q: %v\n%s", stdout.String(), err, tail(stderr.String(), 2000))
	}
	t.Logf("Ironic's AgentClient saw: %v", out)
	if out["write_image_first"] != statusRunning || out["write_image"] != statusSucceeded || out["install_bootloader"] != statusSucceeded || out["last"] != statusSucceeded {
		t.Errorf("command statuses %v", out)
	}
	if b, _ := out["busy"].(string); !strings.Contains(b, "Agent is busy: executing command execute_deploy_step") {
		t.Errorf("busy: %q", out["busy"])
	}
	if u, _ := out["unknown"].(string); !strings.Contains(u, "Invalid command: Unknown command: nope") {
		t.Errorf("unknown command: %q", out["unknown"])
	}
	if r, _ := out["root_uuid"].(string); !strings.HasPrefix(r, "0x") {
		t.Errorf("root uuid %v", out["root_uuid"])
	}
	if c, _ := json.Marshal(out["cached_clean_steps"]); string(c) != `["erase_devices","erase_devices_metadata"]` {
		t.Errorf("the conductor cached clean steps %s", c)
	}
	if out["logs_bytes"].(float64) < 100 {
		t.Errorf("system logs %v bytes", out["logs_bytes"])
	}
	if on := readDisk(t, disk, len(img)); !bytes.Equal(on, img) {
		t.Error("the disk does not hold the image")
	}
	waitFor(t, "power off", func() (int, bool) { po, _ := env.counts(); return po, po == 1 })
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
