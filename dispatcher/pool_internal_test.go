package dispatcher

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestLIFOPoolBoundsAndReuse(t *testing.T) {
	const max = 4
	var busy, peak atomic.Int32
	release := make(chan struct{})
	var done atomic.Int32
	p := newLIFOPool(max, func(v int) {
		n := busy.Add(1)
		for {
			m := peak.Load()
			if n <= m || peak.CompareAndSwap(m, n) {
				break
			}
		}
		if v >= 0 {
			<-release
		}
		busy.Add(-1)
		done.Add(1)
	})
	// More work than goroutines: submit blocks until one is free.
	var wg sync.WaitGroup
	var submitted atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 3 * max {
			p.submit(i)
			submitted.Add(1)
		}
	}()
	for busy.Load() < max || submitted.Load() < max {
		runtime.Gosched()
	}
	// The fifth submit waits for a free goroutine.
	for range 100 {
		runtime.Gosched()
	}
	if got := submitted.Load(); got != max {
		t.Errorf("%d submitted with %d busy of %d, want %d", got, max, max, max)
	}
	for range 3 * max {
		release <- struct{}{}
	}
	wg.Wait()
	if got := peak.Load(); got != max {
		t.Errorf("peak concurrency %d, want %d", got, max)
	}
	p.mu.Lock()
	started := len(p.all)
	p.mu.Unlock()
	if started != max {
		t.Errorf("%d goroutines started, want %d", started, max)
	}

	// Sequential work goes to the same goroutine, the last to finish.
	p.close()
	q := newLIFOPool(max, func(struct{}) {})
	for range 100 {
		q.submit(struct{}{})
		for len(q.slots) > 0 { // wait for it to finish
			runtime.Gosched()
		}
	}
	q.mu.Lock()
	started = len(q.all)
	q.mu.Unlock()
	q.close()
	if started != 1 {
		t.Errorf("sequential work started %d goroutines, want 1", started)
	}
	if got := done.Load(); got != 3*max {
		t.Errorf("%d pieces of work ran, want %d", got, 3*max)
	}
}
