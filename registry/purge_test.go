package registry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// TestPurgeIdentityPoolInSteps: the purge of a deleted pool with more keys
// than one batch runs in several steps, each resuming from the cursor the
// one before returned, and removes the pool's login keys and identities,
// so that the same login in a pool created again with that id gets a new
// identity; another pool's logins and identities stay. Until the purge is
// finished, no pool of that id can be created.
func TestPurgeIdentityPoolInSteps(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	ctx := context.Background()
	gone := poolsCreate(t, r, true)
	kept := poolsCreate(t, r, true)
	logins := map[string]string{}
	for i := range 3 {
		sub := fmt.Sprintf("user-%d", i)
		id, _, err := r.IdentityForLogin(ctx, gone.ID, poolsIssuer, sub)
		if err != nil {
			t.Fatal(err)
		}
		logins[sub] = id
	}
	for range 1200 { // more than a batch of the scan
		if _, err := r.NewIdentity(ctx, gone.ID); err != nil {
			t.Fatal(err)
		}
	}
	keptID, _, err := r.IdentityForLogin(ctx, kept.ID, poolsIssuer, "user-0")
	if err != nil {
		t.Fatal(err)
	}

	if _, err := r.PurgeIdentityPool(ctx, gone.ID, nil, "", time.Now().Add(time.Minute)); !errors.Is(err, registry.ErrPoolExists) {
		t.Fatalf("purge of a pool that exists: %v, want %v", err, registry.ErrPoolExists)
	}
	if err := r.DeleteIdentityPool(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PurgeIdentityPool(ctx, gone.ID, nil, "not-a-cursor", time.Now()); !errors.Is(err, registry.ErrInvalidPool) {
		t.Errorf("purge from a cursor it never returned: %v, want %v", err, registry.ErrInvalidPool)
	}

	var removed int64
	steps := 0
	refused := false
	for cursor := ""; ; {
		// A deadline already past: each step ends after one batch.
		res, err := r.PurgeIdentityPool(ctx, gone.ID, nil, cursor, time.Now())
		if err != nil {
			t.Fatalf("step %d from %q: %v", steps+1, cursor, err)
		}
		removed += res.Removed
		if res.Phase == registry.PurgeWaiting {
			time.Sleep(50 * time.Millisecond) // for the deletion to be seen everywhere
			cursor = res.Next
			continue
		}
		steps++
		if res.Next == "" {
			break
		}
		if removed > 0 && !refused {
			refused = true
			// Half purged: a pool created now would find the rest.
			_, err := r.CreateIdentityPool(ctx, "", registry.IdentityPool{ID: gone.ID, Name: "too soon", AllowUnauthenticated: true})
			if !errors.Is(err, registry.ErrPurgeUnfinished) {
				t.Fatalf("pool created while its purge is unfinished: %v, want %v", err, registry.ErrPurgeUnfinished)
			}
			if _, err := r.IdentityPool(ctx, gone.ID); !errors.Is(err, registry.ErrPoolNotFound) {
				t.Fatalf("the refused pool: %v, want %v", err, registry.ErrPoolNotFound)
			}
		}
		if steps > 100000 {
			t.Fatal("the purge does not end")
		}
		cursor = res.Next
	}
	if !refused {
		t.Error("the purge removed everything in its last step; no pool could be created while it was half done")
	}
	if steps < 2 {
		t.Errorf("the purge took %d step; a past deadline should end a step after each batch", steps)
	}
	if want := int64(1200 + 3 + 3); removed < want {
		t.Errorf("removed %d keys, want at least %d (identities and login keys)", removed, want)
	}
	if res, err := r.PurgeIdentityPool(ctx, gone.ID, nil, "", time.Now().Add(time.Minute)); res.Removed != 0 || res.Next != "" || err != nil {
		t.Errorf("purge run again: removed %d, cursor %q, %v; want nothing left", res.Removed, res.Next, err)
	}

	if _, err := r.CreateIdentityPool(ctx, "", registry.IdentityPool{ID: gone.ID, Name: "again", AllowUnauthenticated: true,
		OpenIDProviders: gone.OpenIDProviders}); err != nil {
		t.Fatal(err)
	}
	for sub, old := range logins {
		id, created, err := r.IdentityForLogin(ctx, gone.ID, poolsIssuer, sub)
		if err != nil || !created || id == old {
			t.Errorf("login %s in the pool created again: identity %s (created %v, %v), want a new one, not %s", sub, id, created, err, old)
		}
	}
	if id, created, err := r.IdentityForLogin(ctx, kept.ID, poolsIssuer, "user-0"); err != nil || created || id != keptID {
		t.Errorf("the other pool's login: identity %s (created %v, %v), want %s kept", id, created, err, keptID)
	}
}

// TestPurgeIdentityPoolGoesOnWithoutCursor: a purge interrupted midway
// (its caller stopped, or lost the cursor) and run again from no cursor
// goes on in the phase where it stopped, reporting the phase and the Redis
// master it scans, instead of scanning everything again; once it is
// finished, the configuration keeps no cursor or mark of it.
func TestPurgeIdentityPoolGoesOnWithoutCursor(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	ctx := context.Background()
	gone := poolsCreate(t, r, true)
	if _, _, err := r.IdentityForLogin(ctx, gone.ID, poolsIssuer, "user-0"); err != nil {
		t.Fatal(err)
	}
	for range 1200 { // more than a batch of the scan
		if _, err := r.NewIdentity(ctx, gone.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.DeleteIdentityPool(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	// A deadline already past: each step ends after one batch. Step until
	// the purge is in its identities phase.
	var scanned int64
	for cursor, steps := "", 0; ; steps++ {
		res, err := r.PurgeIdentityPool(ctx, gone.ID, nil, cursor, time.Now())
		if err != nil {
			t.Fatalf("step %d from %q: %v", steps+1, cursor, err)
		}
		if res.Next == "" || steps > 100000 {
			t.Fatalf("the purge ended (cursor %q) before its identities phase", res.Next)
		}
		if res.Phase == registry.PurgeWaiting {
			time.Sleep(50 * time.Millisecond) // for the deletion to be seen everywhere
		}
		scanned += res.Scanned
		if res.Phase == "identities" && res.Scanned > 0 {
			if res.Node != 1 || res.Nodes != 1 {
				t.Errorf("step %d reports Redis master %d of %d, want 1 of 1", steps+1, res.Node, res.Nodes)
			}
			break
		}
		cursor = res.Next
	}
	if scanned == 0 {
		t.Fatal("the steps report no key scanned")
	}

	res, err := r.PurgeIdentityPool(ctx, gone.ID, nil, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != "identities" {
		t.Fatalf("the purge run again without a cursor is in phase %q (cursor %q), want identities, where it stopped", res.Phase, res.Next)
	}
	for steps := 0; res.Next != ""; steps++ {
		if res, err = r.PurgeIdentityPool(ctx, gone.ID, nil, "", time.Now()); err != nil {
			t.Fatalf("step %d without a cursor: %v", steps+1, err)
		}
		if steps > 100000 {
			t.Fatal("the purge does not end")
		}
	}
	config, err := rdb.HGetAll(ctx, prefix+":{config}").Result()
	if err != nil {
		t.Fatal(err)
	}
	for f := range config {
		if strings.Contains(f, gone.ID) {
			t.Errorf("the configuration keeps field %s after the purge", f)
		}
	}
	if _, err := r.CreateIdentityPool(ctx, "", registry.IdentityPool{ID: gone.ID, Name: "again", AllowUnauthenticated: true}); err != nil {
		t.Errorf("creating the pool again after its purge: %v", err)
	}
}

// TestPurgeIdentityPoolWaitsOutPoolCache: another API process that read a
// pool just before its deletion keeps serving it for PoolCacheTTL, and
// writes what it accepts (devices, records, identities); the purge of the
// deleted pool removes nothing until that time has passed, answering steps
// "waiting" meanwhile, so that when it is finished no process still serves
// the pool and leaves a write behind it.
func TestPurgeIdentityPoolWaitsOutPoolCache(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	const ttl = 2 * time.Second
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, PoolCacheTTL: ttl})
	other := registry.New(rdb, registry.Options{KeyPrefix: prefix, PoolCacheTTL: ttl})
	ctx := context.Background()
	gone := poolsCreate(t, r, true)
	id, err := r.NewIdentity(ctx, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.CheckPool(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteIdentityPool(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := other.CheckPool(ctx, gone.ID); err != nil {
		t.Fatalf("the other process, right after the deletion: %v; the test needs it to serve the pool from its cache", err)
	}

	res, err := r.PurgeIdentityPool(ctx, gone.ID, nil, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Phase != registry.PurgeWaiting || res.Removed != 0 || res.Next == "" {
		t.Errorf("first step right after the deletion: phase %q, removed %d, cursor %q; want phase %q, nothing removed, a cursor",
			res.Phase, res.Removed, res.Next, registry.PurgeWaiting)
	}
	if _, err := r.Identity(ctx, id); err != nil {
		t.Errorf("the pool's identity after a step that waits: %v", err)
	}
	for steps := 0; res.Next != ""; steps++ {
		if res, err = r.PurgeIdentityPool(ctx, gone.ID, nil, res.Next, time.Now().Add(time.Second)); err != nil {
			t.Fatalf("step %d: %v", steps+2, err)
		}
		if steps > 1000 {
			t.Fatal("the purge does not end")
		}
	}
	if err := other.CheckPool(ctx, gone.ID); !errors.Is(err, registry.ErrPoolNotFound) {
		t.Errorf("once the purge finished, the other process still serves the deleted pool (CheckPool: %v, want %v): what it writes now stays behind the purge",
			err, registry.ErrPoolNotFound)
	}
	if _, err := r.Identity(ctx, id); !errors.Is(err, registry.ErrIdentityNotFound) {
		t.Errorf("the pool's identity after the purge: %v, want %v", err, registry.ErrIdentityNotFound)
	}
}

// purgeBefore is a Redis hook that, before the first SET NX it sees once
// armed, deletes the pool and purges it until its phase stop begins (to
// the end for ""), as another process would between a writer's check of
// the pool and its write.
type purgeBefore struct {
	t           *testing.T
	admin, late *registry.Registry
	pool, stop  string
	armed       bool
}

func (h *purgeBefore) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *purgeBefore) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *purgeBefore) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if h.armed && cmd.Name() == "set" && fmt.Sprint(args[len(args)-1]) == "nx" {
			h.armed = false
			if err := h.admin.DeleteIdentityPool(ctx, h.pool); err != nil {
				h.t.Error(err)
			}
			for cursor := ""; ; {
				res, err := h.late.PurgeIdentityPool(ctx, h.pool, nil, cursor, time.Now())
				if err != nil {
					h.t.Error(err)
					break
				}
				if res.Next == "" || res.Phase == h.stop {
					break
				}
				cursor = res.Next
			}
		}
		return next(ctx, cmd)
	}
}

// TestLoginWrittenAsPoolIsPurged: a first login (IdentityForLogin) or a
// link (LinkLogin) that checked its pool, and writes the login key after
// the pool was deleted and a purge passed over the logins, leaves no login
// key behind: it reads the pool again, drops its key and answers
// ErrPoolNotFound.
func TestLoginWrittenAsPoolIsPurged(t *testing.T) {
	for _, c := range []struct {
		name, stop string
		write      func(r *registry.Registry, pool, guest string) error
	}{
		{"IdentityForLogin", "", func(r *registry.Registry, pool, _ string) error {
			_, _, err := r.IdentityForLogin(context.Background(), pool, poolsIssuer, "user-1")
			return err
		}},
		{"LinkLogin", "identities", func(r *registry.Registry, pool, guest string) error {
			_, err := r.LinkLogin(context.Background(), guest, pool, poolsIssuer, "user-1")
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rdb, prefix := testenv.Redis(t)
			ctx := context.Background()
			admin := registry.New(rdb, registry.Options{KeyPrefix: prefix})
			late := registry.New(rdb, registry.Options{KeyPrefix: prefix, Now: func() time.Time { return time.Now().Add(time.Hour) }})
			hook := &purgeBefore{t: t, admin: admin, late: late, stop: c.stop}
			wrdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
			t.Cleanup(func() { wrdb.Close() })
			wrdb.AddHook(hook)
			w := registry.New(wrdb, registry.Options{KeyPrefix: prefix})
			pool := poolsCreate(t, admin, true)
			guest, err := admin.NewIdentity(ctx, pool.ID)
			if err != nil {
				t.Fatal(err)
			}
			hook.pool, hook.armed = pool.ID, true

			err = c.write(w, pool.ID, guest)
			if hook.armed {
				t.Fatal("the write set no login key with SET NX; the test purged nothing")
			}
			for cursor := ""; c.stop != ""; { // finish the purge the hook began
				res, perr := late.PurgeIdentityPool(ctx, pool.ID, nil, cursor, time.Time{})
				if perr != nil {
					t.Fatal(perr)
				}
				if cursor = res.Next; cursor == "" {
					break
				}
			}
			if left, _ := rdb.Keys(ctx, prefix+":login:*").Result(); len(left) > 0 {
				t.Errorf("login keys left after the purge: %q (the write answered %v)", left, err)
			}
			if !errors.Is(err, registry.ErrPoolNotFound) {
				t.Errorf("the write made as the pool was purged: %v, want %v", err, registry.ErrPoolNotFound)
			}
		})
	}
}
