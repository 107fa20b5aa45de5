package dispatcher

import (
	"runtime"
	"sync"
	"time"
)

// redisBatcher gathers the dispatcher's Redis work into pipelined round
// trips: registration lookups, which an event waits for, and records of
// accepted pushes, which only its ack waits for. A lookup goes at once and
// takes along whatever else is queued; records alone wait up to linger
// for company. Under load one round trip serves many events.
type redisBatcher struct {
	lookups chan *lookupReq
	records chan sentReq
	max     int
	linger  time.Duration
	flush   func([]*lookupReq, []sentReq)
	wg      sync.WaitGroup
}

func newRedisBatcher(loops, max int, linger time.Duration, flush func([]*lookupReq, []sentReq)) *redisBatcher {
	b := &redisBatcher{
		lookups: make(chan *lookupReq, max), records: make(chan sentReq, max*loops),
		max: max, linger: linger, flush: flush,
	}
	for range loops {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

func (b *redisBatcher) loop() {
	defer b.wg.Done()
	var (
		ls      = make([]*lookupReq, 0, b.max)
		rs      = make([]sentReq, 0, b.max)
		timer   = time.NewTimer(time.Hour)
		armed   bool
		lookups = b.lookups
		records = b.records
	)
	timer.Stop()
	for lookups != nil || records != nil || len(rs) > 0 {
		now := false
		select {
		case l, ok := <-lookups:
			if ok {
				ls = append(ls, l)
			} else {
				lookups = nil
			}
			now = true
		case r, ok := <-records:
			if !ok {
				records, now = nil, true
				break
			}
			rs = append(rs, r)
			if len(rs) >= b.max {
				now = true
			} else if !armed {
				timer.Reset(b.linger)
				armed = true
			}
		case <-timer.C:
			armed, now = false, true
		}
		if !now {
			continue
		}
		// Let the goroutines that are ready run first, so that the lookups
		// they are about to ask for join this round trip.
		runtime.Gosched()
	more:
		for len(ls)+len(rs) < b.max {
			select {
			case l, ok := <-lookups:
				if !ok {
					lookups = nil
					continue
				}
				ls = append(ls, l)
			case r, ok := <-records:
				if !ok {
					records = nil
					continue
				}
				rs = append(rs, r)
			default:
				break more
			}
		}
		if armed {
			timer.Stop()
			armed = false
		}
		if len(ls)+len(rs) > 0 {
			b.flush(ls, rs)
			clear(ls)
			clear(rs)
			ls, rs = ls[:0], rs[:0]
		}
	}
}

// close flushes what is queued and stops the loops. Nothing may be added
// after.
func (b *redisBatcher) close() {
	close(b.lookups)
	close(b.records)
	b.wg.Wait()
}
