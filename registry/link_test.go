package registry_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

func TestLinkLogin(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	ctx := context.Background()
	p := poolsCreate(t, r, true)
	loginKey := func(sub string) string { return prefix + ":login:{" + p.ID + "|" + poolsIssuer + "|" + sub + "}" }
	wantLogins := func(id string, want ...string) {
		t.Helper()
		rec, err := r.Identity(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec.Logins, want) {
			t.Fatalf("identity %s has logins %q, want %q", id, rec.Logins, want)
		}
	}
	wantNoLoginKey := func(sub string) {
		t.Helper()
		if n, _ := rdb.Exists(ctx, loginKey(sub)).Result(); n != 0 {
			id, _ := rdb.Get(ctx, loginKey(sub)).Result()
			t.Fatalf("login %s names identity %s, want no identity", sub, id)
		}
	}
	guest := func() string {
		t.Helper()
		id, err := r.NewIdentity(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	alice := registry.LoginName(poolsIssuer, "alice")

	x := guest()
	if id, err := r.LinkLogin(ctx, x, p.ID, poolsIssuer, "alice"); err != nil || id != x {
		t.Fatalf("linking a login to a guest: %s %v, want %s", id, err, x)
	}
	wantLogins(x, alice)
	if id, created, err := r.IdentityForLogin(ctx, p.ID, poolsIssuer, "alice"); err != nil || created || id != x {
		t.Fatalf("IdentityForLogin of the linked login: %s %v %v, want %s", id, created, err, x)
	}
	// The identity is stored as one of a first login is: pool, created and
	// the login.
	if n, _ := rdb.HLen(ctx, prefix+":{ident:"+x+"}").Result(); n != 3 {
		t.Fatalf("the linked identity's hash has %d fields, want 3", n)
	}
	if id, err := r.LinkLogin(ctx, x, p.ID, poolsIssuer, "alice"); err != nil || id != x {
		t.Fatalf("linking the login again: %s %v, want %s", id, err, x)
	}

	// A login with an identity keeps it.
	x2 := guest()
	if id, err := r.LinkLogin(ctx, x2, p.ID, poolsIssuer, "alice"); err != nil || id != x {
		t.Fatalf("linking a login that has an identity: %s %v, want %s", id, err, x)
	}
	wantLogins(x2)

	// An identity with a login takes no other.
	if _, err := r.LinkLogin(ctx, x, p.ID, poolsIssuer, "bob"); !errors.Is(err, registry.ErrIdentityHasLogin) {
		t.Fatalf("linking a second login: %v, want ErrIdentityHasLogin", err)
	}
	wantNoLoginKey("bob")
	wantLogins(x, alice)

	// No such identity, or not in that pool.
	missing := "eu-west-2:00000000-0000-4000-8000-000000000000"
	if _, err := r.LinkLogin(ctx, missing, p.ID, poolsIssuer, "bob"); !errors.Is(err, registry.ErrIdentityNotFound) {
		t.Fatalf("linking to an unknown identity: %v, want ErrIdentityNotFound", err)
	}
	wantNoLoginKey("bob")
	p2 := poolsCreate(t, r, true)
	if _, err := r.LinkLogin(ctx, x2, p2.ID, poolsIssuer, "bob"); !errors.Is(err, registry.ErrIdentityNotFound) {
		t.Fatalf("linking to an identity of another pool: %v, want ErrIdentityNotFound", err)
	}
	if n, _ := rdb.Exists(ctx, prefix+":login:{"+p2.ID+"|"+poolsIssuer+"|bob}").Result(); n != 0 {
		t.Fatal("a refused link left a login key in the other pool")
	}
	wantLogins(x2)
	if _, err := r.LinkLogin(ctx, x2, p.ID, poolsIssuer, ""); err == nil {
		t.Fatal("empty subject accepted")
	}

	// A link cut short after its login key: the next link completes it.
	x3 := guest()
	if err := rdb.Set(ctx, loginKey("carol"), x3, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if id, err := r.LinkLogin(ctx, x2, p.ID, poolsIssuer, "carol"); err != nil || id != x3 {
		t.Fatalf("linking a login whose link was cut short: %s %v, want %s", id, err, x3)
	}
	wantLogins(x3, registry.LoginName(poolsIssuer, "carol"))
	wantLogins(x2)

	// A login key naming an identity that has another login is not that
	// identity's: the login goes to the identity linking it.
	if err := rdb.Set(ctx, loginKey("dave"), x, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if id, err := r.LinkLogin(ctx, x2, p.ID, poolsIssuer, "dave"); err != nil || id != x2 {
		t.Fatalf("linking a login whose key names an identity with another login: %s %v, want %s", id, err, x2)
	}
	wantLogins(x2, registry.LoginName(poolsIssuer, "dave"))
	wantLogins(x, alice)
}

func TestConcurrentLinksGetOneIdentity(t *testing.T) {
	r, _ := poolsRegistry(t)
	ctx := context.Background()
	p := poolsCreate(t, r, true)
	guests := make([]string, 30)
	for i := range guests {
		var err error
		if guests[i], err = r.NewIdentity(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]string, len(guests))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id, err := r.LinkLogin(ctx, guests[i], p.ID, poolsIssuer, "erin")
			if err != nil {
				t.Error(err)
			}
			got[i] = id
		}()
	}
	close(start)
	wg.Wait()
	for _, id := range got {
		if id != got[0] {
			t.Fatalf("concurrent links of one login answered different identities: %v", got)
		}
	}
	linked := 0
	for _, g := range guests {
		rec, err := r.Identity(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Authenticated() {
			linked++
			if g != got[0] {
				t.Errorf("guest %s has a login, but the login's identity is %s", g, got[0])
			}
		}
	}
	if linked != 1 {
		t.Fatalf("%d guests have the login, want 1", linked)
	}
}
