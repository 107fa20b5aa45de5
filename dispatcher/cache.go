package dispatcher

import (
	"sync"
	"time"
)

// cache keeps values read from the registry for a short time, so that a
// burst of events for one pool reads its settings once. Answers that are
// final (found, or definitely absent) are cached; errors are not.
type cache[V any] struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[string]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v   V
	err error
	exp time.Time
}

func newCache[V any](ttl time.Duration, now func() time.Time) *cache[V] {
	return &cache[V]{ttl: ttl, now: now, m: make(map[string]cacheEntry[V])}
}

// get returns the cached answer for key or loads it; cacheable says which
// errors are answers worth keeping.
func (c *cache[V]) get(key string, load func() (V, error), cacheable func(error) bool) (V, error) {
	if c.ttl <= 0 {
		return load()
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e.v, e.err
	}
	v, err := load()
	if err == nil || cacheable(err) {
		c.store(key, v, err, now)
	}
	return v, err
}

// put caches v for key, read afresh.
func (c *cache[V]) put(key string, v V) {
	if c.ttl > 0 {
		c.store(key, v, nil, c.now())
	}
}

func (c *cache[V]) store(key string, v V, err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 10000 { // bounded: drop everything rather than grow
		clear(c.m)
	}
	c.m[key] = cacheEntry[V]{v: v, err: err, exp: now.Add(c.ttl)}
}
