// Package identity serves the two Amazon Cognito Identity operations an AWS
// SDK's Cognito credentials flow calls, GetId and GetCredentialsForIdentity,
// so that apps get pushsync identity credentials without code changes.
//
// They are JSON 1.1 operations: POST / with Content-Type
// application/x-amz-json-1.1 and X-Amz-Target
// AWSCognitoIdentityService.<Operation>, unsigned. They share a listener
// with the Cognito Sync API, whose requests never carry X-Amz-Target; use
// IsIdentityRequest to route them here.
//
// An identity pool allows unauthenticated identities, OpenID Connect logins,
// or both (see registry.IdentityPool). A login is an ID token in Logins,
// keyed by the provider's name (its issuer URL without "https://"), signed
// with RS256 or ES256 by a key of the provider's JSON Web Key Set.
//
// GetCredentialsForIdentity with an unauthenticated identity and a login
// links the login to it, as a guest who signs in expects: the identity is
// the login's from then on. A login that has an identity already keeps it:
// the answer is that identity's credentials and id, which the AWS SDKs'
// credentials providers take as the new identity; the guest identity stays
// as it was, and its datasets are not merged into the login's.
//
// Unsupported: linking several logins to one identity, developer
// authenticated identities, roles (CustomRoleArn is ignored) and the
// GetOpenIdToken ("basic") flow.
package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/awsproto"
	"github.com/pushsync/pushsync/internal/ratelimit"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/cognito"
)

// TargetPrefix starts the X-Amz-Target header of every Cognito Identity
// request.
const TargetPrefix = "AWSCognitoIdentityService."

// IsIdentityRequest reports whether r is a Cognito Identity request: a POST
// to / whose X-Amz-Target names an AWSCognitoIdentityService operation.
func IsIdentityRequest(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/" && strings.HasPrefix(r.Header.Get("X-Amz-Target"), TargetPrefix)
}

// Registry is what the handler reads and writes in the registry;
// *registry.Registry is one.
type Registry interface {
	IdentityPool(ctx context.Context, id string) (registry.IdentityPool, error)
	NewIdentity(ctx context.Context, pool string) (string, error)
	IdentityForLogin(ctx context.Context, pool, issuer, subject string) (string, bool, error)
	LinkLogin(ctx context.Context, identityID, pool, issuer, subject string) (string, error)
	Identity(ctx context.Context, identityID string) (registry.IdentityRecord, error)
	IssuePoolCredential(ctx context.Context, pool, identity string, ttl time.Duration) (registry.IdentityCredential, error)
}

// Options configures a Handler.
type Options struct {
	// CredentialTTL is the lifetime of the credentials
	// GetCredentialsForIdentity issues. If not set, 1 hour.
	CredentialTTL time.Duration
	// HTTPClient fetches OpenID Connect providers' signing keys. If not
	// set, a client with a 10 second timeout.
	HTTPClient *http.Client
	// Now returns the current time. If not set, time.Now.
	Now func() time.Time
	// MaxBodyBytes bounds a request body. If not set, 64 KiB.
	MaxBodyBytes int64
	// RateLimit is how many calls that store something, GetId creating an
	// unauthenticated identity and GetCredentialsForIdentity issuing a
	// credential, one client address may make per second on average;
	// more are refused with TooManyRequestsException, which AWS SDKs
	// retry. IPv6 clients are counted per /64. If not set, no limit.
	RateLimit float64
	// RateBurst is how many such calls one client address may make at
	// once. If not set, 50.
	RateBurst int
	// TrustedProxies are the address ranges of the proxies in front of the
	// server. A request from one of them is counted against the right-most
	// X-Forwarded-For address not in these ranges, rather than against the
	// proxy. If not set, none: a request is counted against its TCP peer.
	TrustedProxies []netip.Prefix
	// Metrics registers the handler's metrics, and must not hold them
	// already. If not set, they are not registered.
	Metrics prometheus.Registerer
}

