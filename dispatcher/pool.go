package dispatcher

import "sync"

// lifoPool runs work on at most max goroutines, started as needed and kept.
// Work goes to the goroutine that finished last: its stack has the size
// the work needs and its memory is in cache. A channel shared by all of
// them would hand each piece to the one idle longest instead, whose stack
// the garbage collector has shrunk in the meantime, so that every piece of
// work would grow a stack again.
type lifoPool[T any] struct {
	run   func(T)
	slots chan struct{} // one per piece of work submitted and not finished

	mu   sync.Mutex
	idle []chan T // the goroutines waiting for work, the last to finish last
	all  []chan T
	wg   sync.WaitGroup
}

func newLIFOPool[T any](max int, run func(T)) *lifoPool[T] {
	return &lifoPool[T]{run: run, slots: make(chan struct{}, max)}
}

// submit hands v to a goroutine, waiting while max are busy.
func (p *lifoPool[T]) submit(v T) {
	p.slots <- struct{}{}
	p.hand(v)
}

// trySubmit hands v to a goroutine if fewer than max are busy, and
// reports whether it did.
func (p *lifoPool[T]) trySubmit(v T) bool {
	select {
	case p.slots <- struct{}{}:
		p.hand(v)
		return true
	default:
		return false
	}
}

// hand gives v to an idle goroutine, or a new one, under a slot taken.
func (p *lifoPool[T]) hand(v T) {
	p.mu.Lock()
	var ch chan T
	if k := len(p.idle); k > 0 {
		ch = p.idle[k-1]
		p.idle = p.idle[:k-1]
		p.mu.Unlock()
	} else {
		// Every goroutine is busy and each holds a slot, so there are
		// fewer than max of them.
		ch = make(chan T, 1)
		p.all = append(p.all, ch)
		p.wg.Add(1)
		p.mu.Unlock()
		go p.worker(ch)
	}
	ch <- v
}

func (p *lifoPool[T]) worker(ch chan T) {
	defer p.wg.Done()
	for v := range ch {
		p.run(v)
		p.mu.Lock()
		p.idle = append(p.idle, ch)
		p.mu.Unlock()
		<-p.slots
	}
}

// close waits for the work submitted to finish and stops the goroutines.
// Nothing may be submitted after it.
func (p *lifoPool[T]) close() {
	for range cap(p.slots) {
		p.slots <- struct{}{}
	}
	p.mu.Lock()
	for _, ch := range p.all {
		close(ch)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
