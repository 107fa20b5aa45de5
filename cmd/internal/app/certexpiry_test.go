package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
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
	cert := testenv.APNsCertificate(topic, notAfter)
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
