// Package fcm sends push sync notifications through Firebase Cloud
// Messaging with firebase.google.com/go/v4: one messaging client per
// platform app, authenticated with the app's service account, all sharing
// one HTTP/2 transport, and the classification of every FCM error into what
// the dispatcher should do about it.
package fcm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/internal/h2client"
	"github.com/pushsync/pushsync/internal/warmup"
	"github.com/pushsync/pushsync/payload"
	"github.com/pushsync/pushsync/registry"
)

// Scope is the OAuth2 scope FCM sends need.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// Options configures a Notifier.
type Options struct {
	// Endpoint is the FCM API base URL, including /v1. If not set,
	// https://fcm.googleapis.com/v1.
	Endpoint string
	// RootCAs verifies the FCM and OAuth2 server certificates. If not set,
	// the system roots.
	RootCAs *x509.CertPool
	// TTL is how long FCM keeps an undelivered message, at most MaxTTL.
	// If not set, 0: deliver now or never.
	TTL time.Duration
	// Priority is the Android priority. If not set, normal.
	Priority payload.FCMPriority
}

// Notifier is a dispatcher.Notifier for FCM apps. It is safe for
// concurrent use.
type Notifier struct {
	opts      Options
	log       zerolog.Logger
	transport *http.Transport   // to the OAuth2 token endpoint, and to FCM through a proxy
	send      http.RoundTripper // to FCM

	mu   sync.Mutex
	apps map[string]*appClient
}

type appClient struct {
	revision int64
	client   *messaging.Client
	gate     warmup.Gate
}

// New returns a Notifier.
func New(opts Options, log zerolog.Logger) (*Notifier, error) {
	if opts.Endpoint == "" {
		opts.Endpoint = "https://fcm.googleapis.com/v1"
	}
	if opts.Priority == "" {
		opts.Priority = payload.FCMPriorityNormal
	}
	tlsConf := &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		Protocols:           new(http.Protocols),
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 5 * time.Second},
	}
	tr.Protocols.SetHTTP1(true) // the OAuth2 token endpoint may not speak HTTP/2
	tr.Protocols.SetHTTP2(true)
	n := &Notifier{opts: opts, log: log, transport: tr, send: tr, apps: make(map[string]*appClient)}
	u, err := url.Parse(opts.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("fcm: endpoint %q: %w", opts.Endpoint, err)
	}
	// Sends go straight to FCM over HTTP/2, the writes of concurrent
	// sends sharing TLS records and system calls; an HTTPS proxy in the
	// environment, or an endpoint without TLS, takes them through
	// net/http instead.
	proxy, err := tr.Proxy(&http.Request{URL: u})
	if err != nil {
		return nil, fmt.Errorf("fcm: proxy for %s: %w", opts.Endpoint, err)
	}
	if proxy == nil && u.Scheme == "https" {
		n.send = &h2client.Transport{TLSConfig: tlsConf, ReadIdleTimeout: 30 * time.Second, PingTimeout: 5 * time.Second}
	}
	return n, nil
}

