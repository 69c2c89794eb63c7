package api

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Credentials are the users of an htpasswd file, for HTTP basic auth.
type Credentials struct {
	users map[string][]byte // user -> bcrypt hash
	// dummy is a real bcrypt hash of the file's highest cost, checked for
	// an unknown user so that the answer takes as long as for a known one.
	dummy []byte
}

// LoadHTPasswd reads an htpasswd file of bcrypt entries ("user:$2y$…"),
// the only kind Ironic's http_basic auth accepts.
func LoadHTPasswd(path string) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	defer f.Close()
	users := map[string][]byte{}
	maxCost := bcrypt.MinCost
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd %s:%d: want user:hash", path, line)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("htpasswd %s:%d: user %s: only bcrypt hashes are supported: %w", path, line, user, err)
		}
		maxCost = max(maxCost, cost)
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("htpasswd %s: no users", path)
	}
	var secret [16]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword(secret[:], maxCost)
	if err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	return &Credentials{users: users, dummy: dummy}, nil
}

// Check reports whether r carries the basic credentials of a user of the
// file. A known and an unknown user cost the same bcrypt check.
func (c *Credentials) Check(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := c.users[user]
	if !known {
		hash = c.dummy
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil && known
}

// Require answers 401 to a request without the credentials of a user of
// the file, and passes the others to next.
func (c *Credentials) Require(realm string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.Check(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": "HTTP basic authentication credentials missing or invalid"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized checks HTTP basic credentials when auth is on, answering 401
// itself when they are missing or wrong.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Credentials == nil {
		return true
	}
	if s.cfg.Credentials.Check(r) {
		return true
	}
	_, _, ok := r.BasicAuth()
	w.Header().Set("WWW-Authenticate", `Basic realm="Baremetal API"`)
	msg := "Invalid HTTP basic authentication credentials."
	if !ok {
		msg = "Authorization required"
	}
	writeError(w, s.log, clientErr(http.StatusUnauthorized, msg))
	return false
}
