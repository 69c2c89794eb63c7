package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// routes is the dashboard's routing table.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.fleetPage)
	mux.HandleFunc("GET /events", s.fleetEvents)
	mux.HandleFunc("GET /nodes/{name}", s.nodeView)
	mux.HandleFunc("GET /nodes/{name}/events", s.nodeEvents)
	mux.HandleFunc("GET /nodes/{name}/console", s.console)
	mux.HandleFunc("POST /nodes/{name}/power", s.action(s.power))
	mux.HandleFunc("POST /nodes/{name}/boot-device", s.action(s.bootDevice))
	mux.HandleFunc("POST /nodes/{name}/provision", s.action(s.provision))
	mux.HandleFunc("POST /nodes/{name}/faults", s.action(s.injectFault))
	mux.HandleFunc("POST /replay", s.replayControl)
	return mux
}

func (s *Server) base(title string, r *http.Request) page {
	p := page{Title: title, Gen: s.generation()}
	if m := r.URL.Query().Get("ok"); m != "" {
		p.Flash, p.FlashClass = "✔ "+m, "good"
	}
	if m := r.URL.Query().Get("err"); m != "" {
		p.Flash, p.FlashClass = "✖ "+m, "bad"
	}
	if s.replay != nil {
		p.Replay = s.replay.view()
	}
	return p
}

func (s *Server) writePage(w http.ResponseWriter, name string, p any) {
	b, err := render(name, p)
	if err != nil {
		s.log.Error("render", "page", name, "err", err)
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b)
}

func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request) {
	p := s.base("Fleet", r)
	p.Nodes = s.fleet(nil)
	for _, st := range p.Nodes {
		readPower(r.Context(), st)
	}
	s.writePage(w, "fleet", p)
}

func (s *Server) nodeView(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, es, ok := s.node(name)
	if !ok {
		http.Error(w, fmt.Sprintf("no node %q", name), http.StatusNotFound)
		return
	}
	p := s.base(st.Name, r)
	readPower(r.Context(), st)
	s.nodePage(&p, st, es)
	p.Actions = s.cfg.APIURL != "" && s.replay == nil
	if p.FaultsOn = s.cfg.FaultsURL != "" && s.replay == nil; p.FaultsOn {
		p.Faults, p.FaultsErr = s.faults(r.Context(), st)
	}
	s.writePage(w, "node", p)
}

// sse starts a server-sent event stream; send writes one event.
func sse(w http.ResponseWriter) (send func(event string, data []byte) error, ok bool) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil, false
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	return func(event string, data []byte) error {
		var b bytes.Buffer
		if event != "" {
			fmt.Fprintf(&b, "event: %s\n", event)
		}
		for _, l := range strings.Split(string(data), "\n") {
			fmt.Fprintf(&b, "data: %s\n", l)
		}
		b.WriteString("\n")
		if _, err := w.Write(b.Bytes()); err != nil {
			return err
		}
		fl.Flush()
		return nil
	}, true
}

// follow streams the pages' updates: it calls update with nil at once,
// then with every entry published (coalescing bursts: at most every
// 150 ms), and sends
// "reload" when a replay restarted since the page was rendered.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, update func(send func(string, []byte) error, batch []events.Entry) error) {
	c, gen, cancel := s.subscribe()
	defer cancel()
	send, ok := sse(w)
	if !ok {
		return
	}
	pageGen, _ := strconv.Atoi(r.URL.Query().Get("gen"))
	if pageGen != gen {
		send("reload", []byte("{}"))
		return
	}
	// What happened between the page's render and this subscription
	// would be lost: start with a fresh render (batch nil: everything).
	if err := update(send, nil); err != nil {
		return
	}
	ctx := r.Context()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		var batch []events.Entry
		select {
		case <-ctx.Done():
			return
		case <-keep.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			continue
		case e := <-c:
			batch = append(batch, e)
		}
		// Coalesce a burst.
		t := time.NewTimer(150 * time.Millisecond)
	drain:
		for {
			select {
			case e := <-c:
				batch = append(batch, e)
			case <-t.C:
				break drain
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if s.generation() != gen {
			send("reload", []byte("{}"))
			return
		}
		if err := update(send, batch); err != nil {
			return
		}
	}
}

// fleetEvents re-renders the row of every node an entry touched.
func (s *Server) fleetEvents(w http.ResponseWriter, r *http.Request) {
	s.follow(w, r, func(send func(string, []byte) error, batch []events.Entry) error {
		var touched map[string]bool // nil: every row
		if batch != nil {
			touched = map[string]bool{}
			for _, e := range batch {
				if e.Node != "" {
					touched[e.Node] = true
				}
			}
		}
		for _, st := range s.fleet(touched) {
			readPower(r.Context(), st)
			html, err := render("row", st)
			if err != nil {
				return err
			}
			data, _ := json.Marshal(map[string]string{"name": st.Name, "html": string(html)})
			if err := send("row", data); err != nil {
				return err
			}
		}
		return nil
	})
}

// nodeEvents re-renders the node view's live part at each of its entries.
func (s *Server) nodeEvents(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.follow(w, r, func(send func(string, []byte) error, batch []events.Entry) error {
		st, es, _ := s.node(name)
		mine := batch == nil
		for _, e := range batch {
			mine = mine || e.Node == st.Name
		}
		if !mine {
			return nil
		}
		p := page{}
		readPower(r.Context(), st)
		s.nodePage(&p, st, es)
		html, err := render("live", p)
		if err != nil {
			return err
		}
		data, _ := json.Marshal(map[string]string{"html": string(html)})
		return send("live", data)
	})
}

