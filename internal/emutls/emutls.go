// Package emutls makes the TLS identity of the protocol emulators: a
// self-signed certificate authority and a server certificate it signs, so a
// client can trust an emulator through an ordinary root pool, exactly as it
// trusts the real APNs and FCM hosts through the system roots. The
// authority and the certificate can be written as PEM and loaded again, so
// that an emulator started again keeps the identity its clients trust.
package emutls

import (
	"bytes"
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
	"time"
)

// validity is how long the certificates New and Issue make are valid.
const validity = 10 * 365 * 24 * time.Hour

// ErrKeyMismatch is returned by LoadAuthority and LoadIdentity for a key
// that is not the certificate's.
var ErrKeyMismatch = errors.New("the key is not the certificate's")

// Authority is a self-signed certificate authority that issues emulator
// certificates.
type Authority struct {
	// Cert is the authority's certificate.
	Cert *x509.Certificate
	// PEM is Cert in PEM form, for writing to a root CA file.
	PEM []byte

	key *ecdsa.PrivateKey
}

// Identity is a server certificate together with the authority that signed it.
type Identity struct {
	// Certificate is the server's certificate chain and key, ready for tls.Config.
	Certificate tls.Certificate
	// CA is the self-signed authority that issued Certificate.
	CA *x509.Certificate
	// CAPEM is CA in PEM form, for writing to a root CA file.
	CAPEM []byte

	authority *Authority
}

// RootCAs returns a pool that trusts only the identity's authority.
func (id *Identity) RootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(id.CA)
	return pool
}

// New issues a server certificate valid for localhost, 127.0.0.1, ::1 and
// any extra host names or IP addresses given, from a fresh authority.
func New(commonName string, hosts ...string) (*Identity, error) {
	ca, err := NewAuthority(commonName + " emulator CA")
	if err != nil {
		return nil, err
	}
	return ca.Issue(commonName, hosts...)
}

// NewAuthority makes a fresh authority with the given name.
func NewAuthority(commonName string) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("emutls: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("emutls: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("emutls: parse CA: %w", err)
	}
	return &Authority{Cert: cert, PEM: encodeCert(der), key: key}, nil
}

// LoadAuthority is the authority whose certificate and key, in PEM, an
// earlier Authority's PEM and KeyPEM wrote. It fails, saying why, unless
// the certificate is a certificate authority valid now and the key is its
// key (ErrKeyMismatch).
func LoadAuthority(certPEM, keyPEM []byte) (*Authority, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%q is not a certificate authority", cert.Subject.CommonName)
	}
	if err := current(cert, time.Now()); err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, ErrKeyMismatch
	}
	return &Authority{Cert: cert, PEM: encodeCert(cert.Raw), key: key}, nil
}

// KeyPEM returns the authority's private key in PEM (PKCS#8), for
// LoadAuthority.
func (a *Authority) KeyPEM() []byte { return encodeKey(a.key) }

// Issue issues a server certificate valid for localhost, 127.0.0.1, ::1
// and any extra host names or IP addresses given.
func (a *Authority) Issue(commonName string, hosts ...string) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("emutls: generate server key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("emutls: create server certificate: %w", err)
	}
	return a.identity(der, key), nil
}

// LoadIdentity is the server certificate and key, in PEM, an earlier
// Identity's CertPEM and KeyPEM wrote. It fails, saying why, unless the
// authority signed the certificate, the certificate is valid now for
// localhost, 127.0.0.1, ::1 and every host given, and the key is its key
// (ErrKeyMismatch).
func (a *Authority) LoadIdentity(certPEM, keyPEM []byte, hosts ...string) (*Identity, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(a.Cert); err != nil {
		return nil, fmt.Errorf("not issued by the authority %q: %w", a.Cert.Subject.CommonName, err)
	}
	now := time.Now()
	if err := current(cert, now); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Cert)
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if h == "" {
			continue
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: h, CurrentTime: now}); err != nil {
			return nil, err
		}
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, ErrKeyMismatch
	}
	return a.identity(cert.Raw, key), nil
}

func (a *Authority) identity(der []byte, key *ecdsa.PrivateKey) *Identity {
	return &Identity{
		Certificate: tls.Certificate{Certificate: [][]byte{der, a.Cert.Raw}, PrivateKey: key},
		CA:          a.Cert,
		CAPEM:       a.PEM,
		authority:   a,
	}
}

// CertPEM returns the server certificate in PEM, for LoadIdentity.
func (id *Identity) CertPEM() []byte { return encodeCert(id.Certificate.Certificate[0]) }

// KeyPEM returns the server certificate's private key in PEM (PKCS#8), for
// LoadIdentity.
func (id *Identity) KeyPEM() []byte { return encodeKey(id.Certificate.PrivateKey.(*ecdsa.PrivateKey)) }

// ClientCertificate issues a client certificate signed by the identity's
// authority, for servers that verify clients against RootCAs, and returns
// it and its private key in PEM.
func (id *Identity) ClientCertificate(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("emutls: generate client key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, id.CA, &key.PublicKey, id.authority.key)
	if err != nil {
		return nil, nil, fmt.Errorf("emutls: create client certificate: %w", err)
	}
	return encodeCert(der), encodeKey(key), nil
}

// ParseCertificate parses data that holds one PEM CERTIFICATE block and
// nothing else, saying what is wrong with data that does not.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	b, err := onePEM(data, "CERTIFICATE", "certificate", "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("its certificate is damaged: %v", err)
	}
	return cert, nil
}

// ParseKey parses data that holds a PEM PKCS#8 ECDSA P-256 private key, as
// KeyPEM writes it and as APNs signing keys (.p8 files) are, saying what
// is wrong with data that does not.
func ParseKey(data []byte) (*ecdsa.PrivateKey, error) {
	b, err := onePEM(data, "PRIVATE KEY", "private key", "PKCS#8 PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("its private key is damaged: %v", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	switch {
	case !ok:
		return nil, fmt.Errorf("holds a %T, not an ECDSA P-256 private key", key)
	case ec.Curve != elliptic.P256():
		return nil, fmt.Errorf("holds an ECDSA %s private key, not a P-256 one", ec.Curve.Params().Name)
	}
	return ec, nil
}

// onePEM returns the one PEM block of type typ that data holds, saying
// what is wrong with data that holds another or more: what names the
// content in words, want the block type expected as a reader knows it.
func onePEM(data []byte, typ, what, want string) (*pem.Block, error) {
	b, rest := pem.Decode(data)
	switch {
	case b == nil:
		return nil, fmt.Errorf("holds no PEM %s (-----BEGIN %s----- and base64 lines), or its base64 is damaged", what, typ)
	case b.Type != typ:
		return nil, fmt.Errorf("holds a PEM %q block, not a %s", b.Type, want)
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, fmt.Errorf("holds more than one PEM block; it should hold one %s", what)
	}
	return b, nil
}

// current says why cert is not valid at now, if it is not.
func current(cert *x509.Certificate, now time.Time) error {
	switch {
	case now.After(cert.NotAfter):
		return fmt.Errorf("the certificate %q expired on %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("the certificate %q is not valid before %s", cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// URLHost renders a listener's address for a URL, with the loopback
// address, which the certificate covers, for a listener on every
// interface.
func URLHost(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
