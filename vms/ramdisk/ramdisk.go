package ramdisk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// Env is the machine the ramdisk runs on: its disks, its network and its
// reset line. A real VM implements it over /sys/block, the kernel's network
// stack and reboot(2); a simulated machine implements it in-process.
type Env interface {
	Disks(ctx context.Context) ([]Disk, error)
	// Listen opens a TCP listener on the ramdisk's own address.
	Listen(ctx context.Context, port int) (net.Listener, error)
	// Reboot resets the machine; it may not return.
	Reboot(ctx context.Context) error
}

// Exporter serves a disk as an iSCSI target (LUN 1) on ln until ctx ends.
type Exporter func(ctx context.Context, ln net.Listener, iqn string, dev BlockDevice) error

// TokenFetcher reads a file from the boot server over TFTP.
type TokenFetcher func(ctx context.Context, server net.IP, port int, name string) ([]byte, error)

// BootloaderInstaller makes a deployed disk bootable for the boot mode
// ("bios" or "uefi"), as grub-install did in the bash ramdisk, and says
// what it installed.
type BootloaderInstaller func(ctx context.Context, disk Disk, bootMode string) (Installed, error)

// Config configures one run of the ramdisk.
type Config struct {
	Params     Params
	Env        Env
	Export     Exporter
	FetchToken TokenFetcher // nil: no token header is sent
	// Bootloader is the bootloader step; nil: InstallBootloader, with the
	// boot loaders of the ramdisk running on this machine. A simulated
	// machine's passes those of the initramfs it booted
	// (Bootloaders.Installer).
	Bootloader BootloaderInstaller
	// HTTP posts the callbacks; default a client with a 30 s timeout.
	HTTP *http.Client
	// Ports; defaults 3260 (iSCSI), 10000 (conductor notice), 69 (TFTP).
	ISCSIPort, NotifyPort, TFTPPort int
	// DiskWait bounds the search for the disk; default 60 s.
	DiskWait time.Duration
	// NotifyTimeout bounds each wait for the conductor's notice; default 1 h.
	NotifyTimeout time.Duration
	// Console receives the lines a person would read on the serial console.
	Console io.Writer
	// Recorder, when set, is told each step (events.Ramdisk*, for the
	// node's timeline).
	Recorder events.Recorder
	// Faults is asked (layer ramdisk, the node known by its UUID, the
	// deployment_id) before the pass_deploy_info callback (op
	// "pass_deploy_info"): "error" reports Arg as the ramdisk's error,
	// "no-callback" never calls back (the ramdisk waits until the machine
	// is reset or powered off); and before the bootloader is installed
	// (op "bootloader"): "bootloader-failed" fails the install with Arg as
	// its error. Other actions are ignored. nil: no faults.
	Faults fault.Injector
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if c.ISCSIPort == 0 {
		c.ISCSIPort = 3260
	}
	if c.NotifyPort == 0 {
		c.NotifyPort = 10000
	}
	if c.TFTPPort == 0 {
		c.TFTPPort = 69
	}
	if c.DiskWait == 0 {
		c.DiskWait = 60 * time.Second
	}
	if c.NotifyTimeout == 0 {
		c.NotifyTimeout = time.Hour
	}
	if c.Console == nil {
		c.Console = io.Discard
	}
	if c.Bootloader == nil {
		c.Bootloader = InstallBootloader
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// deployInfo is the pass_deploy_info body the bash ramdisk sent.
type deployInfo struct {
	Address string `json:"address"`
	Key     string `json:"key"`
	IQN     string `json:"iqn"`
	Error   string `json:"error"`
}

// bootloaderInfo is the pass_bootloader_install_info body.
type bootloaderInfo struct {
	Address string `json:"address"`
	Status  string `json:"status"` // SUCCEEDED or FAILED
	Key     string `json:"key"`
	Error   string `json:"error"`
}

// Run performs the iSCSI deploy from the machine's side and finally reboots
// it. Failures on the way are reported to the conductor in the "error"
// field, as the bash ramdisk did; Run returns an error only when it cannot
// reach the conductor at all or the run was cancelled.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	r := &run{cfg: cfg, p: cfg.Params}
	return r.do(ctx)
}

type run struct {
	cfg      Config
	p        Params
	firstErr string
	token    string
}

func (r *run) say(format string, a ...any) {
	fmt.Fprintf(r.cfg.Console, "metalbed-ramdisk: "+format+"\n", a...)
}

func (r *run) milestone(kind events.Kind, detail string) {
	if r.cfg.Recorder != nil {
		r.cfg.Recorder.Record(events.Event{Kind: kind, Detail: detail})
	}
}

// callbackKinds are the timeline kinds of the ramdisk's calls back.
var callbackKinds = map[string]events.Kind{
	"pass_deploy_info":             events.RamdiskPassDeployInfo,
	"pass_bootloader_install_info": events.RamdiskPassBootloaderInstall,
}

// fail records the first error, as err_msg did.
func (r *run) fail(err error) {
	r.say("ERROR: %v", err)
	r.cfg.Logger.Warn("ramdisk step failed", "node", r.p.DeploymentID, "err", err)
	if r.firstErr == "" {
		r.firstErr = err.Error()
	}
}

func (r *run) do(ctx context.Context) error {
	if err := r.p.CheckISCSIDeploy(); err != nil {
		r.say("ERROR: %v", err)
		return err // no conductor to tell
	}
	if r.cfg.Export == nil {
		return errors.New("ramdisk: no iSCSI exporter configured")
	}
	address := ""
	if r.p.ClientIP != nil {
		address = r.p.ClientIP.String()
	}
	r.say("deploy ramdisk up: node %s, boot_option=%s boot_mode=%s", r.p.DeploymentID, r.p.BootOption, r.p.BootMode)
	r.milestone(events.RamdiskUp, fmt.Sprintf("boot_option=%s boot_mode=%s", r.p.BootOption, r.p.BootMode))

	disk, err := findDisk(ctx, r.cfg.Env.Disks, r.p, r.cfg.DiskWait)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.fail(err)
	} else {
		r.say("using disk %s (%d bytes)", disk.Name, disk.SizeBytes)
		r.milestone(events.RamdiskDisk, fmt.Sprintf("%s %d bytes", disk.Name, disk.SizeBytes))
	}

	// The notice listener opens before we call back, so a quick conductor
	// cannot knock on a closed door.
	notify, err := r.cfg.Env.Listen(ctx, r.cfg.NotifyPort)
	if err != nil {
		return fmt.Errorf("listen for the conductor's notice on port %d: %w", r.cfg.NotifyPort, err)
	}
	defer notify.Close()
	if address == "" {
		address = hostOf(notify.Addr())
	}

	stopTarget := func() {}
	if disk.Dev != nil {
		stopTarget = r.startTarget(ctx, disk)
	}
	r.fetchToken(ctx)

	if h, ok := r.fault("pass_deploy_info"); ok {
		switch h.Action {
		case "error":
			msg := h.Arg
			if msg == "" {
				msg = "injected fault"
			}
			r.fail(errors.New(msg))
		case "no-callback":
			r.say("not calling back (injected fault)")
			<-ctx.Done()
			stopTarget()
			return ctx.Err()
		}
	}
	body := deployInfo{Address: address, Key: r.p.DeploymentKey, IQN: r.p.ISCSITargetIQN, Error: r.firstErr}
	if err := r.callback(ctx, "pass_deploy_info", body); err != nil {
		stopTarget()
		return err
	}
	r.say("waiting for notice of complete")
	if err := r.waitNotice(ctx, notify); err != nil {
		stopTarget()
		return err
	}
	r.say("stopping iSCSI target on %s", disk.Name)
	stopTarget()

	if r.p.BootOption == "local" && r.firstErr == "" {
		status, msg := "SUCCEEDED", ""
		r.say("installing bootloader (%s)", r.p.BootMode)
		if ins, err := r.installBootloader(ctx, disk); err != nil {
			status, msg = "FAILED", err.Error()
			r.say("ERROR: bootloader install failed: %v", err)
		} else {
			r.say("bootloader: %s", ins.Loader)
			if ins.Fallback != "" {
				r.say("ERROR: %s", ins.Fallback)
				r.milestone(events.RamdiskBootloaderFallback, ins.Fallback)
			}
			r.milestone(events.RamdiskBootloader, r.p.BootMode+" "+ins.Short())
		}
		body := bootloaderInfo{Address: address, Status: status, Key: r.p.DeploymentKey, Error: msg}
		if err := r.callback(ctx, "pass_bootloader_install_info", body); err != nil {
			return err
		}
		if err := r.waitNotice(ctx, notify); err != nil {
			return err
		}
	}
	r.say("rebooting")
	r.milestone(events.RamdiskReboot, "")
	return r.cfg.Env.Reboot(ctx)
}

