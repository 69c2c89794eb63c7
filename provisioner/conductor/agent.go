package conductor

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"slices"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// lookupStates are the states in which a ramdisk may look its node up
// (Ironic's LOOKUP_ALLOWED_STATES).
var lookupStates = []provisioner.ProvisionState{provisioner.StateDeploying, provisioner.StateWaitCallback,
	provisioner.StateCleaning, provisioner.StateCleanWait, provisioner.StateInspecting, provisioner.StateInspectWait}

// lookupAddressKey is the driver_internal_info key holding the address
// the node's ramdisk looked it up from (a metalbed key: the agent's
// callback_url must point back there).
const lookupAddressKey = "agent_lookup_address"

// Lookup finds the node a ramdisk runs on by its MACs (or UUID) while the
// node expects a ramdisk; it returns nil when none does. The first lookup
// mints the agent token and returns it, and records from, the address it
// came from (an IP; "" records nothing); later lookups get "******".
func (c *Conductor) Lookup(ctx context.Context, macs []string, nodeUUID, from string) (*provisioner.Node, string, error) {
	var n *provisioner.Node
	if nodeUUID != "" {
		got, err := c.st.Node(ctx, nodeUUID)
		if err != nil {
			return nil, "", nil
		}
		n = got
	} else {
		for _, mac := range macs {
			ports, err := c.st.Ports(ctx, store.PortFilter{Address: mac})
			if err != nil {
				return nil, "", err
			}
			if len(ports) == 1 {
				got, err := c.st.Node(ctx, ports[0].NodeUUID)
				if err == nil {
					n = got
					break
				}
			}
		}
	}
	if n == nil || !slices.Contains(lookupStates, n.ProvisionState) {
		return nil, "", nil
	}
	_, minted := n.DriverInternalInfo["agent_secret_token"]
	_, pinned := n.DriverInternalInfo[lookupAddressKey]
	if minted && (pinned || from == "") {
		return n, "******", nil
	}
	var raw [32]byte
	rand.Read(raw[:])
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	n, err := c.UpdateNode(ctx, n.UUID, func(n *provisioner.Node) error {
		if n.DriverInternalInfo == nil {
			n.DriverInternalInfo = map[string]any{}
		}
		// The first lookup pins the address, also when the token was
		// pregenerated (virtual media) and is not handed out.
		if _, ok := n.DriverInternalInfo[lookupAddressKey]; !ok && from != "" {
			n.DriverInternalInfo[lookupAddressKey] = from
		}
		if _, ok := n.DriverInternalInfo["agent_secret_token"]; ok {
			token = "******" // pregenerated, or another lookup won the race
			return nil
		}
		n.DriverInternalInfo["agent_secret_token"] = token
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return n, token, nil
}

// Heartbeat checks the agent's callback URL and token and records the
// URL and the heartbeat time. Acting on heartbeats (continuing deploys and
// cleaning) belongs to the deploy flows.
func (c *Conductor) Heartbeat(ctx context.Context, ident, token, callbackURL, version string) error {
	n, err := c.node(ctx, ident)
	if err != nil {
		return err
	}
	if err := checkCallbackURL(n, callbackURL); err != nil {
		return err
	}
	want, _ := n.DriverInternalInfo["agent_secret_token"].(string)
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(token)) != 1 {
		return refuse(KindInvalid, "Invalid or missing agent token received.")
	}
	// Recording takes the node's lock, waiting (as Ironic's heartbeat
	// does) while a task holds it. What the heartbeat then does depends on
	// the state the node is in now, not on the one read before the wait:
	// a heartbeat that waited out a deploy step finishing into "wait
	// call-back" must resume the node, not leave it to the next regular
	// heartbeat, heartbeat_timeout × 0.3–0.6 later.
	n, err = c.UpdateNode(ctx, n.UUID, func(n *provisioner.Node) error {
		n.DriverInternalInfo["agent_url"] = callbackURL
		n.DriverInternalInfo["agent_version"] = version
		n.DriverInternalInfo["agent_last_heartbeat"] = c.now().Format("2006-01-02T15:04:05.000000")
		return nil
	})
	if err != nil {
		return err
	}
	c.agentHeartbeat(ctx, n)
	return nil
}

// checkCallbackURL refuses a heartbeat whose callback_url differs from the
// agent_url an earlier heartbeat recorded (Ironic's heartbeat API check,
// with its message) or does not point to the address the node was looked
// up from: a caller holding a stolen token cannot redirect the conductor's
// commands elsewhere.
func checkCallbackURL(n *provisioner.Node, callbackURL string) error {
	changed := refuse(KindInvalid, `Detected change in ramdisk provided "callback_url"`)
	if known, ok := n.DriverInternalInfo["agent_url"].(string); ok && known != callbackURL {
		return changed
	}
	from, ok := n.DriverInternalInfo[lookupAddressKey].(string)
	if !ok {
		return nil
	}
	if !sameHost(callbackURL, from) {
		return changed
	}
	return nil
}

// sameHost reports whether rawURL's host is the IP address addr.
func sameHost(rawURL, addr string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return false
	}
	want, err := netip.ParseAddr(addr)
	return err == nil && host.Unmap() == want.Unmap()
}

// agentHeartbeat acts on a recorded heartbeat as Ironic's
// heartbeat_mixin: a node waiting in "wait call-back" whose deploy
// interface is driven by the agent is resumed and handed to the interface
// as a task; so is one in "clean wait" (automated cleaning through the
// agent). A locked node (a previous heartbeat still being handled)
// ignores the heartbeat; the agent heartbeats again.
func (c *Conductor) agentHeartbeat(ctx context.Context, n *provisioner.Node) {
	if !slices.Contains(callbackStates, n.ProvisionState) || n.Maintenance {
		return
	}
	h, err := c.hardware(n)
	if err != nil {
		return
	}
	d, err := h.DeployFor(n)
	if err != nil {
		return
	}
	hb, ok := d.(drivers.AgentHeartbeat)
	if !ok {
		return
	}
	n, err = c.acquire(ctx, n.UUID)
	if err != nil {
		return
	}
	if !slices.Contains(callbackStates, n.ProvisionState) {
		c.release(ctx, n.UUID)
		return
	}
	if err := c.transition(ctx, n, EventResume); err != nil {
		c.release(ctx, n.UUID)
		return
	}
	err = c.spawn(n, "heartbeat", func(ctx context.Context, n *provisioner.Node) {
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("heartbeat panicked", "node", n.UUID, "err", r)
				c.failNode(ctx, n, fmt.Sprintf("Failed to continue deployment of node %s: internal error: %v", n.UUID, r))
			}
		}()
		t, err := c.newTask(ctx, h, n)
		var step drivers.Step
		if err == nil {
			step, err = hb.Heartbeat(ctx, t)
		}
		c.afterStep(ctx, n, step, err, nil)
	})
	if err != nil {
		c.release(ctx, n.UUID)
	}
}

// CheckDeployKey guards the bash-ramdisk callbacks (pass_deploy_info,
// pass_bootloader_install_info): the body's "key" must equal the deploy key
// stored when the deploy started.
func (c *Conductor) CheckDeployKey(ctx context.Context, ident string, args map[string]any) error {
	n, err := c.node(ctx, ident)
	if err != nil {
		return err
	}
	want, _ := n.DriverInternalInfo["deploy_key"].(string)
	got, _ := args["key"].(string)
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		return refuse(KindInvalid, "Deploy key %s does not match with %s", got, maskKey(want))
	}
	return nil
}

// maskKey shows whether a key is expected without showing it.
func maskKey(k string) string {
	if k == "" {
		return "None"
	}
	return "******"
}
