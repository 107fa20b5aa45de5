//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	"github.com/golang-jwt/jwt/v4"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/identity"
)

const (
	clientID = "game-app"
	ttl      = 30 * time.Minute
)

// Keys are generated once: RSA key generation is slow under -race.
var (
	keysOnce                sync.Once
	rsa1, rsa2, rsaAttacker *rsa.PrivateKey
	ec1, ecRotated          *ecdsa.PrivateKey
)

func genKeys(t *testing.T) {
	keysOnce.Do(func() {
		for _, k := range []**rsa.PrivateKey{&rsa1, &rsa2, &rsaAttacker} {
			var err error
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
		ec1, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ecRotated, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
}

func rsaJWK(kid string, k *rsa.PrivateKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PrivateKey) map[string]any {
	b, _ := k.PublicKey.Bytes()
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(b[1:33]),
		"y": base64.RawURLEncoding.EncodeToString(b[33:])}
}

// idp is an OpenID Connect provider on a TLS server with two realms, each
// an issuer with its own key set at <issuer>/.well-known/jwks.json.
type idp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string][]map[string]any // realm -> JWKs
	fetches map[string]*atomic.Int64
	down    atomic.Bool
}

func newIDP(t *testing.T) *idp {
	genKeys(t)
	p := &idp{
		keys: map[string][]map[string]any{
			"realm1": {rsaJWK("r1-rsa", rsa1), ecJWK("r1-ec", ec1)},
			"realm2": {rsaJWK("r2-rsa", rsa2)},
		},
		fetches: map[string]*atomic.Int64{"realm1": {}, "realm2": {}},
	}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		realm, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/.well-known/jwks.json")
		if !ok || p.fetches[realm] == nil {
			http.NotFound(w, r)
			return
		}
		p.fetches[realm].Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys[realm]})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) issuer(realm string) string { return p.srv.URL + "/" + realm }

// name is the provider name apps use in Logins: the issuer without https://.
func (p *idp) name(realm string) string { return strings.TrimPrefix(p.issuer(realm), "https://") }

func (p *idp) addKey(realm string, k map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[realm] = append(p.keys[realm], k)
}

// clock is the test's time: real time plus an offset tests may advance.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

type env struct {
	t        *testing.T
	reg      *registry.Registry
	idp      *idp
	clock    *clock
	client   *cognitoidentity.CognitoIdentity
	url      string
	authPool registry.IdentityPool // logins only: realm1 and realm2
	openPool registry.IdentityPool // unauthenticated and realm1 logins
}

