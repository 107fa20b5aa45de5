// Package h2client is an HTTP/2 client transport for push services: a
// great many small requests in flight at once on a few long-lived TLS
// connections, each answered with a status and a small body.
//
// net/http's HTTP/2 client serves every use of HTTP; for this one it pays
// for generality on every request: a goroutine per request whose stack
// grows anew each time, header maps canonicalised and copied, a device
// token in every :path churning the HPACK table, a TLS record per frame.
// A Transport here writes a request's frames from the calling goroutine
// into a per-connection queue that one goroutine encrypts and writes in
// a single system call with whatever other requests queued meanwhile, and
// it reads each answer whole before returning it. Header fields named by
// NeverIndex go out as never-indexed literals.
//
// What HTTP/2 asks of a client is kept: the server's SETTINGS (stream
// limit, window, frame and table sizes) are honoured as they change, send
// windows are respected and the receive window replenished, PINGs are
// answered and idle connections checked with PINGs of their own, and
// GOAWAY and REFUSED_STREAM retire a connection or a stream with requests
// the server did not process retried on another connection, unless the
// GOAWAY said why the server closed it (see GoAwayError). Only https
// URLs and TLS with ALPN h2 are spoken; a response body is limited to
// MaxResponseBody bytes.
package h2client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

// MaxResponseBody is the largest response body a Transport reads; a
// longer one fails its request.
const MaxResponseBody = 1 << 20

// Transport is an http.RoundTripper speaking HTTP/2 over TLS. The zero
// value is usable; it is safe for concurrent use and must not be copied
// after first use.
type Transport struct {
	// TLSConfig configures the TLS client. NextProtos is set to h2, and
	// ServerName to the request's host when empty.
	TLSConfig *tls.Config
	// DialTimeout bounds connecting: TCP, the TLS handshake and the
	// server's first SETTINGS. If not set, 10s.
	DialTimeout time.Duration
	// KeepAlive is the TCP keep-alive period. If not set, 15s.
	KeepAlive time.Duration
	// ReadIdleTimeout is how long a connection may be silent before it is
	// checked with a PING. If not set, 15s.
	ReadIdleTimeout time.Duration
	// PingTimeout is how long a PING may go unanswered before its
	// connection is closed. If not set, 5s.
	PingTimeout time.Duration
	// MaxConnsPerHost bounds the connections to one host. A request that
	// finds every one at the server's stream limit waits for a stream to
	// end. If not set, 4.
	MaxConnsPerHost int
	// NeverIndex, if set, reports the header fields (lower-case names,
	// ":path" included) whose values change from request to request; they
	// are sent as never-indexed literals rather than filling the HPACK
	// table with values never seen again.
	NeverIndex func(name string) bool

	mu      sync.Mutex
	pools   map[string]*pool
	retired atomic.Bool // Retire was called
}

// errUnprocessed marks a request the server has not processed, which may
// be sent again on another connection.
var errUnprocessed = errors.New("h2client: request not processed by the server")

// GoAwayError fails a request the server did not process because it
// closed the connection with a GOAWAY that says why: an error code other
// than NO_ERROR, or debug data (APNs sends a JSON {"reason": …} there) on
// a connection just made that processed no stream.
// Such a request is not sent again on another connection, and for a
// while after it no new connection is made to the host (see
// dialBackoff): requests that find no other connection fail with the same
// error.
type GoAwayError struct {
	Code      http2.ErrCode
	DebugData []byte
}

func (e *GoAwayError) Error() string {
	if len(e.DebugData) == 0 {
		return fmt.Sprintf("h2client: request not processed: the server closed the connection with GOAWAY %v", e.Code)
	}
	return fmt.Sprintf("h2client: request not processed: the server closed the connection with GOAWAY %v: %q", e.Code, e.DebugData)
}

// A host is not dialled again for a while after a connection to it fails
// to be made, is refused with a GOAWAY that says why, or is lost before it
// answered a request within earlyLoss of being made: dialBackoff after the
// first such failure, doubling with each one in a row up to
// maxDialBackoff. Push services take rapid reconnects for abuse (Apple:
// "repeatedly opening and closing connections" may be treated as a
// denial-of-service attack). An answer on any connection to the host ends
// the run, and a connection made while a failure came (one being dialled
// then) ends the wait. Requests that find no connection meanwhile fail at
// once with the last failure's error.
const (
	dialBackoff    = time.Second
	maxDialBackoff = 30 * time.Second
	earlyLoss      = 10 * time.Second
)

