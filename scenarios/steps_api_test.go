package scenarios

import "testing"

func TestParseFault(t *testing.T) {
	for _, tc := range []struct {
		name, body, msg string
		ok              bool
	}{
		{"faultstring", `{"error_message":"{\"faultcode\": \"Client\", \"faultstring\": \"Node x could not be found.\", \"debuginfo\": null}"}`, "Node x could not be found.", true},
		{"406 description", `{"error_message":"{\"code\": 406, \"title\": \"Not Acceptable\", \"description\": \"Invalid value\"}"}`, "Invalid value", true},
		{"not a string", `{"error_message":{"faultstring":"x"}}`, "", false},
		{"extra keys", `{"error_message":"{}","x":1}`, "", false},
		{"not JSON", `oops`, "", false},
		{"inner not JSON", `{"error_message":"oops"}`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseFault([]byte(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("parseFault(%s): err %v, want ok=%v", tc.body, err, tc.ok)
			}
			if tc.ok && f.message() != tc.msg {
				t.Errorf("message %q, want %q", f.message(), tc.msg)
			}
		})
	}
}

func TestJSONPath(t *testing.T) {
	body := []byte(`{"a":{"b":[{"c":"v"}]},"n":1.5}`)
	if v, err := jsonPath(body, "a.b.0.c"); err != nil || v != "v" {
		t.Errorf("a.b.0.c = %v, %v", v, err)
	}
	if v, err := jsonPath(body, "n"); err != nil || v != 1.5 {
		t.Errorf("n = %v, %v", v, err)
	}
	for _, p := range []string{"a.x", "a.b.1", "a.b.z", "n.m"} {
		if _, err := jsonPath(body, p); err == nil {
			t.Errorf("%s: want an error", p)
		}
	}
}
