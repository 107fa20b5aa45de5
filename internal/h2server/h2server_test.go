package h2server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pushsync/pushsync/internal/emutls"
	"github.com/pushsync/pushsync/internal/h2server"
)

// readTimeout bounds every read of a raw test connection, so that a server
// that fails to answer fails the test instead of hanging it.
const readTimeout = 5 * time.Second

// Values the server advertises (see h2server.go).
const (
	serverStreamWindow = 1 << 20
	serverConnWindow   = 16 << 20
	serverHeaderList   = 1 << 20
	defaultMaxFrame    = 16384
)

var identities = sync.OnceValues(func() ([2]*emutls.Identity, error) {
	srv, err := emutls.New("h2server-test")
	if err != nil {
		return [2]*emutls.Identity{}, err
	}
	cli, err := emutls.New("h2server-test-client")
	return [2]*emutls.Identity{srv, cli}, err
})

func serverIdentity(t *testing.T) *emutls.Identity {
	t.Helper()
	ids, err := identities()
	if err != nil {
		t.Fatal(err)
	}
	return ids[0]
}

func clientIdentity(t *testing.T) *emutls.Identity {
	t.Helper()
	ids, err := identities()
	if err != nil {
		t.Fatal(err)
	}
	return ids[1]
}

// ---------------------------------------------------------------------------
// Test server.

type testServer struct {
	srv    *h2server.Server
	addr   string
	id     *emutls.Identity
	served chan error

	once     sync.Once
	serveErr error
}

// startServer serves h on 127.0.0.1 until the test ends, and checks then
// that Close makes Serve return ErrServerClosed.
func startServer(t *testing.T, h http.Handler, configure ...func(*h2server.Server)) *testServer {
	t.Helper()
	id := serverIdentity(t)
	s := &h2server.Server{
		Handler:   h,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{id.Certificate}},
	}
	for _, f := range configure {
		f(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: s, addr: ln.Addr().String(), id: id, served: make(chan error, 1)}
	go func() { ts.served <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := ts.serveResult(); !errors.Is(err, h2server.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

var errServeHung = errors.New("h2server: Serve did not return within 5s")

// serveResult waits for Serve to return.
func (ts *testServer) serveResult() error {
	ts.once.Do(func() {
		select {
		case ts.serveErr = <-ts.served:
		case <-time.After(5 * time.Second):
			ts.serveErr = errServeHung
		}
	})
	return ts.serveErr
}

func (ts *testServer) url(pathAndQuery string) string { return "https://" + ts.addr + pathAndQuery }

// h2Client returns a client speaking HTTP/2 (net/http, HTTP/2 only) to ts,
// and a function listing the local addresses of the connections it dialled.
func (ts *testServer) h2Client(t *testing.T, cfg *tls.Config) (*http.Client, func() []string) {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs = ts.id.RootCAs()
	var mu sync.Mutex
	var locals []string
	cfg.NextProtos = []string{http2.NextProtoTLS}
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	tr := &http.Transport{
		TLSClientConfig: cfg,
		Protocols:       &protocols,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := &tls.Dialer{Config: cfg}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				locals = append(locals, c.LocalAddr().String())
				mu.Unlock()
			}
			return c, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(locals)
	}
}

// calls records the paths of the requests a handler was called with.
type calls struct {
	mu    sync.Mutex
	paths []string
}

func (c *calls) add(p string) {
	c.mu.Lock()
	c.paths = append(c.paths, p)
	c.mu.Unlock()
}

func (c *calls) count(p string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, q := range c.paths {
		if q == p {
			n++
		}
	}
	return n
}

// pattern is n deterministic bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	return b
}

// testHandler serves the paths the raw-client tests use; every call is
// recorded in rec.
func testHandler(rec *calls) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r.URL.Path)
		switch r.URL.Path {
		case "/echo":
			body, err := io.ReadAll(r.Body)
			if err != nil {
				panic(err)
			}
			w.Header().Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
			w.Header().Set("X-Method", r.Method)
			w.Header().Set("X-Host", r.Host)
			if v := r.Header.Get("X-Long"); v != "" {
				w.Header().Set("X-Long-Len", strconv.Itoa(len(v)))
			}
			w.Write(body)
		case "/hello":
			w.Write([]byte("hello world"))
		case "/empty":
		case "/nocontent":
			w.Header().Set("X-Kind", "204")
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		case "/big":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(pattern(n))
		case "/bigheader":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("X-Big", hex.EncodeToString(pattern(n/2)))
			w.Write([]byte("ok"))
		case "/repeat":
			w.Header().Set("X-Repeat", "the-same-value-every-time")
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(r.URL.RawQuery))
		case "/rawtype":
			w.Header()["Content-Type"] = nil
			w.Write([]byte("<html>no sniffing please</html>"))
		case "/withheaders":
			w.Header().Set("Content-Length", "5")
			w.Header().Set("Connection", "close")
			w.Header().Set("Transfer-Encoding", "chunked")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("Upgrade", "h2c")
			w.Header().Set("X-Bad-Value", "a\r\nInjected: yes")
			w.Header()["x-non-canonical"] = []string{"kept"}
			w.Write([]byte("12345"))
		case "/panic":
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		default:
			http.NotFound(w, r)
		}
	})
}

// ---------------------------------------------------------------------------
// Raw HTTP/2 client built on http2.Framer and hpack.

// rframe is a frame read by the raw client, copied out of the framer's
// buffers. A header block is reassembled from its HEADERS and CONTINUATION
// frames and decoded.
type rframe struct {
	Type        http2.FrameType
	Stream      uint32
	Length      uint32
	EndStream   bool
	Ack         bool
	Data        []byte
	Fields      []hpack.HeaderField
	Frames      int    // frames carrying the header block
	MaxFragment uint32 // longest of them
	Code        http2.ErrCode
	LastStream  uint32
	Incr        uint32
	Settings    []http2.Setting
}

func (f rframe) String() string {
	s := fmt.Sprintf("%v stream=%d len=%d", f.Type, f.Stream, f.Length)
	switch f.Type {
	case http2.FrameHeaders:
		s += fmt.Sprintf(" end_stream=%v fields=%v", f.EndStream, f.Fields)
	case http2.FrameData:
		s += fmt.Sprintf(" end_stream=%v", f.EndStream)
	case http2.FrameRSTStream:
		s += " code=" + f.Code.String()
	case http2.FrameGoAway:
		s += fmt.Sprintf(" code=%v last=%d", f.Code, f.LastStream)
	case http2.FrameWindowUpdate:
		s += fmt.Sprintf(" incr=%d", f.Incr)
	case http2.FramePing, http2.FrameSettings:
		s += fmt.Sprintf(" ack=%v %v", f.Ack, f.Settings)
	}
	return s
}

// values returns the values of the header fields named name.
func (f rframe) values(name string) []string {
	var vs []string
	for _, hf := range f.Fields {
		if hf.Name == name {
			vs = append(vs, hf.Value)
		}
	}
	return vs
}

func (f rframe) value(name string) string {
	vs := f.values(name)
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func (f rframe) has(name string) bool { return len(f.values(name)) > 0 }

type rawConn struct {
	t    *testing.T
	tc   *tls.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	ebuf bytes.Buffer
	dec  *hpack.Decoder
	held []rframe // frames read while waiting for window, to be read again

	server     map[http2.SettingID]uint32 // the server's SETTINGS
	connSend   int64                      // what the server lets us send on the connection
	streamSend map[uint32]int64           // window updates minus data sent, per stream
	ping       uint64
}

// dialTLS opens a TLS connection negotiating h2, without the HTTP/2 preface.
func (ts *testServer) dialTLS(t *testing.T, cfg *tls.Config) *rawConn {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.RootCAs = ts.id.RootCAs()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: readTimeout}, Config: cfg}
	nc, err := d.DialContext(context.Background(), "tcp", ts.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	tc := nc.(*tls.Conn)
	t.Cleanup(func() { tc.Close() })
	if p := tc.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
		t.Fatalf("negotiated protocol %q, want h2", p)
	}
	_ = tc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	c := &rawConn{
		t: t, tc: tc,
		fr:         http2.NewFramer(tc, tc),
		dec:        hpack.NewDecoder(4096, nil),
		server:     map[http2.SettingID]uint32{http2.SettingInitialWindowSize: 65535},
		connSend:   65535,
		streamSend: make(map[uint32]int64),
	}
	c.fr.SetMaxReadFrameSize(1<<24 - 1) // frame sizes are checked by the tests
	c.enc = hpack.NewEncoder(&c.ebuf)
	return c
}

// dialRaw opens an HTTP/2 connection: preface and SETTINGS exchanged and
// acknowledged both ways.
func (ts *testServer) dialRaw(t *testing.T, settings ...http2.Setting) *rawConn {
	t.Helper()
	c := ts.dialTLS(t, nil)
	c.handshake(settings...)
	return c
}

func (c *rawConn) handshake(settings ...http2.Setting) {
	c.t.Helper()
	_, err := c.tc.Write([]byte(http2.ClientPreface))
	c.check(err)
	c.check(c.fr.WriteSettings(settings...))
	sawSettings, sawAck := false, false
	for !sawSettings || !sawAck {
		f := c.next()
		switch {
		case f.Type == http2.FrameSettings && f.Ack:
			if !sawSettings {
				c.t.Fatalf("SETTINGS ACK before the server's SETTINGS")
			}
			sawAck = true
		case f.Type == http2.FrameSettings:
			if sawSettings {
				c.t.Fatalf("second SETTINGS from the server during the handshake")
			}
			sawSettings = true
			c.check(c.fr.WriteSettingsAck())
		case f.Type == http2.FrameWindowUpdate && f.Stream == 0:
		default:
			c.t.Fatalf("unexpected frame during handshake: %v", f)
		}
	}
}

