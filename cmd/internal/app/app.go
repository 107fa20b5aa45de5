// Package app assembles pushsyncd from its components: it turns a
// config.Config into clients, a dispatcher and an operational HTTP server,
// runs them until the context ends and shuts them down in order. Tests run
// the whole daemon in-process through Run.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/dispatcher/apns"
	"github.com/pushsync/pushsync/dispatcher/fcm"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/term"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
	"github.com/pushsync/pushsync/sync/bulk"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/identity"
	"github.com/pushsync/pushsync/sync/relay"
	"github.com/pushsync/pushsync/sync/removals"
	"github.com/pushsync/pushsync/sync/store"
)

// Options are what Run needs besides the configuration.
type Options struct {
	// Logger receives the process log. If not set, one is made from
	// cfg.Log writing to Stderr.
	Logger *zerolog.Logger
	// Stderr is where the log goes when Logger is not set. If not set,
	// os.Stderr.
	Stderr io.Writer
	// Ready, if set, is called with the addresses the process serves once
	// it serves them.
	Ready func(Addrs)
	// AfterCommit, if set, runs after the API commits a dataset change and
	// before it publishes the change; fault tests kill the process there.
	AfterCommit func()
}

// Addrs are the listen addresses of a running process.
type Addrs struct {
	// HTTP serves /healthz, /readyz and /metrics.
	HTTP string
	// API serves the Cognito Sync and admin APIs; empty for role worker.
	API string
}

// NewLogger returns the logger cfg.Log describes.
func NewLogger(cfg config.LogConfig, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("log level: %w", err)
	}
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !term.Is(w)}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// Run runs the role cfg names until ctx is cancelled, then shuts down
// gracefully: in-flight sends finish and every message held is acked or
// handed back to the broker.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := opts.Logger
	if log == nil {
		w := opts.Stderr
		if w == nil {
			w = os.Stderr
		}
		l, err := NewLogger(cfg.Log, w)
		if err != nil {
			return err
		}
		log = &l
	}
	if cfg.Role == config.RoleDev {
		return runDev(ctx, cfg, *log, opts.Ready)
	}
	if cfg.Secrets.MasterKey == "" {
		return fmt.Errorf("secrets.master_key is required for role %s (make one with: openssl rand -base64 32)", cfg.Role)
	}
	keys := masterKeys(cfg.Secrets.MasterKeyBytes(), cfg.Secrets.SecondaryMasterKeyBytes())
	box, err := newBox(keys)
	if err != nil {
		return err
	}
	if cfg.Secrets.SecondaryMasterKey != "" {
		log.Warn().Msg("secrets.secondary_master_key is set: a master key rotation is under way (docs/deploy.md, \"Rotating the master key\")")
	}
	api := cfg.Role == config.RoleAPI || cfg.Role == config.RoleAll
	if api && cfg.API.DeveloperAccessKeyID == "" {
		// Else the first word of it is pushsyncctl's UnrecognizedClientException.
		log.Warn().Msg("no developer credentials: the admin API and pushsyncctl need them; set api.developer_access_key_id and api.developer_secret_access_key (or api.developer_secret_access_key_file), or PUSHSYNC_API_DEVELOPER_ACCESS_KEY_ID and PUSHSYNC_API_DEVELOPER_SECRET_ACCESS_KEY (or PUSHSYNC_API_DEVELOPER_SECRET_ACCESS_KEY_FILE)")
	}
	roots, err := loadRoots(cfg)
	if err != nil {
		return err
	}
	return runServices(ctx, cfg, *log, services{
		api:         api,
		worker:      cfg.Role == config.RoleWorker || cfg.Role == config.RoleAll,
		box:         box,
		masterKeys:  keys,
		roots:       roots,
		afterCommit: opts.AfterCommit,
	}, opts.Ready)
}

// newBox returns the box that seals secrets under the first of keys (the
// master key) and also opens those under the rest (the secondary one).
func newBox(keys [][]byte) (*secretbox.Box, error) {
	box, err := secretbox.New(keys[0], keys[1:]...)
	if err != nil {
		return nil, fmt.Errorf("secrets.master_key, secrets.secondary_master_key: %w", err)
	}
	return box, nil
}

