package redfish

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
)

// attrs GETs a Bios or Bios/Settings and returns its Attributes.
func (b *bed) attrs(t *testing.T, path string) map[string]any {
	t.Helper()
	st, _, body := b.do(t, "GET", path, "basic", nil)
	if st != 200 {
		t.Fatalf("GET %s: %d %v", path, st, body)
	}
	a, ok := body["Attributes"].(map[string]any)
	if !ok {
		t.Fatalf("GET %s: no Attributes object: %v", path, body)
	}
	return a
}

// post powers m on, or resets it when it is on: the firmware's POST.
func post(t *testing.T, m *fakeMachine) {
	t.Helper()
	a := bmcemu.PowerUp
	if on, _ := m.PowerState(t.Context()); on {
		a = bmcemu.HardReset
	}
	if err := m.Control(t.Context(), a); err != nil {
		t.Fatal(err)
	}
}

// details are the Details of the events of kind recorded so far.
func (b *bed) details(kind events.Kind) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.events {
		if e.Kind == kind {
			out = append(out, e.Detail)
		}
	}
	return out
}

// relatedProperties are the RelatedProperties of an error body's messages.
func relatedProperties(body map[string]any) []string {
	var out []string
	info, _ := get(body, "error", "@Message.ExtendedInfo").([]any)
	for _, m := range info {
		rp, _ := m.(map[string]any)["RelatedProperties"].([]any)
		for _, p := range rp {
			out = append(out, fmt.Sprint(p))
		}
	}
	return out
}

func TestBiosResource(t *testing.T) {
	for _, uefi := range []bool{false, true} {
		b := startBed(t, bedOptions{plain: true, uefi: uefi})
		sys := b.sysPath(0)
		_, _, cs := b.do(t, "GET", sys, "basic", nil)
		if get(cs, "Bios", "@odata.id") != sys+"/Bios" || get(cs, "SecureBoot", "@odata.id") != sys+"/SecureBoot" {
			t.Errorf("ComputerSystem links Bios %v, SecureBoot %v", get(cs, "Bios"), get(cs, "SecureBoot"))
		}
		st, hdr, bios := b.do(t, "GET", sys+"/Bios", "basic", nil)
		if st != 200 || hdr.Get("ETag") == "" {
			t.Fatalf("GET Bios: %d, ETag %q", st, hdr.Get("ETag"))
		}
		wantMode := map[bool]string{false: "Bios", true: "Uefi"}[uefi]
		if v := get(bios, "Attributes", "BootMode"); v != wantMode {
			t.Errorf("uefi=%v: BootMode %v, want %s", uefi, v, wantMode)
		}
		if bios["@odata.type"] != "#Bios.v1_1_0.Bios" || bios["AttributeRegistry"] != biosRegistryID {
			t.Errorf("Bios header: %v", bios)
		}
		if get(bios, "@Redfish.Settings", "SettingsObject", "@odata.id") != sys+"/Bios/Settings" {
			t.Errorf("@Redfish.Settings: %v", bios["@Redfish.Settings"])
		}
		if at, _ := get(bios, "@Redfish.Settings", "SupportedApplyTimes").([]any); !slices.Contains(at, any("OnReset")) {
			t.Errorf("SupportedApplyTimes %v lacks OnReset", at)
		}
		for act, target := range map[string]string{"#Bios.ResetBios": "/Bios/Actions/Bios.ResetBios", "#Bios.ChangePassword": "/Bios/Actions/Bios.ChangePassword"} {
			if get(bios, "Actions", act, "target") != sys+target {
				t.Errorf("action %s: %v", act, get(bios, "Actions", act))
			}
		}
		// Attributes in effect are not PATCHed directly.
		st, _, body := b.do(t, "PATCH", sys+"/Bios", "basic", map[string]any{"Attributes": map[string]any{"ProcTurboMode": "Disabled"}})
		checkError(t, "PATCH Bios", st, 405, body)
	}
}

