package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/metalbed/metalbed/provisioner/api"
)

func faultstring(t *testing.T, r resp) string {
	t.Helper()
	em, _ := r.obj(t)["error_message"].(string)
	var inner struct {
		Faultstring string `json:"faultstring"`
	}
	if err := json.Unmarshal([]byte(em), &inner); err != nil {
		t.Fatalf("error_message is not a JSON string: %q", em)
	}
	return inner.Faultstring
}

func TestVersionNegotiation(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.must(t, 201, "POST", "/v1/nodes", "1.5", map[string]any{"driver": "fake-hardware", "name": "n0"}).obj(t)["uuid"].(string)
	for _, tc := range []struct {
		version, want string
	}{{"", "1.1"}, {"latest", "1.82"}, {"1.78", "1.78"}, {"1.1", "1.1"}} {
		r := s.must(t, 200, "GET", "/v1/nodes/"+id, tc.version, nil)
		if got := r.header.Get("X-OpenStack-Ironic-API-Version"); got != tc.want {
			t.Errorf("%q: version %q, want %q", tc.version, got, tc.want)
		}
		if got := r.header.Get("OpenStack-API-Version"); got != "baremetal "+tc.want {
			t.Errorf("%q: OpenStack-API-Version %q", tc.version, got)
		}
		if r.header.Get("X-OpenStack-Ironic-API-Minimum-Version") != "1.1" || r.header.Get("X-OpenStack-Ironic-API-Maximum-Version") != "1.82" {
			t.Errorf("%q: min/max headers %v", tc.version, r.header)
		}
		_, hasName := r.obj(t)["name"]
		if hasName != (tc.want != "1.1") {
			t.Errorf("%q: name shown %v", tc.version, hasName)
		}
	}
	for _, v := range []string{"2.1", "1.0", "1.83", "one", "1.x"} {
		if r := s.do(t, "GET", "/v1/nodes", v, nil); r.status != http.StatusNotAcceptable {
			t.Errorf("%q: status %d", v, r.status)
		}
	}
	// Creating a node at 1.1 leaves it available (pre-1.11 semantics);
	// a field newer than the request is 406.
	r := s.must(t, 201, "POST", "/v1/nodes", "", map[string]any{"driver": "fake-hardware"})
	if r.obj(t)["provision_state"] != "available" {
		t.Errorf("1.1 create: %v", r.obj(t)["provision_state"])
	}
	s.must(t, 406, "POST", "/v1/nodes", "1.50", map[string]any{"driver": "fake-hardware", "description": "x"})
	s.must(t, 406, "PUT", "/v1/nodes/"+id+"/states/provision", "1.3", map[string]any{"target": "manage"})
	s.must(t, 406, "PUT", "/v1/nodes/"+id+"/states/power", "1.26", map[string]any{"target": "power on", "timeout": 5})
	s.must(t, 404, "GET", "/v1/nodes/"+id+"/history", "1.77", nil)
	for _, p := range []string{"/v1/", "/v1/drivers/", "/v1/nodes/?detail=True", "/v1/nodes/" + id + "/"} {
		s.must(t, 200, "GET", p, "1.78", nil)
	}
	if r := s.must(t, 200, "GET", "/", "", nil); r.header.Get("X-OpenStack-Ironic-API-Version") != "" {
		t.Error("root document carries a version header")
	}
}

func TestBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(path, []byte("# users\nadmin:"+string(hash)+"\n"), 0o600)
	s := newStack(t, stackOpts{htpasswd: path})

	get := func(path, user, pass string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+path, nil)
		req.Header.Set("X-OpenStack-Ironic-API-Version", "1.68")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := get("/v1/nodes", "", ""); res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("no credentials: %d %v", res.StatusCode, res.Header)
	}
	if res := get("/v1/nodes", "admin", "wrong"); res.StatusCode != 401 {
		t.Errorf("wrong password: %d", res.StatusCode)
	}
	if res := get("/v1/nodes", "nobody", "s3cret"); res.StatusCode != 401 {
		t.Errorf("unknown user: %d", res.StatusCode)
	}
	if res := get("/v1/nodes", "admin", "s3cret"); res.StatusCode != 200 {
		t.Errorf("right credentials: %d", res.StatusCode)
	}
	for _, p := range []string{"/", "/v1", "/v1/lookup?addresses=52:54:00:12:34:56"} {
		if res := get(p, "", ""); res.StatusCode == 401 {
			t.Errorf("%s needs credentials; it must be public", p)
		}
	}

	os.WriteFile(path, []byte("admin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"), 0o600)
	if _, err := api.LoadHTPasswd(path); err == nil {
		t.Error("non-bcrypt htpasswd accepted")
	}
}

func TestRamdiskEndpointsAreGuarded(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware"}).obj(t)["uuid"].(string)
	s.must(t, 201, "POST", "/v1/ports", "1.82", map[string]any{"address": "52:54:00:12:34:56", "node_uuid": id})
	s.must(t, 404, "GET", "/v1/lookup?addresses=52:54:00:12:34:56", "1.68", nil) // enroll: not allowed
	s.setState(t, id, "wait call-back")

	first := s.must(t, 200, "GET", "/v1/lookup?addresses=52:54:00:12:34:56", "1.68", nil).obj(t)
	token, _ := first["config"].(map[string]any)["agent_token"].(string)
	if len(token) < 32 || first["node"].(map[string]any)["uuid"] != id {
		t.Fatalf("first lookup: %v", first)
	}
	again := s.must(t, 200, "GET", "/v1/lookup?addresses=52:54:00:12:34:56", "1.68", nil).obj(t)
	if again["config"].(map[string]any)["agent_token"] != "******" {
		t.Errorf("second lookup shows the token: %v", again["config"])
	}

	bad := s.must(t, 400, "POST", "/v1/heartbeat/"+id, "1.68", map[string]any{"callback_url": "http://127.0.0.1:9999", "agent_token": "nope"})
	want := capture(t, "agent-heartbeat-400-after-deploy.json").(map[string]any)["resp"].(map[string]any)["error_message"]
	if bad.obj(t)["error_message"] != want {
		t.Errorf("bad token answer %s, Ironic %s", bad.body, want)
	}
	// The lookup came from 127.0.0.1: the token holder cannot point the
	// conductor elsewhere (Ironic's status and message for a changed URL).
	const changed = `Detected change in ramdisk provided "callback_url"`
	foreign := s.must(t, 400, "POST", "/v1/heartbeat/"+id, "1.68", map[string]any{"callback_url": "http://192.0.2.7:9999", "agent_token": token})
	if got := faultstring(t, foreign); got != changed {
		t.Errorf("foreign callback_url: %q, want Ironic's %q", got, changed)
	}
	s.must(t, 202, "POST", "/v1/heartbeat/"+id, "1.68", map[string]any{"callback_url": "http://127.0.0.1:9999", "agent_token": token, "agent_version": "9.4.0"})
	n, _ := s.st.Node(context.Background(), id)
	if n.DriverInternalInfo["agent_url"] != "http://127.0.0.1:9999" || n.DriverInternalInfo["agent_last_heartbeat"] == nil {
		t.Errorf("heartbeat not recorded: %v", n.DriverInternalInfo)
	}
	// Once recorded, the agent URL may not change (Ironic's check).
	moved := s.must(t, 400, "POST", "/v1/heartbeat/"+id, "1.68", map[string]any{"callback_url": "http://127.0.0.1:9998", "agent_token": token})
	if got := faultstring(t, moved); got != changed {
		t.Errorf("changed callback_url: %q, want Ironic's %q", got, changed)
	}
	shown := s.must(t, 200, "GET", "/v1/nodes/"+id, "1.82", nil).obj(t)["driver_internal_info"].(map[string]any)
	if shown["agent_secret_token"] != "******" {
		t.Errorf("node show leaks the token: %v", shown)
	}
	// Bash-ramdisk callbacks need the deploy key.
	r := s.must(t, 400, "POST", "/v1/nodes/"+id+"/vendor_passthru?method=pass_deploy_info", "1.1",
		map[string]any{"address": "127.0.0.1", "key": "guess", "iqn": "iqn.x", "error": ""})
	if !strings.HasPrefix(faultstring(t, r), "Deploy key guess does not match") {
		t.Errorf("wrong deploy key: %s", r.body)
	}
}

