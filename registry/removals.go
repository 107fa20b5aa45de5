package registry

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/sync/cognito"
)

// Removal is a device removal whose DeviceRemoved event may not have been
// published yet. RemoveDevice (given a reason) and RemoveDeadDevice note
// one in the same atomic step as the removal, in a hash of the identity's;
// whoever removed the device publishes the event and then clears it
// (ClearRemoval), and a sweep (PendingRemovals) publishes those a crash or
// a NATS outage left behind.
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

// PendingRemovals returns every removal marker, oldest first: one whole
// SCAN over the keys (of every master on Redis Cluster). A marker that
// cannot be read is returned with only its ids, its Reason empty, so that
// the sweep can report and clear it.
func (r *Registry) PendingRemovals(ctx context.Context) ([]Removal, error) {
	match := cognito.EscapeGlob(r.prefix) + ":{*}:removed"
	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cur uint64
		for {
			ks, next, err := c.Scan(ctx, cur, match, 500).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			keys = append(keys, ks...)
			mu.Unlock()
			if cur = next; cur == 0 {
				return nil
			}
		}
	}
	var err error
	if cc, ok := r.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, r.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: scan removals: %w", err)
	}
	var out []Removal
	for _, k := range keys {
		tag, ok1 := strings.CutPrefix(k, r.prefix+":{")
		tag, ok2 := strings.CutSuffix(tag, "}:removed")
		pool, identity, ok3 := strings.Cut(tag, "/")
		if !ok1 || !ok2 || !ok3 || validateIdentity(pool, identity) != nil {
			continue
		}
		m, err := r.rdb.HGetAll(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("registry: read removals: %w", err)
		}
		for dev, v := range m {
			out = append(out, decodeRemoval(pool, identity, dev, v))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RemovedAt.Before(out[j].RemovedAt) })
	return out, nil
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
