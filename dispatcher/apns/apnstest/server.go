// Package apnstest provides an Apple Push Notification service (APNs)
// emulator for tests, in the spirit of net/http/httptest: NewServer starts a
// real HTTP/2-over-TLS server on a loopback port that validates requests the
// way APNs documents it, answers with APNs' statuses, reasons and headers,
// and records every accepted push for inspection.
//
// The server's certificate is issued by a fresh authority (see
// internal/emutls), or is one a program kept (WithIdentity); clients trust
// it through RootCAs, exactly as they trust the real APNs hosts through the
// system roots. Both provider authentication schemes are emulated: token
// (ES256 JWT) authentication with keys registered through AddTokenKey, and
// certificate authentication with client certificates registered through
// AddCertificate (an expired one fails the TLS handshake, as with APNs).
//
// A small JSON control API under /_emulator/ on the same listener lets
// another process inspect and steer the emulator; see Handler.
package apnstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
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

// Environment names accepted by WithEnvironment and recorded on each Push.
const (
	// EnvironmentProduction emulates api.push.apple.com.
	EnvironmentProduction = "production"
	// EnvironmentDevelopment emulates api.sandbox.push.apple.com, whose
	// responses carry an apns-unique-id header.
	EnvironmentDevelopment = "development"
)

// Authentication schemes recorded in Push.Auth.
const (
	// AuthToken marks a push authenticated with a provider token (JWT).
	AuthToken = "token"
	// AuthCertificate marks a push authenticated with a TLS client certificate.
	AuthCertificate = "certificate"
)

// Limits that APNs documents and the emulator enforces.
const (
	// MaxPayloadSize is the largest payload, in bytes, APNs accepts for every
	// push type except voip.
	MaxPayloadSize = 4096
	// MaxVoIPPayloadSize is the largest payload, in bytes, APNs accepts for
	// the voip push type.
	MaxVoIPPayloadSize = 5120
	// MaxCollapseIDSize is the largest apns-collapse-id, in bytes.
	MaxCollapseIDSize = 64
	// ProviderTokenLifetime is how long after its iat claim a provider token
	// is accepted; older tokens are answered with 403 ExpiredProviderToken.
	ProviderTokenLifetime = time.Hour
	// DefaultMaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS the
	// server advertises unless WithMaxConcurrentStreams says otherwise.
	DefaultMaxConcurrentStreams = 1000
	// DefaultDeviceTokenLength is the number of hexadecimal characters a
	// device token must have unless WithDeviceTokenLength says otherwise.
	DefaultDeviceTokenLength = 64
	// DefaultProviderTokenUpdateInterval is how often, unless
	// WithProviderTokenUpdateInterval says otherwise, a team's provider
	// token may give way to a new one on a connection: Apple asks for a
	// refresh no more than once every 20 minutes.
	DefaultProviderTokenUpdateInterval = 20 * time.Minute
	// DefaultStreamsBeforeToken is the SETTINGS_MAX_CONCURRENT_STREAMS a
	// connection without a client certificate starts with unless
	// WithStreamsBeforeToken says otherwise: APNs allows one stream until
	// a request posts a valid provider token.
	DefaultStreamsBeforeToken = 1
)

// Emulator-specific reasons. Apple documents no reason for these cases, so
// the emulator uses names that are not in Apple's list; a client should
// treat them like any other unrecognised 4xx/5xx reason.
const (
	// ReasonBadRequest answers (with status 400) a payload that is not a JSON
	// object with an "aps" object. Apple does not document the answer real
	// APNs gives for such a payload.
	ReasonBadRequest = "BadRequest"
	// ReasonHTTP2Required answers (with status 505) a push sent over HTTP/1.x.
	// Real APNs speaks only HTTP/2 and would not get this far; the emulator
	// also speaks HTTP/1.1 so that ordinary clients can use the control API.
	ReasonHTTP2Required = "HTTP2Required"
)

// Option configures a Server created by NewServer.
type Option func(*options)

