package h2client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pushsync/pushsync/internal/batchconn"
	"github.com/pushsync/pushsync/internal/h2wire"
)

const (
	// streamRecvWindow is the receive window of every stream: a whole
	// response body fits, so no stream needs a WINDOW_UPDATE.
	streamRecvWindow = MaxResponseBody
	// connRecvWindow is the connection's receive window, replenished
	// whenever half of it has been used.
	connRecvWindow = 16 << 20
	// maxHeaderList bounds the decoded header fields of a response.
	maxHeaderList = 64 << 10
	// defaultMaxStreams is the stream limit when the server sets none.
	defaultMaxStreams = 1000
	// maxStreamID is the last client stream ID; a connection that gets
	// there takes no more streams.
	maxStreamID = math.MaxInt32
)

// conn is one HTTP/2 connection. Frames are written under wmu by the
// goroutines sending requests, into a batchconn.Conn whose goroutine
// encrypts and writes what they queued together; one goroutine reads.
type conn struct {
	p *pool
	t *Transport
	w *batchconn.Conn // over the TLS connection
	// fr reads in the read loop only and writes under wmu.
	fr *http2.Framer

	wmu    writeLock
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32
	lower  map[string]string // canonical header names → lower-case

	mu            sync.Mutex
	streams       map[uint32]*stream
	reserved      int    // streams reserved or open
	maxStreams    uint32 // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	initWindow    int32  // the server's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame      uint32 // the server's SETTINGS_MAX_FRAME_SIZE
	window        int32  // connection send window
	windowed      chan struct{}
	windowWaiting bool         // a writer waits on windowed
	goingAway     bool         // no more streams: GOAWAY, IDs used up or closing
	goAwayErr     *GoAwayError // a GOAWAY received that said why and refused streams
	err           error
	done          chan struct{} // closed with err set
	// judged: a GOAWAY that refused the connection or took no stream told
	// the pool whether it failed (see dialBackoff); its loss after that is
	// not a second failure.
	judged bool

	made     time.Time   // when the connection was ready for requests
	answered atomic.Bool // a whole response came on the connection

	// The read loop's own.
	recvUnacked uint32            // DATA bytes received and not yet returned
	canon       map[string]string // lower-case header names → canonical
	reads       atomic.Uint64     // frames read, for the health check
}

// stream is one request. The read loop fills status, header and body and
// closes done; err is set before done is closed.
type stream struct {
	id          uint32
	window      int32 // send window, under conn.mu
	status      int
	header      http.Header
	body        []byte
	err         error
	done        chan struct{}
	recvUnacked uint32 // DATA bytes received, not yet returned; read loop only
	endSent     bool   // END_STREAM is queued; under conn.mu
}

// writeLock is a mutex a request can stop waiting for when its context
// ends: a writer holding it may be stuck behind a peer that stopped
// reading, until the health check gives up on the connection.
type writeLock chan struct{}

func (l writeLock) Lock()   { l <- struct{}{} }
func (l writeLock) Unlock() { <-l }