// backoff is how long a host is left alone after fails failures in a row.
func backoff(fails int) time.Duration {
	return min(dialBackoff<<min(max(fails-1, 0), 5), maxDialBackoff)
}

// maxAttempts bounds how often a request the server did not process is
// sent again.
const maxAttempts = 4

// RoundTrip sends req and returns its response, read whole.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	if req.URL == nil || req.URL.Scheme != "https" {
		return nil, errors.New("h2client: only https URLs are supported")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("h2client: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("h2client: invalid value of header field %q", k)
			}
		}
	}
	p := t.pool(req.URL)
	ctx := req.Context()
	for attempt := 1; ; attempt++ {
		// A request that cannot be answered before its deadline is not
		// sent: the server might still take it, while the caller is told
		// it failed and sends it again.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if deadline, ok := ctx.Deadline(); ok {
			if left, rtt := time.Until(deadline), p.roundTrip(); left < rtt {
				return nil, fmt.Errorf("h2client: not sent, %v before its deadline is less than a round trip to %s (%v): %w",
					left.Round(time.Microsecond), p.addr, rtt.Round(time.Microsecond), context.DeadlineExceeded)
			}
		}
		c, err := p.reserve(ctx)
		if err != nil {
			return nil, err
		}
		res, err := c.roundTrip(ctx, req, body)
		if err == nil || !errors.Is(err, errUnprocessed) || attempt == maxAttempts || ctx.Err() != nil {
			return res, err
		}
	}
}

// CloseIdleConnections closes the connections with no request in flight.
func (t *Transport) CloseIdleConnections() {
	t.eachConn((*conn).closeIfIdle)
}

// Retire closes every connection as soon as no request is in flight on
// it: an idle one at once, a busy one when its last request ends. Requests
// made afterwards open new connections, which close in the same way, as
// do connections being dialled when Retire is called. It is for a
// transport about to be dropped, whose busy connections
// CloseIdleConnections would leave open.
func (t *Transport) Retire() {
	t.retired.Store(true)
	t.eachConn((*conn).retire)
}

// eachConn calls f for every connection open now, holding no lock.
func (t *Transport) eachConn(f func(*conn)) {
	t.mu.Lock()
	pools := make([]*pool, 0, len(t.pools))
	for _, p := range t.pools {
		pools = append(pools, p)
	}
	t.mu.Unlock()
	for _, p := range pools {
		p.mu.Lock()
		conns := append([]*conn(nil), p.conns...)
		p.mu.Unlock()
		for _, c := range conns {
			f(c)
		}
	}
}

func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	var b []byte
	var err error
	if n := req.ContentLength; n > 0 && n <= 1<<26 {
		b = make([]byte, n)
		if _, err = io.ReadFull(req.Body, b); err == nil {
			var one [1]byte
			if k, _ := req.Body.Read(one[:]); k > 0 {
				return nil, fmt.Errorf("h2client: request body longer than its ContentLength %d", n)
			}
		}
	} else {
		b, err = io.ReadAll(req.Body)
	}
	if err != nil {
		return nil, fmt.Errorf("h2client: reading the request body: %w", err)
	}
	return b, nil
}

func (t *Transport) pool(u *url.URL) *pool {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	addr := net.JoinHostPort(host, port)
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pools[addr]
	if !ok {
		if t.pools == nil {
			t.pools = make(map[string]*pool)
		}
		p = &pool{t: t, addr: addr, host: host, changed: make(chan struct{})}
		t.pools[addr] = p
	}
	return p
}

func (t *Transport) dialTimeout() time.Duration { return orDefault(t.DialTimeout, 10*time.Second) }
func (t *Transport) readIdle() time.Duration    { return orDefault(t.ReadIdleTimeout, 15*time.Second) }
func (t *Transport) pingTimeout() time.Duration { return orDefault(t.PingTimeout, 5*time.Second) }

