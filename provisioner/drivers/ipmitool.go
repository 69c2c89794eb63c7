package drivers

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/metalbed/metalbed/provisioner"
)

// ipmitoolClient runs ipmitool as Ironic 21.4's ipmitool driver does:
//
//	ipmitool -I lanplus -H <addr> -L <priv> [-p <port>] [-U <user>] [-y <kg>] [-C <suite>] -R 1 -N 1 -f <pwfile> <cmd…>
//
// one process (one RMCP+ session) per command, the password in a 0600
// temporary file removed after the run.
type ipmitoolClient struct {
	tool         string
	tempDir      string
	cipherSuites []int // Ironic's [ipmi]cipher_suite_versions
}

// args builds the argument list before "-f <pwfile> <cmd>". cs < 0 omits -C.
func (c *ipmitoolClient) args(info ipmiInfo, cs int) []string {
	args := []string{"-I", "lanplus", "-H", info.Address, "-L", info.PrivLevel}
	if info.Port != 0 {
		args = append(args, "-p", strconv.Itoa(info.Port))
	}
	if info.Username != "" {
		args = append(args, "-U", info.Username)
	}
	if info.KgKey != "" {
		args = append(args, "-y", info.KgKey)
	}
	// Ironic tests "if driver_info['cipher_suite']", so suite 0 is never
	// passed on; keep that.
	if cs > 0 {
		args = append(args, "-C", strconv.Itoa(cs))
	}
	// use_ipmitool_retries=False (the default): ipmitool tries once, Ironic
	// retries.
	return append(args, "-R", "1", "-N", "1")
}

// Stderr fragments Ironic treats as "this BMC refuses the cipher suite".
var cipherSuiteErrors = []string{
	"Unsupported cipher suite ID",
	"Error in open session response message : no matching cipher suite",
	"Error in open session response message : invalid role",
}

// ipmitoolError is a failed ipmitool run; Error carries its stderr.
type ipmitoolError struct {
	Command string
	Err     error
	Stderr  string
}

func (e *ipmitoolError) Error() string {
	msg := "ipmitool " + e.Command + ": " + e.Err.Error()
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *ipmitoolError) Unwrap() error { return e.Err }

// run executes one ipmitool command and returns its stdout. When the node
// sets no cipher suite and cipherSuites is configured, a cipher suite error
// moves on to the next suite (from the last element downwards) at once.
func (c *ipmitoolClient) run(ctx context.Context, info ipmiInfo, timeout time.Duration, command ...string) (string, error) {
	cs := info.CipherSuite
	var tried []int
	for {
		out, err := c.exec(ctx, info, cs, timeout, command)
		var ie *ipmitoolError
		if err == nil || info.CipherSuite >= 0 || len(c.cipherSuites) == 0 || !errors.As(err, &ie) || !isCipherSuiteError(ie.Stderr) {
			return out, err
		}
		tried = append(tried, cs)
		cs = nextCipherSuite(c.cipherSuites, cs)
		if slices.Contains(tried, cs) {
			return out, err
		}
	}
}

