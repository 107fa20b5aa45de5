package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/emufeed"
	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/dispatcher/apns"
	"github.com/pushsync/pushsync/dispatcher/fcm"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// TestMain lets the tests run this binary as pushemu itself.
func TestMain(m *testing.M) {
	if os.Getenv("PUSHEMU_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestHelp runs pushemu -h: it prints the usage, with every flag, and
// exits 0, as asking for help is not an error.
func TestHelp(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-h")
	cmd.Env = append(os.Environ(), "PUSHEMU_TEST_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pushemu -h: %v\n%s", err, out)
	}
	for _, want := range []string{"-dir", "-hosts", "-new-credentials", "replacing those in -dir"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the usage has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "help requested") {
		t.Errorf("the usage ends with an error:\n%s", out)
	}
}

// TestWrittenCredentialsWork starts pushemu and sends one push to each
// emulator with the notifiers pushsyncd uses, configured only from the
// files pushemu wrote.
func TestWrittenCredentialsWork(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dir", dir, "-apns-addr", "127.0.0.1:0", "-apns-sandbox-addr", "127.0.0.1:0", "-fcm-addr", "127.0.0.1:0", "-feed-addr", "127.0.0.1:0", "-quiet"}, io.Discard, func(a Addrs) { ready <- a })
	}()
	var addrs Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	cfg, err := config.Load(filepath.Join(dir, "pushsyncd.yaml"), nil)
	if err != nil {
		t.Fatalf("pushsyncd.yaml does not load: %v", err)
	}
	if cfg.APNs.ProductionHost != addrs.APNs || cfg.APNs.SandboxHost != addrs.APNsSandbox || cfg.FCM.Endpoint != addrs.FCM+"/v1" {
		t.Fatalf("config points at %s %s %s, emulators at %+v", cfg.APNs.ProductionHost, cfg.APNs.SandboxHost, cfg.FCM.Endpoint, addrs)
	}
	var ids struct{ KeyID, TeamID string }
	if err := json.Unmarshal(readFile(t, dir, "apns.json"), &ids); err != nil {
		t.Fatal(err)
	}
	m, err := emufeed.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := (emufeed.Manifest{APNs: addrs.APNs, APNsSandbox: addrs.APNsSandbox, FCM: addrs.FCM, FCMEndpoint: cfg.FCM.Endpoint, Feed: addrs.Feed,
		APNsKeyID: ids.KeyID, APNsTeamID: ids.TeamID, FCMProjectID: ProjectID, PID: os.Getpid()}); *m != want || m.Feed == "" {
		t.Fatalf("emulators.json = %+v, want %+v", *m, want)
	}
	followCtx, stopFollowing := context.WithCancel(context.Background())
	defer stopFollowing()
	lines, following, followed := make(chan emufeed.Line, 8), make(chan struct{}), make(chan error, 1)
	go func() {
		followed <- emufeed.Follow(followCtx, m.Feed, func() { close(following) }, func(l *emufeed.Line) error { lines <- *l; return nil })
	}()
	select {
	case <-following:
	case err := <-followed:
		t.Fatal(err)
	}
	sent := time.Now()

	ev := newEvent()
	iosApp, androidApp := appsOf(t, dir)
	if iosApp.APNs.KeyID != ids.KeyID || iosApp.APNs.TeamID != ids.TeamID {
		t.Fatalf("apns.json names %+v, pushemu %s %s", ids, KeyID, TeamID)
	}
	pushToAll(t, cfg, loadPool(t, cfg.APNs.RootCAFile), loadPool(t, cfg.FCM.RootCAFile), iosApp, androidApp, ev)

	// The feed has the three pushes, as they arrived.
	got := map[string]emufeed.Line{}
	for len(got) < 3 {
		select {
		case l := <-lines:
			got[l.Service+" "+l.Environment] = l
		case err := <-followed:
			t.Fatalf("the feed ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("the feed has %d of the 3 pushes: %+v", len(got), got)
		}
	}
	for _, env := range []string{"production", "development"} {
		l := got["apns "+env]
		var p struct {
			Data struct {
				IdentityID string `json:"identityId"`
				SyncCount  int64  `json:"syncCount"`
			} `json:"data"`
		}
		if err := json.Unmarshal(l.Payload, &p); err != nil || p.Data.IdentityID != ev.IdentityID || p.Data.SyncCount != 1 || l.Topic != "com.any.app" || l.Token == "" {
			t.Errorf("APNs %s feed line %+v (%v)", env, l, err)
		}
	}
	if l := got["fcm "]; l.Data["identityId"] != ev.IdentityID || l.Data["syncCount"] != "1" || l.ProjectID != ProjectID || l.Token != "fcm-token-registration-token" {
		t.Errorf("FCM feed line %+v", l)
	}
	for k, l := range got {
		if l.ReceivedAt.Before(sent) || time.Since(l.ReceivedAt) > time.Minute {
			t.Errorf("%s arrived at %s, sent from %s", k, l.ReceivedAt, sent)
		}
	}
	stopFollowing()
	if err := <-followed; err != nil {
		t.Errorf("Follow after its context ended: %v", err)
	}
}

func newEvent() *event.DatasetChanged {
	return &event.DatasetChanged{Version: 1, IdentityPoolID: "us-east-1:0f1e", IdentityID: "us-east-1:abc", DatasetName: "settings", SyncCount: 1, ChangedAt: time.Now()}
}

// appsOf returns the platform apps an operator registers with the
// credentials in dir, as the README does.
func appsOf(t *testing.T, dir string) (ios, android *registry.App) {
	t.Helper()
	ios = &registry.App{Name: "ios", Kind: registry.KindAPNs, Revision: 1, APNs: &registry.APNsCredentials{
		Topic: "com.any.app", KeyID: KeyID, TeamID: TeamID, AuthKey: string(readFile(t, dir, "apns-authkey.p8"))}}
	android = &registry.App{Name: "android", Kind: registry.KindFCM, Revision: 1, FCM: &registry.FCMCredentials{
		ProjectID: ProjectID, ServiceAccount: string(readFile(t, dir, "fcm-service-account.json"))}}
	for _, a := range []*registry.App{ios, android} {
		if err := a.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	return ios, android
}

// pushToAll sends ev to the APNs production and sandbox emulators for ios
// and to the FCM emulator for android, with the notifiers pushsyncd uses,
// configured by cfg and trusting the roots given, failing the test unless
// every emulator accepts its push.
func pushToAll(t *testing.T, cfg *config.Config, apnsRoots, fcmRoots *x509.CertPool, ios, android *registry.App, ev *event.DatasetChanged) {
	t.Helper()
	apnsN := apns.New(apns.Options{ProductionHost: cfg.APNs.ProductionHost, SandboxHost: cfg.APNs.SandboxHost, RootCAs: apnsRoots}, zerolog.Nop())
	defer apnsN.Close()
	for _, p := range []registry.Platform{registry.APNS, registry.APNSSandbox} {
		err := apnsN.Notify(context.Background(), &dispatcher.Push{Event: ev, App: ios,
			Device: registry.Device{ID: "d", Platform: p, Token: "00000000000000000000000000000000000000000000000000000000000000aa"}})
		if err != nil {
			t.Fatalf("APNs %s: %v", p, err)
		}
	}
	fcmN, err := fcm.New(fcm.Options{Endpoint: cfg.FCM.Endpoint, RootCAs: fcmRoots}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer fcmN.Close()
	if err := fcmN.Notify(context.Background(), &dispatcher.Push{Event: ev, App: android,
		Device: registry.Device{ID: "d", Platform: registry.GCM, Token: "fcm-token-registration-token"}}); err != nil {
		t.Fatalf("FCM: %v", err)
	}
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCertificatesNameTheListenAddress starts pushemu on 127.0.0.2,
// which pushsyncd.yaml and the service account then name, and pushes
// with what it wrote: the certificates carry that address.
func TestCertificatesNameTheListenAddress(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		testenv.Missing(t, "a second loopback address, 127.0.0.2, to listen on (Linux routes all of 127.0.0.0/8 to lo): "+err.Error())
	} else {
		ln.Close()
	}
	dir := t.TempDir()
	a, _, _ := startPushemu(t, "-dir", dir, "-apns-addr", "127.0.0.2:0", "-apns-sandbox-addr", "127.0.0.2:0", "-fcm-addr", "127.0.0.2:0")
	if !strings.HasPrefix(a.APNs, "https://127.0.0.2:") || !strings.HasPrefix(a.FCM, "https://127.0.0.2:") {
		t.Fatalf("emulators at %+v", a)
	}
	ios, android := appsOf(t, dir)
	pushToAll(t, loadConfig(t, dir), loadPool(t, filepath.Join(dir, "apns-ca.pem")), loadPool(t, filepath.Join(dir, "fcm-ca.pem")), ios, android, newEvent())
}

func TestBusyPortIsAnError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	dir := t.TempDir()
	go func() {
		done <- run(ctx, []string{"-dir", dir, "-apns-addr", "127.0.0.1:0", "-apns-sandbox-addr", "127.0.0.1:0", "-fcm-addr", "127.0.0.1:0", "-feed-addr", "127.0.0.1:0"}, io.Discard, func(a Addrs) { ready <- a })
	}()
	a := waitReady(t, ready, done)
	taken := a.APNs[len("https://"):]
	err := run(context.Background(), []string{"-dir", t.TempDir(), "-apns-addr", taken, "-feed-addr", "127.0.0.1:0"}, io.Discard, nil)
	if err == nil {
		t.Fatal("a second pushemu on the same port started")
	}
	cancel()
	<-done
}

func loadPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", path)
	}
	return p
}

