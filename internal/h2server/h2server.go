// Package h2server serves HTTP over TLS for the push-service emulators:
// HTTP/2 on a goroutine per connection, and HTTP/1.1 through net/http.
//
// The emulators answer a great many small requests, each in
// microseconds, and they share a machine with what they measure.
// net/http's HTTP/2 server spends more on a request than they do: a
// goroutine per stream, and each request and response handed between the
// connection's reading, serving and writing goroutines. Here one goroutine
// per connection reads frames, runs the handler of each request as soon
// as its last frame has arrived, and writes the answers of everything it
// read in one go when no more input is waiting. A handler must therefore
// not block: the emulators' handlers only look at the request, update
// memory and answer.
//
// What HTTP/2 asks of a server is kept: SETTINGS both ways (the stream
// limit is enforced with REFUSED_STREAM), flow control in both directions,
// PING, RST_STREAM, GOAWAY on protocol errors, stream identifiers checked,
// header blocks of any length, and request bodies up to MaxRequestBody.
// The bodies of requests still arriving count against the connection's
// receive window until they are answered, so one connection never makes
// the server hold more of them than that window (16 MiB).
// A connection that sends nothing for IdleTimeout is closed.
package h2server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushsync/pushsync/internal/h2wire"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// MaxRequestBody is the largest request body read; a longer request is
// answered 413 without reaching the handler.
const MaxRequestBody = 4 << 20

const (
	// streamWindow is the receive window of each stream: a request body
	// of this size needs no WINDOW_UPDATE.
	streamWindow = 1 << 20
	// connWindow is the receive window of a connection.
	connWindow = 16 << 20
	// maxHeaderList is the largest header list read (SETTINGS_MAX_HEADER_LIST_SIZE).
	maxHeaderList = 1 << 20
	// handshakeTimeout bounds the TLS handshake and the client preface.
	handshakeTimeout = 10 * time.Second
)

// Server serves Handler over TLS.
type Server struct {
	// Handler answers every request. It runs on the connection's
	// goroutine and must not block.
	Handler http.Handler
	// TLSConfig configures TLS. NextProtos is set to h2 and, unless
	// NoHTTP1, http/1.1.
	TLSConfig *tls.Config
	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS
	// advertised and enforced. If not set, 1000.
	MaxConcurrentStreams uint32
	// StartStreams, when set, returns the SETTINGS_MAX_CONCURRENT_STREAMS
	// a connection starts with, from its TLS state, as APNs allows one
	// stream until a request proves its provider token; a handler lifts
	// the connection to MaxConcurrentStreams with RaiseStreams. Zero, or
	// a value not below MaxConcurrentStreams, starts the connection at
	// MaxConcurrentStreams.
	StartStreams func(tls.ConnectionState) uint32
	// NoHTTP1 refuses clients that do not agree to HTTP/2.
	NoHTTP1 bool
	// IdleTimeout is how long an HTTP/2 connection may send nothing, not
	// even a PING or the rest of a frame, before the server closes it
	// with GOAWAY: a peer holding connections it does not use takes a
	// goroutine and buffers for each. If not set, 2 minutes, as for
	// HTTP/1.1 connections.
	IdleTimeout time.Duration
	// OnConn, when set, is called for every TCP connection accepted.
	OnConn func()
	// ConnContext, when set, returns the context of the requests of a
	// connection from the one the server made, as net/http's
	// Server.ConnContext does: a place for a handler to keep what
	// belongs to the connection. It is called once the connection has
	// agreed on a protocol; c is the TLS connection.
	ConnContext func(ctx context.Context, c net.Conn) context.Context

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	http1  *http.Server
	h1ln   *chanListener
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return 2 * time.Minute
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = http.ErrServerClosed

// Serve accepts connections on ln until Close, and returns
// ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	cfg := s.TLSConfig.Clone()
	if cfg == nil {
		return errors.New("h2server: no TLSConfig")
	}
	cfg.NextProtos = []string{http2.NextProtoTLS}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.ln = ln
	s.conns = make(map[net.Conn]struct{})
	if !s.NoHTTP1 {
		cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
		s.h1ln = newChanListener(ln.Addr())
		s.http1 = &http.Server{
			Handler:           s.Handler,
			ConnContext:       s.ConnContext,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       s.idleTimeout(),
			ErrorLog:          log.New(io.Discard, "", 0),
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.http1.Serve(s.h1ln)
		}()
	}
	s.mu.Unlock()

	for {
		raw, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		if s.OnConn != nil {
			s.OnConn()
		}
		if !s.track(raw) {
			raw.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			s.serveConn(raw, cfg)
		}()
	}
}

