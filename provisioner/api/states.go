package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/conductor"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// Node actions: validate, states (power, provision, console), management
// (boot device), vendor passthru and BIOS.

func (s *Server) validateNode(w http.ResponseWriter, r *http.Request) error {
	res, err := s.c.Validate(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	out := obj{}
	for _, ir := range res {
		if minor(r) < 40 && ir.Interface == drivers.RoleBios {
			continue
		}
		if minor(r) < 38 && ir.Interface == drivers.RoleRescue {
			continue
		}
		if minor(r) < 33 && ir.Interface == drivers.RoleStorage {
			continue
		}
		if ir.Result {
			out = append(out, kv{string(ir.Interface), obj{{"result", true}}})
		} else {
			out = append(out, kv{string(ir.Interface), obj{{"result", false}, {"reason", ir.Reason}}})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) states(w http.ResponseWriter, r *http.Request) error {
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	out := obj{
		{"console_enabled", n.ConsoleEnabled},
		{"last_error", orNull(n.LastError)},
		{"power_state", orNull(n.PowerState)},
		{"provision_state", string(n.ProvisionState)},
		{"target_power_state", orNull(n.TargetPowerState)},
		{"target_provision_state", orNull(n.TargetProvisionState)},
		{"provision_updated_at", timestamp(n.ProvisionUpdatedAt)},
	}
	if minor(r) >= 12 {
		out = append(out, kv{"raid_config", dict(n.RaidConfig)}, kv{"target_raid_config", dict(n.TargetRaidCfg)})
	}
	if minor(r) >= 75 {
		out = append(out, kv{"boot_mode", orNull(n.BootMode)}, kv{"secure_boot", nil})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// powerBody is PUT /states/power.
type powerBody struct {
	Target  *string  `json:"target"`
	Timeout *float64 `json:"timeout"`
}

func decodePowerBody(body []byte, version int) (provisioner.PowerState, float64, error) {
	var in powerBody
	if err := json.Unmarshal(body, &in); err != nil {
		return "", 0, badRequest(fmt.Sprintf("Invalid JSON in request body: %v", err))
	}
	if in.Target == nil {
		return "", 0, badRequest("Invalid input for field/attribute target. Value: 'None'. Mandatory field missing.")
	}
	target := provisioner.PowerState(*in.Target)
	if (target == provisioner.SoftPowerOff || target == provisioner.SoftRebooting) && version < 27 {
		return "", 0, errNotAcceptable
	}
	var timeout float64
	if in.Timeout != nil {
		if version < 27 {
			return "", 0, errNotAcceptable
		}
		timeout = *in.Timeout
		if timeout < 1 || timeout != float64(int64(timeout)) {
			return "", 0, badRequest(fmt.Sprintf("Invalid timeout value %v. Timeout must be a positive integer.", timeout))
		}
	}
	return target, timeout, nil
}

func (s *Server) setPower(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(err.Error())
	}
	target, timeout, err := decodePowerBody(body, minor(r))
	if err != nil {
		return err
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	if err := s.c.SetPowerState(r.Context(), n.UUID, target, secondsDuration(timeout)); err != nil {
		return err
	}
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+n.UUID+"/states")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// provisionBody is PUT /states/provision.
type provisionBody struct {
	Target      *string          `json:"target"`
	ConfigDrive any              `json:"configdrive"`
	CleanSteps  []map[string]any `json:"clean_steps"`
	DeploySteps []any            `json:"deploy_steps"`
	Rescue      *string          `json:"rescue_password"`
	Disable     *bool            `json:"disable_ramdisk"`
}

// verbMinVersion is the microversion each provision verb needs
// (Ironic's MIN_VERB_VERSIONS).
var verbMinVersion = map[string]int{
	"manage": 4, "provide": 4, "inspect": 6, "abort": 13, "clean": 15, "deploy": 73, "undeploy": 73,
}

func decodeProvisionBody(body []byte, version int) (string, conductor.ProvisionOptions, error) {
	var in provisionBody
	var opts conductor.ProvisionOptions
	if err := json.Unmarshal(body, &in); err != nil {
		return "", opts, badRequest(fmt.Sprintf("Invalid JSON in request body: %v", err))
	}
	if in.Target == nil {
		return "", opts, badRequest("Invalid input for field/attribute target. Value: 'None'. Mandatory field missing.")
	}
	verb := *in.Target
	if min, ok := verbMinVersion[verb]; ok && version < min {
		return "", opts, errNotAcceptable
	}
	if in.ConfigDrive != nil && verb != "active" && verb != "rebuild" && verb != "deploy" {
		return "", opts, badRequest("Adding a config drive is only supported when setting provision state to active or rebuild")
	}
	if in.CleanSteps != nil && verb != "clean" {
		return "", opts, badRequest(fmt.Sprintf("\"clean_steps\" is only valid when setting target provision state to clean"))
	}
	if in.Rescue != nil || in.Disable != nil || in.DeploySteps != nil {
		if version < 38 {
			return "", opts, errNotAcceptable
		}
	}
	opts.ConfigDrive, opts.CleanSteps = in.ConfigDrive, in.CleanSteps
	if len(in.DeploySteps) > 0 {
		steps, err := decodeDeploySteps(verb, in.DeploySteps, version)
		if err != nil {
			return "", opts, err
		}
		opts.DeploySteps = steps
	}
	return verb, opts, nil
}

// decodeDeploySteps is Ironic's check_allow_deploy_steps and
// _check_steps for a provision request's deploy_steps (not empty):
// API 1.69, target active or rebuild, each step as DEPLOY_STEP_SCHEMA.
func decodeDeploySteps(verb string, raw []any, version int) ([]provisioner.DeployStep, error) {
	if version < 69 {
		return nil, errNotAcceptable
	}
	if verb != "active" && verb != "rebuild" {
		return nil, badRequest(`"deploy_steps" is only valid when setting target provision state to active or rebuild`)
	}
	steps := make([]provisioner.DeployStep, 0, len(raw))
	for _, v := range raw {
		st, err := checkDeployStep("deploy_steps", v)
		if err != nil {
			return nil, badRequest("Invalid deploy_steps: " + strings.TrimPrefix(err.Error(), "Schema error for deploy_steps: "))
		}
		steps = append(steps, st)
	}
	return steps, nil
}

func (s *Server) setProvision(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(err.Error())
	}
	verb, opts, err := decodeProvisionBody(body, minor(r))
	if err != nil {
		return err
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	if err := s.c.Provision(r.Context(), n.UUID, verb, opts); err != nil {
		return err
	}
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+n.UUID+"/states")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *Server) getBootDevice(w http.ResponseWriter, r *http.Request) error {
	dev, err := s.c.BootDevice(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, obj{{"boot_device", orNull(dev.Device)}, {"persistent", dev.Persistent}})
	return nil
}

func decodeBootDevice(body []byte) (drivers.BootDevice, error) {
	var in struct {
		BootDevice *string `json:"boot_device"`
		Persistent *bool   `json:"persistent"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return drivers.BootDevice{}, badRequest(fmt.Sprintf("Invalid JSON in request body: %v", err))
	}
	if in.BootDevice == nil {
		return drivers.BootDevice{}, badRequest("Invalid input for field/attribute boot_device. Value: 'None'. Mandatory field missing.")
	}
	dev := drivers.BootDevice{Device: *in.BootDevice}
	if in.Persistent != nil {
		dev.Persistent = *in.Persistent
	}
	return dev, nil
}

func (s *Server) setBootDevice(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(err.Error())
	}
	dev, err := decodeBootDevice(body)
	if err != nil {
		return err
	}
	if err := s.c.SetBootDevice(r.Context(), r.PathValue("node"), dev); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// injectNMI is PUT /v1/nodes/{node}/management/inject_nmi (1.29+), with
// an empty JSON body as the client sends.
func (s *Server) injectNMI(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 29 {
		return errNotFound
	}
	if err := s.c.InjectNMI(r.Context(), r.PathValue("node")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) supportedBootDevices(w http.ResponseWriter, r *http.Request) error {
	devs, err := s.c.SupportedBootDevices(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	if devs == nil {
		devs = []string{}
	}
	writeJSON(w, http.StatusOK, obj{{"supported_boot_devices", devs}})
	return nil
}

func (s *Server) vendorMethods(w http.ResponseWriter, r *http.Request) error {
	methods, err := s.c.VendorMethods(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	out := obj{}
	for _, m := range methods {
		out = append(out, kv{m.Name, obj{
			{"http_methods", m.HTTPMethods}, {"async", m.Async}, {"description", m.Description},
			{"attach", m.Attach}, {"require_exclusive_lock", m.RequireExclusiveLock},
		}})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ramdiskMethods are vendor passthru callbacks a deploy ramdisk makes;
// they are public and guarded by the node's deploy key instead.
var ramdiskMethods = []string{"pass_deploy_info", "pass_bootloader_install_info", "heartbeat"}

func (s *Server) vendorPassthru(w http.ResponseWriter, r *http.Request) error {
	method := r.PathValue("method")
	if method == "" {
		method = r.URL.Query().Get("method")
	}
	if method == "" {
		return badRequest("Method not specified")
	}
	var args map[string]any
	if r.ContentLength != 0 && r.Method != http.MethodGet {
		if err := readBody(r, &args); err != nil {
			return err
		}
	}
	if slices.Contains(ramdiskMethods, method) {
		if err := s.c.CheckDeployKey(r.Context(), r.PathValue("node"), args); err != nil {
			return err
		}
	} else if !s.authorized(w, r) {
		return nil
	}
	res, async, err := s.c.VendorPassthru(r.Context(), r.PathValue("node"), method, r.Method, args)
	if err != nil {
		return err
	}
	if async {
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	if res == nil {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// consoleState is GET .../states/console. No console interface is
// implemented; fake-hardware's "fake" console only records the flag.
func (s *Server) consoleState(w http.ResponseWriter, r *http.Request) error {
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	if n.Interfaces.Console == "fake" {
		writeJSON(w, http.StatusOK, obj{{"console_enabled", n.ConsoleEnabled}, {"console_info", nil}})
		return nil
	}
	enabled, info, err := s.c.ConsoleInfo(r.Context(), n.UUID)
	if err != nil {
		return err
	}
	var ci any
	if info != nil {
		ci = info
	}
	writeJSON(w, http.StatusOK, obj{{"console_enabled", enabled}, {"console_info", ci}})
	return nil
}

func (s *Server) setConsole(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Enabled any `json:"enabled"`
	}
	if err := readBody(r, &body); err != nil {
		return err
	}
	on, ok := asBool(body.Enabled)
	if !ok {
		return badRequest(fmt.Sprintf("Invalid input for field/attribute enabled. Value: '%v'. Wrong type. Expected a boolean.", body.Enabled))
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	if n.Interfaces.Console != "fake" {
		if err := s.c.SetConsole(r.Context(), n.UUID, on); err != nil {
			return err
		}
		w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+r.PathValue("node")+"/states/console")
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	_, err = s.c.UpdateNode(r.Context(), r.PathValue("node"), func(n *provisioner.Node) error {
		if n.Interfaces.Console != "fake" {
			return badRequest(fmt.Sprintf("Driver %s does not support console (disabled or not implemented).", n.Driver))
		}
		n.ConsoleEnabled = on
		return nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+r.PathValue("node")+"/states/console")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// bios (1.40): the conductor does not cache BIOS settings (Ironic's
// cache_bios_settings), so no node has any here.
func (s *Server) bios(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 40 {
		return errNotFound
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	if name := r.PathValue("setting"); name != "" {
		return clientErr(http.StatusNotFound, fmt.Sprintf("The BIOS setting %s for node %s could not be found.", name, n.UUID))
	}
	writeJSON(w, http.StatusOK, obj{{"bios", []obj{}}})
	return nil
}
