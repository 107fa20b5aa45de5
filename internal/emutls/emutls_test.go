package emutls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// serve answers TLS handshakes with id until the test ends, and returns
// the address.
func serve(t *testing.T, id *Identity) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{id.Certificate}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// handshake connects to addr as serverName, trusting only caPEM.
func handshake(addr, serverName string, caPEM []byte) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return errors.New("no CA certificate")
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName})
	if err != nil {
		return err
	}
	return c.Close()
}

func TestLoadedIdentityIsTheWrittenOne(t *testing.T) {
	ca, err := NewAuthority("test CA")
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue("test", "emu.test", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	loadedCA, err := LoadAuthority(ca.PEM, ca.KeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := loadedCA.LoadIdentity(id.CertPEM(), id.KeyPEM(), "emu.test", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if string(loaded.CAPEM) != string(ca.PEM) || string(loaded.CertPEM()) != string(id.CertPEM()) {
		t.Fatal("the loaded identity is not the written one")
	}
	// A client that trusts the first authority trusts a server with the
	// loaded identity, and one with a certificate the loaded authority
	// issues anew.
	reissued, err := loadedCA.Issue("test", "other.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   *Identity
		name string
	}{{loaded, "emu.test"}, {loaded, "localhost"}, {reissued, "other.test"}} {
		if err := handshake(serve(t, c.id), c.name, ca.PEM); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, _, err := loaded.ClientCertificate("client"); err != nil {
		t.Error(err)
	}
}

func TestLoadRefusesWhatDoesNotFit(t *testing.T) {
	ca, err := NewAuthority("test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewAuthority("other CA")
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue("test", "emu.test")
	if err != nil {
		t.Fatal(err)
	}
	expiredCA := selfSigned(t, ca.key, true, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	expired := issued(t, ca, id.Certificate.PrivateKey.(*ecdsa.PrivateKey), time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	notCA := selfSigned(t, ca.key, false, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)

	for name, c := range map[string]struct {
		load func() error
		want string
	}{
		"CA not PEM":          {func() error { _, err := LoadAuthority([]byte("garbage"), ca.KeyPEM()); return err }, "holds no PEM certificate"},
		"CA two certificates": {func() error { _, err := LoadAuthority(append(ca.PEM, other.PEM...), ca.KeyPEM()); return err }, "more than one PEM block"},
		"CA key is a cert":    {func() error { _, err := LoadAuthority(ca.PEM, ca.PEM); return err }, `PEM "CERTIFICATE" block, not a PKCS#8 PRIVATE KEY`},
		"CA damaged":          {func() error { _, err := LoadAuthority(damaged(ca.PEM), ca.KeyPEM()); return err }, "its certificate is damaged"},
		"CA key mismatch":     {func() error { _, err := LoadAuthority(ca.PEM, other.KeyPEM()); return err }, ErrKeyMismatch.Error()},
		"CA expired":          {func() error { _, err := LoadAuthority(expiredCA, ca.KeyPEM()); return err }, "expired on"},
		"not a CA":            {func() error { _, err := LoadAuthority(notCA, ca.KeyPEM()); return err }, "is not a certificate authority"},
		"CA key RSA": {func() error {
			_, err := LoadAuthority(ca.PEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}))
			return err
		}, "*rsa.PrivateKey, not an ECDSA P-256 private key"},
		"CA key P-384": {func() error {
			_, err := LoadAuthority(ca.PEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER}))
			return err
		}, "ECDSA P-384 private key, not a P-256 one"},
		"server key mismatch":  {func() error { _, err := ca.LoadIdentity(id.CertPEM(), other.KeyPEM()); return err }, ErrKeyMismatch.Error()},
		"server of another CA": {func() error { _, err := other.LoadIdentity(id.CertPEM(), id.KeyPEM()); return err }, `not issued by the authority "other CA"`},
		"server expired":       {func() error { _, err := ca.LoadIdentity(expired, id.KeyPEM()); return err }, "expired on"},
		"server other host":    {func() error { _, err := ca.LoadIdentity(id.CertPEM(), id.KeyPEM(), "emu.test", "new.test"); return err }, "not new.test"},
		"server other IP":      {func() error { _, err := ca.LoadIdentity(id.CertPEM(), id.KeyPEM(), "10.9.9.9"); return err }, "not 10.9.9.9"},
	} {
		err := c.load()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

func selfSigned(t *testing.T, key *ecdsa.PrivateKey, isCA bool, from, to time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: from, NotAfter: to,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: isCA}
	if !isCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return encodeCert(der)
}

func issued(t *testing.T, ca *Authority, key *ecdsa.PrivateKey, from, to time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "test"}, NotBefore: from, NotAfter: to,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return encodeCert(der)
}

// damaged is a PEM certificate whose DER is cut short.
func damaged(certPEM []byte) []byte {
	b, _ := pem.Decode(certPEM)
	return pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: b.Bytes[:len(b.Bytes)/2]})
}
