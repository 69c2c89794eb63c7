package drivers

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// rfClient is a small Redfish client over net/http, one per BMC service
// and credentials, shared by the redfish power and management interfaces.
//
// Why not gofish v0.20.0 (measured: 49k lines of non-test Go in 152 files
// under redfish/ and common/): the two interfaces need five requests (GET
// a ComputerSystem, PATCH its Boot, POST #ComputerSystem.Reset, GET the
// Systems collection, the session login), but what matters for Ironic
// fidelity is how they are sent: sushy's auth "auto" (session first, then
// basic), one re-login on a 401, If-Match with the last GET's ETag and the
// same PATCH again without it after a 412, retries of 409/5xx and
// connection errors with a pause. gofish sends If-Match but has no retry
// without it, no retry policy and no re-login, and chooses session or
// basic up front; it would need wrapping for all of that and for Ironic's
// last_error messages, on top of its weight. This client is ~300 lines
// and does what sushy does on the wire.
type rfClient struct {
	base     string // scheme://host:port
	user     string
	password string
	authType string // auto, session, basic
	hc       *http.Client
	attempts int
	pause    time.Duration

	mu      sync.Mutex
	basic   bool   // auto fell back to (or is) basic auth
	token   string // X-Auth-Token of the session
	session string // the session's URI, for logout
	etags   map[string]string
}

// RedfishError is an error answer of a Redfish service: its HTTP status
// and the message of its error body (or the status text).
type RedfishError struct {
	Method, Path string
	Status       int
	Msg          string
}

func (e *RedfishError) Error() string {
	return fmt.Sprintf("HTTP %s %s returned code %d. %s", e.Method, e.Path, e.Status, e.Msg)
}

// redfishErrorBody is the Redfish error payload.
type redfishErrorBody struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		ExtendedInfo []struct {
			Message string `json:"Message"`
		} `json:"@Message.ExtendedInfo"`
	} `json:"error"`
}

func newRedfishError(method, path string, resp *http.Response) *RedfishError {
	e := &RedfishError{Method: method, Path: path, Status: resp.StatusCode, Msg: http.StatusText(resp.StatusCode)}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body redfishErrorBody
	if json.Unmarshal(b, &body) == nil && (body.Error.Code != "" || body.Error.Message != "") {
		msgs := []string{}
		for _, x := range body.Error.ExtendedInfo {
			if x.Message != "" {
				msgs = append(msgs, x.Message)
			}
		}
		if len(msgs) == 0 {
			msgs = append(msgs, body.Error.Message)
		}
		e.Msg = body.Error.Code + ": " + strings.Join(msgs, " ")
	}
	return e
}

// retryable reports statuses sushy's callers retry: a conflicting
// operation in progress and server-side failures.
func retryable(status int) bool {
	return status == http.StatusConflict || status >= 500
}

