// Package loglimit keeps a log readable through a flood: of lines of one
// kind, one goes out every interval, carrying how many were held back.
package loglimit

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// MaxKeys bounds the keys a Limiter remembers.
const MaxKeys = 4096

// Limiter lets one line per key through every interval and counts the
// ones it holds back, for the next line let through to report. It is safe
// for concurrent use.
type Limiter[K comparable] struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[K]*slot
}

type slot struct {
	next       time.Time // when the next line may go
	suppressed int       // lines held back since the last one
}

// New returns a Limiter that lets one line per key through every interval.
func New[K comparable](every time.Duration) *Limiter[K] {
	return &Limiter[K]{every: every, keys: map[K]*slot{}}
}

// Allow reports whether a line for k may be logged at now, and if so how
// many were held back since the last one.
func (l *Limiter[K]) Allow(k K, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[k]
	if s == nil {
		if len(l.keys) >= MaxKeys {
			clear(l.keys) // forgets who was held back, never lets a flood through
		}
		s = &slot{}
		l.keys[k] = s
	}
	if now.Before(s.next) {
		s.suppressed++
		return false, 0
	}
	suppressed, s.suppressed, s.next = s.suppressed, 0, now.Add(l.every)
	return true, suppressed
}

// Event returns the event of a line of kind k at now: at level when the
// limiter lets it through, with similar_not_logged counting the lines held
// back since the last one, and at debug level otherwise, so that nothing
// is lost to an operator who asks for debug lines.
func (l *Limiter[K]) Event(log zerolog.Logger, level zerolog.Level, k K, now time.Time) *zerolog.Event {
	ok, suppressed := l.Allow(k, now)
	if !ok {
		return log.Debug()
	}
	e := log.WithLevel(level)
	if suppressed > 0 {
		e = e.Int("similar_not_logged", suppressed)
	}
	return e
}
