package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/app"
	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// masterKey is a fixed test key (32 bytes, base64).
const masterKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

const (
	pool      = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	alice     = "us-east-1:a11ce000-2222-3333-4444-555555555555"
	bob       = "us-east-1:b0b00000-2222-3333-4444-555555555555"
	topic     = "com.example.game"
	project   = "game-project"
	expiresIn = time.Hour
)

func tok(i int) string { return fmt.Sprintf("%064x", i) }

// stack is pushsyncd running in the test process against real JetStream,
// real Redis and the APNs and FCM emulators.
type stack struct {
	t        testing.TB
	ns       *testenv.NATS
	cfg      *config.Config
	js       jetstream.JetStream
	pub      *event.Publisher
	reg      *registry.Registry
	prod     *apnstest.Server
	sandbox  *apnstest.Server
	fcm      *fcmtest.Server
	httpAddr string
	apiAddr  string
	stop     func()
	devices  map[string]registry.Device // by name
}

func newStack(t testing.TB) *stack {
	t.Helper()
	ns := testenv.StartNATS(t)
	rdb, prefix := testenv.Redis(t)
	_, js := ns.Connect(t)
	s := &stack{t: t, js: js, ns: ns, devices: map[string]registry.Device{},
		prod:    apnstest.NewServer(),
		sandbox: apnstest.NewServer(apnstest.WithEnvironment(apnstest.EnvironmentDevelopment)),
		fcm:     fcmtest.NewServer(),
	}
	t.Cleanup(s.prod.Close)
	t.Cleanup(s.sandbox.Close)
	t.Cleanup(s.fcm.Close)

	dir := t.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("apns-ca.pem", append(s.prod.CACertPEM(), s.sandbox.CACertPEM()...))
	write("fcm-ca.pem", s.fcm.CACertPEM())
	yaml := fmt.Sprintf(`
role: worker
log: {level: debug}
secrets: {master_key: %q}
http: {listen: "127.0.0.1:0", shutdown_timeout: 1s}
redis: {addrs: [%q], key_prefix: %q}
nats: {url: %q}
dispatcher:
  ack_wait: 5s
  send_timeout: 2s
  retry_delay: 100ms
  max_retry_delay: 500ms
  push_ttl: 1h
apns:
  production_host: %q
  sandbox_host: %q
  root_ca_file: apns-ca.pem
fcm:
  endpoint: %q
  root_ca_file: fcm-ca.pem
`, masterKey, testenv.RedisAddr(), prefix, ns.URL, s.prod.URL, s.sandbox.URL, s.fcm.Endpoint())
	write("pushsyncd.yaml", []byte(yaml))
	cfg, err := config.Load(filepath.Join(dir, "pushsyncd.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.cfg = cfg

	ctx := context.Background()
	if _, err := event.EnsureStream(ctx, js, app.StreamConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	s.pub, err = event.NewPublisher(js, event.PublisherOptions{Stream: cfg.NATS.Stream, SubjectPrefix: cfg.NATS.SubjectPrefix})
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(cfg.Secrets.MasterKeyBytes())
	if err != nil {
		t.Fatal(err)
	}
	s.reg = registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: box})
	s.seed()
	return s
}

// seed registers the apps and these devices:
//
//	alice: ios (APNS), ipad-dev (APNS_SANDBOX), pixel (GCM), writer (GCM)
//	       all on "settings"; tablet (GCM) on "scores" only
//	bob:   bob-phone (GCM) and bob-ios (APNS) on "settings"
func (s *stack) seed() {
	t, ctx := s.t, context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	s.prod.AddTokenKey("TEAM123456", "KEY1234567", &key.PublicKey, topic)
	s.sandbox.AddTokenKey("TEAM123456", "KEY1234567", &key.PublicKey, topic)
	sa, err := s.fcm.AddServiceAccount(project)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []registry.App{
		{Name: "game-ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: topic, KeyID: "KEY1234567", TeamID: "TEAM123456",
			AuthKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}},
		{Name: "game-android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: project, ServiceAccount: string(sa)}},
	} {
		if _, err := s.reg.PutApp(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.reg.SetPoolPush(ctx, pool, registry.PoolPush{Apps: map[registry.Platform]string{
		registry.APNS: "game-ios", registry.APNSSandbox: "game-ios", registry.GCM: "game-android"}}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name, identity string
		platform       registry.Platform
		token, dataset string
	}{
		{"ios", alice, registry.APNS, strings.ToUpper(tok(1)), "settings"},
		{"ipad-dev", alice, registry.APNSSandbox, tok(2), "settings"},
		{"pixel", alice, registry.GCM, "fcm-pixel-registration-token", "settings"},
		{"writer", alice, registry.GCM, "fcm-writer-registration-token", "settings"},
		{"tablet", alice, registry.GCM, "fcm-tablet-registration-token", "scores"},
		{"bob-phone", bob, registry.GCM, "fcm-bob-registration-token", "settings"},
		{"bob-ios", bob, registry.APNS, tok(9), "settings"},
	} {
		dev, _, err := s.reg.RegisterDevice(ctx, pool, d.identity, d.platform, d.token)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.reg.Subscribe(ctx, pool, d.identity, d.dataset, dev.ID); err != nil {
			t.Fatal(err)
		}
		s.devices[d.name] = dev
	}
}

// start runs pushsyncd until stop is called or the test ends.
func (s *stack) start() {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	go func() {
		done <- app.Run(ctx, s.cfg, app.Options{Logger: &log, Ready: func(a app.Addrs) { ready <- a }})
	}()
	select {
	case a := <-ready:
		s.httpAddr, s.apiAddr = a.HTTP, a.API
	case err := <-done:
		t.Fatalf("pushsyncd exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("pushsyncd did not start")
	}
	stopped := false
	s.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("pushsyncd: %v", err)
			}
		}
	}
	t.Cleanup(s.stop)
	s.waitReady()
}

func (s *stack) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + s.httpAddr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("not ready: %s", body)
			}
		} else if time.Now().After(deadline) {
			s.t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stack) publish(identity, dataset string, syncCount int64, origin string) {
	s.t.Helper()
	_, err := s.pub.Publish(context.Background(), &event.DatasetChanged{
		IdentityPoolID: pool, IdentityID: identity, DatasetName: dataset, SyncCount: syncCount,
		OriginDeviceID: origin, ChangedAt: time.Now(),
	})
	if err != nil {
		s.t.Fatal(err)
	}
}

