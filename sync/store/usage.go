package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/sync/cognito"
)

// IdentityUsage is what one identity stores.
type IdentityUsage struct {
	IdentityPoolID string
	IdentityID     string
	// DatasetCount counts the live datasets.
	DatasetCount int
	// DataStorage is the sum of DataStorage over the live datasets.
	DataStorage int64
	// LastModifiedDate is the latest change to any dataset of the identity,
	// deletions included; the zero time if it never stored anything.
	LastModifiedDate time.Time
}

// PoolUsage is what one identity pool stores.
type PoolUsage struct {
	IdentityPoolID string
	// DataStorage is the sum of DataStorage over the live datasets of the
	// pool's identities. It is a counter kept beside the data, adjusted
	// after each committed change: a process that dies between the commit
	// and the adjustment leaves it off by that change, so it is approximate.
	DataStorage int64
	// LastModifiedDate is the time of the latest change recorded in the
	// counter, the zero time if none was.
	LastModifiedDate time.Time
	// SyncSessions counts the sync sessions of the pool's identities: the
	// ListRecords calls that started one. Like DataStorage it is a counter
	// kept beside the data, approximate in the same way.
	SyncSessions int64
}

// index records the identity in its pool's index and notes it in the
// sweep index, in one round trip, and returns the deadline of the commit
// (see sweepindex.Note). It runs before the commit script of a write, so
// that an identity with data is never missing from the pool's index nor a
// marker from the sweep's; entries for a write that then failed are
// harmless. No key common to every pool is written: on Redis Cluster it
// would take every write of the deployment to one node.
func (s *Store) index(ctx context.Context, pool, identity string) (int64, error) {
	var add *redis.IntCmd
	deadline, err := s.sweep.Note(ctx, pool+"/"+identity, func(p redis.Pipeliner) {
		add = p.SAdd(ctx, s.poolIdentitiesKey(pool), identity)
	})
	if err == nil {
		err = add.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("store: index identity: %w", err)
	}
	return deadline, nil
}

// usageScript adds ARGV[1] to the pool's data storage and raises its last
// modified time to ARGV[2] ms.
var usageScript = redis.NewScript(`
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[1])
local lm = redis.call('HGET', KEYS[1], 'lm')
if not lm or tonumber(lm) < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], 'lm', ARGV[2]) end
return 1
`)

// addUsage adjusts the pool's usage counter after a committed change. The
// change stands whatever happens here, so errors are dropped and a cancelled
// request context does not stop the adjustment.
func (s *Store) addUsage(ctx context.Context, pool string, delta, nowMs int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = usageScript.Run(ctx, s.rdb, []string{s.poolUsageKey(pool)}, delta, nowMs).Err()
}

// countSession adds one sync session to the pool's counter. The listing
// stands whatever happens here, so errors are dropped, as in addUsage.
func (s *Store) countSession(ctx context.Context, pool string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = s.rdb.HIncrBy(ctx, s.poolUsageKey(pool), usageSessions, 1).Err()
}

// The fields of a pool's usage hash; usageScript writes the first two.
const (
	usageBytes    = "bytes"
	usageModified = "lm"
	usageSessions = "sessions"
)

// IdentityUsage returns what an identity stores, computed from its datasets.
// An identity that never stored anything has zero usage and no error.
func (s *Store) IdentityUsage(ctx context.Context, pool, identity string) (IdentityUsage, error) {
	u := IdentityUsage{IdentityPoolID: pool, IdentityID: identity}
	if err := validateIdentity(pool, identity); err != nil {
		return u, err
	}
	all, err := s.datasets(ctx, pool, identity)
	if err != nil {
		return u, err
	}
	var lm int64
	for i, d := range all {
		if d.live {
			u.DatasetCount++
			u.DataStorage += d.storage
		}
		if i == 0 || d.modified > lm {
			lm = d.modified
		}
	}
	if len(all) > 0 {
		u.LastModifiedDate = msTime(lm)
	}
	return u, nil
}