func newEnv(t *testing.T) *env {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	e := &env{t: t, idp: newIDP(t), clock: &clock{}}
	e.reg = registry.New(rdb, registry.Options{KeyPrefix: prefix, Now: e.clock.Now})
	h := identity.New(e.reg, identity.Options{CredentialTTL: ttl, HTTPClient: e.idp.srv.Client(), Now: e.clock.Now}, zerolog.New(io.Discard))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.url = srv.URL

	ctx := context.Background()
	var err error
	e.authPool, err = e.reg.CreateIdentityPool(ctx, "us-east-1", registry.IdentityPool{Name: "players", OpenIDProviders: []registry.OpenIDProvider{
		{Issuer: e.idp.issuer("realm1"), ClientIDs: []string{"other-app", clientID}},
		{Issuer: e.idp.issuer("realm2"), ClientIDs: []string{clientID}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.openPool, err = e.reg.CreateIdentityPool(ctx, "eu-west-1", registry.IdentityPool{Name: "guests", AllowUnauthenticated: true, OpenIDProviders: []registry.OpenIDProvider{
		{Issuer: e.idp.issuer("realm1"), ClientIDs: []string{clientID}},
	}})
	if err != nil {
		t.Fatal(err)
	}

	sess, err := session.NewSessionWithOptions(session.Options{SharedConfigState: session.SharedConfigDisable})
	if err != nil {
		t.Fatal(err)
	}
	e.client = cognitoidentity.New(sess, &aws.Config{
		Endpoint:    aws.String(srv.URL),
		Region:      aws.String("us-east-1"),
		Credentials: credentials.AnonymousCredentials,
		MaxRetries:  aws.Int(0),
	})
	return e
}

// claims are valid realm1 claims for the subject.
func (e *env) claims(sub string) jwt.MapClaims {
	now := e.clock.Now()
	return jwt.MapClaims{"iss": e.idp.issuer("realm1"), "aud": clientID, "sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func sign(t *testing.T, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) rs256(sub string) string {
	return sign(e.t, jwt.SigningMethodRS256, "r1-rsa", rsa1, e.claims(sub))
}
func (e *env) es256(sub string) string {
	return sign(e.t, jwt.SigningMethodES256, "r1-ec", ec1, e.claims(sub))
}

func (e *env) getID(pool string, logins map[string]string) (string, error) {
	in := &cognitoidentity.GetIdInput{IdentityPoolId: aws.String(pool), AccountId: aws.String("123456789012")}
	if logins != nil {
		in.Logins = aws.StringMap(logins)
	}
	out, err := e.client.GetId(in)
	if err != nil {
		return "", err
	}
	return aws.StringValue(out.IdentityId), nil
}

func (e *env) credentials(id string, logins map[string]string) (*cognitoidentity.GetCredentialsForIdentityOutput, error) {
	in := &cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(id)}
	if logins != nil {
		in.Logins = aws.StringMap(logins)
	}
	return e.client.GetCredentialsForIdentity(in)
}

func (e *env) realm1(token string) map[string]string {
	return map[string]string{e.idp.name("realm1"): token}
}

// wantError checks an SDK error's code, status, request id and message.
func wantError(t *testing.T, err error, code string, status int, msgSub string) {
	t.Helper()
	rf, ok := err.(awserr.RequestFailure)
	if !ok {
		t.Fatalf("got %v (%T), want a %s request failure", err, err, code)
	}
	if rf.Code() != code || rf.StatusCode() != status || !strings.Contains(rf.Message(), msgSub) || rf.RequestID() == "" {
		t.Fatalf("got %s %d %q (request id %q), want %s %d with %q", rf.Code(), rf.StatusCode(), rf.Message(), rf.RequestID(), code, status, msgSub)
	}
}

func TestUnauthenticatedIdentity(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, err := e.getID(e.openPool.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "eu-west-1:") || len(id) != len("eu-west-1:")+36 {
		t.Fatalf("identity id %q", id)
	}
	if again, _ := e.getID(e.openPool.ID, nil); again == id {
		t.Fatal("GetId without logins returned the same identity twice")
	}
	out, err := e.credentials(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	if aws.StringValue(out.IdentityId) != id || c == nil || aws.StringValue(c.SecretKey) == "" || aws.StringValue(c.SessionToken) == "" {
		t.Fatalf("GetCredentialsForIdentity: %v", out)
	}
	stored, err := e.reg.Credential(ctx, aws.StringValue(c.AccessKeyId))
	if err != nil {
		t.Fatal(err)
	}
	if stored.IdentityPoolID != e.openPool.ID || stored.IdentityID != id || stored.SecretAccessKey != aws.StringValue(c.SecretKey) || stored.SessionToken != aws.StringValue(c.SessionToken) {
		t.Fatalf("stored credential %+v does not match %v", stored, out)
	}
	want := e.clock.Now().Add(ttl)
	if d := c.Expiration.Sub(want); d < -2*time.Second || d > 2*time.Second || !c.Expiration.Equal(stored.Expiration) {
		t.Fatalf("expiration %v, want about %v (stored %v)", c.Expiration, want, stored.Expiration)
	}

	// A pool that stops allowing unauthenticated access stops the credentials.
	p := e.openPool
	p.AllowUnauthenticated = false
	if _, err := e.reg.UpdateIdentityPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	_, err = e.credentials(id, nil)
	wantError(t, err, "NotAuthorizedException", 400, "Unauthenticated access is not supported for this identity pool.")
	_, err = e.getID(e.openPool.ID, nil)
	wantError(t, err, "NotAuthorizedException", 400, "Unauthenticated access is not supported for this identity pool.")
}

func TestPoolWithoutUnauthenticatedAccess(t *testing.T) {
	e := newEnv(t)
	_, err := e.getID(e.authPool.ID, nil)
	wantError(t, err, "NotAuthorizedException", 400, "Unauthenticated access is not supported for this identity pool.")
	if _, ok := err.(*cognitoidentity.NotAuthorizedException); !ok {
		t.Fatalf("the SDK did not give its typed error: %T", err)
	}
}

func TestAuthenticatedIdentities(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, err := e.getID(e.authPool.ID, e.realm1(e.rs256("alice")))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := e.getID(e.authPool.ID, e.realm1(e.rs256("alice"))); err != nil || again != alice {
		t.Fatalf("second RS256 login of alice: %s %v, want %s", again, err, alice)
	}
	if es, err := e.getID(e.authPool.ID, e.realm1(e.es256("alice"))); err != nil || es != alice {
		t.Fatalf("ES256 login of alice: %s %v, want %s", es, err, alice)
	}
	bob, err := e.getID(e.authPool.ID, e.realm1(e.es256("bob")))
	if err != nil || bob == alice {
		t.Fatalf("bob: %s %v (alice %s)", bob, err, alice)
	}
	// The same sub at another issuer is another user.
	c2 := e.claims("alice")
	c2["iss"] = e.idp.issuer("realm2")
	alice2, err := e.getID(e.authPool.ID, map[string]string{e.idp.name("realm2"): sign(t, jwt.SigningMethodRS256, "r2-rsa", rsa2, c2)})
	if err != nil || alice2 == alice {
		t.Fatalf("alice of realm2: %s %v", alice2, err)
	}
	// aud may be an array.
	c3 := e.claims("alice")
	c3["aud"] = []string{"someone-else", clientID}
	if got, err := e.getID(e.authPool.ID, e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, c3))); err != nil || got != alice {
		t.Fatalf("aud array: %s %v", got, err)
	}
	rec, err := e.reg.Identity(ctx, alice)
	if err != nil || rec.PoolID != e.authPool.ID || len(rec.Logins) != 1 || rec.Logins[0] != e.idp.issuer("realm1")+"|alice" {
		t.Fatalf("alice's record %+v %v", rec, err)
	}

	out, err := e.credentials(alice, e.realm1(e.es256("alice")))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := e.reg.Credential(ctx, aws.StringValue(out.Credentials.AccessKeyId))
	if err != nil || stored.IdentityID != alice || stored.IdentityPoolID != e.authPool.ID {
		t.Fatalf("alice's credential %+v %v", stored, err)
	}

	// Never credentials for an authenticated identity without its login.
	_, err = e.credentials(alice, nil)
	wantError(t, err, "NotAuthorizedException", 400, "Logins don't match")
	_, err = e.credentials(alice, e.realm1(e.rs256("bob")))
	wantError(t, err, "NotAuthorizedException", 400, "Logins don't match")
	_, err = e.credentials(alice, e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsaAttacker, e.claims("alice"))))
	wantError(t, err, "NotAuthorizedException", 400, "Invalid login token. The token's signature is invalid.")
	_, err = e.credentials(alice, map[string]string{e.idp.name("realm1"): e.rs256("alice"), e.idp.name("realm2"): "x"})
	wantError(t, err, "InvalidParameterException", 400, "exactly one login")
}

// TestAuthorizedParty checks azp: a token for several audiences counts only
// if it was issued to a client id of the pool, while a token for one
// audience may name another client, as Google's cross-client ID tokens do.
func TestAuthorizedParty(t *testing.T) {
	e := newEnv(t)
	token := func(aud, azp any) string {
		c := e.claims("alice")
		c["aud"] = aud
		if azp != nil {
			c["azp"] = azp
		}
		return sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, c)
	}
	alice, err := e.getID(e.authPool.ID, e.realm1(e.rs256("alice")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		aud  any
		azp  any
	}{
		{"issued to another client", []string{"another-app", clientID}, "another-app"},
		{"azp not a string", []string{"another-app", clientID}, []string{clientID}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.getID(e.authPool.ID, e.realm1(token(tt.aud, tt.azp)))
			wantError(t, err, "NotAuthorizedException", 400, "Invalid login token. The token was issued to another client (azp)")
			_, err = e.credentials(alice, e.realm1(token(tt.aud, tt.azp)))
			wantError(t, err, "NotAuthorizedException", 400, "Invalid login token. The token was issued to another client (azp)")
		})
	}
	for _, tt := range []struct {
		name string
		aud  any
		azp  any
	}{
		{"issued to the pool's client", []string{"another-app", clientID}, clientID},
		{"issued to another client id of the pool", []string{clientID, "another-app"}, "other-app"},
		{"several audiences without azp", []string{"another-app", clientID}, nil},
		{"one audience, another azp", clientID, "game-app-android"},
	} {
		if got, err := e.getID(e.authPool.ID, e.realm1(token(tt.aud, tt.azp))); err != nil || got != alice {
			t.Errorf("%s: GetId gave %q, %v; want %s", tt.name, got, err, alice)
		}
	}
}

