package redfish

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"testing"
)

// TestGenerateCertificate: the certificate names 127.0.0.1 (and the
// addresses asked for) and verifies against the CA beside it; a second
// call keeps valid files, a new address replaces them.
func TestGenerateCertificate(t *testing.T) {
	dir := t.TempDir()
	c, err := GenerateCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ca1 := read(c.CAFile)
	block, _ := pem.Decode(read(c.CertFile))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca1)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("certificate for 127.0.0.1: %v", err)
	}
	if fi, err := os.Stat(c.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
	if _, err := GenerateCertificate(dir); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(c.CAFile), ca1) {
		t.Error("valid certificates were replaced")
	}
	if _, err := GenerateCertificate(dir, net.ParseIP("192.0.2.7")); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(read(c.CAFile), ca1) {
		t.Error("a certificate lacking 192.0.2.7 was kept")
	}
}
