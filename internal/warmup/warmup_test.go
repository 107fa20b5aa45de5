package warmup

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestGateSerialisesUntilWarm(t *testing.T) {
	var g Gate
	var inFlight, maxInFlight, calls atomic.Int32
	send := func(warms bool) func() bool {
		return func() bool {
			n := inFlight.Add(1)
			for {
				m := maxInFlight.Load()
				if n <= m || maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			calls.Add(1)
			inFlight.Add(-1)
			return warms
		}
	}
	// Cold sends that fail to warm run one at a time.
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); g.Do(send(false)) }()
	}
	wg.Wait()
	if maxInFlight.Load() != 1 || g.Warm() {
		t.Fatalf("cold gate let %d sends run at once (warm=%v)", maxInFlight.Load(), g.Warm())
	}
	g.Do(send(true))
	if !g.Warm() {
		t.Fatal("a warming send did not open the gate")
	}
	if calls.Load() != 51 {
		t.Fatalf("%d sends ran, want 51", calls.Load())
	}
	// Once warm, sends overlap freely.
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Do(func() bool { started <- struct{}{}; <-release; return true })
		}()
	}
	<-started
	<-started // both are inside send at the same time
	close(release)
	wg.Wait()
}
