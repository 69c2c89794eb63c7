package testbed

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestHTPasswd: with an htpasswd file the API and the timeline and fault
// endpoint answer 401 without a user's credentials and serve a user of
// the file; the testbed's own enrollment still works (its internal
// account); a bad file fails the start, naming it.
func TestHTPasswd(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte("alice:"+string(hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := free()
	p.HTPasswdFile = file
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: p, Enroll: true, Web: &Web{Addr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	get := func(base, path string, user *url.Userinfo) int {
		t.Helper()
		u, _ := url.Parse(base + path)
		u.User = user
		req, _ := http.NewRequestWithContext(t.Context(), "GET", u.String(), nil)
		req.Header.Set("X-OpenStack-Ironic-API-Version", "1.78")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	alice := url.UserPassword("alice", "s3cret")
	for _, c := range []struct {
		base, path string
		user       *url.Userinfo
		want       int
	}{
		{tb.APIURL(), "/v1/nodes", nil, 401},
		{tb.APIURL(), "/v1/nodes", url.UserPassword("alice", "wrong"), 401},
		{tb.APIURL(), "/v1/nodes", url.UserPassword("mallory", "s3cret"), 401},
		{tb.APIURL(), "/v1/nodes/node-0", alice, 200}, // enrolled by the testbed itself
		{tb.TimelineURL(), "/v1/faults", nil, 401},
		{tb.TimelineURL(), "/v1/faults", alice, 200},
		{tb.TimelineURL(), "/v1/nodes/node-0/timeline", nil, 401},
		{tb.APIURL(), "/", nil, 200}, // the root document stays public, as Ironic's
		{tb.WebURL(), "/", nil, 401},
		{tb.WebURL(), "/nodes/node-0", alice, 200},
	} {
		if got := get(c.base, c.path, c.user); got != c.want {
			t.Errorf("GET %s%s as %v: %d, want %d", c.base, c.path, c.user, got, c.want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(tb.cfg.StateDir, "provisioner", htpasswdName)); err != nil || !strings.Contains(string(b), "alice:") {
		t.Errorf("merged htpasswd: %v %q", err, b)
	}

	// A file that is not an htpasswd of bcrypt hashes is refused at start.
	bad := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(bad, []byte("alice:plaintext\n"), 0o600)
	p2 := free()
	p2.HTPasswdFile = bad
	tb2, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: p2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := tb2.Serve(ctx); err == nil || !strings.Contains(err.Error(), "htpasswd") || errors.Is(err, context.Canceled) {
		t.Errorf("Serve with a bad htpasswd = %v, want an error naming it", err)
	}
}
