// Package apns sends push sync notifications through Apple Push
// Notification service with github.com/sideshow/apns2: one long-lived
// HTTP/2 client per platform app and environment, token (.p8) or
// certificate authentication, and the classification of every APNs answer
// into what the dispatcher should do about it.
package apns

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/internal/h2client"
	"github.com/pushsync/pushsync/internal/warmup"
	"github.com/pushsync/pushsync/payload"
	"github.com/pushsync/pushsync/registry"
)

// Options configures a Notifier.
type Options struct {
	// ProductionHost receives pushes for APNS devices. If not set,
	// https://api.push.apple.com.
	ProductionHost string
	// SandboxHost receives pushes for APNS_SANDBOX devices. If not set,
	// https://api.sandbox.push.apple.com.
	SandboxHost string
	// RootCAs verifies the APNs server certificate. If not set, the
	// system roots.
	RootCAs *x509.CertPool
	// TTL is how long APNs keeps trying to deliver a push (apns-expiration
	// is the send time plus TTL). If not set, 0: APNs tries once.
	TTL time.Duration
	// ReadIdleTimeout is how long a connection may be silent before it is
	// health-checked with a PING. If not set, 15s.
	ReadIdleTimeout time.Duration
	// Now returns the current time. If not set, time.Now.
	Now func() time.Time
}

// Notifier is a dispatcher.Notifier for APNs apps. It is safe for
// concurrent use.
type Notifier struct {
	opts Options
	log  zerolog.Logger

	mu   sync.Mutex
	apps map[string]*appClients
	// tokens are the provider tokens of the apps' keys: apps and revisions
	// signing with one key share one, since APNs counts new tokens per
	// team and refuses them more often than every 20 minutes.
	tokens map[signingKey]*token.Token
}

// signingKey is a provider token signing key under its team and key ids.
type signingKey struct {
	teamID, keyID, authKey string
}

// appClients are the clients of one platform app revision, which share
// the provider token of the app's key.
type appClients struct {
	revision int64
	topic    string // the revision's apns-topic
	prod     *client
	sandbox  *client
	token    *token.Token
	key      signingKey
}

type client struct {
	c    *apns2.Client
	tr   *h2client.Transport
	gate warmup.Gate
	auth atomic.Pointer[bearer]
}