// maxRateLimitedClients bounds the client addresses the rate limit keeps
// track of at once (about 100 bytes each); beyond it the least recently
// seen are forgotten.
const maxRateLimitedClients = 100_000

// Handler serves the Cognito Identity operations. Create it with New.
type Handler struct {
	reg  Registry
	opts Options
	log  zerolog.Logger
	keys *keyCache

	limit     *ratelimit.Limiter // nil: no limit
	throttled *prometheus.CounterVec
	refusals  *awsproto.Refusals
}

// New returns a Handler on the registry.
func New(reg Registry, opts Options, log zerolog.Logger) *Handler {
	if opts.CredentialTTL <= 0 {
		opts.CredentialTTL = time.Hour
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.RateBurst <= 0 {
		opts.RateBurst = 50
	}
	h := &Handler{reg: reg, opts: opts, log: log, keys: newKeyCache(opts.HTTPClient, opts.Now, log), refusals: awsproto.NewRefusals(),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_identity_throttled_total",
			Help: "Cognito Identity calls refused with TooManyRequestsException because their client address was over the rate limit, by operation.",
		}, []string{"operation"}),
	}
	if opts.RateLimit > 0 {
		h.limit = ratelimit.New(opts.RateLimit, opts.RateBurst, maxRateLimitedClients, opts.Now)
	}
	if opts.Metrics != nil {
		opts.Metrics.MustRegister(h.throttled)
	}
	return h
}

// ServeHTTP answers one Cognito Identity request. It sets x-amzn-RequestId
// unless the caller already did.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := w.Header().Get("X-Amzn-RequestId")
	if requestID == "" {
		requestID = uuid.NewString()
		w.Header().Set("X-Amzn-RequestId", requestID)
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), TargetPrefix)
	log := h.log.With().Str("request_id", requestID).Str("operation", op).Logger()
	out, err := h.serve(r, op)
	if err != nil {
		awsproto.Fail(w, contentType, log, h.refusals, err)
		return
	}
	writeJSON(w, out)
}

func (h *Handler) serve(r *http.Request, op string) (any, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, unknownOperation(http.StatusNotFound, "Cognito Identity operations are served at POST /, not %s %s", r.Method, r.URL.Path)
	}
	target := r.Header.Get("X-Amz-Target")
	if !strings.HasPrefix(target, TargetPrefix) {
		return nil, unknownOperation(http.StatusBadRequest, "X-Amz-Target %.64q is not an AWSCognitoIdentityService operation", target)
	}
	var fn func(ctx context.Context, client string, body []byte) (any, error)
	switch op {
	case "GetId":
		fn = h.getID
	case "GetCredentialsForIdentity":
		fn = h.getCredentialsForIdentity
	default:
		return nil, unknownOperation(http.StatusBadRequest, "operation %.64q is not supported; pushsync serves GetId and GetCredentialsForIdentity", op)
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		return nil, tooLarge(h.opts.MaxBodyBytes)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.opts.MaxBodyBytes+1))
	if err != nil {
		return nil, serialization("cannot read the request body: %v", err)
	}
	if int64(len(body)) > h.opts.MaxBodyBytes {
		return nil, tooLarge(h.opts.MaxBodyBytes)
	}
	return fn(r.Context(), h.client(r), body)
}

// client returns the rate limit key of the client that sent r, or "" when
// there is no limit.
func (h *Handler) client(r *http.Request) string {
	if h.limit == nil {
		return ""
	}
	return ratelimit.Key(ratelimit.ClientAddr(r, h.opts.TrustedProxies))
}

// throttle takes one call of op from client's share, or says that it is
// spent.
func (h *Handler) throttle(client, op string) error {
	if h.limit == nil || h.limit.Allow(client) {
		return nil
	}
	h.throttled.WithLabelValues(op).Inc()
	return tooManyRequests("Rate exceeded: too many %s calls from this client address; retry later.", op)
}

