package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/cognito"
	"github.com/pushsync/pushsync/sync/event"
)

// devMasterKey seals the dev stack's demo credentials when no master key is
// configured. It is published here, so it protects nothing: it only keeps
// the demo data readable from one run to the next. Never use it elsewhere.
const devMasterKey = "pushsync dev stack: not a secret"

// The demo identity the dev stack registers and changes.
const (
	DemoPool     = "us-east-1:d3f0c0de-0000-4000-8000-000000000001"
	DemoIdentity = "us-east-1:a11ce000-0000-4000-8000-000000000001"
	DemoDataset  = "settings"
	demoTopic    = "com.example.pushsync.demo"
	demoTeam     = "DEMOTEAM01"
	demoKeyID    = "DEMOKEY001"
	// The dev stack's platform apps are named apart from the README's
	// (demo-ios, demo-android), which a newcomer creates on the same Redis
	// under a master key of their own.
	devAppAPNs = "dev-ios"
	devAppFCM  = "dev-android"
)

// runDev runs a whole pushsync on one machine: NATS embedded in the
// process, a local Redis (started if none answers), APNs and FCM emulators,
// a demo identity with devices on every platform, and a sample dataset
// change every dev.sample_interval, whose pushes the emulators log as they
// arrive.
func runDev(ctx context.Context, cfg *config.Config, log zerolog.Logger, ready func(Addrs)) error {
	natsURL, stopNATS, err := startEmbeddedNATS()
	if err != nil {
		return err
	}
	defer stopNATS()
	log.Info().Str("url", natsURL).Msg("embedded NATS with JetStream started")

	stopRedis, err := ensureRedis(ctx, cfg.Dev.RedisAddr, log)
	if err != nil {
		return err
	}
	defer stopRedis()

	pushLog := log.With().Str("component", "emulator").Logger()
	onAPNs := func(env string) apnstest.Option {
		return apnstest.WithOnPush(func(p apnstest.Push) {
			var body struct{ Data map[string]any }
			_ = json.Unmarshal(p.Payload, &body)
			pushLog.Info().Str("service", "APNs "+env).Str("token", short(p.DeviceToken)).
				Any("dataset", body.Data["datasetName"]).Any("syncCount", body.Data["syncCount"]).
				Msg("push received")
		})
	}
	prod := apnstest.NewServer(onAPNs(apnstest.EnvironmentProduction), apnstest.WithRecord(false))
	defer prod.Close()
	sandbox := apnstest.NewServer(onAPNs(apnstest.EnvironmentDevelopment), apnstest.WithEnvironment(apnstest.EnvironmentDevelopment), apnstest.WithRecord(false))
	defer sandbox.Close()
	fcmEmu := fcmtest.NewServer(fcmtest.WithRecord(false), fcmtest.WithOnPush(func(p fcmtest.Push) {
		pushLog.Info().Str("service", "FCM").Str("token", short(p.Token)).
			Str("dataset", p.Data["datasetName"]).Str("syncCount", p.Data["syncCount"]).
			Msg("push received")
	}))
	defer fcmEmu.Close()
	log.Info().Str("apns", prod.URL).Str("apns_sandbox", sandbox.URL).Str("fcm", fcmEmu.URL).Msg("push service emulators started")

	wcfg := *cfg
	wcfg.Role = config.RoleAll
	wcfg.NATS.URL = natsURL
	wcfg.Redis.Addrs = []string{cfg.Dev.RedisAddr}
	wcfg.Redis.MasterName = ""
	wcfg.APNs.ProductionHost, wcfg.APNs.SandboxHost = prod.URL, sandbox.URL
	wcfg.FCM.Endpoint = fcmEmu.Endpoint()
	roots := rootCAs{apns: prod.RootCAs(), fcm: fcmEmu.RootCAs()}
	roots.apns.AppendCertsFromPEM(sandbox.CACertPEM())
	if roots.oidc, err = loadOIDCRoots(cfg); err != nil {
		return err
	}

	masterKey := []byte(devMasterKey)
	if cfg.Secrets.MasterKey != "" {
		masterKey = cfg.Secrets.MasterKeyBytes()
	}
	keys := masterKeys(masterKey, cfg.Secrets.SecondaryMasterKeyBytes())
	box, err := newBox(keys)
	if err != nil {
		return err
	}
	if wcfg.API.DeveloperAccessKeyID == "" {
		wcfg.API.DeveloperAccessKeyID = "AKIAPUSHSYNCDEV" + strings.ToUpper(hex.EncodeToString(randomBytes(3)))
		wcfg.API.DeveloperSecretAccessKey = config.Secret(base64.RawURLEncoding.EncodeToString(randomBytes(30)))
	}

	rdb, err := NewRedis(wcfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	reg := registry.New(rdb, registry.Options{KeyPrefix: cfg.Redis.KeyPrefix, Secrets: box})
	origin, others, err := seedDemo(ctx, reg, prod, sandbox, fcmEmu, cfg.Dev.Devices)
	if err != nil {
		return fmt.Errorf("dev: seed demo data: %w", err)
	}
	log.Info().Str("pool", DemoPool).Str("identity", DemoIdentity).Int("devices", len(others)+1).
		Str("dataset", DemoDataset).Msg("demo identity registered and subscribed")

	workerReady := make(chan Addrs, 1)
	workerDone := make(chan error, 1)
	wctx, stopWorker := context.WithCancel(context.Background())
	defer stopWorker()
	go func() {
		workerDone <- runServices(wctx, &wcfg, log, services{api: true, worker: true, box: box, masterKeys: keys, roots: roots}, func(a Addrs) { workerReady <- a })
	}()
	select {
	case addrs := <-workerReady:
		log.Info().Str("AWS_ACCESS_KEY_ID", wcfg.API.DeveloperAccessKeyID).
			Str("AWS_SECRET_ACCESS_KEY", string(wcfg.API.DeveloperSecretAccessKey)).
			Str("endpoint", "http://"+reachable(addrs.API)).
			Msg("API ready; these developer credentials work with pushsyncctl and AWS SDK clients")
		if ready != nil {
			ready(addrs)
		}
	case err := <-workerDone:
		return err
	}

	js, closeJS, err := connectLocal(natsURL)
	if err != nil {
		return err
	}
	defer closeJS()
	pub, err := newPublisher(cfg, js)
	if err != nil {
		return err
	}
	counterKey := cfg.Redis.KeyPrefix + ":" + cognito.HashTag(DemoPool, DemoIdentity) + ":devsynccount"
	tick := time.NewTicker(cfg.Dev.SampleInterval.Std())
	defer tick.Stop()
	for {
		if err := publishSample(ctx, rdb, pub, counterKey, origin, len(others), log); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("sample change not published")
		}
		select {
		case <-ctx.Done():
			stopWorker()
			return <-workerDone
		case err := <-workerDone:
			return err
		case <-tick.C:
		}
	}
}

