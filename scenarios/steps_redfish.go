package scenarios

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cucumber/godog"
)

// Redfish steps talk to the testbed's Redfish service as any Redfish client
// does: HTTPS verified with the CA inventory.json names (or plain HTTP),
// basic auth with the machine's BMC credentials or a session token. Each
// response becomes w.last, so the API steps' "the response status is N"
// and "the response body has … equal to …" read it too.

// redfishSession is a session opened by a step.
type redfishSession struct {
	token, location string
}

// redfishAuth says how a request authenticates.
type redfishAuth struct {
	user, pass string // basic auth when token is ""
	token      string
}

// redfishNode is machine name's Redfish entry of inventory.json.
func (w *world) redfishNode(name string) (inventoryNode, error) {
	if err := w.needEnv(); err != nil {
		return inventoryNode{}, err
	}
	m, ok := w.env.machine[name]
	if !ok {
		return m, fmt.Errorf("no machine %q in the inventory", name)
	}
	if m.Redfish == nil {
		return m, fmt.Errorf("machine %q has no redfish entry in inventory.json (is the Redfish service off?)", name)
	}
	return m, nil
}

// redfishClient is an HTTP client trusting the CA that inventory.json names.
func (w *world) redfishClient(m inventoryNode) (*http.Client, error) {
	tr := &http.Transport{}
	if ca, ok := m.Redfish.VerifyCA.(string); ok && ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("redfish CA named by inventory.json: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redfish CA %s holds no certificate", ca)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}, nil
}