func TestNodePatch(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware", "name": "p0",
		"driver_info": map[string]any{"ipmi_password": "old", "ipmi_port": 623}, "extra": map[string]any{"a": 1}}).obj(t)["uuid"].(string)
	s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware", "name": "p1"})

	got := s.must(t, 200, "PATCH", "/v1/nodes/p0", "1.82", []map[string]any{
		{"op": "replace", "path": "/driver_info/ipmi_password", "value": "new"},
		{"op": "remove", "path": "/extra/a"},
		{"op": "add", "path": "/properties/cpus", "value": 4},
		{"op": "replace", "path": "/description", "value": "rack 1"},
	}).obj(t)
	if got["driver_info"].(map[string]any)["ipmi_password"] != "******" || got["driver_info"].(map[string]any)["ipmi_port"] != float64(623) {
		t.Errorf("driver_info shown %v", got["driver_info"])
	}
	if len(got["extra"].(map[string]any)) != 0 || got["properties"].(map[string]any)["cpus"] != float64(4) || got["description"] != "rack 1" {
		t.Errorf("patched node: %v", got)
	}
	n, _ := s.st.Node(context.Background(), id)
	if n.DriverInfo["ipmi_password"] != "new" {
		t.Errorf("stored password %v", n.DriverInfo["ipmi_password"])
	}
	for _, tc := range []struct {
		ops    []map[string]any
		status int
		msg    string
	}{
		{[]map[string]any{{"op": "replace", "path": "/uuid", "value": "x"}}, 400, "'/uuid' is an internal attribute and can not be updated"},
		{[]map[string]any{{"op": "replace", "path": "/provision_state", "value": "active"}}, 400, ""},
		{[]map[string]any{{"op": "add", "path": "/foo", "value": 1}}, 400, "Adding a new attribute (/foo) to the root of the resource is not allowed"},
		{[]map[string]any{{"op": "remove", "path": "/extra/missing"}}, 400, ""},
		{[]map[string]any{{"op": "copy", "path": "/name", "from": "/driver"}}, 400, ""},
		{[]map[string]any{{"op": "replace", "path": "/name", "value": "p1"}}, 409, "A node with name p1 already exists."},
		{[]map[string]any{{"op": "replace", "path": "/driver", "value": "nonesuch"}}, 400, ""},
		{[]map[string]any{{"op": "replace", "path": "/maintenance", "value": "maybe"}}, 400, ""},
		{[]map[string]any{{"op": "replace", "path": "/deploy_interface", "value": "direct"}}, 400, ""},
	} {
		r := s.do(t, "PATCH", "/v1/nodes/p0", "1.82", tc.ops)
		if r.status != tc.status || (tc.msg != "" && faultstring(t, r) != tc.msg) {
			t.Errorf("%v: %d %s", tc.ops, r.status, r.body)
		}
	}
	// Changing the driver: interfaces of the old one are refused unless
	// reset_interfaces asks for the new driver's defaults.
	s.must(t, 400, "PATCH", "/v1/nodes/p1", "1.82", []map[string]any{{"op": "replace", "path": "/driver", "value": "ipmi"}})
	moved := s.must(t, 200, "PATCH", "/v1/nodes/p1?reset_interfaces=true", "1.82", []map[string]any{{"op": "replace", "path": "/driver", "value": "ipmi"}}).obj(t)
	if moved["power_interface"] != "ipmitool" || moved["deploy_interface"] != "direct" {
		t.Errorf("after driver change: %v", moved)
	}
	if n2, _ := s.st.Node(context.Background(), id); n2.Name != "p0" || n2.Driver != "fake-hardware" || n2.Reservation != "" {
		t.Errorf("refused patches changed the node: %+v", n2)
	}
}

