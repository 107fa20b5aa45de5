// Package fcmtest provides a protocol-faithful emulator of the Firebase Cloud
// Messaging HTTP v1 API, in the spirit of net/http/httptest: a test starts a
// real HTTPS server (HTTP/2 and HTTP/1.1) in one line and points the real
// firebase.google.com/go/v4/messaging client at it.
//
// The emulator serves the Google OAuth2 token endpoint for service-account
// JWT-bearer grants, the messages:send method with FCM's validation rules and
// google.rpc.Status error bodies, and a JSON control API under /_emulator/.
package fcmtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushsync/pushsync/internal/emutls"
	"github.com/pushsync/pushsync/internal/h2server"
)

// Option configures a Server created by NewServer.
type Option func(*options)

type options struct {
	hosts                []string
	identity             *emutls.Identity
	addr                 string
	onPush               func(Push)
	record               bool
	tokenLifetime        time.Duration
	maxConcurrentStreams int
	anyToken             bool
}

// WithHosts adds host names or IP addresses to the server certificate, in
// addition to localhost, 127.0.0.1 and ::1.
func WithHosts(hosts ...string) Option {
	return func(o *options) { o.hosts = append(o.hosts, hosts...) }
}

// WithIdentity makes the server present id's certificate, from id's
// authority, instead of one from a fresh authority; WithHosts is then
// ignored, the certificate naming its hosts. A program that keeps an
// identity between runs (see internal/emutls) passes it here so that its
// clients keep trusting the emulator.
func WithIdentity(id *emutls.Identity) Option {
	return func(o *options) { o.identity = id }
}

// WithAddr makes the server listen on addr instead of 127.0.0.1:0.
func WithAddr(addr string) Option {
	return func(o *options) { o.addr = addr }
}

// WithOnPush registers fn to be called synchronously, on the request's
// goroutine, for every accepted (delivered, not validate-only) message; fn
// must be cheap, safe for concurrent use, and must not modify the Push (its
// Data map is shared with the recorded copy).
func WithOnPush(fn func(Push)) Option {
	return func(o *options) { o.onPush = fn }
}

// WithRecord controls whether accepted messages are kept in memory for
// Pushes and WaitForPushes; the default is true. Turn it off in benchmarks.
func WithRecord(record bool) Option {
	return func(o *options) { o.record = record }
}

// WithTokenLifetime sets how long issued access tokens stay valid; the
// default is one hour, as Google issues them.
func WithTokenLifetime(d time.Duration) Option {
	return func(o *options) { o.tokenLifetime = d }
}

// WithMaxConcurrentStreams sets the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS the
// server advertises; zero keeps the net/http default.
func WithMaxConcurrentStreams(n int) Option {
	return func(o *options) { o.maxConcurrentStreams = n }
}

// WithTokenCheck controls whether a message's registration token must look
// like one FCM issues (MinTokenLength or more of A-Z, a-z, 0-9, '-', '_'
// and ':'), as FCM checks it, answering any other 400 INVALID_ARGUMENT "The
// registration token is not a valid FCM registration token"; the default
// is true. A failure set for the token (FailToken, FailAll) is answered
// before the check. Turn it off for tests that send to tokens such as "t".
func WithTokenCheck(check bool) Option {
	return func(o *options) { o.anyToken = !check }
}

// Server is a running FCM HTTP v1 emulator.
type Server struct {
	// URL is the base URL of the server, of the form https://127.0.0.1:PORT.
	URL string

	opts     options
	identity *emutls.Identity
	listener net.Listener
	srv      *h2server.Server
	served   chan struct{}
	closed   atomic.Bool

	// Service accounts and access tokens.
	authMu   sync.RWMutex
	accounts map[string]*serviceAccount // by client_email
	tokens   map[string]accessToken     // by access token

	// Configured failures.
	failMu    sync.Mutex
	failCount atomic.Int32 // len(failTok) + (failAll != nil), for a lock-free fast path
	failTok   map[string]*failureState
	failAll   *failureState
	failOAuth *tokenFailureState // token requests; under failMu

	// Recorded pushes.
	pushMu  sync.Mutex
	pushes  []Push
	dryRuns []Push
	waiters []waiter

	msgSeq  atomic.Uint64
	bufPool sync.Pool // *bytes.Buffer for request bodies
	stats   counters
}

// NewServer starts an emulator on 127.0.0.1:0 (or the WithAddr address) and
// returns it; it panics if the server cannot be started, as
// httptest.NewServer does. Call Close when done.
func NewServer(opts ...Option) *Server {
	s, err := Start(opts...)
	if err != nil {
		panic("fcmtest: " + err.Error())
	}
	return s
}

