// Package redisx holds what pushsync does alike on one Redis server and on
// a Redis Cluster: running Lua scripts by their SHA (EVALSHA), as a
// pipeline must, loading them again on a server that restarted or failed
// over and forgot them; and scanning the keys of every master.
package redisx

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// IsNoScript tells whether err is Redis's answer to EVALSHA of a script it
// does not hold.
func IsNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Load loads a script on every node that may run it: each master of a
// Redis Cluster, or the one server.
func Load(ctx context.Context, rdb redis.UniversalClient, s *redis.Script) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return s.Load(ctx, n).Err()
		})
	}
	return s.Load(ctx, rdb).Err()
}

// Scan calls fn with the keys matching the SCAN pattern match, a SCAN
// step at a time, over the whole keyspace: every master's of a Redis
// Cluster, concurrently.
func Scan(ctx context.Context, rdb redis.UniversalClient, match string, fn func(ctx context.Context, keys []string) error) error {
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cur uint64
		for {
			keys, next, err := c.Scan(ctx, cur, match, 500).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := fn(ctx, keys); err != nil {
					return err
				}
			}
			if cur = next; cur == 0 {
				return nil
			}
		}
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, rdb)
}
