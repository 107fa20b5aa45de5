package dispatcher

import (
	"sync"
	"testing"
	"time"

	"github.com/pushsync/pushsync/registry"
)

// batchLog records the round trips a redisBatcher makes.
type batchLog struct {
	mu      sync.Mutex
	flushes [][2]int // lookups, records
	records int
	flushed chan struct{}
}

func (l *batchLog) flush(ls []*lookupReq, rs []sentReq) {
	l.mu.Lock()
	l.flushes = append(l.flushes, [2]int{len(ls), len(rs)})
	l.records += len(rs)
	l.mu.Unlock()
	for _, r := range ls {
		r.reply <- registry.Lookup{}
	}
	for _, r := range rs {
		r.fan.wg.Done()
	}
	select {
	case l.flushed <- struct{}{}:
	default:
	}
}

func (l *batchLog) snapshot() ([][2]int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][2]int(nil), l.flushes...), l.records
}

func TestRedisBatcherRecordsRideWithLookups(t *testing.T) {
	log := &batchLog{flushed: make(chan struct{}, 1)}
	b := newRedisBatcher(2, 8, time.Hour, log.flush) // records alone would wait an hour
	f := &fan{}
	recordN(b, f, 3)
	reply := make(chan registry.Lookup, 1)
	b.lookups <- &lookupReq{reply: reply}
	<-reply
	f.wg.Wait() // the records went in the lookup's round trip
	got, _ := log.snapshot()
	if len(got) != 1 || got[0] != [2]int{1, 3} {
		t.Errorf("round trips %v, want one with 1 lookup and 3 records", got)
	}
	b.close()
}

func TestRedisBatcherRecordsAloneWaitLinger(t *testing.T) {
	log := &batchLog{flushed: make(chan struct{}, 1)}
	b := newRedisBatcher(2, 8, 20*time.Millisecond, log.flush)
	f := &fan{}
	start := time.Now()
	recordN(b, f, 3)
	f.wg.Wait()
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("records flushed after %v, before the linger", waited)
	}
	got, _ := log.snapshot()
	if len(got) != 1 || got[0] != [2]int{0, 3} {
		t.Errorf("round trips %v, want one with the 3 records", got)
	}
	b.close()
}

func TestRedisBatcherBoundsRoundTripsAndFlushesAll(t *testing.T) {
	log := &batchLog{flushed: make(chan struct{}, 1)}
	const max = 8
	b := newRedisBatcher(2, max, 20*time.Millisecond, log.flush)
	f := &fan{}
	recordN(b, f, 5*max+3)
	f.wg.Wait()
	got, n := log.snapshot()
	if n != 5*max+3 {
		t.Errorf("%d records flushed, want %d", n, 5*max+3)
	}
	for _, fl := range got {
		if fl[0]+fl[1] > max {
			t.Errorf("a round trip of %d commands, above %d", fl[0]+fl[1], max)
		}
	}

	// Closing flushes what waits.
	recordN(b, f, 1)
	b.close()
	if _, n := log.snapshot(); n != 5*max+4 {
		t.Errorf("%d records flushed by close, want %d", n, 5*max+4)
	}
}

// recordN queues n records of accepted pushes of fan-out f.
func recordN(b *redisBatcher, f *fan, n int) {
	for range n {
		f.wg.Add(1)
		b.record(sentReq{fan: f})
	}
}