// PoolUsage returns what an identity pool stores. It returns ErrPoolNotFound
// if no identity of the pool ever tried to store data.
func (s *Store) PoolUsage(ctx context.Context, pool string) (PoolUsage, error) {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return PoolUsage{}, err
	}
	var usage *redis.SliceCmd
	var indexed *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		usage = p.HMGet(ctx, s.poolUsageKey(pool), usageBytes, usageModified, usageSessions)
		indexed = p.Exists(ctx, s.poolIdentitiesKey(pool))
		return nil
	})
	if err != nil {
		return PoolUsage{}, fmt.Errorf("store: pool usage: %w", err)
	}
	u, found := decodePoolUsage(pool, usage.Val())
	if !found && indexed.Val() == 0 {
		return PoolUsage{}, fmt.Errorf("store: %w: %s", ErrPoolNotFound, pool)
	}
	return u, nil
}

func decodePoolUsage(pool string, v []any) (PoolUsage, bool) {
	u := PoolUsage{IdentityPoolID: pool}
	found := false
	if len(v) == 3 {
		if b, ok := v[0].(string); ok {
			u.DataStorage, _ = strconv.ParseInt(b, 10, 64)
			found = true
		}
		if lm, ok := v[1].(string); ok {
			if ms, err := strconv.ParseInt(lm, 10, 64); err == nil {
				u.LastModifiedDate = msTime(ms)
			}
			found = true
		}
		// Sessions alone do not make a pool known: listing creates none.
		if n, ok := v[2].(string); ok {
			u.SyncSessions, _ = strconv.ParseInt(n, 10, 64)
		}
	}
	return u, found
}

// ListPoolUsage returns the usage of the identity pools named (those that
// exist, each with zero usage until it stores something; a pool named more
// than once comes once), ordered by pool id, at most max of them (64 if max
// is 0 or less), and a token for the next page, empty on the last one. What
// a deleted pool stored is not listed: it is named by no one.
func (s *Store) ListPoolUsage(ctx context.Context, max int, nextToken string, named []string) ([]PoolUsage, string, error) {
	if max <= 0 {
		max = DefaultListDatasets
	}
	after, ok := decodeNameToken(nextToken)
	if !ok {
		return nil, "", &cognito.FieldError{Field: "NextToken", Reason: "is not a token ListIdentityPoolUsage returned"}
	}
	var pools []string
	for _, p := range named {
		if p > after {
			pools = append(pools, p)
		}
	}
	slices.Sort(pools)
	pools = slices.Compact(pools)
	next := ""
	if len(pools) > max {
		pools = pools[:max]
		next = encodeNameToken(pools[max-1])
	}
	cmds := make([]*redis.SliceCmd, len(pools))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, pool := range pools {
			cmds[i] = p.HMGet(ctx, s.poolUsageKey(pool), usageBytes, usageModified, usageSessions)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: list pool usage: %w", err)
	}
	out := make([]PoolUsage, len(pools))
	for i, pool := range pools {
		out[i], _ = decodePoolUsage(pool, cmds[i].Val())
	}
	return out, next, nil
}

// Identities returns identities of a pool that ever stored data, an SSCAN
// step at a time: start with cursor "" and continue with the returned next
// cursor until it is "". As with SSCAN, an identity may be returned more than
// once, count is a hint, and a step may return no identities before the end.
func (s *Store) Identities(ctx context.Context, pool, cursor string, count int) ([]string, string, error) {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return nil, "", err
	}
	var c uint64
	if cursor != "" {
		var err error
		if c, err = strconv.ParseUint(cursor, 10, 64); err != nil {
			return nil, "", &cognito.FieldError{Field: "Cursor", Reason: fmt.Sprintf("%q is not a cursor Identities returned", cursor)}
		}
	}
	if count <= 0 {
		count = 100
	}
	ids, next, err := s.rdb.SScan(ctx, s.poolIdentitiesKey(pool), c, "", int64(count)).Result()
	if err != nil {
		return nil, "", fmt.Errorf("store: list identities: %w", err)
	}
	if next == 0 {
		return ids, "", nil
	}
	return ids, strconv.FormatUint(next, 10), nil
}