func TestListPagingAndFilters(t *testing.T) {
	s := newStack(t, stackOpts{})
	for _, name := range []string{"b", "c", "a"} {
		s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware", "name": name})
	}
	page := s.must(t, 200, "GET", "/v1/nodes?limit=2&sort_key=name", "1.82", nil).obj(t)
	names := func(o map[string]any) string {
		out := ""
		for _, n := range o["nodes"].([]any) {
			out += n.(map[string]any)["name"].(string)
		}
		return out
	}
	if names(page) != "ab" {
		t.Fatalf("first page %q", names(page))
	}
	next, _ := page["next"].(string)
	if !strings.HasPrefix(next, s.url+"/v1/nodes?") || !strings.Contains(next, "marker=") {
		t.Fatalf("next link %q", next)
	}
	rest := s.must(t, 200, "GET", strings.TrimPrefix(next, s.url), "1.82", nil).obj(t)
	if names(rest) != "c" {
		t.Fatalf("second page %q", names(rest))
	}
	if got := names(s.must(t, 200, "GET", "/v1/nodes?sort_key=name&sort_dir=desc", "1.82", nil).obj(t)); got != "cba" {
		t.Errorf("desc: %q", got)
	}
	if got := s.must(t, 200, "GET", "/v1/nodes?provision_state=manageable", "1.82", nil).obj(t)["nodes"].([]any); len(got) != 0 {
		t.Errorf("filter manageable: %v", got)
	}
	one := s.must(t, 200, "GET", "/v1/nodes?fields=uuid,driver", "1.82", nil).obj(t)["nodes"].([]any)[0].(map[string]any)
	if len(one) != 3 || one["driver"] != "fake-hardware" || one["links"] == nil {
		t.Errorf("fields=uuid,driver: %v", one)
	}
	s.must(t, 400, "GET", "/v1/nodes?sort_key=data", "1.82", nil)
	s.must(t, 400, "GET", "/v1/nodes?limit=-1", "1.82", nil)
	s.must(t, 400, "GET", "/v1/nodes?fields=bogus", "1.82", nil)
	s.must(t, 400, "GET", "/v1/nodes?marker=nonesuch", "1.82", nil)
}

func TestLockedAndRefusals(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware"}).obj(t)["uuid"].(string)
	if _, err := s.st.ReserveNode(context.Background(), id, "other-conductor"); err != nil {
		t.Fatal(err)
	}
	r := s.must(t, 409, "PUT", "/v1/nodes/"+id+"/states/provision", "1.82", map[string]any{"target": "manage"})
	if got := faultstring(t, r); got != "Node "+id+" is locked by host other-conductor, please retry after the current operation is completed." {
		t.Errorf("locked: %q", got)
	}
	s.must(t, 409, "PUT", "/v1/nodes/"+id+"/states/power", "1.82", map[string]any{"target": "power on"})
	s.must(t, 409, "PUT", "/v1/nodes/"+id+"/maintenance", "1.82", map[string]any{"reason": "x"})
	s.st.ReleaseNode(context.Background(), id, "other-conductor")

	s.must(t, 400, "PUT", "/v1/nodes/"+id+"/states/provision", "1.82", map[string]any{"target": "sideways"})
	s.must(t, 400, "PUT", "/v1/nodes/"+id+"/states/provision", "1.82", `{"target":`)
	s.must(t, 400, "PUT", "/v1/nodes/"+id+"/states/power", "1.82", map[string]any{"target": "power sideways"})
	s.must(t, 404, "PUT", "/v1/nodes/nonesuch/states/provision", "1.82", map[string]any{"target": "manage"})
	s.must(t, 404, "GET", "/v1/ports/nonesuch", "1.82", nil)
	s.must(t, 400, "POST", "/v1/ports", "1.82", map[string]any{"address": "52:54:00:12:34:56", "node_uuid": "00000000-0000-0000-0000-000000000000"})
	s.must(t, 404, "GET", "/v1/nosuchthing", "1.82", nil)
	s.must(t, 400, "PUT", "/v1/nodes/"+id+"/states/provision", "1.82", map[string]any{"target": "inspect"})

	// Every refused request left the node alone and unlocked.
	n, _ := s.st.Node(context.Background(), id)
	if n.ProvisionState != "enroll" || n.Reservation != "" {
		t.Errorf("node after refusals: %+v", n)
	}
}