func (c *rawConn) check(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("raw client write: %v", err)
	}
}

// readWire reads the next frame off the connection, within readTimeout.
func (c *rawConn) readWire() (rframe, error) {
	_ = c.tc.SetReadDeadline(time.Now().Add(readTimeout))
	f, err := c.fr.ReadFrame()
	if err != nil {
		return rframe{}, err
	}
	h := f.Header()
	r := rframe{Type: h.Type, Stream: h.StreamID, Length: h.Length}
	switch f := f.(type) {
	case *http2.DataFrame:
		r.Data = bytes.Clone(f.Data())
		r.EndStream = f.StreamEnded()
	case *http2.HeadersFrame:
		r.EndStream = f.StreamEnded()
		block := bytes.Clone(f.HeaderBlockFragment())
		r.Frames, r.MaxFragment = 1, h.Length
		for ended := f.HeadersEnded(); !ended; {
			_ = c.tc.SetReadDeadline(time.Now().Add(readTimeout))
			cf, err := c.fr.ReadFrame()
			if err != nil {
				return r, err
			}
			cont, ok := cf.(*http2.ContinuationFrame)
			if !ok || cont.StreamID != r.Stream {
				return r, fmt.Errorf("%v inside the header block of stream %d", cf, r.Stream)
			}
			block = append(block, cont.HeaderBlockFragment()...)
			r.Frames++
			r.MaxFragment = max(r.MaxFragment, cont.Length)
			ended = cont.HeadersEnded()
		}
		fields, err := c.dec.DecodeFull(block)
		if err != nil {
			return r, fmt.Errorf("decoding the header block of stream %d: %w", r.Stream, err)
		}
		r.Fields = fields
	case *http2.ContinuationFrame:
		return r, errors.New("CONTINUATION outside a header block")
	case *http2.RSTStreamFrame:
		r.Code = f.ErrCode
	case *http2.GoAwayFrame:
		r.Code, r.LastStream = f.ErrCode, f.LastStreamID
	case *http2.WindowUpdateFrame:
		r.Incr = f.Increment
		if r.Stream == 0 {
			c.connSend += int64(f.Increment)
		} else {
			c.streamSend[r.Stream] += int64(f.Increment)
		}
	case *http2.PingFrame:
		r.Ack = f.IsAck()
		r.Data = bytes.Clone(f.Data[:])
	case *http2.SettingsFrame:
		r.Ack = f.IsAck()
		_ = f.ForeachSetting(func(s http2.Setting) error {
			r.Settings = append(r.Settings, s)
			c.server[s.ID] = s.Val
			return nil
		})
	}
	return r, nil
}

// next reads a frame off the connection or fails the test.
func (c *rawConn) next() rframe {
	c.t.Helper()
	f, err := c.readWire()
	if err != nil {
		c.t.Fatalf("raw client read: %v", err)
	}
	return f
}

// read returns a frame held back earlier, or the next one.
func (c *rawConn) read() rframe {
	c.t.Helper()
	if len(c.held) > 0 {
		f := c.held[0]
		c.held = c.held[1:]
		return f
	}
	return c.next()
}

// readSkipping reads the next frame that is not a WINDOW_UPDATE or a
// SETTINGS ACK.
func (c *rawConn) readSkipping() rframe {
	c.t.Helper()
	for {
		f := c.read()
		if f.Type == http2.FrameWindowUpdate || f.Type == http2.FrameSettings && f.Ack {
			continue
		}
		return f
	}
}

// sync sends a PING and returns the frames that came before its ACK: since
// the server handles frames in order, they are everything it had to say
// about what was sent before.
func (c *rawConn) sync() []rframe {
	c.t.Helper()
	c.ping++
	var data [8]byte
	binary.BigEndian.PutUint64(data[:], c.ping|0xabcd<<48)
	c.check(c.fr.WritePing(false, data))
	var seen []rframe
	for {
		f := c.read()
		if f.Type == http2.FramePing && f.Ack && bytes.Equal(f.Data, data[:]) {
			return seen
		}
		seen = append(seen, f)
	}
}

// expectQuiet fails if the server sent anything but window updates and
// SETTINGS acknowledgements since the last read.
func (c *rawConn) expectQuiet(what string) {
	c.t.Helper()
	for _, f := range c.sync() {
		if f.Type == http2.FrameWindowUpdate || f.Type == http2.FrameSettings && f.Ack {
			continue
		}
		c.t.Fatalf("%s: unexpected %v", what, f)
	}
}

func (c *rawConn) encode(fields ...string) []byte {
	c.ebuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		if err := c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
			c.t.Fatal(err)
		}
	}
	return bytes.Clone(c.ebuf.Bytes())
}

func reqFields(method, path string, extra ...string) []string {
	return append([]string{":method", method, ":scheme", "https", ":authority", "raw.test", ":path", path}, extra...)
}

func (c *rawConn) writeHeaders(stream uint32, endStream bool, fields ...string) {
	c.t.Helper()
	c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: stream, BlockFragment: c.encode(fields...), EndStream: endStream, EndHeaders: true,
	}))
}

func (c *rawConn) get(stream uint32, path string, extra ...string) {
	c.t.Helper()
	c.writeHeaders(stream, true, reqFields("GET", path, extra...)...)
}

// expectServes asks for /hello on stream and checks the answer: the
// connection still serves requests.
func (c *rawConn) expectServes(stream uint32) {
	c.t.Helper()
	c.get(stream, "/hello")
	if r := c.readResponse(stream); r.status() != "200" || string(r.body) != "hello world" {
		c.t.Errorf("stream %d: %s %q, want 200 \"hello world\"", stream, r.status(), r.body)
	}
}

// writeData sends data on stream in frames of at most 16384 bytes, within
// the windows the server gave; while they are shut it reads, holding back
// whatever is not a WINDOW_UPDATE for read.
func (c *rawConn) writeData(stream uint32, endStream bool, data []byte) {
	c.t.Helper()
	for first := true; first || len(data) > 0; first = false {
		for {
			sw := int64(c.server[http2.SettingInitialWindowSize]) + c.streamSend[stream]
			if len(data) == 0 || min(sw, c.connSend) > 0 {
				break
			}
			f := c.next()
			if f.Type != http2.FrameWindowUpdate {
				c.held = append(c.held, f)
			}
		}
		sw := int64(c.server[http2.SettingInitialWindowSize]) + c.streamSend[stream]
		n := int(min(int64(len(data)), defaultMaxFrame, sw, c.connSend))
		c.check(c.fr.WriteData(stream, endStream && n == len(data), data[:n]))
		c.connSend -= int64(n)
		c.streamSend[stream] -= int64(n)
		data = data[n:]
	}
}

type rawResponse struct {
	headers rframe
	body    []byte
	data    []rframe
}

func (r rawResponse) status() string { return r.headers.value(":status") }

// readResponse reads the answer on stream, giving back window for its
// DATA; anything else on another stream, or a reset, fails the test.
func (c *rawConn) readResponse(stream uint32) rawResponse {
	c.t.Helper()
	var r rawResponse
	for {
		f := c.readSkipping()
		if f.Stream != stream {
			c.t.Fatalf("waiting for the response on stream %d: unexpected %v", stream, f)
		}
		switch f.Type {
		case http2.FrameHeaders:
			if r.headers.Type != 0 {
				c.t.Fatalf("second HEADERS on stream %d: %v", stream, f)
			}
			r.headers = f
		case http2.FrameData:
			if r.headers.Type == 0 {
				c.t.Fatalf("DATA before HEADERS on stream %d", stream)
			}
			if f.Length > defaultMaxFrame {
				c.t.Fatalf("DATA frame of %d bytes exceeds the default SETTINGS_MAX_FRAME_SIZE", f.Length)
			}
			r.body = append(r.body, f.Data...)
			r.data = append(r.data, f)
			if n := uint32(len(f.Data)); n > 0 {
				c.check(c.fr.WriteWindowUpdate(0, n))
				if !f.EndStream {
					c.check(c.fr.WriteWindowUpdate(stream, n))
				}
			}
		default:
			c.t.Fatalf("waiting for the response on stream %d: unexpected %v", stream, f)
		}
		if f.EndStream {
			return r
		}
	}
}

// expectRST reads until a RST_STREAM and checks its stream and code.
func (c *rawConn) expectRST(stream uint32, code http2.ErrCode) {
	c.t.Helper()
	f := c.readSkipping()
	if f.Type != http2.FrameRSTStream || f.Stream != stream || f.Code != code {
		c.t.Fatalf("got %v, want RST_STREAM %v on stream %d", f, code, stream)
	}
}

// expectGoAway reads a GOAWAY, checks its code, and checks that the server
// then closes the connection.
func (c *rawConn) expectGoAway(code http2.ErrCode) rframe {
	c.t.Helper()
	f := c.readSkipping()
	if f.Type != http2.FrameGoAway || f.Code != code {
		c.t.Fatalf("got %v, want GOAWAY %v", f, code)
	}
	c.expectClosed()
	return f
}