// track adds a connection Close must close, and counts the goroutine that
// will serve it, under the lock, so that Close, which sets closed under
// the same lock before it waits, cannot miss it. It reports false when the
// server is closed already.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// untrack removes a connection Close no longer needs to close.
func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close closes the listener and every connection, and waits for their
// goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	h1 := s.http1
	s.mu.Unlock()
	if h1 != nil {
		_ = h1.Close()
	}
	s.wg.Wait()
	return err
}

func (s *Server) serveConn(raw net.Conn, cfg *tls.Config) {
	tc := tls.Server(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.untrack(raw)
		raw.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol != http2.NextProtoTLS {
		s.untrack(raw)
		if s.h1ln == nil || !s.h1ln.hand(tc) {
			tc.Close()
		}
		return
	}
	defer s.untrack(raw)
	c := newConn(s, tc)
	c.serve()
}

// chanListener hands the connections of HTTP/1.1 clients to net/http.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// conn is one HTTP/2 connection, served by one goroutine.
type conn struct {
	s     *Server
	tc    *tls.Conn
	state tls.ConnectionState
	ctx   context.Context
	br    *bufio.Reader
	bw    *bufio.Writer
	fr    *http2.Framer
	henc  *hpack.Encoder
	hbuf  bytes.Buffer
	canon map[string]string // header names as read → canonical
	lower map[string]string // handlers' header names → as written

	streams    map[uint32]*stream
	maxID      uint32 // highest stream the client opened
	maxStreams uint32
	// raise: a handler called RaiseStreams while maxStreams is below the
	// server's MaxConcurrentStreams.
	raise bool

	// What the client's SETTINGS allow.
	peerMaxFrame   uint32
	peerInitWindow int32
	sendWindow     int32 // connection send window

	recvWindow  int32 // connection receive window left
	recvUnacked int32
	goingAway   bool

	// reset holds the streams this side reset last, whose frames still
	// in flight are ignored rather than answered (RFC 9113 5.4.2).
	reset     [32]uint32
	resetNext int
}

// stream is a request being read or an answer being written.
type stream struct {
	id          uint32
	req         *http.Request
	body        []byte
	reading     bool // the request's END_STREAM not yet seen
	answered    bool // the answer's HEADERS are written
	recvWindow  int32
	recvUnacked int32
	// held is what body bytes of the request, still being read, took of
	// the connection's receive window: it is given back once the request
	// is answered or its body dropped, so that the bodies a connection
	// holds are bounded by connWindow rather than by the stream limit
	// times MaxRequestBody.
	held       int32
	sendWindow int32
	pending    []byte // answer body the windows did not yet let out
}

func newConn(s *Server, tc *tls.Conn) *conn {
	c := &conn{
		s: s, tc: tc, state: tc.ConnectionState(),
		br:      bufio.NewReaderSize(tc, 64<<10),
		bw:      bufio.NewWriterSize(tc, 32<<10),
		canon:   make(map[string]string),
		lower:   make(map[string]string),
		streams: make(map[uint32]*stream),

		maxStreams:   s.MaxConcurrentStreams,
		peerMaxFrame: 16384, peerInitWindow: 65535, sendWindow: 65535,
		recvWindow: 65535,
	}
	if c.maxStreams == 0 {
		c.maxStreams = 1000
	}
	if s.StartStreams != nil {
		if n := s.StartStreams(c.state); n > 0 && n < c.maxStreams {
			c.maxStreams = n
		}
	}
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = maxHeaderList
	c.fr.SetMaxReadFrameSize(16384) // SETTINGS_MAX_FRAME_SIZE left at its default
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

func (c *conn) serve() {
	defer c.tc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.ctx = context.WithValue(ctx, connKey{}, c)
	if c.s.ConnContext != nil {
		c.ctx = c.s.ConnContext(c.ctx, c.tc)
	}

	_ = c.tc.SetReadDeadline(time.Now().Add(handshakeTimeout))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c.br, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
	)
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, connWindow-65535)
		c.recvWindow = connWindow
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return
	}
	// The client preface ends with a SETTINGS frame (RFC 9113 3.4).
	f, err := c.fr.ReadFrame()
	if err != nil {
		return
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		c.goAway(http2.ErrCodeProtocol)
		return
	}
	// The read deadline is moved on as frames arrive, at most every
	// rearm, so that checking the clock is all a frame costs.
	idle := c.s.idleTimeout()
	rearm := min(time.Second, idle/4)
	armed := time.Now()
	_ = c.tc.SetReadDeadline(armed.Add(idle))
	for {
		if now := time.Now(); now.Sub(armed) >= rearm {
			armed = now
			_ = c.tc.SetReadDeadline(now.Add(idle))
		}
		if err := c.onFrame(f); err != nil {
			c.goAwayFor(err)
			return
		}
		if c.goingAway && len(c.streams) == 0 {
			_ = c.bw.Flush()
			return
		}
		// Answers go out together once no whole frame is waiting to be
		// read.
		if err := c.flushUnlessFrameWaiting(); err != nil {
			return
		}
		for {
			f, err = c.fr.ReadFrame()
			if err == nil {
				break
			}
			var se http2.StreamError
			if !errors.As(err, &se) {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					c.goAway(http2.ErrCodeNo) // silent for IdleTimeout
				}
				c.goAwayFor(err)
				return
			}
			if err := c.resetStream(se.StreamID, se.Code); err != nil {
				return
			}
			// The reset goes out like any answer: before waiting for input.
			if err := c.flushUnlessFrameWaiting(); err != nil {
				return
			}
		}
	}
}

