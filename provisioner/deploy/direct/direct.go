// Package direct is the conductor side of Ironic's "direct" deploy
// interface: the deploy ramdisk runs the agent (ironic-python-agent, or
// metalbed's compatible agent), which downloads the instance image over
// HTTP and writes it itself.
//
// Prepare makes the node boot the deploy ramdisk with IPA's kernel
// parameters (ipa-api-url, ipa-global-request-id) and, when the image is
// not an HTTP URL the agent can fetch, publishes the cached image under
// the HTTP boot root (Ironic's image_download_source = http:
// <http_root>/agent_images/<node>). Deploy powers the node on and waits
// in "wait call-back". The agent looks its node up (token minted once)
// and heartbeats; each heartbeat the conductor hands here (Heartbeat):
//
//   - the deploy has not started: deploy.execute_deploy_step write_image
//     (wait=false) with IPA's image_info, as Ironic 21.4 sends it;
//   - the command is running: poll GET /v1/commands/ on the next beat;
//   - it failed: the node fails with Ironic's "Agent returned error for
//     deploy step …" message;
//   - it succeeded: standby.get_partition_uuids, for a partition image
//     booted locally image.install_bootloader (wait=false, then the
//     command list polled, as Ironic 21.4), then the reboot to the
//     instance: standby.power_off through the agent, the BMC polled until
//     it says off (Ironic: 6 × 5 s) else a hard power off, boot device
//     disk persistent (local boot) or the instance's PXE config
//     (netboot), power on, active.
//
// Every agent call carries the node's agent_token.
package direct

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

// Name is the interface's name in the API.
const Name = "direct"

// Config gives the interface its dependencies. There are no globals.
type Config struct {
	// Config is what every deploy interface gets: Images (required),
	// DefaultBootMode/DefaultBootOption, DialContext (the default
	// HTTPClient's), Milestone (prepare, power on, write_image, image
	// written, bootloader, power off, reboot), Logger, Now.
	deploy.Config
	// APIURL is passed to the agent as ipa-api-url. Required.
	APIURL string
	// HTTPRoot and HTTPURL publish images the agent cannot fetch itself
	// (anything but an http(s) image_source) as
	// HTTPURL/agent_images/<node>; without them only http(s) sources
	// deploy.
	HTTPRoot, HTTPURL string
	// PowerOffRetries and PowerOffInterval bound the wait for the BMC to
	// report off after the agent's soft power off (Ironic's
	// [agent]post_deploy_get_power_state_retries/_retry_interval); defaults
	// 6 and 5 s.
	PowerOffRetries  int
	PowerOffInterval time.Duration
	// CommandTimeout bounds each request to the agent; default 60 s.
	CommandTimeout time.Duration
	// CommandWaitAttempts and CommandWaitInterval bound the polling of an
	// asynchronous command (Ironic's [agent]command_wait_attempts and
	// command_wait_interval); defaults 100 and 6 s.
	CommandWaitAttempts int
	CommandWaitInterval time.Duration
	// HTTPClient talks to the agent; default one with
	// AgentTransport(DialContext).
	HTTPClient *http.Client
}

// Deploy is the "direct" deploy interface, safe for concurrent use on
// different nodes (the conductor serialises calls per node).
type Deploy struct {
	cfg  Config
	core *deploy.Core
	log  *slog.Logger
	http *http.Client
}

var (
	_ drivers.DeployInterface = (*Deploy)(nil)
	_ drivers.AgentHeartbeat  = (*Deploy)(nil)
)

// New checks cfg and applies defaults. It does no I/O.
func New(cfg Config) (*Deploy, error) {
	core, err := deploy.New(Name, cfg.Config, map[string]string{"APIURL": cfg.APIURL})
	if err != nil {
		return nil, err
	}
	if (cfg.HTTPRoot == "") != (cfg.HTTPURL == "") {
		return nil, errors.New("direct deploy: HTTPRoot and HTTPURL go together")
	}
	if cfg.PowerOffRetries <= 0 {
		cfg.PowerOffRetries = 6
	}
	if cfg.PowerOffInterval <= 0 {
		cfg.PowerOffInterval = 5 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 60 * time.Second
	}
	if cfg.CommandWaitAttempts <= 0 {
		cfg.CommandWaitAttempts = 100
	}
	if cfg.CommandWaitInterval <= 0 {
		cfg.CommandWaitInterval = 6 * time.Second
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: AgentTransport(cfg.DialContext)}
	}
	return &Deploy{cfg: cfg, core: core, log: core.Logger(), http: hc}, nil
}

