package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/cucumber/godog"
)

// registerRedfishDriverSteps: nodes of metalbed's own redfish hardware
// type, pointed at the environment's Redfish service as inventory.json
// names each machine's system.
func (w *world) registerRedfishDriverSteps(sc *godog.ScenarioContext) {
	sc.Step(`^machine "([^"]*)" is enrolled with the redfish driver$`, w.enrollRedfish)
}

// enrollRedfish creates node name with driver redfish and the driver_info
// Ironic's redfish hardware type reads, from inventory.json's "redfish".
func (w *world) enrollRedfish(ctx context.Context, name string) error {
	if err := w.needEnv(); err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(w.env.dir, "machines", "inventory.json"))
	if err != nil {
		return fmt.Errorf("inventory of the machines: %w", err)
	}
	var inv struct {
		Nodes []struct {
			Name    string         `json:"name"`
			Redfish map[string]any `json:"redfish"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(raw, &inv); err != nil {
		return fmt.Errorf("inventory.json: %w", err)
	}
	for _, n := range inv.Nodes {
		if n.Name != name {
			continue
		}
		if n.Redfish == nil {
			return fmt.Errorf("machine %q has no Redfish system in inventory.json", name)
		}
		info := map[string]any{}
		for _, k := range []string{"address", "system_id", "username", "password", "verify_ca"} {
			info["redfish_"+k] = n.Redfish[k]
		}
		r, err := w.must(ctx, http.StatusCreated, "POST", "/v1/nodes", map[string]any{"name": name, "driver": "redfish", "driver_info": info})
		if err != nil {
			return err
		}
		var node apiNode
		if err := json.Unmarshal(r.body, &node); err != nil {
			return fmt.Errorf("node create body: %w", err)
		}
		w.nodes[name] = node.UUID
		return nil
	}
	return fmt.Errorf("no machine %q in inventory.json", name)
}
