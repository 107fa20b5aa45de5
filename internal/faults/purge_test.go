//go:build faults

package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/store"
)

// TestPurgeOnRedisCluster erases a deleted identity pool's data on a Redis
// Cluster of three masters, in steps of one batch each: every key of the
// pool goes from every master, and every key of another pool stays.
func TestPurgeOnRedisCluster(t *testing.T) {
	rc := startRedisCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.addrs()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	const prefix = "purgetest"
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	st := store.New(rdb, store.Options{KeyPrefix: prefix})

	pools := map[string]string{}
	for _, name := range []string{"gone", "kept"} {
		p, err := reg.CreateIdentityPool(ctx, "eu-west-1", registry.IdentityPool{Name: name, AllowUnauthenticated: true})
		if err != nil {
			t.Fatal(err)
		}
		pools[name] = p.ID
		for i := range 150 {
			id, err := reg.NewIdentity(ctx, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			u := store.Update{IdentityPoolID: p.ID, IdentityID: id, DatasetName: "settings", DeviceID: "d", ModifiedBy: "d",
				Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: fmt.Sprint(i)}}}
			if _, _, err := st.UpdateRecords(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	// keysOf lists, master by master, the keys naming the pool.
	keysOf := func(pool string) (all []string, perMaster []int) {
		for _, rs := range rc.nodes {
			n := 0
			iter := rs.client().Scan(ctx, 0, prefix+":*", 500).Iterator()
			for iter.Next(ctx) {
				if strings.Contains(iter.Val(), pool) {
					all = append(all, iter.Val())
					n++
				}
			}
			if err := iter.Err(); err != nil {
				t.Fatal(err)
			}
			perMaster = append(perMaster, n)
		}
		return all, perMaster
	}
	keptBefore, _ := keysOf(pools["kept"])
	goneBefore, spread := keysOf(pools["gone"])
	for i, n := range spread {
		if n == 0 {
			t.Fatalf("master %s holds no key of the pool (%v): the test would not show a purge over every master", rc.nodes[i].Addr, spread)
		}
	}

	if err := reg.DeleteIdentityPool(ctx, pools["gone"]); err != nil {
		t.Fatal(err)
	}
	var removed int64
	steps := 0
	for cursor := ""; ; steps++ {
		res, err := reg.PurgeIdentityPool(ctx, pools["gone"], st.PurgePhases(pools["gone"]), cursor, time.Now())
		if err != nil {
			t.Fatalf("step %d from %q: %v", steps+1, cursor, err)
		}
		removed += res.Removed
		if res.Phase == registry.PurgeWaiting {
			time.Sleep(50 * time.Millisecond) // for the deletion to be seen everywhere
		}
		if res.Next == "" {
			break
		}
		if steps > 100000 {
			t.Fatal("the purge does not end")
		}
		cursor = res.Next
	}
	t.Logf("%d keys of the pool over the masters %v; the purge removed %d in %d steps", len(goneBefore), spread, removed, steps+1)
	if left, _ := keysOf(pools["gone"]); len(left) > 0 {
		t.Errorf("%d keys of the purged pool left, such as %s", len(left), left[0])
	}
	if removed < int64(len(goneBefore)) {
		t.Errorf("removed %d, fewer than the %d keys the pool had", removed, len(goneBefore))
	}
	keptAfter, _ := keysOf(pools["kept"])
	if len(keptAfter) != len(keptBefore) {
		t.Errorf("the other pool has %d keys after the purge, %d before", len(keptAfter), len(keptBefore))
	}
	if _, err := reg.IdentityPool(ctx, pools["kept"]); err != nil {
		t.Errorf("the other pool: %v", err)
	}
}