// New returns a Notifier.
func New(opts Options, log zerolog.Logger) *Notifier {
	if opts.ProductionHost == "" {
		opts.ProductionHost = apns2.HostProduction
	}
	if opts.SandboxHost == "" {
		opts.SandboxHost = apns2.HostDevelopment
	}
	if opts.ReadIdleTimeout <= 0 {
		opts.ReadIdleTimeout = 15 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Notifier{opts: opts, log: log, apps: make(map[string]*appClients), tokens: make(map[signingKey]*token.Token)}
}

// Notify sends the background notification of p's change to p's device.
func (n *Notifier) Notify(ctx context.Context, p *dispatcher.Push) error {
	if p.App.Kind != registry.KindAPNs || p.App.APNs == nil {
		return &dispatcher.Error{Class: dispatcher.Config, Reason: "not_an_apns_app", Err: fmt.Errorf("%w: %s", ErrNotAPNs, p.App.Name)}
	}
	ac, err := n.clients(p.App)
	if err != nil {
		return &dispatcher.Error{Class: dispatcher.Config, Reason: "bad_credentials", Err: err}
	}
	c := ac.prod
	if p.Device.Platform == registry.APNSSandbox {
		c = ac.sandbox
	}
	note, err := payload.APNs(payload.Change{
		IdentityPoolID: p.Event.IdentityPoolID,
		IdentityID:     p.Event.IdentityID,
		DatasetName:    p.Event.DatasetName,
		SyncCount:      p.Event.SyncCount,
	}, ac.topic, expiration(p, n.opts.Now().Add(n.opts.TTL)))
	if err != nil {
		return &dispatcher.Error{Class: dispatcher.Permanent, Reason: apns2.ReasonPayloadTooLarge, Err: err}
	}
	var (
		res        *apns2.Response
		sendErr    error
		retryAfter time.Duration
		jwt        string
	)
	c.gate.Do(func() bool {
		res, retryAfter, jwt, sendErr = c.push(ctx, p.Device.Token, &note)
		return sendErr == nil
	})
	if sendErr != nil {
		var goAway *h2client.GoAwayError
		if errors.As(sendErr, &goAway) {
			return classifyGoAway(goAway)
		}
		if e := certificateRefused(p.App.Name, c.c.Certificate.Leaf, sendErr); e != nil {
			return e
		}
		return dispatcher.Classify(sendErr)
	}
	if res.Sent() {
		return nil
	}
	if res.Reason == apns2.ReasonExpiredProviderToken && ac.token != nil {
		if e := renewExpired(ac.token, jwt); e != nil {
			return e
		}
	}
	e := Classify(res)
	e.RetryAfter = retryAfter
	if res.Reason == apns2.ReasonTooManyRequests && retryAfter <= 0 {
		// Too many pushes to this one device: tried again at once, it
		// would only be refused again.
		e.RetryAfter = TooManyRequestsBackoff
	}
	return e
}

// TooManyRequestsBackoff is how long a push that APNs refused with 429
// TooManyRequests, too many requests to the same device token, waits when
// APNs gives no Retry-After: Apple publishes no figure, and a device
// receives background pushes a few times an hour at most anyway.
const TooManyRequestsBackoff = time.Minute

// tokenUpdateInterval is how often APNs lets a team sign a new provider
// token; a newer one sooner is refused with 429 TooManyProviderTokenUpdates.
const tokenUpdateInterval = 20 * time.Minute

// renewExpired deals with APNs' answer ExpiredProviderToken to a push
// signed with jwt. The token is renewed once, by the first such answer:
// an answer to a push signed with a token renewed since changes nothing,
// or every push in flight would sign a token of its own. A token signed
// less than tokenUpdateInterval ago that APNs calls expired (it accepts
// them for an hour) means this host's clock is far behind APNs'; a new
// token would fare no better and be refused as too soon, so the push is
// a configuration failure.
func renewExpired(tok *token.Token, jwt string) *dispatcher.Error {
	tok.Lock()
	defer tok.Unlock()
	if tok.Bearer != jwt {
		return nil // renewed already
	}
	if age := time.Since(time.Unix(tok.IssuedAt, 0)); age < tokenUpdateInterval {
		return &dispatcher.Error{Class: dispatcher.Config, Reason: "clock_skew", Err: fmt.Errorf(
			"apns: 403 ExpiredProviderToken for a provider token signed %v ago, which APNs accepts for an hour: this host's clock is over %v behind APNs'",
			age.Round(time.Second), time.Hour-tokenUpdateInterval)}
	}
	tok.IssuedAt = 0 // the next push signs a new token
	return nil
}

// certificateAlerts are the TLS alerts with which a server refuses the
// client's certificate during the handshake.
var certificateAlerts = [...]tls.AlertError{
	42,  // bad_certificate
	43,  // unsupported_certificate
	44,  // certificate_revoked
	45,  // certificate_expired
	46,  // certificate_unknown
	48,  // unknown_ca
	116, // certificate_required
}

// certificateRefused classifies err, the failure of a push of the app
// whose client certificate is leaf (nil for token authentication): APNs
// refuses an expired, revoked or unknown certificate with a TLS alert at
// the handshake, before any answer with a reason, and every connection
// made with it fails the same way. That is the app's configuration, not
// a passing transport failure. It returns nil for any other failure.
func certificateRefused(app string, leaf *x509.Certificate, err error) *dispatcher.Error {
	var oe *net.OpError
	if leaf == nil || !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return nil
	}
	for _, a := range certificateAlerts {
		if oe.Err.Error() != a.Error() {
			continue
		}
		why := fmt.Sprintf("valid from %s to %s", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		switch now := time.Now(); {
		case now.After(leaf.NotAfter):
			why = "it expired at " + leaf.NotAfter.UTC().Format(time.RFC3339)
		case now.Before(leaf.NotBefore):
			why = "it is valid only from " + leaf.NotBefore.UTC().Format(time.RFC3339)
		}
		return &dispatcher.Error{Class: dispatcher.Config, Reason: "certificate_refused", Err: fmt.Errorf(
			"apns: app %s: APNs refused its client certificate (%s; %s) at the TLS handshake; register a valid one for the app: %w",
			app, leaf.Subject, why, err)}
	}
	return nil
}

// Header values every push shares; the transport only reads them.
var (
	contentJSON      = []string{"application/json; charset=utf-8"}
	pushTypeHeader   = map[string][]string{payload.APNsPushTypeBackground: {payload.APNsPushTypeBackground}}
	priorityHeader   = map[int][]string{payload.APNsPriorityBackground: {strconv.Itoa(payload.APNsPriorityBackground)}}
	errNoTokenOrCert = errors.New("apns: client has neither a provider token nor a certificate")
)

// push sends one notification: the request apns2's PushWithContext makes,
// without encoding again a payload that is already JSON, without
// canonicalising header names one by one, and without a JSON decoder for
// the empty body of an accepted push. It returns APNs' answer, its
// Retry-After and the provider token the push was signed with, if any.
func (c *client) push(ctx context.Context, deviceToken string, note *payload.APNsNotification) (*apns2.Response, time.Duration, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.c.Host+"/3/device/"+deviceToken, bytes.NewReader(note.Payload))
	if err != nil {
		return nil, 0, "", err
	}
	h := req.Header
	h["Content-Type"] = contentJSON
	if note.Topic != "" {
		h["Apns-Topic"] = []string{note.Topic}
	}
	if note.CollapseID != "" {
		h["Apns-Collapse-Id"] = []string{note.CollapseID}
	}
	if v, ok := priorityHeader[note.Priority]; ok {
		h["Apns-Priority"] = v
	} else if note.Priority > 0 {
		h["Apns-Priority"] = []string{strconv.Itoa(note.Priority)}
	}
	if note.Expiration.After(time.Unix(0, 0)) {
		h["Apns-Expiration"] = []string{strconv.FormatInt(note.Expiration.Unix(), 10)}
	}
	if v, ok := pushTypeHeader[note.PushType]; ok {
		h["Apns-Push-Type"] = v
	} else {
		h["Apns-Push-Type"] = []string{note.PushType}
	}
	var jwt string
	switch {
	case c.c.Token != nil:
		b := c.bearer()
		h["Authorization"], jwt = b.header, b.jwt
	case c.c.Certificate.Certificate == nil:
		return nil, 0, "", errNoTokenOrCert
	}
	// APNs does not redirect: straight to the transport, without
	// http.Client's copy of the headers for a redirect that never comes.
	res, err := c.c.HTTPClient.Transport.RoundTrip(req)
	if err != nil {
		return nil, 0, jwt, err
	}
	defer res.Body.Close()
	r := &apns2.Response{StatusCode: res.StatusCode, ApnsID: res.Header.Get("apns-id"), ApnsUniqueID: res.Header.Get("apns-unique-id")}
	if res.StatusCode != http.StatusOK {
		// Not into apns2.Response, whose timestamp keeps whole seconds.
		var body struct {
			Reason    string `json:"reason"`
			Timestamp int64  `json:"timestamp"` // milliseconds since the epoch
		}
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil && err != io.EOF {
			return nil, 0, jwt, fmt.Errorf("apns: reading an answer with status %d: %w", res.StatusCode, err)
		}
		r.Reason = body.Reason
		if body.Timestamp != 0 {
			r.Timestamp.Time = time.UnixMilli(body.Timestamp)
		}
	}
	return r, dispatcher.ParseRetryAfter(res.Header.Get("Retry-After")), jwt, nil
}