// Start is NewServer that reports failures as an error instead of panicking.
func Start(opts ...Option) (*Server, error) {
	o := options{addr: "127.0.0.1:0", record: true, tokenLifetime: time.Hour}
	for _, opt := range opts {
		opt(&o)
	}
	id := o.identity
	if id == nil {
		var err error
		if id, err = emutls.New("fcm.googleapis.com", o.hosts...); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	s := &Server{
		opts:     o,
		identity: id,
		listener: ln,
		served:   make(chan struct{}),
		accounts: make(map[string]*serviceAccount),
		tokens:   make(map[string]accessToken),
		failTok:  make(map[string]*failureState),
	}
	s.stats.byStatus = make(map[string]int64)
	s.URL = "https://" + emutls.URLHost(ln.Addr())

	// One goroutine per connection answers its streams and writes the
	// answers of a burst in one system call, as a busy front end's would;
	// the emulator then takes less of the machine it shares.
	s.srv = &h2server.Server{
		Handler: s,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{id.Certificate},
			MinVersion:   tls.VersionTLS12,
		},
		MaxConcurrentStreams: uint32(o.maxConcurrentStreams),
		OnConn:               func() { s.stats.connections.Add(1) },
	}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Close shuts the server down, closing the listener and all connections, and
// waits for it to stop. It is safe to call more than once.
func (s *Server) Close() {
	if s.closed.Swap(true) {
		return
	}
	_ = s.srv.Close()
	<-s.served
}

// Endpoint returns the messaging endpoint, URL + "/v1", which is what
// option.WithEndpoint takes.
func (s *Server) Endpoint() string { return s.URL + "/v1" }

// TokenURL returns the OAuth2 token endpoint, URL + "/token"; it is the
// token_uri of the service-account key files AddServiceAccount issues.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// RootCAs returns a certificate pool that trusts only the server's
// certificate authority.
func (s *Server) RootCAs() *x509.CertPool { return s.identity.RootCAs() }

// CACertPEM returns the server's certificate authority in PEM form, for
// clients configured through a CA file such as SSL_CERT_FILE.
func (s *Server) CACertPEM() []byte {
	return append([]byte(nil), s.identity.CAPEM...)
}

// Client returns an HTTP client without authentication that trusts the
// server and negotiates HTTP/2; it is meant for raw requests in tests.
func (s *Server) Client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: s.RootCAs()},
		ForceAttemptHTTP2: true,
	}}
}

// ServeHTTP routes a request to the token endpoint, the messaging API or the
// control API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/"):
		s.serveSend(w, r)
	case p == "/token":
		s.serveToken(w, r)
	case strings.HasPrefix(p, controlPrefix):
		s.serveControl(w, r)
	default:
		writeStatus(w, http.StatusNotFound, "NOT_FOUND",
			"The requested URL "+p+" was not found on this server.", nil, 0)
	}
}

// Push is one message the emulator accepted.
type Push struct {
	// ProjectID is the project named in the request path.
	ProjectID string `json:"projectId"`
	// Token is the message's registration token; it is empty for topic and
	// condition messages.
	Token string `json:"token,omitempty"`
	// Topic is the message's topic, if any.
	Topic string `json:"topic,omitempty"`
	// Condition is the message's condition, if any.
	Condition string `json:"condition,omitempty"`
	// Data is the message's top-level data map.
	Data map[string]string `json:"data,omitempty"`
	// Android is the android block as sent, or nil.
	Android json.RawMessage `json:"android,omitempty"`
	// Message is the whole message object as sent.
	Message json.RawMessage `json:"message"`
	// Name is the message name returned to the client,
	// projects/{project}/messages/{id}.
	Name string `json:"name"`
	// ValidateOnly reports whether the request was a dry run.
	ValidateOnly bool `json:"validateOnly,omitempty"`
	// Header holds the request headers, including Authorization.
	Header http.Header `json:"header"`
	// Proto is the request protocol, such as "HTTP/2.0".
	Proto string `json:"proto"`
	// ProtoMajor is the major protocol version, 2 for HTTP/2.
	ProtoMajor int `json:"protoMajor"`
	// ReceivedAt is when the emulator received the request.
	ReceivedAt time.Time `json:"receivedAt"`
}

type waiter struct {
	n  int
	ch chan struct{}
}

