// Package api serves the Amazon Cognito Sync REST-JSON API, so that AWS SDK
// clients work against pushsync unchanged, and beside it pushsync's own
// admin API for operators. Every request is authenticated with AWS
// Signature Version 4: developer credentials may do everything and act for
// any identity; identity credentials may act only for their own identity.
//
// Served Cognito Sync operations: RegisterDevice, SubscribeToDataset,
// UnsubscribeFromDataset, GetIdentityPoolConfiguration and
// SetIdentityPoolConfiguration. The admin API (signing service "pushsync")
// manages platform apps and issues identity credentials; docs/api.md
// describes both.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/awsproto"
	"github.com/pushsync/pushsync/internal/keypurge"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api/sigv4"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/removals"
)

// Signing service names.
const (
	// CognitoSyncService is the SigV4 service of the Cognito Sync API.
	CognitoSyncService = "cognito-sync"
	// AdminService is the SigV4 service of the admin API.
	AdminService = "pushsync"
)

// Registry is what the API reads and writes in the device registry.
type Registry interface {
	RegisterDevice(ctx context.Context, pool, identity string, platform registry.Platform, token string) (registry.Device, bool, error)
	Subscribe(ctx context.Context, pool, identity, dataset, deviceID string) error
	Unsubscribe(ctx context.Context, pool, identity, dataset, deviceID string) error
	Registration(ctx context.Context, pool, identity string) (*registry.Registration, error)
	RemoveDevice(ctx context.Context, pool, identity, deviceID, reason string) (registry.Device, error)
	ClearRemoval(ctx context.Context, pool, identity, deviceID string) error
	PoolPush(ctx context.Context, pool string) (registry.PoolPush, error)
	PoolStreams(ctx context.Context, pool string) (*registry.Streams, error)
	UpdatePoolConfig(ctx context.Context, pool string, change func(*registry.PoolConfig) error) (registry.PoolConfig, error)
	CreateApp(ctx context.Context, app registry.App) (registry.App, error)
	ReplaceApp(ctx context.Context, app registry.App) (registry.App, error)
	App(ctx context.Context, name string) (registry.App, error)
	Apps(ctx context.Context) ([]registry.App, error)
	DeleteApp(ctx context.Context, name string) error
	IssuePoolCredential(ctx context.Context, pool, identity string, ttl time.Duration) (registry.IdentityCredential, error)
	CreateIdentityPool(ctx context.Context, region string, pool registry.IdentityPool) (registry.IdentityPool, error)
	RestoreIdentityPool(ctx context.Context, pool registry.IdentityPool) (registry.IdentityPool, error)
	IdentityPool(ctx context.Context, id string) (registry.IdentityPool, error)
	IdentityPools(ctx context.Context) ([]registry.IdentityPool, error)
	UpdateIdentityPool(ctx context.Context, pool registry.IdentityPool) (registry.IdentityPool, error)
	DeleteIdentityPool(ctx context.Context, id string) error
	PurgeIdentityPool(ctx context.Context, id string, more []keypurge.Phase, cursor string, deadline time.Time) (keypurge.Result, error)
	CheckPool(ctx context.Context, pool string) error
	CredentialInPool(ctx context.Context, accessKeyID, pool string) (registry.IdentityCredential, error)
	SecretsStatus(ctx context.Context) (registry.SecretsReport, error)
	ResealSecrets(ctx context.Context, progress func(registry.SecretsReport)) (registry.SecretsReport, error)
}

// Publisher publishes dataset-change events; *event.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, e *event.DatasetChanged) (*jetstream.PubAck, error)
}

// DeviceEvents announces removed devices; *event.Publisher is one.
type DeviceEvents = removals.Publisher