func (t *Transport) maxConns() int {
	if t.MaxConnsPerHost > 0 {
		return t.MaxConnsPerHost
	}
	return 4
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// pool is the connections to one host.
type pool struct {
	t    *Transport
	addr string // host:port
	host string

	mu      sync.Mutex
	conns   []*conn
	dialing bool
	dials   uint64        // dials finished
	dialErr error         // of the last failure (see dialBackoff)
	fails   int           // failures in a row (see dialBackoff)
	retryAt time.Time     // no dial before, after a failure
	changed chan struct{} // closed and replaced when a stream may be had

	// minRTT follows the fastest round trips of recent requests, in
	// nanoseconds: it drops to a faster one at once and rises by 1/64 of
	// the difference with each slower one. 0 until the first answer.
	minRTT atomic.Int64
}

// roundTrip is the time a request takes at the least, as far as recent
// ones tell.
func (p *pool) roundTrip() time.Duration { return time.Duration(p.minRTT.Load()) }

// observe notes the round trip of an answered request.
func (p *pool) observe(rtt time.Duration) {
	for {
		m := p.minRTT.Load()
		n := int64(rtt)
		if m != 0 && n > m {
			n = m + (n-m)/64
		}
		if n == m || p.minRTT.CompareAndSwap(m, n) {
			return
		}
	}
}

// reserve returns a connection with a stream reserved for the caller,
// dialing one when every connection is at its stream limit.
func (p *pool) reserve(ctx context.Context) (*conn, error) {
	var seen uint64
	waited := false
	for {
		p.mu.Lock()
		leaving := false
		for _, c := range p.conns {
			if c.tryReserve() {
				p.mu.Unlock()
				return c, nil
			}
			leaving = leaving || !c.usable() // lost or sent away: it leaves the pool next
		}
		if waited && p.dials != seen && p.dialErr != nil && len(p.conns) == 0 {
			err := p.dialErr
			p.mu.Unlock()
			return nil, err
		}
		// A connection lost or sent away a moment ago leaves the pool
		// next, and notes then whether the host is to be left alone: the
		// request waits for that rather than dial meanwhile.
		if !leaving && !p.dialing && len(p.conns) < p.t.maxConns() {
			if time.Now().Before(p.retryAt) {
				if len(p.conns) == 0 {
					// The last dial failed a moment ago: fail fast, and
					// leave the host alone for a while.
					err := p.dialErr
					p.mu.Unlock()
					return nil, err
				}
			} else {
				p.dialing = true
				go p.dial()
			}
		}
		seen, waited = p.dials, true
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// signal wakes the requests waiting for a stream: one ended on a
// connection that was at its limit, or the limit changed.
func (p *pool) signal() {
	p.mu.Lock()
	p.broadcastLocked()
	p.mu.Unlock()
}

func (p *pool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *pool) dial() {
	c, err := dial(p)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dialing = false
	p.dials++
	switch {
	case err != nil:
		p.failedLocked(err)
	case c.usable():
		// Made, though a failure may have come while it was dialled: the
		// host takes connections, and the wait that failure began is over
		// (its error is forgotten, and requests that find no connection
		// must dial again rather than fail without one).
		p.dialErr, p.retryAt = nil, time.Time{}
		p.conns = append(p.conns, c)
	case !time.Now().Before(p.retryAt):
		// Lost or sent away already, and drop did not count it a failure:
		// the waiting requests dial again rather than fail with an old
		// error.
		p.dialErr = nil
	}
	p.broadcastLocked()
}

// failedLocked notes a failure to connect to the host (see dialBackoff).
func (p *pool) failedLocked(err error) {
	p.fails++
	p.dialErr, p.retryAt = err, time.Now().Add(backoff(p.fails))
}

// answered notes that a connection answered its first request: the host
// takes connections, and a failure after this one is the first of a run.
func (p *pool) answered() {
	p.mu.Lock()
	p.fails = 0
	p.mu.Unlock()
}

// removeHoldingOff drops a connection the server refused with gerr, and
// fails with it, for the backoff, the requests that find no connection to
// the host.
func (p *pool) removeHoldingOff(c *conn, gerr *GoAwayError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failedLocked(gerr)
	p.removeLocked(c)
	p.broadcastLocked()
}

// drop removes a connection that was lost or sent away with cause. One
// lost before it answered a request, within earlyLoss of being made, is a
// failure to connect (see dialBackoff): the server takes connections only
// to drop them.
func (p *pool) drop(c *conn, cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if age := time.Since(c.made); !c.answered.Load() && age < earlyLoss {
		p.failedLocked(fmt.Errorf("h2client: connection to %s lost %v after it was made, before it answered a request: %w",
			p.addr, age.Round(time.Millisecond), cause))
		p.broadcastLocked()
	}
	p.removeLocked(c)
}

// remove drops a connection that takes no more streams.
func (p *pool) remove(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLocked(c)
}

func (p *pool) removeLocked(c *conn) {
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			p.broadcastLocked()
			return
		}
	}
}

func statusLine(code int) string {
	return strconv.Itoa(code) + " " + http.StatusText(code)
}