func (l writeLock) lockContext(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func dial(p *pool) (*conn, error) {
	t := p.t
	ctx, cancel := context.WithTimeout(context.Background(), t.dialTimeout())
	defer cancel()
	d := net.Dialer{KeepAlive: orDefault(t.KeepAlive, 15*time.Second)}
	raw, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("h2client: %w", err)
	}
	cfg := &tls.Config{}
	if t.TLSConfig != nil {
		cfg = t.TLSConfig.Clone()
	}
	cfg.NextProtos = []string{http2.NextProtoTLS}
	if cfg.ServerName == "" {
		cfg.ServerName = p.host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("h2client: TLS handshake with %s: %w", p.addr, err)
	}
	if proto := tc.ConnectionState().NegotiatedProtocol; proto != http2.NextProtoTLS {
		tc.Close()
		return nil, fmt.Errorf("h2client: %s did not agree to HTTP/2 (ALPN protocol %q)", p.addr, proto)
	}
	c := &conn{
		p: p, t: t, w: batchconn.New(tc), wmu: make(writeLock, 1),
		nextID: 1, lower: make(map[string]string),
		streams: make(map[uint32]*stream), maxStreams: defaultMaxStreams,
		initWindow: 65535, maxFrame: 16384, window: 65535,
		windowed: make(chan struct{}), done: make(chan struct{}),
		canon: make(map[string]string),
	}
	c.fr = http2.NewFramer(c.w, bufio.NewReaderSize(tc, 32<<10))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = maxHeaderList
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)

	_, err = c.w.Write([]byte(http2.ClientPreface))
	if err == nil {
		err = c.fr.WriteSettings(
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamRecvWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
		)
	}
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, connRecvWindow-65535)
	}
	// The server's connection preface is a SETTINGS frame (RFC 9113 3.4);
	// its stream limit and windows apply from the first request.
	deadline, _ := ctx.Deadline()
	_ = tc.SetReadDeadline(deadline)
	var f http2.Frame
	if err == nil {
		f, err = c.fr.ReadFrame()
		if err != nil {
			err = fmt.Errorf("waiting for its SETTINGS: %w", err)
		}
	}
	if err == nil {
		if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
			err = fmt.Errorf("sent a %v frame before its SETTINGS", f.Header().Type)
		} else {
			err = c.onSettings(sf)
		}
	}
	if err != nil {
		c.w.Close()
		return nil, fmt.Errorf("h2client: %s: %w", p.addr, err)
	}
	_ = tc.SetReadDeadline(time.Time{})
	c.made = time.Now()
	go c.readLoop()
	go c.health()
	return c, nil
}

// usable reports whether the connection may take streams.
func (c *conn) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.goingAway
}

// tryReserve reserves a stream if the connection takes one more.
func (c *conn) tryReserve() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.goingAway || c.reserved >= int(c.maxStreams) {
		return false
	}
	c.reserved++
	return true
}

// roundTrip sends req on a stream reserved with tryReserve.
func (c *conn) roundTrip(ctx context.Context, req *http.Request, body []byte) (*http.Response, error) {
	s := &stream{done: make(chan struct{})}
	start := time.Now()
	if err := c.writeHeaders(ctx, s, req, body); err != nil {
		return nil, err
	}
	if len(body) > 0 {
		if err := c.writeBody(ctx, s, body); err != nil {
			return nil, err
		}
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		select {
		case <-s.done:
			// Answered as the context ended: the answer stands (a push
			// the service accepted is not one to send again).
		default:
			// Not waiting for the RST_STREAM to be queued: the stream
			// keeps its slot until it is.
			go c.reset(s, http2.ErrCodeCancel, ctx.Err())
			return nil, ctx.Err()
		}
	}
	if s.err != nil {
		return nil, s.err
	}
	c.p.observe(time.Since(start))
	res := &http.Response{
		Status: statusLine(s.status), StatusCode: s.status,
		Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: s.header, ContentLength: int64(len(s.body)), Body: http.NoBody,
		Request: req,
	}
	if len(s.body) > 0 {
		res.Body = respBody{bytes.NewReader(s.body)}
	}
	return res, nil
}

// respBody is a response body read whole.
type respBody struct{ *bytes.Reader }

func (respBody) Close() error { return nil }

func (c *conn) writeHeaders(ctx context.Context, s *stream, req *http.Request, body []byte) error {
	if err := c.wmu.lockContext(ctx); err != nil {
		c.release()
		return err
	}
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err != nil || c.goingAway {
		gerr := c.goAwayErr
		c.mu.Unlock()
		c.release()
		if gerr != nil {
			return gerr
		}
		return fmt.Errorf("%w: its connection is closing", errUnprocessed)
	}
	if len(c.streams) >= int(c.maxStreams) {
		// The server lowered its limit after the stream was reserved, and
		// the streams open already reach it: the stream is given back and
		// the request waits for another (RFC 9113 5.1.2).
		c.mu.Unlock()
		c.release()
		return fmt.Errorf("%w: the server lowered its stream limit", errUnprocessed)
	}
	s.endSent = len(body) == 0
	s.id = c.nextID
	c.nextID += 2
	if c.nextID > maxStreamID {
		c.goingAway = true
		go c.p.remove(c)
	}
	s.window = c.initWindow
	c.streams[s.id] = s
	maxFrame := int(c.maxFrame)
	c.mu.Unlock()

	if err := h2wire.WriteHeaderBlock(c.fr, s.id, c.encode(req, len(body)), maxFrame, len(body) == 0); err != nil {
		// A failed write fails every write after it: nothing of this
		// request went out.
		c.fail(err)
		return fmt.Errorf("%w: %v", errUnprocessed, err)
	}
	return nil
}