type options struct {
	env        string
	maxStreams uint32
	hosts      []string
	identity   *emutls.Identity
	addr       string
	onPush     func(Push)
	record     bool
	tokenLen   int
	tokenEvery time.Duration
	preStreams uint32
}

// WithEnvironment selects the emulated environment: EnvironmentProduction
// (the default) or EnvironmentDevelopment. Development responses carry an
// apns-unique-id header, as Apple's sandbox does. NewServer panics on any
// other value.
func WithEnvironment(env string) Option {
	return func(o *options) { o.env = env }
}

// WithMaxConcurrentStreams sets the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
// the server advertises on every connection. Zero keeps the default,
// DefaultMaxConcurrentStreams.
func WithMaxConcurrentStreams(n uint32) Option {
	return func(o *options) { o.maxStreams = n }
}

// WithStreamsBeforeToken sets the SETTINGS_MAX_CONCURRENT_STREAMS a
// connection without a client certificate starts with (default
// DefaultStreamsBeforeToken): as APNs does, the connection is lifted to
// the WithMaxConcurrentStreams value, by a SETTINGS frame sent before the
// answer, once a request on it carries a valid provider token. A client
// that opens more streams meanwhile has them refused (RST_STREAM
// REFUSED_STREAM). Zero starts every connection at the full value.
func WithStreamsBeforeToken(n uint32) Option {
	return func(o *options) { o.preStreams = n }
}

// WithHosts adds host names or IP addresses to the server certificate, on
// top of localhost, 127.0.0.1 and ::1, for use from containers.
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

// WithAddr sets the listen address; the default is 127.0.0.1:0, an
// ephemeral loopback port.
func WithAddr(addr string) Option {
	return func(o *options) { o.addr = addr }
}

// WithOnPush registers fn to be called synchronously for each accepted push,
// before the response is written, for example to measure latency. It is
// called from many goroutines at once and must be cheap.
func WithOnPush(fn func(Push)) Option {
	return func(o *options) { o.onPush = fn }
}

// WithRecord says whether accepted pushes are kept in memory for Pushes and
// WaitForPushes (the default is true). Pass false for long benchmarks; the
// counters reported by Stats are kept either way.
func WithRecord(record bool) Option {
	return func(o *options) { o.record = record }
}

// WithDeviceTokenLength sets how many hexadecimal characters a device token
// must have (default DefaultDeviceTokenLength). Zero accepts any non-empty
// hexadecimal token, as Apple warns that token lengths may change.
func WithDeviceTokenLength(n int) Option {
	return func(o *options) { o.tokenLen = n }
}

// WithProviderTokenUpdateInterval sets how often a team's provider token
// may give way to a new one (another kid or iat) on one connection
// (default DefaultProviderTokenUpdateInterval). A new token sooner is
// answered 429 TooManyProviderTokenUpdates; the tokens the connection
// took already still serve, and another connection takes a token of its
// own, as the pushes of another process do. Zero turns the check off.
// Whatever the interval, a connection serves one team, that of the first
// provider token it took, as APNs does: another team's token on it is
// answered 403 InvalidProviderToken. Both checks need the emulator's own
// listener: served through Handler elsewhere, every request is taken for
// a connection of its own.
func WithProviderTokenUpdateInterval(d time.Duration) Option {
	return func(o *options) { o.tokenEvery = d }
}

// Push is one push notification the emulator accepted.
type Push struct {
	// ApnsID is the request's apns-id, or the one the emulator generated.
	ApnsID string `json:"apnsId"`
	// DeviceToken is the token from the request path, as sent.
	DeviceToken string `json:"deviceToken"`
	// Topic is the apns-topic header, or the certificate's topic it
	// defaulted to.
	Topic string `json:"topic"`
	// PushType is the apns-push-type header.
	PushType string `json:"pushType"`
	// CollapseID is the apns-collapse-id header, empty if absent.
	CollapseID string `json:"collapseId,omitempty"`
	// Priority is the apns-priority header, 0 if absent (APNs then
	// assumes 10).
	Priority int `json:"priority"`
	// Expiration is the apns-expiration header in Unix seconds, 0 if absent.
	Expiration int64 `json:"expiration"`
	// Payload is the exact request body.
	Payload []byte `json:"payload"`
	// Header holds all request headers as received.
	Header http.Header `json:"header"`
	// Environment is the emulated environment that accepted the push.
	Environment string `json:"environment"`
	// Auth is AuthToken or AuthCertificate.
	Auth string `json:"auth"`
	// TeamID is the provider token's iss claim, for token authentication.
	TeamID string `json:"teamId,omitempty"`
	// KeyID is the provider token's kid header, for token authentication.
	KeyID string `json:"keyId,omitempty"`
	// ReceivedAt is when the emulator accepted the push.
	ReceivedAt time.Time `json:"receivedAt"`
}