// AgentTransport is the transport for agents: a connection per request,
// never kept alive. A machine that is powered off or reset mid-deploy
// closes nothing, and its next agent answers on the same address: a
// kept-alive connection to the old one would be answered with a reset.
// dial nil => a net.Dialer's.
func AgentTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	return &http.Transport{DialContext: dial, DisableKeepAlives: true}
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// isHTTP says whether the agent can fetch src itself.
func isHTTP(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// Validate is Ironic's AgentDeploy.validate: the boot interface's checks,
// then image_source (an HTTP URL, or anything when images are published
// through the HTTP root), a checksum for HTTP sources, and root_gb for
// partition images.
func (d *Deploy) Validate(ctx context.Context, t *drivers.Task) error {
	if err := t.Boot.Validate(ctx, t); err != nil {
		return err
	}
	ii := t.Node.InstanceInfo
	src := str(ii, "image_source")
	var missing []string
	if src == "" {
		missing = append(missing, "image_source")
	}
	if isHTTP(src) && str(ii, "image_checksum") == "" && str(ii, "image_os_hash_value") == "" {
		missing = append(missing, "image_checksum")
	}
	if str(ii, "image_type") == "partition" || (str(ii, "kernel") != "" && str(ii, "ramdisk") != "") {
		if v, ok := ii["root_gb"]; !ok || v == nil || v == "" {
			missing = append(missing, "root_gb")
		}
	}
	if len(missing) > 0 {
		return deploy.Invalid("Some parameters were missing in node's instance_info. Missing are: %s", drivers.PyList(missing))
	}
	if !isHTTP(src) && d.cfg.HTTPRoot == "" {
		return deploy.Invalid("Agent deploy supports only HTTP(S) URLs as instance_info['image_source'] when no HTTP server publishes images. Given URL: %s", src)
	}
	return nil
}

// publishedPath is where Ironic's image_download_source=http puts a node's
// image: <http_root>/agent_images/<node>.
func (d *Deploy) publishedPath(node *provisioner.Node) string {
	return filepath.Join(d.cfg.HTTPRoot, "agent_images", node.UUID)
}

// Prepare publishes the image when the agent cannot fetch it directly,
// forgets the previous deploy's agent state and makes the node boot the
// deploy ramdisk with IPA's kernel parameters.
func (d *Deploy) Prepare(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	if node.ProvisionState == provisioner.StateActive {
		return d.core.TakeOver(ctx, t)
	}
	if err := d.Validate(ctx, t); err != nil {
		return err
	}
	d.forgetAgent(node)
	deploy.ResetDeployInfo(node)
	ii := node.InstanceInfo
	src := str(ii, "image_source")
	whole := true
	switch {
	case str(ii, "image_type") == "partition":
		whole = false
	case str(ii, "image_type") == "whole-disk":
	case str(ii, "kernel") != "" && str(ii, "ramdisk") != "":
		whole = false
	}
	if !isHTTP(src) {
		start := d.core.Now()
		dst := d.publishedPath(node)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("agent image directory: %w", err)
		}
		s := imagecache.Source{URL: src, Checksum: str(ii, "image_checksum"), HashAlgo: str(ii, "image_os_hash_algo"), HashValue: str(ii, "image_os_hash_value")}
		if err := d.cfg.Images.Fetch(ctx, s, dst); err != nil {
			return fmt.Errorf("fetch image %s: %w", src, err)
		}
		d.core.Milestone(node, events.ConductorImageCached, fmt.Sprintf("%s published for the agent, %.2fs", src, d.core.Since(start).Seconds()))
	}
	node.DriverInternalInfo["is_whole_disk_image"] = whole
	if err := t.Boot.PrepareRamdisk(ctx, t, d.ramdiskParams(node)); err != nil {
		return err
	}
	d.core.Milestone(node, events.ConductorPrepare, "agent ramdisk configured, boot interface "+bootName(t))
	return nil
}

// Deploy powers the node on (or reboots it) into the agent ramdisk and
// waits for its heartbeats.
func (d *Deploy) Deploy(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	return d.core.BootRamdisk(ctx, t, "booting the agent ramdisk")
}

// forgetAgent drops the previous agent's URL, token and progress: a new
// ramdisk boot looks up and gets a new token.
func (d *Deploy) forgetAgent(node *provisioner.Node) {
	if node.DriverInternalInfo == nil {
		node.DriverInternalInfo = map[string]any{}
	}
	for _, k := range []string{"agent_url", "agent_secret_token", "agent_lookup_address", "agent_last_heartbeat", "agent_version",
		"deployment_started", "cleaning_started"} {
		delete(node.DriverInternalInfo, k)
	}
}

