package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// tokenServer is an APNs stand-in that answers 403 ExpiredProviderToken
// to every push whose authorization is one of the bearers called expired,
// and 200 to the others. With hold, each expired answer waits until the
// test releases it.
type tokenServer struct {
	*httptest.Server
	hold    bool
	arrived chan chan struct{} // a held answer's release

	mu      sync.Mutex
	expired map[string]bool
	served  map[string]bool // the authorizations of the pushes accepted
}

func newTokenServer(t *testing.T, hold bool) *tokenServer {
	ts := &tokenServer{hold: hold, arrived: make(chan chan struct{}, 64), expired: make(map[string]bool), served: make(map[string]bool)}
	ts.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		auth := r.Header.Get("Authorization")
		ts.mu.Lock()
		expired := ts.expired[auth]
		if !expired {
			ts.served[auth] = true
		}
		ts.mu.Unlock()
		if !expired {
			return
		}
		if ts.hold {
			release := make(chan struct{})
			ts.arrived <- release
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"reason":"ExpiredProviderToken"}`)
	}))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) expire(auth string) {
	ts.mu.Lock()
	ts.expired[auth] = true
	ts.mu.Unlock()
}

// accepted returns the authorizations of the pushes accepted, and
// forgets them.
func (ts *tokenServer) accepted() map[string]bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	got := ts.served
	ts.served = make(map[string]bool)
	return got
}

func tokenApp(t *testing.T) *registry.App {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	return &registry.App{Name: "ios", Kind: registry.KindAPNs, Revision: 1, APNs: &registry.APNsCredentials{
		Topic: "com.example.game", KeyID: "KEY1234567", TeamID: "TEAM123456",
		AuthKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}}
}

func tokenPush(app *registry.App, i int) *dispatcher.Push {
	return &dispatcher.Push{
		Event: &event.DatasetChanged{Version: 1, IdentityPoolID: "us-east-1:0f1e", IdentityID: "us-east-1:abc",
			DatasetName: "settings", SyncCount: 1, ChangedAt: time.Now()},
		Device: registry.Device{ID: fmt.Sprint("dev-", i), Platform: registry.APNS, Token: fmt.Sprintf("%064x", i)},
		App:    app,
	}
}

// newTokenNotifier returns a notifier sending to ts whose app's client is
// warm (one push accepted), with the app.
func newTokenNotifier(t *testing.T, ts *tokenServer) (*Notifier, *registry.App) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	n := New(Options{ProductionHost: ts.URL, SandboxHost: ts.URL, RootCAs: pool, TTL: time.Hour}, zerolog.Nop())
	t.Cleanup(n.Close)
	app := tokenApp(t)
	if err := n.Notify(context.Background(), tokenPush(app, 0)); err != nil {
		t.Fatal(err)
	}
	ts.accepted()
	return n, app
}

// ageToken makes the app's provider token look signed age ago, and
// returns the authorization it is sent with.
func ageToken(t *testing.T, n *Notifier, app *registry.App, age time.Duration) string {
	t.Helper()
	ac, err := n.clients(app)
	if err != nil {
		t.Fatal(err)
	}
	ac.token.Lock()
	ac.token.IssuedAt = time.Now().Add(-age).Unix()
	bearer := ac.token.Bearer
	ac.token.Unlock()
	return "bearer " + bearer
}

// TestExpiredProviderTokenRenewedOnce: pushes in flight with one provider
// token are each answered ExpiredProviderToken; the notifier signs one new
// token, not one for each answer (APNs allows a new token at most every
// 20 minutes and answers 429 TooManyProviderTokenUpdates otherwise). The
// answers are let through one at a time, each followed by a new push, so
// that a renewal per answer would show.
func TestExpiredProviderTokenRenewedOnce(t *testing.T) {
	const k = 5
	ts := newTokenServer(t, true)
	n, app := newTokenNotifier(t, ts)
	ts.expire(ageToken(t, n, app, 30*time.Minute))

	ctx := context.Background()
	results := make(chan error, k)
	for i := 1; i <= k; i++ {
		go func() { results <- n.Notify(ctx, tokenPush(app, i)) }()
	}
	var held []chan struct{}
	for range k {
		select {
		case r := <-ts.arrived:
			held = append(held, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d pushes reached the server", len(held), k)
		}
	}
	for i, release := range held {
		close(release)
		var pe *dispatcher.Error
		if err := <-results; !errors.As(err, &pe) || pe.Class != dispatcher.Retry || pe.Reason != "ExpiredProviderToken" {
			t.Fatalf("push %d with the expired token: got %v, want retry ExpiredProviderToken", i+1, err)
		}
		if err := n.Notify(ctx, tokenPush(app, 100+i)); err != nil {
			t.Fatalf("push %d after an expired answer: %v", i+1, err)
		}
	}
	if got := ts.accepted(); len(got) != 1 {
		t.Fatalf("%d answers ExpiredProviderToken to one token made the notifier sign %d new tokens, want 1", k, len(got))
	}
}

// TestFreshTokenCalledExpiredIsAClockProblem: APNs calls expired a
// provider token signed a moment ago only when this host's clock is an
// hour or more off; a new token would be no better (and would count
// against APNs' limit on new tokens), so the push is a configuration
// failure that says so, and the token is kept.
func TestFreshTokenCalledExpiredIsAClockProblem(t *testing.T) {
	ts := newTokenServer(t, false)
	n, app := newTokenNotifier(t, ts)
	auth := ageToken(t, n, app, 10*time.Second)
	ts.expire(auth)
	for i := 1; i <= 2; i++ {
		err := n.Notify(context.Background(), tokenPush(app, i))
		var pe *dispatcher.Error
		if !errors.As(err, &pe) || pe.Class != dispatcher.Config || pe.Reason != "clock_skew" {
			t.Fatalf("push %d: got %v, want config clock_skew", i, err)
		}
	}
	if got := ageToken(t, n, app, 10*time.Second); got != auth {
		t.Fatal("the notifier signed a new token though the one APNs called expired was fresh")
	}
}