// decode reads a JSON body into v. An empty body reads as {}; unknown
// members are ignored, as AWS services do.
func decode(body []byte, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return serialization("request body must be a JSON object, got a JSON %s", te.Value)
			}
			return serialization("member %s has the wrong type: got a JSON %s", te.Field, te.Value)
		}
		return serialization("request body is not valid JSON: %v", err)
	}
	if dec.More() {
		return serialization("request body holds more than one JSON value")
	}
	return nil
}

type getIDInput struct {
	IdentityPoolId string
	AccountId      string
	Logins         map[string]string
}

type getIDOutput struct {
	IdentityId string
}

// getID answers GetId: a new identity without Logins, the login's identity
// with one.
func (h *Handler) getID(ctx context.Context, client string, body []byte) (any, error) {
	var in getIDInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	pool, err := h.pool(ctx, in.IdentityPoolId)
	if err != nil {
		return nil, err
	}
	if len(in.Logins) == 0 {
		if !pool.AllowUnauthenticated {
			return nil, notAuthorized("Unauthenticated access is not supported for this identity pool.")
		}
		if err := h.throttle(client, "GetId"); err != nil {
			return nil, err
		}
		id, err := h.reg.NewIdentity(ctx, pool.ID)
		if err != nil {
			return nil, registryError(err, pool.ID)
		}
		return getIDOutput{IdentityId: id}, nil
	}
	l, err := h.login(ctx, &pool, in.Logins)
	if err != nil {
		return nil, err
	}
	id, created, err := h.reg.IdentityForLogin(ctx, pool.ID, l.issuer, l.subject)
	if err != nil {
		return nil, registryError(err, pool.ID)
	}
	if created {
		h.log.Info().Str("identity_pool", pool.ID).Str("identity", id).Str("issuer", l.issuer).Msg("identity created for a first login")
	}
	return getIDOutput{IdentityId: id}, nil
}

type getCredentialsInput struct {
	IdentityId    string
	Logins        map[string]string
	CustomRoleArn string
}

type credentialsOutput struct {
	AccessKeyId  string
	SecretKey    string
	SessionToken string
	Expiration   int64 // epoch seconds
}

type getCredentialsOutput struct {
	IdentityId  string
	Credentials credentialsOutput
}

// loginsDontMatch is the refusal of credentials to an authenticated
// identity without a valid login of its own, in the real service's words.
const loginsDontMatch = "Logins don't match. Please include at least one valid login for this identity or identity pool."

// getCredentialsForIdentity answers GetCredentialsForIdentity. An
// authenticated identity must present a login of its own; an
// unauthenticated one needs its pool to still allow unauthenticated access,
// unless it presents a login, which is linked to it: the answer is then
// for the login's identity, which is the unauthenticated one unless the
// login had an identity already.
func (h *Handler) getCredentialsForIdentity(ctx context.Context, client string, body []byte) (any, error) {
	var in getCredentialsInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := cognito.ValidateIdentityID(in.IdentityId); err != nil {
		return nil, invalidParameter("%v", err)
	}
	rec, err := h.reg.Identity(ctx, in.IdentityId)
	if errors.Is(err, registry.ErrIdentityNotFound) {
		return nil, resourceNotFound("Identity '%s' not found.", in.IdentityId)
	}
	if err != nil {
		return nil, registryError(err, "")
	}
	pool, err := h.pool(ctx, rec.PoolID)
	if err != nil {
		return nil, err
	}
	var link *login
	switch {
	case rec.Authenticated():
		if len(in.Logins) == 0 {
			return nil, notAuthorized(loginsDontMatch)
		}
		l, err := h.login(ctx, &pool, in.Logins)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(rec.Logins, registry.LoginName(l.issuer, l.subject)) {
			return nil, notAuthorized(loginsDontMatch)
		}
	case len(in.Logins) > 0:
		l, err := h.login(ctx, &pool, in.Logins)
		if err != nil {
			return nil, err
		}
		link = &l
	case !pool.AllowUnauthenticated:
		return nil, notAuthorized("Unauthenticated access is not supported for this identity pool.")
	}
	if err := h.throttle(client, "GetCredentialsForIdentity"); err != nil {
		return nil, err
	}
	id := rec.ID
	if link != nil {
		if id, err = h.link(ctx, &rec, *link); err != nil {
			return nil, err
		}
	}
	// Minted only while the pool exists, so that the credential is bound
	// to it: one the pool was deleted under since it was read above would
	// otherwise be bound to no pool and outlive it.
	c, err := h.reg.IssuePoolCredential(ctx, rec.PoolID, id, h.opts.CredentialTTL)
	if err != nil {
		return nil, registryError(err, rec.PoolID)
	}
	return getCredentialsOutput{IdentityId: id, Credentials: credentialsOutput{
		AccessKeyId:  c.AccessKeyID,
		SecretKey:    c.SecretAccessKey,
		SessionToken: c.SessionToken,
		Expiration:   c.Expiration.Unix(),
	}}, nil
}

