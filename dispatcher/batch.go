package dispatcher

import (
	"runtime"
	"sync"
	"time"
)

// redisBatcher gathers the dispatcher's Redis work into pipelined round
// trips: registration lookups, which an event waits for, and records of
// accepted pushes, which only its ack waits for. A lookup goes at once and
// takes along whatever else is queued, records included, whichever loop
// takes it; records alone wait up to linger for company. Under load one
// round trip serves many events; at a moderate rate the records of the
// pushes that went out ride along with the next event's lookup.
type redisBatcher struct {
	lookups chan *lookupReq
	due     chan struct{} // capacity 1: records waited long enough, or are many
	max     int
	linger  time.Duration
	flush   func([]*lookupReq, []sentReq)
	wg      sync.WaitGroup

	mu      sync.Mutex
	records []sentReq
	timer   *time.Timer // armed while records wait
	armed   bool
}

func newRedisBatcher(loops, max int, linger time.Duration, flush func([]*lookupReq, []sentReq)) *redisBatcher {
	b := &redisBatcher{
		lookups: make(chan *lookupReq, max), due: make(chan struct{}, 1),
		max: max, linger: linger, flush: flush,
	}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.mu.Lock()
		b.armed = false
		if len(b.records) > 0 {
			b.wake()
		}
		b.mu.Unlock()
	})
	b.timer.Stop()
	for range loops {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

// record queues the record of an accepted push.
func (b *redisBatcher) record(r sentReq) {
	b.mu.Lock()
	b.records = append(b.records, r)
	switch {
	case len(b.records) >= b.max:
		b.wake()
	case !b.armed:
		b.armed = true
		b.timer.Reset(b.linger)
	}
	b.mu.Unlock()
}

// wake tells a loop that records are due.
func (b *redisBatcher) wake() {
	select {
	case b.due <- struct{}{}:
	default:
	}
}

// takeRecords appends to rs up to room of the records queued, oldest
// first.
func (b *redisBatcher) takeRecords(rs []sentReq, room int) []sentReq {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(room, len(b.records))
	rs = append(rs, b.records[:n]...)
	rest := copy(b.records, b.records[n:])
	clear(b.records[rest:])
	b.records = b.records[:rest]
	switch {
	case rest == 0:
		if b.armed {
			b.timer.Stop()
			b.armed = false
		}
	case rest >= b.max || !b.armed:
		// Left over from a full round trip: they have waited already.
		b.wake()
	}
	return rs
}

func (b *redisBatcher) loop() {
	defer b.wg.Done()
	ls := make([]*lookupReq, 0, b.max)
	rs := make([]sentReq, 0, b.max)
	for open := true; open; {
		select {
		case l, ok := <-b.lookups:
			if !ok {
				open = false
				break
			}
			ls = append(ls, l)
		case <-b.due:
		}
		// Let the goroutines that are ready run first, so that the lookups
		// they are about to ask for join this round trip.
		runtime.Gosched()
	more:
		for open && len(ls) < b.max {
			select {
			case l, ok := <-b.lookups:
				if !ok {
					open = false
					break more
				}
				ls = append(ls, l)
			default:
				break more
			}
		}
		for {
			rs = b.takeRecords(rs, b.max-len(ls))
			if len(ls)+len(rs) == 0 {
				break
			}
			b.flush(ls, rs)
			clear(ls)
			clear(rs)
			ls, rs = ls[:0], rs[:0]
			if open {
				break
			}
			// Closing: flush every record left.
		}
	}
}

// close flushes what is queued and stops the loops. Nothing may be added
// after.
func (b *redisBatcher) close() {
	close(b.lookups)
	b.wg.Wait()
	b.timer.Stop()
}