// Notify sends the data message of p's change to p's device.
func (n *Notifier) Notify(ctx context.Context, p *dispatcher.Push) error {
	if p.App.Kind != registry.KindFCM || p.App.FCM == nil {
		return &dispatcher.Error{Class: dispatcher.Config, Reason: "not_an_fcm_app", Err: fmt.Errorf("%w: %s", ErrNotFCM, p.App.Name)}
	}
	ac, err := n.client(p.App)
	if err != nil {
		return &dispatcher.Error{Class: dispatcher.Config, Reason: "bad_credentials", Err: err}
	}
	msg, err := payload.FCM(payload.Change{
		IdentityPoolID: p.Event.IdentityPoolID,
		IdentityID:     p.Event.IdentityID,
		DatasetName:    p.Event.DatasetName,
		SyncCount:      p.Event.SyncCount,
	}, p.Device.Token, n.opts.Priority, ttl(p, n.opts.TTL))
	if err != nil {
		return &dispatcher.Error{Class: dispatcher.Permanent, Reason: "MESSAGE_TOO_BIG", Err: err}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &sendState{cancel: cancel}
	ctx = context.WithValue(ctx, sendStateKey{}, st)
	var sendErr error
	ac.gate.Do(func() bool {
		_, sendErr = ac.client.Send(ctx, msg)
		return sendErr == nil || st.verdict != nil || errorutils.HTTPResponse(sendErr) != nil
	})
	if sendErr == nil {
		return nil
	}
	if v := st.verdict; v != nil {
		if v.Err == nil {
			v.Err = sendErr
		}
		return v
	}
	return Classify(sendErr)
}

// sendState is what bearerTransport learned about one send that the
// firebase client's error cannot tell.
type sendState struct {
	// verdict, if set, is the send's failure, to be returned instead of
	// the classification of the client's error (with that error as Err
	// when it has none).
	verdict *dispatcher.Error
	// cancel ends the send, and the firebase client's wait before a
	// retry with it.
	cancel context.CancelFunc
}

type sendStateKey struct{}

// stateOf returns the sendState of a request made by Notify, or a
// throwaway one.
func stateOf(req *http.Request) *sendState {
	if st, ok := req.Context().Value(sendStateKey{}).(*sendState); ok {
		return st
	}
	return &sendState{cancel: func() {}}
}

// bearerTransport adds the app's OAuth2 access token to each request, as
// oauth2.Transport does, but with a shallow copy of the request: the
// caller's request stays as it was, and the header values, which nobody
// modifies, are shared rather than copied for every push. When FCM refuses
// a token (401 without an FcmError detail), the next request gets a new
// one; when FCM refuses that one too before it has accepted any from the
// new source, or the token endpoint refuses the service account (a 4xx
// other than 429), the send is a configuration error; a token endpoint
// throttling or failing (429, 5xx) is a passing failure, and no token is
// asked for until its Retry-After ends. A 401 THIRD_PARTY_AUTH_ERROR
// refuses the project's APNs or web push credentials, not the token, which
// is kept.
type bearerTransport struct {
	newSource func() oauth2.TokenSource // a source with no token yet
	src       atomic.Pointer[tokenSource]
	base      http.RoundTripper
	last      atomic.Pointer[bearerHeader]
	// unavailable, if set, is the token endpoint's last throttling or
	// failure: no token is asked for before its end.
	unavailable atomic.Pointer[endpointUnavailable]
}

// endpointUnavailable is a throttling (429) or failure (5xx) of the OAuth2
// token endpoint, and when a token may be asked for again.
type endpointUnavailable struct {
	until time.Time
	err   error
}

// TokenEndpointBackoff is how long no access token is asked for after
// Google's token endpoint throttled (429) or failed (5xx) a request without
// a Retry-After.
const TokenEndpointBackoff = time.Second

// tokenSource reuses a token until it is about to expire.
type tokenSource struct {
	oauth2.TokenSource
	// afterRefusal: the source replaced one whose token FCM refused.
	afterRefusal bool
	// accepted: FCM has taken one of its tokens.
	accepted atomic.Bool
}

// bearerHeader is an access token with its Authorization header value.
type bearerHeader struct {
	token  string
	header []string
}

func newBearerTransport(newSource func() oauth2.TokenSource, base http.RoundTripper) *bearerTransport {
	b := &bearerTransport{newSource: newSource, base: base}
	b.src.Store(&tokenSource{TokenSource: newSource()})
	return b
}

func (b *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if u := b.unavailable.Load(); u != nil {
		if wait := time.Until(u.until); wait > 0 {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, tokenEndpointUnavailable(req, wait, u.err)
		}
	}
	src := b.src.Load()
	tok, err := src.Token()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			switch code := re.Response.StatusCode; {
			case code == http.StatusTooManyRequests || code >= 500:
				// Throttled or failing: the service account may be
				// fine. No token is asked for until the Retry-After
				// ends, by this send (the firebase client would retry
				// it at once) or another.
				wait := dispatcher.ParseRetryAfter(re.Response.Header.Get("Retry-After"))
				if wait <= 0 {
					wait = TokenEndpointBackoff
				}
				b.unavailable.Store(&endpointUnavailable{until: time.Now().Add(wait), err: err})
				return nil, tokenEndpointUnavailable(req, wait, err)
			case code >= 400:
				stateOf(req).verdict = &dispatcher.Error{Class: dispatcher.Config, Reason: "UNAUTHENTICATED"}
				return credentialsRefused(req, err), nil
			}
		}
		return nil, err // the token endpoint is unreachable: worth a retry
	}
	h := b.last.Load()
	if h == nil || h.token != tok.AccessToken {
		h = &bearerHeader{token: tok.AccessToken, header: []string{tok.Type() + " " + tok.AccessToken}}
		b.last.Store(h)
	}
	r := *req
	r.Header = make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		r.Header[k] = v
	}
	r.Header["Authorization"] = h.header
	res, err := b.base.RoundTrip(&r)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusUnauthorized || refusedByThirdParty(res) {
		// FCM checks the token before anything else it answers below
		// 500; a 5xx may come from its front end without a look at it.
		// A 401 with an FcmError detail (THIRD_PARTY_AUTH_ERROR) is
		// about the APNs or web push credentials in the Firebase
		// project, and so is an answer to a token FCM took.
		if res.StatusCode < 500 && !src.accepted.Load() {
			src.accepted.Store(true)
		}
		if res.StatusCode == http.StatusServiceUnavailable {
			retryLater(req, res)
		}
		return res, nil
	}
	// The token was revoked or is otherwise refused before its expiry:
	// drop it, so that the next request asks for a new one, and retry.
	// But when the token came fresh after a refusal and FCM has taken
	// none of its source's, the credentials themselves are refused.
	if src.afterRefusal && !src.accepted.Load() {
		stateOf(req).verdict = &dispatcher.Error{Class: dispatcher.Config, Reason: "UNAUTHENTICATED"}
	}
	b.src.CompareAndSwap(src, &tokenSource{TokenSource: b.newSource(), afterRefusal: true})
	return res, nil
}

