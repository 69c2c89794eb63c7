package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/metalbed/metalbed/provisioner/conductor"
)

// continueInspection is the ramdisk's POST /v1/continue_inspection, where
// the agent posts its inventory during "agent" inspection (IPA's
// inspector.call_inspector). It is public, like lookup: the node must be
// in "inspect wait" and every lookup failure is the same 404. Ironic
// serves it at 1.84+ and, for ironic-inspector compatibility, at 1.1 —
// what IPA's unversioned POST negotiates — answering 202 {"uuid": node}.
func (s *Server) continueInspection(w http.ResponseWriter, r *http.Request) error {
	if minor(r) != minMinor {
		return clientErr(http.StatusNotFound, "API version 1.84 or newer is required")
	}
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		return err
	}
	inv, err := checkInspectionData(body)
	if err != nil {
		return err
	}
	delete(body, "inventory")
	id, err := s.c.ContinueInspection(r.Context(), conductor.InspectionData{Inventory: inv, PluginData: body})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, obj{{"uuid", id}})
	return nil
}

// checkInspectionData applies Ironic's DATA_VALIDATOR (the minimal
// acceptable inventory) with its schema error messages.
func checkInspectionData(body map[string]any) (map[string]any, error) {
	schemaErr := func(format string, a ...any) error {
		return badRequest("Schema error for data: " + fmt.Sprintf(format, a...))
	}
	raw, ok := body["inventory"]
	if !ok {
		return nil, schemaErr("'inventory' is a required property")
	}
	inv, ok := raw.(map[string]any)
	if !ok {
		return nil, schemaErr("%s is not of type 'object'", pyJSON(raw))
	}
	for _, k := range []string{"bmc_address", "bmc_v6address"} {
		if v, ok := inv[k]; ok && v != nil {
			if _, ok := v.(string); !ok {
				return nil, schemaErr("%s is not of type 'string', 'null'", pyJSON(v))
			}
		}
	}
	rawIfaces, ok := inv["interfaces"]
	if !ok {
		return nil, schemaErr("'interfaces' is a required property")
	}
	ifaces, ok := rawIfaces.([]any)
	if !ok {
		return nil, schemaErr("%s is not of type 'array'", pyJSON(rawIfaces))
	}
	if len(ifaces) == 0 {
		return nil, schemaErr("[] should be non-empty")
	}
	for _, i := range ifaces {
		m, ok := i.(map[string]any)
		if !ok {
			return nil, schemaErr("%s is not of type 'object'", pyJSON(i))
		}
		mac, ok := m["mac_address"]
		if !ok {
			return nil, schemaErr("'mac_address' is a required property")
		}
		if _, ok := mac.(string); !ok {
			return nil, schemaErr("%s is not of type 'string'", pyJSON(mac))
		}
	}
	return inv, nil
}

// inventory is GET /v1/nodes/{node}/inventory (1.81): what the node's
// last inspection stored, {"inventory": …, "plugin_data": …}.
func (s *Server) inventory(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 81 {
		return errNotFound
	}
	inv, err := s.c.Inventory(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, obj{
		{"inventory", json.RawMessage(inv.Inventory)},
		{"plugin_data", json.RawMessage(inv.PluginData)},
	})
	return nil
}
