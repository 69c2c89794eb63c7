package bmcemu

import "testing"

// TestRAKP4WrongKeyIsInvalidICV: go-ipmi refuses a RAKP 3 whose key
// exchange code does not match (a wrong password) with status 0x0D; the
// gate sends the spec's 0x0F, invalid integrity check value, and leaves
// every other RAKP 4 alone.
func TestRAKP4WrongKeyIsInvalidICV(t *testing.T) {
	srv, err := New(Config{Machine: newTestMachine(), Password: "password"})
	if err != nil {
		t.Fatal(err)
	}
	rakp4 := func(status byte) []byte {
		p := []byte{rmcpVersion, 0, 0xff, rmcpClassIPMI, authTypeRMCPP, payloadRAKP4, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0,
			0x07, status, 0, 0, 0x44, 0x33, 0x22, 0x11}
		return p
	}
	if got := srv.rakpStatus(rakp4(rakpUnauthorizedName)); got[17] != rakpInvalidICV {
		t.Errorf("RAKP 4 status 0x0d sent as %#x, want 0x0f", got[17])
	}
	for _, st := range []byte{0x00, 0x02, 0x12} {
		if got := srv.rakpStatus(rakp4(st)); got[17] != st {
			t.Errorf("RAKP 4 status %#x changed to %#x", st, got[17])
		}
	}
}
