package drivers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/provisioner"
)

// fakeRedfish is a one-system Redfish service for the error paths of the
// redfish interfaces: sessions, ETags, and failures injected per request.
type fakeRedfish struct {
	t        *testing.T
	sessions bool // SessionService present

	mu       sync.Mutex
	tokens   map[string]bool
	logins   int
	power    string
	boot     map[string]string
	etag     int
	resets   []string
	patches  []string // "If-Match=<tag> <body>"
	conflict int      // answer the next n resets 409
	fail503  int      // answer the next n GETs 503
	staleTag bool     // answer the next PATCH with If-Match 412
	login503 int      // answer the next n logins 503
}

const fakeSystem = "/redfish/v1/Systems/sys-1"

func newFakeRedfish(t *testing.T) (*fakeRedfish, *httptest.Server) {
	f := &fakeRedfish{t: t, sessions: true, tokens: map[string]bool{}, power: "Off",
		boot: map[string]string{"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None", "BootSourceOverrideMode": "UEFI"}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeRedfish) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		return f.tokens[tok]
	}
	u, p, ok := r.BasicAuth()
	return ok && u == "admin" && p == "secret"
}

func rfErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":"Base.1.8.GeneralError","message":"A general error","@Message.ExtendedInfo":[{"Message":%q}]}}`, msg)
}

func (f *fakeRedfish) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method == http.MethodPost && r.URL.Path == "/redfish/v1/SessionService/Sessions" {
		if !f.sessions {
			rfErr(w, http.StatusNotFound, "no sessions")
			return
		}
		if f.login503 > 0 {
			f.login503--
			rfErr(w, http.StatusServiceUnavailable, "restarting")
			return
		}
		var c struct{ UserName, Password string }
		_ = json.NewDecoder(r.Body).Decode(&c)
		if c.UserName != "admin" || c.Password != "secret" {
			rfErr(w, http.StatusUnauthorized, "bad credentials")
			return
		}
		f.logins++
		tok := fmt.Sprintf("tok-%d", f.logins)
		f.tokens[tok] = true
		w.Header().Set("X-Auth-Token", tok)
		w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/"+tok)
		w.WriteHeader(http.StatusCreated)
		return
	}
	if !f.authorized(r) {
		rfErr(w, http.StatusUnauthorized, "no valid credentials")
		return
	}
	tag := fmt.Sprintf(`"%d"`, f.etag)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/redfish/v1/Systems":
		fmt.Fprintf(w, `{"Members":[{"@odata.id":%q}]}`, fakeSystem)
	case r.Method == http.MethodGet && r.URL.Path == fakeSystem:
		if f.fail503 > 0 {
			f.fail503--
			rfErr(w, http.StatusServiceUnavailable, "busy")
			return
		}
		w.Header().Set("ETag", tag)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"@odata.id": fakeSystem, "PowerState": f.power, "Boot": f.boot,
			"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
				"target":                            fakeSystem + "/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "Nmi"},
			}},
		})
	case r.Method == http.MethodPatch && r.URL.Path == fakeSystem:
		var body struct{ Boot map[string]string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		b, _ := json.Marshal(body.Boot)
		f.patches = append(f.patches, "If-Match="+r.Header.Get("If-Match")+" "+string(b))
		if m := r.Header.Get("If-Match"); m != "" && (m != tag || f.staleTag) {
			f.staleTag = false
			rfErr(w, http.StatusPreconditionFailed, "ETag mismatch")
			return
		}
		for k, v := range body.Boot {
			f.boot[k] = v
		}
		f.etag++
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && r.URL.Path == fakeSystem+"/Actions/ComputerSystem.Reset":
		var body struct{ ResetType string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.resets = append(f.resets, body.ResetType)
		if f.conflict > 0 {
			f.conflict--
			rfErr(w, http.StatusConflict, "operation in progress")
			return
		}
		switch body.ResetType {
		case "On", "ForceRestart", "GracefulRestart":
			f.power = "On"
		case "ForceOff", "GracefulShutdown":
			f.power = "Off"
		case "Nmi":
			if f.power != "On" {
				rfErr(w, http.StatusConflict, "Nmi needs the system powered on.")
				f.conflict = 0
				return
			}
		default:
			rfErr(w, http.StatusBadRequest, "bad ResetType")
			return
		}
		f.etag++
		w.WriteHeader(http.StatusNoContent)
	default:
		rfErr(w, http.StatusNotFound, r.URL.Path)
	}
}