// Stats holds the emulator's counters since it started or was last Reset.
type Stats struct {
	// Requests counts every request to the APNs API (not the control API).
	Requests int64 `json:"requests"`
	// Accepted counts requests answered with 200.
	Accepted int64 `json:"accepted"`
	// Rejected counts requests answered with an error status, including
	// configured failures.
	Rejected int64 `json:"rejected"`
	// ByReason counts rejections by their reason.
	ByReason map[string]int64 `json:"byReason"`
	// Connections counts accepted TCP connections, control API ones included.
	Connections int64 `json:"connections"`
}

// Server is a running APNs emulator.
type Server struct {
	// URL is the base URL of the emulator, https://127.0.0.1:PORT, to use as
	// the apns2 Client's Host.
	URL string

	id         *emutls.Identity
	env        string
	tokenLen   int
	tokenEvery time.Duration
	onPush     func(Push)
	record     bool
	srv        *h2server.Server
	handler    http.Handler
	control    *http.ServeMux
	served     chan struct{}
	closed     chan struct{}
	closeOne   sync.Once

	requests    atomic.Int64
	accepted    atomic.Int64
	rejected    atomic.Int64
	connections atomic.Int64

	mu       sync.Mutex // guards pushes, waiters and byReason
	pushes   []Push
	waiters  []*waiter
	nwaiters atomic.Int32
	byReason map[string]int64

	authMu   sync.RWMutex // guards tokenKeys and certs
	tokenKey map[string]*tokenKey
	certs    map[string]*certEntry
	keyGen   atomic.Uint64
	jwtCache sync.Map // bearer JWT string -> *verifiedToken
	jwtCount atomic.Int64

	failMu     sync.Mutex // guards failures and failAll
	failures   map[string]*Failure
	failAll    *Failure
	anyFailure atomic.Bool
}

type waiter struct {
	n  int
	ch chan struct{}
}

// NewServer starts an emulator listening on 127.0.0.1:0 (or the WithAddr
// address) that speaks HTTP/2 over TLS with a certificate from a fresh
// authority (or WithIdentity's). It panics if it cannot start, as httptest.NewServer does. Stop
// it with Close.
func NewServer(opts ...Option) *Server {
	s, err := Start(opts...)
	if err != nil {
		panic(err.Error())
	}
	return s
}

