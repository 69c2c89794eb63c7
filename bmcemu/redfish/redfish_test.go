package redfish

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/metalbed/metalbed/internal/fault"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

const (
	testUser = "admin"
	testPass = "password"
)

// bed is a Redfish service on 127.0.0.1:0 in front of fake machines.
type bed struct {
	url      string // https://127.0.0.1:port or http://…
	client   *http.Client
	machines []*fakeMachine
	media    []*mediaMachine // with bedOptions.media
	cert     Certificate
	clock    *testenv.Clock

	mu     sync.Mutex
	events []events.Event
}

type bedOptions struct {
	plain    bool
	machines int
	// otherAccount gives the last machine the account other/secret.
	otherAccount bool
	// uefi makes every machine's firmware boot UEFI (default legacy BIOS).
	uefi bool
	// faults is the service's fault.Injector; nil: none.
	faults fault.Injector
	// firmwareReboot is Config.FirmwareReboot; 0: the default.
	firmwareReboot time.Duration
	// sel is the first machine's SEL (shared with an IPMI BMC); nil: the
	// service's own.
	sel *bmcemu.SEL
	// media makes every machine a bmcemu.MediaMachine (b.media).
	media bool
}

func startBed(t *testing.T, o bedOptions) *bed {
	t.Helper()
	if o.machines == 0 {
		o.machines = 1
	}
	b := &bed{clock: testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	cfg := Config{
		PlainHTTP:      o.plain,
		Now:            b.clock.Now,
		RestartTimeout: 2 * time.Second,
		Faults:         o.faults,
		FirmwareReboot: o.firmwareReboot,
		Recorder: events.RecorderFunc(func(e events.Event) {
			b.mu.Lock()
			b.events = append(b.events, e)
			b.mu.Unlock()
		}),
	}
	for i := range o.machines {
		m := newFakeMachine("node-"+string(rune('0'+i)), i)
		m.hw.UEFI = o.uefi
		b.machines = append(b.machines, m)
		sc := System{Machine: m, Username: testUser, Password: testPass}
		if o.media {
			mm := &mediaMachine{fakeMachine: m}
			b.media = append(b.media, mm)
			sc.Machine = mm
		}
		if i == 0 {
			sc.SEL = o.sel
		}
		if o.otherAccount && i == o.machines-1 {
			sc.Username, sc.Password = "other", "secret"
		}
		cfg.Systems = append(cfg.Systems, sc)
	}
	b.client = &http.Client{Timeout: 10 * time.Second}
	scheme := "http"
	if !o.plain {
		c, err := GenerateCertificate(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		b.cert = c
		cfg.CertFile, cfg.KeyFile = c.CertFile, c.KeyFile
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		b.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		scheme = "https"
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = scheme + "://" + ln.Addr().String()
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b
}

func (b *bed) sysPath(i int) string { return "/redfish/v1/Systems/" + b.machines[i].hw.UUID }

// do sends a request with basic auth (auth "basic"), a token, or nothing
// (auth ""), and returns status, headers and the decoded JSON body.
func (b *bed) do(t *testing.T, method, path, auth string, body any, hdr ...string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, b.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	switch auth {
	case "":
	case "basic":
		req.SetBasicAuth(testUser, testPass)
	default:
		req.Header.Set("X-Auth-Token", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d, body not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, resp.Header, out
}

func (b *bed) kinds() []events.Kind {
	b.mu.Lock()
	defer b.mu.Unlock()
	var k []events.Kind
	for _, e := range b.events {
		k = append(k, e.Kind)
	}
	return k
}

// checkError asserts a Redfish error body.
func checkError(t *testing.T, what string, status, want int, body map[string]any) {
	t.Helper()
	if status != want {
		t.Errorf("%s: status %d, want %d (%v)", what, status, want, body)
		return
	}
	e, ok := body["error"].(map[string]any)
	if !ok {
		t.Errorf("%s: no error object: %v", what, body)
		return
	}
	if e["code"] == "" || e["message"] == "" {
		t.Errorf("%s: error without code or message: %v", what, e)
	}
	if info, ok := e["@Message.ExtendedInfo"].([]any); !ok || len(info) == 0 {
		t.Errorf("%s: no @Message.ExtendedInfo: %v", what, e)
	}
}

func get(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func TestServiceRootAndHTTPS(t *testing.T) {
	b := startBed(t, bedOptions{})
	st, _, root := b.do(t, "GET", "/redfish/v1/", "", nil)
	if st != 200 {
		t.Fatalf("service root: %d", st)
	}
	if v := root["RedfishVersion"]; v != "1.6.0" {
		t.Errorf("RedfishVersion %v", v)
	}
	for _, k := range []string{"Systems", "Managers", "Chassis", "SessionService"} {
		if get(root, k, "@odata.id") == nil {
			t.Errorf("service root lacks %s: %v", k, root)
		}
	}
	if root["@odata.type"] == nil || root["@odata.id"] != "/redfish/v1/" {
		t.Errorf("service root header: %v", root)
	}
	// The certificate names 127.0.0.1: b.client verified it against the CA.
	// A client without the CA refuses it.
	plain := &http.Client{Timeout: 5 * time.Second}
	if _, err := plain.Get(b.url + "/redfish/v1/"); err == nil {
		t.Error("a client without the CA accepted the certificate")
	}
}

func TestAuthentication(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	sys := b.sysPath(0)
	st, _, body := b.do(t, "GET", sys, "", nil)
	checkError(t, "no credentials", st, 401, body)
	st, _, body = b.do(t, "GET", sys, "made-up-token", nil)
	checkError(t, "made-up token", st, 401, body)

	req, _ := http.NewRequest("GET", b.url+sys, nil)
	req.SetBasicAuth(testUser, "wrong")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("wrong password with basic auth: %d", resp.StatusCode)
	}
	if st, _, _ := b.do(t, "GET", sys, "basic", nil); st != 200 {
		t.Errorf("basic auth: %d", st)
	}

	for _, bad := range []map[string]string{
		{"UserName": testUser, "Password": "wrong"},
		{"UserName": "nobody", "Password": testPass},
	} {
		st, _, body := b.do(t, "POST", "/redfish/v1/SessionService/Sessions", "", bad)
		checkError(t, "login "+bad["UserName"]+"/"+bad["Password"], st, 401, body)
	}
	st, hdr, body := b.do(t, "POST", "/redfish/v1/SessionService/Sessions", "", map[string]string{"UserName": testUser, "Password": testPass})
	if st != 201 {
		t.Fatalf("login: %d %v", st, body)
	}
	tok, loc := hdr.Get("X-Auth-Token"), hdr.Get("Location")
	if tok == "" || !strings.HasPrefix(loc, "/redfish/v1/SessionService/Sessions/") || body["@odata.id"] != loc {
		t.Fatalf("login answer: token %q location %q body %v", tok, loc, body)
	}
	if st, _, _ := b.do(t, "GET", sys, tok, nil); st != 200 {
		t.Errorf("with the token: %d", st)
	}
	st, _, coll := b.do(t, "GET", "/redfish/v1/SessionService/Sessions", tok, nil)
	if st != 200 || coll["Members@odata.count"] != 1.0 {
		t.Errorf("sessions: %d %v", st, coll)
	}
	if st, _, _ := b.do(t, "DELETE", loc, tok, nil); st != 204 {
		t.Errorf("logout: %d", st)
	}
	st, _, body = b.do(t, "GET", sys, tok, nil)
	checkError(t, "logged-out token", st, 401, body)

	// Expiry after SessionTimeout without use.
	_, hdr, _ = b.do(t, "POST", "/redfish/v1/SessionService/Sessions", "", map[string]string{"UserName": testUser, "Password": testPass})
	tok = hdr.Get("X-Auth-Token")
	b.clock.Advance(29 * time.Minute)
	if st, _, _ := b.do(t, "GET", sys, tok, nil); st != 200 {
		t.Errorf("token used within the timeout: %d", st)
	}
	b.clock.Advance(31 * time.Minute)
	st, _, body = b.do(t, "GET", sys, tok, nil)
	checkError(t, "expired token", st, 401, body)

	want := []events.Kind{events.BMCRedfishSessions, events.BMCRedfishSessions, events.BMCRedfishSessions}
	if got := b.kinds(); len(got) != len(want) {
		t.Errorf("events %v, want %v (login, logout, login)", got, want)
	}
}

func TestAccountsSeeTheirSystems(t *testing.T) {
	b := startBed(t, bedOptions{plain: true, machines: 2, otherAccount: true})
	st, _, coll := b.do(t, "GET", "/redfish/v1/Systems", "basic", nil)
	if st != 200 || coll["Members@odata.count"] != 1.0 {
		t.Fatalf("systems of admin: %d %v", st, coll)
	}
	st, _, body := b.do(t, "GET", b.sysPath(1), "basic", nil)
	checkError(t, "another account's system", st, 403, body)
	// The name resolves to the same resource.
	st, _, sys := b.do(t, "GET", "/redfish/v1/Systems/node-0", "basic", nil)
	if st != 200 || sys["@odata.id"] != b.sysPath(0) || sys["UUID"] != b.machines[0].hw.UUID {
		t.Errorf("system by name: %d %v", st, sys["@odata.id"])
	}
}

func TestUnknownResourcesAndMethods(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	for _, tt := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/redfish/v1/Nothing", nil, 404},
		{"GET", "/redfish/v1/Systems/not-a-system", nil, 404},
		{"GET", b.sysPath(0) + "/EthernetInterfaces/NIC9", nil, 404},
		{"DELETE", b.sysPath(0), nil, 405},
		{"PUT", "/redfish/v1/Systems", nil, 405},
		{"PATCH", b.sysPath(0), "{not json", 400},
		{"PATCH", b.sysPath(0), `{"Boot": {"BootSourceOverrideTarget": "Floppy"}}`, 400},
		{"PATCH", b.sysPath(0), `{"Bogus": 1}`, 400},
		{"PATCH", b.sysPath(0), `{"Boot": {"BootSourceOverrideEnabled": "Sometimes"}}`, 400},
		{"PATCH", b.sysPath(0), `{"Boot": {"BootSourceOverrideMode": "Fast"}}`, 400},
		{"PATCH", b.sysPath(0), `{"Boot": {}} {}`, 400},
		{"PATCH", b.sysPath(0), `{"Boot": {"BootSourceOverrideEnabled": "` + strings.Repeat("x", maxBody) + `"}}`, 413},
		{"POST", b.sysPath(0) + "/Actions/ComputerSystem.Reset", `{"ResetType": "Explode"}`, 400},
		{"POST", b.sysPath(0) + "/Actions/ComputerSystem.Reset", `{}`, 400},
		{"POST", "/redfish/v1/Managers/node-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", `{}`, 400},
	} {
		st, _, body := b.do(t, tt.method, tt.path, "basic", tt.body)
		checkError(t, tt.method+" "+tt.path, st, tt.want, body)
	}
}

func TestResetDrivesTheMachine(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	m := b.machines[0]
	reset := b.sysPath(0) + "/Actions/ComputerSystem.Reset"
	power := func() string {
		_, _, s := b.do(t, "GET", b.sysPath(0), "basic", nil)
		return s["PowerState"].(string)
	}
	steps := []struct {
		reset, power string
		action       bmcemu.PowerAction
	}{
		{"On", "On", bmcemu.PowerUp},
		{"ForceRestart", "On", bmcemu.HardReset},
		{"Nmi", "On", bmcemu.DiagnosticInterrupt},
		{"PowerCycle", "On", bmcemu.PowerCycle},
		{"ForceOff", "Off", bmcemu.PowerDown},
		{"PushPowerButton", "On", bmcemu.PowerUp},
		{"PushPowerButton", "Off", bmcemu.SoftShutdown},
		{"On", "On", bmcemu.PowerUp},
		{"GracefulShutdown", "Off", bmcemu.SoftShutdown},
	}
	for _, s := range steps {
		if st, _, body := b.do(t, "POST", reset, "basic", map[string]string{"ResetType": s.reset}); st != 204 {
			t.Fatalf("%s: %d %v", s.reset, st, body)
		}
		if a, _ := m.lastAction(); a != s.action {
			t.Errorf("%s: machine got %v, want %v", s.reset, a, s.action)
		}
		if got := power(); got != s.power {
			t.Errorf("after %s: PowerState %s, want %s", s.reset, got, s.power)
		}
	}
	// GracefulRestart: soft shutdown, then back on once the machine is off.
	b.do(t, "POST", reset, "basic", map[string]string{"ResetType": "On"})
	boots := len(m.boots)
	if st, _, _ := b.do(t, "POST", reset, "basic", map[string]string{"ResetType": "GracefulRestart"}); st != 204 {
		t.Fatalf("GracefulRestart: %d", st)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.on && len(m.boots) > boots
	}, "the machine to come back after GracefulRestart")
	n := 0
	for _, k := range b.kinds() {
		if k == events.BMCRedfishReset {
			n++
		}
	}
	if n != len(steps)+2 {
		t.Errorf("%d reset events, want %d", n, len(steps)+2)
	}
}

// TestBootOverrideSemantics: a Once override is consumed by the next boot
// and reads Disabled afterwards; Continuous survives boots; the flags are
// those an IPMI client would read.
func TestBootOverrideSemantics(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	m := b.machines[0]
	sys := b.sysPath(0)
	reset := sys + "/Actions/ComputerSystem.Reset"
	bootOf := func() map[string]any {
		_, _, s := b.do(t, "GET", sys, "basic", nil)
		return s["Boot"].(map[string]any)
	}
	patch := func(boot map[string]string) {
		t.Helper()
		if st, _, body := b.do(t, "PATCH", sys, "basic", map[string]any{"Boot": boot}); st != 200 {
			t.Fatalf("PATCH %v: %d %v", boot, st, body)
		}
	}
	cycle := func() {
		t.Helper()
		b.do(t, "POST", reset, "basic", map[string]string{"ResetType": "ForceOff"})
		b.do(t, "POST", reset, "basic", map[string]string{"ResetType": "On"})
	}

	if got := bootOf(); got["BootSourceOverrideEnabled"] != "Disabled" || got["BootSourceOverrideMode"] != "Legacy" {
		t.Errorf("initial boot %v", got)
	}
	patch(map[string]string{"BootSourceOverrideMode": "UEFI"})
	patch(map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"})
	if f, _ := m.BootFlags(t.Context()); f != [5]byte{0xa0, 0x04, 0, 0, 0} {
		t.Errorf("Once Pxe UEFI flags % x, want a0 04 00 00 00 (IPMI: valid, one-time, EFI, PXE)", f)
	}
	if got := bootOf(); got["BootSourceOverrideEnabled"] != "Once" || got["BootSourceOverrideTarget"] != "Pxe" || got["BootSourceOverrideMode"] != "UEFI" {
		t.Errorf("after Once Pxe: %v", got)
	}
	cycle()
	if got := m.lastBoot(); got != "1 efi=true" {
		t.Errorf("boot %q, want pxe in UEFI", got)
	}
	if got := bootOf(); got["BootSourceOverrideEnabled"] != "Disabled" || got["BootSourceOverrideMode"] != "UEFI" {
		t.Errorf("after the boot that consumed Once: %v", got)
	}
	cycle()
	if got := m.lastBoot(); got != "none efi=false" {
		t.Errorf("second boot %q: the Once override applied twice", got)
	}

	patch(map[string]string{"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous"})
	if f, _ := m.BootFlags(t.Context()); f != [5]byte{0xe0, 0x08, 0, 0, 0} {
		t.Errorf("Continuous Hdd UEFI flags % x, want e0 08 00 00 00", f)
	}
	for range 2 {
		cycle()
		if got := m.lastBoot(); got != "2 efi=true" {
			t.Errorf("boot %q, want disk", got)
		}
		if got := bootOf(); got["BootSourceOverrideEnabled"] != "Continuous" || got["BootSourceOverrideTarget"] != "Hdd" {
			t.Errorf("Continuous after a boot: %v", got)
		}
	}
	// Only Enabled=Disabled.
	patch(map[string]string{"BootSourceOverrideEnabled": "Disabled"})
	if got := bootOf(); got["BootSourceOverrideEnabled"] != "Disabled" {
		t.Errorf("after Disabled: %v", got)
	}
	if f, _ := m.BootFlags(t.Context()); f[0]&0x80 != 0 {
		t.Errorf("Disabled left the valid bit: % x", f)
	}
	// What IPMI sets, Redfish reads.
	m.SetBootFlags(t.Context(), [5]byte{0xc0, 0x14, 0, 0, 0}) // persistent, legacy, CD
	if got := bootOf(); got["BootSourceOverrideEnabled"] != "Continuous" || got["BootSourceOverrideTarget"] != "Cd" || got["BootSourceOverrideMode"] != "Legacy" {
		t.Errorf("flags set by IPMI read as %v", got)
	}
	// UefiHttp with its URI reads back as such.
	patch(map[string]string{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI", "HttpBootUri": "http://127.0.0.1/boot.efi"})
	if got := bootOf(); got["BootSourceOverrideTarget"] != "UefiHttp" || got["HttpBootUri"] != "http://127.0.0.1/boot.efi" {
		t.Errorf("UefiHttp read as %v", got)
	}
	if f, _ := m.BootFlags(t.Context()); f != [5]byte{0xa0, 0x04, 0, 0, 0} {
		t.Errorf("UefiHttp flags % x: a network boot in UEFI", f)
	}
	patch(map[string]string{"BootSourceOverrideTarget": "Usb", "BootSourceOverrideEnabled": "Once"})
	if got := bootOf(); got["BootSourceOverrideTarget"] != "Usb" {
		t.Errorf("Usb read as %v", got)
	}
	var n int
	for _, k := range b.kinds() {
		if k == events.BMCRedfishBoot {
			n++
		}
	}
	if n != 6 {
		t.Errorf("%d boot events, want 6", n)
	}
}

// TestUefiHttpBoot: a UefiHttp override with its HttpBootUri reaches a
// machine whose firmware does HTTP boot, is consumed by the next boot as
// other Once targets are, and is refused as real BMCs refuse it: not in
// Legacy mode, not with a URI that is not http(s).
func TestUefiHttpBoot(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	m := b.machines[0]
	sys := b.sysPath(0)
	reset := sys + "/Actions/ComputerSystem.Reset"
	patch := func(boot map[string]string) (int, string) {
		t.Helper()
		st, _, body := b.do(t, "PATCH", sys, "basic", map[string]any{"Boot": boot})
		return st, fmt.Sprint(body)
	}
	bootOf := func() map[string]any {
		_, _, s := b.do(t, "GET", sys, "basic", nil)
		return s["Boot"].(map[string]any)
	}
	const uri = "http://127.0.0.1:8080/images/deploy.iso"

	for _, c := range []struct {
		boot map[string]string
		want string
	}{
		// The machine boots Legacy: UefiHttp alone conflicts with it.
		{map[string]string{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideEnabled": "Once", "HttpBootUri": uri}, "PropertyValueConflict"},
		{map[string]string{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideMode": "Legacy"}, "PropertyValueConflict"},
		{map[string]string{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideMode": "UEFI", "HttpBootUri": "ftp://127.0.0.1/deploy.iso"}, "PropertyValueFormatError"},
		{map[string]string{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideMode": "UEFI", "HttpBootUri": "deploy.iso"}, "PropertyValueFormatError"},
		{map[string]string{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideMode": "UEFI", "HttpBootUri": "http:///deploy.iso"}, "PropertyValueFormatError"},
	} {
		if st, body := patch(c.boot); st != 400 || !strings.Contains(body, c.want) {
			t.Errorf("PATCH %v: %d %s, want 400 %s", c.boot, st, body, c.want)
		}
	}
	if f, _ := m.BootFlags(t.Context()); f != ([5]byte{}) {
		t.Errorf("refused PATCHes changed the flags: % x", f)
	}

	if st, body := patch(map[string]string{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI", "HttpBootUri": uri}); st != 200 {
		t.Fatalf("PATCH UefiHttp: %d %s", st, body)
	}
	if got := bootOf(); got["BootSourceOverrideTarget"] != "UefiHttp" || got["HttpBootUri"] != uri || got["BootSourceOverrideMode"] != "UEFI" {
		t.Errorf("UefiHttp read back as %v", got)
	}
	// Mode Legacy under a UefiHttp override is the same conflict.
	if st, body := patch(map[string]string{"BootSourceOverrideMode": "Legacy"}); st != 400 || !strings.Contains(body, "PropertyValueConflict") {
		t.Errorf("PATCH Legacy under UefiHttp: %d %s", st, body)
	}
	b.do(t, "POST", reset, "basic", map[string]string{"ResetType": "On"})
	if got, http := m.lastBoot(), m.lastHTTPBoot(); got != "1 efi=true" || http != uri {
		t.Errorf("boot %q fetching %q, want a UEFI network boot of %s", got, http, uri)
	}
	if got := bootOf(); got["BootSourceOverrideEnabled"] != "Disabled" || got["BootSourceOverrideTarget"] == "UefiHttp" {
		t.Errorf("after the boot that consumed Once: %v", got)
	}
	b.do(t, "POST", reset, "basic", map[string]string{"ResetType": "ForceRestart"})
	if http := m.lastHTTPBoot(); http != "" {
		t.Errorf("second boot fetched %q: the Once override applied twice", http)
	}

	// Another target takes the URI away from the machine.
	patch(map[string]string{"BootSourceOverrideTarget": "UefiHttp", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "UEFI", "HttpBootUri": uri})
	patch(map[string]string{"BootSourceOverrideTarget": "Pxe"})
	b.do(t, "POST", reset, "basic", map[string]string{"ResetType": "ForceRestart"})
	if got, http := m.lastBoot(), m.lastHTTPBoot(); got != "1 efi=true" || http != "" {
		t.Errorf("Pxe after UefiHttp: boot %q fetching %q", got, http)
	}
}

func TestETagIfMatch(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	sys := b.sysPath(0)
	st, hdr, _ := b.do(t, "GET", sys, "basic", nil)
	tag := hdr.Get("ETag")
	if st != 200 || !strings.HasPrefix(tag, `"`) {
		t.Fatalf("GET: %d ETag %q", st, tag)
	}
	body := map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
	st, _, eb := b.do(t, "PATCH", sys, "basic", body, "If-Match", `"0000"`)
	checkError(t, "PATCH with a stale ETag", st, 412, eb)
	if f, _ := b.machines[0].BootFlags(t.Context()); f != ([5]byte{}) {
		t.Errorf("a 412 PATCH changed the flags: % x", f)
	}
	st, hdr2, _ := b.do(t, "PATCH", sys, "basic", body, "If-Match", tag)
	if st != 200 {
		t.Fatalf("PATCH with the current ETag: %d", st)
	}
	if hdr2.Get("ETag") == tag {
		t.Error("the ETag did not change with the resource")
	}
	st, _, eb = b.do(t, "PATCH", sys, "basic", body, "If-Match", tag)
	checkError(t, "PATCH with the ETag before the change", st, 412, eb)
	if st, _, _ := b.do(t, "PATCH", sys, "basic", body); st != 200 {
		t.Errorf("PATCH without If-Match: %d", st)
	}
	// Every resource has an ETag.
	for _, p := range []string{"/redfish/v1/", "/redfish/v1/Systems", sys + "/EthernetInterfaces/NIC0", "/redfish/v1/Managers/node-0", "/redfish/v1/Chassis/node-0/Power"} {
		if _, h, _ := b.do(t, "GET", p, "basic", nil); h.Get("ETag") == "" {
			t.Errorf("%s has no ETag", p)
		}
	}
}

func TestInventoryResources(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	m := b.machines[0]
	sys := b.sysPath(0)
	_, _, s := b.do(t, "GET", sys, "basic", nil)
	if get(s, "ProcessorSummary", "Count") != 2.0 || get(s, "MemorySummary", "TotalSystemMemoryGiB") != 2.0 {
		t.Errorf("summaries: %v %v", s["ProcessorSummary"], s["MemorySummary"])
	}
	mgr := get(s, "Links", "ManagedBy").([]any)[0].(map[string]any)["@odata.id"].(string)
	_, _, nic := b.do(t, "GET", sys+"/EthernetInterfaces/NIC0", "basic", nil)
	if nic["MACAddress"] != m.hw.MACs[0].String() || get(nic, "Status", "State") != "Enabled" || get(nic, "Status", "Health") != "OK" {
		t.Errorf("NIC0: %v", nic)
	}
	_, _, d := b.do(t, "GET", sys+"/Storage/1/Drives/Disk0", "basic", nil)
	if d["CapacityBytes"] != float64(m.hw.DiskBytes) || get(d, "Status", "State") != "Enabled" {
		t.Errorf("drive: %v", d)
	}
	_, _, man := b.do(t, "GET", mgr, "basic", nil)
	if man["FirmwareVersion"] == "" || man["DateTime"] != "2026-01-02T03:04:05+00:00" ||
		get(man, "Links", "ManagerForServers").([]any)[0].(map[string]any)["@odata.id"] != sys {
		t.Errorf("manager: %v", man)
	}
	_, _, th := b.do(t, "GET", "/redfish/v1/Chassis/"+m.hw.UUID+"/Thermal", "basic", nil)
	if temps, _ := th["Temperatures"].([]any); len(temps) != 2 {
		t.Errorf("thermal: %v", th)
	}
	_, _, ch := b.do(t, "GET", "/redfish/v1/Chassis/"+m.hw.UUID, "basic", nil)
	if ch["PowerState"] != "Off" || get(ch, "Links", "ComputerSystems").([]any)[0].(map[string]any)["@odata.id"] != sys {
		t.Errorf("chassis: %v", ch)
	}
	cd := mgr + "/VirtualMedia/Cd"
	if st, _, _ := b.do(t, "POST", cd+"/Actions/VirtualMedia.InsertMedia", "basic", map[string]any{"Image": "http://127.0.0.1/boot.iso", "Inserted": true}); st != 204 {
		t.Fatalf("insert: %d", st)
	}
	_, _, v := b.do(t, "GET", cd, "basic", nil)
	if v["Inserted"] != true || v["Image"] != "http://127.0.0.1/boot.iso" || v["ImageName"] != "boot.iso" {
		t.Errorf("after insert: %v", v)
	}
	st, _, eb := b.do(t, "POST", cd+"/Actions/VirtualMedia.InsertMedia", "basic", map[string]any{"Image": "http://x/y.iso"})
	checkError(t, "insert into a full drive", st, 409, eb)
	if st, _, _ := b.do(t, "POST", cd+"/Actions/VirtualMedia.EjectMedia", "basic", ""); st != 204 {
		t.Fatalf("eject: %d", st)
	}
	_, _, v = b.do(t, "GET", cd, "basic", nil)
	if v["Inserted"] != false || v["Image"] != nil {
		t.Errorf("after eject: %v", v)
	}
}

// FuzzDecodeRequest: whatever the body, a request gets an answer with a
// JSON body (a Redfish error unless it was valid) and never a panic.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}`,
		`{"Boot": {"BootSourceOverrideEnabled": "Disabled"}}`,
		`{"ResetType": "On"}`, `{"Image": "http://x/y.iso"}`, `{"UserName": "admin", "Password": "password"}`,
		`{`, `[]`, `null`, `"x"`, `{"Boot": null}`, `{"Boot": {"HttpBootUri": 7}}`, "\x00\xff",
	} {
		f.Add(s, uint8(0))
	}
	srv, err := New(Config{PlainHTTP: true, Systems: []System{{Machine: newFakeMachine("node-0", 0), Username: testUser, Password: testPass}}})
	if err != nil {
		f.Fatal(err)
	}
	targets := []struct{ method, path string }{
		{"PATCH", "/redfish/v1/Systems/node-0"},
		{"POST", "/redfish/v1/Systems/node-0/Actions/ComputerSystem.Reset"},
		{"POST", "/redfish/v1/Managers/node-0/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"},
		{"POST", "/redfish/v1/Managers/node-0/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia"},
		{"POST", "/redfish/v1/SessionService/Sessions"},
		{"POST", "/redfish/v1/Systems/node-0/Nothing"},
	}
	f.Fuzz(func(t *testing.T, body string, which uint8) {
		tg := targets[int(which)%len(targets)]
		req := httptest.NewRequest(tg.method, tg.path, strings.NewReader(body))
		req.SetBasicAuth(testUser, testPass)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 400 {
			var eb errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || len(eb.Error.ExtendedInfo) == 0 {
				t.Fatalf("%d without a Redfish error body: %q", rec.Code, rec.Body.String())
			}
		}
		if rec.Code == 500 {
			t.Fatalf("internal error: %s", rec.Body.String())
		}
	})
}
