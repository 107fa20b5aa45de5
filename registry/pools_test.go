package registry_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

const poolsIssuer = "https://accounts.example.com"

var poolsIDPattern = regexp.MustCompile(`^eu-west-2:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func poolsRegistry(t *testing.T) (*registry.Registry, string) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return registry.New(rdb, registry.Options{KeyPrefix: prefix}), prefix
}

func poolsCreate(t *testing.T, r *registry.Registry, unauth bool) registry.IdentityPool {
	t.Helper()
	p, err := r.CreateIdentityPool(context.Background(), "eu-west-2", registry.IdentityPool{
		Name:                 "Game players",
		AllowUnauthenticated: unauth,
		OpenIDProviders:      []registry.OpenIDProvider{{Issuer: poolsIssuer, ClientIDs: []string{"app-1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIdentityPoolLifecycle(t *testing.T) {
	r, prefix := poolsRegistry(t)
	ctx := context.Background()
	p := poolsCreate(t, r, true)
	if !poolsIDPattern.MatchString(p.ID) || p.CreatedAt.IsZero() || p.Region() != "eu-west-2" {
		t.Fatalf("created pool %+v", p)
	}
	op, ok := p.Provider("accounts.example.com")
	if !ok || op.KeysURL() != poolsIssuer+"/.well-known/jwks.json" {
		t.Fatalf("provider lookup: %+v %v", op, ok)
	}
	// An issuer ending in "/", as Auth0's do, is named with or without it.
	slashed := registry.IdentityPool{OpenIDProviders: []registry.OpenIDProvider{{Issuer: "https://tenant.auth0.com/"}}}
	for _, name := range []string{"tenant.auth0.com/", "tenant.auth0.com"} {
		if op, ok := slashed.Provider(name); !ok || op.Issuer != "https://tenant.auth0.com/" {
			t.Errorf("provider %q of an issuer ending in /: %+v %v", name, op, ok)
		}
	}
	if _, ok := slashed.Provider("tenant.auth0.co"); ok {
		t.Error("provider tenant.auth0.co matched the issuer https://tenant.auth0.com/")
	}
	got, err := r.IdentityPool(ctx, p.ID)
	if err != nil || got.Name != p.Name || !got.AllowUnauthenticated || !got.CreatedAt.Equal(p.CreatedAt) || len(got.OpenIDProviders) != 1 {
		t.Fatalf("IdentityPool: %+v %v", got, err)
	}

	// A chosen id: valid and unused.
	fixed := registry.IdentityPool{ID: "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", Name: "fixed"}
	if _, err := r.CreateIdentityPool(ctx, "", fixed); err != nil {
		t.Fatalf("create with an id: %v", err)
	}
	if _, err := r.CreateIdentityPool(ctx, "", fixed); !errors.Is(err, registry.ErrPoolExists) {
		t.Fatalf("second create with the same id: %v", err)
	}
	if _, err := r.CreateIdentityPool(ctx, "", registry.IdentityPool{ID: "nope", Name: "x"}); !errors.Is(err, registry.ErrInvalidPool) {
		t.Fatalf("invalid id: %v", err)
	}
	if _, err := r.CreateIdentityPool(ctx, "US East", registry.IdentityPool{Name: "x"}); !errors.Is(err, registry.ErrInvalidPool) {
		t.Fatalf("invalid region: %v", err)
	}

	pools, err := r.IdentityPools(ctx)
	if err != nil || len(pools) != 2 || pools[0].ID > pools[1].ID {
		t.Fatalf("IdentityPools: %+v %v", pools, err)
	}

	p.Name, p.AllowUnauthenticated = "Renamed", false
	p.CreatedAt = time.Time{}
	up, err := r.UpdateIdentityPool(ctx, p)
	if err != nil || !up.CreatedAt.Equal(got.CreatedAt) {
		t.Fatalf("update: %+v %v", up, err)
	}
	if got, _ := r.IdentityPool(ctx, p.ID); got.Name != "Renamed" || got.AllowUnauthenticated {
		t.Fatalf("after update: %+v", got)
	}
	missing := registry.IdentityPool{ID: "us-east-1:00000000-0000-0000-0000-000000000000", Name: "x"}
	if _, err := r.UpdateIdentityPool(ctx, missing); !errors.Is(err, registry.ErrPoolNotFound) {
		t.Fatalf("update of a missing pool: %v", err)
	}

	// Pools live in the config hash, beside the apps.
	rdb, _ := testenv.Redis(t)
	if ok, _ := rdb.HExists(ctx, prefix+":{config}", "ipool:"+p.ID).Result(); !ok {
		t.Fatal("pool is not in the config hash")
	}

	if err := r.DeleteIdentityPool(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteIdentityPool(ctx, p.ID); !errors.Is(err, registry.ErrPoolNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := r.IdentityPool(ctx, p.ID); !errors.Is(err, registry.ErrPoolNotFound) {
		t.Fatalf("deleted pool: %v", err)
	}
}

func TestIdentityPoolValidation(t *testing.T) {
	prov := func(issuer string, clients ...string) []registry.OpenIDProvider {
		return []registry.OpenIDProvider{{Issuer: issuer, ClientIDs: clients}}
	}
	tests := []struct {
		name string
		pool registry.IdentityPool
		want string
	}{
		{"ok", registry.IdentityPool{Name: "Players (EU) ✓", OpenIDProviders: prov(poolsIssuer, "a")}, ""},
		{"loopback http", registry.IdentityPool{Name: "t", OpenIDProviders: prov("http://127.0.0.1:8080/realm", "a")}, ""},
		{"localhost http", registry.IdentityPool{Name: "t", OpenIDProviders: prov("http://localhost:8080", "a")}, ""},
		{"empty name", registry.IdentityPool{Name: ""}, "printable"},
		{"long name", registry.IdentityPool{Name: strings.Repeat("n", 129)}, "1 to 128"},
		{"control in name", registry.IdentityPool{Name: "a\nb"}, "printable"},
		{"http issuer", registry.IdentityPool{Name: "t", OpenIDProviders: prov("http://accounts.example.com", "a")}, "http is allowed only"},
		{"relative issuer", registry.IdentityPool{Name: "t", OpenIDProviders: prov("accounts.example.com", "a")}, "absolute URL"},
		{"ftp issuer", registry.IdentityPool{Name: "t", OpenIDProviders: prov("ftp://accounts.example.com", "a")}, "https URL"},
		{"query issuer", registry.IdentityPool{Name: "t", OpenIDProviders: prov(poolsIssuer+"?x=1", "a")}, "no query"},
		{"pipe issuer", registry.IdentityPool{Name: "t", OpenIDProviders: prov(poolsIssuer+"/a|b", "a")}, "'|'"},
		{"no client", registry.IdentityPool{Name: "t", OpenIDProviders: prov(poolsIssuer)}, "client ids"},
		{"empty client", registry.IdentityPool{Name: "t", OpenIDProviders: prov(poolsIssuer, "")}, "client id"},
		{"twice", registry.IdentityPool{Name: "t", OpenIDProviders: append(prov(poolsIssuer, "a"), prov(poolsIssuer, "b")...)}, "given twice"},
		{"bad jwks", registry.IdentityPool{Name: "t", OpenIDProviders: []registry.OpenIDProvider{{Issuer: poolsIssuer, ClientIDs: []string{"a"}, JWKSURL: "http://keys.example.com/jwks"}}}, "jwksUrl"},
	}
	for _, tt := range tests {
		err := tt.pool.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, registry.ErrInvalidPool)) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
	if n := (registry.OpenIDProvider{Issuer: "https://127.0.0.1:8443/realm"}).Name(); n != "127.0.0.1:8443/realm" {
		t.Errorf("provider name %q", n)
	}
}

func TestIdentities(t *testing.T) {
	r, prefix := poolsRegistry(t)
	ctx := context.Background()
	p := poolsCreate(t, r, true)

	u1, err := r.NewIdentity(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	u2, _ := r.NewIdentity(ctx, p.ID)
	if !poolsIDPattern.MatchString(u1) || u1 == u2 {
		t.Fatalf("unauthenticated ids %s %s", u1, u2)
	}
	rec, err := r.Identity(ctx, u1)
	if err != nil || rec.ID != u1 || rec.PoolID != p.ID || rec.Authenticated() || rec.CreatedAt.IsZero() {
		t.Fatalf("Identity: %+v %v", rec, err)
	}

	a1, created, err := r.IdentityForLogin(ctx, p.ID, poolsIssuer, "alice")
	if err != nil || !created || !poolsIDPattern.MatchString(a1) {
		t.Fatalf("first login: %s %v %v", a1, created, err)
	}
	a2, created, err := r.IdentityForLogin(ctx, p.ID, poolsIssuer, "alice")
	if err != nil || created || a2 != a1 {
		t.Fatalf("second login: %s %v %v, want %s", a2, created, err, a1)
	}
	b, _, _ := r.IdentityForLogin(ctx, p.ID, poolsIssuer, "bob")
	if b == a1 {
		t.Fatal("two users share an identity")
	}
	// Subjects are case-sensitive and may hold the separator.
	c, _, _ := r.IdentityForLogin(ctx, p.ID, poolsIssuer, "Alice|x")
	if c == a1 {
		t.Fatal("Alice|x maps to alice")
	}
	rec, err = r.Identity(ctx, a1)
	if err != nil || rec.PoolID != p.ID || len(rec.Logins) != 1 || rec.Logins[0] != poolsIssuer+"|alice" || !rec.Authenticated() {
		t.Fatalf("authenticated identity: %+v %v", rec, err)
	}
	if rec, _ := r.Identity(ctx, c); rec.Logins[0] != registry.LoginName(poolsIssuer, "Alice|x") {
		t.Fatalf("logins %v", rec.Logins)
	}

	// Another pool: another identity for the same user.
	p2 := poolsCreate(t, r, false)
	other, _, err := r.IdentityForLogin(ctx, p2.ID, poolsIssuer, "alice")
	if err != nil || other == a1 {
		t.Fatalf("login in another pool: %s %v", other, err)
	}

	if _, err := r.Identity(ctx, "eu-west-2:00000000-0000-0000-0000-000000000000"); !errors.Is(err, registry.ErrIdentityNotFound) {
		t.Fatalf("unknown identity: %v", err)
	}
	if _, err := r.Identity(ctx, "bad id"); err == nil || !strings.Contains(err.Error(), "IdentityId") {
		t.Fatalf("invalid identity id: %v", err)
	}
	unknownPool := "eu-west-2:00000000-0000-0000-0000-000000000000"
	if _, err := r.NewIdentity(ctx, unknownPool); !errors.Is(err, registry.ErrPoolNotFound) {
		t.Fatalf("NewIdentity in an unknown pool: %v", err)
	}
	if _, _, err := r.IdentityForLogin(ctx, unknownPool, poolsIssuer, "alice"); !errors.Is(err, registry.ErrPoolNotFound) {
		t.Fatalf("IdentityForLogin in an unknown pool: %v", err)
	}
	if _, _, err := r.IdentityForLogin(ctx, p.ID, poolsIssuer, ""); err == nil {
		t.Fatal("empty subject accepted")
	}

	// The key schema of the file comment.
	rdb, _ := testenv.Redis(t)
	for _, k := range []string{prefix + ":{ident:" + a1 + "}", prefix + ":{ident:" + u1 + "}", prefix + ":login:{" + p.ID + "|" + poolsIssuer + "|alice}"} {
		if n, _ := rdb.Exists(ctx, k).Result(); n != 1 {
			t.Errorf("key %s does not exist", k)
		}
	}
	if id, _ := rdb.Get(ctx, prefix+":login:{"+p.ID+"|"+poolsIssuer+"|alice}").Result(); id != a1 {
		t.Errorf("login key holds %q, want %s", id, a1)
	}
}

func TestConcurrentFirstLoginsGetOneIdentity(t *testing.T) {
	r, prefix := poolsRegistry(t)
	ctx := context.Background()
	p := poolsCreate(t, r, false)
	ids := make([]string, 30)
	var createdCount int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, created, err := r.IdentityForLogin(ctx, p.ID, poolsIssuer, "carol")
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
			if created {
				mu.Lock()
				createdCount++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent first logins got different identities: %v", ids)
		}
	}
	if createdCount != 1 {
		t.Fatalf("%d logins report creating the identity, want 1", createdCount)
	}
	if _, err := r.Identity(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	// The losers' identities were dropped.
	rdb, _ := testenv.Redis(t)
	keys, _ := rdb.Keys(ctx, prefix+":{ident:*").Result()
	if len(keys) != 1 {
		t.Fatalf("identity keys %v, want one", keys)
	}
}
