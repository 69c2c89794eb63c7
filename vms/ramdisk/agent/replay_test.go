package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
)

// buildImage builds a test instance image with disk.
func buildImage(t *testing.T, kind disk.Kind, mode string) (*disk.Built, []byte) {
	t.Helper()
	testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	testenv.RequireTool(t, "go", "golang-go")
	b, err := disk.Build(t.Context(), disk.BuildConfig{Kind: kind, BootMode: mode, Out: filepath.Join(t.TempDir(), string(kind)+".img")})
	if err != nil {
		t.Fatalf("build %s image: %v", kind, err)
	}
	data, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	return b, data
}

type trafficEntry struct {
	Dir    string          `json:"dir"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body"`
	Status int             `json:"status"`
	Resp   json.RawMessage `json:"resp"`
}

func loadTraffic(t *testing.T) []trafficEntry {
	t.Helper()
	var out []trafficEntry
	sc := bufio.NewScanner(bytes.NewReader(readTestdata(t, "agent-traffic.jsonl")))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e trafficEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// shapeDiff lists where got's keys or JSON types differ from want's.
// Lists of different lengths compare every element of got with want's
// first; paths in lenient may hold any type where want has null.
func shapeDiff(path string, want, got any, lenient map[string]bool) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want object, got %T", path, got)}
		}
		var diffs []string
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			wv, wok := w[k]
			gv, gok := g[k]
			switch {
			case !wok:
				diffs = append(diffs, fmt.Sprintf("%s.%s: unexpected key", path, k))
			case !gok:
				diffs = append(diffs, fmt.Sprintf("%s.%s: missing", path, k))
			default:
				diffs = append(diffs, shapeDiff(path+"."+k, wv, gv, lenient)...)
			}
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want list, got %T", path, got)}
		}
		var diffs []string
		if len(g) == len(w) {
			for i := range w {
				diffs = append(diffs, shapeDiff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], lenient)...)
			}
			return diffs
		}
		if len(w) == 0 || strings.HasSuffix(path, ".commands") {
			return []string{fmt.Sprintf("%s: %d elements, want %d", path, len(g), len(w))}
		}
		for i := range g {
			diffs = append(diffs, shapeDiff(fmt.Sprintf("%s[%d]", path, i), w[0], g[i], lenient)...)
		}
		return diffs
	case nil:
		if got == nil || lenient[path] {
			return nil
		}
		return []string{fmt.Sprintf("%s: want null, got %T", path, got)}
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return []string{fmt.Sprintf("%s: want %T, got %T", path, want, got)}
		}
	}
	return nil
}