// Options configures a Server.
type Options struct {
	// Publisher publishes the events of the admin API's PublishEvent. If
	// not set, that operation answers InvalidConfigurationException.
	Publisher Publisher
	// DeviceEvents announces each device the admin API removes with a
	// DeviceRemoved event, as the dispatcher announces those it removes;
	// the removal is noted with the device's, for a sweep to publish an
	// event that could not be published at once (see sync/removals). If
	// not set, no event is published.
	DeviceEvents DeviceEvents
	// Store holds datasets and records. If not set, the dataset operations
	// answer InvalidConfigurationException.
	Store Store
	// Relay publishes each committed change. If not set, changes stay
	// marked for a relay elsewhere to publish.
	Relay Relay
	// SessionTokenKey signs SyncSessionTokens; every API process of a
	// deployment must use the same one (see SessionTokenKey). Required
	// with Store.
	SessionTokenKey []byte
	// PreviousSessionTokenKeys are also accepted when checking a
	// SyncSessionToken, never used to sign one: the keys of the master
	// keys a rotation replaced, so that syncs under way finish.
	PreviousSessionTokenKeys [][]byte
	// SessionTokenTTL is how long a SyncSessionToken stays valid. If not
	// set, 1 hour.
	SessionTokenTTL time.Duration
	// AfterCommit, if set, runs after a change is committed and before it
	// is published; tests use it to kill the process at that point.
	AfterCommit func()
	// Bulk runs BulkPublish. If not set, BulkPublish answers
	// InvalidConfigurationException.
	Bulk BulkPublisher
	// DeadLetters lists, replays and discards dead letters for the admin
	// API. If not set, those operations answer InvalidConfigurationException.
	DeadLetters DeadLetterStore
	// Identity serves the Cognito Identity operations (unsigned JSON 1.1
	// requests: POST / with X-Amz-Target) on the same listener. If not
	// set, they are unknown operations.
	Identity http.Handler
	// Regions are accepted in signatures' credential scope. If not set,
	// any region.
	Regions []string
	// MaxClockSkew bounds the difference between a request's signing time
	// and the server clock. If not set, 5 minutes.
	MaxClockSkew time.Duration
	// MaxBodyBytes bounds a request body. If not set, 8 MiB: a dataset's
	// 1 MiB of keys and values, a record value as long as the model allows
	// among them, takes 6 MiB on the wire when every byte is a control
	// character JSON escapes as \u00XX, and the patches' other members
	// take the rest.
	MaxBodyBytes int64
	// DeveloperAccessKeyID and DeveloperSecretAccessKey are the developer
	// credentials. If not set, there are none.
	DeveloperAccessKeyID     string
	DeveloperSecretAccessKey string
	// CORSAllowedOrigins are the browser origins allowed; "*" is any. If
	// not set, none.
	CORSAllowedOrigins []string
	// IdentityCredentialTTL is the default lifetime of issued identity
	// credentials. If not set, 1 hour.
	IdentityCredentialTTL time.Duration
	// ARNRegion and ARNAccount are written into the platform application
	// ARNs the admin API shows. If not set, us-east-1 and 000000000000.
	ARNRegion, ARNAccount string
	// Now returns the current time. If not set, time.Now.
	Now func() time.Time
}

// Server is the HTTP API. Create it with New; serve Handler.
type Server struct {
	reg      Registry
	opts     Options
	log      zerolog.Logger
	sync     *sigv4.Verifier
	admin    *sigv4.Verifier
	mux      *http.ServeMux
	metrics  *metrics
	store    Store
	sessions *sessionTokens
	refusals *awsproto.Refusals
}

// New returns a Server.
func New(reg Registry, opts Options, log zerolog.Logger, metricsReg prometheus.Registerer) (*Server, error) {
	if reg == nil {
		return nil, errors.New("api: a registry is required")
	}
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = 5 * time.Minute
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 8 << 20
	}
	if opts.IdentityCredentialTTL <= 0 {
		opts.IdentityCredentialTTL = time.Hour
	}
	if opts.ARNRegion == "" {
		opts.ARNRegion = "us-east-1"
	}
	if opts.ARNAccount == "" {
		opts.ARNAccount = "000000000000"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTokenTTL <= 0 {
		opts.SessionTokenTTL = time.Hour
	}
	if opts.Store != nil && len(opts.SessionTokenKey) < 16 {
		return nil, errors.New("api: a session token key of at least 16 bytes is required with a store")
	}
	m, err := newMetrics(metricsReg)
	if err != nil {
		return nil, err
	}
	s := &Server{reg: reg, opts: opts, log: log, mux: http.NewServeMux(), metrics: m, store: opts.Store,
		sessions: &sessionTokens{key: opts.SessionTokenKey, previous: opts.PreviousSessionTokenKeys, ttl: opts.SessionTokenTTL, now: opts.Now},
		refusals: awsproto.NewRefusals()}
	verifier := func(service string) *sigv4.Verifier {
		return &sigv4.Verifier{Service: service, Regions: opts.Regions, MaxSkew: opts.MaxClockSkew, Now: opts.Now, Lookup: s.lookup}
	}
	s.sync, s.admin = verifier(CognitoSyncService), verifier(AdminService)
	s.routes()
	return s, nil
}

