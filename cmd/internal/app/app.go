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
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
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
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// Options are what Run needs besides the configuration.
type Options struct {
	// Logger receives the process log. If not set, one is made from
	// cfg.Log writing to Stderr.
	Logger *zerolog.Logger
	// Stderr is where the log goes when Logger is not set. If not set,
	// os.Stderr.
	Stderr io.Writer
	// Ready, if set, is called with the operational server's address once
	// the process serves it.
	Ready func(httpAddr string)
}

// NewLogger returns the logger cfg.Log describes.
func NewLogger(cfg config.LogConfig, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("log level: %w", err)
	}
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}
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
	switch cfg.Role {
	case config.RoleWorker:
		roots, err := loadRoots(cfg)
		if err != nil {
			return err
		}
		return runWorker(ctx, cfg, *log, roots, opts.Ready)
	case config.RoleDev:
		return runDev(ctx, cfg, *log, opts.Ready)
	}
	return fmt.Errorf("role %q is not supported", cfg.Role)
}

// rootCAs are the trust roots of the push services; nil means the system's.
type rootCAs struct{ apns, fcm *x509.CertPool }

func loadRoots(cfg *config.Config) (rootCAs, error) {
	var r rootCAs
	var err error
	if r.apns, err = loadPool(cfg.APNs.RootCAFile, "apns.root_ca_file"); err != nil {
		return r, err
	}
	r.fcm, err = loadPool(cfg.FCM.RootCAFile, "fcm.root_ca_file")
	return r, err
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

// ConnectNATS connects to the servers cfg names. The connection retries
// for ever, both at start and after losing the server.
func ConnectNATS(cfg config.NATSConfig, log zerolog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("pushsyncd"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.Timeout(cfg.ConnectTimeout.Std()),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("disconnected from NATS")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("reconnected to NATS")
		}),
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.Token != "":
		opts = append(opts, nats.Token(string(cfg.Token)))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, string(cfg.Password)))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	return nc, nil
}

// StreamConfig is the event stream cfg describes.
func StreamConfig(cfg config.NATSConfig) event.StreamConfig {
	storage := jetstream.FileStorage
	if cfg.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	return event.StreamConfig{
		Name:          cfg.Stream,
		SubjectPrefix: cfg.SubjectPrefix,
		Replicas:      cfg.Replicas,
		Storage:       storage,
		MaxAge:        cfg.MaxAge.Std(),
		Duplicates:    cfg.DuplicateWindow.Std(),
	}
}

func runWorker(ctx context.Context, cfg *config.Config, log zerolog.Logger, roots rootCAs, ready func(string)) error {
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	rdb, err := NewRedis(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	nc, err := ConnectNATS(cfg.NATS, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	reg := registry.New(rdb, registry.Options{KeyPrefix: cfg.Redis.KeyPrefix})
	apnsN := apns.New(apns.Options{
		ProductionHost: cfg.APNs.ProductionHost,
		SandboxHost:    cfg.APNs.SandboxHost,
		RootCAs:        roots.apns,
		TTL:            cfg.Dispatcher.PushTTL.Std(),
	}, log.With().Str("component", "apns").Logger())
	defer apnsN.Close()
	fcmN, err := fcm.New(fcm.Options{
		Endpoint: cfg.FCM.Endpoint,
		RootCAs:  roots.fcm,
		TTL:      cfg.Dispatcher.PushTTL.Std(),
	}, log.With().Str("component", "fcm").Logger())
	if err != nil {
		return err
	}
	defer fcmN.Close()

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
	}, log.With().Str("component", "dispatcher").Logger(), metrics)
	if err != nil {
		return err
	}

	checks := map[string]func(context.Context) error{
		"redis": func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		"nats": func(context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		},
		"dispatcher": func(context.Context) error { return disp.Ready() },
	}
	srv, addr, err := serveOps(cfg.HTTP.Listen, metrics, checks, log)
	if err != nil {
		return err
	}
	log.Info().Str("http", addr).Str("nats", cfg.NATS.URL).Strs("redis", cfg.Redis.Addrs).Msg("pushsyncd worker starting")
	if ready != nil {
		ready(addr)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !ensureStream(ctx, js, StreamConfig(cfg.NATS), log) {
			return
		}
		_ = disp.Run(ctx) // returns nil once ctx ends, after draining
	}()
	<-ctx.Done()
	log.Info().Msg("stopping: finishing in-flight sends")
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout.Std())
	defer cancel()
	_ = srv.Shutdown(sctx)
	log.Info().Msg("stopped")
	return nil
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
		log.Error().Err(err).Dur("retry_in", wait).Msg("event stream not available")
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// serveOps serves /healthz (the process is alive), /readyz (every
// dependency answers) and /metrics.
func serveOps(listen string, metrics *prometheus.Registry, checks map[string]func(context.Context) error, log zerolog.Logger) (*http.Server, string, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status, body := http.StatusOK, ""
		for _, name := range []string{"redis", "nats", "dispatcher"} {
			check, ok := checks[name]
			if !ok {
				continue
			}
			if err := check(ctx); err != nil {
				status = http.StatusServiceUnavailable
				body += fmt.Sprintf("%s: %v\n", name, err)
			} else {
				body += name + ": ok\n"
			}
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{Registry: metrics}))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, "", fmt.Errorf("http.listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("operational HTTP server stopped")
		}
	}()
	return srv, ln.Addr().String(), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