func (r *run) installBootloader(ctx context.Context, disk Disk) (Installed, error) {
	if h, ok := r.fault("bootloader"); ok && h.Action == "bootloader-failed" {
		msg := h.Arg
		if msg == "" {
			msg = "injected fault: grub-install failed"
		}
		return Installed{}, errors.New(msg)
	}
	return r.cfg.Bootloader(ctx, disk, r.p.BootMode)
}

// fault asks Faults about op of layer ramdisk.
func (r *run) fault(op string) (fault.Hit, bool) {
	if r.cfg.Faults == nil {
		return fault.Hit{}, false
	}
	return r.cfg.Faults.Inject(fault.Ramdisk, events.Who{Node: r.p.DeploymentID}, op)
}

// startTarget exports disk and returns a func that stops the export and
// waits for it. A target that fails to start is recorded as the first error.
func (r *run) startTarget(ctx context.Context, disk Disk) (stop func()) {
	ln, err := r.cfg.Env.Listen(ctx, r.cfg.ISCSIPort)
	if err != nil {
		r.fail(fmt.Errorf("failed to start iscsi target: %w", err))
		return func() {}
	}
	r.say("start iSCSI target %s on %s at %s", r.p.ISCSITargetIQN, disk.Name, ln.Addr())
	r.milestone(events.RamdiskISCSI, fmt.Sprintf("%s on %s", r.p.ISCSITargetIQN, ln.Addr()))
	tctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.cfg.Export(tctx, ln, r.p.ISCSITargetIQN, disk.Dev); err != nil && tctx.Err() == nil {
			r.say("ERROR: iSCSI target stopped: %v", err)
		}
	}()
	return func() {
		cancel()
		ln.Close()
		wg.Wait()
	}
}

