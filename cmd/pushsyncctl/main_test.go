//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/app"
	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

const (
	masterKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	devKey    = "AKIAPUSHSYNCCTLTEST01"
	devSecret = "developer-secret-for-pushsyncctl"
	pool      = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	alice     = "us-east-1:a11ce000-2222-3333-4444-555555555555"
	bob       = "us-east-1:b0b00000-2222-3333-4444-555555555555"
	topic     = "com.example.game"
	project   = "game-project"
	team      = "TEAM123456"
)

// tok is an APNs device token: 64 hex digits.
func tok(i int) string { return fmt.Sprintf("%064x", i) }

// daemon is pushsyncd (role all) running in the test process against real
// JetStream, real Redis and the APNs and FCM emulators.
type daemon struct {
	t             *testing.T
	api, http     string
	prod, sandbox *apnstest.Server
	fcm           *fcmtest.Server
	dir           string // the working directory of the commands
	cfgDir        string
	natsURL       string
	prefix        string
	reg           *registry.Registry // on the daemon's Redis keys, for what pushsyncctl cannot do
	env           map[string]string
	stop          func() // stops the running pushsyncd
}

// startDaemon starts pushsyncd and the emulators, creates the identity pool
// pool, makes the daemon's working directory the test's and returns the
// daemon; it stops when the test ends.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	ns := testenv.StartNATS(t)
	rdb, prefix := testenv.Redis(t)
	d := &daemon{t: t, dir: t.TempDir(), cfgDir: t.TempDir(), natsURL: ns.URL, prefix: prefix,
		reg:     registry.New(rdb, registry.Options{KeyPrefix: prefix}),
		prod:    apnstest.NewServer(),
		sandbox: apnstest.NewServer(apnstest.WithEnvironment(apnstest.EnvironmentDevelopment)),
		fcm:     fcmtest.NewServer(),
	}
	t.Cleanup(d.prod.Close)
	t.Cleanup(d.sandbox.Close)
	t.Cleanup(d.fcm.Close)
	d.write(filepath.Join(d.cfgDir, "apns-ca.pem"), append(d.prod.CACertPEM(), d.sandbox.CACertPEM()...))
	d.write(filepath.Join(d.cfgDir, "fcm-ca.pem"), d.fcm.CACertPEM())
	d.restart(fmt.Sprintf("{master_key: %q}", masterKey))
	d.env = map[string]string{
		"PUSHSYNCCTL_ENDPOINT":  "http://" + d.api,
		"AWS_ACCESS_KEY_ID":     devKey,
		"AWS_SECRET_ACCESS_KEY": devSecret,
	}
	t.Chdir(d.dir) // key files are named relative to it
	d.createPool(pool)
	return d
}

// createPool creates an identity pool of the given id, as an operator does
// before the developer credentials act in it.
func (d *daemon) createPool(id string) {
	d.t.Helper()
	if _, err := d.reg.CreateIdentityPool(context.Background(), "", registry.IdentityPool{ID: id, Name: "game"}); err != nil {
		d.t.Fatal(err)
	}
}

