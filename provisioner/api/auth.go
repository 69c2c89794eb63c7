package api

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Credentials are the users of an htpasswd file, for HTTP basic auth.
type Credentials struct {
	users map[string][]byte // user -> bcrypt hash
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
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("htpasswd %s:%d: user %s: only bcrypt hashes are supported: %w", path, line, user, err)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("htpasswd %s: no users", path)
	}
	return &Credentials{users: users}, nil
}

// authorized checks HTTP basic credentials when auth is on, answering 401
// itself when they are missing or wrong.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Credentials == nil {
		return true
	}
	user, pass, ok := r.BasicAuth()
	if ok {
		hash, known := s.cfg.Credentials.users[user]
		if !known {
			// Spend the same time as a real check.
			hash = []byte("$2y$05$ZZZZZZZZZZZZZZZZZZZZZ.ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ")
		}
		if bcrypt.CompareHashAndPassword(hash, []byte(pass)) == nil && known {
			return true
		}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="Baremetal API"`)
	msg := "Invalid HTTP basic authentication credentials."
	if !ok {
		msg = "Authorization required"
	}
	writeError(w, s.log, clientErr(http.StatusUnauthorized, msg))
	return false
}