// fetchToken gets token-<deployment_id> from the boot server; when present
// it becomes the X-Auth-Token header, when absent none is sent.
func (r *run) fetchToken(ctx context.Context) {
	if r.cfg.FetchToken == nil || r.p.BootServer == nil {
		return
	}
	name := "token-" + r.p.DeploymentID
	b, err := r.cfg.FetchToken(ctx, r.p.BootServer, r.cfg.TFTPPort, name)
	if err != nil {
		r.say("no token (%s: %v); calling back without X-Auth-Token", name, err)
		return
	}
	r.token = strings.TrimSpace(string(b))
}

// callback POSTs to the node's vendor_passthru method, retrying transport
// errors for a minute: the API may be restarting.
func (r *run) callback(ctx context.Context, method string, body any) error {
	u := r.p.IronicAPIURL + "/v1/nodes/" + r.p.DeploymentID + "/vendor_passthru/" + method
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	r.say("requesting Ironic API: POST %s", u)
	deadline := time.Now().Add(time.Minute)
	unanswered := false // an attempt went out and got no answer in time
	for attempt := 1; ; attempt++ {
		err := r.post(ctx, u, payload)
		if err == nil {
			r.milestone(callbackKinds[method], "")
			return nil
		}
		if unanswered && takenMeanwhile(err) {
			// The attempt that got no answer was taken: the conductor
			// holds the node (409) or has moved it on (400, not waiting
			// any more). Its notice comes when it is done; a deploy that
			// fails powers the machine off instead.
			r.say("%s: an earlier request got no answer in time and the conductor has taken the node since (%v); waiting for it", method, err)
			r.milestone(callbackKinds[method], "answer lost")
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			unanswered = true
		}
		var perm permanentError
		if errors.As(err, &perm) || time.Now().After(deadline) || ctx.Err() != nil {
			r.say("ERROR: %s: %v", method, err)
			return fmt.Errorf("%s: %w", method, err)
		}
		r.cfg.Logger.Warn("callback failed, retrying", "node", r.p.DeploymentID, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

type permanentError struct{ error }

// statusError is an API answer of an error status.
type statusError struct {
	code int
	msg  []byte
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.msg) }

// takenMeanwhile reports whether err is the API saying that the node is
// locked (409) or no longer in a state a callback resumes (400 "can not be
// performed ... while it is in state"): after an attempt that got no
// answer, what a callback that was taken looks like.
func takenMeanwhile(err error) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	return se.code == http.StatusConflict ||
		se.code == http.StatusBadRequest && bytes.Contains(se.msg, []byte("can not be performed on node"))
}

func (r *run) post(ctx context.Context, u string, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return permanentError{err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("X-Auth-Token", r.token)
	}
	resp, err := r.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusConflict:
		return &statusError{resp.StatusCode, bytes.TrimSpace(msg)}
	default:
		return permanentError{&statusError{resp.StatusCode, bytes.TrimSpace(msg)}}
	}
}

// waitNotice accepts one connection on the notice port and reads it to EOF,
// as `nc -l -p 10000` did. What was sent is shown on the console.
func (r *run) waitNotice(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.NotifyTimeout)
	defer cancel()
	type result struct {
		msg string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(io.LimitReader(c, 1024))
		ch <- result{msg: strings.TrimSpace(string(b)), err: err}
	}()
	select {
	case <-ctx.Done():
		// Unblock Accept for the next wait by leaving the listener open;
		// the caller closes it.
		return fmt.Errorf("no notice from the conductor on port %d: %w", r.cfg.NotifyPort, ctx.Err())
	case res := <-ch:
		if res.err != nil {
			return fmt.Errorf("notice on port %d: %w", r.cfg.NotifyPort, res.err)
		}
		r.say("notice from conductor: %q", res.msg)
		r.milestone(events.RamdiskNotice, res.msg)
		return nil
	}
}

func hostOf(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
