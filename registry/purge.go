package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/keypurge"
	"github.com/pushsync/pushsync/sync/cognito"
)

// PurgeIdentityPool is one bounded step of erasing what a deleted identity
// pool leaves in Redis: the phases given (those of the other packages that
// keep data per identity, such as the store's), then the pool's login keys
// ("logins"), its identities' device registrations and subscriptions
// ("devices"), the markers of device removals whose events are still to be
// published ("device-removals"), its identity records ("identities"), and
// the push, streams and bulk publish settings of the pool in the
// configuration ("settings"). It runs until deadline, in batches of a few
// hundred keys, and returns what it removed and scanned, and the cursor
// to continue from, "" once everything is removed (keypurge.Result).
//
// Start with cursor "". The cursor a step returns, also with an error, is
// kept in the configuration until the purge is finished, and a step given
// "" continues from it: a purge that was interrupted, or whose caller lost
// its cursor, goes on where it stopped instead of scanning everything
// again. Running it again from its last cursor or from "" finishes the
// purge.
//
// While a pool of that id exists it removes nothing and returns an error
// wrapping ErrPoolExists; the check is made before every batch, read from
// Redis. From its first step until the purge is finished, creating a
// pool of that id is refused (ErrPurgeUnfinished), so that no new pool
// finds half of the old one's data (and no cursor kept outlives it). A
// cursor it did not return is an error wrapping ErrInvalidPool; one a
// version with other phases returned starts the purge again (see
// keypurge).
//
// It removes nothing until PoolCacheTTL and 2 seconds have passed since
// the pool's deletion, the time every process takes to stop serving the
// pool from its cache and to finish the requests it accepted: a write
// those make must not land behind a purge that began. A step that reaches
// its deadline first returns in phase PurgeWaiting, with nothing removed
// and a cursor to continue from.
//
// Identity credentials issued in the pool are not removed: deleting the
// pool voided them, and their records leave Redis by themselves an hour
// after they expire.
func (r *Registry) PurgeIdentityPool(ctx context.Context, id string, more []keypurge.Phase, cursor string, deadline time.Time) (keypurge.Result, error) {
	if err := cognito.ValidateIdentityPoolID(id); err != nil {
		return keypurge.Result{}, fmt.Errorf("registry: %w: %v", ErrInvalidPool, err)
	}
	p := cognito.EscapeGlob(r.prefix)
	pool := cognito.EscapeGlob(id)
	phases := append(append([]keypurge.Phase(nil), more...),
		keypurge.Phase{Name: "logins", Match: p + ":login:{" + pool + "|*"},
		keypurge.Phase{Name: "devices", Match: p + ":{" + pool + "/*}:push"},
		keypurge.Phase{Name: "device-removals", Match: p + ":{" + pool + "/*}:removed"},
		keypurge.Phase{Name: "identities", Match: p + ":{ident:*}", Select: func(ctx context.Context, keys []string) ([]string, error) {
			return r.identitiesOfPool(ctx, id, keys)
		}},
		keypurge.Phase{Name: "settings", Run: func(ctx context.Context) (int64, error) { return r.purgePoolConfig(ctx, id) }},
	)
	if err := r.beginPurge(ctx, id); err != nil {
		return keypurge.Result{}, fmt.Errorf("registry: purge identity pool %s: %w", id, err)
	}
	if res, waiting, err := r.waitOutDeletion(ctx, id, phases, cursor, deadline); err != nil || waiting {
		if errors.Is(err, keypurge.ErrBadCursor) {
			return res, fmt.Errorf("registry: %w: %v", ErrInvalidPool, err)
		}
		return res, err
	}
	if cursor == "" {
		kept, err := r.rdb.HGet(ctx, r.configKey(), purgeCursorField(id)).Result()
		if err != nil && err != redis.Nil {
			return keypurge.Result{}, fmt.Errorf("registry: purge identity pool %s: read its cursor: %w", id, err)
		}
		cursor = kept
	}
	res, err := keypurge.Step(ctx, r.rdb, phases, cursor, keypurge.Options{
		Deadline: deadline,
		Guard:    func(ctx context.Context) error { return r.beginPurge(ctx, id) },
	})
	if res.Next != "" && res.Next != cursor {
		if kerr := keepCursorScript.Run(ctx, r.rdb, []string{r.configKey()}, purgingField(id), purgeCursorField(id), res.Next).Err(); kerr != nil && err == nil {
			err = fmt.Errorf("keep its cursor: %w", kerr)
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, keypurge.ErrBadCursor):
		return res, fmt.Errorf("registry: %w: %v", ErrInvalidPool, err)
	default:
		return res, fmt.Errorf("registry: purge identity pool %s: %w", id, err)
	}
	return res, nil
}

// PurgeWaiting is the phase a purge step reports while the purge waits
// for the pool's deletion to be seen by every process (see
// PurgeIdentityPool).
const PurgeWaiting = "waiting"