func TestBiosSettingsAppliedAtNextBoot(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	m := b.machines[0]
	sys := b.sysPath(0)
	before := b.attrs(t, sys+"/Bios")
	if len(b.attrs(t, sys+"/Bios/Settings")) != 0 {
		t.Fatal("Settings not empty at start")
	}
	change := map[string]any{"ProcTurboMode": "Disabled", "PxeRetryCount": 5, "OsWatchdogTimer": true, "AssetTag": "rack-7", "SriovGlobalEnable": "Enabled"}
	body := map[string]any{"Attributes": change,
		"@Redfish.SettingsApplyTime": map[string]any{"@odata.type": "#Settings.v1_0_0.PreferredApplyTime", "ApplyTime": "OnReset"}}
	st, _, resp := b.do(t, "PATCH", sys+"/Bios/Settings", "basic", body)
	if st != 200 {
		t.Fatalf("PATCH Settings: %d %v", st, resp)
	}
	want := map[string]any{"ProcTurboMode": "Disabled", "PxeRetryCount": 5.0, "OsWatchdogTimer": true, "AssetTag": "rack-7", "SriovGlobalEnable": "Enabled"}
	if got := b.attrs(t, sys+"/Bios/Settings"); !reflect.DeepEqual(got, want) {
		t.Errorf("Settings after PATCH: %v, want %v", got, want)
	}
	// A later PATCH adds to what is staged.
	if st, _, resp := b.do(t, "PATCH", sys+"/Bios/Settings", "basic", map[string]any{"Attributes": map[string]any{"EmbeddedSata": "RaidMode"}}); st != 200 {
		t.Fatalf("second PATCH: %d %v", st, resp)
	}
	want["EmbeddedSata"] = "RaidMode"
	if got := b.attrs(t, sys+"/Bios/Settings"); !reflect.DeepEqual(got, want) {
		t.Errorf("Settings after the second PATCH: %v, want %v", got, want)
	}
	if got := b.attrs(t, sys+"/Bios"); !reflect.DeepEqual(got, before) {
		t.Errorf("Bios changed before a boot: %v", got)
	}
	_, _, bios := b.do(t, "GET", sys+"/Bios", "basic", nil)
	if get(bios, "@Redfish.Settings", "Time") != nil {
		t.Errorf("@Redfish.Settings Time before anything was applied: %v", bios["@Redfish.Settings"])
	}

	post(t, m) // power-on: POST applies the staged settings
	after := b.attrs(t, sys+"/Bios")
	for k, v := range want {
		if after[k] != v {
			t.Errorf("after power-on: %s = %v, want %v", k, after[k], v)
		}
	}
	if after["BootMode"] != before["BootMode"] {
		t.Errorf("BootMode changed: %v", after["BootMode"])
	}
	if got := b.attrs(t, sys+"/Bios/Settings"); len(got) != 0 {
		t.Errorf("Settings not empty after the boot: %v", got)
	}
	_, _, bios = b.do(t, "GET", sys+"/Bios", "basic", nil)
	if get(bios, "@Redfish.Settings", "Time") == nil {
		t.Errorf("@Redfish.Settings has no Time after the application: %v", bios["@Redfish.Settings"])
	}

	// A power-off applies nothing; the next reset does.
	if st, _, resp := b.do(t, "PATCH", sys+"/Bios/Settings", "basic", map[string]any{"Attributes": map[string]any{"ProcTurboMode": "Enabled"}}); st != 200 {
		t.Fatalf("PATCH: %d %v", st, resp)
	}
	if err := m.Control(t.Context(), bmcemu.PowerDown); err != nil {
		t.Fatal(err)
	}
	if got := b.attrs(t, sys+"/Bios")["ProcTurboMode"]; got != "Disabled" {
		t.Errorf("a power-off applied ProcTurboMode: %v", got)
	}
	post(t, m)
	post(t, m) // a reset with nothing staged changes nothing
	if got := b.attrs(t, sys+"/Bios")["ProcTurboMode"]; got != "Enabled" {
		t.Errorf("ProcTurboMode %v after the next power-on", got)
	}
	d := b.details(events.BMCRedfishBios)
	if len(d) != 5 || !strings.HasPrefix(d[0], "staged ") || !strings.HasPrefix(d[2], "applied ") ||
		!strings.Contains(d[2], "EmbeddedSata=RaidMode") || !strings.HasPrefix(d[4], "applied ProcTurboMode=Enabled") {
		t.Errorf("bios events: %q", d)
	}
}