func TestInvalidLoginTokens(t *testing.T) {
	e := newEnv(t)
	if _, err := e.getID(e.authPool.ID, e.realm1(e.rs256("warm-up"))); err != nil {
		t.Fatal(err)
	}
	with := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := e.claims("mallory")
		change(c)
		return c
	}
	now := e.clock.Now()
	noneToken, err := func() (string, error) {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, e.claims("mallory"))
		tok.Header["kid"] = "r1-rsa"
		return tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	}()
	if err != nil {
		t.Fatal(err)
	}
	rsaPub := rsaJWK("", rsa1)["n"].(string)
	realm2Token := sign(t, jwt.SigningMethodRS256, "r2-rsa", rsa2, with(func(c jwt.MapClaims) { c["iss"] = e.idp.issuer("realm2") }))
	tests := []struct {
		name   string
		logins map[string]string
		want   string
	}{
		{"expired", e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() }))), "Token expired at"},
		{"no exp", e.realm1(sign(t, jwt.SigningMethodES256, "r1-ec", ec1, with(func(c jwt.MapClaims) { delete(c, "exp") }))), "no valid exp"},
		{"wrong aud", e.realm1(sign(t, jwt.SigningMethodES256, "r1-ec", ec1, with(func(c jwt.MapClaims) { c["aud"] = "another-app" }))), "Incorrect token audience."},
		{"wrong iss", e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, with(func(c jwt.MapClaims) { c["iss"] = e.idp.issuer("realm2") }))), "Issuer doesn't match providerName."},
		{"bad signature", e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsaAttacker, e.claims("mallory"))), "signature is invalid"},
		{"tampered", e.realm1(tamper(e.es256("mallory"))), "signature is invalid"},
		{"alg none", e.realm1(noneToken), `Signing algorithm "none" is not allowed`},
		{"HS256 with the public key", e.realm1(sign(t, jwt.SigningMethodHS256, "r1-rsa", []byte(rsaPub), e.claims("mallory"))), `Signing algorithm "HS256" is not allowed`},
		{"RS384", e.realm1(sign(t, jwt.SigningMethodRS384, "r1-rsa", rsa1, e.claims("mallory"))), `"RS384" is not allowed`},
		{"unknown kid", e.realm1(sign(t, jwt.SigningMethodRS256, "nobody", rsa1, e.claims("mallory"))), "signing key (kid) is not among"},
		{"kid of another key type", e.realm1(sign(t, jwt.SigningMethodES256, "r1-rsa", ec1, e.claims("mallory"))), "is a RS256 key"},
		{"token of another provider", e.realm1(realm2Token), "signing key (kid) is not among"},
		{"unknown provider name", map[string]string{"accounts.example.com": e.rs256("mallory")}, "Token is not from a supported provider of this identity pool."},
		{"issued in the future", e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, with(func(c jwt.MapClaims) { c["iat"] = now.Add(2 * time.Minute).Unix() }))), "issued in the future"},
		{"not yet valid", e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }))), "not valid yet"},
		{"no sub", e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, with(func(c jwt.MapClaims) { delete(c, "sub") }))), "no sub claim"},
		{"no kid", e.realm1(sign(t, jwt.SigningMethodRS256, "", rsa1, e.claims("mallory"))), "no kid"},
		{"malformed", e.realm1("not-a-jwt"), "not a well-formed JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.getID(e.authPool.ID, tt.logins)
			wantError(t, err, "NotAuthorizedException", 400, tt.want)
			if msg := err.(awserr.Error).Message(); !strings.HasPrefix(msg, "Invalid login token. ") {
				t.Fatalf("message %q", msg)
			}
		})
	}
	// A slightly early iat is within the leeway.
	early := sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, with(func(c jwt.MapClaims) { c["iat"] = now.Add(30 * time.Second).Unix() }))
	if _, err := e.getID(e.authPool.ID, e.realm1(early)); err != nil {
		t.Fatalf("iat 30 s ahead: %v", err)
	}
}

