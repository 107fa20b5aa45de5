// Package warmup lets the first request on a new HTTP/2 client go alone.
//
// A cold client that is handed many requests at once dials a connection for
// each of them before it learns that one HTTP/2 connection can carry them
// all (and APNs allows a single stream until a token is accepted). Sending
// the first request alone, and the rest once it has an answer, opens one
// connection instead of dozens.
package warmup

import (
	"sync"
	"sync/atomic"
)

// Gate lets requests through one at a time until one of them warms the
// client, then all at once. The zero value is ready to use.
type Gate struct {
	mu   sync.Mutex
	warm atomic.Bool
}

// Do runs send. While the gate is cold, calls run one after another; the
// first whose send reports warmed (a response arrived, so a connection is
// up) opens the gate for good.
func (g *Gate) Do(send func() (warmed bool)) {
	if g.warm.Load() {
		send()
		return
	}
	g.mu.Lock()
	if g.warm.Load() { // opened while we waited
		g.mu.Unlock()
		send()
		return
	}
	defer g.mu.Unlock()
	if send() {
		g.warm.Store(true)
	}
}

// Warm reports whether the gate is open.
func (g *Gate) Warm() bool { return g.warm.Load() }