// expectClosed checks that the server closes the connection, with no
// frame first.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	f, err := c.readWire()
	if err == nil {
		c.t.Fatalf("got %v, want the connection closed", f)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", readTimeout)
	}
}

// ---------------------------------------------------------------------------
// 1. Go's HTTP/2 client.

type seenRequest struct {
	Method, Path, RawQuery, RequestURI, Host, RemoteAddr, Proto string
	ProtoMajor                                                  int
	Header                                                      http.Header
	ContentLength                                               int64
	Body                                                        []byte
	TLS                                                         bool
	ALPN                                                        string
	PeerCerts                                                   int
	PeerCN                                                      string
}

func recordRequest(r *http.Request) seenRequest {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(err)
	}
	s := seenRequest{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI,
		Host: r.Host, RemoteAddr: r.RemoteAddr, Proto: r.Proto, ProtoMajor: r.ProtoMajor,
		Header: r.Header.Clone(), ContentLength: r.ContentLength, Body: body, TLS: r.TLS != nil,
	}
	if r.TLS != nil {
		s.ALPN = r.TLS.NegotiatedProtocol
		s.PeerCerts = len(r.TLS.PeerCertificates)
		if s.PeerCerts > 0 {
			s.PeerCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}
	return s
}

func TestGoClientRequestAndResponse(t *testing.T) {
	seen := make(chan seenRequest, 10)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := recordRequest(r)
		seen <- s
		w.Header().Set("Content-Type", "application/x-test")
		w.Header().Add("X-Reply", "one")
		w.Header().Add("X-Reply", "two")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "%s %s %d:%s", r.Method, r.URL.Path, len(s.Body), s.Body)
	}))
	client, locals := ts.h2Client(t, nil)

	postBody := string(pattern(3000))
	for _, tc := range []struct {
		method, path, query string
		body                string
	}{
		{"GET", "/v1/some/path", "a=1&b=two%20words", ""},
		{"POST", "/3/device/abc123", "", postBody},
	} {
		t.Run(tc.method, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			u := ts.url(tc.path)
			if tc.query != "" {
				u += "?" + tc.query
			}
			req, err := http.NewRequest(tc.method, u, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "api.push.example.test"
			req.Header.Add("X-Multi", "first")
			req.Header.Add("X-Multi", "second")
			req.Header["x-lower-case"] = []string{"v"}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			respBody, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}

			var s seenRequest
			select {
			case s = <-seen:
			default:
				t.Fatal("handler not called before the response arrived")
			}
			if s.Method != tc.method || s.Path != tc.path || s.RawQuery != tc.query {
				t.Errorf("handler saw %s %s ? %s, want %s %s ? %s", s.Method, s.Path, s.RawQuery, tc.method, tc.path, tc.query)
			}
			wantURI := tc.path
			if tc.query != "" {
				wantURI += "?" + tc.query
			}
			if s.RequestURI != wantURI {
				t.Errorf("RequestURI = %q, want %q", s.RequestURI, wantURI)
			}
			if s.Host != "api.push.example.test" {
				t.Errorf("Host = %q, want the :authority api.push.example.test", s.Host)
			}
			if got := s.Header["X-Multi"]; !slices.Equal(got, []string{"first", "second"}) {
				t.Errorf(`Header["X-Multi"] = %q, want [first second]`, got)
			}
			if got := s.Header["X-Lower-Case"]; !slices.Equal(got, []string{"v"}) {
				t.Errorf(`Header["X-Lower-Case"] = %q (header %v), want [v]`, got, s.Header)
			}
			for k := range s.Header {
				if k != http.CanonicalHeaderKey(k) {
					t.Errorf("header name %q not canonical", k)
				}
			}
			if s.ContentLength != int64(len(tc.body)) {
				t.Errorf("ContentLength = %d, want %d", s.ContentLength, len(tc.body))
			}
			if string(s.Body) != tc.body {
				t.Errorf("handler read %d body bytes, want %d", len(s.Body), len(tc.body))
			}
			if s.ProtoMajor != 2 || s.Proto != "HTTP/2.0" {
				t.Errorf("Proto = %q (major %d), want HTTP/2.0", s.Proto, s.ProtoMajor)
			}
			if !slices.Contains(locals(), s.RemoteAddr) {
				t.Errorf("RemoteAddr = %q, want one of the client's local addresses %v", s.RemoteAddr, locals())
			}
			if !s.TLS || s.ALPN != "h2" {
				t.Errorf("r.TLS set %v, ALPN %q; want set, h2", s.TLS, s.ALPN)
			}

			want := fmt.Sprintf("%s %s %d:%s", tc.method, tc.path, len(tc.body), tc.body)
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("status %d, want 202", resp.StatusCode)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("response ProtoMajor %d, want 2", resp.ProtoMajor)
			}
			if got := resp.Header.Values("X-Reply"); !slices.Equal(got, []string{"one", "two"}) {
				t.Errorf("X-Reply = %q, want [one two]", got)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/x-test" {
				t.Errorf("Content-Type = %q", got)
			}
			if string(respBody) != want {
				t.Errorf("body = %.60q..., want %.60q...", respBody, want)
			}
			if resp.ContentLength != int64(len(want)) {
				t.Errorf("ContentLength = %d, want %d", resp.ContentLength, len(want))
			}
			if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(want)) {
				t.Errorf("Content-Length header = %q, want %d", got, len(want))
			}
		})
	}
	if n := len(locals()); n != 1 {
		t.Errorf("client dialled %d connections, want 1", n)
	}
}

// net/http's own client, with HTTP/2 forced on a custom TLS config.
func TestNetHTTPTransportHTTP2(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ts.id.RootCAs()},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Post(ts.url("/echo"), "text/plain", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "ping" {
		t.Fatalf("got %s %d %q, want HTTP/2 200 ping", resp.Proto, resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Content-Length"); got != "4" {
		t.Errorf("handler saw ContentLength %s, want 4", got)
	}
}

// Handler-side defaults: sniffed Content-Type, Content-Length, and a
// handler that suppresses sniffing with a nil Content-Type.
func TestResponseHeaderDefaults(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	client, _ := ts.h2Client(t, nil)
	for _, tc := range []struct {
		path, ctype string
		hasCType    bool
	}{
		{"/hello", "text/plain; charset=utf-8", true},
		{"/rawtype", "", false},
	} {
		resp, err := client.Get(ts.url(tc.path))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_, has := resp.Header["Content-Type"]
		if got := resp.Header.Get("Content-Type"); got != tc.ctype || has != tc.hasCType {
			t.Errorf("%s: Content-Type %q (present %v), want %q (present %v)", tc.path, got, has, tc.ctype, tc.hasCType)
		}
	}
}

// ---------------------------------------------------------------------------
// 2. Concurrency.

func TestConcurrentRequests(t *testing.T) {
	var handled atomic.Int64
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		marker := r.Header.Get("X-Marker")
		body, err := io.ReadAll(r.Body)
		if err != nil || !bytes.HasPrefix(body, []byte(marker)) || r.ContentLength != int64(len(body)) {
			http.Error(w, "mismatch", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Marker", marker)
		w.Write(body)
	}))
	const (
		requests = 500
		workers  = 64
		clients  = 4
	)
	var cl [clients]*http.Client
	for i := range cl {
		cl[i], _ = ts.h2Client(t, nil)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := cl[g%clients]
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				marker := fmt.Sprintf("req-%04d:", i)
				body := marker + strings.Repeat(string(rune('a'+i%26)), (i*997)%40000)
				method := http.MethodPost
				if i%5 == 0 {
					method = http.MethodPut
				}
				req, _ := http.NewRequest(method, ts.url("/echo/"+strconv.Itoa(i)), strings.NewReader(body))
				req.Header.Set("X-Marker", marker)
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Errorf("request %d: reading body: %v", i, err)
					return
				}
				if resp.StatusCode != 200 || resp.Header.Get("X-Marker") != marker || string(got) != body {
					t.Errorf("request %d: status %d marker %q body %d bytes (%.20q); want 200 %q %d bytes",
						i, resp.StatusCode, resp.Header.Get("X-Marker"), len(got), got, marker, len(body))
				}
			}
		}()
	}
	wg.Wait()
	if n := handled.Load(); n != requests {
		t.Errorf("handler called %d times, want %d", n, requests)
	}
}

// ---------------------------------------------------------------------------
// 3. Large request bodies.

