package registry_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/registry"
)

// certificateValidUntil returns a PEM certificate, valid from a year
// before notAfter until notAfter, followed by its PEM private key.
func certificateValidUntil(t *testing.T, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Apple Push Services: com.example"},
		NotBefore:    notAfter.AddDate(-1, 0, 0),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

// TestExpiredCertificateIsRefused registers and rotates to an APNs
// certificate that has expired: both are refused with the expiry named,
// and the stored app keeps its credentials.
func TestExpiredCertificateIsRefused(t *testing.T) {
	r, _ := newRegistry(t) // its clock reads 2026-11-22
	ctx := context.Background()
	expired := certificateValidUntil(t, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	valid := certificateValidUntil(t, time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC))
	app := func(cert string) registry.App {
		return registry.App{Name: "ios-cert", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", Certificate: cert}}
	}

	_, err := r.CreateApp(ctx, app(expired))
	if !errors.Is(err, registry.ErrInvalidApp) || !strings.Contains(err.Error(), "expired at 2026-06-01T00:00:00Z") {
		t.Fatalf("creating an app with an expired certificate: %v, want ErrInvalidApp naming the expiry", err)
	}
	if _, err := r.App(ctx, "ios-cert"); !errors.Is(err, registry.ErrAppNotFound) {
		t.Fatalf("the refused app was stored: %v", err)
	}

	if _, err := r.CreateApp(ctx, app(valid)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReplaceApp(ctx, app(expired)); !errors.Is(err, registry.ErrInvalidApp) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("rotating to an expired certificate: %v, want ErrInvalidApp", err)
	}
	got, err := r.App(ctx, "ios-cert")
	if err != nil || got.APNs.Certificate != valid || got.Revision != 1 {
		t.Fatalf("after the refused rotation: %+v, %v; want the valid certificate at revision 1", got, err)
	}
}