// tamper changes the payload of a token and keeps its signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), "mallory", "alice", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestKeySetFetching(t *testing.T) {
	e := newEnv(t)
	fetches := e.idp.fetches["realm1"]
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := e.rs256(fmt.Sprintf("user-%d", i))
			if i%2 == 1 {
				tok = e.es256(fmt.Sprintf("user-%d", i))
			}
			if _, err := e.getID(e.authPool.ID, e.realm1(tok)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d key set fetches for 20 logins, want 1", n)
	}

	// A rotated-in key: unknown kids refetch at most once a minute.
	e.idp.addKey("realm1", ecJWK("r1-ec-2", ecRotated))
	rotated := func() string { return sign(t, jwt.SigningMethodES256, "r1-ec-2", ecRotated, e.claims("rotated")) }
	_, err := e.getID(e.authPool.ID, e.realm1(rotated()))
	wantError(t, err, "NotAuthorizedException", 400, "signing key (kid) is not among")
	if n := fetches.Load(); n != 1 {
		t.Fatalf("unknown kid within a minute of the fetch refetched (%d fetches)", n)
	}
	e.clock.Advance(61 * time.Second)
	if _, err := e.getID(e.authPool.ID, e.realm1(rotated())); err != nil {
		t.Fatalf("rotated key after a minute: %v", err)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after the rotation, want 2", n)
	}
	for range 3 {
		_, err := e.getID(e.authPool.ID, e.realm1(sign(t, jwt.SigningMethodRS256, "nobody", rsa1, e.claims("x"))))
		wantError(t, err, "NotAuthorizedException", 400, "signing key (kid) is not among")
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("unknown kids refetched within a minute (%d fetches)", n)
	}

	// After an hour the set is fetched again; while the provider is down,
	// the keys held still verify, and a kid they lack is the provider's
	// failure, not the token's.
	e.clock.Advance(time.Hour)
	e.idp.down.Store(true)
	if _, err := e.getID(e.authPool.ID, e.realm1(e.rs256("user-0"))); err != nil {
		t.Fatalf("login with cached keys while the provider is down: %v", err)
	}
	if n := fetches.Load(); n != 3 {
		t.Fatalf("%d fetches after an hour, want 3", n)
	}
	e.clock.Advance(10 * time.Second)
	_, err = e.getID(e.authPool.ID, e.realm1(sign(t, jwt.SigningMethodRS256, "new-kid", rsa1, e.claims("x"))))
	wantError(t, err, "ExternalServiceException", 400, "Cannot fetch the signing keys of provider "+e.idp.name("realm1"))
	e.idp.down.Store(false)
	e.clock.Advance(10 * time.Second)
	if _, err := e.getID(e.authPool.ID, e.realm1(e.es256("user-1"))); err != nil {
		t.Fatal(err)
	}
	if n := fetches.Load(); n != 5 {
		t.Fatalf("%d fetches after recovery, want 5", n)
	}
}

