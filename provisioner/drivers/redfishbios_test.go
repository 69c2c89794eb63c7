package drivers

import (
	"errors"
	"testing"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
)

// TestRedfishBiosFactoryReset runs bios.factory_reset against bmcemu's
// Redfish service: #Bios.ResetBios stages the defaults for the next boot
// and the system is powered on (it was off) through the power interface.
// Bad apply_configuration settings fail before anything is sent.
func TestRedfishBiosFactoryReset(t *testing.T) {
	m := &mediaMachine{drives: map[bmcemu.MediaDevice]string{}}
	node, tl := startRedfishService(t, m, nil)
	h, err := NewRedfish(RedfishConfig{ConnectionAttempts: 2, ConnectionRetryInterval: 1,
		PollInterval: 10 * time.Millisecond, PowerTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bios := h.Bios["redfish"]
	task := &Task{Node: node, Power: h.Power["redfish"]}
	if err := bios.RunDeployStep(t.Context(), task, "factory_reset", nil); err != nil {
		t.Fatal(err)
	}
	if on, _ := m.PowerState(t.Context()); !on {
		t.Error("the system was not powered on to apply the reset")
	}
	var details []string
	for _, e := range tl.Node("vm0") {
		if e.Kind == events.BMCRedfishBios {
			details = append(details, e.Detail)
		}
	}
	if len(details) != 1 || details[0] != "reset to defaults staged for the next reset" {
		t.Errorf("BIOS events: %q", details)
	}
	for _, settings := range []any{nil, "x", []any{}, []any{map[string]any{"name": "LogicalProc"}}} {
		err := bios.RunDeployStep(t.Context(), task, "apply_configuration", map[string]any{"settings": settings})
		if err == nil || !errors.Is(err, ErrInvalidParameter) {
			t.Errorf("settings %v: %v", settings, err)
		}
	}
}