// Handler returns the http.Handler serving the API.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// principal is who signed a request.
type principal struct {
	accessKeyID string
	developer   bool
	pool        string // identity credentials only
	identity    string
	// poolDeleted marks identity credentials whose identity pool was
	// deleted after they were issued.
	poolDeleted bool
	// requestPool is the identity pool the request's path names, if any;
	// lookup reads it to check identity credentials against it.
	requestPool string
}

type principalKey struct{}

// lookup finds the secret of an access key for the SigV4 verifier and notes
// the principal in the request context's holder.
func (s *Server) lookup(ctx context.Context, accessKeyID string) (sigv4.Credential, error) {
	holder, _ := ctx.Value(principalKey{}).(*principal)
	if s.opts.DeveloperAccessKeyID != "" && accessKeyID == s.opts.DeveloperAccessKeyID {
		if holder != nil {
			*holder = principal{accessKeyID: accessKeyID, developer: true}
		}
		return sigv4.Credential{AccessKeyID: accessKeyID, SecretAccessKey: s.opts.DeveloperSecretAccessKey}, nil
	}
	requestPool := ""
	if holder != nil {
		requestPool = holder.requestPool
	}
	c, err := s.reg.CredentialInPool(ctx, accessKeyID, requestPool)
	expired := errors.Is(err, registry.ErrCredentialExpired)
	switch {
	case errors.Is(err, registry.ErrCredentialPoolDeleted):
		// Refused once the signature proves the caller holds the
		// secret, as for expired credentials.
		if holder != nil {
			*holder = principal{accessKeyID: accessKeyID, pool: c.IdentityPoolID, identity: c.IdentityID, poolDeleted: true}
		}
	case expired:
		// Refused by the verifier, once the signature proves the
		// caller holds the secret.
	case errors.Is(err, registry.ErrNoCredential):
		return sigv4.Credential{}, sigv4.ErrUnknownAccessKey
	case errors.Is(err, registry.ErrCredentialUnreadable):
		// Its secret is lost with the master key that sealed it: the
		// client is told it expired, so that its SDK fetches new
		// credentials, which open.
		s.log.Warn().Err(err).Msg("identity credentials no configured master key opens were refused as expired")
		return sigv4.Credential{}, fmt.Errorf("%w: %w", sigv4.ErrExpiredToken, err)
	case err != nil:
		return sigv4.Credential{}, err
	case holder != nil:
		*holder = principal{accessKeyID: accessKeyID, pool: c.IdentityPoolID, identity: c.IdentityID}
	}
	return sigv4.Credential{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Expired: expired}, nil
}

// request is what a handler gets: the verified principal and the body.
type request struct {
	*http.Request
	who  principal
	body []byte
}

// handlerFunc serves one operation; it returns the response value (JSON
// encoded with status 200, or with the status of a *created) or an error.
type handlerFunc func(r *request) (any, error)

// created marks a response answered with 201.
type created struct{ v any }

// route is one operation in the mux.
type route struct {
	s         *Server
	operation string
	service   string
	fn        handlerFunc
}

func (s *Server) handle(pattern, operation, service string, fn handlerFunc) {
	s.mux.Handle(pattern, route{s: s, operation: operation, service: service, fn: fn})
}

func (rt route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status := rt.s.serve(w, r, rt, w.Header().Get("X-Amzn-RequestId"))
	rt.s.metrics.requests.WithLabelValues(rt.operation, statusClass(status)).Inc()
	rt.s.metrics.duration.WithLabelValues(rt.operation).Observe(time.Since(start).Seconds())
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	if s.cors(w, r) {
		return
	}
	if s.opts.Identity != nil && isIdentityRequest(r) {
		start := time.Now()
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AWSCognitoIdentityService.")
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		s.opts.Identity.ServeHTTP(sw, r)
		if op != "GetId" && op != "GetCredentialsForIdentity" {
			op = "Unknown" // keep metric labels bounded
		}
		s.metrics.requests.WithLabelValues("CognitoIdentity."+op, statusClass(sw.status)).Inc()
		s.metrics.duration.WithLabelValues("CognitoIdentity." + op).Observe(time.Since(start).Seconds())
		return
	}
	s.mux.ServeHTTP(w, r)
}

