package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// certificateValidUntil returns a PEM certificate, valid from a year
// before notAfter until notAfter, followed by its PEM private key.
func certificateValidUntil(t *testing.T, notAfter time.Time) string {
	t.Helper()
	return testenv.APNsCertificate("com.example", notAfter)
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

// TestNotYetValidCertificateIsRefused: a certificate whose validity starts
// after the registry's clock is refused with the start named, as APNs
// would refuse it at every handshake.
func TestNotYetValidCertificateIsRefused(t *testing.T) {
	r, _ := newRegistry(t)                                                          // its clock reads 2026-11-22
	future := certificateValidUntil(t, time.Date(2028, 6, 1, 0, 0, 0, 0, time.UTC)) // from 2027-06-01
	_, err := r.CreateApp(context.Background(), registry.App{Name: "ios-cert", Kind: registry.KindAPNs,
		APNs: &registry.APNsCredentials{Topic: "com.example", Certificate: future}})
	if !errors.Is(err, registry.ErrInvalidApp) || !strings.Contains(err.Error(), "is not valid until 2027-06-01") {
		t.Fatalf("creating an app with a certificate not valid yet: %v, want ErrInvalidApp naming when it starts", err)
	}
}