// masterKeys lists the keys that are set, the current one first.
func masterKeys(keys ...[]byte) [][]byte {
	var set [][]byte
	for _, k := range keys {
		if k != nil {
			set = append(set, k)
		}
	}
	return set
}

// previousSessionTokenKeys derives the keys of SyncSessionTokens signed
// with the secondary master key, so that syncs under way finish whichever
// process signed their token during a rotation.
func previousSessionTokenKeys(masterKeys [][]byte) [][]byte {
	var keys [][]byte
	for _, k := range masterKeys[1:] {
		keys = append(keys, api.SessionTokenKey(k))
	}
	return keys
}

// services says what one process runs.
type services struct {
	api, worker bool
	box         *secretbox.Box
	masterKeys  [][]byte // the current one first, then the secondary one, if any
	roots       rootCAs
	afterCommit func()
}

// rootCAs are the trust roots of the push services and of OpenID Connect
// providers; nil means the system's.
type rootCAs struct{ apns, fcm, oidc *x509.CertPool }

func loadRoots(cfg *config.Config) (rootCAs, error) {
	var r rootCAs
	var err error
	if r.apns, err = loadPool(cfg.APNs.RootCAFile, "apns.root_ca_file"); err != nil {
		return r, err
	}
	if r.fcm, err = loadPool(cfg.FCM.RootCAFile, "fcm.root_ca_file"); err != nil {
		return r, err
	}
	r.oidc, err = loadOIDCRoots(cfg)
	return r, err
}

// loadOIDCRoots loads api.oidc_root_ca_file; the dev mode, whose push
// services are emulators of its own, needs it alone.
func loadOIDCRoots(cfg *config.Config) (*x509.CertPool, error) {
	return loadPool(cfg.API.OIDCRootCAFile, "api.oidc_root_ca_file")
}

func loadPool(path, key string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, path)
	}
	return pool, nil
}

