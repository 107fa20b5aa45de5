package store

import (
	"context"
	"strings"

	"github.com/pushsync/pushsync/internal/keypurge"
	"github.com/pushsync/pushsync/sync/cognito"
)

// PurgePhases returns the passes that remove everything the store keeps of
// an identity pool: every key of its identities (datasets, records,
// tombstones, purge marks, outbox markers), its identity index and usage
// counters, and its entry in the list of pools. Registry.PurgeIdentityPool
// runs them, once the pool is deleted.
func (s *Store) PurgePhases(pool string) []keypurge.Phase {
	// "{<pool>/" starts the tags of its identities, "{<pool>}" its own
	// keys; the pattern also matches pools whose id continues this one's,
	// which the selection leaves alone.
	identities, own := s.prefix+":{"+pool+"/", s.prefix+":{"+pool+"}"
	return []keypurge.Phase{
		{Name: "datasets", Match: cognito.EscapeGlob(s.prefix+":{"+pool) + "*", Select: func(_ context.Context, keys []string) ([]string, error) {
			out := keys[:0]
			for _, k := range keys {
				if strings.HasPrefix(k, identities) || strings.HasPrefix(k, own) {
					out = append(out, k)
				}
			}
			return out, nil
		}},
		{Name: "pool-index", Run: func(ctx context.Context) (int64, error) {
			return s.rdb.ZRem(ctx, s.poolsKey(), pool).Result()
		}},
	}
}