// bearer returns the provider token with its authorization header value,
// signing a new token when the current one is due for renewal.
func (c *client) bearer() *bearer {
	jwt := c.c.Token.GenerateIfExpired()
	if b := c.auth.Load(); b != nil && b.jwt == jwt {
		return b
	}
	b := &bearer{jwt: jwt, header: []string{"bearer " + jwt}}
	c.auth.Store(b)
	return b
}

// bearer is a provider token with its header value.
type bearer struct {
	jwt    string
	header []string
}

// expiration is the push's own expiry when the dispatcher set one.
func expiration(p *dispatcher.Push, fallback time.Time) time.Time {
	if p.Expires.IsZero() {
		return fallback
	}
	return p.Expires
}

// clients returns the clients of the app's current revision, building them
// on first use and replacing them when the app changes. A push read with
// an older revision than the clients' (an event whose fan-out began before
// a rotation) goes through the newer ones: building the older revision
// again would push with the credentials the operator replaced, and close
// the newer clients' connections, only for the next push to open them
// again.
func (n *Notifier) clients(app *registry.App) (*appClients, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ac, ok := n.apps[app.Name]; ok && ac.revision >= app.Revision {
		return ac, nil
	}
	ac, err := n.build(app)
	if err != nil {
		return nil, err
	}
	old, changed := n.apps[app.Name]
	n.apps[app.Name] = ac
	if changed {
		// Pushes still in flight through the old clients finish; their
		// connections close after them.
		old.prod.tr.Retire()
		old.sandbox.tr.Retire()
		n.forgetToken(old)
		n.log.Info().Str("app", app.Name).Int64("revision", app.Revision).Msg("platform app changed; new APNs clients")
	}
	return ac, nil
}

