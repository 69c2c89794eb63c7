package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
)

// clientError reports whether err is a refusal the client caused (4xx),
// the only kind of error a decoder of untrusted bytes may return.
func clientError(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status >= 400 && ae.status < 500
}

func FuzzDecodeNodeCreate(f *testing.F) {
	for _, seed := range []string{
		`{"driver":"ipmi","name":"bm0","driver_info":{"ipmi_address":"127.0.0.1","ipmi_port":623}}`,
		`{"driver":"fake-hardware","uuid":"603c03f7-93d4-4e40-99ff-26d6c463d0d3","automated_clean":false}`,
		`{"driver":"x","traits":["A"]}`, `{"name":1}`, `[]`, `null`, `{"driver":"x","protected":true}`,
		`{"driver":"x","deploy_interface":"direct","network_data":{"links":[]}}`,
	} {
		f.Add([]byte(seed), 82)
	}
	s := &Server{fields: nodeFields()}
	f.Fuzz(func(t *testing.T, body []byte, version int) {
		n, err := s.decodeNodeCreate(body, version%100)
		if err != nil {
			if !clientError(err) {
				t.Fatalf("non-client error %v", err)
			}
			return
		}
		if n.Driver == "" {
			t.Fatal("node without a driver accepted")
		}
	})
}

func FuzzNodePatch(f *testing.F) {
	for _, seed := range []string{
		`[{"op":"add","path":"/extra/foo","value":"bar"}]`,
		`[{"op":"replace","path":"/driver_info/ipmi_password","value":"x"}]`,
		`[{"op":"remove","path":"/properties/cpus"}]`,
		`[{"op":"replace","path":"/provision_state","value":"active"}]`,
		`[{"op":"add","path":"/foo","value":1}]`, `[{"op":"move","path":"/name","from":"/x"}]`,
		`[{"op":"replace","path":"/name","value":"a~1b"}]`, `[{"op":"add","path":"/extra/a/b/c","value":{}}]`,
		`[{"op":"replace","path":"/maintenance","value":"yes"}]`, `{}`, `[]`,
	} {
		f.Add([]byte(seed))
	}
	s := &Server{fields: nodeFields()}
	r := httptest.NewRequest(http.MethodPatch, "/v1/nodes/x", nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := decodePatch(body)
		if err != nil {
			if !clientError(err) {
				t.Fatalf("decode: non-client error %v", err)
			}
			return
		}
		n := &provisioner.Node{UUID: "603c03f7-93d4-4e40-99ff-26d6c463d0d3", Driver: "ipmi",
			ProvisionState: provisioner.StateEnroll,
			DriverInfo:     map[string]any{"ipmi_password": "p", "ipmi_port": int64(623)},
			Properties:     map[string]any{"cpus": int64(2)}}
		if err := s.patchNodeDoc(n, ops, maxMinor, r); err != nil && !clientError(err) {
			t.Fatalf("patch: non-client error %v", err)
		}
		if n.UUID != "603c03f7-93d4-4e40-99ff-26d6c463d0d3" || n.ProvisionState != provisioner.StateEnroll {
			t.Fatalf("patch changed a read-only field: %+v", n)
		}
	})
}

func FuzzDecodePortCreate(f *testing.F) {
	for _, seed := range []string{
		`{"address":"52:54:00:12:34:56","node_uuid":"603c03f7-93d4-4e40-99ff-26d6c463d0d3"}`,
		`{"address":"zz","node_uuid":"x"}`, `{"address":"52-54-00-12-34-56","node_uuid":"x","pxe_enabled":false}`,
		`{"address":"00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00","node_uuid":"x"}`, `{}`, `1`,
	} {
		f.Add([]byte(seed), 82)
	}
	f.Fuzz(func(t *testing.T, body []byte, version int) {
		p, err := decodePortCreate(body, version%100)
		if err != nil {
			if !clientError(err) {
				t.Fatalf("non-client error %v", err)
			}
			return
		}
		if len(p.Address) != 6 || p.NodeUUID == "" {
			t.Fatalf("accepted port %+v", p)
		}
	})
}

func FuzzDecodeProvisionBody(f *testing.F) {
	for _, seed := range []string{`{"target":"manage"}`, `{"target":"active","configdrive":"H4sI"}`,
		`{"target":"clean","clean_steps":[{"interface":"deploy","step":"erase_devices"}]}`,
		`{"target":"provide","clean_steps":[]}`, `{"target":null}`, `{"target":["x"]}`} {
		f.Add([]byte(seed), 82)
	}
	f.Fuzz(func(t *testing.T, body []byte, version int) {
		if _, _, err := decodeProvisionBody(body, version%100); err != nil && !clientError(err) {
			t.Fatalf("non-client error %v", err)
		}
	})
}

