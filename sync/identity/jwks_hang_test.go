package identity_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/identity"
)

// A key set URL that stops answering is tried once per retry interval,
// counted from when the hanging fetch gave up: the logins that come while
// it hangs, or just after, do not each make another fetch that hangs as
// long (one after the other, since a key set is fetched once at a time),
// but are answered at once: with the keys held from before, or as the
// provider's failure.
func TestHangingKeySetIsNotFetchedByEveryLogin(t *testing.T) {
	e := newEnv(t)
	var hang atomic.Bool
	var fetches atomic.Int64
	provider := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if hang.Load() {
			// The fetch takes its whole time limit (10 s in
			// production), then is given up.
			e.clock.Advance(10 * time.Second)
			<-r.Context().Done()
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{rsaJWK("r1-rsa", rsa1)}})
	}))
	t.Cleanup(provider.Close)
	client := provider.Client()
	client.Timeout = 200 * time.Millisecond
	h := identity.New(e.reg, identity.Options{HTTPClient: client, Now: e.clock.Now}, zerolog.New(io.Discard))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.client.Endpoint = srv.URL

	newPool := func(path string) string {
		p, err := e.reg.CreateIdentityPool(context.Background(), "us-east-1", registry.IdentityPool{Name: "hanging", OpenIDProviders: []registry.OpenIDProvider{
			{Issuer: e.idp.issuer("realm1"), ClientIDs: []string{clientID}, JWKSURL: provider.URL + path}}})
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}

	// Keys held from before serve while their provider hangs.
	held := newPool("/held")
	if _, err := e.getID(held, e.realm1(e.rs256("alice"))); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour + time.Second) // the keys are due to be fetched again
	hang.Store(true)
	before := fetches.Load()
	for i := range 3 {
		if _, err := e.getID(held, e.realm1(e.rs256("alice"))); err != nil {
			t.Fatalf("login %d with the keys held while the provider hangs: %v", i+1, err)
		}
	}
	if n := fetches.Load() - before; n != 1 {
		t.Fatalf("%d fetches of a hanging key set for 3 logins in a row, want 1", n)
	}

	// Without keys held, the logins are the provider's failure.
	none := newPool("/none")
	before = fetches.Load()
	for range 3 {
		_, err := e.getID(none, e.realm1(e.rs256("bob")))
		wantError(t, err, "ExternalServiceException", 400, "Cannot fetch the signing keys of provider "+e.idp.name("realm1"))
	}
	if n := fetches.Load() - before; n != 1 {
		t.Fatalf("%d fetches of a hanging key set for 3 logins in a row, want 1", n)
	}

	// Once the retry interval has passed since the last fetch gave up,
	// the provider is tried again, and its keys serve when it answers.
	hang.Store(false)
	e.clock.Advance(6 * time.Second)
	if _, err := e.getID(none, e.realm1(e.rs256("bob"))); err != nil {
		t.Fatalf("login once the provider answers again: %v", err)
	}
	if n := fetches.Load() - before; n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// While a key set is fetched again, logins whose key it holds do not wait
// for the fetch: a provider that answers slowly, or not at all until the
// fetch is given up, does not hold up the logins its keys held from before
// verify, whether the set is due to be fetched again (an hour old) or is
// fetched for a key it lacks.
func TestLoginsWithHeldKeysDoNotWaitForAFetch(t *testing.T) {
	e := newEnv(t)
	var slow atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	provider := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			entered <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{rsaJWK("r1-rsa", rsa1)}})
	}))
	t.Cleanup(provider.Close)
	client := provider.Client()
	client.Timeout = 5 * time.Second // only if the fetch is waited for: the test releases it
	var ended atomic.Bool            // the slow fetch has ended
	tr := client.Transport
	client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		res, err := tr.RoundTrip(r)
		ended.Store(true)
		return res, err
	})
	h := identity.New(e.reg, identity.Options{HTTPClient: client, Now: e.clock.Now}, zerolog.New(io.Discard))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.client.Endpoint = srv.URL
	p, err := e.reg.CreateIdentityPool(context.Background(), "us-east-1", registry.IdentityPool{Name: "slow", OpenIDProviders: []registry.OpenIDProvider{
		{Issuer: e.idp.issuer("realm1"), ClientIDs: []string{clientID}, JWKSURL: provider.URL + "/jwks"}}})
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name    string
		advance time.Duration
		trigger string // the token whose login starts the fetch
	}{
		{"set due to be fetched again", time.Hour + time.Second, e.rs256("alice")},
		{"set fetched for a key it lacks", 2 * time.Minute, sign(t, jwt.SigningMethodRS256, "rotated-in", rsa1, e.claims("mallory"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The keys are fetched, and held.
			e.clock.Advance(6 * time.Second)
			if _, err := e.getID(p.ID, e.realm1(e.rs256("alice"))); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(tt.advance)
			slow.Store(true)
			ended.Store(false)
			release = make(chan struct{})
			first := make(chan error, 1)
			go func() {
				_, err := e.getID(p.ID, e.realm1(tt.trigger))
				first <- err
			}()
			<-entered
			_, err := e.getID(p.ID, e.realm1(e.rs256("bob")))
			waited := ended.Load()
			slow.Store(false)
			close(release)
			<-first
			if err != nil {
				t.Fatalf("login with a held key during the fetch: %v", err)
			}
			if waited {
				t.Fatal("the login with a held key was answered only once the fetch ended")
			}
		})
	}
}