// forgetToken drops the provider token of a replaced app revision unless
// an app still signs with it, under mu.
func (n *Notifier) forgetToken(old *appClients) {
	if old.token == nil {
		return
	}
	for _, ac := range n.apps {
		if ac.token == old.token {
			return
		}
	}
	delete(n.tokens, old.key)
}

// build makes the clients of an app revision, under mu.
func (n *Notifier) build(app *registry.App) (*appClients, error) {
	cred := app.APNs
	ac := &appClients{revision: app.Revision, topic: cred.Topic}
	tlsConf := &tls.Config{RootCAs: n.opts.RootCAs, MinVersion: tls.VersionTLS12}
	if cred.AuthKey != "" {
		ac.key = signingKey{teamID: cred.TeamID, keyID: cred.KeyID, authKey: cred.AuthKey}
		if ac.token = n.tokens[ac.key]; ac.token == nil {
			key, err := token.AuthKeyFromBytes([]byte(cred.AuthKey))
			if err != nil {
				return nil, fmt.Errorf("apns: app %s: auth key: %w", app.Name, err)
			}
			tok := &token.Token{AuthKey: key, KeyID: cred.KeyID, TeamID: cred.TeamID}
			if _, err := tok.Generate(); err != nil {
				return nil, fmt.Errorf("apns: app %s: sign provider token: %w", app.Name, err)
			}
			ac.token = tok
			n.tokens[ac.key] = tok
		}
	} else {
		cert, err := tls.X509KeyPair([]byte(cred.Certificate), []byte(cred.Certificate))
		if err != nil {
			return nil, fmt.Errorf("apns: app %s: certificate: %w", app.Name, err)
		}
		if cert.Leaf == nil { // said why APNs refuses it (see certificateRefused)
			if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("apns: app %s: certificate: %w", app.Name, err)
			}
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	}
	newClient := func(host string) *client {
		// APNs speaks only HTTP/2; one connection carries many streams.
		tr := &h2client.Transport{
			TLSConfig:       tlsConf.Clone(),
			ReadIdleTimeout: n.opts.ReadIdleTimeout,
			PingTimeout:     5 * time.Second,
			NeverIndex:      neverIndex,
		}
		c := &apns2.Client{Host: host, HTTPClient: &http.Client{Transport: tr}}
		if ac.token != nil {
			c.Token = ac.token
		} else {
			c.Certificate = tlsConf.Certificates[0]
		}
		return &client{c: c, tr: tr}
	}
	ac.prod = newClient(n.opts.ProductionHost)
	ac.sandbox = newClient(n.opts.SandboxHost)
	return ac, nil
}

// neverIndex names the request header fields whose values are seldom
// sent twice: the device token in the path, the expiry, the collapse
// identifier. Kept out of the HPACK table, they leave room for the fields
// every push repeats.
func neverIndex(name string) bool {
	switch name {
	case ":path", "apns-expiration", "apns-collapse-id", "apns-id":
		return true
	}
	return false
}

// Close closes the connections of every client, each once the pushes in
// flight on it have ended.
func (n *Notifier) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ac := range n.apps {
		ac.prod.tr.Retire()
		ac.sandbox.tr.Retire()
	}
}