// NewRedis returns the Redis client cfg describes: one node, a cluster or
// a Sentinel-managed master.
func NewRedis(cfg config.RedisConfig) (redis.UniversalClient, error) {
	o := &redis.UniversalOptions{
		Addrs:        cfg.Addrs,
		MasterName:   cfg.MasterName,
		Username:     cfg.Username,
		Password:     string(cfg.Password),
		DB:           cfg.DB,
		DialTimeout:  cfg.DialTimeout.Std(),
		ReadTimeout:  cfg.ReadTimeout.Std(),
		WriteTimeout: cfg.WriteTimeout.Std(),
		PoolSize:     cfg.PoolSize,
	}
	if cfg.TLS.Enabled {
		pool, err := loadPool(cfg.TLS.CAFile, "redis.tls.ca_file")
		if err != nil {
			return nil, err
		}
		o.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return redis.NewUniversalClient(o), nil
}

// StreamConfig is the event stream cfg describes.
func StreamConfig(c *config.Config) event.StreamConfig {
	cfg := c.NATS
	storage := jetstream.FileStorage
	if cfg.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	return event.StreamConfig{
		Name:                cfg.Stream,
		SubjectPrefix:       cfg.SubjectPrefix,
		DeviceSubjectPrefix: cfg.DeviceSubjectPrefix,
		Replicas:            cfg.Replicas,
		Storage:             storage,
		MaxAge:              c.StreamMaxAge(),
		Duplicates:          cfg.DuplicateWindow.Std(),
	}
}

// DeadLetterWindow is the dead-letter stream's deduplication window for
// cfg (config.Config.DeadLetterWindow).
func DeadLetterWindow(c *config.Config) time.Duration { return c.DeadLetterWindow() }

func runServices(ctx context.Context, cfg *config.Config, log zerolog.Logger, svc services, ready func(Addrs)) error {
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	rdb, err := NewRedis(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// Only the API checks identity pools, on every request.
	reg := registry.New(rdb, registry.Options{KeyPrefix: cfg.Redis.KeyPrefix, Secrets: svc.box, PoolCacheTTL: cfg.API.IdentityPoolCacheTTL.Std()})
	checks := []check{{name: "redis", fn: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }}}

	var (
		wg    sync.WaitGroup
		addrs Addrs
	)
	// Both roles use NATS: the worker consumes events, the API publishes them.
	nc, err := connectNATS(cfg.NATS, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc.Conn)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// An API alone keeps serving while NATS is away: changes are committed
	// with their markers and published when it is back, so NATS is shown
	// but does not take it out of service.
	checks = append(checks, check{name: "nats", fn: func(context.Context) error { return nc.Ready() }, shownOnly: !svc.worker})
	// Both addresses are bound before any work starts, so that one in use
	// stops pushsyncd before it has pulled an event or taken a request.
	var apiLn net.Listener
	if svc.api {
		if apiLn, err = bind(cfg.API.Listen, "api.listen"); err != nil {
			return err
		}
		defer apiLn.Close()
	}
	opsLn, err := bind(cfg.HTTP.Listen, "http.listen")
	if err != nil {
		return err
	}
	defer opsLn.Close()
	// The work below stops when the caller's ctx ends, or when the NATS
	// connection is lost for good. On an error return, the work already
	// started stops, and is waited for, before the connections close
	// under it.
	ctx, stopWork := context.WithCancel(ctx)
	defer func() { stopWork(); wg.Wait() }()
	// Both roles use the dead-letter stream: the worker fills it, the admin
	// API empties it. It is made when NATS first answers.
	deadLetters := &lazyDeadLetters{js: js, cfg: event.DeadLetterConfig{
		Stream: cfg.NATS.DeadLetterStream, SubjectPrefix: cfg.NATS.DeadLetterSubjectPrefix,
		EventSubjectPrefix: cfg.NATS.SubjectPrefix, Replicas: cfg.NATS.Replicas,
		MaxAge: cfg.NATS.DeadLetterMaxAge.Std(), Duplicates: DeadLetterWindow(cfg),
	}}
	// A NATS that lost its store takes the streams with it: they are made
	// again, for the relay to publish to, the worker to consume and dead
	// letters to be kept.
	wg.Add(1)
	go func() {
		defer wg.Done()
		keepStreams(ctx, js, StreamConfig(cfg), deadLetters, log)
	}()
	// Both roles remove devices, the worker those with dead tokens, the API
	// those an operator names, and both publish the device-removed events
	// that a crash or an outage left unpublished. A sweep reads only the
	// removals noted in the sweep index (one SCAN at start adopts those of
	// an earlier version); such events are rare and not urgent: every 10s,
	// or sooner after a sweep that left a recent removal to its remover.
	removed, err := newPublisher(cfg, js)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !ensureStream(ctx, js, StreamConfig(cfg), log) {
			return
		}
		sw := &removals.Sweeper{Registry: reg, Publisher: removed, Interval: 10 * time.Second, Log: log.With().Str("component", "removals").Logger()}
		sw.Run(ctx)
	}()
	if svc.worker {
		disp, closeNotifiers, err := newDispatcher(cfg, js, reg, deadLetters, svc.roots, log, metrics)
		if err != nil {
			return err
		}
		metrics.MustRegister(newCertificateExpiry(reg, log.With().Str("component", "dispatcher").Logger()))
		checks = append(checks, check{name: "dispatcher", fn: func(context.Context) error { return disp.Ready() }})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer closeNotifiers() // once the pushes in flight are done
			if !ensureStream(ctx, js, StreamConfig(cfg), log) {
				return
			}
			_ = disp.Run(ctx) // returns nil once ctx ends, after draining
		}()
	}

	var apiSrv *http.Server
	if svc.api {
		pub, err := newPublisher(cfg, js)
		if err != nil {
			return err
		}
		st := store.New(rdb, store.Options{KeyPrefix: cfg.Redis.KeyPrefix, MaxTombstones: cfg.API.MaxTombstones,
			MaxDeletedDatasets: cfg.API.MaxDeletedDatasets, Metrics: metrics})
		rel, err := relay.New(st, pub, relay.Options{DuplicateWindow: cfg.NATS.DuplicateWindow.Std()}, log.With().Str("component", "relay").Logger(), metrics)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !svc.worker && !ensureStream(ctx, js, StreamConfig(cfg), log) {
				return
			}
			_ = rel.Run(ctx) // publishes changes a crash or an outage left behind
		}()
		idOpts := identity.Options{
			CredentialTTL: cfg.API.IdentityCredentialTTL.Std(),
			RateLimit:     float64(cfg.API.IdentityRateLimit),
			RateBurst:     cfg.API.IdentityRateBurst,
			Metrics:       metrics,
		}
		for _, p := range cfg.API.TrustedProxies {
			tp, err := config.ParseTrustedProxy(p)
			if err != nil { // Validate has checked them
				return fmt.Errorf("api.trusted_proxies: %w", err)
			}
			idOpts.TrustedProxies = append(idOpts.TrustedProxies, tp)
		}
		if svc.roots.oidc != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: svc.roots.oidc, MinVersion: tls.VersionTLS12}
			idOpts.HTTPClient = &http.Client{Transport: tr, Timeout: 10 * time.Second}
		}
		idh := identity.New(reg, idOpts, log.With().Str("component", "identity").Logger())
		a := cfg.API
		srv, err := api.New(reg, api.Options{
			Publisher:                pub,
			DeviceEvents:             pub,
			Store:                    st,
			Relay:                    rel,
			SessionTokenKey:          api.SessionTokenKey(svc.masterKeys[0]),
			PreviousSessionTokenKeys: previousSessionTokenKeys(svc.masterKeys),
			AfterCommit:              svc.afterCommit,
			Bulk:                     bulk.New(reg, st, js, bulk.Options{Replicas: cfg.NATS.Replicas}, log.With().Str("component", "bulk").Logger()),
			Identity:                 idh,
			DeadLetters:              deadLetters,
			Regions:                  a.Regions,
			MaxClockSkew:             a.MaxClockSkew.Std(),
			MaxBodyBytes:             int64(a.MaxBodyBytes),
			DeveloperAccessKeyID:     a.DeveloperAccessKeyID,
			DeveloperSecretAccessKey: string(a.DeveloperSecretAccessKey),
			CORSAllowedOrigins:       a.CORSAllowedOrigins,
			IdentityCredentialTTL:    a.IdentityCredentialTTL.Std(),
			ARNRegion:                a.ARNRegion,
			ARNAccount:               a.ARNAccount,
		}, log.With().Str("component", "api").Logger(), metrics)
		if err != nil {
			return err
		}
		apiSrv, addrs.API = serve(apiLn, "api.listen", srv.Handler(), requestReadTimeout, log)
	}

	var stopping atomic.Bool
	ops, opsAddr := serve(opsLn, "http.listen", opsHandler(metrics, checks, &stopping), requestReadTimeout, log)
	addrs.HTTP = opsAddr
	log.Info().Str("role", cfg.Role).Str("http", addrs.HTTP).Str("api", addrs.API).Strs("redis", cfg.Redis.Addrs).Msg("pushsyncd starting")
	if ready != nil {
		ready(addrs)
	}

	var lost error
	select {
	case <-ctx.Done():
	case <-nc.Lost():
		// A supervisor restarts the process, which then says at once
		// whether the servers take its credentials now.
		lost = fmt.Errorf("nats: the connection to %s is closed for good: %w", nc.urls, nc.Err())
		stopWork()
	}
	stopping.Store(true)
	log.Info().Msg("stopping: finishing in-flight work")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout.Std())
	defer cancel()
	if apiSrv != nil {
		// In-flight API requests finish first; those still running when
		// http.shutdown_timeout runs out are cut off before Redis and NATS
		// close under them (a change they committed is published by the
		// relay of another process, or of this one when it starts again).
		if err := apiSrv.Shutdown(sctx); err != nil {
			log.Warn().Err(err).Msg("API requests still running at the end of http.shutdown_timeout are cut off")
			_ = apiSrv.Close()
		}
	}
	wg.Wait()
	_ = ops.Shutdown(sctx)
	log.Info().Msg("stopped")
	return lost
}

