package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/pushsync/pushsync/registry"
)

// TestCertificateExpiryIsExported: a worker's /metrics says when the
// certificate of each APNs app that authenticates with one expires, read
// from the registry at each scrape, so that an app registered or rotated
// while it runs shows at once; token and FCM apps have no such series.
func TestCertificateExpiryIsExported(t *testing.T) {
	s := newStack(t)
	s.start()
	notAfter := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Apple Push Services: " + topic},
		NotBefore: notAfter.AddDate(-1, 0, 0), NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if _, err := s.reg.PutApp(context.Background(), registry.App{Name: "game-ios-cert", Kind: registry.KindAPNs,
		APNs: &registry.APNsCredentials{Topic: topic, Certificate: cert}}); err != nil {
		t.Fatal(err)
	}

	const name = "pushsync_app_certificate_expiry_timestamp_seconds"
	if got := s.metric(name, "app", "game-ios-cert"); got != float64(notAfter.Unix()) {
		t.Errorf("%s{app=game-ios-cert} = %v, want %d (%s)", name, got, notAfter.Unix(), notAfter.UTC())
	}
	if got := s.metric(name); got != float64(notAfter.Unix()) {
		t.Errorf("%s summed over every app = %v: apps without a certificate have a series", name, got)
	}
}