// Start is NewServer returning an error instead of panicking, for
// programs (such as cmd/pushemu) whose listen address may be taken.
func Start(opts ...Option) (*Server, error) {
	o := options{
		env:        EnvironmentProduction,
		maxStreams: DefaultMaxConcurrentStreams,
		addr:       "127.0.0.1:0",
		record:     true,
		tokenLen:   DefaultDeviceTokenLength,
		tokenEvery: DefaultProviderTokenUpdateInterval,
		preStreams: DefaultStreamsBeforeToken,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.env != EnvironmentProduction && o.env != EnvironmentDevelopment {
		return nil, fmt.Errorf("apnstest: unknown environment %q", o.env)
	}
	if o.maxStreams == 0 {
		o.maxStreams = DefaultMaxConcurrentStreams
	}
	id := o.identity
	if id == nil {
		var err error
		if id, err = emutls.New("apns-emulator", o.hosts...); err != nil {
			return nil, fmt.Errorf("apnstest: %v", err)
		}
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("apnstest: listen on %s: %v", o.addr, err)
	}
	s := &Server{
		id:         id,
		env:        o.env,
		tokenLen:   o.tokenLen,
		tokenEvery: max(o.tokenEvery, 0),
		onPush:     o.onPush,
		record:     o.record,
		served:     make(chan struct{}),
		closed:     make(chan struct{}),
		byReason:   make(map[string]int64),
		tokenKey:   make(map[string]*tokenKey),
		certs:      make(map[string]*certEntry),
		failures:   make(map[string]*Failure),
	}
	s.URL = "https://" + emutls.URLHost(ln.Addr())
	s.control = s.newControlMux()
	s.handler = http.HandlerFunc(s.serveHTTP)

	// One goroutine per connection answers its streams and writes the
	// answers of a burst in one system call, as a busy front end's would;
	// the emulator then takes less of the machine it shares.
	s.srv = &h2server.Server{
		Handler: s.handler,
		TLSConfig: &tls.Config{
			Certificates:     []tls.Certificate{id.Certificate},
			ClientAuth:       tls.RequestClientCert,
			MinVersion:       tls.VersionTLS12,
			VerifyConnection: refuseOutdatedClientCertificate,
		},
		MaxConcurrentStreams: o.maxStreams,
		StartStreams: func(cs tls.ConnectionState) uint32 {
			if len(cs.PeerCertificates) > 0 {
				return 0 // certificate authentication: no wait for a token
			}
			return o.preStreams
		},
		OnConn:      func() { s.connections.Add(1) },
		ConnContext: withConnTokens,
	}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// refuseOutdatedClientCertificate fails the handshake of a connection
// whose client certificate has expired or is not valid yet, as APNs
// refuses such a certificate before any request: the client reads a TLS
// alert (bad_certificate here; APNs sends certificate_expired), not an
// HTTP answer.
func refuseOutdatedClientCertificate(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return fmt.Errorf("apnstest: client certificate %s is valid from %s to %s only",
			leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// Close stops the server, closing its listener and every connection, and
// makes pending WaitForPushes calls return. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		close(s.closed)
		_ = s.srv.Close()
		<-s.served
	})
}

// Handler returns the emulator's HTTP handler: the APNs API under
// /3/device/ and the JSON control API under /_emulator/:
//
//	GET    /_emulator/pushes            JSON array of Push (payload as raw JSON when valid)
//	DELETE /_emulator/pushes            Reset
//	GET    /_emulator/stats             Stats
//	PUT    /_emulator/failures/{token}  FailToken with a Failure JSON body
//	DELETE /_emulator/failures/{token}  forget the failure for one token
//	PUT    /_emulator/failures          FailAll with a Failure JSON body; null clears
//	DELETE /_emulator/failures          ClearFailures
//
// Served outside NewServer's listener, certificate authentication is only
// possible if the request carries TLS state.
func (s *Server) Handler() http.Handler {
	return s.handler
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		s.control.ServeHTTP(w, r)
		return
	}
	s.serveAPNs(w, r)
}

// RootCAs returns a pool trusting the server's certificate authority, for a
// client's tls.Config.
func (s *Server) RootCAs() *x509.CertPool {
	return s.id.RootCAs()
}

// CACertPEM returns the server's certificate authority in PEM form, for
// writing to a root CA file.
func (s *Server) CACertPEM() []byte {
	return append([]byte(nil), s.id.CAPEM...)
}

// AddTokenKey registers the public half of a provider token signing key
// (.p8, P-256) under its team and key ids and the topics (bundle ids) it may
// push to. With no topics the key may push to any topic. Registering the same
// team and key id again replaces the key. It panics if pub is not a P-256 key.
func (s *Server) AddTokenKey(teamID, keyID string, pub *ecdsa.PublicKey, topics ...string) {
	if pub == nil || pub.Curve != elliptic.P256() {
		panic("apnstest: AddTokenKey needs a P-256 public key")
	}
	k := &tokenKey{teamID: teamID, keyID: keyID, pub: pub, topics: newTopicSet(topics)}
	s.authMu.Lock()
	s.tokenKey[teamID+"\x00"+keyID] = k
	s.authMu.Unlock()
	s.forgetVerifiedTokens()
}

