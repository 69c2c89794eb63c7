package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// VIFs (API 1.28+, NodeVIFController): attach, list, detach, kept on the
// node's ports as Ironic's port-ID network interfaces keep them.

func (s *Server) listVIFs(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 28 {
		return errNotFound
	}
	ids, err := s.c.VIFs(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	vifs := make([]obj, 0, len(ids))
	for _, id := range ids {
		vifs = append(vifs, obj{{"id", id}})
	}
	writeJSON(w, http.StatusOK, obj{{"vifs", vifs}})
	return nil
}

func (s *Server) attachVIF(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 28 {
		return errNotFound
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(err.Error())
	}
	var vif map[string]any
	if err := json.Unmarshal(body, &vif); err != nil || vif == nil {
		return badRequest("Invalid data: the VIF must be a JSON object with an 'id'")
	}
	id, ok := vif["id"].(string)
	if !ok {
		return badRequest(fmt.Sprintf("Schema error for vif: 'id' is a required property of %s", pyJSON(vif)))
	}
	if id == "" {
		return badRequest("Schema error for vif: 'id' must not be empty")
	}
	port, _ := vif["port_uuid"].(string)
	if minor(r) >= 67 {
		if _, both := vif["portgroup_uuid"]; both && port != "" {
			return badRequest("Cannot specify both port_uuid and portgroup_uuid")
		}
	} else {
		port = ""
	}
	if err := s.c.AttachVIF(r.Context(), r.PathValue("node"), id, port); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) detachVIF(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 28 {
		return errNotFound
	}
	if err := s.c.DetachVIF(r.Context(), r.PathValue("node"), r.PathValue("vif")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// setBootMode is PUT /v1/nodes/{node}/states/boot_mode (1.76+).
func (s *Server) setBootMode(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 76 {
		return clientErr(http.StatusNotFound, "This endpoint is supported starting with the API version 1.76")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return badRequest(err.Error())
	}
	var in struct {
		Target *string `json:"target"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return badRequest("Invalid data: " + err.Error())
	}
	if in.Target == nil {
		return badRequest("Missing argument: \"target\"")
	}
	if *in.Target != "bios" && *in.Target != "uefi" {
		return badRequest(fmt.Sprintf("Invalid boot mode %s requested for node. Allowed boot modes are: bios, uefi", *in.Target))
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	if err := s.c.SetBootMode(r.Context(), n.UUID, *in.Target); err != nil {
		return err
	}
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+n.UUID+"/states")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