func TestLargeRequestBodies(t *testing.T) {
	var handled atomic.Int64
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		fmt.Fprintf(w, "%d %d %x", r.ContentLength, len(body), sum)
	}))
	client, _ := ts.h2Client(t, nil)

	sizes := []int{65535, 65536, 200_000, serverStreamWindow, serverStreamWindow + 1, 3<<20 + 12345, h2server.MaxRequestBody}
	for _, n := range sizes {
		for _, known := range []bool{true, false} {
			if !known && n != 65536 && n != serverStreamWindow+1 {
				continue
			}
			body := pattern(n)
			var r io.Reader = bytes.NewReader(body)
			if !known {
				r = struct{ io.Reader }{r} // no length: no content-length header
			}
			resp, err := client.Post(ts.url("/upload"), "application/octet-stream", r)
			if err != nil {
				t.Fatalf("%d bytes (length known %v): %v", n, known, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := fmt.Sprintf("%d %d %x", n, n, sha256.Sum256(body))
			if resp.StatusCode != 200 || string(got) != want {
				t.Errorf("%d bytes (length known %v): %d %q, want 200 %q", n, known, resp.StatusCode, got, want)
			}
		}
	}
	before := handled.Load()
	if before != int64(len(sizes)+2) {
		t.Errorf("handler called %d times, want %d", before, len(sizes)+2)
	}

	// One byte too many: 413, and the handler is not called.
	resp, err := client.Post(ts.url("/upload"), "application/octet-stream", bytes.NewReader(pattern(h2server.MaxRequestBody+1)))
	if err != nil {
		t.Fatalf("MaxRequestBody+1: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("MaxRequestBody+1: status %d %q, want 413", resp.StatusCode, got)
	}
	if n := handled.Load(); n != before {
		t.Errorf("handler called for a body above MaxRequestBody")
	}

	// The connection still serves.
	resp, err = client.Post(ts.url("/upload"), "text/plain", strings.NewReader("after"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("5 5 %x", sha256.Sum256([]byte("after"))); string(got) != want {
		t.Errorf("after 413: %q, want %q", got, want)
	}
}

// ---------------------------------------------------------------------------
// 4. Response flow control.

// readDataTo reads DATA frames of stream until body holds want bytes; a
// frame that goes past want, an END_STREAM before it, or any other frame
// but a SETTINGS ACK fails the test.
func (c *rawConn) readDataTo(stream uint32, body *[]byte, want int, maxFrame uint32) rframe {
	c.t.Helper()
	var last rframe
	for len(*body) < want {
		f := c.read()
		switch {
		case f.Type == http2.FrameSettings && f.Ack:
			continue
		case f.Type == http2.FrameData && f.Stream == stream:
		default:
			c.t.Fatalf("waiting for DATA on stream %d (have %d of %d bytes): unexpected %v", stream, len(*body), want, f)
		}
		if f.Length > maxFrame {
			c.t.Fatalf("DATA frame of %d bytes exceeds SETTINGS_MAX_FRAME_SIZE %d", f.Length, maxFrame)
		}
		if len(*body)+len(f.Data) > want {
			c.t.Fatalf("server sent %d bytes, beyond the %d the windows allow", len(*body)+len(f.Data), want)
		}
		*body = append(*body, f.Data...)
		if f.EndStream && len(*body) < want {
			c.t.Fatalf("END_STREAM after %d bytes, want %d", len(*body), want)
		}
		last = f
	}
	return last
}

func TestResponseFlowControl(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
	const size = 200_000
	c.get(1, "/big?n="+strconv.Itoa(size))
	h := c.readSkipping()
	if h.Type != http2.FrameHeaders || h.Stream != 1 || h.value(":status") != "200" || h.EndStream {
		t.Fatalf("got %v, want HEADERS 200 without END_STREAM", h)
	}
	if got := h.value("content-length"); got != strconv.Itoa(size) {
		t.Errorf("content-length %q, want %d", got, size)
	}

	var body []byte
	step := func(what string, want int) rframe {
		t.Helper()
		last := c.readDataTo(1, &body, want, defaultMaxFrame)
		c.expectQuiet(what)
		if len(body) != want {
			t.Fatalf("%s: have %d bytes, want %d", what, len(body), want)
		}
		return last
	}
	// The stream window of 100 bytes.
	step("initial stream window", 100)
	// A stream WINDOW_UPDATE lets out exactly that much more.
	c.check(c.fr.WriteWindowUpdate(1, 1000))
	step("after WINDOW_UPDATE 1000", 1100)
	// Lowering SETTINGS_INITIAL_WINDOW_SIZE to 50 takes the window to -50;
	// an update of 80 then lets out 30.
	c.check(c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 50}))
	c.expectQuiet("window lowered below zero")
	c.check(c.fr.WriteWindowUpdate(1, 80))
	step("after WINDOW_UPDATE 80 on a window of -50", 1130)
	// Raising it to 1000 adds 950.
	c.check(c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000}))
	step("after SETTINGS_INITIAL_WINDOW_SIZE 1000", 2080)
	// With the stream window wide open, the connection window (65,535 by
	// default, never opened by this client) is the limit.
	c.check(c.fr.WriteWindowUpdate(1, 1<<30))
	step("connection window", 65535)
	// Opening the connection window lets out the rest.
	c.check(c.fr.WriteWindowUpdate(0, 1<<20))
	last := c.readDataTo(1, &body, size, defaultMaxFrame)
	if !last.EndStream {
		t.Errorf("last DATA frame has no END_STREAM")
	}
	if !bytes.Equal(body, pattern(size)) {
		t.Errorf("response body corrupted")
	}
	c.expectQuiet("after the response")

	// The connection still serves.
	c.check(c.fr.WriteWindowUpdate(0, 1<<20))
	c.expectServes(3)
}

// Several streams waiting on the connection window all finish once it opens.
func TestResponseFlowControlManyStreams(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	const size = 40_000
	ids := []uint32{1, 3, 5}
	for _, id := range ids {
		c.get(id, "/big?n="+strconv.Itoa(size))
	}
	// 3 x 40,000 bytes do not fit the 65,535 byte connection window.
	got := map[uint32][]byte{}
	ended := map[uint32]bool{}
	total := 0
	for total < 65535 {
		f := c.readSkipping()
		switch f.Type {
		case http2.FrameHeaders:
			continue
		case http2.FrameData:
			got[f.Stream] = append(got[f.Stream], f.Data...)
			total += len(f.Data)
			ended[f.Stream] = ended[f.Stream] || f.EndStream
		default:
			t.Fatalf("unexpected %v", f)
		}
	}
	for _, f := range c.sync() {
		if f.Type == http2.FrameData {
			t.Fatalf("DATA beyond the connection window: %v", f)
		}
	}
	if total != 65535 {
		t.Fatalf("sent %d bytes on a connection window of 65535", total)
	}
	c.check(c.fr.WriteWindowUpdate(0, 1<<20))
	for len(ended) < len(ids) || !ended[1] || !ended[3] || !ended[5] {
		f := c.readSkipping()
		if f.Type != http2.FrameData {
			t.Fatalf("unexpected %v", f)
		}
		got[f.Stream] = append(got[f.Stream], f.Data...)
		ended[f.Stream] = ended[f.Stream] || f.EndStream
	}
	for _, id := range ids {
		if !bytes.Equal(got[id], pattern(size)) {
			t.Errorf("stream %d: %d bytes, body intact %v", id, len(got[id]), bytes.Equal(got[id], pattern(size)))
		}
	}
}

func TestPeerMaxFrameSize(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	const size = 100_000
	for _, maxFrame := range []uint32{defaultMaxFrame, 20000} {
		settings := []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 20}}
		if maxFrame != defaultMaxFrame {
			settings = append(settings, http2.Setting{ID: http2.SettingMaxFrameSize, Val: maxFrame})
		}
		c := ts.dialRaw(t, settings...)
		c.check(c.fr.WriteWindowUpdate(0, 1<<20))
		c.get(1, "/big?n="+strconv.Itoa(size))
		if h := c.readSkipping(); h.Type != http2.FrameHeaders {
			t.Fatalf("got %v, want HEADERS", h)
		}
		var body []byte
		biggest := uint32(0)
		for len(body) < size {
			f := c.readSkipping()
			if f.Type != http2.FrameData {
				t.Fatalf("unexpected %v", f)
			}
			if f.Length > maxFrame {
				t.Fatalf("DATA frame of %d bytes, peer's SETTINGS_MAX_FRAME_SIZE is %d", f.Length, maxFrame)
			}
			biggest = max(biggest, f.Length)
			body = append(body, f.Data...)
		}
		if biggest != maxFrame {
			t.Errorf("max frame %d: biggest DATA frame %d, want frames filled to the limit", maxFrame, biggest)
		}
		if !bytes.Equal(body, pattern(size)) {
			t.Errorf("max frame %d: body corrupted", maxFrame)
		}
	}
}

// A response header block longer than a frame goes out as HEADERS +
// CONTINUATION, each within SETTINGS_MAX_FRAME_SIZE.
func TestResponseHeaderContinuation(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	const n = 60_000
	c.get(1, "/bigheader?n="+strconv.Itoa(n))
	r := c.readResponse(1)
	if r.headers.Frames < 3 {
		t.Errorf("header block in %d frame(s), want HEADERS + CONTINUATIONs", r.headers.Frames)
	}
	if r.headers.MaxFragment > defaultMaxFrame {
		t.Errorf("header block fragment of %d bytes exceeds the max frame size", r.headers.MaxFragment)
	}
	if got := r.headers.value("x-big"); got != hex.EncodeToString(pattern(n/2)) {
		t.Errorf("x-big header of %d bytes, corrupted or missing", len(got))
	}
	if r.status() != "200" || string(r.body) != "ok" {
		t.Errorf("got %s %q", r.status(), r.body)
	}
	// The HPACK state is still in step: a next response decodes.
	c.expectServes(3)
}

// A client that allows no HPACK dynamic table gets header blocks that do
// not use one.
func TestPeerHeaderTableSizeZero(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	c.dec = hpack.NewDecoder(0, nil)
	for i, id := range []uint32{1, 3, 5} {
		c.get(id, "/repeat?"+strconv.Itoa(i))
		r := c.readResponse(id)
		if got := r.headers.value("x-repeat"); got != "the-same-value-every-time" {
			t.Errorf("response %d: x-repeat %q", i, got)
		}
		if string(r.body) != strconv.Itoa(i) {
			t.Errorf("response %d: body %q", i, r.body)
		}
	}
}