// flushUnlessFrameWaiting writes what is buffered unless a whole frame
// has been read and waits to be handled: reading the next frame must not
// wait for input while answers sit in the buffer.
func (c *conn) flushUnlessFrameWaiting() error {
	n := c.br.Buffered()
	if n >= frameHeaderLen {
		h, _ := c.br.Peek(frameHeaderLen)
		if length := int(h[0])<<16 | int(h[1])<<8 | int(h[2]); n >= frameHeaderLen+length {
			return nil
		}
	}
	return c.bw.Flush()
}

// frameHeaderLen is the length of an HTTP/2 frame header.
const frameHeaderLen = 9

// goAwayFor sends GOAWAY for an error that ends the connection, when it is
// the peer's: a connection error, or a frame over the size limit. Network
// errors end it without a word.
func (c *conn) goAwayFor(err error) {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		c.goAway(http2.ErrCode(ce))
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAway(http2.ErrCodeFrameSize)
	}
}

func (c *conn) goAway(code http2.ErrCode) {
	_ = c.fr.WriteGoAway(c.maxID, code, nil)
	_ = c.bw.Flush()
}

// resetStream ends a stream with RST_STREAM. A malformed request on a new
// stream still counts as opened.
func (c *conn) resetStream(id uint32, code http2.ErrCode) error {
	if st := c.streams[id]; st != nil {
		if err := c.release(st); err != nil {
			return err
		}
	}
	delete(c.streams, id)
	if id > c.maxID && id%2 == 1 {
		c.maxID = id
	}
	c.reset[c.resetNext] = id
	c.resetNext = (c.resetNext + 1) % len(c.reset)
	return c.fr.WriteRSTStream(id, code)
}

// wasReset reports whether this side reset stream id lately.
func (c *conn) wasReset(id uint32) bool {
	for _, r := range c.reset {
		if r == id && id != 0 {
			return true
		}
	}
	return false
}

