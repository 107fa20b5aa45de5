// Package redisscript helps run Lua scripts by their SHA (EVALSHA), as a
// pipeline must, on one Redis server or a Redis Cluster: a server that
// restarted or failed over has forgotten them, and they are loaded again.
package redisscript

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
