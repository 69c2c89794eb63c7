package ramdisk

import (
	"strings"
	"testing"
	"time"
)

// The command line Ironic 21.4's ipxe_config.template writes for an agent
// deploy (kernel parameters from [pxe]kernel_append_params and the
// template's own), with pxelinux's BOOTIF.
const ironicAgentCmdline = "rootfstype=ramfs nofb nomodeset vga=normal ipa-api-url=http://127.0.0.1:6385 " +
	"ipa-global-request-id=req-1b5e1c2e-0000-4000-8000-000000000000 ipa-insecure=1 BOOTIF=01-52-54-00-12-34-56 " +
	"ipa-lookup-timeout=120 ipa-lookup-interval=2 coreos.configdrive=0"

func TestParseAgentParams(t *testing.T) {
	p, err := ParseCmdline(ironicAgentCmdline)
	if err != nil {
		t.Fatal(err)
	}
	if !p.AgentMode() {
		t.Fatal("ipa-api-url did not select agent mode")
	}
	a, err := p.ParseAgentParams()
	if err != nil {
		t.Fatal(err)
	}
	if a.APIURL != "http://127.0.0.1:6385" || !a.Insecure || a.GlobalRequestID == "" || a.LookupTimeout != 120*time.Second || a.LookupInterval != 2*time.Second {
		t.Errorf("%+v", a)
	}
	if p.BootIF.String() != "52:54:00:12:34:56" {
		t.Errorf("BOOTIF %v", p.BootIF)
	}
	insp, _ := ParseCmdline(ironicAgentCmdline + " ipa-inspection-callback-url=http://127.0.0.1:6385/v1/continue_inspection")
	if a, err := insp.ParseAgentParams(); err != nil || a.InspectionCallbackURL != "http://127.0.0.1:6385/v1/continue_inspection" {
		t.Errorf("inspection callback: %+v, %v", a, err)
	}
	iscsi, _ := ParseCmdline("deployment_id=x deployment_key=k iscsi_target_iqn=i ironic_api_url=http://h")
	if iscsi.AgentMode() {
		t.Error("an iSCSI command line selected agent mode")
	}
	for _, bad := range []string{"ipa-api-url=", "ipa-api-url=ftp://h", "ipa-api-url=http://h ipa-insecure=maybe",
		"ipa-api-url=http://h ipa-lookup-timeout=-1", "ipa-api-url=http://h ipa-listen-port=70000", "ipa-api-url=http://h ipa-ironic-api-version=1",
		"ipa-api-url=http://h ipa-inspection-callback-url=mdns"} {
		p, _ := ParseCmdline(bad)
		if _, err := p.ParseAgentParams(); err == nil || !strings.Contains(err.Error(), "ipa-") {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}
