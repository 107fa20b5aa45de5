package loglimit

import (
	"testing"
	"time"
)

// TestLogLimiter: one line per key per interval; the first line after the
// interval says how many were held back; keys are independent.
func TestLogLimiter(t *testing.T) {
	l := New[string](10 * time.Second)
	t0 := time.Unix(1_700_000_000, 0)
	check := func(key string, at time.Duration, wantOK bool, wantSuppressed int) {
		t.Helper()
		ok, n := l.Allow(key, t0.Add(at))
		if ok != wantOK || n != wantSuppressed {
			t.Errorf("%s at %s: allowed %v with %d held back, want %v with %d", key, at, ok, n, wantOK, wantSuppressed)
		}
	}
	check("a", 0, true, 0)
	check("a", time.Second, false, 0)
	check("a", 9*time.Second, false, 0)
	check("b", 9*time.Second, true, 0)
	check("a", 10*time.Second, true, 2)
	check("a", 11*time.Second, false, 0)
	check("a", 30*time.Second, true, 1)
	check("b", 30*time.Second, true, 0)

	// The limiter forgets its keys rather than grow without end.
	for i := range MaxKeys + 10 {
		l.Allow(string(rune('c'+i)), t0)
	}
	if n := len(l.keys); n > MaxKeys {
		t.Errorf("%d keys remembered, want at most %d", n, MaxKeys)
	}
}
