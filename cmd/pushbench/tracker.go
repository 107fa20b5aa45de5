package main

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ringSize bounds the events that may be outstanding (published, not yet
// fully delivered) at once; the publishers never let more be.
const ringSize = 1 << 20

// tracker follows every published event until each of its devices has
// had its push at an emulator. Event k goes to identity k mod n with sync
// count k/n + 1, so a push names its event by its identity and sync count
// alone, and its device by its token (see deviceNumber).
type tracker struct {
	n      int
	index  map[string]int // identity id → its number
	fanout int32

	ring []slot
	// window, when set, holds a token per outstanding event: publishers
	// take one before publishing and the last push of the event gives it
	// back, which keeps "as fast as it can" from building an endless
	// backlog.
	// It changes between phases while late pushes may still arrive.
	window atomic.Pointer[chan struct{}]

	pushes     atomic.Int64 // pushes received for tracked events (every push, in countOnly)
	events     atomic.Int64 // events whose every device had its push
	duplicates atomic.Int64 // pushes to a device that had the event's push already
	misrouted  atomic.Int64 // pushes to a device not of the event's identity
	strays     atomic.Int64 // pushes naming no tracked event (not in pushes)
	lastPush   atomic.Int64 // unix nanos, by this process's clock, of the latest push counted

	mu        sync.Mutex
	latencies []time.Duration
	measuring atomic.Bool // collect latencies
	countOnly atomic.Bool // count pushes, nothing else (the ceiling's)
}

type slot struct {
	published atomic.Int64  // unix nanos
	left      atomic.Int32  // pushes still to arrive
	seen      atomic.Uint64 // the devices that had theirs, a bit each
	// window is the window the event took its token from, which its last
	// push gives back: a late event of an earlier phase must not take a
	// token of the next phase's window.
	window atomic.Pointer[chan struct{}]
}

// maxDevices is the most devices per identity the tracker can follow: one
// bit each in a slot.
const maxDevices = 64

func newTracker(identities []string, fanout int) *tracker {
	t := &tracker{n: len(identities), index: make(map[string]int, len(identities)), fanout: int32(fanout), ring: make([]slot, ringSize)}
	for i, id := range identities {
		t.index[id] = i
	}
	return t
}

// setWindow makes a window of n events, or none when n is 0, and returns it.
func (t *tracker) setWindow(n int) chan struct{} {
	if n == 0 {
		t.window.Store(nil)
		return nil
	}
	w := make(chan struct{}, n)
	t.window.Store(&w)
	return w
}

// event returns the identity number and sync count of event k.
func (t *tracker) event(k int64) (identity int, syncCount int64) {
	return int(k % int64(t.n)), k/int64(t.n) + 1
}

// published notes that event k is about to be published.
func (t *tracker) published(k int64, at time.Time) {
	s := &t.ring[k%ringSize]
	s.left.Store(t.fanout)
	s.seen.Store(0)
	s.window.Store(t.window.Load())
	s.published.Store(at.UnixNano())
}

// push notes a push for identity id with syncCount to the device with
// token, which arrived at an emulator at arrived (by the emulator's clock,
// for its latency).
func (t *tracker) push(id, token string, syncCount int64, arrived time.Time) {
	if t.countOnly.Load() {
		t.pushes.Add(1)
		t.lastPush.Store(time.Now().UnixNano())
		return
	}
	i, ok := t.index[id]
	if !ok || syncCount < 1 {
		t.strays.Add(1)
		return
	}
	t.pushes.Add(1)
	t.lastPush.Store(time.Now().UnixNano())
	d, ok := deviceNumber(token)
	if !ok || d/int(t.fanout) != i {
		t.misrouted.Add(1)
		return
	}
	k := (syncCount-1)*int64(t.n) + int64(i)
	s := &t.ring[k%ringSize]
	if bit := uint64(1) << (d % int(t.fanout)); s.seen.Or(bit)&bit != 0 {
		t.duplicates.Add(1)
		return
	}
	// The latency goes in before the push counts towards its event: a
	// phase takes its latencies as soon as its last event is delivered,
	// and a push still on its way to them would be left out.
	if t.measuring.Load() {
		d := time.Duration(arrived.UnixNano() - s.published.Load())
		t.mu.Lock()
		t.latencies = append(t.latencies, d)
		t.mu.Unlock()
	}
	left := s.left.Add(-1)
	switch {
	case left < 0: // not while the seen bits hold: one push per device
		t.duplicates.Add(1)
	case left == 0:
		t.events.Add(1)
		if w := s.window.Load(); w != nil {
			select {
			case <-*w:
			default: // never empty while the event holds its token
			}
		}
	}
}

// settle waits until the pushes counted have not changed for 300 ms, or
// 10 s: pushes that come through a feed arrive after the emulators
// answered them.
func (t *tracker) settle() {
	last := t.pushes.Load()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		n := t.pushes.Load()
		if n == last {
			return
		}
		last = n
	}
}

// takeLatencies returns the latencies collected so far and starts afresh.
func (t *tracker) takeLatencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.latencies
	t.latencies = nil
	return l
}

// Percentiles of a latency sample, in milliseconds.
type Percentiles struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50Ms"`
	P90     float64 `json:"p90Ms"`
	P99     float64 `json:"p99Ms"`
	Max     float64 `json:"maxMs"`
}

func percentiles(l []time.Duration) Percentiles {
	if len(l) == 0 {
		return Percentiles{}
	}
	slices.Sort(l)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(l)))) - 1
		return ms(l[max(i, 0)])
	}
	return Percentiles{Samples: len(l), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(l[len(l)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