func protocolError() error { return http2.ConnectionError(http2.ErrCodeProtocol) }

func (c *conn) onFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return c.onSettings(f)
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		if f.StreamID > c.maxID {
			return protocolError() // idle stream
		}
		if st := c.streams[f.StreamID]; st != nil {
			if err := c.release(st); err != nil {
				return err
			}
		}
		delete(c.streams, f.StreamID)
	case *http2.PingFrame:
		if f.StreamID != 0 {
			return protocolError()
		}
		if !f.IsAck() {
			return c.fr.WritePing(true, f.Data)
		}
	case *http2.GoAwayFrame:
		c.goingAway = true
	case *http2.PushPromiseFrame:
		return protocolError()
	}
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingInitialWindowSize:
			delta := int32(s.Val) - c.peerInitWindow
			for _, st := range c.streams {
				if int64(st.sendWindow)+int64(delta) > math.MaxInt32 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			for _, st := range c.streams {
				st.sendWindow += delta
			}
			c.peerInitWindow = int32(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.fr.WriteSettingsAck(); err != nil {
		return err
	}
	return c.sendPending()
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	w := &c.sendWindow
	if f.StreamID != 0 {
		st := c.streams[f.StreamID]
		if st == nil {
			if f.StreamID > c.maxID {
				return protocolError()
			}
			return nil // closed already
		}
		w = &st.sendWindow
	}
	if int64(*w)+int64(f.Increment) > math.MaxInt32 {
		if f.StreamID == 0 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		return c.resetStream(f.StreamID, http2.ErrCodeFlowControl)
	}
	*w += int32(f.Increment)
	return c.sendPending()
}

func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return protocolError()
	}
	if st := c.streams[id]; st != nil {
		// Trailers: they end the request; nothing here needs them.
		if !st.reading || !f.StreamEnded() {
			return protocolError()
		}
		if len(f.PseudoFields()) > 0 {
			// Trailers carry no pseudo-header fields (RFC 9113 8.1).
			return c.resetStream(id, http2.ErrCodeProtocol)
		}
		return c.endOfRequest(st)
	}
	if id <= c.maxID {
		if c.wasReset(id) {
			return nil
		}
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	c.maxID = id
	if c.goingAway {
		return c.resetStream(id, http2.ErrCodeRefusedStream)
	}
	if uint32(len(c.streams)) >= c.maxStreams {
		return c.resetStream(id, http2.ErrCodeRefusedStream)
	}
	st := &stream{id: id, reading: !f.StreamEnded(), recvWindow: streamWindow, sendWindow: c.peerInitWindow}
	if f.Truncated {
		c.streams[id] = st
		return c.respondError(st, http.StatusRequestHeaderFieldsTooLarge)
	}
	req, ok := c.request(f)
	if !ok {
		return c.resetStream(id, http2.ErrCodeProtocol)
	}
	st.req = req
	c.streams[id] = st
	if st.reading {
		return nil
	}
	return c.answer(st)
}

// request builds the request of a HEADERS frame, or reports it malformed.
func (c *conn) request(f *http2.MetaHeadersFrame) (*http.Request, bool) {
	method, path, scheme, authority := f.PseudoValue("method"), f.PseudoValue("path"), f.PseudoValue("scheme"), f.PseudoValue("authority")
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority":
		default:
			return nil, false
		}
	}
	if method == "" || method == http.MethodConnect || path == "" || scheme == "" {
		return nil, false
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, false
	}
	fields := f.RegularFields()
	h := make(http.Header, len(fields))
	for _, hf := range fields {
		if connectionSpecific(hf.Name) || hf.Name == "te" && hf.Value != "trailers" {
			return nil, false
		}
		k := h2wire.CachedName(c.canon, hf.Name, http.CanonicalHeaderKey)
		h[k] = append(h[k], hf.Value)
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	req := &http.Request{
		Method: method, URL: u, RequestURI: path,
		Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: h, Host: authority, ContentLength: -1,
		RemoteAddr: c.tc.RemoteAddr().String(), TLS: &c.state,
		Body: http.NoBody,
	}
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return nil, false
		}
		req.ContentLength = n
	}
	return req.WithContext(c.ctx), true
}

