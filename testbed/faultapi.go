package testbed

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/metalbed/metalbed/internal/fault"
)

// faultHandler serves the fault rules beside the timeline:
//
//	GET    /v1/faults        the rules, with how often each has fired
//	POST   /v1/faults        add one rule (a JSON fault.Rule); 201 with the rule
//	DELETE /v1/faults        remove every rule (?node=NAME: only that node's)
//	DELETE /v1/faults/{id}   remove one rule
//
// GET also names the HTTP boot server layer http breaks (its URL and the
// directory it serves), where a <machine>/ folder holds files fetched for
// that machine.
func faultHandler(set *fault.Set, httpBoot HTTPBootInfo, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, FaultsDoc{Faults: set.List(), HTTPBoot: httpBoot})
	})
	mux.HandleFunc("POST /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		var rule fault.Rule
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rule); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "fault rule: " + err.Error()})
			return
		}
		added, err := set.Add(rule)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusCreated, added)
	})
	mux.HandleFunc("DELETE /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		set.Clear(r.URL.Query().Get("node"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /v1/faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := set.Remove(r.PathValue("id")); err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// FaultsDoc is the body of GET /v1/faults.
type FaultsDoc struct {
	Faults   []fault.Rule `json:"faults"`
	HTTPBoot HTTPBootInfo `json:"http_boot"`
}

// HTTPBootInfo is where the HTTP boot server is.
type HTTPBootInfo struct {
	URL  string `json:"url,omitempty"`
	Root string `json:"root,omitempty"`
}