// reasonClass is what to do about each reason APNs gives, following
// Apple's "Handling notification responses from APNs".
var reasonClass = map[string]dispatcher.Class{
	// The token is no longer valid for the app: drop it.
	apns2.ReasonBadDeviceToken:         dispatcher.TokenDead,
	apns2.ReasonDeviceTokenNotForTopic: dispatcher.TokenDead,
	apns2.ReasonUnregistered:           dispatcher.TokenDead,
	"ExpiredToken":                     dispatcher.TokenDead,
	// The request itself is wrong; sending it again cannot help.
	apns2.ReasonBadCollapseID:      dispatcher.Permanent,
	apns2.ReasonBadExpirationDate:  dispatcher.Permanent,
	apns2.ReasonBadMessageID:       dispatcher.Permanent,
	apns2.ReasonBadPriority:        dispatcher.Permanent,
	apns2.ReasonBadTopic:           dispatcher.Permanent,
	apns2.ReasonDuplicateHeaders:   dispatcher.Permanent,
	"InvalidPushType":              dispatcher.Permanent,
	apns2.ReasonMissingDeviceToken: dispatcher.Permanent,
	apns2.ReasonMissingTopic:       dispatcher.Permanent,
	apns2.ReasonPayloadEmpty:       dispatcher.Permanent,
	apns2.ReasonTopicDisallowed:    dispatcher.Permanent,
	apns2.ReasonBadPath:            dispatcher.Permanent,
	apns2.ReasonMethodNotAllowed:   dispatcher.Permanent,
	apns2.ReasonPayloadTooLarge:    dispatcher.Permanent,
	apns2.ReasonForbidden:          dispatcher.Permanent,
	// Temporary: try again later. After ExpiredProviderToken with a new
	// provider token (Notify renews it); after TooManyProviderTokenUpdates
	// with the same one, which APNs takes once its 20 minutes are over.
	apns2.ReasonIdleTimeout:                 dispatcher.Retry,
	apns2.ReasonExpiredProviderToken:        dispatcher.Retry,
	apns2.ReasonTooManyProviderTokenUpdates: dispatcher.Retry,
	apns2.ReasonTooManyRequests:             dispatcher.Retry,
	apns2.ReasonInternalServerError:         dispatcher.Retry,
	apns2.ReasonServiceUnavailable:          dispatcher.Retry,
	apns2.ReasonShutdown:                    dispatcher.Retry,
	// The app's credentials are wrong: an operator must act.
	apns2.ReasonInvalidProviderToken:      dispatcher.Config,
	apns2.ReasonMissingProviderToken:      dispatcher.Config,
	apns2.ReasonBadCertificate:            dispatcher.Config,
	apns2.ReasonBadCertificateEnvironment: dispatcher.Config,
	"UnrelatedKeyIdInToken":               dispatcher.Config,
	"BadEnvironmentKeyIdInToken":          dispatcher.Config,
}

// Classify turns an APNs answer other than 200 into a dispatcher error;
// a 410's Timestamp is taken as exact (the notifier reads APNs'
// milliseconds into it, where apns2 would keep whole seconds). A
// reason APNs has not documented is classified by its status code and
// reported as "Other", so metric labels stay bounded.
func Classify(res *apns2.Response) *dispatcher.Error {
	err := fmt.Errorf("apns: %d %s", res.StatusCode, res.Reason)
	if class, ok := reasonClass[res.Reason]; ok {
		e := &dispatcher.Error{Class: class, Reason: res.Reason, Err: err}
		// A token of the other environment is a BadDeviceToken, and one of
		// another app a DeviceTokenNotForTopic: dead only if the app's
		// topic and environment are right.
		e.ForApp = res.Reason == apns2.ReasonBadDeviceToken || res.Reason == apns2.ReasonDeviceTokenNotForTopic
		if res.StatusCode == http.StatusGone && !res.Timestamp.IsZero() {
			// When APNs learned the token was gone, to the millisecond
			// APNs sends.
			e.DeadSince = res.Timestamp.Time
		}
		return e
	}
	var class dispatcher.Class
	switch {
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		class = dispatcher.Retry
	case res.StatusCode == http.StatusForbidden:
		class = dispatcher.Config
	case res.StatusCode == http.StatusGone:
		class = dispatcher.TokenDead
	default:
		class = dispatcher.Permanent
	}
	return &dispatcher.Error{Class: class, Reason: "Other", Err: err}
}

// classifyGoAway classifies a push APNs did not process because it closed
// the connection with a GOAWAY, whose debug data holds a JSON reason as an
// answer's body does (BadCertificateEnvironment, Shutdown, IdleTimeout…).
// The reason is one about the whole connection: one that would drop the
// push or its device token counts as a passing failure, and a GOAWAY with
// no reason in it as a passing transport failure, "goaway".
func classifyGoAway(ge *h2client.GoAwayError) *dispatcher.Error {
	var body struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(ge.DebugData, &body) != nil || body.Reason == "" {
		return &dispatcher.Error{Class: dispatcher.Retry, Reason: "goaway", Err: ge}
	}
	class, ok := reasonClass[body.Reason]
	switch {
	case !ok:
		return &dispatcher.Error{Class: dispatcher.Retry, Reason: "Other", Err: ge}
	case class == dispatcher.TokenDead || class == dispatcher.Permanent:
		class = dispatcher.Retry
	}
	return &dispatcher.Error{Class: class, Reason: body.Reason, Err: ge}
}

// ErrNotAPNs is returned for a push whose app is not an APNs app.
var ErrNotAPNs = errors.New("apns: not an APNs app")
