package redfish

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
)

// The Bios resource of a system (Bios.v1_1_0) and its Settings object, as
// firmware behind a BMC has them: Bios.Attributes are the values in effect
// and cannot be PATCHed; a PATCH of Bios/Settings stages values, validated
// against the attribute registry (registry.go), which the firmware applies
// at the machine's next power-on or reset (ApplyTime OnReset, the only one
// supported). The Settings object is empty again after that boot, and
// Bios's @Redfish.Settings tells the Time and outcome of the application.
//
// Bios.ResetBios, too, takes effect at the next power-on or reset, as on
// real BMCs: it replaces whatever is staged with the registry defaults of
// every writable attribute, so Settings shows what the boot will change and
// a PATCH after it still applies on top. Read-only attributes (BootMode,
// which is the machine's firmware mode, SystemBiosVersion) keep their
// values.
//
// Bios.ChangePassword sets the setup (AdminPassword) or power-on
// (UserPassword) password at once; both start empty, and OldPassword must
// match the one set. The passwords are never shown, logged or recorded.

const (
	// applyOnReset is the one ApplyTime of Settings.
	applyOnReset = "OnReset"
	// biosPasswordMax bounds a BIOS password's length.
	biosPasswordMax = 32
)

// biosPasswords are the PasswordName values of #Bios.ChangePassword.
var biosPasswords = []string{"AdminPassword", "UserPassword"}

// biosState is one system's BIOS, in memory. A fleet of thousands of
// systems mostly never touches its BIOS: the maps stay nil until the
// first change, and the attributes in effect are the defaults of the
// boot mode (biosDefaults) under what was applied since.
type biosState struct {
	mu        sync.Mutex
	uefi      bool              // the machine's boot mode at start: the defaults
	changed   map[string]any    // attributes applied since start; nil: none
	pending   map[string]any    // Bios/Settings Attributes, for the next boot
	applied   time.Time         // when Settings were last applied; zero: never
	passwords map[string]string // passwords set; a missing one is empty
}

func newBiosState(uefi bool) *biosState { return &biosState{uefi: uefi} }

// biosDefaults are the attributes a system starts with, by boot mode
// (false: legacy BIOS, true: UEFI); never modified.
var biosDefaults = func() map[bool]map[string]any {
	d := map[bool]map[string]any{false: {}, true: {}}
	for _, a := range biosAttributes {
		d[false][a.name], d[true][a.name] = a.initial(false), a.initial(true)
	}
	return d
}()

// currentLocked is a copy of the attributes in effect. b.mu is held.
func (b *biosState) currentLocked() map[string]any {
	m := copyAttributes(biosDefaults[b.uefi])
	for k, v := range b.changed {
		m[k] = v
	}
	return m
}

// Bios and Settings as DMTF types.

type biosResource struct {
	resource
	Description       string              `json:"Description"`
	AttributeRegistry string              `json:"AttributeRegistry"`
	Attributes        map[string]any      `json:"Attributes"`
	Settings          *settingsObject     `json:"@Redfish.Settings,omitempty"`
	ApplyTime         *preferredApplyTime `json:"@Redfish.SettingsApplyTime,omitempty"`
	Actions           *biosActions        `json:"Actions,omitempty"`
}

// settingsObject is the @Redfish.Settings annotation (Settings.v1_3_3).
type settingsObject struct {
	ODataType           string            `json:"@odata.type"`
	SettingsObject      odataID           `json:"SettingsObject"`
	SupportedApplyTimes []string          `json:"SupportedApplyTimes"`
	Time                string            `json:"Time,omitempty"`
	Messages            []settingsMessage `json:"Messages,omitempty"`
}

type settingsMessage struct {
	MessageID string `json:"MessageId"`
	Message   string `json:"Message"`
	Severity  string `json:"Severity"`
}

// preferredApplyTime is the @Redfish.SettingsApplyTime annotation.
type preferredApplyTime struct {
	ODataType string   `json:"@odata.type"`
	ApplyTime string   `json:"ApplyTime"`
	Allowed   []string `json:"ApplyTime@Redfish.AllowableValues"`
}

type biosActions struct {
	ResetBios      action `json:"#Bios.ResetBios"`
	ChangePassword action `json:"#Bios.ChangePassword"`
}

// Request bodies.

type biosSettingsPatch struct {
	Attributes map[string]json.RawMessage `json:"Attributes"`
	ApplyTime  *applyTimeRequest          `json:"@Redfish.SettingsApplyTime"`
}