// fcmErrorType is the type of the detail in which FCM names its own error
// code.
const fcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

// refusedByThirdParty reports whether a 401 answer carries an FcmError
// detail, as THIRD_PARTY_AUTH_ERROR (APNS_AUTH_ERROR) does when APNs or a
// web push service refused the credentials configured in the Firebase
// project: FCM took the access token, so it is kept. A 401 refusing the
// access token itself carries no such detail. The body is read and put
// back for the firebase client.
func refusedByThirdParty(res *http.Response) bool {
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false
	}
	var status struct {
		Error struct {
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &status) != nil {
		return false
	}
	for _, d := range status.Error.Details {
		if d.Type == fcmErrorType && d.ErrorCode != "" {
			return true
		}
	}
	return false
}

// retryLater ends the send of req when FCM answered it 503 UNAVAILABLE with
// a Retry-After longer than the send has left. The firebase client retries
// a 503 after the Retry-After (up to two minutes), sleeping until the
// deadline ends the send as a timeout with no Retry-After, the push holding
// a sender slot meanwhile; ended now, it is a retry carrying FCM's
// Retry-After, which the dispatcher leaves to the broker. A shorter
// Retry-After is left to the client's own retries. (The client does not
// retry 429, so a Retry-After with it reaches Classify at once.)
func retryLater(req *http.Request, res *http.Response) {
	wait := dispatcher.ParseRetryAfter(res.Header.Get("Retry-After"))
	deadline, ok := req.Context().Deadline()
	if wait <= 0 || !ok || wait < time.Until(deadline) {
		return
	}
	// Read the answer before ending the send, which would cut it short.
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))
	var status struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err == nil {
		_ = json.Unmarshal(body, &status)
	}
	st := stateOf(req)
	st.verdict = &dispatcher.Error{Class: dispatcher.Retry, Reason: "UNAVAILABLE", RetryAfter: wait,
		Err: fmt.Errorf("fcm: %s %q with Retry-After %v, past the send's deadline", res.Status, status.Error.Message, wait)}
	st.cancel()
}

