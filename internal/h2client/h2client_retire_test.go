package h2client

import (
	"context"
	"net/http"
	"testing"
)

// TestRetireClosesConnectionsAfterTheirRequests checks that Retire closes
// a busy connection once its request ends, and that a connection still
// being dialled when Retire is called, or dialled for a request made
// afterwards, closes as well once its request ends: a retired Transport
// is dropped, and nothing else would ever close it.
func TestRetireClosesConnectionsAfterTheirRequests(t *testing.T) {
	gate := make(chan struct{})      // lets the second connection's handshake go on
	accepted := make(chan int, 8)    // connections accepted, by number
	closed := make(chan int, 8)      // connections whose client went away
	requests := make(chan uint32, 8) // streams the first connection holds
	answer := make(chan struct{}, 8) // answers one held stream
	s := newScriptServer(t, h2Only, func(sc *scriptConn) {
		accepted <- sc.n
		defer func() { closed <- sc.n }()
		if sc.n == 2 {
			<-gate
		}
		if !sc.ok(sc.handshake()) {
			return
		}
		if sc.n != 1 {
			sc.serve()
			return
		}
		// The first connection holds its request until told.
		r, err := sc.readRequest()
		if err != nil {
			return
		}
		requests <- r.id
		<-answer
		if sc.respond(r.id, 200, "held") != nil {
			return
		}
		_ = sc.drain()
	})
	tr := s.newTransport(t)
	tr.MaxConnsPerHost = 1
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()

	// A busy connection closes once its request ends.
	held := goRoundTrip(tr, newRequest(t, ctx, http.MethodGet, s.url("/held"), nil))
	recv(t, accepted, "first connection never accepted")
	recv(t, requests, "first request never arrived")
	tr.Retire()
	answer <- struct{}{}
	mustOK(t, await(t, held), "held")
	if n := recv(t, closed, "the retired busy connection was not closed after its request"); n != 1 {
		t.Fatalf("connection %d closed, want 1", n)
	}

	// A request made after Retire dials; Retire is called again while the
	// dial is under way; the connection closes after the request.
	later := goRoundTrip(tr, newRequest(t, ctx, http.MethodGet, s.url("/later"), nil))
	if n := recv(t, accepted, "second connection never accepted"); n != 2 {
		t.Fatalf("connection %d accepted, want 2", n)
	}
	tr.Retire()
	close(gate)
	mustOK(t, await(t, later), "conn2:/later")
	if n := recv(t, closed, "a connection dialled while retired was never closed"); n != 2 {
		t.Fatalf("connection %d closed, want 2", n)
	}
}