func (c *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int32(f.Length)
	// Every byte, padding included, counts against the windows, whatever
	// the stream's state.
	if n > c.recvWindow {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= n
	st := c.streams[id]
	if st == nil || !st.reading {
		// Nothing of it is kept.
		if err := c.giveBack(n); err != nil {
			return err
		}
		switch {
		case id == 0 || id > c.maxID:
			return protocolError()
		case c.wasReset(id):
			return nil
		}
		return c.resetStream(id, http2.ErrCodeStreamClosed)
	}
	st.held += n
	if n > st.recvWindow {
		return c.resetStream(id, http2.ErrCodeFlowControl)
	}
	st.recvWindow -= n
	data := f.Data()
	switch {
	case st.answered:
		// Answered early; the rest of the request is not wanted.
		if err := c.release(st); err != nil {
			return err
		}
	case len(st.body)+len(data) > MaxRequestBody:
		st.body = nil
		if err := c.release(st); err != nil {
			return err
		}
		// If this frame ends the request, the stream closes with the
		// answer: no RST_STREAM may follow it.
		st.reading = !f.StreamEnded()
		return c.respondError(st, http.StatusRequestEntityTooLarge)
	default:
		st.body = append(st.body, data...)
	}
	if f.StreamEnded() {
		return c.endOfRequest(st)
	}
	return c.replenish(id, &st.recvWindow, &st.recvUnacked, n, streamWindow/4)
}

// replenish notes n bytes of a receive window consumed and gives them back
// with WINDOW_UPDATE once at least threshold are owed, or the window left
// is below threshold (held bodies may have taken the rest).
func (c *conn) replenish(id uint32, window, unacked *int32, n, threshold int32) error {
	*unacked += n
	if *unacked == 0 || *unacked < threshold && *window >= threshold {
		return nil
	}
	if err := c.fr.WriteWindowUpdate(id, uint32(*unacked)); err != nil {
		return err
	}
	*window += *unacked
	*unacked = 0
	return nil
}

// giveBack returns n bytes of the connection's receive window.
func (c *conn) giveBack(n int32) error {
	return c.replenish(0, &c.recvWindow, &c.recvUnacked, n, connWindow/4)
}

// release gives back the connection window st's body held.
func (c *conn) release(st *stream) error {
	n := st.held
	st.held = 0
	return c.giveBack(n)
}

// endOfRequest answers a request read whole, unless it was answered
// early, in which case the stream ends once the answer is out.
func (c *conn) endOfRequest(st *stream) error {
	st.reading = false
	if err := c.release(st); err != nil {
		return err
	}
	if !st.answered {
		return c.answer(st)
	}
	if len(st.pending) == 0 {
		delete(c.streams, st.id)
	}
	return nil
}

// respondError answers a request the handler will not see.
func (c *conn) respondError(st *stream, code int) error {
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	return c.respond(st, code, h, []byte(http.StatusText(code)+"\n"))
}

// answer runs the handler of a request read whole and writes its answer.
func (c *conn) answer(st *stream) error {
	req := st.req
	if req.ContentLength >= 0 && req.ContentLength != int64(len(st.body)) {
		return c.resetStream(st.id, http2.ErrCodeProtocol)
	}
	req.ContentLength = int64(len(st.body))
	if len(st.body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(st.body))
	}
	w := &responseWriter{header: make(http.Header)}
	ok := c.serveHTTP(w, req)
	if err := c.raiseStreams(); err != nil {
		return err
	}
	if !ok {
		return c.resetStream(st.id, http2.ErrCodeInternal)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return c.respond(st, w.status, w.header, w.body)
}

type connKey struct{}

// RaiseStreams lifts the HTTP/2 connection of a request that a handler of
// a Server is answering to the server's MaxConcurrentStreams, if its
// StartStreams held it lower: a SETTINGS frame saying so goes out before
// the answer. Outside such a handler it does nothing.
func RaiseStreams(ctx context.Context) {
	if c, ok := ctx.Value(connKey{}).(*conn); ok {
		c.raise = true
	}
}

// raiseStreams sends the SETTINGS frame a RaiseStreams asked for.
func (c *conn) raiseStreams() error {
	if !c.raise {
		return nil
	}
	c.raise = false
	n := c.s.MaxConcurrentStreams
	if n == 0 {
		n = 1000
	}
	if n <= c.maxStreams {
		return nil
	}
	c.maxStreams = n
	return c.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: n})
}