// tokenEndpointUnavailable ends the send of req, which has no access token
// because the token endpoint throttled or failed a token request with err,
// as a retry after wait, the endpoint's Retry-After: the firebase client
// would retry it at once, asking for a token again, and only a refusal
// (4xx) says the service account is wrong.
func tokenEndpointUnavailable(req *http.Request, wait time.Duration, err error) error {
	st := stateOf(req)
	st.verdict = &dispatcher.Error{Class: dispatcher.Retry, Reason: "token_endpoint_unavailable", RetryAfter: wait,
		Err: fmt.Errorf("fcm: no access token, Google's token endpoint is throttling or failing (asked again in %v): %w", wait.Round(time.Millisecond), err)}
	st.cancel()
	return st.verdict.Err
}

// credentialsRefused answers a request whose access token the OAuth2 token
// endpoint refused to issue (a deleted or revoked service-account key, a
// disabled account) as FCM answers a request with bad credentials, 401
// UNAUTHENTICATED, carrying the endpoint's reason: the firebase client
// would otherwise retry it as a network failure. The send's verdict makes
// it a configuration error, so that the dispatcher suspends the app rather
// than take it for a passing failure.
func credentialsRefused(req *http.Request, err error) *http.Response {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": http.StatusUnauthorized, "status": "UNAUTHENTICATED",
		"message": "no access token for the service account: " + err.Error(),
	}})
	return &http.Response{
		Status: "401 Unauthorized", StatusCode: http.StatusUnauthorized,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json; charset=UTF-8"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: req,
	}
}

// MaxTTL is the longest time FCM keeps an undelivered message, four weeks;
// it refuses a longer android.ttl with 400 INVALID_ARGUMENT.
const MaxTTL = 2419200 * time.Second

// ttl is the time the push has left when the dispatcher set an expiry,
// within what FCM accepts: an expiry more than four weeks ahead (a change
// time ahead of our clock, with a long push TTL) gets four weeks.
func ttl(p *dispatcher.Push, fallback time.Duration) time.Duration {
	if p.Expires.IsZero() {
		return min(max(fallback, 0), MaxTTL)
	}
	return min(max(time.Until(p.Expires).Truncate(time.Second), 0), MaxTTL)
}

// client returns the client of the app's current revision, building it on
// first use and replacing it when the app changes. A push read with an
// older revision than the client's (an event whose fan-out began before a
// rotation) goes through the newer one: building the older revision again
// would push with the service account the operator replaced, and ask the
// token endpoint for a new access token at every change of revision.
func (n *Notifier) client(app *registry.App) (*appClient, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ac, ok := n.apps[app.Name]; ok && ac.revision >= app.Revision {
		return ac, nil
	}
	// The token source keeps this context for every refresh, so it must
	// live as long as the client; it carries the HTTP client that reaches
	// the token endpoint.
	base := &http.Client{Transport: n.transport}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)
	// The key is read once; each token source made from it starts with
	// no token (a new one after FCM refuses the current one).
	conf, err := google.JWTConfigFromJSON([]byte(app.FCM.ServiceAccount), Scope)
	if err != nil {
		return nil, fmt.Errorf("fcm: app %s: service account: %w", app.Name, err)
	}
	bt := newBearerTransport(func() oauth2.TokenSource { return conf.TokenSource(ctx) }, n.send)
	hc := &http.Client{Transport: bt}
	fa, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: app.FCM.ProjectID},
		option.WithEndpoint(n.opts.Endpoint), option.WithHTTPClient(hc))
	if err != nil {
		return nil, fmt.Errorf("fcm: app %s: %w", app.Name, err)
	}
	mc, err := fa.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: app %s: messaging client: %w", app.Name, err)
	}
	if _, ok := n.apps[app.Name]; ok {
		n.log.Info().Str("app", app.Name).Int64("revision", app.Revision).Msg("platform app changed; new FCM client")
	}
	ac := &appClient{revision: app.Revision, client: mc}
	n.apps[app.Name] = ac
	return ac, nil
}

