// Package removals makes sure every device removal the registry noted
// becomes a DeviceRemoved event. The registry notes a removal in the same
// atomic step as the removal itself (registry.Removal); whoever removed the
// device publishes the event at once and clears the note (Announce), and a
// background sweep (Sweeper.Run) publishes the notes left behind, whether
// the process died between the removal and the publish or NATS was
// unreachable. An event published twice is stored once: its deduplication
// id is fixed by the pool, identity and device.
package removals

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

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
	PendingRemovals(ctx context.Context) ([]registry.Removal, error)
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

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn().Err(err).Int("published", n).Msg("sweep for unannounced device removals did not finish")
		} else if n > 0 {
			s.Log.Info().Int("published", n).Msg("published device-removed events left behind")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep publishes the event of every removal noted at least Grace ago and
// clears its note; it returns how many it published. It stops at the first
// failure: NATS is likely away, and the rest wait for the next sweep. A note
// that cannot be read is logged and cleared, as its event cannot be made.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	grace := s.Grace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	pending, err := s.Registry.PendingRemovals(ctx)
	if err != nil {
		return 0, err
	}
	old := time.Now().Add(-grace)
	n := 0
	for _, rm := range pending {
		if rm.Reason == "" {
			s.Log.Error().Str("pool", rm.IdentityPoolID).Str("identity", rm.IdentityID).Str("device", rm.DeviceID).
				Msg("dropping a device-removal note that cannot be read; its DeviceRemoved event is not published")
			if err := s.Registry.ClearRemoval(ctx, rm.IdentityPoolID, rm.IdentityID, rm.DeviceID); err != nil {
				return n, err
			}
			continue
		}
		if rm.RemovedAt.After(old) {
			continue // its remover may be publishing it still
		}
		if err := Announce(ctx, s.Registry, s.Publisher, rm); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