// ---------------------------------------------------------------------------
// 5. The protocol, with the raw client.

func TestServerSettings(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}), func(s *h2server.Server) { s.MaxConcurrentStreams = 7 })
	c := ts.dialRaw(t)
	if got := c.server[http2.SettingMaxConcurrentStreams]; got != 7 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 7", got)
	}
	if got := c.server[http2.SettingInitialWindowSize]; got != serverStreamWindow {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE %d, want %d", got, serverStreamWindow)
	}
	if got := c.server[http2.SettingMaxHeaderListSize]; got != serverHeaderList {
		t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d", got, serverHeaderList)
	}
	if c.connSend != serverConnWindow {
		t.Errorf("connection window %d, want %d", c.connSend, serverConnWindow)
	}
	ts2 := startServer(t, testHandler(&calls{}))
	if got := ts2.dialRaw(t).server[http2.SettingMaxConcurrentStreams]; got != 1000 {
		t.Errorf("default SETTINGS_MAX_CONCURRENT_STREAMS %d, want 1000", got)
	}
}

func TestPing(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	c.check(c.fr.WritePing(false, data))
	f := c.readSkipping()
	if f.Type != http2.FramePing || !f.Ack || f.Stream != 0 || !bytes.Equal(f.Data, data[:]) {
		t.Fatalf("got %v data %x, want PING ACK %x", f, f.Data, data)
	}
	// A PING ACK is not answered.
	c.check(c.fr.WritePing(true, [8]byte{9}))
	c.expectQuiet("after a PING ACK")
}

// A connection that sends nothing for IdleTimeout, not even the rest of a
// request, is closed with GOAWAY; one that keeps sending PINGs is not.
func TestIdleTimeout(t *testing.T) {
	const idle = time.Second
	ts := startServer(t, testHandler(&calls{}), func(s *h2server.Server) { s.IdleTimeout = idle })

	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		c := ts.dialRaw(t)
		c.expectGoAway(http2.ErrCodeNo)
	})
	t.Run("half a request", func(t *testing.T) {
		t.Parallel()
		c := ts.dialRaw(t)
		c.writeHeaders(1, false, reqFields("POST", "/echo")...)
		c.writeData(1, false, []byte("and then nothing"))
		c.expectGoAway(http2.ErrCodeNo)
	})
	t.Run("pinging", func(t *testing.T) {
		t.Parallel()
		c := ts.dialRaw(t)
		for i := range 3 * idle / (100 * time.Millisecond) {
			data := [8]byte{byte(i)}
			c.check(c.fr.WritePing(false, data))
			if f := c.readSkipping(); f.Type != http2.FramePing || !f.Ack || !bytes.Equal(f.Data, data[:]) {
				t.Fatalf("PING %d: got %v, want its ACK", i, f)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.get(1, "/hello")
		if r := c.readResponse(1); r.status() != "200" {
			t.Errorf("request after %v of PINGs: status %s", 3*idle, r.status())
		}
	})
}

func TestSettingsAcked(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.check(c.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 32768}))
	f := c.read()
	if f.Type != http2.FrameSettings || !f.Ack {
		t.Fatalf("got %v, want SETTINGS ACK", f)
	}
	// An empty SETTINGS is acknowledged too.
	c.check(c.fr.WriteSettings())
	if f := c.read(); f.Type != http2.FrameSettings || !f.Ack {
		t.Fatalf("got %v, want SETTINGS ACK", f)
	}
	// A SETTINGS ACK from the client gets no answer.
	c.check(c.fr.WriteSettingsAck())
	c.expectQuiet("after a SETTINGS ACK")
}

func TestInvalidSettings(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	for _, tc := range []struct {
		s    http2.Setting
		code http2.ErrCode
	}{
		{http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
		{http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1000}, http2.ErrCodeProtocol},
		{http2.Setting{ID: http2.SettingEnablePush, Val: 2}, http2.ErrCodeProtocol},
	} {
		c := ts.dialRaw(t)
		c.check(c.fr.WriteSettings(tc.s))
		c.expectGoAway(tc.code)
	}
}

func TestMaxConcurrentStreams(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec), func(s *h2server.Server) { s.MaxConcurrentStreams = 1 })
	c := ts.dialRaw(t)
	if got := c.server[http2.SettingMaxConcurrentStreams]; got != 1 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 1", got)
	}
	c.writeHeaders(1, false, reqFields("POST", "/echo")...)
	c.writeData(1, false, []byte("one "))
	c.writeHeaders(3, false, reqFields("POST", "/echo")...)
	c.expectRST(3, http2.ErrCodeRefusedStream)
	// DATA the client had in flight on the refused stream is ignored.
	c.writeData(3, true, []byte("late"))
	c.expectQuiet("DATA on the refused stream")
	// The first stream is unaffected.
	c.writeData(1, true, []byte("two"))
	if r := c.readResponse(1); r.status() != "200" || string(r.body) != "one two" {
		t.Errorf("stream 1: %s %q", r.status(), r.body)
	}
	// With stream 1 done there is room for another.
	c.writeHeaders(5, false, reqFields("POST", "/echo")...)
	c.writeData(5, true, []byte("five"))
	if r := c.readResponse(5); string(r.body) != "five" {
		t.Errorf("stream 5: %s %q", r.status(), r.body)
	}
	if n := rec.count("/echo"); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
}

// A stream whose answer waits for window still counts against the limit.
func TestMaxConcurrentStreamsCountsPendingAnswers(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}), func(s *h2server.Server) { s.MaxConcurrentStreams = 1 })
	c := ts.dialRaw(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	c.get(1, "/hello")
	if h := c.readSkipping(); h.Type != http2.FrameHeaders || h.Stream != 1 {
		t.Fatalf("got %v", h)
	}
	var body []byte
	c.readDataTo(1, &body, 10, defaultMaxFrame)
	c.get(3, "/hello")
	c.expectRST(3, http2.ErrCodeRefusedStream)
	c.check(c.fr.WriteWindowUpdate(1, 100))
	last := c.readDataTo(1, &body, len("hello world"), defaultMaxFrame)
	if !last.EndStream || string(body) != "hello world" {
		t.Fatalf("stream 1 body %q end %v", body, last.EndStream)
	}
	c.expectServes(5)
}

func TestEvenStreamID(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec))
	c := ts.dialRaw(t)
	c.get(1, "/hello")
	c.readResponse(1)
	c.get(2, "/hello")
	if f := c.expectGoAway(http2.ErrCodeProtocol); f.LastStream != 1 {
		t.Errorf("GOAWAY last stream %d, want 1", f.LastStream)
	}
	if n := rec.count("/hello"); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

func TestStreamIDGoesDown(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.get(5, "/hello")
	if r := c.readResponse(5); string(r.body) != "hello world" {
		t.Fatalf("stream 5: %q", r.body)
	}
	c.get(3, "/hello")
	if f := c.expectGoAway(http2.ErrCodeStreamClosed); f.LastStream != 5 {
		t.Errorf("GOAWAY last stream %d, want 5", f.LastStream)
	}
}

func TestDataOnClosedStream(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.writeHeaders(1, false, reqFields("POST", "/echo")...)
	c.writeData(1, true, []byte("body"))
	if r := c.readResponse(1); string(r.body) != "body" {
		t.Fatalf("stream 1: %q", r.body)
	}
	c.writeData(1, false, []byte("more"))
	c.expectRST(1, http2.ErrCodeStreamClosed)
	c.expectServes(3)
}

func TestFramesOnIdleStream(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.writeData(9, false, []byte("x"))
	c.expectGoAway(http2.ErrCodeProtocol)

	c = ts.dialRaw(t)
	c.check(c.fr.WriteWindowUpdate(9, 100))
	c.expectGoAway(http2.ErrCodeProtocol)

	c = ts.dialRaw(t)
	c.check(c.fr.WriteRSTStream(9, http2.ErrCodeCancel))
	c.expectGoAway(http2.ErrCodeProtocol)
}

func TestContentLengthMismatch(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec))
	c := ts.dialRaw(t)
	var id uint32 = 1
	for _, tc := range []struct {
		cl   string
		body string
	}{
		{"10", "12345"},
		{"3", "12345"},
		{"5", ""},
	} {
		c.writeHeaders(id, tc.body == "", reqFields("POST", "/echo", "content-length", tc.cl)...)
		if tc.body != "" {
			c.writeData(id, true, []byte(tc.body))
		}
		c.expectRST(id, http2.ErrCodeProtocol)
		id += 2
	}
	// A matching one is served.
	c.writeHeaders(id, false, reqFields("POST", "/echo", "content-length", "5")...)
	c.writeData(id, true, []byte("12345"))
	if r := c.readResponse(id); string(r.body) != "12345" || r.headers.value("x-content-length") != "5" {
		t.Errorf("matching content-length: %q, handler saw ContentLength %s", r.body, r.headers.value("x-content-length"))
	}
	if n := rec.count("/echo"); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