func TestPortsAndHistory(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.must(t, 201, "POST", "/v1/nodes", "1.82", map[string]any{"driver": "fake-hardware", "name": "h0"}).obj(t)["uuid"].(string)
	p := s.must(t, 201, "POST", "/v1/ports", "1.82", map[string]any{"address": "52-54-00-AB-CD-EF", "node_uuid": id, "pxe_enabled": false}).obj(t)
	if p["address"] != "52:54:00:ab:cd:ef" || p["pxe_enabled"] != false {
		t.Errorf("port %v", p)
	}
	pid := p["uuid"].(string)
	s.must(t, 409, "POST", "/v1/ports", "1.82", map[string]any{"address": "52:54:00:ab:cd:ef", "node_uuid": id})
	upd := s.must(t, 200, "PATCH", "/v1/ports/"+pid, "1.82", []map[string]any{{"op": "replace", "path": "/address", "value": "52:54:00:ab:cd:00"}}).obj(t)
	if upd["address"] != "52:54:00:ab:cd:00" || upd["updated_at"] == nil {
		t.Errorf("patched port %v", upd)
	}
	s.must(t, 400, "PATCH", "/v1/ports/"+pid, "1.82", []map[string]any{{"op": "replace", "path": "/address", "value": "bad"}})
	if l := s.must(t, 200, "GET", "/v1/ports?address=52:54:00:ab:cd:00", "1.82", nil).obj(t)["ports"].([]any); len(l) != 1 {
		t.Errorf("filter by address: %v", l)
	}
	if l := s.must(t, 200, "GET", "/v1/nodes/h0/ports/detail", "1.82", nil).obj(t)["ports"].([]any); len(l) != 1 {
		t.Errorf("node ports: %v", l)
	}

	// A failed verify is recorded in history.
	s.must(t, 202, "PUT", "/v1/nodes/h0/maintenance", "1.82", map[string]any{"reason": "check"})
	s.must(t, 202, "DELETE", "/v1/nodes/h0/maintenance", "1.82", nil)
	hist := s.must(t, 200, "GET", "/v1/nodes/h0/history?detail=true", "1.82", nil).obj(t)["history"].([]any)
	if len(hist) != 2 || hist[0].(map[string]any)["event_type"] != "maintenance" {
		t.Fatalf("history %v", hist)
	}
	ev := hist[0].(map[string]any)["uuid"].(string)
	s.must(t, 200, "GET", "/v1/nodes/h0/history/"+ev, "1.82", nil)
	s.must(t, 204, "DELETE", "/v1/ports/"+pid, "1.82", nil)
	s.must(t, 404, "GET", "/v1/ports/"+pid, "1.82", nil)
	s.must(t, 404, "GET", "/v1/nodes/h0/inventory", "1.82", nil)
	s.must(t, 200, "GET", "/v1/nodes/h0/history/detail", "1.82", nil)
	s.must(t, 200, "GET", "/v1/nodes/h0/bios", "1.82", nil)
	s.must(t, 404, "GET", "/v1/nodes/h0/bios/ProcVirtualization", "1.82", nil)
	s.must(t, 202, "PUT", "/v1/nodes/h0/states/console", "1.82", map[string]any{"enabled": "true"})
	if c := s.must(t, 200, "GET", "/v1/nodes/h0/states/console", "1.82", nil).obj(t); c["console_enabled"] != true {
		t.Errorf("console %v", c)
	}
	s.must(t, 200, "PATCH", "/v1/nodes/h0", "1.82", []map[string]any{{"op": "replace", "path": "/retired", "value": "True"}})
	s.must(t, 200, "PATCH", "/v1/nodes/h0", "1.82", []map[string]any{{"op": "remove", "path": "/retired"}})
	s.must(t, 400, "PUT", "/v1/nodes/h0/traits/lower_case", "1.82", nil)
	s.must(t, 404, "DELETE", "/v1/nodes/h0/traits/CUSTOM_NONE", "1.82", nil)
	s.must(t, 204, "PUT", "/v1/nodes/h0/traits", "1.82", map[string]any{"traits": []string{"CUSTOM_B", "CUSTOM_A", "CUSTOM_A"}})
	if tr := s.must(t, 200, "GET", "/v1/nodes/h0/traits", "1.82", nil).obj(t)["traits"].([]any); len(tr) != 2 || tr[0] != "CUSTOM_A" {
		t.Errorf("traits %v", tr)
	}
	s.must(t, 404, "GET", "/v1/nodes/h0/traits", "1.36", nil)
	s.must(t, 200, "GET", "/v1/shards", "1.82", nil)
	s.must(t, 200, "GET", "/v1/conductors/test-conductor", "1.82", nil)
	s.must(t, 404, "GET", "/v1/conductors/nonesuch", "1.82", nil)
	s.must(t, 200, "GET", "/v1/drivers/fake-hardware/properties", "1.82", nil)
	s.must(t, 404, "GET", "/v1/drivers/nonesuch", "1.82", nil)
}