func TestBiosResetBios(t *testing.T) {
	b := startBed(t, bedOptions{plain: true, uefi: true})
	m := b.machines[0]
	sys := b.sysPath(0)
	defaults := b.attrs(t, sys+"/Bios")
	b.do(t, "PATCH", sys+"/Bios/Settings", "basic", map[string]any{"Attributes": map[string]any{"ProcTurboMode": "Disabled", "NicBoot1": "Disabled", "PxeRetryCount": 0}})
	post(t, m)
	if got := b.attrs(t, sys+"/Bios")["NicBoot1"]; got != "Disabled" {
		t.Fatalf("NicBoot1 %v after the boot", got)
	}
	// Something staged is replaced by the defaults.
	b.do(t, "PATCH", sys+"/Bios/Settings", "basic", map[string]any{"Attributes": map[string]any{"AssetTag": "x"}})
	st, _, body := b.do(t, "POST", sys+"/Bios/Actions/Bios.ResetBios", "basic", nil)
	if st != 204 {
		t.Fatalf("ResetBios: %d %v", st, body)
	}
	pending := b.attrs(t, sys+"/Bios/Settings")
	for _, a := range biosAttributes {
		_, staged := pending[a.name]
		if staged == a.readOnly {
			t.Errorf("after ResetBios %s staged=%v (read-only %v)", a.name, staged, a.readOnly)
		}
	}
	if pending["AssetTag"] != "" || pending["NicBoot1"] != "NetworkBoot" {
		t.Errorf("ResetBios staged %v", pending)
	}
	if got := b.attrs(t, sys+"/Bios")["NicBoot1"]; got != "Disabled" {
		t.Errorf("ResetBios changed the attributes before a boot: NicBoot1 %v", got)
	}
	post(t, m)
	if got := b.attrs(t, sys+"/Bios"); !reflect.DeepEqual(got, defaults) {
		t.Errorf("after ResetBios and a reset: %v, want %v", got, defaults)
	}
	// sushy's retry sends an empty object.
	if st, _, body := b.do(t, "POST", sys+"/Bios/Actions/Bios.ResetBios", "basic", map[string]any{}); st != 204 {
		t.Errorf("ResetBios with {}: %d %v", st, body)
	}
	if d := b.details(events.BMCRedfishBios); !slices.Contains(d, "reset to defaults staged for the next reset") {
		t.Errorf("bios events: %q", d)
	}
}

func TestBiosSettingsValidation(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	sys := b.sysPath(0)
	for _, tc := range []struct {
		name    string
		body    any
		related []string // RelatedProperties of the answer; nil: not checked
	}{
		{"unknown attribute", `{"Attributes":{"NoSuchThing":"Enabled"}}`, []string{"#/Attributes/NoSuchThing"}},
		{"enumeration not a string", `{"Attributes":{"ProcTurboMode":1}}`, []string{"#/Attributes/ProcTurboMode"}},
		{"value not in the list", `{"Attributes":{"ProcTurboMode":"Sometimes"}}`, []string{"#/Attributes/ProcTurboMode"}},
		{"integer as a string", `{"Attributes":{"PxeRetryCount":"5"}}`, []string{"#/Attributes/PxeRetryCount"}},
		{"integer with a fraction", `{"Attributes":{"PxeRetryCount":2.5}}`, []string{"#/Attributes/PxeRetryCount"}},
		{"integer above its bound", `{"Attributes":{"PxeRetryCount":11}}`, []string{"#/Attributes/PxeRetryCount"}},
		{"integer below its bound", `{"Attributes":{"PxeRetryCount":-1}}`, []string{"#/Attributes/PxeRetryCount"}},
		{"boolean as a string", `{"Attributes":{"OsWatchdogTimer":"true"}}`, []string{"#/Attributes/OsWatchdogTimer"}},
		{"string null", `{"Attributes":{"AssetTag":null}}`, []string{"#/Attributes/AssetTag"}},
		{"string too long", `{"Attributes":{"AssetTag":"` + strings.Repeat("x", 33) + `"}}`, []string{"#/Attributes/AssetTag"}},
		{"read-only BootMode", `{"Attributes":{"BootMode":"Uefi"}}`, []string{"#/Attributes/BootMode"}},
		{"read-only SystemBiosVersion", `{"Attributes":{"SystemBiosVersion":"2"}}`, []string{"#/Attributes/SystemBiosVersion"}},
		{"good and bad together", `{"Attributes":{"ProcTurboMode":"Disabled","LogicalProc":"Off","NicBoot2":"x"}}`, []string{"#/Attributes/LogicalProc", "#/Attributes/NicBoot2"}},
		{"no Attributes", `{}`, nil},
		{"Attributes not an object", `{"Attributes":["ProcTurboMode"]}`, nil},
		{"apply time not supported", `{"Attributes":{"ProcTurboMode":"Disabled"},"@Redfish.SettingsApplyTime":{"ApplyTime":"Immediate"}}`, nil},
		{"unknown property", `{"Attributes":{},"Oem":{}}`, nil},
		{"malformed", `{"Attributes":`, nil},
	} {
		st, _, body := b.do(t, "PATCH", sys+"/Bios/Settings", "basic", tc.body)
		checkError(t, tc.name, st, 400, body)
		if got := relatedProperties(body); tc.related != nil && !reflect.DeepEqual(got, tc.related) {
			t.Errorf("%s: RelatedProperties %v, want %v", tc.name, got, tc.related)
		}
		if got := b.attrs(t, sys+"/Bios/Settings"); len(got) != 0 {
			t.Errorf("%s: staged %v", tc.name, got)
		}
	}
	if d := b.details(events.BMCRedfishBios); len(d) != 0 {
		t.Errorf("refused PATCHes recorded %q", d)
	}
}

