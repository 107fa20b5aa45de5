package registry

import (
	"sync"
	"time"
)

// poolCache keeps the creation times of identity pools the registry has
// read, so that the checks of every API request (CredentialInPool,
// CheckPool) need not read the configuration hash: on Redis Cluster that
// one key lives on one node, which would otherwise serve every request of
// the whole API. Only pools that exist are kept, so a pool just created is
// seen at once; a pool deleted or created again through this Registry is
// forgotten at once, through another one (another process) once its entry
// is older than the registry's PoolCacheTTL.
type poolCache struct {
	ttl time.Duration
	mu  sync.Mutex
	// gen is raised whenever a pool is forgotten, so that a read that
	// began before does not store what it found.
	gen uint64
	m   map[string]poolCacheEntry
}

type poolCacheEntry struct {
	created time.Time // the pool's CreatedAt
	exp     time.Time
}

// maxCachedPools bounds the cache: past it, everything is dropped rather
// than grown. Only pools that exist are kept, so this is a safeguard.
const maxCachedPools = 10000

// get returns the cached creation time of pool, if the cache holds a
// fresh one.
func (c *poolCache) get(pool string, now time.Time) (time.Time, bool) {
	if c.ttl <= 0 {
		return time.Time{}, false
	}
	c.mu.Lock()
	e, ok := c.m[pool]
	c.mu.Unlock()
	if !ok || !now.Before(e.exp) {
		return time.Time{}, false
	}
	return e.created, true
}

// generation returns what a read of pool records must pass to put.
func (c *poolCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps the creation time of an existing pool, read at now by a read
// that began at generation gen, unless a pool was forgotten since.
func (c *poolCache) put(pool string, created time.Time, gen uint64, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= maxCachedPools {
		c.m = make(map[string]poolCacheEntry)
	}
	c.m[pool] = poolCacheEntry{created: created, exp: now.Add(c.ttl)}
}

// forget drops pool, and keeps reads under way from storing it again.
func (c *poolCache) forget(pool string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, pool)
}
