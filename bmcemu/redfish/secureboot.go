package redfish

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/metalbed/metalbed/internal/events"
)

// The SecureBoot resource of a system (SecureBoot.v1_1_0), as UEFI firmware
// behind a BMC has it:
//
//   - SecureBootEnable is what the next boot does; a PATCH sets it at once
//     (Ironic's set_secure_boot_state PATCHes it, reads it back, then
//     reboots). true is refused with a 400 on a machine whose firmware boots
//     legacy BIOS (BootMode Bios), as real BMCs refuse it.
//   - SecureBootCurrentBoot is what the running boot did: decided at each
//     power-on or reset, Enabled when SecureBootEnable is set and a platform
//     key is enrolled (no PK is Setup Mode, where UEFI enforces nothing).
//   - SecureBootMode follows the keys: the factory keys are enrolled (User
//     Mode); #SecureBoot.ResetKeys DeleteAllKeys or DeletePK removes the PK
//     (Setup Mode) and ResetAllKeysToDefault enrolls the factory keys again
//     (User Mode), at once.

const (
	modeSetup = "SetupMode"
	modeUser  = "UserMode"
)

// resetKeysTypes are the ResetKeysType values of #SecureBoot.ResetKeys.
var resetKeysTypes = []string{"ResetAllKeysToDefault", "DeleteAllKeys", "DeletePK"}

// secureBootState is one system's UEFI Secure Boot, in memory.
type secureBootState struct {
	mu      sync.Mutex
	enable  bool   // SecureBootEnable
	current bool   // SecureBootCurrentBoot Enabled
	mode    string // SecureBootMode
}

func newSecureBootState() *secureBootState { return &secureBootState{mode: modeUser} }

type secureBootResource struct {
	resource
	Description           string            `json:"Description"`
	SecureBootEnable      bool              `json:"SecureBootEnable"`
	SecureBootCurrentBoot string            `json:"SecureBootCurrentBoot"`
	SecureBootMode        string            `json:"SecureBootMode"`
	Actions               secureBootActions `json:"Actions"`
}

type secureBootActions struct {
	ResetKeys resetKeysAction `json:"#SecureBoot.ResetKeys"`
}

type resetKeysAction struct {
	Target  string   `json:"target"`
	Allowed []string `json:"ResetKeysType@Redfish.AllowableValues"`
}

// secureBootPatch is a PATCH of SecureBoot: only SecureBootEnable is
// writable; the other two are named so their PATCH is told read-only.
type secureBootPatch struct {
	Enable      json.RawMessage `json:"SecureBootEnable"`
	CurrentBoot json.RawMessage `json:"SecureBootCurrentBoot"`
	Mode        json.RawMessage `json:"SecureBootMode"`
}

type resetKeysRequest struct {
	ResetKeysType *string `json:"ResetKeysType"`
}

func (sys *system) secureBootPath() string { return sys.path() + "/SecureBoot" }

func (sys *system) secureBootView() secureBootResource {
	sb := sys.secure
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sys.secureBootLocked()
}

func (sys *system) secureBootLocked() secureBootResource {
	sb := sys.secure
	p := sys.secureBootPath()
	cur := "Disabled"
	if sb.current {
		cur = "Enabled"
	}
	return secureBootResource{
		resource:              resource{ODataID: p, ODataType: "#SecureBoot.v1_1_0.SecureBoot", ID: "SecureBoot", Name: "UEFI Secure Boot"},
		Description:           "UEFI Secure Boot of " + sys.hw.Name,
		SecureBootEnable:      sb.enable,
		SecureBootCurrentBoot: cur,
		SecureBootMode:        sb.mode,
		Actions: secureBootActions{ResetKeys: resetKeysAction{
			Target: p + "/Actions/SecureBoot.ResetKeys", Allowed: resetKeysTypes,
		}},
	}
}

func (s *Server) getSecureBoot(q *request, sys *system) error {
	return q.ok(sys.secureBootView())
}