// serveHTTP runs the handler and reports whether it returned rather than
// panicked.
func (c *conn) serveHTTP(w http.ResponseWriter, req *http.Request) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				return
			}
			log.Printf("h2server: panic serving %s %s: %v", req.Method, req.URL.Path, r)
		}
	}()
	c.s.Handler.ServeHTTP(w, req)
	return true
}

// respond writes an answer's HEADERS and as much of its body as the
// windows allow; the rest follows WINDOW_UPDATEs.
func (c *conn) respond(st *stream, status int, h http.Header, body []byte) error {
	if !bodyAllowed(status) {
		body = nil
	}
	head := st.req != nil && st.req.Method == http.MethodHead
	st.answered = true
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	// A Content-Type key with no value asks for no sniffing, as in net/http.
	if _, ok := h["Content-Type"]; !ok && len(body) > 0 {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: http.DetectContentType(body)})
	}
	// The answer to HEAD declares what GET would send (RFC 9110 8.6): the
	// length of what the handler wrote, or nothing if it wrote nothing.
	if h.Get("Content-Length") == "" && bodyAllowed(status) && (!head || len(body) > 0) {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))})
	}
	if head {
		body = nil
	}
	for k, vs := range h {
		lk := h2wire.CachedName(c.lower, k, strings.ToLower)
		if !httpguts.ValidHeaderFieldName(lk) || connectionSpecific(lk) {
			continue
		}
		for _, v := range vs {
			if httpguts.ValidHeaderFieldValue(v) {
				_ = c.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
			}
		}
	}
	if err := h2wire.WriteHeaderBlock(c.fr, st.id, c.hbuf.Bytes(), int(c.peerMaxFrame), len(body) == 0); err != nil {
		return err
	}
	if len(body) == 0 {
		return c.closeStream(st)
	}
	st.pending = body
	c.streams[st.id] = st
	return c.sendData(st)
}

// closeStream forgets a stream answered in full. One whose request is
// still arriving (answered early) is reset with NO_ERROR, so that the
// client stops sending it (RFC 9113 8.1).
func (c *conn) closeStream(st *stream) error {
	if st.reading {
		return c.resetStream(st.id, http2.ErrCodeNo)
	}
	delete(c.streams, st.id)
	return nil
}

// sendData writes as much of st's pending body as the windows allow.
func (c *conn) sendData(st *stream) error {
	for len(st.pending) > 0 {
		n := min(len(st.pending), int(c.peerMaxFrame), int(c.sendWindow), int(st.sendWindow))
		if n <= 0 {
			return nil
		}
		last := n == len(st.pending)
		if err := c.fr.WriteData(st.id, last, st.pending[:n]); err != nil {
			return err
		}
		c.sendWindow -= int32(n)
		st.sendWindow -= int32(n)
		st.pending = st.pending[n:]
		if last {
			return c.closeStream(st)
		}
	}
	return nil
}

// sendPending writes what windows opened for.
func (c *conn) sendPending() error {
	for _, st := range c.streams {
		if len(st.pending) > 0 {
			if err := c.sendData(st); err != nil {
				return err
			}
		}
	}
	return nil
}

// connectionSpecific reports whether a header field belongs to HTTP/1's
// connection and may not appear in HTTP/2 (RFC 9113 8.2.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// responseWriter collects a handler's answer.
type responseWriter struct {
	header http.Header
	status int
	body   []byte
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, b...)
	return len(b), nil
}
