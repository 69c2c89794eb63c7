// Command redfishload drives one Redfish service with concurrent
// keep-alive clients and prints requests/s and latency percentiles, so
// the same code measures metalbed's Redfish service and its peer
// (sushy-tools) in ci/bench/redfish.sh.
//
//	redfishload -url http://127.0.0.1:8000 -op get -c 16 -d 5s
//	redfishload -url http://127.0.0.1:8000 -op reset -user admin -pass password -session
//	redfishload -url http://127.0.0.1:8000 -op sweep      # GET every system once
//
// It lists /redfish/v1/Systems first and spreads the clients over the
// first -systems members (client i uses member i mod n). -op get is
// GET /redfish/v1/Systems/<id>; -op reset POSTs
// Actions/ComputerSystem.Reset, each client alternating On and ForceOff.
// Only 2xx answers count as done; anything else is an error, printed and
// counted. The result is one line of key=value pairs on stdout.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

type config struct {
	url, op, user, pass string
	session, insecure   bool
	clients, systems    int
	duration, warmup    time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", "", "service root, e.g. http://127.0.0.1:8000 (required)")
	flag.StringVar(&c.op, "op", "get", "get (GET a System), reset (POST ComputerSystem.Reset, On and ForceOff in turn) or sweep (GET every System once)")
	flag.StringVar(&c.user, "user", "", "basic-auth user name; empty: no authentication")
	flag.StringVar(&c.pass, "pass", "", "basic-auth password")
	flag.BoolVar(&c.session, "session", false, "log in once (SessionService) and send X-Auth-Token instead of basic auth")
	flag.BoolVar(&c.insecure, "insecure", false, "do not verify the HTTPS certificate")
	flag.IntVar(&c.clients, "c", 16, "concurrent clients, one keep-alive connection each")
	flag.IntVar(&c.systems, "systems", 0, "spread clients over the first N systems (0: all)")
	flag.DurationVar(&c.duration, "d", 5*time.Second, "measured duration (get, reset)")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured load before -d starts (get, reset)")
	flag.Parse()
	if err := run(context.Background(), c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "redfishload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, out io.Writer) error {
	if c.url == "" || c.clients < 1 {
		return errors.New("-url is required and -c must be at least 1")
	}
	cl, err := newClient(ctx, c)
	if err != nil {
		return err
	}
	members, err := cl.systems(ctx)
	if err != nil {
		return err
	}
	if c.systems > 0 && c.systems < len(members) {
		members = members[:c.systems]
	}
	var res result
	switch c.op {
	case "get", "reset":
		res = cl.load(ctx, c, members)
	case "sweep":
		res = cl.sweep(ctx, c.clients, members)
	default:
		return fmt.Errorf("unknown -op %q", c.op)
	}
	fmt.Fprintln(out, res.String(c.op, len(members)))
	if res.errors > 0 {
		return fmt.Errorf("%d requests failed, first: %v", res.errors, res.firstErr)
	}
	return nil
}

// client sends authenticated requests to one service.
type client struct {
	base  string
	hc    *http.Client
	user  string
	pass  string
	token string
}

func newClient(ctx context.Context, c config) (*client, error) {
	tr := &http.Transport{
		MaxIdleConns:        c.clients,
		MaxIdleConnsPerHost: c.clients,
		MaxConnsPerHost:     c.clients,
		DisableCompression:  true,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: c.insecure},
	}
	cl := &client{base: strings.TrimSuffix(c.url, "/"), hc: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		user: c.user, pass: c.pass}
	if c.session {
		tok, err := cl.login(ctx)
		if err != nil {
			return nil, err
		}
		cl.token = tok
	}
	return cl, nil
}

// login opens a session and returns its token.
func (cl *client) login(ctx context.Context) (string, error) {
	body, _ := json.Marshal(map[string]string{"UserName": cl.user, "Password": cl.pass})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.base+"/redfish/v1/SessionService/Sessions", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	tok := resp.Header.Get("X-Auth-Token")
	if resp.StatusCode != http.StatusCreated || tok == "" {
		return "", fmt.Errorf("login: %s, token %q", resp.Status, tok)
	}
	return tok, nil
}