func publishSample(ctx context.Context, rdb redis.UniversalClient, pub *event.Publisher, counterKey string, origin registry.Device, others int, log zerolog.Logger) error {
	n, err := rdb.Incr(ctx, counterKey).Result()
	if err != nil {
		return err
	}
	if _, err := pub.Publish(ctx, &event.DatasetChanged{
		IdentityPoolID: DemoPool, IdentityID: DemoIdentity, DatasetName: DemoDataset,
		SyncCount: n, OriginDeviceID: origin.ID, ChangedAt: time.Now(),
	}); err != nil {
		return err
	}
	log.Info().Str("dataset", DemoDataset).Int64("syncCount", n).Str("origin_device", origin.ID).
		Int("expected_pushes", others).Msg("sample change published")
	return nil
}

// seedDemo registers the demo apps, identity pool, push configuration and
// devices, all subscribed to the demo dataset. It is idempotent: the same tokens get the same device ids.
// The first device is the one that makes the sample changes.
func seedDemo(ctx context.Context, reg *registry.Registry, prod, sandbox *apnstest.Server, fcmEmu *fcmtest.Server, devices int) (origin registry.Device, others []registry.Device, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return origin, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return origin, nil, err
	}
	prod.AddTokenKey(demoTeam, demoKeyID, &key.PublicKey, demoTopic)
	sandbox.AddTokenKey(demoTeam, demoKeyID, &key.PublicKey, demoTopic)
	sa, err := fcmEmu.AddServiceAccount("pushsync-demo")
	if err != nil {
		return origin, nil, err
	}
	apps := []registry.App{
		{Name: devAppAPNs, Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{
			Topic: demoTopic, KeyID: demoKeyID, TeamID: demoTeam,
			AuthKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		}},
		{Name: devAppFCM, Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "pushsync-demo", ServiceAccount: string(sa)}},
	}
	for _, a := range apps {
		if _, err := reg.PutApp(ctx, a); err != nil {
			return origin, nil, err
		}
	}
	// The demo pool is an identity pool, as an operator creates one, so
	// that the developer credentials the log prints work in it. Restored,
	// not created: after an operator deleted it, dev mode takes it back
	// with whatever it held rather than refuse to start.
	if _, err := reg.RestoreIdentityPool(ctx, registry.IdentityPool{ID: DemoPool, Name: "pushsync dev demo", AllowUnauthenticated: true}); err != nil && !errors.Is(err, registry.ErrPoolExists) {
		return origin, nil, err
	}
	if err := reg.SetPoolPush(ctx, DemoPool, registry.PoolPush{Apps: map[registry.Platform]string{
		registry.APNS: devAppAPNs, registry.APNSSandbox: devAppAPNs, registry.GCM: devAppFCM,
	}}); err != nil {
		return origin, nil, err
	}
	platforms := []registry.Platform{registry.GCM, registry.APNS, registry.APNSSandbox}
	for i := range devices {
		p := platforms[i%len(platforms)]
		token := fmt.Sprintf("%064x", i+1)
		if p == registry.GCM {
			token = fmt.Sprintf("demo-registration:fcm-token-%d", i+1)
		}
		d, _, err := reg.RegisterDevice(ctx, DemoPool, DemoIdentity, p, token)
		if err != nil {
			return origin, nil, err
		}
		if err := reg.Subscribe(ctx, DemoPool, DemoIdentity, DemoDataset, d.ID); err != nil {
			return origin, nil, err
		}
		if i == 0 {
			origin = d
		} else {
			others = append(others, d)
		}
	}
	return origin, others, nil
}