// record stores an accepted push and wakes waiters that it satisfies.
func (s *Server) record(p Push) {
	s.pushMu.Lock()
	if p.ValidateOnly {
		s.dryRuns = append(s.dryRuns, p)
		s.pushMu.Unlock()
		return
	}
	s.pushes = append(s.pushes, p)
	if len(s.waiters) > 0 {
		kept := s.waiters[:0]
		for _, wt := range s.waiters {
			if len(s.pushes) >= wt.n {
				close(wt.ch)
			} else {
				kept = append(kept, wt)
			}
		}
		s.waiters = kept
	}
	s.pushMu.Unlock()
}

// Pushes returns a copy of the messages accepted for delivery so far, in
// arrival order; validate-only requests are not included (see DryRuns).
func (s *Server) Pushes() []Push {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// DryRuns returns a copy of the validate_only requests that passed
// validation; they were answered as successes but not delivered.
func (s *Server) DryRuns() []Push {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	return append([]Push(nil), s.dryRuns...)
}

// Reset forgets all recorded pushes and dry runs; statistics, service
// accounts, tokens and failures are kept.
func (s *Server) Reset() {
	s.pushMu.Lock()
	s.pushes = nil
	s.dryRuns = nil
	s.pushMu.Unlock()
}

// WaitForPushes blocks until at least n pushes have been recorded and then
// returns a copy of all of them, or returns the ctx error together with the
// pushes recorded so far.
func (s *Server) WaitForPushes(ctx context.Context, n int) ([]Push, error) {
	s.pushMu.Lock()
	if len(s.pushes) >= n {
		out := append([]Push(nil), s.pushes...)
		s.pushMu.Unlock()
		return out, nil
	}
	if !s.opts.record {
		s.pushMu.Unlock()
		return nil, errors.New("fcmtest: recording is disabled (WithRecord(false))")
	}
	ch := make(chan struct{})
	s.waiters = append(s.waiters, waiter{n: n, ch: ch})
	s.pushMu.Unlock()

	select {
	case <-ch:
		return s.Pushes(), nil
	case <-ctx.Done():
		s.pushMu.Lock()
		for i, wt := range s.waiters {
			if wt.ch == ch {
				s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
				break
			}
		}
		out := append([]Push(nil), s.pushes...)
		s.pushMu.Unlock()
		return out, fmt.Errorf("fcmtest: waiting for %d pushes, got %d: %w", n, len(out), ctx.Err())
	}
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Requests counts messages:send requests.
	Requests int64 `json:"requests"`
	// Accepted counts messages:send requests answered 200, dry runs included.
	Accepted int64 `json:"accepted"`
	// Rejected counts messages:send requests answered with an error.
	Rejected int64 `json:"rejected"`
	// DryRuns counts accepted validate_only requests.
	DryRuns int64 `json:"dryRuns"`
	// HTTP2Requests counts messages:send requests that arrived over HTTP/2.
	HTTP2Requests int64 `json:"http2Requests"`
	// TokenRequests counts requests to the token endpoint.
	TokenRequests int64 `json:"tokenRequests"`
	// TokensIssued counts access tokens issued.
	TokensIssued int64 `json:"tokensIssued"`
	// Connections counts accepted TCP connections.
	Connections int64 `json:"connections"`
	// ByStatus counts messages:send responses by google.rpc status, with
	// "OK" for successes.
	ByStatus map[string]int64 `json:"byStatus"`
}

type counters struct {
	requests, accepted, rejected, dryRuns, http2 atomic.Int64
	tokenRequests, tokensIssued, connections     atomic.Int64
	ok                                           atomic.Int64
	mu                                           sync.Mutex
	byStatus                                     map[string]int64 // error statuses
}

func (c *counters) countError(status string) {
	c.rejected.Add(1)
	c.mu.Lock()
	c.byStatus[status]++
	c.mu.Unlock()
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		Requests:      c.requests.Load(),
		Accepted:      c.accepted.Load(),
		Rejected:      c.rejected.Load(),
		DryRuns:       c.dryRuns.Load(),
		HTTP2Requests: c.http2.Load(),
		TokenRequests: c.tokenRequests.Load(),
		TokensIssued:  c.tokensIssued.Load(),
		Connections:   c.connections.Load(),
		ByStatus:      make(map[string]int64),
	}
	if n := c.ok.Load(); n > 0 {
		st.ByStatus["OK"] = n
	}
	c.mu.Lock()
	for k, v := range c.byStatus {
		st.ByStatus[k] = v
	}
	c.mu.Unlock()
	return st
}
