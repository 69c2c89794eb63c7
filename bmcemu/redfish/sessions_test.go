package redfish

import (
	"encoding/base64"
	"testing"
)

// TestBasicAuthEachAccount: every distinct account of the systems logs in
// with basic auth, to its own system, and a user name with another
// account's password does not.
func TestBasicAuthEachAccount(t *testing.T) {
	b := startBed(t, bedOptions{plain: true, machines: 3, otherAccount: true})
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tt := range []struct {
		user, pass string
		sys        int
		want       int
	}{
		{testUser, testPass, 0, 200},
		{testUser, testPass, 1, 200},
		{"other", "secret", 2, 200},
		{"other", "secret", 0, 403},
		{testUser, "secret", 0, 401},
		{"other", testPass, 2, 401},
		{"nobody", testPass, 0, 401},
	} {
		st, _, body := b.do(t, "GET", b.sysPath(tt.sys), "", nil, "Authorization", basic(tt.user, tt.pass))
		if tt.want == 200 {
			if st != 200 {
				t.Errorf("%s:%s on system %d: %d %v", tt.user, tt.pass, tt.sys, st, body)
			}
			continue
		}
		checkError(t, tt.user+":"+tt.pass, st, tt.want, body)
	}
}
