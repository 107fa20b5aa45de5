//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package identity_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	"github.com/golang-jwt/jwt/v4"

	"github.com/pushsync/pushsync/registry"
)

// guest returns a new unauthenticated identity of the open pool.
func (e *env) guest() string {
	e.t.Helper()
	id, err := e.getID(e.openPool.ID, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// wantCredentialFor checks that GetCredentialsForIdentity answered with the
// identity id and a credential stored for that identity of the pool.
func (e *env) wantCredentialFor(out *cognitoidentity.GetCredentialsForIdentityOutput, pool, id string) {
	e.t.Helper()
	if got := aws.StringValue(out.IdentityId); got != id {
		e.t.Fatalf("GetCredentialsForIdentity answered for identity %s, want %s", got, id)
	}
	stored, err := e.reg.Credential(context.Background(), aws.StringValue(out.Credentials.AccessKeyId))
	if err != nil {
		e.t.Fatal(err)
	}
	if stored.IdentityID != id || stored.IdentityPoolID != pool {
		e.t.Fatalf("the credential is stored for identity %s of pool %s, want %s of %s", stored.IdentityID, stored.IdentityPoolID, id, pool)
	}
}

// wantLogins checks the logins the registry holds for an identity.
func (e *env) wantLogins(id string, want ...string) {
	e.t.Helper()
	rec, err := e.reg.Identity(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	if !slices.Equal(rec.Logins, want) {
		e.t.Fatalf("identity %s has logins %q, want %q", id, rec.Logins, want)
	}
}

// login1 is the form in which the registry lists a realm1 login.
func (e *env) login1(sub string) string { return registry.LoginName(e.idp.issuer("realm1"), sub) }

// TestLinkLoginToGuest is the guest who signs in: the SDK sends its cached
// unauthenticated identity with the new login, which is linked to it.
func TestLinkLoginToGuest(t *testing.T) {
	e := newEnv(t)
	x := e.guest()
	if _, err := e.credentials(x, nil); err != nil {
		t.Fatal(err)
	}
	out, err := e.credentials(x, e.realm1(e.rs256("alice")))
	if err != nil {
		t.Fatalf("GetCredentialsForIdentity of a guest with a login: %v", err)
	}
	e.wantCredentialFor(out, e.openPool.ID, x)
	e.wantLogins(x, e.login1("alice"))

	// The identity is the login's now, and authenticated.
	if id, err := e.getID(e.openPool.ID, e.realm1(e.es256("alice"))); err != nil || id != x {
		t.Fatalf("GetId with the linked login: %s %v, want %s", id, err, x)
	}
	_, err = e.credentials(x, nil)
	wantError(t, err, "NotAuthorizedException", 400, "Logins don't match")
	_, err = e.credentials(x, e.realm1(e.rs256("bob")))
	wantError(t, err, "NotAuthorizedException", 400, "Logins don't match")
	e.wantLogins(x, e.login1("alice"))
	out, err = e.credentials(x, e.realm1(e.es256("alice")))
	if err != nil {
		t.Fatal(err)
	}
	e.wantCredentialFor(out, e.openPool.ID, x)
}

// TestLinkLoginThatHasAnIdentity: a login with an identity of its own keeps
// it; the guest is answered with that identity, which the SDKs take as the
// new identity, and stays a guest.
func TestLinkLoginThatHasAnIdentity(t *testing.T) {
	e := newEnv(t)
	y, err := e.getID(e.openPool.ID, e.realm1(e.rs256("carol")))
	if err != nil {
		t.Fatal(err)
	}
	x := e.guest()
	out, err := e.credentials(x, e.realm1(e.es256("carol")))
	if err != nil {
		t.Fatalf("GetCredentialsForIdentity of a guest with a login that has an identity: %v", err)
	}
	e.wantCredentialFor(out, e.openPool.ID, y)
	e.wantLogins(y, e.login1("carol"))
	e.wantLogins(x)
	if id, err := e.getID(e.openPool.ID, e.realm1(e.rs256("carol"))); err != nil || id != y {
		t.Fatalf("GetId with the login: %s %v, want %s", id, err, y)
	}
	out, err = e.credentials(x, nil)
	if err != nil {
		t.Fatalf("the guest without a login: %v", err)
	}
	e.wantCredentialFor(out, e.openPool.ID, x)
}

// TestConcurrentLinksOfOneLogin: guests linking the same login at once, and
// a first GetId of that login, all end with one identity for the login.
func TestConcurrentLinksOfOneLogin(t *testing.T) {
	e := newEnv(t)
	if _, err := e.getID(e.openPool.ID, e.realm1(e.rs256("warm-up"))); err != nil {
		t.Fatal(err) // the key set is fetched
	}
	guests := make([]string, 8)
	for i := range guests {
		guests[i] = e.guest()
	}
	got := make([]string, len(guests)+1) // the last is GetId's
	tokens := make([]string, len(got))
	for i := range tokens {
		tokens[i] = e.rs256("dave")
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if i == len(guests) {
				id, err := e.getID(e.openPool.ID, e.realm1(tokens[i]))
				if err != nil {
					t.Errorf("GetId: %v", err)
				}
				got[i] = id
				return
			}
			out, err := e.credentials(guests[i], e.realm1(tokens[i]))
			if err != nil {
				t.Errorf("guest %d: %v", i, err)
				return
			}
			got[i] = aws.StringValue(out.IdentityId)
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, id := range got {
		if id != got[0] {
			t.Fatalf("concurrent links of one login answered different identities: %v", got)
		}
	}
	owner := got[0]
	e.wantLogins(owner, e.login1("dave"))
	for _, g := range guests {
		if g != owner {
			e.wantLogins(g)
		}
	}
	if id, err := e.getID(e.openPool.ID, e.realm1(e.es256("dave"))); err != nil || id != owner {
		t.Fatalf("GetId after the race: %s %v, want %s", id, err, owner)
	}
}

// TestConcurrentLinksToOneGuest: one guest linking two logins at once gets
// one of them; the other login is left unlinked.
func TestConcurrentLinksToOneGuest(t *testing.T) {
	e := newEnv(t)
	if _, err := e.getID(e.openPool.ID, e.realm1(e.rs256("warm-up"))); err != nil {
		t.Fatal(err)
	}
	x := e.guest()
	subs := []string{"erin", "frank"}
	errs := make([]error, len(subs))
	tokens := []string{e.rs256(subs[0]), e.rs256(subs[1])}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var out *cognitoidentity.GetCredentialsForIdentityOutput
			out, errs[i] = e.credentials(x, e.realm1(tokens[i]))
			if errs[i] == nil && aws.StringValue(out.IdentityId) != x {
				t.Errorf("%s: answered for identity %s, want %s", subs[i], aws.StringValue(out.IdentityId), x)
			}
		}()
	}
	close(start)
	wg.Wait()
	won, lost := 0, 1
	if errs[0] != nil {
		won, lost = 1, 0
	}
	if errs[won] != nil {
		t.Fatalf("neither login was linked: %v, %v", errs[0], errs[1])
	}
	wantError(t, errs[lost], "NotAuthorizedException", 400, "Logins don't match")
	e.wantLogins(x, e.login1(subs[won]))
	// The losing login has no identity yet: GetId creates one.
	if id, err := e.getID(e.openPool.ID, e.realm1(e.es256(subs[lost]))); err != nil || id == x {
		t.Fatalf("GetId of the login that lost: %s %v, want a new identity", id, err)
	}
}

// TestLinkLoginOfAnotherPool: logins are per pool, and a token of a
// provider the guest's pool does not trust links nothing.
func TestLinkLoginOfAnotherPool(t *testing.T) {
	e := newEnv(t)
	// grace has an identity in the pool of logins only, not in the open pool.
	y, err := e.getID(e.authPool.ID, e.realm1(e.rs256("grace")))
	if err != nil {
		t.Fatal(err)
	}
	x := e.guest()
	out, err := e.credentials(x, e.realm1(e.es256("grace")))
	if err != nil {
		t.Fatal(err)
	}
	e.wantCredentialFor(out, e.openPool.ID, x)
	e.wantLogins(x, e.login1("grace"))
	e.wantLogins(y, e.login1("grace"))

	// realm2 is a provider of the pool of logins only.
	x2 := e.guest()
	c := e.claims("heidi")
	c["iss"] = e.idp.issuer("realm2")
	realm2 := map[string]string{e.idp.name("realm2"): sign(t, jwt.SigningMethodRS256, "r2-rsa", rsa2, c)}
	_, err = e.credentials(x2, realm2)
	wantError(t, err, "NotAuthorizedException", 400, "Token is not from a supported provider of this identity pool.")
	e.wantLogins(x2)
	if _, err := e.credentials(x2, nil); err != nil {
		t.Fatalf("the guest after the refusal: %v", err)
	}
}

// TestLinkInvalidLogin: a login that fails verification leaves the guest
// as it was, and the login unlinked.
func TestLinkInvalidLogin(t *testing.T) {
	e := newEnv(t)
	x := e.guest()
	expired := e.claims("ivan")
	expired["exp"] = e.clock.Now().Add(-time.Second).Unix()
	for _, tt := range []struct {
		name       string
		logins     map[string]string
		code, want string
	}{
		{"expired", e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsa1, expired)), "NotAuthorizedException", "Token expired at"},
		{"bad signature", e.realm1(sign(t, jwt.SigningMethodRS256, "r1-rsa", rsaAttacker, e.claims("ivan"))), "NotAuthorizedException", "signature is invalid"},
		{"two logins", map[string]string{e.idp.name("realm1"): e.rs256("ivan"), e.idp.name("realm2"): "x"}, "InvalidParameterException", "exactly one login"},
	} {
		_, err := e.credentials(x, tt.logins)
		wantError(t, err, tt.code, 400, tt.want)
		e.wantLogins(x)
	}
	out, err := e.credentials(x, nil)
	if err != nil {
		t.Fatalf("the guest after the refusals: %v", err)
	}
	e.wantCredentialFor(out, e.openPool.ID, x)
	if id, err := e.getID(e.openPool.ID, e.realm1(e.rs256("ivan"))); err != nil || id == x {
		t.Fatalf("GetId with a valid token of the refused login: %s %v, want a new identity", id, err)
	}
}
