package registry

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushsync/pushsync/internal/redisx"
	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/sync/cognito"
)

// Removal is a device removal whose DeviceRemoved event may not have been
// published yet. RemoveDevice (given a reason) and RemoveDeadDevice note
// one in the same atomic step as the removal, in a hash of the identity's;
// whoever removed the device publishes the event and then clears it
// (ClearRemoval), and a sweep (ClaimRemovals) publishes those a crash or
// a NATS outage left behind. The removal notes the identity in the sweep
// index of removals, P:{sweep:removed:<n>}, before its script runs, as
// dataset changes do (see internal/sweepindex).
type Removal struct {
	IdentityPoolID string
	IdentityID     string
	DeviceID       string
	// Platform is the removed device's; "" if its record could not be
	// read.
	Platform Platform
	// Reason is why it was removed: the push service's reason, or the
	// one the operator's removal gave.
	Reason    string
	RemovedAt time.Time
}

// removalsKey is the hash of an identity's removal markers: one field per
// removed device, "<platform code>|<removed at, unix ms>|<reason>".
func (r *Registry) removalsKey(pool, identity string) string {
	return r.prefix + ":" + cognito.HashTag(pool, identity) + ":removed"
}

// ClearRemoval drops the marker of a device's removal once its event has
// been published. Device ids are never used again, so the marker is that
// removal's.
func (r *Registry) ClearRemoval(ctx context.Context, pool, identity, deviceID string) error {
	if err := r.rdb.HDel(ctx, r.removalsKey(pool, identity), deviceID).Err(); err != nil {
		return fmt.Errorf("registry: clear removal of device %s: %w", deviceID, err)
	}
	return nil
}

// noteRemoval notes the identity in the sweep index of removals before a
// removal that notes its event, and returns the deadline of the removal's
// script (see sweepindex.Note).
func (r *Registry) noteRemoval(ctx context.Context, pool, identity string) (int64, error) {
	return r.sweep.Note(ctx, pool+"/"+identity, nil)
}

// lateError is err, or sweepindex.ErrLate for a removal refused as late.
func lateError(err error) error {
	if sweepindex.Late(err) {
		return sweepindex.ErrLate
	}
	return err
}

// ClaimedRemovals are the removal markers of one identity as a sweep
// claimed them.
type ClaimedRemovals struct {
	IdentityPoolID, IdentityID string
	// Removals are oldest first. One that cannot be read has only its ids,
	// its Reason empty, so that the sweep can report and clear it.
	Removals []Removal
	claim    sweepindex.Claim
}

// removalLease is how long a sweep's claim on an identity's removals
// lasts: long enough to publish their events.
const removalLease = time.Minute

// ClaimRemovals is the background sweep of removal markers: it claims,
// from the sweep index, up to limit identities of each of its shards that
// a removal noted at least twice Options.SweepWindow ago, and returns
// their markers, as store.ClaimPending does for dataset changes: it never
// SCANs. Identities without markers are dropped from the index at once;
// hand every ClaimedRemovals returned to SettleRemovals.
func (r *Registry) ClaimRemovals(ctx context.Context, limit int) ([]ClaimedRemovals, error) {
	if limit <= 0 {
		limit = 100
	}
	claimed, err := r.sweep.ClaimHashes(ctx, limit, removalLease, func(m string) (string, bool) {
		pool, identity, ok := strings.Cut(m, "/")
		return r.removalsKey(pool, identity), ok && validateIdentity(pool, identity) == nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	out := make([]ClaimedRemovals, len(claimed))
	for i, c := range claimed {
		pool, identity, _ := strings.Cut(c.Member, "/")
		out[i] = ClaimedRemovals{IdentityPoolID: pool, IdentityID: identity, claim: c.Claim}
		for dev, v := range c.Hash {
			out[i].Removals = append(out[i].Removals, decodeRemoval(pool, identity, dev, v))
		}
		sortRemovals(out[i].Removals)
	}
	return out, nil
}

// SettleRemovals ends the claims of a sweep: the identities in done, whose
// removals the sweep announced and cleared, leave the sweep index; those
// in left are claimed again twice Options.SweepWindow after this claim.
func (r *Registry) SettleRemovals(ctx context.Context, done, left []ClaimedRemovals) error {
	claims := func(cs []ClaimedRemovals) []sweepindex.Claim {
		out := make([]sweepindex.Claim, len(cs))
		for i := range cs {
			out[i] = cs[i].claim
		}
		return out
	}
	if err := r.sweep.Settle(ctx, claims(done), claims(left)); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// AdoptUnindexedRemovals notes in the sweep index every identity with
// removal markers, so that ClaimRemovals finds those a version that did
// not note them left. It SCANs the whole keyspace (every master's on
// Redis Cluster) once per deployment: once one has completed, it is
// recorded in Redis, and AdoptUnindexedRemovals does not scan again unless
// again, for the markers that processes of such a version wrote after
// that.
func (r *Registry) AdoptUnindexedRemovals(ctx context.Context, again bool) (sweepindex.Adoption, error) {
	a, err := r.sweep.Adopt(ctx, cognito.EscapeGlob(r.prefix)+":{*}:removed", func(k string) (string, bool) {
		pool, identity, ok := r.parseRemovalsKey(k)
		return pool + "/" + identity, ok
	}, again)
	if err != nil {
		return a, fmt.Errorf("registry: %w", err)
	}
	return a, nil
}

// PendingRemovals returns every removal marker, oldest first: one whole
// SCAN over the keys (of every master on Redis Cluster), for tools and
// tests; the sweep uses ClaimRemovals. A marker that cannot be read is
// returned with only its ids, its Reason empty.
func (r *Registry) PendingRemovals(ctx context.Context) ([]Removal, error) {
	var (
		mu  sync.Mutex
		out []Removal
	)
	err := redisx.Scan(ctx, r.rdb, cognito.EscapeGlob(r.prefix)+":{*}:removed", func(ctx context.Context, keys []string) error {
		for _, k := range keys {
			pool, identity, ok := r.parseRemovalsKey(k)
			if !ok {
				continue
			}
			m, err := r.rdb.HGetAll(ctx, k).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			for dev, v := range m {
				out = append(out, decodeRemoval(pool, identity, dev, v))
			}
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: scan removals: %w", err)
	}
	sortRemovals(out)
	return out, nil
}

func sortRemovals(rs []Removal) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].RemovedAt.Before(rs[j].RemovedAt) })
}

// parseRemovalsKey returns the pool and identity of a removals key.
func (r *Registry) parseRemovalsKey(k string) (pool, identity string, ok bool) {
	tag, ok1 := strings.CutPrefix(k, r.prefix+":{")
	tag, ok2 := strings.CutSuffix(tag, "}:removed")
	pool, identity, ok3 := strings.Cut(tag, "/")
	if !ok1 || !ok2 || !ok3 || validateIdentity(pool, identity) != nil {
		return "", "", false
	}
	return pool, identity, true
}

func decodeRemoval(pool, identity, deviceID, v string) Removal {
	rm := Removal{IdentityPoolID: pool, IdentityID: identity, DeviceID: deviceID}
	code, rest, ok1 := strings.Cut(v, "|")
	ms, reason, ok2 := strings.Cut(rest, "|")
	at, err := strconv.ParseInt(ms, 10, 64)
	if !ok1 || !ok2 || err != nil || len(code) != 1 || reason == "" {
		return rm
	}
	if p, ok := platformOfCode(code[0]); ok {
		rm.Platform = p
	}
	rm.Reason, rm.RemovedAt = reason, time.UnixMilli(at)
	return rm
}
