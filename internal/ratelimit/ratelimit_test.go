package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/ratelimit"
)

// clock is a test clock that moves only when told.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)} }

// take calls Allow n times and returns how many were allowed.
func take(l *ratelimit.Limiter, key string, n int) int {
	allowed := 0
	for range n {
		if l.Allow(key) {
			allowed++
		}
	}
	return allowed
}

func TestLimiterBurstThenRate(t *testing.T) {
	c := newClock()
	l := ratelimit.New(10, 50, 100, c.Now)
	if got := take(l, "a", 60); got != 50 {
		t.Fatalf("a full bucket allowed %d of 60 calls at once, want 50", got)
	}
	if got := take(l, "b", 5); got != 5 {
		t.Fatalf("another key was allowed %d of 5 calls, want 5", got)
	}
	c.Advance(time.Second)
	if got := take(l, "a", 20); got != 10 {
		t.Fatalf("after 1s at 10/s, %d of 20 calls allowed, want 10", got)
	}
	c.Advance(time.Hour)
	if got := take(l, "a", 60); got != 50 {
		t.Fatalf("after an hour idle, %d of 60 calls allowed, want the burst of 50", got)
	}
}

func TestLimiterFractionalRate(t *testing.T) {
	c := newClock()
	l := ratelimit.New(0.5, 1, 100, c.Now)
	if !l.Allow("a") || l.Allow("a") {
		t.Fatal("want one call allowed, then refused")
	}
	c.Advance(time.Second)
	if l.Allow("a") {
		t.Fatal("half a token must not allow a call")
	}
	c.Advance(time.Second)
	if !l.Allow("a") {
		t.Fatal("after 2s at 0.5/s a call must be allowed")
	}
}

func TestLimiterClockBackwards(t *testing.T) {
	c := newClock()
	l := ratelimit.New(1, 1, 100, c.Now)
	l.Allow("a")
	c.Advance(-time.Hour)
	if l.Allow("a") {
		t.Fatal("a clock that steps back must not refill the bucket")
	}
}

func TestLimiterForgetsIdleKeys(t *testing.T) {
	c := newClock()
	l := ratelimit.New(10, 50, 1000, c.Now)
	for i := range 100 {
		l.Allow(fmt.Sprint("k", i))
	}
	if l.Len() != 100 {
		t.Fatalf("Len = %d, want 100", l.Len())
	}
	c.Advance(5 * time.Second) // 50 tokens at 10/s: every bucket is full again
	l.Allow("new")
	if l.Len() != 1 {
		t.Fatalf("after every bucket refilled, Len = %d, want 1", l.Len())
	}
}

func TestLimiterCapsKeys(t *testing.T) {
	c := newClock()
	l := ratelimit.New(1, 2, 3, c.Now)
	for _, k := range []string{"a", "b", "c"} {
		take(l, k, 2)
	}
	take(l, "a", 1) // a is now the most recently used; b the least
	l.Allow("d")
	if l.Len() != 3 {
		t.Fatalf("Len = %d, want the cap of 3", l.Len())
	}
	if l.Allow("a") || l.Allow("c") {
		t.Fatal("the buckets of a and c must be kept, empty")
	}
	if !l.Allow("b") {
		t.Fatal("b, the least recently used, must have been dropped and start full")
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":              "203.0.113.7",
		"::ffff:203.0.113.7":       "203.0.113.7",
		"2001:db8:1:2:3:4:5:6":     "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1":     "2001:db8:1:2::",
		"fe80::1%eth0":             "fe80::",
		"2001:db8:1:3:3:4:5:6":     "2001:db8:1:3::",
		"::1":                      "::",
		"2001:db8:ffff:ffff:1::99": "2001:db8:ffff:ffff::",
	} {
		if got := ratelimit.Key(netip.MustParseAddr(in)); got != want {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		name    string
		peer    string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no trusted proxies: the peer, header ignored", "198.51.100.1:4000", []string{"203.0.113.9"}, nil, "198.51.100.1"},
		{"untrusted peer: its header is ignored", "198.51.100.1:4000", []string{"203.0.113.9"}, trusted, "198.51.100.1"},
		{"trusted peer without header: the peer", "10.1.2.3:4000", nil, trusted, "10.1.2.3"},
		{"trusted peer: the address it appended", "10.1.2.3:4000", []string{"203.0.113.9"}, trusted, "203.0.113.9"},
		{"spoofed entries left of the proxy's are ignored", "10.1.2.3:4000", []string{"1.1.1.1, 2.2.2.2, 203.0.113.9"}, trusted, "203.0.113.9"},
		{"a chain of trusted proxies is skipped", "10.1.2.3:4000", []string{"1.1.1.1, 203.0.113.9, 10.9.9.9", "10.8.8.8"}, trusted, "203.0.113.9"},
		{"every hop trusted: the left-most", "10.1.2.3:4000", []string{"10.7.7.7, 10.8.8.8"}, trusted, "10.7.7.7"},
		{"garbage stops at the trusted hop that passed it", "10.1.2.3:4000", []string{"203.0.113.9, nonsense, 10.8.8.8"}, trusted, "10.8.8.8"},
		{"entries with ports and brackets", "10.1.2.3:4000", []string{"[2001:db9::5]:443"}, trusted, "2001:db9::5"},
		{"IPv6 proxy", "[2001:db8::1]:4000", []string{"203.0.113.9:1234"}, trusted, "203.0.113.9"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:4000", []string{"203.0.113.9"}, trusted, "203.0.113.9"},
		{"bracketed entry without port", "10.1.2.3:4000", []string{"[2001:db9::5]"}, trusted, "2001:db9::5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodPost, "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ratelimit.ClientAddr(r, tc.trusted); got.String() != tc.want {
				t.Errorf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}