func TestBiosSettingsIfMatch(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	path := b.sysPath(0) + "/Bios/Settings"
	_, hdr, _ := b.do(t, "GET", path, "basic", nil)
	tag := hdr.Get("ETag")
	if tag == "" {
		t.Fatal("Settings has no ETag")
	}
	st, _, body := b.do(t, "PATCH", path, "basic", map[string]any{"Attributes": map[string]any{"ProcTurboMode": "Disabled"}}, "If-Match", `"stale"`)
	checkError(t, "wrong If-Match", st, 412, body)
	if got := b.attrs(t, path); len(got) != 0 {
		t.Errorf("a 412 staged %v", got)
	}
	st, hdr, body = b.do(t, "PATCH", path, "basic", map[string]any{"Attributes": map[string]any{"ProcTurboMode": "Disabled"}}, "If-Match", tag)
	if st != 200 || hdr.Get("ETag") == tag {
		t.Fatalf("PATCH with the current ETag: %d, ETag %q (was %q) %v", st, hdr.Get("ETag"), tag, body)
	}
	// The first ETag is stale now.
	st, _, body = b.do(t, "PATCH", path, "basic", map[string]any{"Attributes": map[string]any{"LogicalProc": "Disabled"}}, "If-Match", tag)
	checkError(t, "stale If-Match", st, 412, body)
	if got := b.attrs(t, path); len(got) != 1 {
		t.Errorf("staged %v, want ProcTurboMode only", got)
	}
	if st, _, body := b.do(t, "PATCH", path, "basic", map[string]any{"Attributes": map[string]any{"LogicalProc": "Disabled"}}, "If-Match", "*"); st != 200 {
		t.Errorf("If-Match *: %d %v", st, body)
	}
}

func TestBiosChangePassword(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	target := b.sysPath(0) + "/Bios/Actions/Bios.ChangePassword"
	st, _, body := b.do(t, "POST", target, "basic", map[string]string{"PasswordName": "AdminPassword", "OldPassword": "", "NewPassword": "s3cret"})
	if st != 204 {
		t.Fatalf("set the admin password: %d %v", st, body)
	}
	for _, tc := range []struct {
		name string
		req  map[string]string
	}{
		{"wrong old password", map[string]string{"PasswordName": "AdminPassword", "OldPassword": "", "NewPassword": "x"}},
		{"unknown password", map[string]string{"PasswordName": "RootPassword", "OldPassword": "", "NewPassword": "x"}},
		{"too long", map[string]string{"PasswordName": "UserPassword", "OldPassword": "", "NewPassword": strings.Repeat("x", 33)}},
		{"no NewPassword", map[string]string{"PasswordName": "UserPassword", "OldPassword": ""}},
	} {
		st, _, body := b.do(t, "POST", target, "basic", tc.req)
		checkError(t, tc.name, st, 400, body)
	}
	if st, _, body := b.do(t, "POST", target, "basic", map[string]string{"PasswordName": "AdminPassword", "OldPassword": "s3cret", "NewPassword": ""}); st != 204 {
		t.Errorf("clear the admin password: %d %v", st, body)
	}
	for _, d := range b.details(events.BMCRedfishBios) {
		if strings.Contains(d, "s3cret") {
			t.Errorf("a password was recorded: %q", d)
		}
	}
}

