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
	if err := checkHeartbeat(n, token, callbackURL); err != nil {
		return err
	}
	// The heartbeat takes the node's lock, waiting (as Ironic's heartbeat
	// does) while a task holds it, and keeps it from recording to
	// resuming: what it does depends on the state the node is in now, not
	// on the one read before the wait (a heartbeat that waited out a deploy
	// step finishing into "wait call-back" must resume the node, not leave
	// it to the next regular heartbeat, heartbeat_timeout × 0.3–0.6 later),
	// and no other task (a power sync) can slip in between. A node still
	// locked after the retries answers 409, as Ironic's NodeLocked: the
	// agent heartbeats again after its error interval.
	n, err = c.acquire(ctx, n.UUID)
	if err != nil {
		return err
	}
	// The wait may have outlived this agent: a new deploy forgot its token
	// and URL.
	if err := checkHeartbeat(n, token, callbackURL); err != nil {
		c.release(ctx, n.UUID)
		return err
	}
	n.DriverInternalInfo["agent_url"] = callbackURL
	n.DriverInternalInfo["agent_version"] = version
	n.DriverInternalInfo["agent_last_heartbeat"] = c.now().Format("2006-01-02T15:04:05.000000")
	n.UpdatedAt = c.now()
	if c.agentHeartbeat(ctx, n) {
		return nil // the task holds the lock now
	}
	defer c.release(ctx, n.UUID)
	return c.st.UpdateNode(ctx, n)
}

// checkHeartbeat refuses a heartbeat whose callback URL or token is not
// the node's.
func checkHeartbeat(n *provisioner.Node, token, callbackURL string) error {
	if err := checkCallbackURL(n, callbackURL); err != nil {
		return err
	}
	want, _ := n.DriverInternalInfo["agent_secret_token"].(string)
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(token)) != 1 {
		return refuse(KindInvalid, "Invalid or missing agent token received.")
	}
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

// agentHeartbeat acts on a recorded heartbeat of n, which the caller
// has locked, as Ironic's heartbeat_mixin: a node waiting in "wait
// call-back" whose deploy interface is driven by the agent is resumed
// (saved with the heartbeat) and handed to the interface as a task, which
// takes over the lock; so is one in "clean wait" (automated cleaning
// through the agent). It reports whether it saved n; otherwise the caller
// saves and releases it.
func (c *Conductor) agentHeartbeat(ctx context.Context, n *provisioner.Node) bool {
	if !slices.Contains(callbackStates, n.ProvisionState) || n.Maintenance {
		return false
	}
	h, err := c.hardware(n)
	if err != nil {
		return false
	}
	d, err := h.DeployFor(n)
	if err != nil {
		return false
	}
	hb, ok := d.(drivers.AgentHeartbeat)
	if !ok {
		return false
	}
	if err := c.transition(ctx, n, EventResume); err != nil {
		return false
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
	return true
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