func isCipherSuiteError(stderr string) bool {
	for _, s := range cipherSuiteErrors {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

// nextCipherSuite is Ironic's choose_cipher_suite: the last configured
// suite first, then each one before it.
func nextCipherSuite(versions []int, actual int) int {
	i := slices.Index(versions, actual)
	if actual < 0 || i < 0 {
		return versions[len(versions)-1]
	}
	return versions[max(i-1, 0)]
}

// passwordFile writes info's password into a 0600 temporary file for
// ipmitool -f; remove deletes it.
func (c *ipmitoolClient) passwordFile(info ipmiInfo) (path string, remove func(), err error) {
	pw, err := os.CreateTemp(c.tempDir, "metalbed-ipmi-*")
	if err != nil {
		return "", nil, fmt.Errorf("create password file: %w", err)
	}
	remove = func() { os.Remove(pw.Name()) }
	// ipmitool prompts without -f; an empty password is written as NUL, as
	// Ironic does.
	secret := info.Password
	if secret == "" {
		secret = "\x00"
	}
	err = pw.Chmod(0o600)
	if err == nil {
		_, err = pw.WriteString(secret)
	}
	if cerr := pw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("write password file: %w", err)
	}
	return pw.Name(), remove, nil
}

func (c *ipmitoolClient) exec(ctx context.Context, info ipmiInfo, cs int, timeout time.Duration, command []string) (string, error) {
	pwFile, remove, err := c.passwordFile(info)
	if err != nil {
		return "", err
	}
	defer remove()

	args := append(c.args(info, cs), "-f", pwFile)
	args = append(args, command...)
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, c.tool, args...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w (%w)", err, errPermanent)
		}
		return stdout.String(), &ipmitoolError{Command: strings.Join(command, " "), Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

func (c *ipmitoolClient) powerStatus(ctx context.Context, info ipmiInfo, timeout time.Duration) (provisioner.PowerState, error) {
	out, err := c.run(ctx, info, timeout, "power", "status")
	if err != nil {
		return "", err
	}
	return parsePowerStatus(out), nil
}

func (c *ipmitoolClient) power(ctx context.Context, info ipmiInfo, action string, timeout time.Duration) error {
	_, err := c.run(ctx, info, timeout, "power", action)
	return err
}

func (c *ipmitoolClient) raw(ctx context.Context, info ipmiInfo, netfn, cmd byte, data []byte, timeout time.Duration) ([]byte, error) {
	command := []string{"raw", fmt.Sprintf("0x%02x", netfn), fmt.Sprintf("0x%02x", cmd)}
	for _, b := range data {
		command = append(command, fmt.Sprintf("0x%02x", b))
	}
	out, err := c.run(ctx, info, timeout, command...)
	if err != nil {
		return nil, err
	}
	return parseRawOutput(out)
}

func (c *ipmitoolClient) chassisBootdev(ctx context.Context, info ipmiInfo, dev string, persistent bool, timeout time.Duration) error {
	command := []string{"chassis", "bootdev", dev}
	if persistent {
		command = append(command, "options=persistent")
	}
	_, err := c.run(ctx, info, timeout, command...)
	return err
}

func (c *ipmitoolClient) bootDevice(ctx context.Context, info ipmiInfo, timeout time.Duration) (BootDevice, error) {
	out, err := c.run(ctx, info, timeout, "chassis", "bootparam", "get", "5")
	if err != nil {
		return BootDevice{}, err
	}
	return parseBootParam5(out), nil
}

func (c *ipmitoolClient) bmcReset(ctx context.Context, info ipmiInfo, warm bool, timeout time.Duration) error {
	kind := "cold"
	if warm {
		kind = "warm"
	}
	_, err := c.run(ctx, info, timeout, "bmc", "reset", kind)
	return err
}

// parsePowerStatus maps "ipmitool power status" output as Ironic does:
// exactly "Chassis Power is on\n" or "...off\n", anything else is an error
// state.
func parsePowerStatus(out string) provisioner.PowerState {
	switch out {
	case "Chassis Power is on\n":
		return provisioner.PowerOn
	case "Chassis Power is off\n":
		return provisioner.PowerOff
	}
	return provisioner.PowerError
}

var bootSelectorRE = regexp.MustCompile(`Boot Device Selector : (.+)?\n`)

// parseBootParam5 reads "ipmitool chassis bootparam get 5" output as
// Ironic's get_boot_device: the first "Boot Device Selector : …" line names
// the device, "Options apply to all future boots" anywhere means persistent.
func parseBootParam5(out string) BootDevice {
	var bd BootDevice
	if m := bootSelectorRE.FindStringSubmatch(out); m != nil {
		sel := m[1]
		switch {
		case strings.Contains(sel, "PXE"):
			bd.Device = "pxe"
		case strings.Contains(sel, "Hard-Drive"):
			bd.Device = "disk"
			if strings.Contains(sel, "Safe-Mode") {
				bd.Device = "safe"
			}
		case strings.Contains(sel, "BIOS"):
			bd.Device = "bios"
		case strings.Contains(sel, "CD/DVD"):
			bd.Device = "cdrom"
		}
	}
	bd.Persistent = strings.Contains(out, "Options apply to all future boots")
	return bd
}

// parseRawOutput reads the hex bytes "ipmitool raw" prints (" 01 05 00").
func parseRawOutput(out string) ([]byte, error) {
	fields := strings.Fields(out)
	data := make([]byte, 0, len(fields))
	for _, f := range fields {
		b, err := hex.DecodeString(f)
		if err != nil || len(b) != 1 {
			return nil, fmt.Errorf("unexpected ipmitool raw output %q", out)
		}
		data = append(data, b[0])
	}
	return data, nil
}

// sol is Ironic's ipmitool-socat console without socat: `sol deactivate`
// (its failure ignored: nothing may be active), then `sol activate` with a
// pseudo-terminal as its terminal, copying between the terminal and rw
// until either side ends or ctx ends.
func (c *ipmitoolClient) sol(ctx context.Context, info ipmiInfo, rw io.ReadWriter) error {
	_, _ = c.run(ctx, info, 10*time.Second, "sol", "deactivate")
	pwFile, remove, err := c.passwordFile(info)
	if err != nil {
		return err
	}
	defer remove()
	master, slave, err := openPTY()
	if err != nil {
		return err
	}
	defer master.Close()
	args := append(c.args(info, info.CipherSuite), "-f", pwFile, "sol", "activate")
	cmd := exec.CommandContext(ctx, c.tool, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		slave.Close()
		return &ipmitoolError{Command: "sol activate", Err: err}
	}
	slave.Close()
	done := make(chan struct{})
	go func() {
		// Keystrokes to ipmitool; ends when the client goes.
		io.Copy(master, rw)
		cmd.Process.Signal(syscall.SIGTERM)
		close(done)
	}()
	// The console from ipmitool; EIO once it has exited.
	io.Copy(rw, master)
	err = cmd.Wait()
	if ctx.Err() != nil {
		return nil
	}
	select {
	case <-done:
		return nil // the client hung up
	default:
	}
	if err != nil {
		return &ipmitoolError{Command: "sol activate", Err: err}
	}
	return nil
}