// link links the verified login l to the unauthenticated identity rec and
// returns the login's identity: rec's, or the one the login had already.
func (h *Handler) link(ctx context.Context, rec *registry.IdentityRecord, l login) (string, error) {
	id, err := h.reg.LinkLogin(ctx, rec.ID, rec.PoolID, l.issuer, l.subject)
	switch {
	case errors.Is(err, registry.ErrIdentityHasLogin):
		// Another login was linked to it since it was read.
		return "", notAuthorized(loginsDontMatch)
	case errors.Is(err, registry.ErrIdentityNotFound):
		return "", resourceNotFound("Identity '%s' not found.", rec.ID)
	case err != nil:
		return "", registryError(err, rec.PoolID)
	case id == rec.ID:
		h.log.Info().Str("identity_pool", rec.PoolID).Str("identity", id).Str("issuer", l.issuer).Msg("login linked to an unauthenticated identity")
	default:
		h.log.Info().Str("identity_pool", rec.PoolID).Str("identity", rec.ID).Str("login_identity", id).Str("issuer", l.issuer).
			Msg("unauthenticated identity given a login that has an identity already; answered with the login's identity")
	}
	return id, nil
}

// pool validates an identity pool id and reads the pool.
func (h *Handler) pool(ctx context.Context, id string) (registry.IdentityPool, error) {
	if err := cognito.ValidateIdentityPoolID(id); err != nil {
		return registry.IdentityPool{}, invalidParameter("%v", err)
	}
	p, err := h.reg.IdentityPool(ctx, id)
	if err != nil {
		return registry.IdentityPool{}, registryError(err, id)
	}
	return p, nil
}

// login verifies the single login of a Logins map.
func (h *Handler) login(ctx context.Context, pool *registry.IdentityPool, logins map[string]string) (login, error) {
	if len(logins) != 1 {
		return login{}, invalidParameter("Logins: pushsync accepts exactly one login, got %d", len(logins))
	}
	var name, token string
	for name, token = range logins {
	}
	if name == "" || len(name) > 128 {
		return login{}, invalidParameter("Logins: a provider name is 1 to 128 characters")
	}
	if token == "" || len(token) > maxTokenLen {
		return login{}, invalidParameter("Logins: a login token is 1 to %d characters", maxTokenLen)
	}
	l, e := h.verifyLogin(ctx, pool, name, token)
	if e != nil {
		return login{}, e
	}
	return l, nil
}

// registryError maps a registry error about the pool poolID, or one of
// its identities, to its API error; unknown errors are the server's fault.
func registryError(err error, poolID string) error {
	var fe *cognito.FieldError
	switch {
	case errors.As(err, &fe):
		return invalidParameter("%v", fe)
	case errors.Is(err, registry.ErrPoolNotFound):
		return resourceNotFound("IdentityPool '%s' not found.", poolID)
	}
	return err
}
