package drivers

import (
	"slices"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
)

// TestAgentInspectInterface: the callback is Ironic's
// get_inspection_callback of the API URL, the ramdisk gets it beside the
// agent's parameters, a bad API URL is refused, and "agent" is enabled
// beside the default "no-inspect" for ipmi and redfish.
func TestAgentInspectInterface(t *testing.T) {
	for api, want := range map[string]string{
		"http://192.0.2.1:6385":      "http://192.0.2.1:6385/v1/continue_inspection",
		"http://192.0.2.1:6385/":     "http://192.0.2.1:6385/v1/continue_inspection",
		"https://ironic.example/v1/": "https://ironic.example/v1/continue_inspection",
	} {
		a, err := NewAgentInspect(api)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.CallbackURL(); got != want {
			t.Errorf("%s: callback %s, want %s", api, got, want)
		}
		p := a.RamdiskParams(&provisioner.Node{UUID: "n1"})
		if p[InspectionCallbackParam] != want || p["ipa-api-url"] == "" || p["ipa-global-request-id"] != "req-n1" {
			t.Errorf("%s: ramdisk params %v", api, p)
		}
	}
	for _, bad := range []string{"", "ftp://h", "192.0.2.1:6385", "http://"} {
		if _, err := NewAgentInspect(bad); err == nil {
			t.Errorf("NewAgentInspect(%q) accepted", bad)
		}
	}

	a, _ := NewAgentInspect("http://192.0.2.1:6385")
	ins := map[string]InspectInterface{AgentInspectName: a}
	ih, err := NewIPMI(IPMIConfig{Inspect: ins})
	if err != nil {
		t.Fatal(err)
	}
	rh, err := NewRedfish(RedfishConfig{Inspect: ins})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*HardwareType{ih, rh} {
		if got := h.Enabled[RoleInspect]; !slices.Equal(got, []string{"no-inspect", "agent"}) {
			t.Errorf("%s enables inspect %v", h.Name, got)
		}
		if h.Defaults().Inspect != "no-inspect" {
			t.Errorf("%s default inspect %q", h.Name, h.Defaults().Inspect)
		}
		if _, err := h.InspectFor(&provisioner.Node{}); err == nil {
			t.Errorf("%s: no-inspect resolved to an implementation", h.Name)
		}
		if got, err := h.InspectFor(&provisioner.Node{Interfaces: provisioner.Interfaces{Inspect: "agent"}}); err != nil || got != a {
			t.Errorf("%s: agent resolved to %v, %v", h.Name, got, err)
		}
	}
}
