package identity_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/identity"
)

// A key set URL that is https stays https: a redirect from it to plain
// http is not followed, even to a loopback host, and the login fails as
// the provider's, while a redirect to another https URL is followed.
func TestKeySetRedirectStaysOnHTTPS(t *testing.T) {
	e := newEnv(t)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{rsaJWK("r1-rsa", rsa1)}})
	}))
	t.Cleanup(plain.Close)
	// httptest's TLS servers share one certificate, so this server's
	// client trusts the provider's server too.
	redirector := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http":
			http.Redirect(w, r, plain.URL+"/jwks", http.StatusFound)
		case "/to-https":
			http.Redirect(w, r, e.idp.issuer("realm1")+"/.well-known/jwks.json", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(redirector.Close)
	h := identity.New(e.reg, identity.Options{HTTPClient: redirector.Client()}, zerolog.New(io.Discard))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.client.Endpoint = srv.URL

	pool := func(path string) string {
		p, err := e.reg.CreateIdentityPool(context.Background(), "us-east-1", registry.IdentityPool{Name: "redirected", OpenIDProviders: []registry.OpenIDProvider{
			{Issuer: e.idp.issuer("realm1"), ClientIDs: []string{clientID}, JWKSURL: redirector.URL + path}}})
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	_, err := e.getID(pool("/to-http"), e.realm1(e.rs256("alice")))
	wantError(t, err, "ExternalServiceException", 400, "Cannot fetch the signing keys of provider "+e.idp.name("realm1"))
	if _, err := e.getID(pool("/to-https"), e.realm1(e.rs256("alice"))); err != nil {
		t.Fatalf("key set behind an https redirect: %v", err)
	}
}
