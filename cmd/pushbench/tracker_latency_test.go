package main

import (
	"sync"
	"testing"
	"time"
)

// TestDeliveredEventsHaveEveryLatency pushes each event's devices from
// goroutines of their own, as the emulators' connections do, and takes the
// latencies the moment the tracker counts the event delivered, as a phase
// does at its end: every push of a delivered event must be among them, the
// last to arrive included, or a phase can leave its latest pushes out of
// its percentiles.
func TestDeliveredEventsHaveEveryLatency(t *testing.T) {
	const fanout, rounds = 4, 5000
	ids := []string{"us-east-1:" + uuidish(1, 1)}
	tr := newTracker(ids, fanout)
	tr.measuring.Store(true)
	missing := 0
	for k := range int64(rounds) {
		tr.published(k, time.Now())
		var wg sync.WaitGroup
		for d := range fanout {
			token := apnsToken(d)
			if d%2 == 1 {
				token = fcmToken(d)
			}
			wg.Go(func() { tr.push(ids[0], token, k+1, time.Now()) })
		}
		for tr.events.Load() <= k {
		}
		n := len(tr.takeLatencies())
		wg.Wait()
		tr.takeLatencies()
		missing += fanout - n
	}
	if missing > 0 {
		t.Errorf("%d of %d pushes of delivered events had no latency when the events were counted delivered", missing, fanout*rounds)
	}
}
