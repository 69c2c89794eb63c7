package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func FuzzDecodeCommandRequest(f *testing.F) {
	for _, s := range []string{
		`{"name":"standby.prepare_image","params":{"image_info":{"id":"x","urls":["http://h/i"],"checksum":"abc"}}}`,
		`{"name":"deploy.execute_deploy_step","params":{"step":{"step":"write_image","args":{}},"node":{},"ports":[]}}`,
		`{"name":"a","params":null}`, `[]`, `{"name":1}`, `{} {}`, `nul`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		name, p, err := decodeCommandRequest(body)
		if err != nil {
			return
		}
		if p == nil {
			t.Fatalf("nil params for %q", name)
		}
		// What the command table does with decoded params must not panic.
		decodeImageInfo(p)
		commandSpec{params: []string{"image_info", "configdrive"}, nrequired: 1}.check("prepare_image", p)
	})
}

func FuzzParseLookup(f *testing.F) {
	f.Add(captured(f, "agent-lookup-200.json"))
	f.Add([]byte(`{"node": {"uuid": "u"}, "heartbeat_timeout": 300}`))
	f.Add([]byte(`{"node": {"uuid": "u"}, "config": {"heartbeat_timeout": "5", "agent_token": 3}}`))
	f.Add([]byte(`{"node": {"uuid": 1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := parseLookup(body)
		if err != nil {
			return
		}
		if res.UUID == "" || res.HeartbeatTimeout < 1 {
			t.Fatalf("accepted %q as %+v", body, res)
		}
	})
}

func FuzzFaultString(f *testing.F) {
	f.Add(captured(f, "agent-heartbeat-400-after-deploy.json"))
	f.Add([]byte(`{"error_message": {"faultstring": "x"}}`))
	f.Add([]byte(`{"error_message": "not json"}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) { faultString(body) })
}

// refuseTransport fails every request: fuzzed commands reach no network.
type refuseTransport struct{}

func (refuseTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in the fuzzer")
}

// FuzzCommandHandler posts arbitrary commands to the agent API: every
// answer is JSON with a status IPA uses, and nothing panics or hangs.
func FuzzCommandHandler(f *testing.F) {
	for _, n := range []string{"standby.prepare_image", "standby.get_partition_uuids", "standby.sync", "image.install_bootloader",
		"deploy.get_deploy_steps", "deploy.execute_deploy_step", "clean.get_clean_steps", "clean.execute_clean_step", "log.collect_system_logs", "x.y"} {
		f.Add(n, []byte(`{}`))
	}
	f.Add("deploy.execute_deploy_step", []byte(`{"step":{"step":"write_image","args":{"image_info":{"id":"i","urls":["http://127.0.0.1:1/"],"checksum":"a"}}},"node":{"properties":{"root_device":{"size":">= 1"}}},"ports":[]}`))
	f.Add("clean.execute_clean_step", []byte(`{"step":{"step":"erase_devices_metadata"},"node":{},"ports":[],"clean_version":{"a":1}}`))
	f.Add("image.install_bootloader", []byte(`{"root_uuid":"0x00000000","target_boot_mode":"uefi","ignore_bootloader_failure":true}`))
	a, err := New(Config{APIURL: "http://127.0.0.1:1", Env: newTestEnv(), HTTP: &http.Client{Transport: refuseTransport{}}, AgentToken: "tok"})
	if err != nil {
		f.Fatal(err)
	}
	h := a.Handler()
	f.Fuzz(func(t *testing.T, name string, params []byte) {
		body, _ := json.Marshal(map[string]any{"name": name, "params": json.RawMessage(params)})
		if !json.Valid(params) {
			body = params
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/commands/?wait=true&agent_token=tok", bytes.NewReader(body)))
		switch rec.Code {
		case 200, 400, 404, 409:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
		// Let an async command end before the next input.
		deadline := time.Now().Add(10 * time.Second)
		for {
			a.mu.Lock()
			n := len(a.commands)
			busy := n > 0 && !a.commands[n-1].isDone()
			a.mu.Unlock()
			if !busy {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("command did not end")
			}
			time.Sleep(time.Millisecond)
		}
	})
}
