package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/sync/cognito"
)

// Change is an outbox marker: a committed change of a dataset whose event
// may not have been published yet. Only the latest change of each dataset
// is kept; its SyncCount covers every earlier one.
type Change struct {
	IdentityPoolID string
	IdentityID     string
	DatasetName    string
	// SyncCount is the dataset's sync count after the change.
	SyncCount int64
	// OriginDeviceID is the device that made the change, "" if unknown or
	// for a deletion.
	OriginDeviceID string
	// ChangedAt is when the change was committed.
	ChangedAt time.Time
}

// CorruptMarkerError is an outbox marker that cannot be read. ScanPending
// and PendingChanges skip such markers: the error they return then joins
// one of these for each, and the changes they return are the others. A
// newer change of the dataset replaces the marker.
type CorruptMarkerError struct {
	IdentityPoolID, IdentityID, DatasetName string
	// Value is the marker as stored.
	Value string
}

func (e *CorruptMarkerError) Error() string {
	return fmt.Sprintf("store: outbox marker of %s/%s/%s is corrupt: %q", e.IdentityPoolID, e.IdentityID, e.DatasetName, e.Value)
}

func decodeChange(pool, identity, dataset, v string) (Change, error) {
	c := Change{IdentityPoolID: pool, IdentityID: identity, DatasetName: dataset}
	scS, rest, ok1 := strings.Cut(v, "|")
	msS, origin, ok2 := strings.Cut(rest, "|")
	sc, err1 := strconv.ParseInt(scS, 10, 64)
	ms, err2 := strconv.ParseInt(msS, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return c, &CorruptMarkerError{IdentityPoolID: pool, IdentityID: identity, DatasetName: dataset, Value: v}
	}
	c.SyncCount, c.ChangedAt, c.OriginDeviceID = sc, msTime(ms), origin
	return c, nil
}

// decodeChanges returns the markers of m that can be read, and the
// others' errors joined.
func decodeChanges(pool, identity string, m map[string]string) ([]Change, error) {
	out := make([]Change, 0, len(m))
	var corrupt []error
	for ds, v := range m {
		c, err := decodeChange(pool, identity, ds, v)
		if err != nil {
			corrupt = append(corrupt, err)
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DatasetName < out[j].DatasetName })
	return out, errors.Join(corrupt...)
}

// CorruptMarkers returns the markers that err, returned by ScanPending or
// PendingChanges, reports as corrupt.
func CorruptMarkers(err error) []*CorruptMarkerError {
	var out []*CorruptMarkerError
	var walk func(error)
	walk = func(err error) {
		var c *CorruptMarkerError
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				walk(err)
			}
		default:
			if errors.As(err, &c) {
				out = append(out, c)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// PendingChanges returns the outbox markers of one identity, ordered by
// dataset name. Markers that cannot be read are left out and reported in
// the error (see CorruptMarkerError).
func (s *Store) PendingChanges(ctx context.Context, pool, identity string) ([]Change, error) {
	if err := validateIdentity(pool, identity); err != nil {
		return nil, err
	}
	m, err := s.rdb.HGetAll(ctx, s.outboxKey(pool, identity)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", err)
	}
	return decodeChanges(pool, identity, m)
}

// clearScript removes the marker of dataset ARGV[1] if it still starts
// with ARGV[2], "<sync count>|<changed at ms>|".
var clearScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)

// ClearChange removes the outbox marker of c's dataset once its event has
// been published, but only if the marker is still c's, the same sync count
// and change time (to the millisecond): the marker of a newer change stays
// for its own event, and so does that of another change with the same
// sync count, which a Redis failover that lost c can make.
func (s *Store) ClearChange(ctx context.Context, c Change) error {
	if err := validateDataset(c.IdentityPoolID, c.IdentityID, c.DatasetName); err != nil {
		return err
	}
	marker := fmtInt(c.SyncCount) + "|" + fmtInt(c.ChangedAt.UnixMilli()) + "|"
	err := clearScript.Run(ctx, s.rdb, []string{s.outboxKey(c.IdentityPoolID, c.IdentityID)}, c.DatasetName, marker).Err()
	if err != nil {
		return fmt.Errorf("store: clear change: %w", err)
	}
	return nil
}

// ScanPending is the background sweep of the outbox: one SCAN step over the
// outbox keys of every identity, returning their markers and the cursor to
// continue with, 0 when the sweep is complete. Start with cursor 0. As with
// SCAN, a marker may be returned more than once and count is a hint.
//
// On Redis Cluster (a *redis.ClusterClient) there is no single cursor: the
// whole sweep runs over every master in one call and next is always 0.
//
// A marker found here may belong to a change whose writer is still
// publishing it; a sweeper should leave markers younger than a grace period
// (see Change.ChangedAt) to their writer. Events carry a deduplication id, so
// publishing twice is harmless.
//
// Markers that cannot be read do not stop the sweep: they are left out of
// changes and reported in the error (see CorruptMarkerError), and changes
// and next are valid with it. Any other error is returned alone.
func (s *Store) ScanPending(ctx context.Context, cursor uint64, count int64) ([]Change, uint64, error) {
	if count <= 0 {
		count = 100
	}
	match := cognito.EscapeGlob(s.prefix) + ":{*}:outbox"
	var keys []string
	var next uint64
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			var cur uint64
			for {
				ks, n, err := c.Scan(ctx, cur, match, count).Result()
				if err != nil {
					return err
				}
				mu.Lock()
				keys = append(keys, ks...)
				mu.Unlock()
				if cur = n; cur == 0 {
					return nil
				}
			}
		})
		if err != nil {
			return nil, 0, fmt.Errorf("store: scan outbox: %w", err)
		}
	} else {
		var err error
		keys, next, err = s.rdb.Scan(ctx, cursor, match, count).Result()
		if err != nil {
			return nil, 0, fmt.Errorf("store: scan outbox: %w", err)
		}
	}
	type owner struct{ pool, identity string }
	owners := make([]owner, 0, len(keys))
	cmds := make([]*redis.MapStringStringCmd, 0, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			pool, identity, ok := s.parseOutboxKey(k)
			if !ok {
				continue
			}
			owners = append(owners, owner{pool, identity})
			cmds = append(cmds, p.HGetAll(ctx, k))
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store: read outbox: %w", err)
	}
	var (
		changes []Change
		corrupt []error
	)
	for i, cmd := range cmds {
		cs, err := decodeChanges(owners[i].pool, owners[i].identity, cmd.Val())
		if err != nil {
			corrupt = append(corrupt, err)
		}
		changes = append(changes, cs...)
	}
	return changes, next, errors.Join(corrupt...)
}

// parseOutboxKey returns the pool and identity of an outbox key.
func (s *Store) parseOutboxKey(k string) (pool, identity string, ok bool) {
	tag, ok1 := strings.CutPrefix(k, s.prefix+":{")
	tag, ok2 := strings.CutSuffix(tag, "}:outbox")
	pool, identity, ok3 := strings.Cut(tag, "/")
	if !ok1 || !ok2 || !ok3 || validateIdentity(pool, identity) != nil {
		return "", "", false
	}
	return pool, identity, true
}
