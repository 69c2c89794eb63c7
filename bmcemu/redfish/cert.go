package redfish

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Certificate names the PEM files of a service certificate and the CA that
// signed it: clients verify the service with CAFile.
type Certificate struct {
	CAFile, CertFile, KeyFile string
}

// File names GenerateCertificate writes in its directory.
const (
	CAFileName   = "redfish-ca.pem"
	CertFileName = "redfish-cert.pem"
	KeyFileName  = "redfish-key.pem"
)

// certLifetime is how long generated certificates are valid.
const certLifetime = 5 * 365 * 24 * time.Hour

// GenerateCertificate makes sure dir holds a CA and a server certificate
// signed by it for 127.0.0.1, ::1, localhost and ips (as IP subject
// alternative names, which Ironic and requests check). Certificates already
// there are kept while valid for a day more and for every address; else
// new ones replace them.
func GenerateCertificate(dir string, ips ...net.IP) (Certificate, error) {
	c := Certificate{
		CAFile:   filepath.Join(dir, CAFileName),
		CertFile: filepath.Join(dir, CertFileName),
		KeyFile:  filepath.Join(dir, KeyFileName),
	}
	ips = append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, ips...)
	if reusable(c, ips) {
		return c, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return c, fmt.Errorf("redfish certificate: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, fmt.Errorf("redfish certificate: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "metalbed Redfish CA", Organization: []string{"metalbed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return c, fmt.Errorf("redfish CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return c, fmt.Errorf("redfish CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, fmt.Errorf("redfish certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "metalbed Redfish service", Organization: []string{"metalbed"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return c, fmt.Errorf("redfish certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return c, fmt.Errorf("redfish certificate: %w", err)
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{c.KeyFile, "PRIVATE KEY", keyDER, 0o600},
		{c.CertFile, "CERTIFICATE", der, 0o644},
		{c.CAFile, "CERTIFICATE", caDER, 0o644},
	} {
		if err := writeFileAtomic(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return c, fmt.Errorf("redfish certificate: %w", err)
		}
	}
	return c, nil
}

// reusable reports whether the files of c make a key pair signed by the CA
// and valid for ips for a day more.
func reusable(c Certificate, ips []net.IP) bool {
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: time.Now().Add(24 * time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return errors.Join(fmt.Errorf("write %s", path), err)
	}
	return nil
}
