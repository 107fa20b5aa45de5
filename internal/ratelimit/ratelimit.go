// Package ratelimit limits how often each client may do something: a token
// bucket per client address, kept in memory.
package ratelimit

import (
	"container/list"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Limiter is a set of token buckets, one per key. Each holds up to burst
// tokens and gains rate tokens a second; a call takes one. Memory is
// bounded: a bucket that has refilled is forgotten (a new one is the same),
// and beyond maxKeys buckets the least recently used one is dropped. It is
// safe for concurrent use.
type Limiter struct {
	rate    float64
	burst   float64
	maxKeys int
	now     func() time.Time
	refill  time.Duration // how long an empty bucket takes to fill

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // front: most recently used
}

type bucket struct {
	key    string
	tokens float64
	last   time.Time
}

// New returns a Limiter allowing each key rate calls a second on average
// and burst calls at once, keeping at most maxKeys buckets. now is its
// clock; if nil, time.Now. rate and burst must be greater than 0.
func New(rate float64, burst, maxKeys int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		rate:    rate,
		burst:   float64(burst),
		maxKeys: max(maxKeys, 1),
		now:     now,
		refill:  time.Duration(float64(burst) / rate * float64(time.Second)),
		buckets: make(map[string]*list.Element),
	}
}

// Allow takes a token from key's bucket and reports whether there was one.
func (l *Limiter) Allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetIdle(now)
	var b *bucket
	if e, ok := l.buckets[key]; ok {
		b = e.Value.(*bucket)
		if elapsed := now.Sub(b.last); elapsed > 0 {
			b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
			b.last = now
		}
		l.lru.MoveToFront(e)
	} else {
		if len(l.buckets) >= l.maxKeys {
			l.remove(l.lru.Back())
		}
		b = &bucket{key: key, tokens: l.burst, last: now}
		l.buckets[key] = l.lru.PushFront(b)
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Len returns how many buckets the Limiter keeps.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// forgetIdle drops the buckets unused long enough to be full again. They
// are at the back: the list is in order of last use.
func (l *Limiter) forgetIdle(now time.Time) {
	for e := l.lru.Back(); e != nil; e = l.lru.Back() {
		if now.Sub(e.Value.(*bucket).last) < l.refill {
			return
		}
		l.remove(e)
	}
}

func (l *Limiter) remove(e *list.Element) {
	delete(l.buckets, e.Value.(*bucket).key)
	l.lru.Remove(e)
}

// Key returns the bucket key of a client address: the address itself, or
// for IPv6 its /64 network, which one host usually has whole.
func Key(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a.String()
}

// ClientAddr returns the address of the client that sent r. That is the
// TCP peer, unless the peer is in one of the trusted proxy ranges: then it
// is the right-most X-Forwarded-For address not in a trusted range, since
// each trusted proxy appends the address it was connected from and anything
// further left is whatever the client wrote. If every address is trusted,
// it is the left-most one; an entry that is not an address stops the
// search at the trusted proxy that passed it on. The zero Addr means that
// r.RemoteAddr is not an address.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	client := peer.Addr().Unmap().WithZone("")
	if !isTrusted(client, trusted) {
		return client
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		a, ok := parseHop(hop)
		if !ok {
			return client
		}
		client = a
		if !isTrusted(a, trusted) {
			return a
		}
	}
	return client
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port, IPv6 possibly in brackets.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if inner, ok := strings.CutPrefix(s, "["); ok {
		if inner, ok = strings.CutSuffix(inner, "]"); ok {
			if a, err := netip.ParseAddr(inner); err == nil {
				return a.Unmap().WithZone(""), true
			}
		}
	}
	return netip.Addr{}, false
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