// TestBiosRegistry checks the registry is served where its file says and
// agrees with every machine's Attributes.
func TestBiosRegistry(t *testing.T) {
	b := startBed(t, bedOptions{plain: true, machines: 2})
	_, _, root := b.do(t, "GET", "/redfish/v1/", "", nil)
	regs, _ := get(root, "Registries", "@odata.id").(string)
	if regs != "/redfish/v1/Registries" {
		t.Fatalf("ServiceRoot Registries %v", root["Registries"])
	}
	st, _, coll := b.do(t, "GET", regs, "basic", nil)
	members, _ := coll["Members"].([]any)
	if st != 200 || len(members) != 1 {
		t.Fatalf("Registries: %d %v", st, coll)
	}
	filePath, _ := get(members[0].(map[string]any), "@odata.id").(string)
	_, _, file := b.do(t, "GET", filePath, "basic", nil)
	locs, _ := file["Location"].([]any)
	if file["Id"] != biosRegistryID || len(locs) != 1 || get(locs[0].(map[string]any), "Language") != "en" {
		t.Fatalf("registry file: %v", file)
	}
	uri, _ := get(locs[0].(map[string]any), "Uri").(string)
	st, _, reg := b.do(t, "GET", uri, "basic", nil)
	if st != 200 || reg["@odata.type"] != "#AttributeRegistry.v1_3_5.AttributeRegistry" || reg["Id"] != biosRegistryID || reg["Language"] != "en" {
		t.Fatalf("registry at %s: %d %v", uri, st, reg)
	}
	entries, _ := get(reg, "RegistryEntries", "Attributes").([]any)
	byName := map[string]map[string]any{}
	for _, e := range entries {
		em := e.(map[string]any)
		byName[em["AttributeName"].(string)] = em
	}
	for i := range b.machines {
		attrs := b.attrs(t, b.sysPath(i)+"/Bios")
		if len(attrs) != len(byName) {
			t.Errorf("machine %d: %d attributes, registry %d", i, len(attrs), len(byName))
		}
		for name, v := range attrs {
			e, ok := byName[name]
			if !ok {
				t.Errorf("attribute %s is not in the registry", name)
				continue
			}
			if err := registryAdmits(e, v); err != nil {
				t.Errorf("attribute %s = %v: %v", name, v, err)
			}
			if def, ok := e["DefaultValue"]; ok && def != v {
				t.Errorf("attribute %s = %v on a new machine, registry default %v", name, v, def)
			}
			if _, ok := e["DefaultValue"]; !ok && e["ReadOnly"] != true {
				t.Errorf("writable attribute %s has no DefaultValue for ResetBios", name)
			}
		}
	}
	for _, p := range []string{regs + "/Base.1.8", regs + "/" + biosRegistryID + "/other.json"} {
		st, _, body := b.do(t, "GET", p, "basic", nil)
		checkError(t, "GET "+p, st, 404, body)
	}
	st, _, body := b.do(t, "GET", regs, "", nil)
	checkError(t, "Registries without credentials", st, 401, body)
}

// registryAdmits checks a value against its registry entry as a client
// would, from the JSON alone.
func registryAdmits(e map[string]any, v any) error {
	switch e["Type"] {
	case "Enumeration":
		vals, _ := e["Value"].([]any)
		for _, x := range vals {
			if x.(map[string]any)["ValueName"] == v {
				return nil
			}
		}
		return fmt.Errorf("not among %v", vals)
	case "Integer":
		n, ok := v.(float64)
		if !ok || n < e["LowerBound"].(float64) || n > e["UpperBound"].(float64) {
			return fmt.Errorf("not an integer in [%v, %v]", e["LowerBound"], e["UpperBound"])
		}
	case "Boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("not a boolean")
		}
	case "String":
		s, ok := v.(string)
		if !ok || float64(len(s)) > e["MaxLength"].(float64) {
			return fmt.Errorf("not a string of at most %v characters", e["MaxLength"])
		}
	default:
		return fmt.Errorf("type %v", e["Type"])
	}
	return nil
}

func TestSecureBootLegacy(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	path := b.sysPath(0) + "/SecureBoot"
	st, _, sb := b.do(t, "GET", path, "basic", nil)
	if st != 200 || sb["SecureBootEnable"] != false || sb["SecureBootCurrentBoot"] != "Disabled" || sb["@odata.type"] != "#SecureBoot.v1_1_0.SecureBoot" {
		t.Fatalf("SecureBoot of a legacy machine: %d %v", st, sb)
	}
	st, _, body := b.do(t, "PATCH", path, "basic", map[string]any{"SecureBootEnable": true})
	checkError(t, "enable on legacy BIOS", st, 400, body)
	if got := relatedProperties(body); !reflect.DeepEqual(got, []string{"#/SecureBootEnable"}) {
		t.Errorf("RelatedProperties %v", got)
	}
	if _, _, sb := b.do(t, "GET", path, "basic", nil); sb["SecureBootEnable"] != false {
		t.Errorf("a refused PATCH set SecureBootEnable: %v", sb)
	}
	if st, _, body := b.do(t, "PATCH", path, "basic", map[string]any{"SecureBootEnable": false}); st != 200 {
		t.Errorf("disable on legacy BIOS: %d %v", st, body)
	}
}