// newDispatcher builds the dispatcher with its notifiers; the returned
// function closes the notifiers' connections.
func newDispatcher(cfg *config.Config, js jetstream.JetStream, reg *registry.Registry, deadLetters *lazyDeadLetters, roots rootCAs, log zerolog.Logger, metrics prometheus.Registerer) (*dispatcher.Dispatcher, func(), error) {
	apnsN := apns.New(apns.Options{
		ProductionHost: cfg.APNs.ProductionHost,
		SandboxHost:    cfg.APNs.SandboxHost,
		RootCAs:        roots.apns,
		TTL:            cfg.Dispatcher.PushTTL.Std(),
	}, log.With().Str("component", "apns").Logger())
	fcmN, err := fcm.New(fcm.Options{
		Endpoint: cfg.FCM.Endpoint,
		RootCAs:  roots.fcm,
		TTL:      cfg.Dispatcher.PushTTL.Std(),
	}, log.With().Str("component", "fcm").Logger())
	if err != nil {
		apnsN.Close()
		return nil, nil, err
	}
	closeAll := func() { apnsN.Close(); fcmN.Close() }
	devices, err := newPublisher(cfg, js)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	dc := cfg.Dispatcher
	disp, err := dispatcher.New(js, reg, map[registry.AppKind]dispatcher.Notifier{
		registry.KindAPNs: apnsN,
		registry.KindFCM:  fcmN,
	}, dispatcher.Options{
		Stream:             cfg.NATS.Stream,
		SubjectPrefix:      cfg.NATS.SubjectPrefix,
		Consumer:           dc.Consumer,
		AckWait:            dc.AckWait.Std(),
		MaxDeliver:         dc.MaxDeliver,
		MaxAckPending:      dc.MaxAckPending,
		Workers:            dc.Workers,
		MaxConcurrentSends: dc.MaxConcurrentSends,
		SendTimeout:        dc.SendTimeout.Std(),
		RetryDelay:         dc.RetryDelay.Std(),
		MaxRetryDelay:      dc.MaxRetryDelay.Std(),
		AppCacheTTL:        dc.AppCacheTTL.Std(),
		PushTTL:            dc.PushTTL.Std(),
		RetryBudget:        dc.RetryBudget.Std(),
		CoalesceWindow:     dc.CoalesceWindow.Std(),
		CoalesceMaxHeld:    dc.CoalesceMaxHeld,
		DeviceBudget:       dc.DeviceBudget,
		BudgetWindow:       dc.DeviceBudgetWindow.Std(),
		DeviceEvents:       devices,
		DeadLetters:        deadLetters,
	}, log.With().Str("component", "dispatcher").Logger(), metrics)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return disp, closeAll, nil
}