func testRedfish(t *testing.T) *HardwareType {
	t.Helper()
	h, err := NewRedfish(RedfishConfig{PollInterval: time.Millisecond, PowerTimeout: 2 * time.Second,
		ConnectionAttempts: 3, ConnectionRetryInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func rfNode(addr string, extra map[string]any) *provisioner.Node {
	info := map[string]any{"redfish_address": addr, "redfish_system_id": fakeSystem,
		"redfish_username": "admin", "redfish_password": "secret"}
	for k, v := range extra {
		if v == nil {
			delete(info, k)
		} else {
			info[k] = v
		}
	}
	return &provisioner.Node{UUID: "0f6c5a41-6b2c-4a3c-9d4a-6f0e2b3c4d5e", Driver: "redfish", DriverInfo: info}
}

func TestRedfishPowerAndBoot(t *testing.T) {
	f, srv := newFakeRedfish(t)
	h := testRedfish(t)
	node := rfNode(srv.URL, nil)
	ctx := t.Context()
	p, _ := h.PowerFor(node)
	m, _ := h.ManagementFor(node)

	if st, err := p.GetPowerState(ctx, node); err != nil || st != provisioner.PowerOff {
		t.Fatalf("power state %q, %v", st, err)
	}
	for _, tc := range []struct {
		target provisioner.PowerState
		reset  string
		want   string
	}{
		{provisioner.PowerOn, "On", "On"},
		{provisioner.Rebooting, "ForceRestart", "On"},
		{provisioner.SoftRebooting, "GracefulRestart", "On"},
		{provisioner.SoftPowerOff, "GracefulShutdown", "Off"},
		{provisioner.Rebooting, "On", "On"}, // a reboot of a system that is off powers it on
		{provisioner.PowerOff, "ForceOff", "Off"},
	} {
		if err := p.SetPowerState(ctx, node, tc.target); err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		f.mu.Lock()
		last, power := f.resets[len(f.resets)-1], f.power
		f.mu.Unlock()
		if last != tc.reset || power != tc.want {
			t.Errorf("%s: reset %s, power %s; want %s, %s", tc.target, last, power, tc.reset, tc.want)
		}
	}

	// Boot device: persistent pxe is Continuous, with If-Match of the last
	// GET; the node's boot mode bios moves the override mode to Legacy in
	// a PATCH of its own.
	node.Properties = map[string]any{"capabilities": "boot_mode:bios"}
	if err := m.SetBootDevice(ctx, node, BootDevice{Device: "pxe", Persistent: true}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	patches := append([]string(nil), f.patches...)
	f.mu.Unlock()
	if len(patches) != 2 || !strings.HasPrefix(patches[0], `If-Match="`) ||
		!strings.Contains(patches[0], `"BootSourceOverrideEnabled":"Continuous"`) || !strings.Contains(patches[0], `"BootSourceOverrideTarget":"Pxe"`) ||
		!strings.HasSuffix(patches[1], `{"BootSourceOverrideMode":"Legacy"}`) {
		t.Errorf("patches %q", patches)
	}
	if bd, err := m.GetBootDevice(ctx, node); err != nil || bd != (BootDevice{Device: "pxe", Persistent: true}) {
		t.Errorf("boot device %+v, %v", bd, err)
	}
	if err := m.SetBootDevice(ctx, node, BootDevice{Device: "disk"}); err != nil {
		t.Fatal(err)
	}
	if bd, _ := m.GetBootDevice(ctx, node); bd != (BootDevice{Device: "disk"}) {
		t.Errorf("boot device %+v", bd)
	}
	if err := m.SetBootDevice(ctx, node, BootDevice{Device: "floppy"}); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("floppy: %v", err)
	}
	if devs, err := m.SupportedBootDevices(ctx, node); err != nil || strings.Join(devs, ",") != "pxe,disk,cdrom,bios" {
		t.Errorf("supported %v, %v", devs, err)
	}
	rm := m.(*RedfishManagement)
	if mode, err := rm.GetBootMode(ctx, node); err != nil || mode != BootModeBIOS {
		t.Errorf("boot mode %q, %v", mode, err)
	}
	if err := rm.SetBootMode(ctx, node, BootModeUEFI); err != nil {
		t.Fatal(err)
	}
	if mode, _ := rm.GetBootMode(ctx, node); mode != BootModeUEFI {
		t.Errorf("boot mode %q", mode)
	}
	// NMI: refused while off (409 is retried, then reported), sent when on.
	if err := rm.InjectNMI(ctx, node); err == nil || !strings.Contains(err.Error(), "Nmi needs the system powered on") {
		t.Errorf("nmi while off: %v", err)
	}
	if err := p.SetPowerState(ctx, node, provisioner.PowerOn); err != nil {
		t.Fatal(err)
	}
	if err := rm.InjectNMI(ctx, node); err != nil {
		t.Errorf("nmi: %v", err)
	}
	if f.logins != 1 {
		t.Errorf("%d logins, want one session for all calls", f.logins)
	}
}

func TestRedfishRetries(t *testing.T) {
	f, srv := newFakeRedfish(t)
	h := testRedfish(t)
	node := rfNode(srv.URL, nil)
	ctx := t.Context()
	p, _ := h.PowerFor(node)
	m, _ := h.ManagementFor(node)

	// 401 on a dead session: one new login, the call succeeds.
	if _, err := p.GetPowerState(ctx, node); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	clear(f.tokens)
	f.mu.Unlock()
	if _, err := p.GetPowerState(ctx, node); err != nil {
		t.Fatalf("after the session died: %v", err)
	}
	if f.logins != 2 {
		t.Errorf("%d logins, want 2", f.logins)
	}
	// A login answered 503 is retried, and stays a session (no fallback
	// to basic auth).
	f.mu.Lock()
	clear(f.tokens)
	f.login503 = 2
	f.mu.Unlock()
	if _, err := p.GetPowerState(ctx, node); err != nil {
		t.Fatalf("through login 503s: %v", err)
	}
	if f.logins != 3 {
		t.Errorf("%d logins, want 3", f.logins)
	}

	// 409 twice, then the reset goes through (3 attempts).
	f.mu.Lock()
	f.conflict, f.resets = 2, nil
	f.mu.Unlock()
	if err := p.SetPowerState(ctx, node, provisioner.PowerOn); err != nil {
		t.Fatalf("power on through 409s: %v", err)
	}
	if got := strings.Join(f.resets, ","); got != "On,On,On" {
		t.Errorf("resets %s", got)
	}
	// 409 more often than the attempts: the error names the service's message.
	f.mu.Lock()
	f.conflict = 5
	f.mu.Unlock()
	err := p.SetPowerState(ctx, node, provisioner.PowerOff)
	var de *DeployError
	if !errors.As(err, &de) || !strings.Contains(de.Msg, "returned code 409") || !strings.Contains(de.Msg, "operation in progress") ||
		!strings.Contains(de.Msg, node.UUID) {
		t.Errorf("persistent 409: %v", err)
	}
	var re *RedfishError
	if !errors.As(err, &re) || re.Status != http.StatusConflict {
		t.Errorf("cause %v", err)
	}
	f.mu.Lock()
	f.conflict = 0
	f.mu.Unlock()

	// 503 on a GET is retried.
	f.mu.Lock()
	f.fail503 = 2
	f.mu.Unlock()
	if _, err := p.GetPowerState(ctx, node); err != nil {
		t.Errorf("through 503s: %v", err)
	}

	// 412 on a PATCH with If-Match: sent again without it.
	f.mu.Lock()
	f.staleTag, f.patches = true, nil
	f.mu.Unlock()
	if err := m.SetBootDevice(ctx, node, BootDevice{Device: "cdrom"}); err != nil {
		t.Fatalf("after 412: %v", err)
	}
	if len(f.patches) < 2 || !strings.HasPrefix(f.patches[0], `If-Match="`) || !strings.HasPrefix(f.patches[1], "If-Match= ") {
		t.Errorf("patches %q", f.patches)
	}
}

func TestRedfishAuth(t *testing.T) {
	f, srv := newFakeRedfish(t)
	h := testRedfish(t)
	ctx := t.Context()

	// auto without a SessionService: basic auth.
	f.sessions = false
	node := rfNode(srv.URL, nil)
	p, _ := h.PowerFor(node)
	if _, err := p.GetPowerState(ctx, node); err != nil {
		t.Errorf("auto falls back to basic: %v", err)
	}
	// session only: the login's failure is the error.
	node = rfNode(srv.URL, map[string]any{"redfish_auth_type": "session"})
	_, err := p.GetPowerState(ctx, node)
	if err == nil || !strings.Contains(err.Error(), "session login") {
		t.Errorf("session without SessionService: %v", err)
	}
	// A wrong password: 401, not retried as a re-login loop.
	f.sessions = true
	node = rfNode(srv.URL, map[string]any{"redfish_password": "wrong", "redfish_auth_type": "basic"})
	_, err = p.GetPowerState(ctx, node)
	var re *RedfishError
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized {
		t.Errorf("wrong password: %v", err)
	}
	// An unreachable service: a connection error after the attempts.
	node = rfNode("http://127.0.0.1:1", nil)
	if _, err := p.GetPowerState(ctx, node); err == nil || !strings.Contains(err.Error(), "Redfish exception occurred on node") {
		t.Errorf("unreachable: %v", err)
	}
}

func TestRedfishValidate(t *testing.T) {
	h := testRedfish(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string // "" => valid
	}{
		{"ok", nil, ""},
		{"no scheme is https", map[string]any{"redfish_address": "127.0.0.1:8000"}, ""},
		{"system id alone", map[string]any{"redfish_system_id": "sys-1"}, ""},
		{"no system id", map[string]any{"redfish_system_id": nil}, ""},
		{"verify false", map[string]any{"redfish_verify_ca": "False"}, ""},
		{"verify bool", map[string]any{"redfish_verify_ca": false}, ""},
		{"verify file", map[string]any{"redfish_verify_ca": ca}, ""},
		{"missing address", map[string]any{"redfish_address": nil}, "Missing the following Redfish properties in node 0f6c5a41-6b2c-4a3c-9d4a-6f0e2b3c4d5e driver_info: redfish_address"},
		{"bad scheme", map[string]any{"redfish_address": "ftp://bmc"}, "Invalid Redfish address ftp://bmc set in driver_info/redfish_address"},
		{"path in address", map[string]any{"redfish_address": "https://bmc/redfish/v1"}, "Invalid Redfish address"},
		{"verify nonsense", map[string]any{"redfish_verify_ca": "/no/such/ca.pem"}, `The value should be a Boolean or the path to a file/directory, not "/no/such/ca.pem"`},
		{"verify number", map[string]any{"redfish_verify_ca": 3.0}, "Invalid value type set in driver_info/redfish_verify_ca"},
		{"auth type", map[string]any{"redfish_auth_type": "digest"}, `Invalid value "digest" set in driver_info/redfish_auth_type on node 0f6c5a41-6b2c-4a3c-9d4a-6f0e2b3c4d5e. The value should be one of ['auto', 'session', 'basic']`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := rfNode("https://127.0.0.1:8000", tc.extra)
			p, _ := h.PowerFor(node)
			m, _ := h.ManagementFor(node)
			for _, err := range []error{p.Validate(context.Background(), node), m.Validate(context.Background(), node)} {
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("valid: %v", err)
				case tc.want != "" && (!errors.Is(err, ErrInvalidParameter) || !strings.Contains(err.Error(), tc.want)):
					t.Errorf("got %v, want %q", err, tc.want)
				}
			}
		})
	}
	// A CA file without a certificate is refused when the client is built.
	node := rfNode("https://127.0.0.1:8000", map[string]any{"redfish_verify_ca": ca})
	p, _ := h.PowerFor(node)
	if _, err := p.GetPowerState(t.Context(), node); !errors.Is(err, ErrInvalidParameter) || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad CA: %v", err)
	}
}