// do sends one request and reads the whole answer, so the connection is
// reused; a non-2xx status is an error.
func (cl *client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, cl.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case cl.token != "":
		req.Header.Set("X-Auth-Token", cl.token)
	case cl.user != "":
		req.SetBasicAuth(cl.user, cl.pass)
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %.200s", method, path, resp.Status, b)
	}
	return b, nil
}

// systems lists the members of the Systems collection.
func (cl *client) systems(ctx context.Context) ([]string, error) {
	b, err := cl.do(ctx, http.MethodGet, "/redfish/v1/Systems", nil)
	if err != nil {
		return nil, err
	}
	var coll struct {
		Members []struct {
			ID string `json:"@odata.id"`
		}
	}
	if err := json.Unmarshal(b, &coll); err != nil {
		return nil, fmt.Errorf("Systems collection: %w", err)
	}
	var ids []string
	for _, m := range coll.Members {
		ids = append(ids, m.ID)
	}
	if len(ids) == 0 {
		return nil, errors.New("Systems collection is empty")
	}
	return ids, nil
}

// result is what one run measured.
type result struct {
	latencies []time.Duration // of the requests that succeeded, measured part only
	elapsed   time.Duration
	errors    int
	firstErr  error
}

func (r *result) add(o result) {
	r.latencies = append(r.latencies, o.latencies...)
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
	r.errors += o.errors
}

// String is the one output line: key=value pairs.
func (r result) String(op string, systems int) string {
	slices.Sort(r.latencies)
	pct := func(p float64) float64 {
		if len(r.latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(r.latencies)-1))
		return float64(r.latencies[i].Microseconds()) / 1000
	}
	rps := 0.0
	if r.elapsed > 0 {
		rps = float64(len(r.latencies)) / r.elapsed.Seconds()
	}
	return fmt.Sprintf("op=%s systems=%d requests=%d errors=%d seconds=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f",
		op, systems, len(r.latencies), r.errors, r.elapsed.Seconds(), rps, pct(0.50), pct(0.99))
}

// load runs c.clients clients for c.warmup + c.duration; only requests
// started after the warm-up count.
func (cl *client) load(ctx context.Context, c config, members []string) result {
	start := time.Now()
	measureFrom := start.Add(c.warmup)
	end := measureFrom.Add(c.duration)
	results := make([]result, c.clients)
	var wg sync.WaitGroup
	for i := range c.clients {
		wg.Go(func() {
			results[i] = cl.worker(ctx, c.op, members[i%len(members)], measureFrom, end)
		})
	}
	wg.Wait()
	var all result
	for _, r := range results {
		all.add(r)
	}
	all.elapsed = time.Since(measureFrom)
	return all
}

// worker sends requests about one system back to back until end.
func (cl *client) worker(ctx context.Context, op, sys string, measureFrom, end time.Time) result {
	var r result
	on := true
	for {
		t0 := time.Now()
		if !t0.Before(end) {
			return r
		}
		var err error
		if op == "reset" {
			kind := "ForceOff"
			if on {
				kind = "On"
			}
			on = !on
			_, err = cl.do(ctx, http.MethodPost, sys+"/Actions/ComputerSystem.Reset", []byte(`{"ResetType":"`+kind+`"}`))
		} else {
			_, err = cl.do(ctx, http.MethodGet, sys, nil)
		}
		if t0.Before(measureFrom) {
			continue
		}
		if err != nil {
			r.errors++
			if r.firstErr == nil {
				r.firstErr = err
			}
			continue
		}
		r.latencies = append(r.latencies, time.Since(t0))
	}
}

// sweep GETs every member once with n clients.
func (cl *client) sweep(ctx context.Context, n int, members []string) result {
	start := time.Now()
	next := make(chan string)
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for sys := range next {
				t0 := time.Now()
				if _, err := cl.do(ctx, http.MethodGet, sys, nil); err != nil {
					results[i].errors++
					if results[i].firstErr == nil {
						results[i].firstErr = err
					}
					continue
				}
				results[i].latencies = append(results[i].latencies, time.Since(t0))
			}
		})
	}
	for _, m := range members {
		next <- m
	}
	close(next)
	wg.Wait()
	var all result
	for _, r := range results {
		all.add(r)
	}
	all.elapsed = time.Since(start)
	return all
}
