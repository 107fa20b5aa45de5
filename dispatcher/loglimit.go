package dispatcher

import (
	"sync"
	"time"
)

// failureLogEvery is how often the same kind of push failure (app,
// platform, class and reason) is logged: a provider outage fails every push
// for a while, and one line per push would bury everything else. Metrics
// count every one.
const failureLogEvery = 10 * time.Second

// maxLogKeys bounds the kinds of failure a logLimiter remembers.
const maxLogKeys = 4096

// logLimiter lets one line per key through every interval and counts the
// ones it holds back, for the next line let through to report.
type logLimiter[K comparable] struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[K]*logSlot
}

type logSlot struct {
	next       time.Time // when the next line may go
	suppressed int       // lines held back since the last one
}

func newLogLimiter[K comparable](every time.Duration) *logLimiter[K] {
	return &logLimiter[K]{every: every, keys: map[K]*logSlot{}}
}

// allow reports whether a line for k may be logged at now, and if so how
// many were held back since the last one.
func (l *logLimiter[K]) allow(k K, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[k]
	if s == nil {
		if len(l.keys) >= maxLogKeys {
			clear(l.keys) // forgets who was held back, never lets a flood through
		}
		s = &logSlot{}
		l.keys[k] = s
	}
	if now.Before(s.next) {
		s.suppressed++
		return false, 0
	}
	suppressed, s.suppressed, s.next = s.suppressed, 0, now.Add(l.every)
	return true, suppressed
}