// encode returns the header block of req, under wmu.
func (c *conn) encode(req *http.Request, contentLength int) []byte {
	c.hbuf.Reset()
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	c.field(":method", method)
	c.field(":scheme", "https")
	c.field(":authority", host)
	c.field(":path", req.URL.RequestURI())
	for k, vv := range req.Header {
		name := h2wire.CachedName(c.lower, k, strings.ToLower)
		switch name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length":
			continue
		}
		for _, v := range vv {
			c.field(name, v)
		}
	}
	if contentLength > 0 || method == http.MethodPost || method == http.MethodPut {
		c.field("content-length", strconv.Itoa(contentLength))
	}
	return c.hbuf.Bytes()
}

func (c *conn) field(name, value string) {
	never := c.t.NeverIndex != nil && c.t.NeverIndex(name)
	_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: never})
}

// release gives back a stream reserved and never opened.
func (c *conn) release() {
	c.mu.Lock()
	wasFull, drained := c.releaseLocked()
	c.mu.Unlock()
	c.afterRelease(wasFull, drained)
}

// releaseLocked gives back a stream slot, under mu. afterRelease, called
// with its results once mu is released, wakes the requests waiting for a
// slot and retires a connection going away that has no stream left.
func (c *conn) releaseLocked() (wasFull, drained bool) {
	wasFull = c.reserved >= int(c.maxStreams)
	c.reserved--
	if c.reserved == 0 && !c.goingAway && c.t.retired.Load() {
		// Made for a retired Transport: it takes no more streams.
		c.goingAway = true
	}
	return wasFull, c.goingAway && c.reserved == 0 && c.err == nil
}

func (c *conn) afterRelease(wasFull, drained bool) {
	if wasFull {
		c.p.signal()
	}
	if drained {
		c.fail(errRetired)
	}
}

// writeBody writes body as DATA frames as the send windows allow. The
// stream is checked, its window taken and its frame written under one
// hold of wmu, so nothing follows a RST_STREAM or the end of the stream.
func (c *conn) writeBody(ctx context.Context, s *stream, body []byte) error {
	for len(body) > 0 {
		if err := c.wmu.lockContext(ctx); err != nil {
			go c.reset(s, http2.ErrCodeCancel, err)
			return err
		}
		c.mu.Lock()
		if c.streams[s.id] != s {
			// Answered, reset or failed already: the answer is in s.
			c.mu.Unlock()
			c.wmu.Unlock()
			return nil
		}
		n := min(len(body), int(c.window), int(s.window), int(c.maxFrame))
		if n <= 0 {
			ch := c.windowed
			c.windowWaiting = true
			c.mu.Unlock()
			c.wmu.Unlock()
			select {
			case <-ch:
			case <-s.done:
			case <-ctx.Done():
				go c.reset(s, http2.ErrCodeCancel, ctx.Err())
				return ctx.Err()
			}
			continue
		}
		c.window -= int32(n)
		s.window -= int32(n)
		last := n == len(body)
		if last {
			s.endSent = true
		}
		c.mu.Unlock()
		err := c.fr.WriteData(s.id, last, body[:n])
		c.wmu.Unlock()
		if err != nil {
			c.fail(err)
			return nil // s carries the failure
		}
		body = body[n:]
	}
	return nil
}

