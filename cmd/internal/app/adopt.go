package app

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/store"
)

// Adopt adopts into the sweep indexes what a version without them left in
// Redis, the outbox markers of changes and the notes of device removals,
// as pushsyncd does once per deployment when it starts, but scanning the
// keyspace again although that was recorded done: for what processes of
// such a version wrote after the first adoption, while a rolling upgrade
// ran. It needs only Redis, and logs what it found.
func Adopt(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rdb, err := NewRedis(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	st := store.New(rdb, store.Options{KeyPrefix: cfg.Redis.KeyPrefix})
	a, err := st.AdoptUnindexed(ctx, true)
	if err != nil {
		return err
	}
	a.Log(log, "outbox markers", true)
	reg := registry.New(rdb, registry.Options{KeyPrefix: cfg.Redis.KeyPrefix})
	if a, err = reg.AdoptUnindexedRemovals(ctx, true); err != nil {
		return err
	}
	a.Log(log, "device-removal notes", true)
	return nil
}