func TestMalformedRequests(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec))
	c := ts.dialRaw(t)
	var id uint32 = 1
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"connection header", reqFields("GET", "/hello", "connection", "keep-alive")},
		{"keep-alive header", reqFields("GET", "/hello", "keep-alive", "300")},
		{"transfer-encoding header", reqFields("GET", "/hello", "transfer-encoding", "chunked")},
		{"upgrade header", reqFields("GET", "/hello", "upgrade", "websocket")},
		{"te other than trailers", reqFields("GET", "/hello", "te", "gzip")},
		{"no :path", []string{":method", "GET", ":scheme", "https", ":authority", "raw.test"}},
		{"no :method", []string{":scheme", "https", ":authority", "raw.test", ":path", "/hello"}},
		{"no :scheme", []string{":method", "GET", ":authority", "raw.test", ":path", "/hello"}},
		{"unknown pseudo-header", reqFields("GET", "/hello", ":protocol", "websocket")},
		{"response pseudo-header", append([]string{":status", "200"}, reqFields("GET", "/hello")...)},
		{"relative :path", reqFields("GET", "hello")},
		{"CONNECT", []string{":method", "CONNECT", ":authority", "raw.test:443"}},
		{"bad content-length", reqFields("GET", "/hello", "content-length", "abc")},
		// The next ones are caught while the header block is decoded.
		{"upper-case header name", reqFields("GET", "/hello", "X-Upper", "v")},
		{"pseudo-header after a regular one", append(reqFields("GET", "/hello", "x-a", "b"), ":authority", "other")},
		{"duplicate pseudo-header", append(reqFields("GET", "/hello"), ":path", "/other")},
		{"header value with a newline", reqFields("GET", "/hello", "x-a", "b\nc")},
	} {
		c.writeHeaders(id, true, tc.fields...)
		f := c.readSkipping()
		if f.Type != http2.FrameRSTStream || f.Stream != id || f.Code != http2.ErrCodeProtocol {
			t.Fatalf("%s: got %v, want RST_STREAM PROTOCOL_ERROR on stream %d", tc.name, f, id)
		}
		id += 2
	}
	// te: trailers is allowed.
	c.get(id, "/hello", "te", "trailers")
	if r := c.readResponse(id); string(r.body) != "hello world" {
		t.Errorf("te: trailers: %q", r.body)
	}
	if n := rec.count("/hello"); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

// A stream-level error found by the framer (here a WINDOW_UPDATE of 0 on a
// stream) is answered with RST_STREAM at once, not when more input comes.
func TestZeroWindowUpdateOnStream(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.writeHeaders(1, false, reqFields("POST", "/echo")...)
	c.fr.AllowIllegalWrites = true
	c.check(c.fr.WriteWindowUpdate(1, 0))
	c.fr.AllowIllegalWrites = false
	c.expectRST(1, http2.ErrCodeProtocol)
	c.expectServes(3)
}

func TestRequestHeaderContinuation(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	long := strings.Repeat("0123456789abcdef", 2000) // 32,000 bytes: more than a frame
	block := c.encode(reqFields("POST", "/echo", "x-long", long, "content-length", "4")...)
	parts := [][]byte{block[:100], block[100 : len(block)/2], block[len(block)/2:]}
	for _, p := range parts {
		if len(p) > defaultMaxFrame {
			t.Fatalf("fragment of %d bytes", len(p))
		}
	}
	c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: parts[0]}))
	c.check(c.fr.WriteContinuation(1, false, parts[1]))
	c.check(c.fr.WriteContinuation(1, true, parts[2]))
	c.writeData(1, true, []byte("body"))
	r := c.readResponse(1)
	if r.status() != "200" || string(r.body) != "body" {
		t.Fatalf("got %s %q", r.status(), r.body)
	}
	if got := r.headers.value("x-long-len"); got != strconv.Itoa(len(long)) {
		t.Errorf("handler saw X-Long of %s bytes, want %d", got, len(long))
	}
	// END_STREAM on a HEADERS whose block ends in a CONTINUATION.
	block = c.encode(reqFields("GET", "/hello", "x-long", long)...)
	c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:10], EndStream: true}))
	for block = block[10:]; len(block) > 0; {
		n := min(len(block), 10000)
		c.check(c.fr.WriteContinuation(3, n == len(block), block[:n]))
		block = block[n:]
	}
	if r := c.readResponse(3); string(r.body) != "hello world" {
		t.Errorf("stream 3: %q", r.body)
	}
}

func TestRequestTrailers(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec))
	c := ts.dialRaw(t)
	c.writeHeaders(1, false, reqFields("POST", "/echo", "trailer", "x-checksum")...)
	c.writeData(1, false, []byte("hello "))
	c.writeData(1, false, []byte("trailers"))
	c.writeHeaders(1, true, "x-checksum", "abc")
	r := c.readResponse(1)
	if r.status() != "200" || string(r.body) != "hello trailers" {
		t.Fatalf("got %s %q", r.status(), r.body)
	}
	if got := r.headers.value("x-content-length"); got != "14" {
		t.Errorf("handler saw ContentLength %s, want 14", got)
	}

	// Trailers must not carry pseudo-header fields (RFC 9113 8.1).
	c.writeHeaders(3, false, reqFields("POST", "/echo")...)
	c.writeData(3, false, []byte("x"))
	c.writeHeaders(3, true, ":path", "/other")
	c.expectRST(3, http2.ErrCodeProtocol)
	if n := rec.count("/echo"); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
	c.expectServes(5)
}

// Frames the server has no use for are ignored, padding is not body, and
// without :authority the Host header names the host.
func TestIgnoredFramesPaddingAndHost(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	// PRIORITY on an idle stream does not open it (stream 1 below is
	// still new), and an unknown frame type is ignored.
	c.check(c.fr.WritePriority(11, http2.PriorityParam{StreamDep: 0, Weight: 10}))
	c.check(c.fr.WriteRawFrame(0xfa, 0, 0, []byte("unknown frame")))
	c.check(c.fr.WriteRawFrame(0xfa, 0, 7, nil))
	c.expectQuiet("after PRIORITY and unknown frames")

	c.writeHeaders(1, false, ":method", "POST", ":scheme", "https", ":path", "/echo", "host", "from-host-header.test")
	c.check(c.fr.WriteDataPadded(1, false, []byte("padded "), make([]byte, 100)))
	c.check(c.fr.WriteDataPadded(1, true, []byte("body"), make([]byte, 3)))
	r := c.readResponse(1)
	if string(r.body) != "padded body" || r.headers.value("x-content-length") != "11" {
		t.Errorf("body %q, handler saw ContentLength %s; want \"padded body\", 11", r.body, r.headers.value("x-content-length"))
	}
	if got := r.headers.value("x-host"); got != "from-host-header.test" {
		t.Errorf("Host = %q, want the host header", got)
	}
	c.get(3, "/echo")
	if got := c.readResponse(3).headers.value("x-host"); got != "raw.test" {
		t.Errorf("Host = %q, want the :authority raw.test", got)
	}
}

// A header list over SETTINGS_MAX_HEADER_LIST_SIZE is answered 431 without
// reaching the handler, and the connection goes on.
func TestHeaderListTooLarge(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec))
	c := ts.dialRaw(t)
	fields := reqFields("GET", "/hello")
	for i := range 18 {
		// 18 x 60,000 bytes: over the 1 MiB limit only with the last.
		fields = append(fields, fmt.Sprintf("x-h%02d", i), hex.EncodeToString(pattern(30_000)))
	}
	block := c.encode(fields...)
	c.check(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:defaultMaxFrame], EndStream: true}))
	for block = block[defaultMaxFrame:]; len(block) > 0; {
		n := min(len(block), defaultMaxFrame)
		c.check(c.fr.WriteContinuation(1, n == len(block), block[:n]))
		block = block[n:]
	}
	r := c.readResponse(1)
	if r.status() != "431" {
		t.Errorf("status %s, want 431", r.status())
	}
	if n := rec.count("/hello"); n != 0 {
		t.Errorf("handler called for an oversized header list")
	}
	c.expectServes(3)
}