// purgeFenceSlack is how long, beyond the PoolCacheTTL, a purge waits
// after its pool's deletion before it scans: time for the requests that
// found the pool there (just before its deletion, or through a process
// that still held it) to finish their writes, and for the deletion time's
// rounding by earlier versions to whole seconds.
const purgeFenceSlack = 2 * time.Second

// waitOutDeletion waits, until deadline at most, for PoolCacheTTL and
// purgeFenceSlack to pass since the pool's deletion. Until then API
// processes may still serve the pool from their cache and write its data,
// behind a purge that began. If the time has not passed by the deadline
// it returns waiting and the Result to answer: nothing removed, the
// cursor given (or that of the start) to continue from, in phase
// PurgeWaiting.
func (r *Registry) waitOutDeletion(ctx context.Context, id string, phases []keypurge.Phase, cursor string, deadline time.Time) (res keypurge.Result, waiting bool, err error) {
	v, err := r.rdb.HGet(ctx, r.configKey(), deletedField(id)).Result()
	if err == redis.Nil {
		return res, false, nil // deleted by a version that kept no time
	}
	if err != nil {
		return res, false, fmt.Errorf("registry: purge identity pool %s: read its deletion: %w", id, err)
	}
	deleted, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return res, false, fmt.Errorf("registry: purge identity pool %s: its deletion time %q: %w", id, v, err)
	}
	wait := deleted.Add(r.pools.ttl + purgeFenceSlack).Sub(r.now())
	if wait <= 0 {
		return res, false, nil
	}
	if !deadline.IsZero() {
		if left := time.Until(deadline); left < wait {
			if left > 0 {
				if err := sleep(ctx, left); err != nil {
					return res, false, err
				}
			}
			if cursor, err = keypurge.Start(phases, cursor); err != nil {
				return res, false, err
			}
			return keypurge.Result{Next: cursor, Phase: PurgeWaiting}, true, nil
		}
	}
	return res, false, sleep(ctx, wait)
}

// sleep waits for d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// keepCursorScript sets field ARGV[2] (a purge's cursor) to ARGV[3] if
// field ARGV[1] (the mark of that purge) exists: a step that ends after
// another one finished the purge leaves no cursor behind.
var keepCursorScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
`)

// checkPoolGone returns an error wrapping ErrPoolExists if a pool of that
// id exists.
func (r *Registry) checkPoolGone(ctx context.Context, c redis.Cmdable, id string) error {
	ok, err := c.HExists(ctx, r.configKey(), poolField(id)).Result()
	if err != nil {
		return err
	}
	if ok {
		return errPoolNotDeleted(id)
	}
	return nil
}

// beginPurgeScript returns 1 if field ARGV[1] (the pool) exists, else sets
// field ARGV[2] (the purge's mark) to ARGV[3] unless it is set, and
// returns 0.
var beginPurgeScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
return 0
`)

// beginPurge returns an error wrapping ErrPoolExists if a pool of that id
// exists, and otherwise marks its purge as begun, until purgePoolConfig,
// its last phase, removes the mark.
func (r *Registry) beginPurge(ctx context.Context, id string) error {
	n, err := beginPurgeScript.Run(ctx, r.rdb, []string{r.configKey()}, poolField(id), purgingField(id),
		r.now().UTC().Format(time.RFC3339)).Int()
	if err != nil {
		return err
	}
	if n == 1 {
		return errPoolNotDeleted(id)
	}
	return nil
}

func errPoolNotDeleted(id string) error {
	return fmt.Errorf("%w: %s; only the data of a deleted pool can be purged", ErrPoolExists, id)
}

// identitiesOfPool returns the identity record keys, among keys, of
// identities of the pool.
func (r *Registry) identitiesOfPool(ctx context.Context, pool string, keys []string) ([]string, error) {
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HGet(ctx, k, "pool")
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("read identities: %w", err)
	}
	var out []string
	for i, c := range cmds {
		if c.Err() == nil && c.Val() == pool && strings.HasPrefix(keys[i], r.prefix+":{ident:") {
			out = append(out, keys[i])
		}
	}
	return out, nil
}

// purgePoolConfig removes the pool's push, streams and bulk publish
// fields, and the marks of its deletion and of its purge, and the purge's
// cursor, from the
// configuration, unless a pool of that id exists.
func (r *Registry) purgePoolConfig(ctx context.Context, id string) (int64, error) {
	key := r.configKey()
	var n int64
	fn := func(tx *redis.Tx) error {
		if err := r.checkPoolGone(ctx, tx, id); err != nil {
			return err
		}
		var del *redis.IntCmd
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			del = p.HDel(ctx, key, "pool:"+id, "streams:"+id, r.bulkField(id))
			p.HDel(ctx, key, purgingField(id), purgeCursorField(id), deletedField(id))
			return nil
		})
		n = del.Val()
		return err
	}
	var err error
	for range 3 { // the configuration changed meanwhile: read it again
		if err = r.rdb.Watch(ctx, fn, key); !errors.Is(err, redis.TxFailedErr) {
			break
		}
	}
	return n, err
}