// TestUnusableKeyOfTheTokensKid checks that a token whose kid names a key
// the provider publishes but pushsync does not verify with is refused with
// the reason, not as a kid the key set lacks.
func TestUnusableKeyOfTheTokensKid(t *testing.T) {
	e := newEnv(t)
	if _, err := e.getID(e.authPool.ID, e.realm1(e.rs256("warm-up"))); err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	e.idp.addKey("realm1", rsaJWK("r1-weak", weak))
	enc := rsaJWK("r1-enc", rsa2)
	enc["use"] = "enc"
	e.idp.addKey("realm1", enc)
	e.clock.Advance(61 * time.Second)

	// The first is refused after the key set is fetched again, the second
	// from the set fetched then.
	_, err = e.getID(e.authPool.ID, e.realm1(sign(t, jwt.SigningMethodRS256, "r1-weak", weak, e.claims("alice"))))
	wantError(t, err, "NotAuthorizedException", 400, "Invalid login token. The provider's key of the token's kid is not accepted: it is a 1024-bit RSA key, and RSA keys must have at least 2048 bits.")
	_, err = e.getID(e.authPool.ID, e.realm1(sign(t, jwt.SigningMethodRS256, "r1-enc", rsa2, e.claims("alice"))))
	wantError(t, err, "NotAuthorizedException", 400, `Invalid login token. The provider's key of the token's kid is not accepted: its use is "enc", not "sig".`)
	_, err = e.getID(e.authPool.ID, e.realm1(sign(t, jwt.SigningMethodRS256, "nobody", rsa1, e.claims("alice"))))
	wantError(t, err, "NotAuthorizedException", 400, "Invalid login token. The token's signing key (kid) is not among the provider's signing keys.")
	if n := e.idp.fetches["realm1"].Load(); n != 2 {
		t.Fatalf("%d key set fetches, want 2", n)
	}
}

func TestProviderWithoutKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p, err := e.reg.CreateIdentityPool(ctx, "us-east-1", registry.IdentityPool{Name: "broken", OpenIDProviders: []registry.OpenIDProvider{
		{Issuer: e.idp.issuer("realm1"), ClientIDs: []string{clientID}, JWKSURL: e.idp.srv.URL + "/missing/jwks.json"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.getID(p.ID, e.realm1(e.rs256("alice")))
	wantError(t, err, "ExternalServiceException", 400, "Cannot fetch the signing keys")
}

func TestRequestErrors(t *testing.T) {
	e := newEnv(t)
	missingPool := "us-east-1:00000000-0000-4000-8000-000000000000"
	_, err := e.getID(missingPool, nil)
	wantError(t, err, "ResourceNotFoundException", 404, "IdentityPool '"+missingPool+"' not found.")
	if _, ok := err.(*cognitoidentity.ResourceNotFoundException); !ok {
		t.Fatalf("the SDK did not give its typed error: %T", err)
	}
	missingID := "us-east-1:11111111-0000-4000-8000-000000000000"
	_, err = e.credentials(missingID, nil)
	wantError(t, err, "ResourceNotFoundException", 404, "Identity '"+missingID+"' not found.")
	_, err = e.getID("not a pool", nil)
	wantError(t, err, "InvalidParameterException", 400, "IdentityPoolId")
	_, err = e.credentials("us-east-1:XYZ", nil)
	wantError(t, err, "InvalidParameterException", 400, "IdentityId")

	post := func(target, body string) (*http.Response, map[string]string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.url+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	tests := []struct {
		name, target, body string
		status             int
		typ                string
		msg                string // in the message, if set
	}{
		{"malformed JSON", "AWSCognitoIdentityService.GetId", `{"IdentityPoolId":`, 400, "SerializationException", ""},
		{"wrong member type", "AWSCognitoIdentityService.GetId", `{"IdentityPoolId":5}`, 400, "SerializationException", "member IdentityPoolId has the wrong type: got a JSON number"},
		{"body not an object", "AWSCognitoIdentityService.GetCredentialsForIdentity", `["us-east-1:11111111-0000-4000-8000-000000000000"]`, 400, "SerializationException", "request body must be a JSON object, got a JSON array"},
		{"two values", "AWSCognitoIdentityService.GetId", `{} {}`, 400, "SerializationException", ""},
		{"unknown target", "AWSCognitoIdentityService.GetOpenIdToken", `{}`, 400, "UnknownOperationException", ""},
		{"foreign target", "DynamoDB_20120810.ListTables", `{}`, 400, "UnknownOperationException", ""},
		{"too large", "AWSCognitoIdentityService.GetId", `{"IdentityPoolId":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "RequestEntityTooLargeException", ""},
		{"empty body", "AWSCognitoIdentityService.GetId", ``, 400, "InvalidParameterException", ""},
	}
	for _, tt := range tests {
		resp, out := post(tt.target, tt.body)
		if resp.StatusCode != tt.status || out["__type"] != tt.typ || out["message"] == "" || !strings.Contains(out["message"], tt.msg) ||
			resp.Header.Get("Content-Type") != "application/x-amz-json-1.1" || resp.Header.Get("X-Amzn-ErrorType") != tt.typ || resp.Header.Get("X-Amzn-RequestId") == "" {
			t.Errorf("%s: got %d %v %v; want %d %s (message with %q) in application/x-amz-json-1.1 with a request id", tt.name, resp.StatusCode, resp.Header, out, tt.status, tt.typ, tt.msg)
		}
	}
	// The wire form of a success.
	resp, out := post("AWSCognitoIdentityService.GetId", `{"IdentityPoolId":"`+e.openPool.ID+`"}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(out["IdentityId"], "eu-west-1:") || resp.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		t.Fatalf("GetId: %d %v", resp.StatusCode, out)
	}
}

func TestIsIdentityRequest(t *testing.T) {
	req := func(method, path, target string) *http.Request {
		r := httptest.NewRequest(method, path, nil)
		if target != "" {
			r.Header.Set("X-Amz-Target", target)
		}
		return r
	}
	if !identity.IsIdentityRequest(req("POST", "/", "AWSCognitoIdentityService.GetId")) {
		t.Error("GetId not recognised")
	}
	for _, r := range []*http.Request{
		req("POST", "/", ""),
		req("GET", "/", "AWSCognitoIdentityService.GetId"),
		req("POST", "/identitypools/x", "AWSCognitoIdentityService.GetId"),
		req("POST", "/", "DynamoDB_20120810.ListTables"),
	} {
		if identity.IsIdentityRequest(r) {
			t.Errorf("%s %s %q taken for Cognito Identity", r.Method, r.URL.Path, r.Header.Get("X-Amz-Target"))
		}
	}
}

// TestGoogleIssuerWithoutScheme: Google's ID tokens carry its issuer with
// or without https:// (Google's OpenID Connect guide), and either is a
// login to a pool whose provider is https://accounts.google.com, the same
// login; another provider's issuer without its scheme is not its issuer.
func TestGoogleIssuerWithoutScheme(t *testing.T) {
	e := newEnv(t)
	p, err := e.reg.CreateIdentityPool(context.Background(), "us-east-1", registry.IdentityPool{Name: "google", OpenIDProviders: []registry.OpenIDProvider{
		{Issuer: "https://accounts.google.com", ClientIDs: []string{clientID}, JWKSURL: e.idp.issuer("realm1") + "/.well-known/jwks.json"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	google := func(iss string) map[string]string {
		c := e.claims("alice")
		c["iss"] = iss
		return map[string]string{"accounts.google.com": sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, c)}
	}
	withScheme, err := e.getID(p.ID, google("https://accounts.google.com"))
	if err != nil {
		t.Fatal(err)
	}
	without, err := e.getID(p.ID, google("accounts.google.com"))
	if err != nil {
		t.Fatalf("a Google token whose iss is accounts.google.com: %v", err)
	}
	if without != withScheme {
		t.Errorf("the same Google account got %s with iss https://accounts.google.com and %s without the scheme", withScheme, without)
	}
	c := e.claims("alice")
	c["iss"] = e.idp.name("realm1")
	_, err = e.getID(e.authPool.ID, e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, c)))
	wantError(t, err, "NotAuthorizedException", 400, "Issuer doesn't match providerName.")
}