func TestServiceAccountNamesTheExtraHost(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dir", dir, "-apns-addr", "127.0.0.1:0", "-apns-sandbox-addr", "127.0.0.1:0", "-fcm-addr", "127.0.0.1:0", "-feed-addr", "127.0.0.1:0", "-hosts", "pushemu,emu.local", "-quiet"}, io.Discard, func(a Addrs) { ready <- a })
	}()
	a := waitReady(t, ready, done)
	defer func() { cancel(); <-done }()
	data, err := os.ReadFile(filepath.Join(dir, "fcm-service-account.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sa struct {
		TokenURI string `json:"token_uri"`
		Type     string `json:"type"`
	}
	if err := json.Unmarshal(data, &sa); err != nil {
		t.Fatal(err)
	}
	port := a.FCM[strings.LastIndex(a.FCM, ":")+1:]
	if sa.TokenURI != "https://pushemu:"+port+"/token" || sa.Type != "service_account" {
		t.Fatalf("service account %+v, want token_uri https://pushemu:%s/token", sa, port)
	}
	// emulators.json names the same host, for programs elsewhere.
	m, err := emufeed.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	portOf := func(u string) string { return u[strings.LastIndex(u, ":")+1:] }
	for _, c := range []struct{ got, want string }{
		{m.APNs, "https://pushemu:" + portOf(a.APNs)},
		{m.APNsSandbox, "https://pushemu:" + portOf(a.APNsSandbox)},
		{m.FCMEndpoint, "https://pushemu:" + port + "/v1"},
		{m.Feed, "http://pushemu:" + portOf(strings.TrimSuffix(a.Feed, "/pushes")) + "/pushes"},
	} {
		if c.got != c.want {
			t.Errorf("emulators.json has %s, want %s", c.got, c.want)
		}
	}
}

// waitReady waits for a pushemu started with run to be ready, failing the
// test if it stops first.
func waitReady(t *testing.T, ready <-chan Addrs, done <-chan error) Addrs {
	t.Helper()
	select {
	case a := <-ready:
		return a
	case err := <-done:
		t.Fatalf("pushemu stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("pushemu not ready after 30s")
	}
	return Addrs{}
}