func FuzzDecodePowerBody(f *testing.F) {
	for _, seed := range []string{`{"target":"power on"}`, `{"target":"soft power off","timeout":10}`,
		`{"target":"rebooting","timeout":-1}`, `{"target":"power on","timeout":1e309}`, `{"timeout":1}`} {
		f.Add([]byte(seed), 82)
	}
	f.Fuzz(func(t *testing.T, body []byte, version int) {
		_, timeout, err := decodePowerBody(body, version%100)
		if err != nil {
			if !clientError(err) {
				t.Fatalf("non-client error %v", err)
			}
			return
		}
		if timeout < 0 {
			t.Fatalf("negative timeout %v accepted", timeout)
		}
	})
}

func FuzzDecodeBootDevice(f *testing.F) {
	for _, seed := range []string{`{"boot_device":"pxe","persistent":true}`, `{"boot_device":1}`, `{}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := decodeBootDevice(body); err != nil && !clientError(err) {
			t.Fatalf("non-client error %v", err)
		}
	})
}

func FuzzVersionHeader(f *testing.F) {
	for _, seed := range []string{"", "1.1", "1.82", "latest", "1.99", "2.1", "abc", "1.", ".1", "1.+1", "-1.5"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/v1/nodes", nil)
		r.Header.Set(versionHeader, v)
		got, ok := negotiate(w, r)
		if !ok {
			if w.Code != http.StatusNotAcceptable {
				t.Fatalf("%q: refused with %d", v, w.Code)
			}
			return
		}
		if m := minor(got); m < minMinor || m > maxMinor {
			t.Fatalf("%q negotiated 1.%d", v, m)
		}
	})
}

func FuzzDecodeTemplate(f *testing.F) {
	for _, seed := range []string{
		`{"name":"CUSTOM_A","steps":[{"interface":"bios","step":"apply_configuration","args":{},"priority":150}]}`,
		`{"name":"CUSTOM_A","steps":[{"interface":"bios","step":"x","args":{},"priority":"10"}]}`,
		`{"name":"HW_CPU_X86_AVX","steps":[{"interface":"raid","step":"x","args":{"a":1},"priority":-1}]}`,
		`{"name":5,"steps":"x"}`, `{"steps":[null]}`, `{"name":"CUSTOM_A","steps":[1.5]}`, `{}`,
		`{"name":"CUSTOM_A","steps":[{"interface":"bios","step":"x","args":{},"priority":1e300}]}`,
		`{"name":"CUSTOM_A","steps":[{"interface":"bios","step":"x","args":{},"priority":"99999999999999999999"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var doc map[string]any
		if json.Unmarshal(body, &doc) != nil || doc == nil {
			return
		}
		var tpl provisioner.DeployTemplate
		if err := decodeTemplate("template", doc, &tpl); err != nil {
			if !clientError(err) {
				t.Fatalf("non-client error %v", err)
			}
			return
		}
		if !validTrait(tpl.Name) || len(tpl.Steps) == 0 {
			t.Fatalf("accepted %+v", tpl)
		}
		for _, st := range tpl.Steps {
			if st.Priority < 0 || st.Step == "" {
				t.Fatalf("accepted step %+v", st)
			}
		}
	})
}

func FuzzCheckSchema(f *testing.F) {
	for _, seed := range []string{
		`{"description":"rack","extra":{"a":1}}`, `{"uuid":5}`, `{"foo":1,"bar":2}`,
		`{"resource_class":"baremetal","traits":["CUSTOM_GPU", 1],"candidate_nodes":["n0"]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var doc map[string]any
		if json.Unmarshal(body, &doc) != nil || doc == nil {
			return
		}
		for _, schema := range []map[string]prop{chassisSchema, allocationSchema, templateSchema} {
			if err := checkSchema("x", doc, schema); err != nil && !clientError(err) {
				t.Fatalf("non-client error %v", err)
			}
		}
		if traits, ok := doc["traits"].([]any); ok {
			for _, tr := range traits {
				if err := checkTraitSchema("x", tr); err != nil && !clientError(err) {
					t.Fatalf("non-client error %v", err)
				}
			}
		}
	})
}