func TestSecureBootUEFI(t *testing.T) {
	b := startBed(t, bedOptions{plain: true, uefi: true})
	m := b.machines[0]
	path := b.sysPath(0) + "/SecureBoot"
	sbGet := func() map[string]any {
		t.Helper()
		_, _, sb := b.do(t, "GET", path, "basic", nil)
		return sb
	}
	post(t, m)
	if sb := sbGet(); sb["SecureBootEnable"] != false || sb["SecureBootCurrentBoot"] != "Disabled" || sb["SecureBootMode"] != "UserMode" {
		t.Fatalf("factory state: %v", sb)
	}
	_, hdr, _ := b.do(t, "GET", path, "basic", nil)
	st, _, body := b.do(t, "PATCH", path, "basic", map[string]any{"SecureBootEnable": true}, "If-Match", `"stale"`)
	checkError(t, "stale If-Match", st, 412, body)
	st, _, body = b.do(t, "PATCH", path, "basic", map[string]any{"SecureBootEnable": true}, "If-Match", hdr.Get("ETag"))
	if st != 200 || body["SecureBootEnable"] != true {
		t.Fatalf("enable: %d %v", st, body)
	}
	if sb := sbGet(); sb["SecureBootCurrentBoot"] != "Disabled" {
		t.Errorf("the running boot changed at once: %v", sb)
	}
	post(t, m)
	if sb := sbGet(); sb["SecureBootCurrentBoot"] != "Enabled" {
		t.Errorf("after the reset: %v", sb)
	}
	for _, tc := range []struct {
		name string
		body any
	}{
		{"SecureBootMode is read-only", map[string]any{"SecureBootMode": "SetupMode"}},
		{"SecureBootCurrentBoot is read-only", map[string]any{"SecureBootCurrentBoot": "Disabled"}},
		{"SecureBootEnable not a boolean", map[string]any{"SecureBootEnable": "true"}},
	} {
		st, _, body := b.do(t, "PATCH", path, "basic", tc.body)
		checkError(t, tc.name, st, 400, body)
	}

	target := path + "/Actions/SecureBoot.ResetKeys"
	_, _, sb := b.do(t, "GET", path, "basic", nil)
	if get(sb, "Actions", "#SecureBoot.ResetKeys", "target") != target {
		t.Fatalf("ResetKeys action: %v", sb["Actions"])
	}
	for _, tc := range []struct {
		reset, mode, afterBoot string
	}{
		{"DeletePK", "SetupMode", "Disabled"},
		{"ResetAllKeysToDefault", "UserMode", "Enabled"},
		{"DeleteAllKeys", "SetupMode", "Disabled"},
	} {
		if st, _, body := b.do(t, "POST", target, "basic", map[string]string{"ResetKeysType": tc.reset}); st != 204 {
			t.Fatalf("%s: %d %v", tc.reset, st, body)
		}
		if sb := sbGet(); sb["SecureBootMode"] != tc.mode {
			t.Errorf("%s: SecureBootMode %v, want %s", tc.reset, sb["SecureBootMode"], tc.mode)
		}
		post(t, m)
		if sb := sbGet(); sb["SecureBootCurrentBoot"] != tc.afterBoot || sb["SecureBootEnable"] != true {
			t.Errorf("%s then a reset: %v", tc.reset, sb)
		}
	}
	st, _, body = b.do(t, "POST", target, "basic", map[string]string{"ResetKeysType": "DeleteKEK"})
	checkError(t, "unknown ResetKeysType", st, 400, body)
	st, _, body = b.do(t, "POST", target, "basic", map[string]string{})
	checkError(t, "no ResetKeysType", st, 400, body)

	d := b.details(events.BMCRedfishSecureBoot)
	for _, w := range []string{"SecureBootEnable Enabled for the next boot", "SecureBootCurrentBoot Enabled", "ResetKeys DeletePK: SetupMode", "SecureBootCurrentBoot Disabled"} {
		if !slices.Contains(d, w) {
			t.Errorf("no secure boot event %q in %q", w, d)
		}
	}
}