func startEmbeddedNATS() (url string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "pushsyncd-dev-nats-")
	if err != nil {
		return "", nil, err
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("dev: embedded NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		os.RemoveAll(dir)
		return "", nil, errors.New("dev: embedded NATS did not start")
	}
	return s.ClientURL(), func() { s.Shutdown(); s.WaitForShutdown(); os.RemoveAll(dir) }, nil
}

func connectLocal(url string) (jetstream.JetStream, func(), error) {
	nc := config.Default().NATS
	nc.URL = url
	conn, err := ConnectNATS(nc, zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return js, conn.Close, nil
}

// ensureRedis checks that Redis answers at addr. If nothing listens there
// and redis-server is installed, it starts one without persistence and
// returns a function that stops it.
func ensureRedis(ctx context.Context, addr string, log zerolog.Logger) (stop func(), err error) {
	if pingRedis(ctx, addr) == nil {
		log.Info().Str("addr", addr).Msg("using the Redis that answers there")
		return func() {}, nil
	}
	bin, lookErr := exec.LookPath("redis-server")
	if lookErr != nil {
		return nil, fmt.Errorf("dev: no Redis answers at %s and redis-server is not installed; install it (Debian: apt-get install redis-server) or set dev.redis_addr (PUSHSYNC_DEV_REDIS_ADDR) to a running Redis", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dev.redis_addr: %w", err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	cmd := exec.Command(bin, "--bind", host, "--port", port, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("dev: start redis-server: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for pingRedis(ctx, addr) != nil {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("dev: redis-server started but does not answer at %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Info().Str("addr", addr).Int("pid", cmd.Process.Pid).Msg("started redis-server for the dev stack")
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

func pingRedis(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func short(token string) string {
	if len(token) > 12 {
		return "…" + token[len(token)-12:]
	}
	return token
}

// reachable turns a listening address into one a client on this machine
// can use: a server listening on every interface ("[::]:8081",
// "0.0.0.0:8081") is reached at localhost.
func reachable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