// newRFClient builds the client for info; verify is false, true or a CA
// file or directory.
func newRFClient(info redfishInfo, timeout time.Duration, attempts int, pause time.Duration) (*rfClient, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	switch {
	case info.VerifyCA == "false":
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // redfish_verify_ca false
	case info.VerifyCA != "true":
		pool, err := loadCAs(info.VerifyCA)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &rfClient{
		base: info.Address, user: info.Username, password: info.Password, authType: info.AuthType,
		hc: &http.Client{Transport: tr, Timeout: timeout}, attempts: attempts, pause: pause,
		basic: info.AuthType == "basic", etags: map[string]string{},
	}, nil
}

// loadCAs reads a PEM CA file, or every file of a CA directory.
func loadCAs(path string) (*x509.CertPool, error) {
	files := []string{path}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("redfish_verify_ca %s: %w", path, err)
		}
		files = files[:0]
		for _, e := range ents {
			if !e.IsDir() {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	pool := x509.NewCertPool()
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("redfish_verify_ca %s: %w", path, err)
		}
		if pool.AppendCertsFromPEM(b) {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("redfish_verify_ca %s: no PEM certificate found", path)
	}
	return pool, nil
}

// login opens a session unless one is open or basic auth is in use. With
// auth type auto a refused or unsupported session falls back to basic
// auth, as sushy does.
func (c *rfClient) login(ctx context.Context) error {
	c.mu.Lock()
	if c.basic || c.token != "" {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"UserName": c.user, "Password": c.password})
	const path = "/redfish/v1/SessionService/Sessions"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("redfish login to %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	tok := resp.Header.Get("X-Auth-Token")
	if resp.StatusCode/100 != 2 || tok == "" {
		rerr := newRedfishError(http.MethodPost, path, resp)
		if retryable(rerr.Status) {
			// The service is busy or restarting: no reason to give up on
			// sessions; the caller retries.
			return fmt.Errorf("redfish login to %s: %w", c.base, rerr)
		}
		if c.authType == "session" {
			return fmt.Errorf("redfish session login to %s: %w", c.base, rerr)
		}
		c.mu.Lock()
		c.basic = true
		c.mu.Unlock()
		return nil
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	c.mu.Lock()
	c.token, c.session = tok, resp.Header.Get("Location")
	c.mu.Unlock()
	return nil
}

// logout closes the session, if any (DELETE on its Location).
func (c *rfClient) logout(ctx context.Context) {
	c.mu.Lock()
	tok, loc := c.token, c.session
	c.token, c.session = "", ""
	c.mu.Unlock()
	if tok == "" || loc == "" {
		return
	}
	if !strings.HasPrefix(loc, "http") {
		loc = c.base + loc
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc, nil)
	if err != nil {
		return
	}
	req.Header.Set("X-Auth-Token", tok)
	if resp, err := c.hc.Do(req); err == nil {
		resp.Body.Close()
	}
}

// do sends one request with sushy's policy: login first; a 401 drops the
// session and logs in again once; a 412 on a PATCH with If-Match is sent
// again without it; 409, 5xx and connection errors are retried up to
// attempts times with pause between; out, when not nil, gets the JSON
// body of a 2xx answer. It returns the answer's headers.
func (c *rfClient) do(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, err
		}
	}
	relogged, ifMatch := false, method == http.MethodPatch
	var last error
	for try := 1; ; try++ {
		var resp *http.Response
		err := c.login(ctx)
		if err == nil {
			resp, err = c.send(ctx, method, path, body, ifMatch)
		}
		var rerr *RedfishError
		switch {
		case errors.As(err, &rerr) && !retryable(rerr.Status):
			return nil, err
		case err != nil:
			if ctx.Err() != nil {
				return nil, err
			}
			last = err
			if rerr == nil {
				last = fmt.Errorf("redfish %s %s%s: %w", method, c.base, path, err)
			}
		case resp.StatusCode/100 == 2:
			defer resp.Body.Close()
			c.mu.Lock()
			if method == http.MethodGet {
				c.etags[path] = resp.Header.Get("ETag")
			} else {
				delete(c.etags, path) // changed: the next PATCH needs a new GET's
			}
			c.mu.Unlock()
			if out != nil && resp.StatusCode != http.StatusNoContent {
				if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
					return nil, fmt.Errorf("redfish %s %s%s: decode: %w", method, c.base, path, err)
				}
			}
			return resp.Header, nil
		default:
			rerr = newRedfishError(method, path, resp)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusUnauthorized && !relogged && !c.isBasic():
				// The session expired or the BMC restarted: log in again,
				// once, without counting it as a try.
				relogged = true
				c.mu.Lock()
				c.token, c.session = "", ""
				c.mu.Unlock()
				try--
				continue
			case resp.StatusCode == http.StatusPreconditionFailed && ifMatch:
				ifMatch = false
				try--
				continue
			case !retryable(resp.StatusCode):
				return nil, rerr
			}
			last = rerr
		}
		if try >= c.attempts {
			return nil, last
		}
		t := time.NewTimer(c.pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (c *rfClient) isBasic() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.basic
}

// send builds and sends one request with the current credentials.
func (c *rfClient) send(ctx context.Context, method, path string, body []byte, ifMatch bool) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.mu.Lock()
	basic, tok, etag := c.basic, c.token, c.etags[path]
	c.mu.Unlock()
	if basic {
		req.SetBasicAuth(c.user, c.password)
	} else if tok != "" {
		req.Header.Set("X-Auth-Token", tok)
	}
	if ifMatch && etag != "" {
		req.Header.Set("If-Match", etag)
	}
	return c.hc.Do(req)
}

// errNotRedfish is returned when the service's answer lacks what the
// interfaces need.
var errNotRedfish = errors.New("unexpected Redfish answer")
