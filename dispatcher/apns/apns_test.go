package apns_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sideshow/apns2"
	"golang.org/x/net/http2"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/dispatcher/apns"
	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/internal/emutls"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

const topic = "com.example.game"

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

type fixture struct {
	prod, sandbox *apnstest.Server
	app           *registry.App
	n             *apns.Notifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	prod := apnstest.NewServer()
	sandbox := apnstest.NewServer(apnstest.WithEnvironment(apnstest.EnvironmentDevelopment))
	t.Cleanup(prod.Close)
	t.Cleanup(sandbox.Close)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	for _, s := range []*apnstest.Server{prod, sandbox} {
		s.AddTokenKey("TEAM123456", "KEY1234567", &key.PublicKey, topic)
	}
	roots := prod.RootCAs()
	roots.AppendCertsFromPEM(sandbox.CACertPEM())
	n := apns.New(apns.Options{
		ProductionHost: prod.URL, SandboxHost: sandbox.URL, RootCAs: roots,
		TTL: time.Hour, Now: func() time.Time { return now },
	}, zerolog.Nop())
	t.Cleanup(n.Close)
	app := &registry.App{Name: "ios", Kind: registry.KindAPNs, Revision: 1, APNs: &registry.APNsCredentials{
		Topic: topic, KeyID: "KEY1234567", TeamID: "TEAM123456",
		AuthKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	}}
	return &fixture{prod: prod, sandbox: sandbox, app: app, n: n}
}

func push(app *registry.App, platform registry.Platform, token string, syncCount int64) *dispatcher.Push {
	return &dispatcher.Push{
		Event: &event.DatasetChanged{Version: 1, IdentityPoolID: "us-east-1:0f1e", IdentityID: "us-east-1:abc",
			DatasetName: "settings", SyncCount: syncCount, ChangedAt: now},
		Device: registry.Device{ID: "dev-1", Platform: platform, Token: token},
		App:    app,
	}
}

func tok(i int) string { return fmt.Sprintf("%064x", i) }

func TestSendsExactBackgroundPush(t *testing.T) {
	f := newFixture(t)
	if err := f.n.Notify(context.Background(), push(f.app, registry.APNS, tok(1), 7)); err != nil {
		t.Fatal(err)
	}
	got := f.prod.Pushes()
	if len(got) != 1 || len(f.sandbox.Pushes()) != 0 {
		t.Fatalf("prod got %d, sandbox %d; want 1 and 0", len(got), len(f.sandbox.Pushes()))
	}
	p := got[0]
	want := `{"aps":{"content-available":1},"data":{"source":"cognito-sync","identityPoolId":"us-east-1:0f1e","identityId":"us-east-1:abc","datasetName":"settings","syncCount":7}}`
	if string(p.Payload) != want {
		t.Errorf("payload\n got %s\nwant %s", p.Payload, want)
	}
	checks := map[string]string{
		"apns-push-type":   "background",
		"apns-priority":    "5",
		"apns-topic":       topic,
		"apns-collapse-id": "settings",
		"apns-expiration":  fmt.Sprint(now.Add(time.Hour).Unix()),
	}
	for h, v := range checks {
		if got := p.Header.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
	if p.Auth != apnstest.AuthToken || p.TeamID != "TEAM123456" || p.DeviceToken != tok(1) {
		t.Errorf("push %+v", p)
	}
}

func TestSandboxDevicesGoToSandboxHost(t *testing.T) {
	f := newFixture(t)
	if err := f.n.Notify(context.Background(), push(f.app, registry.APNSSandbox, tok(2), 1)); err != nil {
		t.Fatal(err)
	}
	if len(f.sandbox.Pushes()) != 1 || len(f.prod.Pushes()) != 0 {
		t.Fatalf("sandbox got %d, prod %d; want 1 and 0", len(f.sandbox.Pushes()), len(f.prod.Pushes()))
	}
}

func TestCertificateAuth(t *testing.T) {
	f := newFixture(t)
	id, err := emutls.New("Apple Push Services: " + topic)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(id.Certificate.Certificate[0])
	f.prod.AddCertificate(leaf, topic)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(id.Certificate.PrivateKey)
	app := &registry.App{Name: "ios-cert", Kind: registry.KindAPNs, Revision: 1, APNs: &registry.APNsCredentials{
		Topic: topic,
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Certificate.Certificate[0]})) +
			string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	}}
	if err := f.n.Notify(context.Background(), push(app, registry.APNS, tok(3), 1)); err != nil {
		t.Fatal(err)
	}
	if p := f.prod.Pushes(); len(p) != 1 || p[0].Auth != apnstest.AuthCertificate {
		t.Fatalf("pushes %+v", p)
	}
}