type applyTimeRequest struct {
	ODataType *string `json:"@odata.type"`
	ApplyTime *string `json:"ApplyTime"`
}

type changePasswordRequest struct {
	PasswordName *string `json:"PasswordName"`
	OldPassword  *string `json:"OldPassword"`
	NewPassword  *string `json:"NewPassword"`
}

func (sys *system) biosPath() string { return sys.path() + "/Bios" }

// biosView renders the Bios resource.
func (sys *system) biosView() biosResource {
	b := sys.bios
	b.mu.Lock()
	defer b.mu.Unlock()
	p := sys.biosPath()
	so := &settingsObject{
		ODataType:           "#Settings.v1_3_3.Settings",
		SettingsObject:      odataID{p + "/Settings"},
		SupportedApplyTimes: []string{applyOnReset},
	}
	if !b.applied.IsZero() {
		so.Time = b.applied.UTC().Format(time.RFC3339)
		so.Messages = []settingsMessage{{MessageID: baseRegistry + "Success", Message: "Successfully Completed Request", Severity: "OK"}}
	}
	return biosResource{
		resource:          resource{ODataID: p, ODataType: "#Bios.v1_1_0.Bios", ID: "BIOS", Name: "BIOS Configuration Current Settings"},
		Description:       "The BIOS attributes in effect",
		AttributeRegistry: biosRegistryID,
		Attributes:        sys.currentAttributes(),
		Settings:          so,
		Actions: &biosActions{
			ResetBios:      action{Target: p + "/Actions/Bios.ResetBios"},
			ChangePassword: action{Target: p + "/Actions/Bios.ChangePassword"},
		},
	}
}

// settingsView renders Bios/Settings: the attributes staged for the next
// boot.
func (sys *system) settingsView() biosResource {
	sys.bios.mu.Lock()
	defer sys.bios.mu.Unlock()
	return sys.settingsLocked()
}

func (sys *system) settingsLocked() biosResource {
	return biosResource{
		resource:          resource{ODataID: sys.biosPath() + "/Settings", ODataType: "#Bios.v1_1_0.Bios", ID: "Settings", Name: "BIOS Configuration Pending Settings"},
		Description:       "The BIOS attributes staged for the next power-on or reset",
		AttributeRegistry: biosRegistryID,
		Attributes:        copyAttributes(sys.bios.pending),
		ApplyTime: &preferredApplyTime{
			ODataType: "#Settings.v1_3_3.PreferredApplyTime",
			ApplyTime: applyOnReset,
			Allowed:   []string{applyOnReset},
		},
	}
}

