package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"golang.org/x/crypto/bcrypt"

	"github.com/metalbed/metalbed/provisioner/api"
)

// internalUser is the account the testbed's own calls to its API (enroll,
// the demo) use when the API asks for credentials: its password is made
// up at each start and lives only in memory and, hashed, in the state
// directory's htpasswd.
const internalUser = "metalbed-testbed"

// htpasswdName is the merged htpasswd file in the provisioner's state dir.
const htpasswdName = "htpasswd"

// setupAuth prepares basic auth when Provisioner.HTPasswdFile is set: the
// user's file is checked (a bad one fails the start, naming it), and a
// copy with the internal account added is written (0600) for the API and
// the timeline endpoint to load.
func (b *bed) setupAuth() error {
	if b.cfg.HTPasswdFile == "" {
		return nil
	}
	if _, err := api.LoadHTPasswd(b.cfg.HTPasswdFile); err != nil {
		return fmt.Errorf("--htpasswd: %w", err)
	}
	users, err := os.ReadFile(b.cfg.HTPasswdFile)
	if err != nil {
		return fmt.Errorf("--htpasswd: %w", err)
	}
	pass, _ := b.internal.Password()
	// A random 192-bit password needs no bcrypt work factor.
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		return err
	}
	if len(users) > 0 && users[len(users)-1] != '\n' {
		users = append(users, '\n')
	}
	users = append(users, internalUser+":"+string(hash)+"\n"...)
	path := filepath.Join(b.dir, htpasswdName)
	if err := os.WriteFile(path, users, 0o600); err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	b.htpasswd = path
	return nil
}

// newInternalAccount makes up the testbed's own account when the API will
// ask for credentials (Provisioner.HTPasswdFile); nil otherwise.
func newInternalAccount(cfg Provisioner) *url.Userinfo {
	if cfg.HTPasswdFile == "" {
		return nil
	}
	var secret [24]byte
	rand.Read(secret[:]) // never fails (crypto/rand)
	return url.UserPassword(internalUser, hex.EncodeToString(secret[:]))
}

// withUser is base with the testbed's own account as its userinfo (Go's
// HTTP client sends it as basic auth); base itself without one.
func (b *bed) withUser(base string) string {
	u, err := url.Parse(base)
	if err != nil || b.internal == nil {
		return base
	}
	u.User = b.internal
	return u.String()
}

// client is the testbed's own client of its API, with the internal
// account's credentials when the API asks for them.
func (b *bed) client() *Client { return NewClient(b.withUser(b.apiURL())) }
