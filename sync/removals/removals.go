// Package removals makes sure every device removal the registry noted
// becomes a DeviceRemoved event. The registry notes a removal in the same
// atomic step as the removal itself (registry.Removal); whoever removed the
// device publishes the event at once and clears the note (Announce), and a
// background sweep (Sweeper.Run) publishes the notes left behind, whether
// the process died between the removal and the publish or NATS was
// unreachable. The sweep reads only the identities that removals noted in
// the registry's sweep index (registry.ClaimRemovals), never scanning the
// keyspace but once per deployment, for the notes of a version without the
// index. An event published twice is stored once: its deduplication
// id is fixed by the pool, identity and device.
package removals

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// Clearer clears the note of a removal; *registry.Registry is one.
type Clearer interface {
	ClearRemoval(ctx context.Context, pool, identity, deviceID string) error
}

// Registry is what the sweep needs of the registry.
type Registry interface {
	Clearer
	ClaimRemovals(ctx context.Context, limit int) ([]registry.ClaimedRemovals, error)
	SettleRemovals(ctx context.Context, done, left []registry.ClaimedRemovals) error
	AdoptUnindexedRemovals(ctx context.Context, again bool) (sweepindex.Adoption, error)
}

// Publisher publishes DeviceRemoved events; *event.Publisher is one.
type Publisher interface {
	PublishDeviceRemoved(ctx context.Context, e *event.DeviceRemoved) error
}

// Announce publishes the DeviceRemoved event of a removal, then clears its
// note. On error the note stays for the sweep, unless the event was
// published and only clearing failed (the sweep publishes it again, and
// JetStream stores it once).
func Announce(ctx context.Context, reg Clearer, pub Publisher, rm registry.Removal) error {
	if err := pub.PublishDeviceRemoved(ctx, &event.DeviceRemoved{
		IdentityPoolID: rm.IdentityPoolID, IdentityID: rm.IdentityID, DeviceID: rm.DeviceID,
		Platform: string(rm.Platform), Reason: rm.Reason, RemovedAt: rm.RemovedAt,
	}); err != nil {
		return fmt.Errorf("publish the removal of device %s: %w", rm.DeviceID, err)
	}
	return reg.ClearRemoval(ctx, rm.IdentityPoolID, rm.IdentityID, rm.DeviceID)
}

// Sweeper publishes the events of removals left behind.
type Sweeper struct {
	Registry  Registry
	Publisher Publisher
	// Interval is the time between two sweeps. If not set, 10s.
	Interval time.Duration
	// Grace is how long a sweep leaves a removal to the process that
	// made it, which may be publishing its event still. If not set, 10s:
	// longer than PublishDeviceRemoved tries.
	Grace time.Duration
	Log   zerolog.Logger
}

// Run sweeps every Interval until ctx ends, and sooner when a sweep left a
// removal to its remover: once that removal's Grace has passed. It first
// adopts into the sweep index the notes a version without it left
// (Registry.AdoptUnindexedRemovals: one SCAN of the keyspace, unless one
// has completed already), and tries again at every sweep until that is
// done.
func (s *Sweeper) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	adopted := false
	for {
		if !adopted {
			if a, err := s.Registry.AdoptUnindexedRemovals(ctx, false); err != nil {
				if ctx.Err() == nil {
					s.Log.Warn().Err(err).Msg("looking for device-removal notes of an earlier version did not finish; trying again at the next sweep")
				}
			} else {
				adopted = true
				a.Log(s.Log, "device-removal notes", false)
			}
		}
		n, young, err := s.sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.Log.Warn().Err(err).Int("published", n).Msg("sweep for unannounced device removals did not finish")
		} else if n > 0 {
			s.Log.Info().Int("published", n).Msg("published device-removed events left behind")
		}
		wait := interval
		if !young.IsZero() {
			wait = min(wait, time.Until(young.Add(s.grace()))+time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (s *Sweeper) grace() time.Duration {
	if s.Grace <= 0 {
		return 10 * time.Second
	}
	return s.Grace
}

// Sweep publishes the event of every removal noted at least Grace ago
// among those it claims from the sweep index (Registry.ClaimRemovals:
// removals made at least twice the registry's sweep window ago), and
// clears its note; it returns how many it published. It stops at the
// first failure: NATS is likely away, and the rest wait for a later sweep.
// A note that cannot be read is logged and cleared, as its event cannot be
// made.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	n, _, err := s.sweep(ctx)
	return n, err
}

// sweep is Sweep, also returning when the oldest removal it left to its
// remover was made (zero if none).
func (s *Sweeper) sweep(ctx context.Context) (int, time.Time, error) {
	old := time.Now().Add(-s.grace())
	var (
		young  time.Time
		n      int
		failed error
	)
	for failed == nil && ctx.Err() == nil {
		batch, err := s.Registry.ClaimRemovals(ctx, claimLimit)
		if err != nil {
			return n, young, err
		}
		if len(batch) == 0 {
			break
		}
		var done, left []registry.ClaimedRemovals
		for _, cr := range batch {
			finished := true
			for _, rm := range cr.Removals {
				if failed != nil {
					finished = false
					break
				}
				if rm.Reason == "" {
					s.Log.Error().Str("pool", rm.IdentityPoolID).Str("identity", rm.IdentityID).Str("device", rm.DeviceID).
						Msg("dropping a device-removal note that cannot be read; its DeviceRemoved event is not published")
					if err := s.Registry.ClearRemoval(ctx, rm.IdentityPoolID, rm.IdentityID, rm.DeviceID); err != nil {
						failed, finished = err, false
					}
					continue
				}
				if rm.RemovedAt.After(old) {
					// Its remover may be publishing it still.
					if young.IsZero() || rm.RemovedAt.Before(young) {
						young = rm.RemovedAt
					}
					finished = false
					continue
				}
				if err := Announce(ctx, s.Registry, s.Publisher, rm); err != nil {
					failed, finished = err, false
					continue
				}
				n++
			}
			if finished {
				done = append(done, cr)
			} else {
				left = append(left, cr)
			}
		}
		if err := s.Registry.SettleRemovals(context.WithoutCancel(ctx), done, left); err != nil && failed == nil {
			failed = err
		}
	}
	return n, young, failed
}

// claimLimit is how many identities a sweep claims from each shard of the
// sweep index at a time.
const claimLimit = 100