// finish ends s with err, if it is still open, and reports whether it was.
func (c *conn) finish(s *stream, err error) bool {
	c.mu.Lock()
	if c.streams[s.id] != s {
		c.mu.Unlock()
		return false
	}
	delete(c.streams, s.id)
	wasFull, drained := c.releaseLocked()
	s.err = err
	close(s.done)
	c.mu.Unlock()
	c.afterRelease(wasFull, drained)
	return true
}

// endOfResponse ends s, answered in full. A server may answer before it
// has read the whole request; then the rest is not sent, and RST_STREAM
// closes the stream on the server's side too, or it would count against
// the server's stream limit for good.
func (c *conn) endOfResponse(s *stream) {
	if !c.answered.Load() {
		c.answered.Store(true) // the read loop's alone to set
		c.p.answered()
	}
	c.mu.Lock()
	sent := s.endSent
	c.mu.Unlock()
	if sent {
		c.finish(s, nil)
		return
	}
	c.wmu.Lock()
	c.mu.Lock()
	sent = s.endSent
	c.mu.Unlock()
	var err error
	if c.finish(s, nil) && !sent {
		err = c.fr.WriteRSTStream(s.id, http2.ErrCodeCancel)
	}
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
	}
}

// reset ends s with err and tells the server with RST_STREAM.
func (c *conn) reset(s *stream, code http2.ErrCode, err error) {
	c.wmu.Lock()
	if !c.finish(s, err) {
		c.wmu.Unlock()
		return
	}
	werr := c.fr.WriteRSTStream(s.id, code)
	c.wmu.Unlock()
	if werr != nil {
		c.fail(werr)
	}
}

var errRetired = errors.New("h2client: connection retired")

// fail closes the connection and ends every open stream with err.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	judged := c.judged
	close(c.done)
	open := make([]*stream, 0, len(c.streams))
	for id, s := range c.streams {
		delete(c.streams, id)
		c.reserved--
		open = append(open, s)
	}
	c.mu.Unlock()
	c.w.Close()
	// The pool learns of the loss before the requests on the connection
	// do, so that none of them dials again during a backoff it starts.
	// A connection whose GOAWAY counted as a failure, or did not, is not
	// counted again when the server closes it: a refusal's error stays the
	// one requests fail with during the backoff.
	if errors.Is(err, errRetired) || judged {
		c.p.remove(c)
	} else {
		c.p.drop(c, err)
	}
	for _, s := range open {
		s.err = fmt.Errorf("h2client: connection to %s lost: %w", c.p.addr, err)
		close(s.done)
	}
}

func (c *conn) lookup(id uint32) *stream {
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	return s
}

func (c *conn) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				if s := c.lookup(se.StreamID); s != nil {
					c.reset(s, se.Code, fmt.Errorf("h2client: malformed response: %w", se))
				}
				continue
			}
			c.fail(err)
			return
		}
		c.reads.Add(1)
		if err := c.onFrame(f); err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *conn) onFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.RSTStreamFrame:
		if s := c.lookup(f.StreamID); s != nil {
			err := fmt.Errorf("h2client: stream reset by the server: %v", f.ErrCode)
			if f.ErrCode == http2.ErrCodeRefusedStream {
				err = fmt.Errorf("%w: stream refused", errUnprocessed)
			}
			c.finish(s, err)
		}
	case *http2.SettingsFrame:
		if !f.IsAck() {
			return c.onSettings(f)
		}
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.wmu.Lock()
			err := c.fr.WritePing(true, f.Data)
			c.wmu.Unlock()
			return err
		}
	case *http2.GoAwayFrame:
		c.onGoAway(f)
	case *http2.PushPromiseFrame:
		return errors.New("h2client: server push though SETTINGS_ENABLE_PUSH is 0")
	}
	return nil
}