// TestOutdatedCertificateIsConfigError: APNs refuses a client certificate
// that has expired (or is not valid yet) with a TLS alert at the
// handshake, before any answer with a reason, and refuses every connection
// made with it. The push is a configuration error of the app that names
// the certificate and its expiry, not a transport failure retried for
// ever; and so is the next push, which fails without a connection.
func TestOutdatedCertificateIsConfigError(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name     string
		from, to time.Time
		want     string
	}{
		{"expired", time.Now().Add(-400 * 24 * time.Hour), time.Now().Add(-time.Hour), "it expired at"},
		{"not yet valid", time.Now().Add(time.Hour), time.Now().Add(365 * 24 * time.Hour), "it is valid only from"},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: "Apple Push Services: " + topic},
			NotBefore:    tt.from, NotAfter: tt.to,
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		f.prod.AddCertificate(leaf, topic) // known to APNs, but outdated
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		app := &registry.App{Name: "ios-cert-" + strings.ReplaceAll(tt.name, " ", "-"), Kind: registry.KindAPNs, Revision: 1, APNs: &registry.APNsCredentials{
			Topic: topic,
			Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
				string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		}}
		for i := 1; i <= 2; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := f.n.Notify(ctx, push(app, registry.APNS, tok(i), int64(i)))
			cancel()
			var pe *dispatcher.Error
			if !errors.As(err, &pe) || pe.Class != dispatcher.Config || pe.Reason != "certificate_refused" ||
				!strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "Apple Push Services: "+topic) {
				t.Errorf("%s certificate, push %d: got %v, want a configuration error certificate_refused naming the certificate and saying %q", tt.name, i, err, tt.want)
			}
		}
	}
	if n := len(f.prod.Pushes()); n != 0 {
		t.Errorf("%d pushes accepted with outdated certificates", n)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	f := newFixture(t)
	f.prod.FailToken(tok(10), apnstest.Unregistered(now.Add(-time.Hour)))
	f.prod.FailToken(tok(11), apnstest.BadDeviceToken())
	f.prod.FailToken(tok(12), apnstest.ServiceUnavailable())
	f.prod.FailToken(tok(13), apnstest.TooManyRequests(0))
	f.prod.FailToken(tok(14), apnstest.DeviceTokenNotForTopic())
	tests := []struct {
		token  string
		class  dispatcher.Class
		reason string
	}{
		{tok(10), dispatcher.TokenDead, "Unregistered"},
		{tok(11), dispatcher.TokenDead, "BadDeviceToken"},
		{tok(12), dispatcher.Retry, "ServiceUnavailable"},
		{tok(13), dispatcher.Retry, "TooManyRequests"},
		{tok(14), dispatcher.TokenDead, "DeviceTokenNotForTopic"},
		{"short", dispatcher.TokenDead, "BadDeviceToken"}, // the emulator checks the token form
	}
	for _, tt := range tests {
		err := f.n.Notify(context.Background(), push(f.app, registry.APNS, tt.token, 1))
		var pe *dispatcher.Error
		if !errors.As(err, &pe) || pe.Class != tt.class || pe.Reason != tt.reason {
			t.Errorf("token %s: got %v, want %s %s", tt.token[:5], err, tt.class, tt.reason)
		}
	}
	// A wrong key is a configuration error.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	bad := *f.app
	badCred := *f.app.APNs
	badCred.AuthKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	bad.APNs, bad.Name = &badCred, "ios-wrong-key"
	err := f.n.Notify(context.Background(), push(&bad, registry.APNS, tok(1), 1))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Config || pe.Reason != "InvalidProviderToken" {
		t.Errorf("wrong key: %v", err)
	}
	// A server that is not there is a retryable transport error.
	f.prod.Close()
	err = f.n.Notify(context.Background(), push(f.app, registry.APNS, tok(1), 1))
	if !errors.As(err, &pe) || pe.Class != dispatcher.Retry {
		t.Errorf("closed server: %v", err)
	}
}