// redfishDo sends one request to machine name's Redfish service; path may
// hold {system}, the machine's system_id. The response is w.last.
func (w *world) redfishDo(ctx context.Context, name, method, path string, auth redfishAuth, body any, header map[string]string) (*apiResponse, error) {
	m, err := w.redfishNode(name)
	if err != nil {
		return nil, err
	}
	client, err := w.redfishClient(m)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	path = strings.ReplaceAll(path, "{system}", m.Redfish.SystemID)
	path = strings.ReplaceAll(path, "{manager}", strings.Replace(m.Redfish.SystemID, "/Systems/", "/Managers/", 1))
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.Redfish.Address+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if auth.token != "" {
		req.Header.Set("X-Auth-Token", auth.token)
	} else {
		req.SetBasicAuth(auth.user, auth.pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("redfish %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("redfish %s %s: %w", method, path, err)
	}
	w.last = &apiResponse{method: method, path: path, status: resp.StatusCode, header: resp.Header, body: b}
	return w.last, nil
}

// redfishAs authenticates as machine name's own BMC account.
func (w *world) redfishAs(name string) redfishAuth {
	m := w.env.machine[name]
	if m.Redfish == nil {
		return redfishAuth{}
	}
	return redfishAuth{user: m.Redfish.Username, pass: m.Redfish.Password}
}

// redfishOK sends a request with the machine's credentials and fails
// unless it answers 2xx.
func (w *world) redfishOK(ctx context.Context, name, method, path string, body any, header map[string]string) (*apiResponse, error) {
	if _, err := w.redfishNode(name); err != nil {
		return nil, err
	}
	r, err := w.redfishDo(ctx, name, method, path, w.redfishAs(name), body, header)
	if err != nil {
		return nil, err
	}
	if r.status/100 != 2 {
		return r, fmt.Errorf("redfish %s %s: HTTP %d: %s", method, r.path, r.status, r.body)
	}
	return r, nil
}

// redfishBoot is the part of a ComputerSystem the steps read.
type redfishSystem struct {
	PowerState string `json:"PowerState"`
	Boot       struct {
		Enabled string `json:"BootSourceOverrideEnabled"`
		Target  string `json:"BootSourceOverrideTarget"`
		Mode    string `json:"BootSourceOverrideMode"`
	} `json:"Boot"`
}

func (w *world) redfishSystem(ctx context.Context, name string) (redfishSystem, string, error) {
	var s redfishSystem
	r, err := w.redfishOK(ctx, name, http.MethodGet, "{system}", nil, nil)
	if err != nil {
		return s, "", err
	}
	if err := json.Unmarshal(r.body, &s); err != nil {
		return s, "", fmt.Errorf("ComputerSystem of %s: %w: %s", name, err, r.body)
	}
	return s, r.header.Get("ETag"), nil
}

// redfishWait is how long a machine may take to show what a step expects:
// a real VM boots its firmware under TCG in some seconds.
func (w *world) redfishWait() time.Duration {
	if w.s.backend == "libvirt" {
		return 3 * time.Minute
	}
	return 30 * time.Second
}

func (w *world) registerRedfishSteps(sc *godog.ScenarioContext) {
	var session *redfishSession

	sc.Step(`^I reset machine "([^"]*)" with "([^"]*)" through Redfish$`, func(ctx context.Context, name, kind string) error {
		_, err := w.redfishOK(ctx, name, http.MethodPost, "{system}/Actions/ComputerSystem.Reset", map[string]string{"ResetType": kind}, nil)
		return err
	})
	sc.Step(`^I ask Redfish to reset machine "([^"]*)" with "([^"]*)"$`, func(ctx context.Context, name, kind string) error {
		_, err := w.redfishDo(ctx, name, http.MethodPost, "{system}/Actions/ComputerSystem.Reset", w.redfishAs(name), map[string]string{"ResetType": kind}, nil)
		return err
	})
	sc.Step(`^Redfish powers machine "([^"]*)" on within (\d+) seconds$`, func(ctx context.Context, name string, secs int) error {
		return poll(ctx, time.Duration(secs)*time.Second, "a Reset On accepted", func() (bool, string, error) {
			r, err := w.redfishDo(ctx, name, http.MethodPost, "{system}/Actions/ComputerSystem.Reset", w.redfishAs(name), map[string]string{"ResetType": "On"}, nil)
			if err != nil {
				return false, "", err
			}
			return r.status/100 == 2, fmt.Sprintf("HTTP %d %s", r.status, r.body), nil
		})
	})
	sc.Step(`^Redfish reports machine "([^"]*)" powered "(On|Off)"$`, func(ctx context.Context, name, want string) error {
		return poll(ctx, w.redfishWait(), "PowerState "+want, func() (bool, string, error) {
			s, _, err := w.redfishSystem(ctx, name)
			if err != nil {
				return false, "", err
			}
			return s.PowerState == want, "PowerState " + s.PowerState, nil
		})
	})
	sc.Step(`^I set the Redfish boot override of machine "([^"]*)" to "([^"]*)" "(Once|Continuous|Disabled)"(?: in "(UEFI|Legacy)" mode)?$`,
		func(ctx context.Context, name, target, enabled, mode string) error {
			_, etag, err := w.redfishSystem(ctx, name)
			if err != nil {
				return err
			}
			boot := map[string]string{"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": enabled}
			if mode != "" {
				boot["BootSourceOverrideMode"] = mode
			}
			_, err = w.redfishOK(ctx, name, http.MethodPatch, "{system}", map[string]any{"Boot": boot}, map[string]string{"If-Match": etag})
			return err
		})
	sc.Step(`^Redfish reads the boot override of machine "([^"]*)" as "([^"]*)" "(Once|Continuous|Disabled)"(?: in "(UEFI|Legacy)" mode)?$`,
		func(ctx context.Context, name, target, enabled, mode string) error {
			return poll(ctx, w.redfishWait(), fmt.Sprintf("boot override %s %s %s", target, enabled, mode), func() (bool, string, error) {
				s, _, err := w.redfishSystem(ctx, name)
				if err != nil {
					return false, "", err
				}
				b := s.Boot
				got := fmt.Sprintf("%s %s %s", b.Target, b.Enabled, b.Mode)
				// A disabled override names no target that applies.
				targetOK := b.Target == target || (enabled == "Disabled" && target == "None")
				return targetOK && b.Enabled == enabled && (mode == "" || b.Mode == mode), got, nil
			})
		})
	sc.Step(`^a PATCH of machine "([^"]*)"'s boot override with a stale ETag answers 412 and changes nothing$`, func(ctx context.Context, name string) error {
		before, etag, err := w.redfishSystem(ctx, name)
		if err != nil {
			return err
		}
		stale := strings.TrimSuffix(etag, `"`) + `-stale"`
		r, err := w.redfishDo(ctx, name, http.MethodPatch, "{system}", w.redfishAs(name),
			map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous"}},
			map[string]string{"If-Match": stale})
		if err != nil {
			return err
		}
		if r.status != http.StatusPreconditionFailed {
			return fmt.Errorf("PATCH with If-Match %s: HTTP %d, want 412: %s", stale, r.status, r.body)
		}
		after, _, err := w.redfishSystem(ctx, name)
		if err != nil {
			return err
		}
		if after.Boot != before.Boot {
			return fmt.Errorf("boot override changed by a refused PATCH: %+v -> %+v", before.Boot, after.Boot)
		}
		return nil
	})

	// Sessions.
	sc.Step(`^I log in to the Redfish service with the credentials of machine "([^"]*)"$`, func(ctx context.Context, name string) error {
		m, err := w.redfishNode(name)
		if err != nil {
			return err
		}
		r, err := w.redfishDo(ctx, name, http.MethodPost, "/redfish/v1/SessionService/Sessions", redfishAuth{},
			map[string]string{"UserName": m.Redfish.Username, "Password": m.Redfish.Password}, nil)
		if err != nil {
			return err
		}
		if r.status != http.StatusCreated {
			return fmt.Errorf("POST Sessions: HTTP %d, want 201: %s", r.status, r.body)
		}
		session = &redfishSession{token: r.header.Get("X-Auth-Token"), location: r.header.Get("Location")}
		if session.token == "" || session.location == "" {
			return fmt.Errorf("POST Sessions gave no X-Auth-Token or Location: %v", r.header)
		}
		return nil
	})
	sc.Step(`^I log in to the Redfish service as user "([^"]*)" with password "([^"]*)" through machine "([^"]*)"'s service$`, func(ctx context.Context, user, pass, name string) error {
		_, err := w.redfishDo(ctx, name, http.MethodPost, "/redfish/v1/SessionService/Sessions", redfishAuth{},
			map[string]string{"UserName": user, "Password": pass}, nil)
		return err
	})
	sc.Step(`^machine "([^"]*)"'s system answers (\d+) to (my session|no credentials|password "[^"]*"|the credentials of machine "[^"]*")$`,
		func(ctx context.Context, name string, want int, how string) error {
			var auth redfishAuth
			switch {
			case how == "my session":
				if session == nil {
					return fmt.Errorf("no Redfish session: log in first")
				}
				auth.token = session.token
			case how == "no credentials":
			case strings.HasPrefix(how, "password "):
				auth = w.redfishAs(name)
				auth.pass = strings.Trim(strings.TrimPrefix(how, "password "), `"`)
			default:
				other := strings.Trim(strings.TrimPrefix(how, "the credentials of machine "), `"`)
				if _, err := w.redfishNode(other); err != nil {
					return err
				}
				auth = w.redfishAs(other)
			}
			r, err := w.redfishDo(ctx, name, http.MethodGet, "{system}", auth, nil, nil)
			if err != nil {
				return err
			}
			if r.status != want {
				return fmt.Errorf("GET %s with %s: HTTP %d, want %d: %s", r.path, how, r.status, want, r.body)
			}
			return nil
		})
	sc.Step(`^I log out of the Redfish session through machine "([^"]*)"'s service$`, func(ctx context.Context, name string) error {
		if session == nil {
			return fmt.Errorf("no Redfish session: log in first")
		}
		path := session.location
		if i := strings.Index(path, "/redfish/"); i > 0 {
			path = path[i:]
		}
		r, err := w.redfishDo(ctx, name, http.MethodDelete, path, redfishAuth{token: session.token}, nil, nil)
		if err != nil {
			return err
		}
		if r.status/100 != 2 {
			return fmt.Errorf("DELETE %s: HTTP %d: %s", path, r.status, r.body)
		}
		return nil
	})
	sc.Step(`^the Redfish error says "([^"]*)"$`, func(text string) error {
		if w.last == nil {
			return fmt.Errorf("no request was sent")
		}
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Info    []struct {
					Message string `json:"Message"`
				} `json:"@Message.ExtendedInfo"`
			} `json:"error"`
		}
		if err := json.Unmarshal(w.last.body, &e); err != nil || e.Error.Code == "" {
			return fmt.Errorf("not a Redfish error body: %s", w.last.body)
		}
		all := e.Error.Message
		for _, i := range e.Error.Info {
			all += " " + i.Message
		}
		if !strings.Contains(all, text) {
			return fmt.Errorf("Redfish error %q does not say %q", all, text)
		}
		return nil
	})
}