func (c *conn) onHeaders(f *http2.MetaHeadersFrame) {
	s := c.lookup(f.StreamID)
	if s == nil {
		return
	}
	if f.Truncated {
		c.reset(s, http2.ErrCodeCancel, fmt.Errorf("h2client: response header list larger than %d bytes", maxHeaderList))
		return
	}
	if s.status == 0 {
		code, err := strconv.Atoi(f.PseudoValue("status"))
		if err != nil || code < 100 || code > 999 {
			c.reset(s, http2.ErrCodeProtocol, fmt.Errorf("h2client: malformed :status %q", f.PseudoValue("status")))
			return
		}
		if code < 200 {
			// An interim response; the final one follows.
			if f.StreamEnded() {
				c.reset(s, http2.ErrCodeProtocol, errors.New("h2client: stream ended without a final response"))
			}
			return
		}
		fields := f.RegularFields()
		h := make(http.Header, len(fields))
		for _, hf := range fields {
			k := h2wire.CachedName(c.canon, hf.Name, http.CanonicalHeaderKey)
			h[k] = append(h[k], hf.Value)
		}
		s.status, s.header = code, h
	}
	// A second HEADERS frame carries trailers, which nothing here needs.
	if f.StreamEnded() {
		c.endOfResponse(s)
	}
}

func (c *conn) onData(f *http2.DataFrame) error {
	if f.Length > 0 {
		// Padding counts against the window too, and DATA of streams
		// already ended still arrives for a while.
		c.recvUnacked += f.Length
		if c.recvUnacked >= connRecvWindow/2 {
			c.wmu.Lock()
			err := c.fr.WriteWindowUpdate(0, c.recvUnacked)
			c.wmu.Unlock()
			if err != nil {
				return err
			}
			c.recvUnacked = 0
		}
	}
	s := c.lookup(f.StreamID)
	if s == nil {
		return nil
	}
	data := f.Data()
	switch {
	case s.status == 0:
		c.reset(s, http2.ErrCodeProtocol, errors.New("h2client: DATA before the response headers"))
		return nil
	case len(s.body)+len(data) > MaxResponseBody:
		c.reset(s, http2.ErrCodeCancel, fmt.Errorf("h2client: response body longer than %d bytes", MaxResponseBody))
		return nil
	}
	s.body = append(s.body, data...)
	if f.StreamEnded() {
		c.endOfResponse(s)
		return nil
	}
	s.recvUnacked += f.Length
	if s.recvUnacked >= streamRecvWindow/2 {
		c.wmu.Lock()
		err := c.fr.WriteWindowUpdate(f.StreamID, s.recvUnacked)
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		s.recvUnacked = 0
	}
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	tableSize, hasTableSize := f.Value(http2.SettingHeaderTableSize)
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(c.initWindow)
			for _, st := range c.streams {
				if int64(st.window)+delta > math.MaxInt32 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			for _, st := range c.streams {
				st.window += int32(delta)
			}
			c.initWindow = int32(s.Val)
		case http2.SettingMaxFrameSize:
			c.maxFrame = s.Val
		}
		return nil
	})
	c.broadcastWindowLocked()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.wmu.Lock()
	if hasTableSize {
		c.henc.SetMaxDynamicTableSize(tableSize)
	}
	err = c.fr.WriteSettingsAck()
	c.wmu.Unlock()
	c.p.signal()
	return err
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	var s *stream
	w := &c.window
	if f.StreamID != 0 {
		if s = c.streams[f.StreamID]; s == nil {
			c.mu.Unlock()
			return nil
		}
		w = &s.window
	}
	if int64(*w)+int64(f.Increment) > math.MaxInt32 {
		c.mu.Unlock()
		if s == nil {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.reset(s, http2.ErrCodeFlowControl, errors.New("h2client: stream send window overflowed"))
		return nil
	}
	*w += int32(f.Increment)
	c.broadcastWindowLocked()
	c.mu.Unlock()
	return nil
}

func (c *conn) broadcastWindowLocked() {
	if c.windowWaiting {
		close(c.windowed)
		c.windowed = make(chan struct{})
		c.windowWaiting = false
	}
}