func TestClassifyEveryStatus(t *testing.T) {
	// Statuses without a known reason are classified by the status code.
	for status, want := range map[int]dispatcher.Class{
		400: dispatcher.Permanent, 403: dispatcher.Config, 404: dispatcher.Permanent, 405: dispatcher.Permanent,
		410: dispatcher.TokenDead, 413: dispatcher.Permanent, 429: dispatcher.Retry, 500: dispatcher.Retry, 503: dispatcher.Retry,
	} {
		got := apns.Classify(&apns2.Response{StatusCode: status, Reason: "SomethingNew"})
		if got.Class != want || got.Reason != "Other" {
			t.Errorf("%d: got %s %s, want %s Other", status, got.Class, got.Reason, want)
		}
	}
	if got := apns.Classify(&apns2.Response{StatusCode: 403, Reason: "ExpiredProviderToken"}); got.Class != dispatcher.Retry {
		t.Errorf("ExpiredProviderToken: %s", got.Class)
	}
	// A token of the other environment or of another topic is dead only
	// if the app's environment and topic are right; an unregistered one
	// is dead whatever they are.
	for reason, forApp := range map[string]bool{"BadDeviceToken": true, "DeviceTokenNotForTopic": true, "Unregistered": false, "ExpiredToken": false} {
		status := 400
		if !forApp {
			status = 410
		}
		if got := apns.Classify(&apns2.Response{StatusCode: status, Reason: reason}); got.Class != dispatcher.TokenDead || got.ForApp != forApp {
			t.Errorf("%d %s: got %s with ForApp %v, want token_dead with ForApp %v", status, reason, got.Class, got.ForApp, forApp)
		}
	}
}

func TestOneWarmClientServesAFanOut(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.n.Notify(context.Background(), push(f.app, registry.APNS, tok(100+i), 1)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(f.prod.Pushes()); n != 500 {
		t.Fatalf("%d pushes arrived", n)
	}
	if c := f.prod.Stats().Connections; c != 1 {
		t.Fatalf("a cold fan-out of 500 opened %d connections, want 1", c)
	}
}

func TestNewRevisionRebuildsClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.n.Notify(ctx, push(f.app, registry.APNS, tok(1), 1)); err != nil {
		t.Fatal(err)
	}
	// Rotate to a new key: the emulator only knows the new one.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	f.prod.AddTokenKey("TEAM123456", "KEY7654321", &key.PublicKey, topic)
	rotated := *f.app
	cred := *f.app.APNs
	cred.KeyID, cred.AuthKey = "KEY7654321", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	rotated.APNs, rotated.Revision = &cred, 2
	if err := f.n.Notify(ctx, push(&rotated, registry.APNS, tok(1), 2)); err != nil {
		t.Fatal(err)
	}
	p := f.prod.Pushes()
	if len(p) != 2 || p[1].KeyID != "KEY7654321" {
		t.Fatalf("second push signed with %q, want the rotated key", p[len(p)-1].KeyID)
	}
}

// TestStalePushUsesTheRotatedCredentials: after a rotation, a push read
// with the app's older revision (an event whose fan-out began before it)
// goes through the clients of the newer revision: signed with the new key,
// over their connection, rather than with the replaced key, whose clients
// would be built again and the newer ones closed, on every such push.
func TestStalePushUsesTheRotatedCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	f.prod.AddTokenKey("TEAM123456", "KEY7654321", &key.PublicKey, topic)
	rotated := *f.app
	cred := *f.app.APNs
	cred.KeyID, cred.AuthKey = "KEY7654321", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	rotated.APNs, rotated.Revision = &cred, 2
	for i, app := range []*registry.App{f.app, &rotated, f.app, f.app, &rotated} {
		if err := f.n.Notify(ctx, push(app, registry.APNS, tok(1), int64(i+1))); err != nil {
			t.Fatalf("push %d (revision %d): %v", i+1, app.Revision, err)
		}
	}
	for i, p := range f.prod.Pushes() {
		if want := "KEY7654321"; i > 0 && p.KeyID != want {
			t.Errorf("push %d signed with %s, want the rotated key %s", i+1, p.KeyID, want)
		}
	}
	if c := f.prod.Stats().Connections; c != 2 {
		t.Errorf("%d connections opened, want 2: one for each revision's clients", c)
	}
}

