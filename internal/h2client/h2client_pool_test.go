package h2client

import (
	"context"
	"errors"
	"fmt"
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

// TestGoAwayAfterRefusal has a scripted server refuse a connection with a
// GOAWAY that says why, then send another GOAWAY, bare, that leaves a
// stream the first one kept unprocessed. The refusal is counted once, and
// its error stays the one that the stream, and a request made during the
// hold-off, fail with: the second GOAWAY counted another failure, and its
// bare "connection lost" error replaced the server's reason for the
// rest of the hold-off.
func TestGoAwayAfterRefusal(t *testing.T) {
	read := make(chan struct{}, 2) // the server read a request's HEADERS
	goAway := make(chan struct{})  // the server sends its GOAWAYs
	srv := newScriptServer(t, h2Only, func(sc *scriptConn) {
		if !sc.ok(sc.handshake()) {
			return
		}
		var ids []uint32
		for len(ids) < 2 {
			r, err := sc.readHeaders()
			if err != nil {
				return
			}
			ids = append(ids, r.id)
			read <- struct{}{}
		}
		<-goAway
		first := min(ids[0], ids[1])
		sc.write(func(fr *http2.Framer) error {
			if err := fr.WriteGoAway(first, http2.ErrCodeEnhanceYourCalm, nil); err != nil {
				return err
			}
			return fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		})
		sc.drain()
	})
	tr := srv.newTransport(t)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()

	cha := goRoundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/a"), nil))
	recv(t, read, "the first request did not reach the server")
	chb := goRoundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/b"), nil))
	recv(t, read, "the second request did not reach the server")
	// Failures in a row before: the hold-off outlasts the test.
	p := pools(tr)[0]
	p.mu.Lock()
	p.fails = 10
	p.mu.Unlock()
	close(goAway)

	want := func(what string, r result) {
		t.Helper()
		var ge *GoAwayError
		if !errors.As(r.err, &ge) || ge.Code != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("%s: error %v, want the GoAwayError ENHANCE_YOUR_CALM", what, r.err)
		}
	}
	want("first request", await(t, cha))
	want("second request", await(t, chb))
	want("a request during the hold-off", roundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/c"), nil)))
	if fails := failsOf(p); fails != 11 {
		t.Errorf("the pool counts %d failures in a row, want 11: the refusal counted once", fails)
	}
	if n := srv.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

// TestClosedAfterRefusal has a scripted server refuse a connection with a
// GOAWAY that says why, as APNs does ({"reason":"BadCertificateEnvironment"}),
// and close it at once, while another request holds a stream reserved on
// it, about to find it going away. The refusal is counted once, and its
// error stays the one a request made during the hold-off fails with: the
// close counted a second failure (doubling the hold-off) and its
// "connection lost … EOF" replaced the server's reason.
func TestClosedAfterRefusal(t *testing.T) {
	const reason = `{"reason":"BadCertificateEnvironment"}`
	goAway := make(chan struct{}) // the server sends its GOAWAY and closes
	srv := newScriptServer(t, h2Only, func(sc *scriptConn) {
		if !sc.ok(sc.handshake()) {
			return
		}
		if _, err := sc.readHeaders(); err != nil {
			return
		}
		<-goAway
		sc.write(func(fr *http2.Framer) error { return fr.WriteGoAway(0, http2.ErrCodeNo, []byte(reason)) })
	})
	tr := srv.newTransport(t)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()

	cha := goRoundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/a"), nil))
	var c *conn
	waitUntil(t, "the first request has its connection", func() bool {
		cs := poolConns(tr)
		if len(cs) == 1 {
			c = cs[0]
		}
		return c != nil
	})
	if !c.tryReserve() {
		t.Fatal("no stream reserved on the connection")
	}
	close(goAway)

	want := func(what string, err error) {
		t.Helper()
		var ge *GoAwayError
		if !errors.As(err, &ge) || string(ge.DebugData) != reason {
			t.Errorf("%s: error %v, want the GoAwayError %s", what, err, reason)
		}
	}
	want("first request", await(t, cha).err)
	waitUntil(t, "the connection is closed", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.err != nil
	})
	if fails := failsOf(pools(tr)[0]); fails != 1 {
		t.Errorf("the pool counts %d failures in a row, want 1: the refusal counted once", fails)
	}
	want("a request during the hold-off", roundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/b"), nil)).err)
	c.release() // the reserved stream finds the connection gone
	if n := srv.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

// TestStreamLimitLoweredAfterReservation has a request reserve its
// stream, the server lower SETTINGS_MAX_CONCURRENT_STREAMS below the
// streams open and reserved, and the request write its HEADERS only once
// the client has acknowledged the new limit: it must not open a stream
// beyond the limit (RFC 9113 5.1.2; APNs and FCM answer that with a
// GOAWAY that fails every request on the connection), but give its
// stream back, unsent, to be tried again when one is free.
func TestStreamLimitLoweredAfterReservation(t *testing.T) {
	firstIn := make(chan struct{})  // the first request is open
	reserved := make(chan struct{}) // the test reserved a second stream
	acked := make(chan struct{})    // the client acknowledged the limit 1
	tried := make(chan struct{})    // the reserved request has had its go
	srv := newScriptServer(t, h2Only, func(sc *scriptConn) {
		if !sc.ok(sc.handshake(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 2})) {
			return
		}
		first, err := sc.readHeaders()
		if err != nil {
			return
		}
		close(firstIn)
		<-reserved // 2 streams of 2
		if sc.writeSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1}) != nil {
			return
		}
		var opened []uint32
		for ack := false; !ack; {
			f, err := sc.next()
			if err != nil {
				return
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				opened = append(opened, h.StreamID)
			}
			if s, ok := f.(*http2.SettingsFrame); ok && s.IsAck() {
				ack = true
			}
		}
		close(acked)
		<-tried
		// Everything the client sent before it answers this PING.
		data := [8]byte{'l', 'i', 'm', 'i', 't', '=', '1'}
		if sc.write(func(fr *http2.Framer) error { return fr.WritePing(false, data) }) != nil {
			return
		}
		for {
			f, err := sc.next()
			if err != nil {
				return
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				t.Errorf("stream %d opened after the client acknowledged SETTINGS_MAX_CONCURRENT_STREAMS 1, with stream %d open", h.StreamID, first.id)
				opened = append(opened, h.StreamID)
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == data {
				break
			}
		}
		for _, id := range append([]uint32{first.id}, opened...) {
			if sc.respond(id, 200, fmt.Sprintf("stream %d", id)) != nil {
				return
			}
		}
		sc.serve()
	})
	tr := srv.newTransport(t)
	tr.MaxConnsPerHost = 1
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()

	cha := goRoundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/a"), nil))
	recv(t, firstIn, "the first request did not reach the server")
	c := poolConns(tr)[0]
	if !c.tryReserve() {
		t.Fatal("no second stream on a connection that takes 2")
	}
	close(reserved)
	recv(t, acked, "the client did not acknowledge the lowered limit")

	// The reserved request goes on only now.
	chb := make(chan result, 1)
	go func() {
		res, err := c.roundTrip(ctx, newRequest(t, ctx, http.MethodGet, srv.url("/b"), nil), nil)
		chb <- result{res: res, err: err}
	}()
	var rb result
	waitUntil(t, "the reserved request is sent or given up", func() bool {
		select {
		case rb = <-chb:
			return true
		default:
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.streams) > 1
	})
	close(tried)
	mustOK(t, await(t, cha), "stream 1")
	if rb.res == nil && rb.err == nil {
		rb = await(t, chb)
	}
	if !errors.Is(rb.err, errUnprocessed) {
		t.Errorf("the reserved request: error %v, want it given back unsent", rb.err)
	}
	mustOK(t, roundTrip(tr, newRequest(t, ctx, http.MethodGet, srv.url("/c"), nil)), "conn1:/c")
}