// metric reads a counter from pushsyncd's /metrics.
func (s *stack) metric(name string, labels ...string) float64 {
	s.t.Helper()
	return testenv.Metric(s.t, s.httpAddr, name, labels...)
}

func (s *stack) waitMetric(want float64, name string, labels ...string) {
	s.t.Helper()
	testenv.WaitMetric(s.t, s.httpAddr, want, name, labels...)
}

func TestEventBecomesExactPushesOnEverySubscribedDevice(t *testing.T) {
	s := newStack(t)
	s.start()
	before := time.Now()
	s.publish(alice, "settings", 5, s.devices["writer"].ID)
	s.waitMetric(1, "pushsync_events_consumed_total", "result", "delivered")
	after := time.Now()

	prod, sandbox, fcm := s.prod.Pushes(), s.sandbox.Pushes(), s.fcm.Pushes()
	if len(prod) != 1 || len(sandbox) != 1 || len(fcm) != 1 {
		t.Fatalf("pushes: APNs production %d, sandbox %d, FCM %d; want 1 each (ios, ipad-dev, pixel)", len(prod), len(sandbox), len(fcm))
	}
	wantAPNs := `{"aps":{"content-available":1},"data":{"source":"cognito-sync","identityPoolId":"` + pool +
		`","identityId":"` + alice + `","datasetName":"settings","syncCount":5}}`
	for _, c := range []struct {
		p     apnstest.Push
		token string
	}{{prod[0], tok(1)}, {sandbox[0], tok(2)}} {
		if c.p.DeviceToken != c.token {
			t.Errorf("APNs push to %s, want %s", c.p.DeviceToken, c.token)
		}
		if string(c.p.Payload) != wantAPNs {
			t.Errorf("APNs payload\n got %s\nwant %s", c.p.Payload, wantAPNs)
		}
		h := c.p.Header
		for name, want := range map[string]string{
			"apns-push-type": "background", "apns-priority": "5", "apns-topic": topic,
			"apns-collapse-id": "settings", "content-type": "application/json; charset=utf-8",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		exp := time.Unix(c.p.Expiration, 0)
		if exp.Before(before.Add(expiresIn).Truncate(time.Second)) || exp.After(after.Add(expiresIn)) {
			t.Errorf("apns-expiration %v, want about now+1h", exp)
		}
		if !strings.HasPrefix(h.Get("authorization"), "bearer ") || c.p.TeamID != "TEAM123456" {
			t.Errorf("authorization %q team %q", h.Get("authorization"), c.p.TeamID)
		}
	}
	wantFCM := `{"data":{"datasetName":"settings","identityId":"` + alice + `","identityPoolId":"` + pool +
		`","source":"cognito-sync","syncCount":"5"},"android":{"ttl":"3600s","collapse_key":"settings","priority":"normal"},"token":"fcm-pixel-registration-token"}`
	// The TTL is what the change has left of the push TTL: an hour, less
	// the time it took to get here.
	ttl := regexp.MustCompile(`"ttl":"(\d+)s"`)
	m := append(ttl.FindStringSubmatch(string(fcm[0].Message)), "", "")
	if secs, _ := strconv.Atoi(m[1]); m == nil || secs < 3590 || secs > 3600 {
		t.Errorf("FCM ttl %v, want 3590s to 3600s", m)
	}
	gotFCM := ttl.ReplaceAllString(string(fcm[0].Message), `"ttl":"3600s"`)
	if gotFCM != wantFCM || fcm[0].ProjectID != project {
		t.Errorf("FCM message (project %s)\n got %s\nwant %s", fcm[0].ProjectID, fcm[0].Message, wantFCM)
	}
	if !strings.HasPrefix(fcm[0].Header.Get("Authorization"), "Bearer ") {
		t.Errorf("FCM Authorization %q", fcm[0].Header.Get("Authorization"))
	}

	// Bob's change reaches only Bob's devices; a change to a dataset no
	// one subscribed to reaches no one.
	s.publish(bob, "settings", 1, "")
	s.publish(alice, "nobody-subscribed", 1, "")
	s.waitMetric(2, "pushsync_events_consumed_total", "result", "delivered")
	s.waitMetric(1, "pushsync_events_consumed_total", "result", "no_subscribers")
	if n := len(s.fcm.Pushes()); n != 2 || s.fcm.Pushes()[1].Token != "fcm-bob-registration-token" {
		t.Fatalf("after Bob's change FCM has %d pushes, the last to %s", n, s.fcm.Pushes()[n-1].Token)
	}
	if got := s.prod.Pushes(); len(got) != 2 || got[1].DeviceToken != tok(9) || !strings.Contains(string(got[1].Payload), bob) {
		t.Fatalf("Bob's APNs push: %+v", got[len(got)-1])
	}
	if len(s.sandbox.Pushes()) != 1 {
		t.Fatal("sandbox got a push that was not Alice's")
	}
	if n := s.metric("pushsync_pushes_total", "result", "accepted"); n != 5 {
		t.Fatalf("accepted pushes = %v, want 5", n)
	}
}

func TestDeadTokensAndMalformedEventsAreHandledAndCounted(t *testing.T) {
	s := newStack(t)
	s.start()
	// The apps accept a push first: a BadDeviceToken removes a device
	// only once its app has shown its environment right.
	s.publish(alice, "settings", 5, s.devices["writer"].ID)
	s.waitMetric(1, "pushsync_events_consumed_total", "result", "delivered")
	s.prod.FailToken(tok(1), apnstest.Unregistered(time.Now().Add(-time.Minute)))
	s.sandbox.FailToken(tok(2), apnstest.BadDeviceToken())
	s.fcm.FailToken("fcm-pixel-registration-token", fcmtest.Unregistered())

	// A malformed message on the stream is terminated and counted.
	if _, err := s.js.Publish(context.Background(), s.cfg.NATS.SubjectPrefix+".x.y.z", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	s.waitMetric(1, "pushsync_events_malformed_total", "reason", "invalid_json")

	s.publish(alice, "settings", 6, s.devices["writer"].ID)
	s.waitMetric(2, "pushsync_events_consumed_total", "result", "delivered")
	for _, c := range []struct{ platform, reason string }{
		{"APNS", "Unregistered"}, {"APNS_SANDBOX", "BadDeviceToken"}, {"GCM", "UNREGISTERED"},
	} {
		if n := s.metric("pushsync_pushes_total", "platform", c.platform, "result", "token_dead", "reason", c.reason); n != 1 {
			t.Errorf("%s %s = %v, want 1", c.platform, c.reason, n)
		}
	}
	if n := s.metric("pushsync_events_consumed_total", "result", "retry"); n != 0 {
		t.Errorf("a dead token caused %v retries", n)
	}
	// The worker is alive and ready after all of it.
	s.waitReady()
	s.prod.ClearFailures()
	s.publish(alice, "settings", 7, "")
	s.waitMetric(3, "pushsync_events_consumed_total", "result", "delivered")
	if len(s.prod.Pushes()) != 2 {
		t.Fatalf("APNs production pushes after recovery: %d, want 2, the one before the failures included", len(s.prod.Pushes()))
	}
}

func TestEventsPublishedWhileTheWorkerIsDownAreDeliveredAfterStart(t *testing.T) {
	s := newStack(t)
	s.start()
	s.stop()
	const n = 30
	for i := int64(1); i <= n; i++ {
		s.publish(alice, "settings", i, s.devices["writer"].ID)
	}
	s.start()
	s.waitMetric(n, "pushsync_events_consumed_total", "result", "delivered")
	// Every device ends with the latest state and never gets one twice; an
	// older state arriving after a newer one is not pushed.
	seen := map[string]bool{}
	last := 0
	for _, p := range s.fcm.Pushes() {
		if seen[p.Data["syncCount"]] {
			t.Fatalf("sync count %s pushed twice", p.Data["syncCount"])
		}
		seen[p.Data["syncCount"]] = true
		c, _ := strconv.Atoi(p.Data["syncCount"])
		last = max(last, c)
	}
	if last != n || len(s.prod.Pushes()) == 0 || len(s.sandbox.Pushes()) == 0 {
		t.Fatalf("after the restart FCM's last sync count is %d (want %d); APNs got %d and %d pushes", last, n, len(s.prod.Pushes()), len(s.sandbox.Pushes()))
	}
}

func TestRetryableOutageIsDeliveredAfterRecovery(t *testing.T) {
	s := newStack(t)
	outage := fcmtest.Failure{HTTPStatus: 500, Status: "INTERNAL", ErrorCode: "INTERNAL", Times: 2}
	s.fcm.FailToken("fcm-pixel-registration-token", outage)
	s.start()
	s.publish(alice, "settings", 8, s.devices["writer"].ID)
	s.waitMetric(1, "pushsync_events_consumed_total", "result", "delivered")
	// Two failures fit in the in-process retry budget (2s): the event never
	// went back to the broker.
	if n := s.metric("pushsync_pushes_total", "result", "retry", "reason", "INTERNAL"); n != 2 {
		t.Fatalf("failed attempts = %v, want 2", n)
	}
	if n := s.metric("pushsync_events_consumed_total", "result", "retry"); n != 0 {
		t.Fatalf("broker retries = %v, want 0", n)
	}
	got := s.fcm.Pushes()
	if len(got) != 1 || got[0].Token != "fcm-pixel-registration-token" || got[0].Data["syncCount"] != "8" {
		t.Fatalf("FCM pushes %+v", got)
	}
}

func TestBadConfigurationIsRefused(t *testing.T) {
	cfg := config.Default()
	if err := app.Run(context.Background(), cfg, app.Options{Stderr: io.Discard}); err == nil || !strings.Contains(err.Error(), "secrets.master_key is required for role worker") {
		t.Fatalf("got %v, want an error asking for secrets.master_key", err)
	}
	cfg.Secrets.MasterKey = masterKey
	cfg.APNs.RootCAFile = filepath.Join(t.TempDir(), "missing.pem")
	err := app.Run(context.Background(), cfg, app.Options{Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "apns.root_ca_file") {
		t.Fatalf("got %v, want an error naming apns.root_ca_file", err)
	}
	cfg.APNs.RootCAFile = ""
	notPEM := filepath.Join(t.TempDir(), "oidc-ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.API.OIDCRootCAFile = notPEM
	err = app.Run(context.Background(), cfg, app.Options{Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "api.oidc_root_ca_file") || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("got %v, want an error saying api.oidc_root_ca_file holds no PEM certificate", err)
	}
	cfg = config.Default()
	cfg.Dispatcher.Workers = 0
	if err := app.Run(context.Background(), cfg, app.Options{Stderr: io.Discard}); err == nil || !strings.Contains(err.Error(), "dispatcher.workers") {
		t.Fatalf("got %v, want an error naming dispatcher.workers", err)
	}
}

// A process that serves the API without developer credentials says at start
// that the admin API and pushsyncctl need them, and which settings give them;
// otherwise the first word of it is pushsyncctl's refusal.
func TestAPIWithoutDeveloperCredentialsWarnsAtStart(t *testing.T) {
	ns := testenv.StartNATS(t)
	for _, tt := range []struct {
		role  string
		creds bool
		warns bool
	}{
		{config.RoleAPI, false, true},
		{config.RoleAll, false, true},
		{config.RoleAPI, true, false},
		{config.RoleWorker, false, false},
	} {
		cfg := workerConfig(t, ns.URL)
		cfg.Role = tt.role
		cfg.API.Listen = "127.0.0.1:0"
		if tt.creds {
			cfg.API.DeveloperAccessKeyID = "AKIAPUSHSYNCTEST0001"
			cfg.API.DeveloperSecretAccessKey = "developer-test-secret"
		}
		ctx, cancel := context.WithCancel(context.Background())
		logs, ready, done := runApp(ctx, cfg)
		select {
		case <-ready:
		case err := <-done:
			cancel()
			t.Fatalf("role %s: Run: %v", tt.role, err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("role %s: Run: %v", tt.role, err)
		}
		got := logs.Lines("no developer credentials")
		switch {
		case !tt.warns && len(got) != 0:
			t.Errorf("role %s, developer credentials %v: want no warning, got:\n%s", tt.role, tt.creds, logs)
		case tt.warns && len(got) != 1:
			t.Errorf("role %s: want one warning about developer credentials, got %d:\n%s", tt.role, len(got), logs)
		case tt.warns:
			for _, want := range []string{`"level":"warn"`, "pushsyncctl", "api.developer_access_key_id", "api.developer_secret_access_key",
				"PUSHSYNC_API_DEVELOPER_ACCESS_KEY_ID", "PUSHSYNC_API_DEVELOPER_SECRET_ACCESS_KEY"} {
				if !strings.Contains(got[0], want) {
					t.Errorf("role %s: the warning lacks %s:\n%s", tt.role, want, got[0])
				}
			}
		}
	}
}

// From the moment a stop begins, /readyz answers 503, so that load
// balancers send no new work to a process that is draining.
func TestReadyzFailsOnceStopping(t *testing.T) {
	ns := testenv.StartNATS(t)
	cfg := workerConfig(t, ns.URL)
	cfg.Role = config.RoleAPI
	cfg.API.Listen = "127.0.0.1:0"
	cfg.HTTP.ShutdownTimeout = config.Duration(5 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, ready, done := runApp(ctx, cfg)
	var addrs app.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	readyz := func() (int, string) {
		t.Helper()
		res, err := http.Get("http://" + addrs.HTTP + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code, _ := readyz(); code != http.StatusOK; code, _ = readyz() {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A request still arriving holds the API server's shutdown open.
	conn := testenv.HoldRequest(t, addrs.API)
	time.Sleep(100 * time.Millisecond)
	cancel()
	time.Sleep(200 * time.Millisecond)
	if code, body := readyz(); code != http.StatusServiceUnavailable || body != "shutting down\n" {
		t.Errorf("/readyz while stopping: %d %q, want 503 \"shutting down\\n\"", code, body)
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