// action runs an API call for the node named in the path and sends the
// browser back to the node view with its outcome: plain forms, so the
// buttons work without JavaScript; the dashboard makes the call (not the
// browser) because the API is another origin without CORS and may want
// credentials the page should not hold.
func (s *Server) action(do func(ctx context.Context, st *nodeState, form url.Values) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		st, _, ok := s.node(name)
		if !ok {
			http.Error(w, fmt.Sprintf("no node %q", name), http.StatusNotFound)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q := url.Values{}
		if msg, err := do(r.Context(), st, r.PostForm); err != nil {
			q.Set("err", err.Error())
		} else {
			q.Set("ok", msg)
		}
		http.Redirect(w, r, "/nodes/"+url.PathEscape(name)+"?"+q.Encode(), http.StatusSeeOther)
	}
}

// apiID is how the API knows the node: its UUID when the timeline tied
// one to it, else its name (nodes enrolled by the testbed carry the
// machine's).
func apiID(st *nodeState) string {
	if st.UUID != "" {
		return st.UUID
	}
	return st.Name
}

func (s *Server) power(ctx context.Context, st *nodeState, f url.Values) (string, error) {
	target := f.Get("target")
	switch target {
	case "power on", "power off", "rebooting", "soft power off", "soft rebooting":
	default:
		return "", fmt.Errorf("power target %q", target)
	}
	if err := s.call(ctx, s.cfg.APIURL, http.MethodPut, "/v1/nodes/"+url.PathEscape(apiID(st))+"/states/power", map[string]any{"target": target}); err != nil {
		return "", err
	}
	return "asked for " + target, nil
}

func (s *Server) bootDevice(ctx context.Context, st *nodeState, f url.Values) (string, error) {
	dev := f.Get("device")
	body := map[string]any{"boot_device": dev, "persistent": f.Get("persistent") == "true"}
	if err := s.call(ctx, s.cfg.APIURL, http.MethodPut, "/v1/nodes/"+url.PathEscape(apiID(st))+"/management/boot_device", body); err != nil {
		return "", err
	}
	return "boot device " + dev, nil
}

func (s *Server) provision(ctx context.Context, st *nodeState, f url.Values) (string, error) {
	target := f.Get("target")
	switch target {
	case "manage", "provide", "active", "deleted", "abort", "inspect", "clean", "rebuild":
	default:
		return "", fmt.Errorf("provision target %q", target)
	}
	if err := s.call(ctx, s.cfg.APIURL, http.MethodPut, "/v1/nodes/"+url.PathEscape(apiID(st))+"/states/provision", map[string]any{"target": target}); err != nil {
		return "", err
	}
	return "asked for " + target, nil
}

func (s *Server) injectFault(ctx context.Context, st *nodeState, f url.Values) (string, error) {
	if s.cfg.FaultsURL == "" {
		return "", fmt.Errorf("no fault endpoint")
	}
	rule := fault.Rule{Node: st.Name, Layer: fault.Layer(f.Get("layer")), Op: f.Get("op"), Action: f.Get("action"), Arg: f.Get("arg")}
	if c := f.Get("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			return "", fmt.Errorf("count %q: want a number, 0 for without limit", c)
		}
		rule.Count = n
	}
	if err := s.call(ctx, s.cfg.FaultsURL, http.MethodPost, "/v1/faults", rule); err != nil {
		return "", err
	}
	return fmt.Sprintf("fault %s %s injected", rule.Layer, rule.Action), nil
}

// faults are the fault rules that apply to st.
func (s *Server) faults(ctx context.Context, st *nodeState) ([]fault.Rule, string) {
	var doc struct {
		Faults []fault.Rule `json:"faults"`
	}
	if err := s.get(ctx, s.cfg.FaultsURL+"/v1/faults", &doc); err != nil {
		return nil, err.Error()
	}
	var out []fault.Rule
	for _, r := range doc.Faults {
		if r.Node == "" || r.Node == "*" || r.Node == st.Name || r.Node == st.UUID || (st.NodeName != "" && r.Node == st.NodeName) {
			out = append(out, r)
		}
	}
	return out, ""
}

// apiVersion is the microversion the dashboard asks for, as
// python-ironicclient 5.0.1 negotiates.
const apiVersion = "1.78"

// call sends a JSON body to base+path and turns an error answer into an
// error carrying the server's message.
func (s *Server) call(ctx context.Context, base, method, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-OpenStack-Ironic-API-Version", apiVersion)
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, errorMessage(rb))
	}
	return nil
}

func (s *Server) get(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(out)
}

// errorMessage digs the message out of an error body: Ironic's
// {"error_message": "{\"faultstring\": …}"} or the fault endpoint's
// {"error": …}.
func errorMessage(b []byte) string {
	var outer struct {
		ErrorMessage string `json:"error_message"`
		Error        string `json:"error"`
	}
	if json.Unmarshal(b, &outer) == nil {
		if outer.Error != "" {
			return outer.Error
		}
		if outer.ErrorMessage != "" {
			var inner struct {
				Faultstring string `json:"faultstring"`
			}
			if json.Unmarshal([]byte(outer.ErrorMessage), &inner) == nil && inner.Faultstring != "" {
				return inner.Faultstring
			}
			return outer.ErrorMessage
		}
	}
	return strings.TrimSpace(string(b))
}
