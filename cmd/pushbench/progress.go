package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pushsync/pushsync/internal/term"
)

// progress shows what pushbench is doing: a bar redrawn in place on a
// terminal, a line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	label string
	unit  string
	began time.Time
	done  int64
	total int64
	span  time.Duration // of a timed step: its bar fills with time
	last  time.Time
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: term.Is(w)}
}

// start begins a step counted in unit.
func (p *progress) start(label, unit string) {
	p.startTimed(label, unit, 0)
}

// startTimed begins a step counted in unit that runs for span: its bar
// shows the time gone, its count what was done meanwhile.
func (p *progress) startTimed(label, unit string, span time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label, p.unit, p.began, p.done, p.total, p.span, p.last = label, unit, time.Now(), 0, 0, span, time.Time{}
	p.drawLocked(true)
}

// set records the step's progress; total 0 means open-ended.
func (p *progress) set(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	p.drawLocked(false)
}

// tick polls fn every 200ms until the returned stop is called.
func (p *progress) tick(fn func() (done, total int64)) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				p.set(fn())
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// stop ends the step with a final line.
func (p *progress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drawLocked(true)
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) drawLocked(force bool) {
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if !force && now.Sub(p.last) < every {
		return
	}
	p.last = now
	el := now.Sub(p.began)
	rate := float64(p.done) / max(el.Seconds(), 1e-3)
	var b strings.Builder
	fmt.Fprintf(&b, "%-44s", p.label)
	frac := -1.0
	switch {
	case p.total > 0:
		frac = min(float64(p.done)/float64(p.total), 1)
	case p.span > 0:
		frac = min(el.Seconds()/p.span.Seconds(), 1)
	}
	if frac >= 0 {
		const width = 24
		fill := int(frac * width)
		fmt.Fprintf(&b, " [%s%s] %3.0f%%", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100)
	}
	fmt.Fprintf(&b, " %6.1fs %10d %s %9.0f/s", el.Seconds(), p.done, p.unit, rate)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", b.String())
	} else {
		fmt.Fprintln(p.w, b.String())
	}
}