// Close closes idle connections.
func (n *Notifier) Close() {
	n.transport.CloseIdleConnections()
	if h2, ok := n.send.(*h2client.Transport); ok {
		h2.CloseIdleConnections()
	}
}

// ErrNotFCM is returned for a push whose app is not an FCM app.
var ErrNotFCM = errors.New("fcm: not an FCM app")

// Classify turns an error from messaging.Client.Send into a dispatcher
// error, following FCM's error-code table: dead registration tokens are
// dropped, quota and server errors are retried (honouring Retry-After), a
// refused access token (401 UNAUTHENTICATED without details) is retried,
// with a new token, and other authentication problems are configuration
// errors. Notify makes a refused access token a configuration error when
// the credentials themselves are refused.
func Classify(err error) *dispatcher.Error {
	e := func(class dispatcher.Class, reason string) *dispatcher.Error {
		return &dispatcher.Error{Class: class, Reason: reason, Err: err, RetryAfter: retryAfter(err)}
	}
	switch {
	case messaging.IsUnregistered(err):
		return e(dispatcher.TokenDead, "UNREGISTERED")
	case messaging.IsSenderIDMismatch(err):
		// Dead only if the app's project is the one the app on the
		// device registered with.
		de := e(dispatcher.TokenDead, "SENDER_ID_MISMATCH")
		de.ForApp = true
		return de
	case messaging.IsInvalidArgument(err) && strings.Contains(err.Error(), "registration token"):
		return e(dispatcher.TokenDead, "INVALID_REGISTRATION")
	case messaging.IsInvalidArgument(err), errorutils.IsInvalidArgument(err):
		// With an FcmError detail or only a google.rpc.BadRequest one: a
		// request FCM will never take.
		return e(dispatcher.Permanent, "INVALID_ARGUMENT")
	case messaging.IsQuotaExceeded(err):
		return quota(e(dispatcher.Retry, "QUOTA_EXCEEDED"))
	case messaging.IsUnavailable(err):
		return e(dispatcher.Retry, "UNAVAILABLE")
	case messaging.IsInternal(err):
		return e(dispatcher.Retry, "INTERNAL")
	case messaging.IsThirdPartyAuthError(err):
		return e(dispatcher.Config, "THIRD_PARTY_AUTH_ERROR")
	case errorutils.IsUnauthenticated(err):
		return e(dispatcher.Retry, "UNAUTHENTICATED")
	case errorutils.IsPermissionDenied(err):
		return e(dispatcher.Config, "PERMISSION_DENIED")
	case errorutils.IsNotFound(err):
		return e(dispatcher.Config, "NOT_FOUND")
	case errorutils.IsResourceExhausted(err):
		return quota(e(dispatcher.Retry, "RESOURCE_EXHAUSTED"))
	case errorutils.IsUnavailable(err), errorutils.IsInternal(err), errorutils.IsDeadlineExceeded(err):
		return e(dispatcher.Retry, "UNAVAILABLE")
	case errors.Is(err, context.DeadlineExceeded):
		return e(dispatcher.Retry, "timeout")
	case errorutils.HTTPResponse(err) == nil:
		return e(dispatcher.Retry, "transport")
	default:
		return e(dispatcher.Retry, "Other")
	}
}

// QuotaBackoff is how long a push that FCM refused for a spent quota (429
// RESOURCE_EXHAUSTED) waits when FCM gives no Retry-After: a project's
// quota is counted per minute, and FCM refuses every push until the
// minute ends, so a try sooner only uses up one of the event's tries.
const QuotaBackoff = time.Minute

// quota gives e, a refusal for a spent quota, QuotaBackoff as its wait
// when FCM gave none.
func quota(e *dispatcher.Error) *dispatcher.Error {
	if e.RetryAfter <= 0 {
		e.RetryAfter = QuotaBackoff
	}
	return e
}

func retryAfter(err error) time.Duration {
	res := errorutils.HTTPResponse(err)
	if res == nil {
		return 0
	}
	return dispatcher.ParseRetryAfter(res.Header.Get("Retry-After"))
}
