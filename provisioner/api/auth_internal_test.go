package api

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestUnknownUserCostsABcryptCheck: an unknown user is checked against a
// real bcrypt hash of the file's highest cost, so it is not told apart
// from a known user with a wrong password by the time the answer takes
// (the old dummy hash was malformed: bcrypt refused it at once).
func TestUnknownUserCostsABcryptCheck(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), 7)
	if err != nil {
		t.Fatal(err)
	}
	low, _ := bcrypt.GenerateFromPassword([]byte("other"), 4)
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("alice:"+string(hash)+"\nbob:"+string(low)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadHTPasswd(path)
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost(c.dummy); err != nil || cost != 7 {
		t.Errorf("dummy hash cost %d (%v), want the file's highest, 7", cost, err)
	}
	if err := bcrypt.CompareHashAndPassword(c.dummy, []byte("x")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Errorf("dummy hash is not a hash bcrypt checks: %v", err)
	}
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{{"alice", "secret", true}, {"alice", "wrong", false}, {"mallory", "secret", false}, {"bob", "other", true}} {
		r := httptest.NewRequest("GET", "/v1/nodes", nil)
		r.SetBasicAuth(tc.user, tc.pass)
		if got := c.Check(r); got != tc.ok {
			t.Errorf("Check(%s, %s) = %v, want %v", tc.user, tc.pass, got, tc.ok)
		}
	}
	if c.Check(httptest.NewRequest("GET", "/", nil)) {
		t.Error("no credentials accepted")
	}
}