// onGoAway stops the connection taking streams. The streams the server
// did not process are sent again on another connection after a graceful
// GOAWAY (NO_ERROR), as a server sends when it shuts down or retires a
// connection, with a note or without (APNs: {"reason":"Shutdown"}). They
// fail with a GoAwayError after one that refuses the connection: an error
// code, or debug data before the server processed any stream (APNs:
// {"reason":"BadCertificateEnvironment"}); and then the host's next dial
// fails with it too for a while, since another connection would be told
// the same. A server may send more than one GOAWAY (APNs has been reported
// to follow its reason with a second one); after one that refused the
// connection, the others count no second failure and leave its error in
// place, and the streams they leave unprocessed fail with it.
//
// Debug data with NO_ERROR refuses only a connection made less than
// earlyLoss ago. On an older one that processed no stream, it is the note
// of a server closing a connection left unused (APNs:
// {"reason":"IdleTimeout"}; Jetty: "Idle timeout expired"): the host takes
// connections, and a request the server did not process goes on a new
// one, where a refusal would come again, and count.
func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	var gerr *GoAwayError
	if f.ErrCode != http2.ErrCodeNo || len(f.DebugData()) > 0 && f.LastStreamID == 0 && time.Since(c.made) < earlyLoss {
		// The frame is reused: its debug data is copied.
		gerr = &GoAwayError{Code: f.ErrCode, DebugData: bytes.Clone(f.DebugData())}
	}
	c.goingAway = true
	var unprocessed []*stream
	for id, s := range c.streams {
		if id > f.LastStreamID {
			unprocessed = append(unprocessed, s)
		}
	}
	refused := gerr != nil && (f.LastStreamID == 0 || len(unprocessed) > 0)
	refusedBefore := c.goAwayErr
	if refused && refusedBefore == nil {
		c.goAwayErr = gerr
	}
	if refused || f.LastStreamID == 0 {
		c.judged = true
	}
	drained := c.reserved == 0
	c.mu.Unlock()
	switch {
	case refusedBefore != nil:
		// Counted and held off for already, with the refusal's error.
		c.p.remove(c)
		gerr = refusedBefore
	case refused:
		c.p.removeHoldingOff(c, gerr)
	case f.LastStreamID == 0:
		// Sent away having taken nothing: as good as lost.
		c.p.drop(c, fmt.Errorf("GOAWAY %v", f.ErrCode))
	default:
		c.p.remove(c)
	}
	for _, s := range unprocessed {
		var err error = gerr
		if gerr == nil {
			err = fmt.Errorf("%w: GOAWAY %v", errUnprocessed, f.ErrCode)
		}
		c.finish(s, err)
	}
	if drained {
		c.fail(errRetired)
	}
}

// health PINGs a connection silent for ReadIdleTimeout and closes it when
// the answer does not come within PingTimeout. It also closes a connection
// of a retired Transport that no request took.
func (c *conn) health() {
	idle, timeout := c.t.readIdle(), c.t.pingTimeout()
	tick := time.NewTicker(min(idle, timeout) / 2)
	defer tick.Stop()
	last, quietSince := c.reads.Load(), time.Now()
	var pingAt time.Time
	for {
		select {
		case <-c.done:
			return
		case now := <-tick.C:
			if c.t.retired.Load() {
				c.closeIfIdle()
			}
			if n := c.reads.Load(); n != last {
				last, quietSince, pingAt = n, now, time.Time{}
				continue
			}
			switch {
			case !pingAt.IsZero() && now.Sub(pingAt) >= timeout:
				c.fail(fmt.Errorf("no answer to a PING within %v", timeout))
				return
			case pingAt.IsZero() && now.Sub(quietSince) >= idle:
				pingAt = now
				go c.ping()
			}
		}
	}
}

func (c *conn) ping() {
	var data [8]byte
	_, _ = rand.Read(data[:])
	c.wmu.Lock()
	err := c.fr.WritePing(false, data)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
	}
}

// retire takes no more streams and closes the connection once the last
// one ends.
func (c *conn) retire() {
	c.mu.Lock()
	c.goingAway = true
	drained := c.reserved == 0 && c.err == nil
	c.mu.Unlock()
	c.p.remove(c)
	if drained {
		c.fail(errRetired)
	}
}

// closeIfIdle closes the connection if no stream is reserved or open.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	idle := c.reserved == 0 && c.err == nil
	if idle {
		c.goingAway = true
	}
	c.mu.Unlock()
	if idle {
		c.fail(errRetired)
	}
}