// TestTimelineExtension: GET /v1/nodes/{node}/timeline reaches
// Config.Timeline with the node's name, whether asked by name or UUID; an
// unknown node is Ironic's 404, and without a Timeline the route is a 404.
func TestTimelineExtension(t *testing.T) {
	var asked []string
	tl := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.PathValue("node")+" "+r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"node":%q,"entries":[]}`, r.PathValue("node"))
	})
	s := newStack(t, stackOpts{timeline: tl})
	id := s.must(t, 201, "POST", "/v1/nodes", "1.5", map[string]any{"driver": "fake-hardware", "name": "n0"}).obj(t)["uuid"].(string)
	for _, ident := range []string{"n0", id} {
		if got := s.must(t, 200, "GET", "/v1/nodes/"+ident+"/timeline", "", nil).obj(t)["node"]; got != "n0" {
			t.Errorf("timeline of %s answered for node %v, want n0", ident, got)
		}
	}
	if want := []string{"n0 /v1/nodes/n0/timeline", "n0 /v1/nodes/n0/timeline"}; !slices.Equal(asked, want) {
		t.Errorf("timeline handler asked %q, want %q", asked, want)
	}
	r := s.must(t, 404, "GET", "/v1/nodes/nope/timeline", "", nil)
	if !strings.Contains(string(r.body), "Node nope could not be found.") {
		t.Errorf("unknown node: %s", r.body)
	}
	if len(asked) != 2 {
		t.Error("the timeline handler was asked about an unknown node")
	}

	plain := newStack(t, stackOpts{})
	plain.must(t, 201, "POST", "/v1/nodes", "1.5", map[string]any{"driver": "fake-hardware", "name": "n0"})
	plain.must(t, 404, "GET", "/v1/nodes/n0/timeline", "", nil)
}