// TestRedfishUEFIHTTPBootDevice: boot device uefi_http is one PATCH of
// BootSourceOverrideTarget UefiHttp with its HttpBootUri (null without
// one, as sushy) and BootSourceOverrideMode UEFI; a node in bios boot
// mode is refused with Ironic's UnsupportedHardwareFeature message and
// nothing sent.
func TestRedfishUEFIHTTPBootDevice(t *testing.T) {
	f, srv := newFakeRedfish(t)
	m, _ := testRedfish(t).ManagementFor(rfNode(srv.URL, nil))
	ctx := t.Context()
	patches := func() []string {
		f.mu.Lock()
		defer f.mu.Unlock()
		p := f.patches
		f.patches = nil
		return p
	}
	node := rfNode(srv.URL, nil)
	node.Properties = map[string]any{"capabilities": "boot_mode:uefi"}
	for _, c := range []struct {
		uri, want string
	}{
		{"http://127.0.0.1:8080/redfish/boot-1.iso", `"HttpBootUri":"http://127.0.0.1:8080/redfish/boot-1.iso"`},
		{"", `"HttpBootUri":""`}, // the fake decodes null as ""
	} {
		if err := m.SetBootDevice(ctx, node, BootDevice{Device: BootDeviceUEFIHTTP, HTTPBootURI: c.uri}); err != nil {
			t.Fatal(err)
		}
		p := patches()
		if len(p) != 1 || !strings.Contains(p[0], c.want) || !strings.Contains(p[0], `"BootSourceOverrideTarget":"UefiHttp"`) ||
			!strings.Contains(p[0], `"BootSourceOverrideEnabled":"Once"`) || !strings.Contains(p[0], `"BootSourceOverrideMode":"UEFI"`) {
			t.Errorf("uri %q: patches %q", c.uri, p)
		}
	}
	node.Properties = map[string]any{"capabilities": "boot_mode:bios"}
	err := m.SetBootDevice(ctx, node, BootDevice{Device: BootDeviceUEFIHTTP, HTTPBootURI: "http://x/boot.iso"})
	if !errors.Is(err, ErrInvalidParameter) || err.Error() != UEFIHTTPNeedsUEFI(node.UUID) {
		t.Errorf("bios node: %v", err)
	}
	if p := patches(); len(p) != 0 {
		t.Errorf("bios node: patches %q", p)
	}
}