// lazyDeadLetters creates the dead-letter stream on first use, so that a
// process can start while NATS is still unreachable.
type lazyDeadLetters struct {
	js  jetstream.JetStream
	cfg event.DeadLetterConfig
	mu  sync.Mutex
	dl  *event.DeadLetters
}

func (l *lazyDeadLetters) get(ctx context.Context) (*event.DeadLetters, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dl == nil {
		dl, err := event.NewDeadLetters(ctx, l.js, l.cfg)
		if err != nil {
			return nil, err
		}
		l.dl = dl
	}
	return l.dl, nil
}

// forgetGone drops the dead-letter stream made before if NATS answers that
// it does not exist any more, so that its next use creates it again. It
// reports whether it dropped it.
func (l *lazyDeadLetters) forgetGone(ctx context.Context) bool {
	l.mu.Lock()
	made := l.dl != nil
	l.mu.Unlock()
	if !made {
		return false
	}
	if _, err := l.js.Stream(ctx, l.cfg.Stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dl = nil
	return true
}

// Put stores a dead letter.
func (l *lazyDeadLetters) Put(ctx context.Context, id, subject string, data []byte, reason string, deliveries uint64, devices []string) error {
	dl, err := l.get(ctx)
	if err != nil {
		return err
	}
	return dl.Put(ctx, id, subject, data, reason, deliveries, devices)
}

// List lists dead letters.
func (l *lazyDeadLetters) List(ctx context.Context, after uint64, limit int) ([]event.DeadLetter, error) {
	dl, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return dl.List(ctx, after, limit)
}

// Replay replays a dead letter.
func (l *lazyDeadLetters) Replay(ctx context.Context, seq uint64) error {
	dl, err := l.get(ctx)
	if err != nil {
		return err
	}
	return dl.Replay(ctx, seq)
}

// Discard discards a dead letter.
func (l *lazyDeadLetters) Discard(ctx context.Context, seq uint64) error {
	dl, err := l.get(ctx)
	if err != nil {
		return err
	}
	return dl.Discard(ctx, seq)
}

// newPublisher returns the publisher of dataset-changed and device-removed
// events cfg describes.
func newPublisher(cfg *config.Config, js jetstream.JetStream) (*event.Publisher, error) {
	return event.NewPublisher(js, event.PublisherOptions{
		Stream: cfg.NATS.Stream, SubjectPrefix: cfg.NATS.SubjectPrefix, DeviceSubjectPrefix: cfg.NATS.DeviceSubjectPrefix,
	})
}

// ensureStream creates or checks the event stream, retrying while NATS is
// unreachable. It returns false if ctx ended first.
func ensureStream(ctx context.Context, js jetstream.JetStream, sc event.StreamConfig, log zerolog.Logger) bool {
	wait := 200 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := event.EnsureStream(cctx, js, sc)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Error().Err(err).Stringer("retry_in", wait).Msg("event stream not available")
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// streamCheckEvery is how often a process checks that the event stream
// still exists.
const streamCheckEvery = 5 * time.Second

// keepStreams creates the event stream again, as ensureStream does at
// start, whenever NATS answers that it does not exist: a NATS that came
// back without its store (memory storage, a new disk or container) or a
// stream deleted by hand. Until then every publish is refused (changes keep
// their markers, which the relay publishes once the stream is back) and no
// worker consumes. The dead-letter stream, once made, is made again on its
// next use. It returns when ctx ends.
func keepStreams(ctx context.Context, js jetstream.JetStream, sc event.StreamConfig, deadLetters *lazyDeadLetters, log zerolog.Logger) {
	t := time.NewTicker(streamCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := js.Stream(cctx, sc.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			log.Warn().Str("stream", sc.Name).Msg("the event stream is gone from NATS; creating it again")
			if _, err := event.EnsureStream(cctx, js, sc); err != nil && ctx.Err() == nil {
				log.Error().Err(err).Str("stream", sc.Name).Msg("could not create the event stream again; retrying")
			}
		}
		if deadLetters.forgetGone(cctx) {
			log.Warn().Str("stream", deadLetters.cfg.Stream).Msg("the dead-letter stream is gone from NATS; it is created again when next used")
		}
		cancel()
	}
}

// check is one readiness condition.
type check struct {
	name string
	fn   func(context.Context) error
	// shownOnly: a failure is reported but leaves the process ready.
	shownOnly bool
}

// opsHandler serves /healthz (the process is alive), /readyz (every
// dependency answers, and the process is not stopping), /metrics, and the
// runtime profiles under /debug/pprof/ (the operator's port, like the
// rest).
func opsHandler(metrics *prometheus.Registry, checks []check, stopping *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if stopping.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "shutting down")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status, body := http.StatusOK, ""
		for _, c := range checks {
			if err := c.fn(ctx); err != nil {
				if !c.shownOnly {
					status = http.StatusServiceUnavailable
				}
				body += fmt.Sprintf("%s: %v\n", c.name, err)
			} else {
				body += c.name + ": ok\n"
			}
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{Registry: metrics}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// requestReadTimeout is how long a client may take to send one request,
// headers and body: a body of the largest size the API takes by default
// (8 MiB) must come at 140 KB/s at least; the 1 MB record values of
// ordinary text, under 2 MiB on the wire, at 35 KB/s. A client that sends
// slower, or not at all, is cut off rather than holding its connection for
// good.
const requestReadTimeout = time.Minute

// bind listens on addr; key names the setting in the error.
func bind(addr, key string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return ln, nil
}

// serve serves h on ln in the background and returns the server and the
// address it listens on; key names the setting in logs. A request must be
// read within readTimeout, its headers within 10 s of it.
func serve(ln net.Listener, key string, h http.Handler, readTimeout time.Duration, log zerolog.Logger) (*http.Server, string) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: min(10*time.Second, readTimeout), ReadTimeout: readTimeout, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Str("listener", key).Msg("HTTP server stopped")
		}
	}()
	return srv, ln.Addr().String()
}