// Handler headers: a Content-Length of its own is not doubled,
// connection-specific fields and invalid values are not sent.
func TestResponseHeaderSanitising(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.get(1, "/withheaders")
	r := c.readResponse(1)
	if got := r.headers.values("content-length"); !slices.Equal(got, []string{"5"}) {
		t.Errorf("content-length fields %q, want [5]", got)
	}
	for _, name := range []string{"connection", "transfer-encoding", "keep-alive", "upgrade", "x-bad-value", "injected"} {
		if r.headers.has(name) {
			t.Errorf("%s sent: %v", name, r.headers.Fields)
		}
	}
	if got := r.headers.value("x-non-canonical"); got != "kept" {
		t.Errorf("x-non-canonical %q, want kept", got)
	}
	if string(r.body) != "12345" {
		t.Errorf("body %q", r.body)
	}
	// Go's client accepts the answer.
	client, _ := ts.h2Client(t, nil)
	resp, err := client.Get(ts.url("/withheaders"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "12345" || resp.ContentLength != 5 {
		t.Errorf("Go client: %q, ContentLength %d", body, resp.ContentLength)
	}
}

// Requests arriving together in one write are all answered.
func TestPipelinedRequests(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	const n = 50
	for i := range n {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.encode(reqFields("POST", "/echo")...), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if err := fr.WriteData(id, true, []byte("req "+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.tc.Write(buf.Bytes())
	c.check(err)
	for i := range n {
		id := uint32(2*i + 1)
		if r := c.readResponse(id); string(r.body) != "req "+strconv.Itoa(i) {
			t.Fatalf("stream %d: %q", id, r.body)
		}
	}
}

// syncWriter is a concurrency-safe log destination.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestHandlerPanic(t *testing.T) {
	logs := &syncWriter{}
	log.SetOutput(logs)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })

	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.get(1, "/panic")
	c.expectRST(1, http2.ErrCodeInternal)
	c.get(3, "/abort")
	c.expectRST(3, http2.ErrCodeInternal)
	c.expectServes(5)
	out := logs.String()
	if !strings.Contains(out, "boom") {
		t.Errorf("panic not logged; log: %q", out)
	}
	if strings.Count(out, "h2server: panic") != 1 {
		t.Errorf("want exactly one panic logged (ErrAbortHandler is silent); log: %q", out)
	}
}

func TestBodilessAnswers(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	for _, tc := range []struct {
		id        uint32
		method    string
		path      string
		status    string
		clen      string // "" for none
		ctype     string
		extraName string
	}{
		{1, "HEAD", "/hello", "200", "11", "text/plain; charset=utf-8", ""},
		{3, "HEAD", "/empty", "200", "", "", ""},
		{5, "GET", "/nocontent", "204", "", "", "x-kind"},
		{7, "HEAD", "/nocontent", "204", "", "", "x-kind"},
		{9, "GET", "/notmodified", "304", "", "", ""},
		{11, "GET", "/empty", "200", "0", "", ""},
		{13, "POST", "/empty", "200", "0", "", ""},
	} {
		c.writeHeaders(tc.id, true, reqFields(tc.method, tc.path)...)
		f := c.readSkipping()
		if f.Type != http2.FrameHeaders || f.Stream != tc.id {
			t.Fatalf("%s %s: got %v, want HEADERS", tc.method, tc.path, f)
		}
		if !f.EndStream {
			t.Errorf("%s %s: HEADERS without END_STREAM: a body follows", tc.method, tc.path)
		}
		if got := f.value(":status"); got != tc.status {
			t.Errorf("%s %s: status %s, want %s", tc.method, tc.path, got, tc.status)
		}
		if got, has := f.value("content-length"), f.has("content-length"); got != tc.clen || has != (tc.clen != "") {
			t.Errorf("%s %s: content-length %q (present %v), want %q", tc.method, tc.path, got, has, tc.clen)
		}
		if got := f.value("content-type"); got != tc.ctype {
			t.Errorf("%s %s: content-type %q, want %q", tc.method, tc.path, got, tc.ctype)
		}
		if tc.extraName != "" && !f.has(tc.extraName) {
			t.Errorf("%s %s: header %s missing", tc.method, tc.path, tc.extraName)
		}
		if !f.EndStream {
			c.readResponse(tc.id)
		}
	}
	c.expectQuiet("after bodiless answers")

	// And through Go's client: HEAD reports the GET's length, no body.
	client, _ := ts.h2Client(t, nil)
	resp, err := client.Head(ts.url("/hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != 11 {
		t.Errorf("HEAD /hello: %d, %d body bytes, ContentLength %d; want 200, 0, 11", resp.StatusCode, len(body), resp.ContentLength)
	}
}

func TestFrameTooLarge(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.writeHeaders(1, false, reqFields("POST", "/echo")...)
	// Only the header of a DATA frame one byte too long: the server must
	// object to it without reading the payload (and with nothing left
	// unread, its close cannot turn into a TCP reset).
	n := defaultMaxFrame + 1
	hdr := []byte{byte(n >> 16), byte(n >> 8), byte(n), byte(http2.FrameData), 0, 0, 0, 0, 1}
	_, err := c.tc.Write(hdr)
	c.check(err)
	c.expectGoAway(http2.ErrCodeFrameSize)
}

func TestFirstFrameNotSettings(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialTLS(t, nil)
	_, err := c.tc.Write([]byte(http2.ClientPreface))
	c.check(err)
	c.check(c.fr.WritePing(false, [8]byte{}))
	if f := c.next(); f.Type != http2.FrameSettings || f.Ack {
		t.Fatalf("got %v, want the server's SETTINGS", f)
	}
	c.expectGoAway(http2.ErrCodeProtocol)
}

func TestBadPreface(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialTLS(t, nil)
	_, err := c.tc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.check(err)
	c.expectClosed()
}

// After the client's GOAWAY the server finishes open streams, refuses new
// ones, and closes the connection.
func TestClientGoAway(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t)
	c.writeHeaders(1, false, reqFields("POST", "/echo")...)
	c.check(c.fr.WriteGoAway(0, http2.ErrCodeNo, nil))
	c.writeHeaders(3, true, reqFields("GET", "/hello")...)
	c.expectRST(3, http2.ErrCodeRefusedStream)
	c.writeData(1, true, []byte("last"))
	if r := c.readResponse(1); string(r.body) != "last" {
		t.Errorf("stream 1: %q", r.body)
	}
	c.expectClosed()
}

// A client reset drops the stream; the connection keeps serving.
func TestClientReset(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	c.get(1, "/big?n=1000")
	if f := c.readSkipping(); f.Type != http2.FrameHeaders {
		t.Fatalf("got %v", f)
	}
	var body []byte
	c.readDataTo(1, &body, 10, defaultMaxFrame)
	c.check(c.fr.WriteRSTStream(1, http2.ErrCodeCancel))
	c.check(c.fr.WriteWindowUpdate(1, 1000)) // in flight: ignored
	c.expectQuiet("after the client's RST_STREAM")
	c.expectServes(3)
}

// ---------------------------------------------------------------------------
// 6. Answers given before the request ended.

func TestEarlyAnswerResetsStream(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec))
	c := ts.dialRaw(t)
	c.writeHeaders(1, false, reqFields("POST", "/echo")...)
	c.writeData(1, false, pattern(h2server.MaxRequestBody+defaultMaxFrame))

	var sawHeaders, sawEnd, sawReset bool
	for !sawReset {
		f := c.readSkipping()
		switch {
		case f.Type == http2.FrameHeaders && f.Stream == 1 && !sawHeaders:
			sawHeaders = true
			if got := f.value(":status"); got != "413" {
				t.Fatalf("status %s, want 413", got)
			}
			sawEnd = f.EndStream
		case f.Type == http2.FrameData && f.Stream == 1 && sawHeaders && !sawEnd:
			sawEnd = f.EndStream
		case f.Type == http2.FrameRSTStream && f.Stream == 1 && f.Code == http2.ErrCodeNo && sawEnd:
			sawReset = true
		default:
			t.Fatalf("unexpected %v (headers %v, end %v)", f, sawHeaders, sawEnd)
		}
	}
	// DATA the client had in flight is ignored, END_STREAM included.
	c.writeData(1, false, pattern(3*defaultMaxFrame))
	c.writeData(1, true, []byte("end"))
	c.writeHeaders(1, true, "x-trailer", "late")
	c.expectQuiet("DATA in flight on a stream reset with NO_ERROR")

	c.expectServes(3)
	if n := rec.count("/echo"); n != 0 {
		t.Errorf("handler called for a body above MaxRequestBody")
	}
}

// When the DATA frame that goes over MaxRequestBody also ends the request,
// the stream is closed once the 413 is out: no RST_STREAM may follow.
func TestTooLargeBodyEndingWithLastFrame(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec))
	c := ts.dialRaw(t)
	c.writeHeaders(1, false, reqFields("POST", "/echo")...)
	c.writeData(1, false, pattern(h2server.MaxRequestBody))
	c.writeData(1, true, []byte("!"))
	r := c.readResponse(1)
	if r.status() != "413" {
		t.Fatalf("status %s, want 413", r.status())
	}
	for _, f := range c.sync() {
		if f.Type == http2.FrameRSTStream {
			t.Errorf("RST_STREAM on a stream closed both ways: %v", f)
		}
	}
	c.expectServes(3)
	if n := rec.count("/echo"); n != 0 {
		t.Errorf("handler called for a body above MaxRequestBody")
	}
}

// An early answer that must wait for window: the stream is reset with
// NO_ERROR only once the whole answer is out.
func TestEarlyAnswerWaitingForWindow(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	c := ts.dialRaw(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 5})
	c.writeHeaders(1, false, reqFields("POST", "/echo")...)
	c.writeData(1, false, pattern(h2server.MaxRequestBody+1))
	want := http.StatusText(http.StatusRequestEntityTooLarge) + "\n"
	h := c.readSkipping()
	if h.Type != http2.FrameHeaders || h.value(":status") != "413" || h.EndStream {
		t.Fatalf("got %v, want HEADERS 413", h)
	}
	var body []byte
	c.readDataTo(1, &body, 5, defaultMaxFrame)
	c.expectQuiet("413 waiting for window")
	// More request DATA meanwhile is dropped without error.
	c.writeData(1, false, []byte("more"))
	c.expectQuiet("request DATA after an early answer")
	c.check(c.fr.WriteWindowUpdate(1, 1000))
	last := c.readDataTo(1, &body, len(want), defaultMaxFrame)
	if !last.EndStream || string(body) != want {
		t.Fatalf("body %q end %v, want %q", body, last.EndStream, want)
	}
	c.expectRST(1, http2.ErrCodeNo)
	c.writeData(1, true, []byte("x"))
	c.expectQuiet("DATA after the reset")
}

// ---------------------------------------------------------------------------
// 7. HTTP/1.1.

