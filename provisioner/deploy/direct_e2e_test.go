package deploy_test

// What only the "direct" deploy interface does end to end: the agent's
// errors, its token, validation, the hard power off.

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/internal/deploytest"
)

func directBed(t testing.TB) *deploytest.Bed {
	return deploytest.NewBed(t, deploytest.Options{Variant: directVariant()})
}

// TestDirectBadChecksum: the agent's write fails its checksum; the node
// fails with Ironic's message carrying the agent's error, and is off.
func TestDirectBadChecksum(t *testing.T) {
	_, whole := images.Get(t)
	b := directBed(t)
	u := deploytest.ServeFiles(t, filepath.Dir(whole.Path))
	uuid, m := b.Enroll("bad0", "boot_mode:bios", false)
	b.SetInstanceInfo(uuid, map[string]any{
		"image_source":   u + "/" + filepath.Base(whole.Path),
		"image_checksum": strings.Repeat("0", 32),
	})
	b.Provision(uuid, "active")
	n := b.WaitState(uuid, "deploy failed")
	le := n.Error()
	if !strings.HasPrefix(le, "Agent returned error for deploy step {'interface': 'deploy', 'step': 'write_image'") ||
		!strings.Contains(le, "on node "+uuid) || !strings.Contains(strings.ToLower(le), "checksum") {
		t.Errorf("last_error %q", le)
	}
	if power := m.PowerState(); power != provisioner.PowerOff {
		t.Errorf("power %s after a failed deploy, want off", power)
	}
}

// TestDirectHeartbeatWrongToken: while the node waits for its agent,
// lookup issues the token once; a heartbeat with another token is refused
// and records nothing; one with the token is accepted and starts the
// deploy, which fails with Ironic's message since no agent answers at its
// URL. The test plays the agent.
func TestDirectHeartbeatWrongToken(t *testing.T) {
	_, whole := images.Get(t)
	b := directBed(t)
	uuid, m := b.Enroll("tok0", "boot_mode:bios", false)
	m.SetFaults(deploytest.Faults{Silent: true})
	b.SetInstanceInfo(uuid, map[string]any{"image_source": whole.Path, "image_checksum": whole.MD5})
	b.Provision(uuid, "active")
	b.WaitState(uuid, "wait call-back")
	node, token := b.Lookup(m.MAC())
	if node != uuid || token == "" || token == "******" {
		t.Fatalf("lookup: node %q token %q", node, token)
	}
	if _, again := b.Lookup(m.MAC()); again != "******" {
		t.Errorf("second lookup got token %q, want ******", again)
	}
	err := b.Heartbeat(uuid, "not-the-token", "http://127.0.0.1:1")
	if he, ok := deploytest.IsHTTPError(err, http.StatusBadRequest); !ok || !strings.Contains(he.Body, "Invalid or missing agent token received.") {
		t.Fatalf("heartbeat with a wrong token: %v", err)
	}
	if n := b.Node(uuid); n.ProvisionState != "wait call-back" || n.DriverInternalInfo["agent_url"] != nil {
		t.Errorf("refused heartbeat changed the node: %s %v", n.ProvisionState, n.DriverInternalInfo["agent_url"])
	}
	// Port 1 on loopback: nothing listens, the write_image call fails.
	if err := b.Heartbeat(uuid, token, "http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	n := b.WaitState(uuid, "deploy failed")
	if le := n.Error(); !strings.HasPrefix(le, "Deploy failed for instance None. Error: Agent command deploy.get_deploy_steps failed") {
		t.Errorf("last_error %q", le)
	}
}

// TestDirectValidate: the deploy interface's checks as GET …/validate
// shows them.
func TestDirectValidate(t *testing.T) {
	b := directBed(t)
	uuid, _ := b.Enroll("v0", "boot_mode:bios", false)
	deployResult := func() (bool, string) {
		var v struct {
			Deploy struct {
				Result bool    `json:"result"`
				Reason *string `json:"reason"`
			} `json:"deploy"`
		}
		b.MustCall("GET", "/v1/nodes/"+uuid+"/validate", nil, &v)
		r := ""
		if v.Deploy.Reason != nil {
			r = *v.Deploy.Reason
		}
		return v.Deploy.Result, r
	}
	if ok, r := deployResult(); ok || !strings.Contains(r, "Missing are: ['image_source']") {
		t.Errorf("no image_source: %t %q", ok, r)
	}
	b.SetInstanceInfo(uuid, map[string]any{"image_source": "http://127.0.0.1:1/img"})
	if ok, r := deployResult(); ok || !strings.Contains(r, "Missing are: ['image_checksum']") {
		t.Errorf("HTTP source without checksum: %t %q", ok, r)
	}
	b.SetInstanceInfo(uuid, map[string]any{"image_checksum": strings.Repeat("a", 32), "image_type": "partition"})
	if ok, r := deployResult(); ok || !strings.Contains(r, "Missing are: ['root_gb']") {
		t.Errorf("partition image without root_gb: %t %q", ok, r)
	}
	b.SetInstanceInfo(uuid, map[string]any{"root_gb": 1})
	if ok, r := deployResult(); !ok {
		t.Errorf("complete instance_info: %t %q", ok, r)
	}
}

// TestDirectHardPowerOff: the agent's soft power off does not take; after
// the BMC polls the conductor powers the node off hard and still boots the
// instance.
func TestDirectHardPowerOff(t *testing.T) {
	_, whole := images.Get(t)
	b := directBed(t)
	uuid, m := b.Enroll("hard0", "boot_mode:bios", false)
	m.SetFaults(deploytest.Faults{DeafToPowerOff: true})
	b.SetInstanceInfo(uuid, map[string]any{"image_source": whole.Path, "image_checksum": whole.MD5})
	b.Provision(uuid, "active")
	b.WaitState(uuid, "active")
	if details := b.MilestoneDetails(uuid); !strings.Contains(details, "conductor.power_off: hard") {
		t.Errorf("no hard power off:\n%s", details)
	}
	lastBootIsDisk(t, m)
}
