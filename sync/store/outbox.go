package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/sweepindex"
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
	// OthersSince is set only in the Change that UpdateRecords and
	// DeleteDataset return, never in a marker read back: the ChangedAt of
	// the oldest marker of another dataset that the identity's outbox held
	// when this change was committed, the zero time if it held none. Such
	// a marker is a change whose publish is under way or failed; the relay
	// publishes those left behind once this change's publish succeeded, so
	// that an identity written without pause, which the sweep index never
	// lets a sweep claim, does not keep them waiting.
	OthersSince time.Time
}

// luaOthersSince is the Lua function othersSince(outbox, dataset): the
// change time in ms of the oldest marker in hash outbox of a dataset other
// than dataset, 0 if there is none. Markers that cannot be read are left
// out, as the relay skips them.
const luaOthersSince = `
local function othersSince(outbox, dataset)
  if redis.call('HLEN', outbox) < 2 then return 0 end
  local all, oldest = redis.call('HGETALL', outbox), 0
  for i = 1, #all, 2 do
    if all[i] ~= dataset then
      local v = all[i + 1]
      local p1 = string.find(v, '|', 1, true)
      local p2 = p1 and string.find(v, '|', p1 + 1, true)
      local at = p2 and tonumber(string.sub(v, p1 + 1, p2 - 1))
      if at and (oldest == 0 or at < oldest) then oldest = at end
    end
  end
  return oldest
end
`

// CorruptMarkerError is an outbox marker that cannot be read. ClaimPending
// and PendingChanges skip such markers: the error they return (Pending.Err
// for ClaimPending) then joins one of these for each, and the changes they
// return are the others. A
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

// CorruptMarkers returns the markers that err, Pending.Err or returned by
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

// Pending is the outbox of one identity as a sweep claimed it.
type Pending struct {
	IdentityPoolID, IdentityID string
	// Changes are its markers that can be read, by dataset name.
	Changes []Change
	// Err joins a CorruptMarkerError for each marker that cannot be read.
	Err   error
	claim sweepindex.Claim
}

// claimLease is how long a sweep's claim on an identity lasts: long
// enough to publish its changes. Another sweep claims it after that.
const claimLease = time.Minute

// ClaimPending is the background sweep of the outbox: it claims, from the
// sweep index, up to limit identities of each of its shards whose outbox
// a write noted at least twice Options.SweepWindow ago, and returns their
// markers. Every write notes its identity before it commits, and commits
// within the window or not at all, so the markers of a claimed identity
// are all there will be of writes noted before; a write noted since keeps
// the identity in the index for itself. It reads nothing but the index
// and the outboxes it names, on one Redis and on Redis Cluster alike.
// Claimed identities whose outbox is empty are dropped from the index at
// once; hand every Pending returned to SettlePending.
//
// A marker found here may belong to a change whose writer is still
// publishing it; a sweeper should leave markers younger than a grace period
// (see Change.ChangedAt) to their writer. Events carry a deduplication id, so
// publishing twice is harmless.
func (s *Store) ClaimPending(ctx context.Context, limit int) ([]Pending, error) {
	if limit <= 0 {
		limit = 100
	}
	claimed, err := s.sweep.ClaimHashes(ctx, limit, claimLease, func(m string) (string, bool) {
		pool, identity, ok := strings.Cut(m, "/")
		return s.outboxKey(pool, identity), ok && validateIdentity(pool, identity) == nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	out := make([]Pending, len(claimed))
	for i, c := range claimed {
		pool, identity, _ := strings.Cut(c.Member, "/")
		out[i] = Pending{IdentityPoolID: pool, IdentityID: identity, claim: c.Claim}
		out[i].Changes, out[i].Err = decodeChanges(pool, identity, c.Hash)
	}
	return out, nil
}

// SettlePending ends the claims of a sweep: the identities in done, whose
// changes the sweep published and cleared, leave the sweep index; those
// in left (a change not published, a marker that cannot be read) are
// claimed again twice Options.SweepWindow after this claim.
func (s *Store) SettlePending(ctx context.Context, done, left []Pending) error {
	claims := func(ps []Pending) []sweepindex.Claim {
		out := make([]sweepindex.Claim, len(ps))
		for i := range ps {
			out[i] = ps[i].claim
		}
		return out
	}
	if err := s.sweep.Settle(ctx, claims(done), claims(left)); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// AdoptUnindexed notes in the sweep index every outbox in Redis, so that
// ClaimPending finds the markers of changes written by a version that did
// not note them. It SCANs the whole keyspace (every master's on Redis
// Cluster) once per deployment: once one has completed, it is recorded in
// Redis, and AdoptUnindexed does not scan again unless again, for the
// markers that processes of such a version wrote after that.
func (s *Store) AdoptUnindexed(ctx context.Context, again bool) (sweepindex.Adoption, error) {
	a, err := s.sweep.Adopt(ctx, cognito.EscapeGlob(s.prefix)+":{*}:outbox", func(k string) (string, bool) {
		pool, identity, ok := s.parseOutboxKey(k)
		return pool + "/" + identity, ok
	}, again)
	if err != nil {
		return a, fmt.Errorf("store: %w", err)
	}
	return a, nil
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