// isIdentityRequest reports whether r is a Cognito Identity call: Cognito
// Sync requests never carry X-Amz-Target.
func isIdentityRequest(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/" && strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AWSCognitoIdentityService.")
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, rt route, requestID string) int {
	log := s.log.With().Str("request_id", requestID).Str("operation", rt.operation).Logger()
	fail := func(err error) int { return awsproto.Fail(w, awsproto.RESTJSON, log, s.refusals, err) }

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fail(tooLarge(s.opts.MaxBodyBytes))
		}
		return fail(serialization("cannot read the request body: %v", err))
	}

	who := &principal{requestPool: r.PathValue("IdentityPoolId")}
	r = r.WithContext(context.WithValue(r.Context(), principalKey{}, who))
	verifier := s.sync
	if rt.service == AdminService {
		verifier = s.admin
	}
	if _, err := verifier.Verify(r, body); err != nil {
		var se *sigv4.Error
		if errors.As(err, &se) {
			return fail(&Error{Status: se.Status, Type: se.Code, Message: se.Message})
		}
		return fail(err)
	}
	if who.poolDeleted {
		return fail(notAuthorized("identity pool %s has been deleted; credentials issued for it are no longer valid", who.pool))
	}
	if rt.service == AdminService && !who.developer {
		return fail(notAuthorized("the admin API needs developer credentials"))
	}
	if pool := r.PathValue("IdentityPoolId"); who.developer && pool != "" {
		// Developer credentials act in any identity pool, but only in
		// one that exists: a mistyped pool id is refused before anything
		// is written under it. Identity credentials are checked against
		// their pool in lookup.
		if err := s.reg.CheckPool(r.Context(), pool); err != nil {
			return fail(poolError(err))
		}
	}

	out, err := rt.fn(&request{Request: r, who: *who, body: body})
	if err != nil {
		return fail(err)
	}
	status := http.StatusOK
	if c, ok := out.(created); ok {
		status, out = http.StatusCreated, c.v
	}
	writeJSON(w, status, out)
	log.Debug().Int("status", status).Str("access_key", who.accessKeyID).Msg("request served")
	return status
}

// decode reads the JSON body into v. An empty body reads as {}. Unknown
// members are ignored, as AWS services do; malformed JSON and members of
// the wrong type are SerializationExceptions.
func (r *request) decode(v any) error {
	body := bytes.TrimSpace(r.body)
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
			return serialization("member %s must be %s, got a JSON %s", te.Field, jsonKind(te.Type), te.Value)
		}
		return serialization("request body is not valid JSON: %v", err)
	}
	if dec.More() {
		return serialization("request body holds more than one JSON value")
	}
	return nil
}

// jsonKind says what JSON a member of Go type t must be.
func jsonKind(t reflect.Type) string {
	if t == reflect.TypeFor[epoch]() {
		return "a timestamp, a number of seconds since the epoch"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a structure"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	}
	return "a number"
}

// actFor checks that the principal may act for the identity.
func (r *request) actFor(pool, identity string) error {
	if r.who.developer || (r.who.pool == pool && r.who.identity == identity) {
		return nil
	}
	return notAuthorized("credentials of identity %s may act only for that identity, not for %s in %s", r.who.identity, identity, pool)
}

// developerOnly checks that the principal holds developer credentials.
func (r *request) developerOnly(operation string) error {
	if r.who.developer {
		return nil
	}
	return notAuthorized("%s needs developer credentials", operation)
}

func statusClass(status int) string {
	switch {
	case status >= 500:
		return "5xx"
	case status >= 400:
		return "4xx"
	}
	return "2xx"
}

// cors answers preflight requests and adds the CORS response headers for
// allowed origins. It reports whether the request was fully answered.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	allowed := ""
	for _, o := range s.opts.CORSAllowedOrigins {
		if o == "*" || (origin != "" && strings.EqualFold(o, origin)) {
			allowed = o
			break
		}
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if len(s.opts.CORSAllowedOrigins) > 0 {
		// Whether the answer carries CORS headers depends on the Origin,
		// also when it carries none (no Origin, or one not allowed):
		// a cache must not hand that answer to a browser at an allowed
		// origin.
		w.Header().Add("Vary", "Origin")
	}
	if origin == "" || allowed == "" {
		if preflight {
			writeError(w, newError(http.StatusForbidden, "AccessDeniedException", "origin %q is not allowed", origin))
			return true
		}
		return false
	}
	h := w.Header()
	if allowed == "*" {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	h.Set("Access-Control-Expose-Headers", "x-amzn-RequestId, x-amzn-ErrorType, x-amzn-ErrorMessage, Date")
	if !preflight {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "authorization, content-type, x-amz-date, x-amz-security-token, x-amz-content-sha256, x-amz-user-agent, x-amz-target, x-amz-client-context, amz-sdk-invocation-id, amz-sdk-request")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
	return true
}