// openConns counts the HTTP/2 client connections open in this process
// (each has one health-check goroutine).
func openConns() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "h2client.(*conn).health")
}

// TestRevisionChangeClosesBusyConnections: when an app changes while a
// push is in flight through its old client, that connection closes once
// the push ends, rather than stay open with nothing to reach it.
func TestRevisionChangeClosesBusyConnections(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	prod := apnstest.NewServer(apnstest.WithOnPush(func(apnstest.Push) {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release // holds this push, and its connection, open
		}
	}))
	t.Cleanup(prod.Close)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	prod.AddTokenKey("TEAM123456", "KEY1234567", &key.PublicKey, topic)
	n := apns.New(apns.Options{ProductionHost: prod.URL, SandboxHost: prod.URL, RootCAs: prod.RootCAs(), TTL: time.Hour}, zerolog.Nop())
	app := &registry.App{Name: "ios", Kind: registry.KindAPNs, Revision: 1, APNs: &registry.APNsCredentials{
		Topic: topic, KeyID: "KEY1234567", TeamID: "TEAM123456",
		AuthKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}}
	base := openConns()
	done := make(chan error, 1)
	go func() { done <- n.Notify(context.Background(), push(app, registry.APNS, tok(1), 1)) }()
	<-entered
	changed := *app
	changed.Revision = 2
	if err := n.Notify(context.Background(), push(&changed, registry.APNS, tok(2), 1)); err != nil {
		t.Fatal(err)
	}
	if got := openConns() - base; got != 2 {
		t.Fatalf("%d connections open, want the old revision's busy one and the new one", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the push in flight through the old revision: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); openConns()-base != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open after the old revision's push ended, want only the new revision's", openConns()-base)
		}
	}
	n.Close()
	for deadline := time.Now().Add(5 * time.Second); openConns() != base; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open after Close", openConns()-base)
		}
	}
}

func TestRetryAfterIsRead(t *testing.T) {
	f := newFixture(t)
	f.prod.FailToken(tok(20), apnstest.TooManyRequests(7*time.Second))
	err := f.n.Notify(context.Background(), push(f.app, registry.APNS, tok(20), 1))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Retry || pe.Reason != "TooManyRequests" || pe.RetryAfter != 7*time.Second {
		t.Fatalf("got %v (retry after %v), want TooManyRequests to wait 7s", err, pe.RetryAfter)
	}
	// Without the header, a device throttled by APNs is left alone for a
	// while rather than tried again at once.
	f.prod.FailToken(tok(22), apnstest.TooManyRequests(0))
	if err := f.n.Notify(context.Background(), push(f.app, registry.APNS, tok(22), 1)); !errors.As(err, &pe) || pe.Class != dispatcher.Retry || pe.RetryAfter != apns.TooManyRequestsBackoff {
		t.Fatalf("429 TooManyRequests without Retry-After: %v, retry after %v, want %v", err, pe.RetryAfter, apns.TooManyRequestsBackoff)
	}
	// Another answer without the header waits nothing in particular.
	f.prod.FailToken(tok(21), apnstest.ServiceUnavailable())
	if err := f.n.Notify(context.Background(), push(f.app, registry.APNS, tok(21), 1)); !errors.As(err, &pe) || pe.RetryAfter != 0 {
		t.Fatalf("503 without Retry-After: %v, %v", err, pe.RetryAfter)
	}
}