func TestHTTP1(t *testing.T) {
	seen := make(chan seenRequest, 10)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := recordRequest(r)
		seen <- s
		fmt.Fprintf(w, "h1:%s", s.Body)
	}))
	for _, protos := range [][]string{{"http/1.1"}, nil} {
		conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.id.RootCAs(), NextProtos: protos})
		if err != nil {
			t.Fatalf("ALPN %q: %v", protos, err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(readTimeout))
		if p := conn.ConnectionState().NegotiatedProtocol; p != strings.Join(protos, "") {
			t.Errorf("negotiated %q for client offering %q", p, protos)
		}
		fmt.Fprintf(conn, "POST /one?x=1 HTTP/1.1\r\nHost: h1.test\r\nX-Multi: a\r\nX-Multi: b\r\nContent-Length: 5\r\n\r\nhello")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("ALPN %q: %v", protos, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "h1:hello" {
			t.Errorf("ALPN %q: %d %q", protos, resp.StatusCode, body)
		}
		s := <-seen
		if s.ProtoMajor != 1 || s.Method != "POST" || s.Path != "/one" || s.RawQuery != "x=1" || s.Host != "h1.test" ||
			string(s.Body) != "hello" || s.ContentLength != 5 || !s.TLS || !slices.Equal(s.Header["X-Multi"], []string{"a", "b"}) {
			t.Errorf("ALPN %q: handler saw %+v", protos, s)
		}
		if s.RemoteAddr != conn.LocalAddr().String() {
			t.Errorf("RemoteAddr %q, want %q", s.RemoteAddr, conn.LocalAddr())
		}
	}

	// net/http's client limited to HTTP/1.
	var protos http.Protocols
	protos.SetHTTP1(true)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.id.RootCAs()}, Protocols: &protos}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(ts.url("/two"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode != 200 {
		t.Errorf("HTTP/1 client: %s %d", resp.Proto, resp.StatusCode)
	}
	if s := <-seen; s.ProtoMajor != 1 || s.Path != "/two" {
		t.Errorf("HTTP/1 client: handler saw %+v", s)
	}
}

func TestNoHTTP1(t *testing.T) {
	rec := &calls{}
	ts := startServer(t, testHandler(rec), func(s *h2server.Server) { s.NoHTTP1 = true })
	for _, protos := range [][]string{{"http/1.1"}, nil} {
		conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.id.RootCAs(), NextProtos: protos})
		if err != nil {
			continue // refused in the handshake
		}
		_ = conn.SetDeadline(time.Now().Add(readTimeout))
		fmt.Fprintf(conn, "GET /hello HTTP/1.1\r\nHost: h1.test\r\n\r\n")
		_, err = http.ReadResponse(bufio.NewReader(conn), nil)
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("ALPN %q: got a response or a hung connection (%v), want the connection closed", protos, err)
		}
		conn.Close()
	}
	if n := rec.count("/hello"); n != 0 {
		t.Errorf("handler called %d times for HTTP/1 clients with NoHTTP1", n)
	}
	// HTTP/2 still works.
	client, _ := ts.h2Client(t, nil)
	resp, err := client.Get(ts.url("/hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("got %s", resp.Proto)
	}
}

// ---------------------------------------------------------------------------
// 8. OnConn and Close.

func TestOnConn(t *testing.T) {
	conns := make(chan struct{}, 100)
	ts := startServer(t, testHandler(&calls{}), func(s *h2server.Server) {
		s.OnConn = func() { conns <- struct{}{} }
	})
	expect := func(n int, what string) {
		t.Helper()
		for i := range n {
			select {
			case <-conns:
			case <-time.After(readTimeout):
				t.Fatalf("%s: OnConn called %d times, want %d", what, i, n)
			}
		}
		// Every call for connections made so far happened before the
		// handshakes completed; any extra would be waiting.
		select {
		case <-conns:
			t.Fatalf("%s: OnConn called more than %d times", what, n)
		default:
		}
	}

	client, _ := ts.h2Client(t, nil)
	for range 5 {
		resp, err := client.Get(ts.url("/hello"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	expect(1, "5 requests on one HTTP/2 connection")

	ts.dialRaw(t)
	ts.dialRaw(t)
	expect(2, "two raw HTTP/2 connections")

	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.id.RootCAs(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	expect(1, "an HTTP/1 connection")

	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	expect(1, "a TCP connection without a handshake")
}

// TestConnContext: the context ConnContext returns for a connection is
// the one every request on it carries, over HTTP/2 and HTTP/1 alike, and
// another connection gets its own.
func TestConnContext(t *testing.T) {
	type connKey struct{}
	var n atomic.Int32
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := r.Context().Value(connKey{}).(int32)
		fmt.Fprint(w, id)
	}), func(s *h2server.Server) {
		s.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, n.Add(1))
		}
	})
	get := func(c *http.Client) string {
		t.Helper()
		resp, err := c.Get(ts.url("/"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	h1tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.id.RootCAs()}, Protocols: &protos}
	defer h1tr.CloseIdleConnections()
	h1 := &http.Client{Transport: h1tr, Timeout: 10 * time.Second}
	a, _ := ts.h2Client(t, nil)
	b, _ := ts.h2Client(t, nil)
	got := []string{get(a), get(a), get(b), get(b), get(h1), get(h1)}
	if got[0] != got[1] || got[2] != got[3] || got[4] != got[5] || got[0] == got[2] || got[0] == got[4] || got[2] == got[4] || got[0] == "0" {
		t.Errorf("connection values seen by two requests on each of three connections: %v; want a value of its own for each connection", got)
	}
}

func TestClose(t *testing.T) {
	ts := startServer(t, testHandler(&calls{}))
	client, _ := ts.h2Client(t, nil)
	get := func() error {
		resp, err := client.Get(ts.url("/hello"))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	raw := ts.dialRaw(t)

	h1, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.id.RootCAs(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	_ = h1.SetDeadline(time.Now().Add(readTimeout))
	h1r := bufio.NewReader(h1)
	fmt.Fprintf(h1, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(h1r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// A connection still in its TLS handshake: Close must not wait for the
	// handshake timeout.
	half, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()

	closed := make(chan error, 1)
	go func() { closed <- ts.srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(readTimeout):
		t.Fatal("Close did not return")
	}
	if err := ts.serveResult(); !errors.Is(err, h2server.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}

	raw.expectClosed()
	if err := get(); err == nil {
		t.Error("HTTP/2 request after Close succeeded")
	}
	fmt.Fprintf(h1, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(h1r, nil); err == nil {
		t.Error("HTTP/1 request after Close succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("HTTP/1 connection still open after Close")
	}
	_ = half.SetReadDeadline(time.Now().Add(readTimeout))
	if _, err := half.Read(make([]byte, 1)); err == nil {
		t.Error("read on a handshaking connection after Close succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("handshaking connection still open after Close")
	}
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		c.Close()
		t.Error("listener still accepting after Close")
	}
	// A second Close is harmless (the cleanup makes a third).
	if err := ts.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseBeforeServe(t *testing.T) {
	id := serverIdentity(t)
	s := &h2server.Server{Handler: testHandler(&calls{}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{id.Certificate}}}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	select {
	case err := <-served:
		if !errors.Is(err, h2server.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(readTimeout):
		t.Fatal("Serve did not return after an earlier Close")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("listener left open")
	}
}

func TestServeWithoutTLSConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &h2server.Server{Handler: testHandler(&calls{})}
	if err := s.Serve(ln); err == nil || errors.Is(err, h2server.ErrServerClosed) {
		t.Errorf("Serve without TLSConfig returned %v, want an error", err)
	}
}

// ---------------------------------------------------------------------------
// 9. Client certificates.

func TestClientCertificate(t *testing.T) {
	seen := make(chan seenRequest, 10)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- recordRequest(r)
	}), func(s *h2server.Server) { s.TLSConfig.ClientAuth = tls.RequestClientCert })

	withCert, _ := ts.h2Client(t, &tls.Config{Certificates: []tls.Certificate{clientIdentity(t).Certificate}})
	resp, err := withCert.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-seen; s.PeerCerts == 0 || s.PeerCN != "h2server-test-client" {
		t.Errorf("with a client certificate: %d peer certificates, CN %q", s.PeerCerts, s.PeerCN)
	}

	without, _ := ts.h2Client(t, nil)
	resp, err = without.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-seen; s.PeerCerts != 0 || !s.TLS {
		t.Errorf("without a client certificate: %d peer certificates, TLS %v", s.PeerCerts, s.TLS)
	}
}

// Close racing with connections being accepted. Close must wait for every
// connection's goroutine: under -race this fails if a goroutine is counted
// (WaitGroup.Add) after Close started waiting.
func TestCloseWhileAccepting(t *testing.T) {
	id := serverIdentity(t)
	iterations := 400
	if testing.Short() {
		iterations = 50
	}
	for i := range iterations {
		s := &h2server.Server{
			Handler:   testHandler(&calls{}),
			NoHTTP1:   i%2 == 0, // no HTTP/1 goroutine keeping the count above zero
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{id.Certificate}},
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.Dial("tcp", ln.Addr().String())
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		// Let some connections in first, a varying while.
		time.Sleep(time.Duration(i%7) * 50 * time.Microsecond)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		close(stop)
		wg.Wait()
		select {
		case err := <-served:
			if !errors.Is(err, h2server.ErrServerClosed) {
				t.Fatalf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(readTimeout):
			t.Fatal("Serve did not return after Close")
		}
	}
}
