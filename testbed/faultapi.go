package testbed

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/metalbed/metalbed/internal/events"
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
//
// POST refuses (400, {"error": …}) what `metalbed fault add` refuses: an
// unknown layer or action, an arg the action's layer cannot read
// (fault.CheckArg), and a node knownNode does not know.
func faultHandler(set *fault.Set, httpBoot HTTPBootInfo, knownNode func(name string) error, next http.Handler) http.Handler {
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
		if err := knownNode(rule.Node); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
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

// knownNode refuses a fault rule's node the testbed does not have: a rule
// names every node ("" or "*"), or one by a name rules match on (the
// machine's name, the node's name or UUID, fault.Set.MatchAny), as tl
// knows them.
func knownNode(tl *events.Timeline) func(name string) error {
	return func(name string) error {
		if name == "" || name == "*" {
			return nil
		}
		if id, ok := tl.Lookup(name); ok {
			for _, n := range []string{id.Machine, id.NodeName, id.Node} {
				if n != "" && strings.EqualFold(n, name) {
					return nil
				}
			}
		}
		return fmt.Errorf("fault node %q: no such machine or node here (machines: %s)", name, strings.Join(tl.Nodes(), ", "))
	}
}