// TestReplayIronicDirectDeploy answers the agent's lookup and heartbeats
// with Ironic 21.4's captured answers, then sends it exactly the requests
// Ironic sent for a whole-disk uefi direct deploy, in order, and compares
// every answer's shape with the captured one. The image lands byte-exact.
func TestReplayIronicDirectDeploy(t *testing.T) {
	_, img := buildImage(t, disk.KindWholeDisk, disk.BootModeUEFI)
	is := newImageServer(t)
	imgURL := is.put("/image.raw", img)
	dsk := sparseDisk(t, "vda", 5<<30)
	env := newTestEnv(dsk)
	ironic := newFakeIronic(t)
	h := startAgent(t, ironic, env, nil)

	// Lookup and heartbeat as the capture shows them.
	traffic := loadTraffic(t)
	lk := ironic.requests(func(r request) bool { return strings.HasPrefix(r.path, "/v1/lookup") })
	if len(lk) != 1 || lk[0].method != "GET" || lk[0].version != "1.68" || !strings.Contains(lk[0].path, "addresses=52%3A54%3A00%3A12%3A34%3A56") {
		t.Errorf("lookup requests %+v; want one GET /v1/lookup?addresses=52:54:00:12:34:56 at version 1.68", lk)
	}
	var capHB trafficEntry
	json.Unmarshal(readTestdata(t, "agent-heartbeat-202.json"), &capHB)
	var capHBBody map[string]any
	json.Unmarshal(capHB.Body, &capHBBody)
	hb := ironic.requests(isHeartbeat)[0]
	if d := shapeDiff("heartbeat", capHBBody, hb.body, nil); len(d) > 0 {
		t.Errorf("heartbeat body differs from the capture: %v", d)
	}
	if hb.version != "1.68" || hb.path != "/v1/heartbeat/603c03f7-93d4-4e40-99ff-26d6c463d0d3" {
		t.Errorf("heartbeat %s at version %s", hb.path, hb.version)
	}
	if hb.body["agent_token"] != capHBBody["agent_token"] || hb.body["agent_version"] != "9.4.0" || hb.body["callback_url"] != "http://"+env.addr.String() {
		t.Errorf("heartbeat body %v", hb.body)
	}

	var rootUUID string
	for i, e := range traffic {
		if e.Dir != "ironic->agent" {
			continue
		}
		var body map[string]any
		json.Unmarshal(e.Body, &body)
		name, _ := body["name"].(string)
		// Rewrite what points at the capture's world to this test's.
		switch name {
		case "deploy.execute_deploy_step":
			info := body["params"].(map[string]any)["step"].(map[string]any)["args"].(map[string]any)["image_info"].(map[string]any)
			info["urls"] = []any{imgURL}
			info["os_hash_value"] = sha256Hex(img)
		case "image.install_bootloader":
			body["params"].(map[string]any)["root_uuid"] = rootUUID
		}
		var status int
		var got map[string]any
		if e.Method == "GET" {
			status, got = h.call("GET", e.Path, nil)
		} else {
			status, got = h.call("POST", e.Path, body)
		}
		if status != e.Status {
			t.Fatalf("entry %d %s %s: status %d, want %d: %v", i, e.Method, name, status, e.Status, got)
		}
		var want map[string]any
		json.Unmarshal(e.Resp, &want)
		if got["command_status"] == statusRunning {
			// Real IPA answers wait=false with the running command; the
			// look-alike answered after finishing.
			want["command_result"] = nil
		}
		// IPA's write_image returns prepare_image's result where the
		// captured look-alike answered null.
		lenient := map[string]bool{"resp.command_result.deploy_result": true}
		for j := 0; j < 5; j++ {
			lenient[fmt.Sprintf("resp.commands[%d].command_result.deploy_result", j)] = true
		}
		if d := shapeDiff("resp", want, got, lenient); len(d) > 0 {
			t.Errorf("entry %d %s %s: answer differs from the capture: %v", i, e.Method, e.Path, d)
		}
		if e.Method != "POST" {
			continue
		}
		id := got["id"].(string)
		done := got
		if got["command_status"] == statusRunning && name != "standby.power_off" {
			done = h.finished(id)
		}
		if name != "standby.power_off" && done["command_status"] != statusSucceeded {
			t.Fatalf("%s: %v", name, done)
		}
		switch name {
		case "deploy.execute_deploy_step":
			if on := readDisk(t, dsk, len(img)); !bytes.Equal(on, img) {
				t.Fatal("the disk does not hold the image byte for byte")
			}
		case "standby.get_partition_uuids":
			rootUUID, _ = done["command_result"].(map[string]any)["root uuid"].(string)
			if !strings.HasPrefix(rootUUID, "0x") {
				t.Errorf("whole-disk root uuid %q, want the disk identifier", rootUUID)
			}
		}
	}
	waitFor(t, "power off", func() (int, bool) { po, _ := env.counts(); return po, po == 1 })
	ins, err := disk.Inspect(dsk.Dev, dsk.SizeBytes)
	if err != nil || !ins.ESPLoader {
		t.Errorf("after the deploy the disk has no EFI loader: %v %+v", err, ins)
	}
}