func (s *Server) patchSecureBoot(q *request, sys *system) error {
	var p secureBootPatch
	if err := decodeBody(q.r.Body, &p, false); err != nil {
		return err
	}
	var bad propertyErrors
	for _, ro := range []struct {
		name string
		raw  json.RawMessage
	}{{"SecureBootCurrentBoot", p.CurrentBoot}, {"SecureBootMode", p.Mode}} {
		if ro.raw != nil {
			bad = append(bad, &propertyError{"PropertyNotWritable", "The property " + ro.name + " is a read only property and cannot be assigned a value.", []string{ro.name}, ro.name})
		}
	}
	var enable *bool
	if p.Enable != nil {
		var v bool
		if text := strings.TrimSpace(string(p.Enable)); text == "null" || json.Unmarshal(p.Enable, &v) != nil {
			bad = append(bad, &propertyError{"PropertyValueTypeError", "The value " + text + " for the property SecureBootEnable is of a different type than the property can accept (Boolean).", []string{text, "SecureBootEnable"}, "SecureBootEnable"})
		} else {
			enable = &v
		}
	}
	if enable != nil && *enable && !sys.hw.UEFI {
		bad = append(bad, &propertyError{"PropertyValueConflict", "The property SecureBootEnable could not be written because its value would conflict with the value of the BootMode property: UEFI Secure Boot needs UEFI firmware and this machine boots legacy BIOS.", []string{"SecureBootEnable", "BootMode"}, "SecureBootEnable"})
	}
	if len(bad) > 0 {
		return bad
	}
	sb := sys.secure
	sb.mu.Lock()
	tag, err := etagOf(sys.secureBootLocked())
	if err != nil {
		sb.mu.Unlock()
		return err
	}
	if !ifMatch(q.r.Header.Values("If-Match"), tag) {
		sb.mu.Unlock()
		return errPrecondition()
	}
	changed := enable != nil && *enable != sb.enable
	if enable != nil {
		sb.enable = *enable
	}
	view := sys.secureBootLocked()
	sb.mu.Unlock()
	if changed {
		detail := "SecureBootEnable " + onOff(*enable) + " for the next boot"
		sys.log().Info("secure boot set", "event", "secure_boot", "state", detail)
		s.record(sys, events.BMCRedfishSecureBoot, detail)
	}
	return q.ok(view)
}

func (s *Server) postResetKeys(q *request, sys *system) error {
	var req resetKeysRequest
	if err := decodeBody(q.r.Body, &req, false); err != nil {
		return err
	}
	if req.ResetKeysType == nil {
		return errMissing("ResetKeysType")
	}
	mode := ""
	switch *req.ResetKeysType {
	case "ResetAllKeysToDefault":
		mode = modeUser
	case "DeleteAllKeys", "DeletePK":
		mode = modeSetup
	default:
		return errBadValue("ResetKeysType", *req.ResetKeysType)
	}
	sb := sys.secure
	sb.mu.Lock()
	sb.mode = mode
	sb.mu.Unlock()
	detail := "ResetKeys " + *req.ResetKeysType + ": " + mode
	sys.log().Info("secure boot keys reset", "event", "secure_boot", "state", detail)
	s.record(sys, events.BMCRedfishSecureBoot, detail)
	return q.noContent()
}

// secureBootAtBoot decides SecureBootCurrentBoot for the boot starting.
func (sys *system) secureBootAtBoot() {
	sb := sys.secure
	sb.mu.Lock()
	was := sb.current
	sb.current = sb.enable && sb.mode != modeSetup
	now := sb.current
	sb.mu.Unlock()
	if was != now {
		detail := "SecureBootCurrentBoot " + onOff(now)
		sys.log().Info("secure boot", "event", "secure_boot", "state", detail)
		sys.srv.record(sys, events.BMCRedfishSecureBoot, detail)
	}
}

func onOff(b bool) string {
	if b {
		return "Enabled"
	}
	return "Disabled"
}