// TestUnregisteredTimestampToTheMillisecond: a 410 carries the moment
// APNs learned the token was gone in milliseconds, and DeadSince is that
// moment exactly, so a device registered again a fraction of a second
// later is not taken for the dead one.
func TestUnregisteredTimestampToTheMillisecond(t *testing.T) {
	f := newFixture(t)
	at := time.UnixMilli(1795345200100)
	f.prod.FailToken(tok(30), apnstest.Unregistered(at))
	err := f.n.Notify(context.Background(), push(f.app, registry.APNS, tok(30), 1))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.TokenDead || pe.Reason != "Unregistered" {
		t.Fatalf("got %v, want token_dead Unregistered", err)
	}
	if !pe.DeadSince.Equal(at) {
		t.Fatalf("DeadSince %s, want APNs' timestamp %s", pe.DeadSince.Format(time.StampMilli), at.Format(time.StampMilli))
	}
}

// goAwayServer is an HTTP/2 server that answers every request with GOAWAY
// LastStreamID 0 and debug data, as APNs closes a connection it refuses
// (a production certificate sent to the sandbox, say), and counts the
// connections made to it.
func goAwayServer(t *testing.T, debug string) (url string, roots *x509.CertPool, conns *atomic.Int32) {
	t.Helper()
	id, err := emutls.New("apns-goaway")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{id.Certificate}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int32)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
					return
				}
				fr := http2.NewFramer(c, c)
				if fr.WriteSettings() != nil {
					return
				}
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() && fr.WriteSettingsAck() != nil {
							return
						}
					case *http2.HeadersFrame:
						if fr.WriteGoAway(0, http2.ErrCodeNo, []byte(debug)) != nil {
							return
						}
						_, _ = io.Copy(io.Discard, c) // until the client closes
						return
					}
				}
			}()
		}
	}()
	return "https://" + ln.Addr().String(), id.RootCAs(), conns
}

// TestGoAwayReasonIsClassified: a GOAWAY's JSON reason is classified as
// an answer's would be, without the push being sent again on new
// connections; a reason about one device's token, which a GOAWAY for the
// whole connection cannot carry with sense, is only a passing failure.
func TestGoAwayReasonIsClassified(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		debug  string
		class  dispatcher.Class
		reason string
	}{
		{`{"reason":"BadCertificateEnvironment"}`, dispatcher.Config, "BadCertificateEnvironment"},
		{`{"reason":"Shutdown"}`, dispatcher.Retry, "Shutdown"},
		{`{"reason":"BadDeviceToken"}`, dispatcher.Retry, "BadDeviceToken"},
		{`{"reason":"SomethingNew"}`, dispatcher.Retry, "Other"},
		{`not json`, dispatcher.Retry, "goaway"},
	} {
		url, roots, conns := goAwayServer(t, tt.debug)
		n := apns.New(apns.Options{ProductionHost: url, SandboxHost: url, RootCAs: roots, TTL: time.Hour}, zerolog.Nop())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.Notify(ctx, push(f.app, registry.APNS, tok(1), 1))
		cancel()
		n.Close()
		var pe *dispatcher.Error
		if !errors.As(err, &pe) || pe.Class != tt.class || pe.Reason != tt.reason {
			t.Errorf("GOAWAY %s: got %v after %d connections, want %s %s", tt.debug, err, conns.Load(), tt.class, tt.reason)
		} else if c := conns.Load(); c != 1 {
			t.Errorf("GOAWAY %s: %d connections, want 1", tt.debug, c)
		}
	}
}

// TestAppsOfOneKeyShareAProviderToken: platform apps that sign with the
// same key (a team's apps, or the revisions of one app) send one provider
// token between them, not one each: APNs counts new tokens per team and
// refuses them more often than every 20 minutes.
func TestAppsOfOneKeyShareAProviderToken(t *testing.T) {
	f := newFixture(t)
	other := *f.app
	other.Name = "ios-lite"
	changed := *f.app
	changed.Revision = 2
	for i, app := range []*registry.App{f.app, &other, &changed} {
		if err := f.n.Notify(context.Background(), push(app, registry.APNS, tok(40+i), 1)); err != nil {
			t.Fatalf("push through %s revision %d: %v", app.Name, app.Revision, err)
		}
	}
	bearers := map[string]bool{}
	for _, p := range f.prod.Pushes() {
		bearers[p.Header.Get("Authorization")] = true
	}
	if len(bearers) != 1 {
		t.Fatalf("two apps and a new revision signing with one key sent %d provider tokens, want 1", len(bearers))
	}
}
