package h2client

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// TestDialDuringHoldOffEndsIt has a connection refused with a GOAWAY
// while a second one is being dialled. The second one is made, answers,
// and is lost after its answer. The host took a connection after the
// refusal, so a request made then dials it again. The pool used to keep
// holding the host off without the refusal's error, which the dial had
// cleared, and handed the request no connection and no error: RoundTrip
// dereferenced a nil connection and the process crashed.
func TestDialDuringHoldOffEndsIt(t *testing.T) {
	held := make(chan struct{}, 1)   // the first connection read its request
	refuse := make(chan struct{})    // the first connection sends GOAWAY
	handshake := make(chan struct{}) // the second connection's handshake goes on
	srv := newScriptServer(t, h2Only, func(sc *scriptConn) {
		switch sc.n {
		case 1:
			if !sc.ok(sc.handshake(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})) {
				return
			}
			if _, err := sc.readHeaders(); err != nil {
				return
			}
			held <- struct{}{}
			<-refuse
			if sc.write(func(fr *http2.Framer) error { return fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, nil) }) != nil {
				return
			}
			sc.drain()
		case 2:
			<-handshake
			if !sc.ok(sc.handshake()) {
				return
			}
			// One answer, then the connection is lost.
			r, err := sc.readRequest()
			if err != nil {
				return
			}
			sc.respond(r.id, 200, "conn2:"+r.get(":path"))
		default:
			if sc.ok(sc.handshake()) {
				sc.serve()
			}
		}
	})
	tr := srv.newTransport(t)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()

	cha := goRoundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/a"), nil))
	recv(t, held, "the first request did not reach the server")
	// The first connection is at its limit: the second request has a
	// second connection dialled.
	chb := goRoundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/b"), nil))
	waitUntil(t, "a second connection is being dialled", func() bool { return srv.accepts.Load() == 2 })
	// Failures in a row before: the refusal holds the host off for the
	// longest backoff, which the rest of the test cannot outlast.
	p := pools(tr)[0]
	p.mu.Lock()
	p.fails = 10
	p.mu.Unlock()
	close(refuse)
	var ge *GoAwayError
	if r := await(t, cha); !errors.As(r.err, &ge) {
		t.Fatalf("first request: error %v, want the GoAwayError", r.err)
	}
	close(handshake)
	mustOK(t, await(t, chb), "conn2:/b")
	waitUntil(t, "the second connection is gone", func() bool { return len(poolConns(tr)) == 0 })

	mustOK(t, roundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/c"), nil)), "conn3:/c")
}