// restart stops pushsyncd if it runs and starts it again, on the same
// NATS, Redis keys, emulators and API address, with secrets (the YAML of
// the secrets section) as its secrets configuration.
func (d *daemon) restart(secrets string) {
	t := d.t
	t.Helper()
	if d.stop != nil {
		d.stop()
	}
	listen := "127.0.0.1:0"
	if d.api != "" {
		listen = d.api // the commands' endpoint stays valid
	}
	d.write(filepath.Join(d.cfgDir, "pushsyncd.yaml"), fmt.Appendf(nil, `
role: all
log: {level: info}
secrets: %s
http: {listen: "127.0.0.1:0", shutdown_timeout: 1s}
api:
  listen: %q
  developer_access_key_id: %q
  developer_secret_access_key: %q
redis: {addrs: [%q], key_prefix: %q}
nats: {url: %q}
dispatcher: {ack_wait: 5s, send_timeout: 2s, retry_delay: 100ms, max_retry_delay: 500ms, max_deliver: 3, retry_budget: 200ms}
apns:
  production_host: %q
  sandbox_host: %q
  root_ca_file: %q
fcm:
  endpoint: %q
  root_ca_file: %q
`, secrets, listen, devKey, devSecret, testenv.RedisAddr(), d.prefix, d.natsURL, d.prod.URL, d.sandbox.URL,
		filepath.Join(d.cfgDir, "apns-ca.pem"), d.fcm.Endpoint(), filepath.Join(d.cfgDir, "fcm-ca.pem")))
	cfg, err := config.Load(filepath.Join(d.cfgDir, "pushsyncd.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan app.Addrs, 1), make(chan error, 1)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	go func() { done <- app.Run(ctx, cfg, app.Options{Logger: &log, Ready: func(a app.Addrs) { ready <- a }}) }()
	select {
	case a := <-ready:
		d.api, d.http = a.API, a.HTTP
	case err := <-done:
		t.Fatalf("pushsyncd exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("pushsyncd did not start")
	}
	stopped := false
	d.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pushsyncd: %v", err)
		}
	}
	t.Cleanup(d.stop)
	d.waitReady()
}

// write writes a file or fails the test.
func (d *daemon) write(path string, data []byte) {
	d.t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// waitReady waits until /readyz answers 200.
func (d *daemon) waitReady() {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + d.http + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("pushsyncd not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result is what one pushsyncctl run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// String shows the whole result, for failure messages.
func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// ctlEnv runs pushsyncctl with args in the environment env.
func ctlEnv(env map[string]string, args ...string) result {
	var stdout, stderr bytes.Buffer
	code := run(args, func(k string) string { return env[k] }, nil, &stdout, &stderr)
	return result{stdout.String(), stderr.String(), code}
}

// ctl runs pushsyncctl with the developer credentials and wants exit 0.
func (d *daemon) ctl(args ...string) string {
	d.t.Helper()
	return d.ctlWith(d.env, args...)
}

// ctlWith runs pushsyncctl in env and wants exit 0.
func (d *daemon) ctlWith(env map[string]string, args ...string) string {
	d.t.Helper()
	r := ctlEnv(env, args...)
	if r.code != 0 {
		d.t.Fatalf("pushsyncctl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// ctlFail runs pushsyncctl and wants exit code and stderr holding every
// one of want.
func (d *daemon) ctlFail(env map[string]string, code int, want []string, args ...string) result {
	d.t.Helper()
	r := ctlEnv(env, args...)
	if r.code != code {
		d.t.Fatalf("pushsyncctl %s: %s\nwant exit %d", strings.Join(args, " "), r, code)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			d.t.Errorf("pushsyncctl %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r
}

// with returns the daemon's environment with changes; "" removes a key.
func (d *daemon) with(kv ...string) map[string]string {
	env := map[string]string{}
	for k, v := range d.env {
		env[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(env, kv[i])
		} else {
			env[kv[i]] = kv[i+1]
		}
	}
	return env
}

// apnsKey makes a P-256 signing key, writes it as a .p8 file in the working
// directory and registers it with both APNs emulators.
func (d *daemon) apnsKey(file, keyID string) string {
	d.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		d.t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		d.t.Fatal(err)
	}
	p8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	d.write(filepath.Join(d.dir, file), p8)
	d.prod.AddTokenKey(team, keyID, &key.PublicKey, topic)
	d.sandbox.AddTokenKey(team, keyID, &key.PublicKey, topic)
	return string(p8)
}

// serviceAccount registers a service account with the FCM emulator and
// writes its JSON key file in the working directory.
func (d *daemon) serviceAccount(file string) []byte {
	d.t.Helper()
	sa, err := d.fcm.AddServiceAccount(project)
	if err != nil {
		d.t.Fatal(err)
	}
	d.write(filepath.Join(d.dir, file), sa)
	return sa
}

// pushApps registers an APNs token app and an FCM app with pushsyncctl and
// has the pool push through them, as an operator sets a deployment up.
func (d *daemon) pushApps() {
	d.t.Helper()
	d.apnsKey("key.p8", "KEY1234567")
	d.serviceAccount("sa.json")
	d.ctl("app", "create", "-name", "game-ios", "-apns-topic", topic, "-apns-key-file", "key.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)
	d.ctl("app", "create", "-name", "game-android", "-fcm-project", project, "-fcm-service-account-file", "sa.json")
	d.ctl("pool", "set-push", pool, "-apns", "game-ios", "-gcm", "game-android")
}

// waitDelivered waits until n events have been delivered, every push of
// each settled.
func (d *daemon) waitDelivered(n float64) {
	d.t.Helper()
	testenv.WaitMetric(d.t, d.http, n, "pushsync_events_consumed_total", "result", "delivered")
}

// keyValue returns the value of a "key: value" line of text output.
func keyValue(t *testing.T, out, key string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q line in:\n%s", key, out)
	return ""
}

// noSecrets fails the test if out shows any of the secrets or a
// credential member of the admin API's input.
func noSecrets(t *testing.T, what, out string, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, "PRIVATE KEY", "private_key", "authKey", "serviceAccount") {
		if strings.Contains(out, strings.TrimSpace(s)) {
			t.Errorf("%s shows a secret (%.40q):\n%s", what, s, out)
		}
	}
}

// TestOperatorTakesAPoolFromNothingToWorkingPushes drives only pushsyncctl,
// as an operator would, from no apps to pushes on the emulators.
func TestOperatorTakesAPoolFromNothingToWorkingPushes(t *testing.T) {
	d := startDaemon(t)
	p8 := d.apnsKey("AuthKey_KEY1234567.p8", "KEY1234567")
	sa := d.serviceAccount("service-account.json")
	var saFile struct {
		PrivateKey  string `json:"private_key"`
		ClientEmail string `json:"client_email"`
	}
	if err := json.Unmarshal(sa, &saFile); err != nil {
		t.Fatal(err)
	}
	keyBody := strings.Split(strings.TrimSpace(p8), "\n")[1] // a line of the key itself
	saKeyLine := strings.Split(saFile.PrivateKey, "\n")[1]

	if out := d.ctl("app", "list"); !strings.Contains(out, "no platform apps") {
		t.Fatalf("app list before any app: %q", out)
	}

	// The apps.
	out := d.ctl("app", "create", "-name", "game-ios", "-apns-topic", topic,
		"-apns-key-file", "AuthKey_KEY1234567.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)
	noSecrets(t, "app create", out, keyBody)
	for k, want := range map[string]string{
		"name": "game-ios", "kind": "apns", "revision": "1", "topic": topic, "auth": "token", "key id": "KEY1234567", "team id": team,
		"arn APNS":         "arn:aws:sns:us-east-1:000000000000:app/APNS/game-ios",
		"arn APNS_SANDBOX": "arn:aws:sns:us-east-1:000000000000:app/APNS_SANDBOX/game-ios",
	} {
		if got := keyValue(t, out, k); got != want {
			t.Errorf("app create %s: %q, want %q", k, got, want)
		}
	}
	out = d.ctl("app", "create", "-name", "game-android", "-fcm-project", project, "-fcm-service-account-file", "service-account.json")
	noSecrets(t, "app create fcm", out, saKeyLine)
	if keyValue(t, out, "client email") != saFile.ClientEmail || keyValue(t, out, "arn GCM") != "arn:aws:sns:us-east-1:000000000000:app/GCM/game-android" {
		t.Errorf("app create fcm:\n%s", out)
	}
	d.ctlFail(d.env, 1, []string{"pushsyncctl: ResourceConflictException: ", "game-ios"}, "app", "create", "-name", "game-ios",
		"-apns-topic", topic, "-apns-key-file", "AuthKey_KEY1234567.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)

	out = d.ctl("app", "list")
	noSecrets(t, "app list", out, keyBody, saKeyLine)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		!strings.HasPrefix(lines[1], "game-android") || !strings.Contains(lines[1], "GCM") || !strings.Contains(lines[1], saFile.ClientEmail) ||
		!strings.HasPrefix(lines[2], "game-ios") || !strings.Contains(lines[2], "APNS,APNS_SANDBOX") || !strings.Contains(lines[2], "KEY1234567") {
		t.Errorf("app list:\n%s", out)
	}
	for _, name := range []string{"game-ios", "game-android"} {
		noSecrets(t, "app show "+name, d.ctl("app", "show", name), keyBody, saKeyLine)
		noSecrets(t, "app show -o json "+name, d.ctl("-o", "json", "app", "show", name), keyBody, saKeyLine)
	}

	// The pool.
	if out := d.ctl("pool", "show", pool); keyValue(t, out, "push sync") != "off" {
		t.Errorf("pool show before set-push:\n%s", out)
	}
	d.ctlFail(d.env, 1, []string{"-gcm game-ios", "apns app", "GCM"}, "pool", "set-push", pool, "-gcm", "game-ios")
	d.ctlFail(d.env, 1, []string{"ResourceNotFoundException", "nope"}, "pool", "set-push", pool, "-gcm", "nope")
	d.ctlFail(d.env, 2, []string{"at least one of -apns, -apns-sandbox and -gcm", "usage: pushsyncctl"}, "pool", "set-push", pool)
	out = d.ctl("pool", "set-push", pool, "-apns", "game-ios", "-apns-sandbox", "game-ios", "-gcm", "game-android")
	if keyValue(t, out, "push sync") != "on" {
		t.Errorf("pool set-push:\n%s", out)
	}
	out = d.ctl("pool", "show", pool)
	for k, want := range map[string]string{
		"pool": pool, "push sync": "on",
		"APNS":         "game-ios arn:aws:sns:us-east-1:000000000000:app/APNS/game-ios",
		"APNS_SANDBOX": "game-ios arn:aws:sns:us-east-1:000000000000:app/APNS_SANDBOX/game-ios",
		"GCM":          "game-android arn:aws:sns:us-east-1:000000000000:app/GCM/game-android",
	} {
		if got := strings.Join(strings.Fields(keyValue(t, out, k)), " "); got != want {
			t.Errorf("pool show %s: %q, want %q", k, got, want)
		}
	}

	// The devices.
	ids := map[string]string{}
	for _, dev := range []struct{ platform, token string }{{"APNS", tok(1)}, {"APNS_SANDBOX", tok(2)}, {"GCM", "fcm-pixel-registration-token"}} {
		id := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", alice, "-platform", dev.platform, "-token", dev.token))
		if id == "" || strings.ContainsAny(id, " \n") {
			t.Fatalf("device register %s printed %q, want a DeviceId", dev.platform, id)
		}
		ids[dev.platform] = id
		if out := d.ctl("device", "subscribe", "-pool", pool, "-identity", alice, "-dataset", "settings", "-device", id); !strings.Contains(out, id) {
			t.Errorf("device subscribe: %q", out)
		}
	}
	if again := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", alice, "-platform", "GCM", "-token", "fcm-pixel-registration-token")); again != ids["GCM"] {
		t.Errorf("registering a token again gave %s, want %s", again, ids["GCM"])
	}

	// A change made on the GCM device reaches the two APNs devices.
	out = d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "5", "-origin", ids["GCM"])
	if keyValue(t, out, "duplicate") != "false" || keyValue(t, out, "sequence") == "0" {
		t.Errorf("event publish:\n%s", out)
	}
	d.waitDelivered(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prod, err := d.prod.WaitForPushes(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	sandbox, err := d.sandbox.WaitForPushes(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(prod) != 1 || prod[0].DeviceToken != tok(1) || len(sandbox) != 1 || sandbox[0].DeviceToken != tok(2) {
		t.Fatalf("APNs pushes: production %+v, sandbox %+v", prod, sandbox)
	}
	for _, p := range []apnstest.Push{prod[0], sandbox[0]} {
		if !strings.Contains(string(p.Payload), `"syncCount":5`) || !strings.Contains(string(p.Payload), alice) {
			t.Errorf("APNs payload %s", p.Payload)
		}
	}
	if n := len(d.fcm.Pushes()); n != 0 {
		t.Fatalf("the origin device got %d FCM pushes", n)
	}

	// A change made on the APNs device reaches the sandbox and FCM ones;
	// publishing it again (a new event, made now) pushes to no device again.
	d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "6", "-origin", ids["APNS"])
	d.waitDelivered(2)
	fcm, err := d.fcm.WaitForPushes(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(fcm) != 1 || fcm[0].Token != "fcm-pixel-registration-token" || fcm[0].Data["syncCount"] != "6" || fcm[0].ProjectID != project {
		t.Fatalf("FCM pushes %+v", fcm)
	}
	if p, s := d.prod.Pushes(), d.sandbox.Pushes(); len(p) != 1 || len(s) != 2 || !strings.Contains(string(s[1].Payload), `"syncCount":6`) {
		t.Fatalf("APNs pushes after the second change: production %d, sandbox %d", len(p), len(s))
	}
	out = d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "6", "-origin", ids["APNS"])
	if keyValue(t, out, "duplicate") != "false" {
		t.Errorf("publishing the same sync count again:\n%s", out)
	}
	d.waitDelivered(3)
	if p, s, f := len(d.prod.Pushes()), len(d.sandbox.Pushes()), len(d.fcm.Pushes()); p != 1 || s != 2 || f != 1 {
		t.Fatalf("pushes after publishing sync count 6 again: production %d, sandbox %d, FCM %d; want 1, 2, 1", p, s, f)
	}

	// Unsubscribed, the sandbox device gets no more pushes.
	d.ctl("device", "unsubscribe", "-pool", pool, "-identity", alice, "-dataset", "settings", "-device", ids["APNS_SANDBOX"])
	d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "7")
	d.waitDelivered(4)
	if p, s, f := len(d.prod.Pushes()), len(d.sandbox.Pushes()), len(d.fcm.Pushes()); p != 2 || s != 2 || f != 2 {
		t.Fatalf("pushes after unsubscribing the sandbox device: production %d, sandbox %d, FCM %d; want 2, 2, 2", p, s, f)
	}

	// Rotating the APNs key raises the revision and shows the new key id.
	newKey := d.apnsKey("AuthKey_KEY7654321.p8", "KEY7654321")
	out = d.ctl("app", "rotate", "game-ios", "-apns-topic", topic,
		"-apns-key-file", "AuthKey_KEY7654321.p8", "-apns-key-id", "KEY7654321", "-apns-team-id", team)
	noSecrets(t, "app rotate", out, strings.Split(newKey, "\n")[1])
	if keyValue(t, out, "revision") != "2" || keyValue(t, out, "key id") != "KEY7654321" {
		t.Errorf("app rotate:\n%s", out)
	}
	d.ctlFail(d.env, 1, []string{"ResourceNotFoundException", "nope"}, "app", "rotate", "nope",
		"-fcm-project", project, "-fcm-service-account-file", "service-account.json")

	// An app a pool uses cannot be deleted; once push is off, it can.
	d.ctlFail(d.env, 1, []string{"pushsyncctl: ResourceConflictException: ", pool, "game-android"}, "app", "delete", "game-android")
	if out := d.ctl("pool", "disable-push", pool); keyValue(t, out, "push sync") != "off" {
		t.Errorf("pool disable-push:\n%s", out)
	}
	if out := d.ctl("app", "delete", "game-android"); !strings.Contains(out, "deleted platform app game-android") {
		t.Errorf("app delete: %q", out)
	}
	d.ctlFail(d.env, 1, []string{"pushsyncctl: ResourceNotFoundException: ", "game-android"}, "app", "show", "game-android")
}

// TestIssuedCredentialsEvaluateToAWorkingIdentity evaluates the output of
// credentials issue with sh and uses the credentials.
func TestIssuedCredentialsEvaluateToAWorkingIdentity(t *testing.T) {
	d := startDaemon(t)
	d.apnsKey("key.p8", "KEY1234567")
	d.ctl("app", "create", "-name", "game-ios", "-apns-topic", topic, "-apns-key-file", "key.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)
	d.ctl("pool", "set-push", pool, "-apns", "game-ios")

	r := ctlEnv(d.env, "credentials", "issue", "-pool", pool, "-identity", alice, "-duration", "30m")
	if r.code != 0 {
		t.Fatal(r)
	}
	if !strings.Contains(r.stderr, "expire at") || strings.Contains(r.stdout, "expire") {
		t.Errorf("the expiration belongs on stderr:\n%s", r)
	}
	// Evaluate the output as the usage says: eval $(pushsyncctl credentials issue ...).
	if err := os.WriteFile("creds.out", []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh to evaluate the output with: %v", err)
	}
	cmd := exec.Command(sh, "-c", `eval $(cat creds.out); printf '%s\n%s\n%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN"`)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	evaluated, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	creds := strings.Split(strings.TrimSuffix(string(evaluated), "\n"), "\n")
	if len(creds) != 3 || !strings.HasPrefix(creds[0], "ASIA") || creds[1] == "" || creds[2] == "" {
		t.Fatalf("evaluated credentials %q from:\n%s", creds, r.stdout)
	}

	client := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("eu-west-1"),
		Credentials: credentials.NewStaticCredentials(creds[0], creds[1], creds[2]), MaxRetries: aws.Int(0),
	})))
	if _, err := client.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
		Platform: aws.String("APNS"), Token: aws.String(tok(3))}); err != nil {
		t.Fatalf("RegisterDevice for the credentials' own identity: %v", err)
	}
	_, err = client.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(bob),
		Platform: aws.String("APNS"), Token: aws.String(tok(4))})
	var ae awserr.Error
	if !errors.As(err, &ae) || ae.Code() != "NotAuthorizedException" {
		t.Fatalf("RegisterDevice for another identity: %v, want NotAuthorizedException", err)
	}

	// pushsyncctl itself works with them for that identity, and the admin
	// API refuses them.
	idEnv := d.with("AWS_ACCESS_KEY_ID", creds[0], "AWS_SECRET_ACCESS_KEY", creds[1], "AWS_SESSION_TOKEN", creds[2])
	if id := strings.TrimSpace(d.ctlWith(idEnv, "device", "register", "-pool", pool, "-identity", alice, "-platform", "APNS", "-token", tok(3))); id == "" {
		t.Error("device register with identity credentials printed no DeviceId")
	}
	d.ctlFail(idEnv, 1, []string{"pushsyncctl: NotAuthorizedException: "}, "device", "register", "-pool", pool, "-identity", bob, "-platform", "APNS", "-token", tok(4))
	d.ctlFail(idEnv, 1, []string{"pushsyncctl: NotAuthorizedException: ", "developer credentials"}, "app", "list")

	// -duration takes the server's range, from 1m to 12h.
	for _, dur := range []string{"1m", "12h"} {
		d.ctl("credentials", "issue", "-pool", pool, "-identity", alice, "-duration", dur)
	}
}

// TestJSONOutputParses checks that -o json prints the API's JSON.
func TestJSONOutputParses(t *testing.T) {
	d := startDaemon(t)
	d.apnsKey("key.p8", "KEY1234567")
	d.serviceAccount("sa.json")
	decode := func(out string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%v in:\n%s", err, out)
		}
		if !strings.Contains(out, "\n  ") {
			t.Errorf("JSON output is not indented:\n%s", out)
		}
	}
	var view struct {
		Name            string
		Kind            string
		Revision        int
		ApplicationArns map[string]string
	}
	decode(d.ctl("-o", "json", "app", "create", "-name", "game-ios", "-apns-topic", topic, "-apns-key-file", "key.p8",
		"-apns-key-id", "KEY1234567", "-apns-team-id", team), &view)
	if view.Name != "game-ios" || view.Kind != "apns" || view.Revision != 1 || view.ApplicationArns["APNS"] == "" {
		t.Errorf("app create -o json: %+v", view)
	}
	d.ctl("app", "create", "-name", "game-android", "-fcm-project", project, "-fcm-service-account-file", "sa.json")
	var list struct{ Apps []struct{ Name string } }
	decode(d.ctl("-o", "json", "app", "list"), &list)
	if len(list.Apps) != 2 || list.Apps[0].Name != "game-android" {
		t.Errorf("app list -o json: %+v", list)
	}
	var cfg struct {
		IdentityPoolId string
		PushSync       struct{ ApplicationArns []string }
	}
	decode(d.ctl("-o", "json", "pool", "set-push", pool, "-apns", "game-ios", "-gcm", "game-android"), &cfg)
	if cfg.IdentityPoolId != pool || len(cfg.PushSync.ApplicationArns) != 2 {
		t.Errorf("pool set-push -o json: %+v", cfg)
	}
	decode(d.ctl("-o", "json", "pool", "show", pool), &cfg)
	if len(cfg.PushSync.ApplicationArns) != 2 {
		t.Errorf("pool show -o json: %+v", cfg)
	}
	var dev struct{ DeviceId string }
	decode(d.ctl("-o", "json", "device", "register", "-pool", pool, "-identity", alice, "-platform", "GCM", "-token", "fcm-1-registration-token"), &dev)
	if dev.DeviceId == "" {
		t.Error("device register -o json: no DeviceId")
	}
	if out := strings.TrimSpace(d.ctl("-o", "json", "device", "subscribe", "-pool", pool, "-identity", alice, "-dataset", "settings", "-device", dev.DeviceId)); out != "{}" {
		t.Errorf("device subscribe -o json: %q", out)
	}
	var pub struct {
		Stream    string
		Sequence  int
		Duplicate bool
	}
	if err := json.Unmarshal([]byte(d.ctl("-o", "json", "event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "1")), &pub); err != nil || pub.Stream == "" || pub.Sequence == 0 {
		t.Errorf("event publish -o json: %+v %v", pub, err)
	}
	var creds struct {
		IdentityId  string
		Credentials struct {
			AccessKeyId string
			Expiration  float64
		}
	}
	decode(d.ctl("-o", "json", "credentials", "issue", "-pool", pool, "-identity", alice), &creds)
	if creds.IdentityId != alice || creds.Credentials.AccessKeyId == "" || time.Until(time.Unix(int64(creds.Credentials.Expiration), 0)) < 50*time.Minute {
		t.Errorf("credentials issue -o json: %+v", creds)
	}
	d.ctl("pool", "disable-push", pool)
	var off struct {
		IdentityPoolId string
		PushSync       *struct{}
	}
	decode(d.ctl("-o", "json", "pool", "show", pool), &off)
	if off.IdentityPoolId != pool || off.PushSync != nil {
		t.Errorf("pool show -o json after disable-push: %+v", off)
	}
}

// TestErrors checks the exit status and message of usage, file,
// credential and API errors.
func TestErrors(t *testing.T) {
	d := startDaemon(t)
	d.apnsKey("key.p8", "KEY1234567")

	// Usage.
	for _, args := range [][]string{{"help"}, {"-h"}} {
		r := ctlEnv(nil, args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("pushsyncctl %s: %s", args, r)
		}
		for _, cmd := range commands {
			if !strings.Contains(r.stdout, "\n  "+cmd.name) {
				t.Errorf("pushsyncctl %s does not list %q", args, cmd.name)
			}
		}
	}
	if r := ctlEnv(nil, "app", "create", "-h"); r.code != 0 || !strings.Contains(r.stdout, "-apns-key-file") {
		t.Errorf("app create -h: %s", r)
	}
	d.ctlFail(nil, 2, []string{`unknown command "frobnicate"`, "usage: pushsyncctl", "event publish"}, "frobnicate")
	d.ctlFail(nil, 2, []string{`unknown command "app"; app takes create, list, show, rotate, delete`}, "app")
	d.ctlFail(nil, 2, []string{`unknown command "pool drop"; pool takes show, set-push, disable-push`}, "pool", "drop", pool)
	d.ctlFail(nil, 2, []string{"no command"})
	d.ctlFail(nil, 2, []string{"flag provided but not defined: -bogus", "usage: pushsyncctl"}, "-bogus", "app", "list")
	d.ctlFail(d.env, 2, []string{"flag provided but not defined: -x", "usage: pushsyncctl [global flags] app list"}, "app", "list", "-x")
	d.ctlFail(d.env, 2, []string{"-o must be text or json"}, "-o", "yaml", "app", "list")
	d.ctlFail(d.env, 2, []string{"app show needs NAME"}, "app", "show")
	d.ctlFail(d.env, 2, []string{"app create needs -name"}, "app", "create", "-fcm-project", project)
	d.ctlFail(d.env, 2, []string{"device register needs -platform, -token"}, "device", "register", "-pool", pool, "-identity", alice)
	d.ctlFail(d.env, 2, []string{"not both"}, "app", "create", "-name", "x", "-apns-topic", topic, "-fcm-project", project)
	d.ctlFail(d.env, 2, []string{"-apns-key-id"}, "app", "create", "-name", "x", "-apns-topic", topic, "-apns-key-file", "key.p8")

	// Files.
	d.ctlFail(d.env, 1, []string{"-apns-key-file", "missing.p8", "no such file"}, "app", "create", "-name", "x",
		"-apns-topic", topic, "-apns-key-file", "missing.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)
	d.ctlFail(d.env, 1, []string{"-fcm-service-account-file", "missing.json"}, "app", "create", "-name", "x",
		"-fcm-project", project, "-fcm-service-account-file", "missing.json")
	d.ctlFail(d.env, 1, []string{"pushsyncctl: InvalidParameterException: ", "serviceAccount"}, "app", "create", "-name", "x",
		"-fcm-project", project, "-fcm-service-account-file", "key.p8")

	// Credentials.
	want := []string{"-access-key", "-secret-key", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
	d.ctlFail(d.with("AWS_ACCESS_KEY_ID", "", "AWS_SECRET_ACCESS_KEY", ""), 2, want, "app", "list")
	d.ctlFail(d.with("AWS_SECRET_ACCESS_KEY", ""), 2, want, "pool", "show", pool)
	if r := ctlEnv(d.with("AWS_ACCESS_KEY_ID", "", "AWS_SECRET_ACCESS_KEY", ""), "-access-key", devKey, "-secret-key", devSecret, "app", "list"); r.code != 0 {
		t.Errorf("credentials from flags: %s", r)
	}
	d.ctlFail(d.env, 1, []string{"pushsyncctl: InvalidSignatureException: "}, "-secret-key", "not-the-secret-at-all", "app", "list")
	d.ctlFail(d.env, 1, []string{"pushsyncctl: InvalidSignatureException: "}, "-secret-key", "not-the-secret-at-all", "pool", "show", pool)
	d.ctlFail(d.env, 1, []string{"pushsyncctl: UnrecognizedClientException: "}, "-access-key", "AKIANOSUCHKEY0000000", "app", "list")

	// API errors.
	d.ctlFail(d.env, 1, []string{"pushsyncctl: ResourceNotFoundException: ", "nope"}, "app", "show", "nope")
	d.ctlFail(d.env, 1, []string{"pushsyncctl: InvalidParameterException: "}, "pool", "show", "not-a-pool")
	d.ctlFail(d.env, 1, []string{"pushsyncctl: InvalidConfigurationException: ", pool}, "device", "register", "-pool", pool, "-identity", alice, "-platform", "GCM", "-token", "t")
	d.ctlFail(d.env, 1, []string{"pushsyncctl: InvalidParameterException: "}, "event", "publish", "-pool", pool, "-identity", alice, "-dataset", "bad/name", "-sync-count", "1")

	// An endpoint nothing listens on.
	d.ctlFail(d.with("PUSHSYNCCTL_ENDPOINT", "http://127.0.0.1:1"), 1, []string{"cannot reach the pushsync API at http://127.0.0.1:1"}, "app", "list")
	d.ctlFail(d.env, 1, []string{"cannot reach the pushsync API"}, "-endpoint", "127.0.0.1:1", "pool", "show", pool)
}