// ramdiskParams are IPA's kernel parameters (Ironic's pxe_utils
// build_deploy_pxe_options for the agent).
func (d *Deploy) ramdiskParams(node *provisioner.Node) map[string]string {
	return map[string]string{
		"ipa-api-url":           strings.TrimRight(d.cfg.APIURL, "/"),
		"ipa-global-request-id": "req-" + node.UUID,
	}
}

// TearDown powers the node off.
func (d *Deploy) TearDown(ctx context.Context, t *drivers.Task) error {
	return d.core.PowerOff(ctx, t)
}

// CleanUp removes the published image and the node's boot files.
func (d *Deploy) CleanUp(ctx context.Context, t *drivers.Task) error {
	d.unpublish(t.Node)
	return d.core.CleanUpBoot(ctx, t)
}

// TakeOver rebuilds the boot configuration of an active node.
func (d *Deploy) TakeOver(ctx context.Context, t *drivers.Task) error {
	return d.core.TakeOver(ctx, t)
}

func (d *Deploy) unpublish(node *provisioner.Node) {
	if d.cfg.HTTPRoot == "" {
		return
	}
	if err := os.Remove(d.publishedPath(node)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("remove published image", "node", node.UUID, "err", err)
	}
	d.cfg.Images.CleanUp()
}

// imageInfo is IPA's image_info as Ironic 21.4 sends it in write_image.
func (d *Deploy) imageInfo(node *provisioner.Node) (map[string]any, error) {
	ii := node.InstanceInfo
	src := str(ii, "image_source")
	u := src
	if !isHTTP(src) {
		u = strings.TrimRight(d.cfg.HTTPURL, "/") + "/agent_images/" + url.PathEscape(node.UUID)
	}
	info := map[string]any{
		"id": filepath.Base(src), "urls": []string{u}, "disk_format": "raw", "container_format": nil,
		"stream_raw_images": true, "node_uuid": node.UUID,
	}
	if a, v := str(ii, "image_os_hash_algo"), str(ii, "image_os_hash_value"); a != "" && v != "" {
		info["os_hash_algo"], info["os_hash_value"] = a, v
	}
	if c := str(ii, "image_checksum"); c != "" {
		if algo, val, ok := strings.Cut(c, ":"); ok && algo != "" && !strings.Contains(algo, "/") {
			info["os_hash_algo"], info["os_hash_value"] = algo, val
		} else {
			info["checksum"] = c
		}
	}
	if whole, _ := node.DriverInternalInfo["is_whole_disk_image"].(bool); !whole {
		root, err := asInt(ii["root_gb"])
		if err != nil || root <= 0 {
			return nil, deploy.Invalid("Invalid root_gb %v", ii["root_gb"])
		}
		info["root_mb"] = root * 1024
		for _, k := range []struct {
			key, dst string
			scale    int64
		}{{"swap_mb", "swap_mb", 1}, {"ephemeral_gb", "ephemeral_mb", 1024}} {
			if v, ok := ii[k.key]; ok && v != nil {
				n, err := asInt(v)
				if err != nil {
					return nil, deploy.Invalid("Invalid %s %v", k.key, v)
				}
				info[k.dst] = n * k.scale
			}
		}
		info["ephemeral_format"] = str(ii, "ephemeral_format")
		info["preserve_ephemeral"] = false
		info["image_type"] = "partition"
		info["deploy_boot_mode"] = d.core.BootMode(node)
		info["boot_option"] = d.core.BootOption(node)
		info["disk_label"] = provisioner.Capability(node.InstanceInfo["capabilities"], "disk_label")
	}
	return info, nil
}

func asInt(v any) (int64, error) {
	switch x := v.(type) {
	case float64:
		return int64(x), nil
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case string:
		var n int64
		_, err := fmt.Sscan(strings.TrimSpace(x), &n)
		return n, err
	}
	return 0, fmt.Errorf("%v is not an integer", v)
}

// command is IPA's command result.
type command struct {
	ID            string          `json:"id"`
	CommandName   string          `json:"command_name"`
	CommandStatus string          `json:"command_status"`
	CommandError  json.RawMessage `json:"command_error"`
	CommandResult map[string]any  `json:"command_result"`
}

// errorText is Ironic's agent_client.get_command_error: the error's
// message (or its text when it is not an object).
func (c command) errorText() string {
	var e struct {
		Message string `json:"message"`
		Details string `json:"details"`
	}
	if json.Unmarshal(c.CommandError, &e) == nil && (e.Message != "" || e.Details != "") {
		if e.Details != "" {
			return e.Details
		}
		return e.Message
	}
	return strings.TrimSpace(string(c.CommandError))
}