func copyAttributes(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// validateAttributes checks every attribute of a Settings PATCH against
// the registry and returns them as stored, or every property in error.
func validateAttributes(attrs map[string]json.RawMessage) (map[string]any, error) {
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	out := map[string]any{}
	var bad propertyErrors
	for _, name := range names {
		a, ok := biosAttributeByName(name)
		if !ok {
			prop := "Attributes/" + name
			bad = append(bad, &propertyError{"PropertyUnknown", fmt.Sprintf("The property %s is not in the list of valid properties for the resource.", prop), []string{prop}, prop})
			continue
		}
		v, perr := a.parse(attrs[name])
		if perr != nil {
			bad = append(bad, perr)
			continue
		}
		out[name] = v
	}
	if len(bad) > 0 {
		return nil, bad
	}
	return out, nil
}

// formatAttributes is "A=1 B=x" in name order, for logs and events.
func formatAttributes(m map[string]any) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func (s *Server) getBios(q *request, sys *system) error {
	return q.ok(sys.biosView())
}

func (s *Server) getBiosSettings(q *request, sys *system) error {
	return q.ok(sys.settingsView())
}

// patchBiosSettings stages attributes for the next boot: all of them, or
// none when one is in error or If-Match does not match.
func (s *Server) patchBiosSettings(q *request, sys *system) error {
	var p biosSettingsPatch
	if err := decodeBody(q.r.Body, &p, false); err != nil {
		return err
	}
	if p.ApplyTime != nil && p.ApplyTime.ApplyTime != nil && *p.ApplyTime.ApplyTime != applyOnReset {
		return errBadValue("@Redfish.SettingsApplyTime/ApplyTime", *p.ApplyTime.ApplyTime)
	}
	if p.Attributes == nil {
		return errMissing("Attributes")
	}
	staged, err := validateAttributes(p.Attributes)
	if err != nil {
		return err
	}
	b := sys.bios
	b.mu.Lock()
	tag, err := etagOf(sys.settingsLocked())
	if err != nil {
		b.mu.Unlock()
		return err
	}
	if !ifMatch(q.r.Header.Values("If-Match"), tag) {
		b.mu.Unlock()
		return errPrecondition()
	}
	if b.pending == nil {
		b.pending = map[string]any{}
	}
	for k, v := range staged {
		b.pending[k] = v
	}
	view := sys.settingsLocked()
	b.mu.Unlock()
	if len(staged) > 0 {
		detail := "staged " + formatAttributes(staged) + " for the next reset"
		sys.log().Info("BIOS settings staged", "event", "bios", "state", detail)
		s.record(sys, events.BMCRedfishBios, detail)
	}
	return q.ok(view)
}

// postResetBios stages the defaults of every writable attribute for the
// next boot, in place of anything staged.
func (s *Server) postResetBios(q *request, sys *system) error {
	var req struct{}
	if err := decodeBody(q.r.Body, &req, true); err != nil {
		return err
	}
	b := sys.bios
	b.mu.Lock()
	b.pending = map[string]any{}
	for _, a := range biosAttributes {
		if !a.readOnly {
			b.pending[a.name] = a.def
		}
	}
	b.mu.Unlock()
	sys.log().Info("BIOS reset to defaults staged", "event", "bios")
	s.record(sys, events.BMCRedfishBios, "reset to defaults staged for the next reset")
	return q.noContent()
}

func (s *Server) postChangeBiosPassword(q *request, sys *system) error {
	var req changePasswordRequest
	if err := decodeBody(q.r.Body, &req, false); err != nil {
		return err
	}
	switch {
	case req.PasswordName == nil:
		return errMissing("PasswordName")
	case req.OldPassword == nil:
		return errMissing("OldPassword")
	case req.NewPassword == nil:
		return errMissing("NewPassword")
	}
	name := *req.PasswordName
	b := sys.bios
	b.mu.Lock()
	old := b.passwords[name]
	switch {
	case !slices.Contains(biosPasswords, name):
		b.mu.Unlock()
		return errBadValue("PasswordName", name)
	case old != *req.OldPassword:
		b.mu.Unlock()
		return &apiError{http.StatusBadRequest, "ActionParameterValueError", "The value provided for the parameter OldPassword is not the current " + name + "."}
	case len(*req.NewPassword) > biosPasswordMax:
		b.mu.Unlock()
		return &apiError{http.StatusBadRequest, "ActionParameterValueError", fmt.Sprintf("The value provided for the parameter NewPassword is longer than %d characters.", biosPasswordMax)}
	}
	if b.passwords == nil {
		b.passwords = map[string]string{}
	}
	b.passwords[name] = *req.NewPassword
	b.mu.Unlock()
	sys.log().Info("BIOS password changed", "event", "bios", "state", name)
	s.record(sys, events.BMCRedfishBios, "password "+name+" changed")
	return q.noContent()
}

// firmwareEvent is the firmware's part of a power-on or reset: POST applies
// the staged BIOS settings and decides the Secure Boot state of this boot.
func (sys *system) firmwareEvent(ev bmcemu.MachineEvent) {
	if ev.Kind != bmcemu.EventPowerOn && ev.Kind != bmcemu.EventReset {
		return
	}
	if applied := sys.applyBiosSettings(); len(applied) > 0 {
		detail := "applied " + formatAttributes(applied) + " at " + string(ev.Kind)
		sys.log().Info("BIOS settings applied", "event", "bios", "state", detail)
		sys.srv.record(sys, events.BMCRedfishBios, detail)
	}
	sys.secureBootAtBoot()
}

// applyBiosSettings moves the staged attributes into effect and returns
// them (none: nothing was staged).
func (sys *system) applyBiosSettings() map[string]any {
	b := sys.bios
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 {
		return nil
	}
	applied := b.pending
	if b.changed == nil {
		b.changed = map[string]any{}
	}
	for k, v := range applied {
		b.changed[k] = v
	}
	b.pending = nil
	b.applied = sys.srv.cfg.Now()
	return applied
}

// currentAttributes are the attributes in effect, SystemBiosVersion the
// BIOS the machine runs (an UpdateService image changes it). sys.bios.mu
// is held.
func (sys *system) currentAttributes() map[string]any {
	m := sys.bios.currentLocked()
	_, m["SystemBiosVersion"] = sys.fw.versions()
	return m
}