// AddCertificate accepts cert as a TLS client certificate (the server
// requests one but does not require it) for the given topics. With no topics
// the certificate may push to any topic. A request without apns-topic
// defaults to the certificate's topic when it has exactly one, as APNs does
// with a single-topic certificate; otherwise it is answered MissingTopic.
// A certificate outside its validity period, registered or not, fails the
// TLS handshake.
func (s *Server) AddCertificate(cert *x509.Certificate, topics ...string) {
	if cert == nil {
		panic("apnstest: AddCertificate needs a certificate")
	}
	e := &certEntry{topics: newTopicSet(topics)}
	if len(topics) == 1 {
		e.defaultTopic = topics[0]
	}
	s.authMu.Lock()
	s.certs[string(cert.Raw)] = e
	s.authMu.Unlock()
}

// Pushes returns a copy of the accepted pushes in arrival order.
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// Reset forgets the recorded pushes and zeroes every counter, Connections
// included. Configured keys, certificates and failures are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushes = nil
	s.byReason = make(map[string]int64)
	s.requests.Store(0)
	s.accepted.Store(0)
	s.rejected.Store(0)
	s.connections.Store(0)
}

// ErrClosed is returned by WaitForPushes when the server is closed while it
// waits.
var ErrClosed = errors.New("apnstest: server closed")

// WaitForPushes blocks until at least n pushes have been accepted since the
// start or the last Reset, then returns the recorded pushes (none when
// recording is off). If ctx ends first it returns what it has and ctx.Err();
// if the server is closed first, ErrClosed.
func (s *Server) WaitForPushes(ctx context.Context, n int) ([]Push, error) {
	s.mu.Lock()
	s.nwaiters.Add(1)
	if s.countLocked() >= n {
		s.nwaiters.Add(-1)
		s.mu.Unlock()
		return s.Pushes(), nil
	}
	w := &waiter{n: n, ch: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()

	var err error
	select {
	case <-w.ch:
		return s.Pushes(), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.closed:
		err = ErrClosed
	}
	s.mu.Lock()
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			s.nwaiters.Add(-1)
			break
		}
	}
	s.mu.Unlock()
	return s.Pushes(), err
}

// countLocked is the number of accepted pushes WaitForPushes compares with.
func (s *Server) countLocked() int {
	if s.record {
		return len(s.pushes)
	}
	return int(s.accepted.Load())
}

// wakeLocked releases the waiters that have seen enough pushes.
func (s *Server) wakeLocked() {
	have := s.countLocked()
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if have >= w.n {
			close(w.ch)
			s.nwaiters.Add(-1)
		} else {
			kept = append(kept, w)
		}
	}
	clear(s.waiters[len(kept):])
	s.waiters = kept
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	by := make(map[string]int64, len(s.byReason))
	for k, v := range s.byReason {
		by[k] = v
	}
	s.mu.Unlock()
	return Stats{
		Requests:    s.requests.Load(),
		Accepted:    s.accepted.Load(),
		Rejected:    s.rejected.Load(),
		ByReason:    by,
		Connections: s.connections.Load(),
	}
}

// accept counts and records an accepted push.
func (s *Server) accept(p *Push) {
	if s.onPush != nil {
		s.onPush(*p)
	}
	if s.record {
		s.mu.Lock()
		s.pushes = append(s.pushes, *p)
		s.accepted.Add(1)
		if len(s.waiters) > 0 {
			s.wakeLocked()
		}
		s.mu.Unlock()
		return
	}
	s.accepted.Add(1)
	if s.nwaiters.Load() > 0 {
		s.mu.Lock()
		s.wakeLocked()
		s.mu.Unlock()
	}
}

// reject counts a rejection.
func (s *Server) reject(reason string) {
	s.rejected.Add(1)
	s.mu.Lock()
	s.byReason[reason]++
	s.mu.Unlock()
}