// agent returns the node's agent URL and token.
func agent(node *provisioner.Node) (string, string, error) {
	u := str(node.DriverInternalInfo, "agent_url")
	tok := str(node.DriverInternalInfo, "agent_secret_token")
	if u == "" {
		return "", "", errors.New("the agent has not heartbeated its URL")
	}
	return strings.TrimRight(u, "/"), tok, nil
}

// agentBusyError is Ironic's AgentInProgress: the agent answered 409 (or
// "Agent is busy"), so the command is retried on the next heartbeat.
type agentBusyError struct{ err error }

func (e *agentBusyError) Error() string {
	return "Agent is presently executing a command. Error " + e.err.Error()
}
func (e *agentBusyError) Unwrap() error { return e.err }

// isBusy reports whether err is the agent's 409.
func isBusy(err error) bool {
	var b *agentBusyError
	return errors.As(err, &b)
}

// sendCommand is agent_client._command: POST /v1/commands/?wait=…&agent_token=….
func (d *Deploy) sendCommand(ctx context.Context, node *provisioner.Node, name string, params map[string]any, wait bool) (command, error) {
	base, tok, err := agent(node)
	if err != nil {
		return command{}, err
	}
	if params == nil {
		params = map[string]any{}
	}
	body, err := json.Marshal(map[string]any{"name": name, "params": params})
	if err != nil {
		return command{}, err
	}
	q := url.Values{"wait": {fmt.Sprint(wait)}, "agent_token": {tok}}
	var cmd command
	if err := d.do(ctx, http.MethodPost, base+"/v1/commands/?"+q.Encode(), body, &cmd); err != nil {
		return command{}, fmt.Errorf("Agent command %s failed: %w", name, err)
	}
	return cmd, nil
}

// lastCommand is agent_client.get_commands_status, returning the newest.
func (d *Deploy) lastCommand(ctx context.Context, node *provisioner.Node) (command, error) {
	base, tok, err := agent(node)
	if err != nil {
		return command{}, err
	}
	var list struct {
		Commands []command `json:"commands"`
	}
	if err := d.do(ctx, http.MethodGet, base+"/v1/commands/?agent_token="+url.QueryEscape(tok), nil, &list); err != nil {
		return command{}, fmt.Errorf("get commands status: %w", err)
	}
	if len(list.Commands) == 0 {
		return command{}, errors.New("the agent ran no command")
	}
	return list.Commands[len(list.Commands)-1], nil
}

// waitForCommand is agent_client._wait_for_command: it reads the agent's
// command list at once and then every CommandWaitInterval, up to
// CommandWaitAttempts reads, until the newest command named method (its
// name without the extension, as IPA reports it) is no longer RUNNING.
func (d *Deploy) waitForCommand(ctx context.Context, node *provisioner.Node, method string) (command, error) {
	_, short, _ := strings.Cut(method, ".")
	base, tok, err := agent(node)
	if err != nil {
		return command{}, err
	}
	for i := 0; ; i++ {
		var list struct {
			Commands []command `json:"commands"`
		}
		err := d.do(ctx, http.MethodGet, base+"/v1/commands/?agent_token="+url.QueryEscape(tok), nil, &list)
		if err != nil && ctx.Err() != nil {
			return command{}, ctx.Err()
		}
		if err == nil {
			for j := len(list.Commands) - 1; j >= 0; j-- {
				if c := list.Commands[j]; c.CommandName == short {
					if c.CommandStatus != "RUNNING" {
						return c, nil
					}
					break
				}
			}
		}
		if i+1 >= d.cfg.CommandWaitAttempts {
			return command{}, fmt.Errorf("Timeout while waiting for command %s on node %s.", method, node.UUID)
		}
		if err := deploy.Sleep(ctx, d.cfg.CommandWaitInterval); err != nil {
			return command{}, err
		}
	}
}

func (d *Deploy) do(ctx context.Context, method, u string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CommandTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
		if resp.StatusCode == http.StatusConflict || strings.Contains(strings.ToLower(string(data)), "agent is busy") {
			return &agentBusyError{err}
		}
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("bad agent answer: %w", err)
	}
	return nil
}

// bootName is the task's boot interface as the node names it (pxe when it
// names none).
func bootName(t *drivers.Task) string {
	if b := t.Node.Interfaces.Boot; b != "" {
		return b
	}
	return "pxe"
}
