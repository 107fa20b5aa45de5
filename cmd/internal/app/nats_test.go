package app_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/app"
	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/internal/emutls"
	"github.com/pushsync/pushsync/internal/testenv"
)

// workerConfig is a worker's configuration with the NATS at natsURL.
func workerConfig(t *testing.T, natsURL string) *config.Config {
	t.Helper()
	testenv.Redis(t)
	cfg := config.Default()
	cfg.Secrets.MasterKey = masterKey
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.ShutdownTimeout = config.Duration(time.Second)
	cfg.Redis.Addrs = []string{testenv.RedisAddr()}
	cfg.NATS.URL = natsURL
	return cfg
}

// runApp runs pushsyncd with the log going to a buffer; the returned
// channel gets what Run returns.
func runApp(ctx context.Context, cfg *config.Config) (*testenv.LogBuffer, <-chan app.Addrs, <-chan error) {
	logs := &testenv.LogBuffer{}
	log := zerolog.New(logs)
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, app.Options{Logger: &log, Ready: func(a app.Addrs) { ready <- a }})
	}()
	return logs, ready, done
}

// A NATS server that refuses the credentials makes the client stop for
// good; the process says why and exits with the error, so that its
// supervisor restarts it, rather than running on without NATS.
func TestRefusedNATSCredentialsEndTheProcessWithTheCause(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, Authorization: "s3cret", NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats not ready")
	}
	cfg := workerConfig(t, s.ClientURL())
	cfg.NATS.Token = "wrong"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	logs, _, done := runApp(ctx, cfg)
	err = <-done
	if ctx.Err() != nil || err == nil {
		t.Fatalf("Run returned %v after %v; log:\n%s", err, ctx.Err(), logs)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") || !strings.Contains(err.Error(), s.ClientURL()) {
		t.Errorf("Run: %v; want the URL and the authorization violation", err)
	}
	if got := logs.Lines("Authorization Violation"); len(got) == 0 || !strings.Contains(got[0], s.ClientURL()) {
		t.Errorf("the log does not say the server refused the credentials, naming it:\n%s", logs)
	}
	if strings.Contains(logs.String(), "wrong") {
		t.Errorf("the token is in the log:\n%s", logs)
	}
}

// A NATS that does not answer at start is logged at once with its URL and
// the cause, once rather than at every retry, and /readyz says it too. The
// client's first report, "no servers available for connection", names no
// cause and is not logged.
func TestUnreachableNATSIsLoggedWithTheCause(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs, ready, done := runApp(ctx, workerConfig(t, url))
	var addrs app.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("pushsyncd did not start")
	}
	time.Sleep(3500 * time.Millisecond) // three more attempts
	refused := logs.Lines("connection refused")
	if len(refused) != 1 || !strings.Contains(refused[0], url) || !strings.Contains(refused[0], `"level":"error"`) {
		t.Errorf("want one error line naming %s and the refused connection, got %d:\n%s", url, len(refused), logs)
	}
	if failed := logs.Lines("cannot connect to NATS"); len(failed) != 1 {
		t.Errorf("want one line saying NATS cannot be reached, the one with the cause, got %d:\n%s", len(failed), logs)
	}
	res, err := http.Get("http://" + addrs.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "nats: not connected to "+url) || !strings.Contains(string(body), "connection refused") {
		t.Errorf("/readyz: %d %s", res.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after the stop: %v", err)
	}
}

// A stop the process asked for closes its NATS connection without a
// warning about it.
func TestCleanStopLogsNoNATSDisconnection(t *testing.T) {
	ns := testenv.StartNATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	logs, ready, done := runApp(ctx, workerConfig(t, ns.URL))
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(logs.Lines("consuming events")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the client's callbacks run on their own goroutine
	if got := logs.Lines("disconnected"); len(got) > 0 {
		t.Errorf("a clean stop logged %q", got)
	}
	if len(logs.Lines(`"message":"stopped"`)) != 1 {
		t.Errorf("no stopped line:\n%s", logs)
	}
}

// TestNATSOverTLSWithAClientCertificate: a NATS server whose certificate a
// private authority signed, and which verifies client certificates, takes
// pushsyncd's connection made with nats.tls; without the client
// certificate it refuses it, and a missing file is an error naming its key.
func TestNATSOverTLSWithAClientCertificate(t *testing.T) {
	dir := t.TempDir()
	server1, err := emutls.New("nats")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := server1.ClientCertificate("pushsyncd")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TLS: true, TLSVerify: true, TLSTimeout: 5, TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{server1.Certificate}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: server1.RootCAs(), MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("NATS did not start")
	}

	cfg := config.Default().NATS
	cfg.URL = ns.ClientURL()
	cfg.TLS = config.NATSTLSConfig{CAFile: write("ca.pem", server1.CAPEM), CertFile: write("client.pem", certPEM), KeyFile: write("client.key", keyPEM)}
	nc, err := app.ConnectNATS(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected over TLS: %v", nc.LastError())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cs, err := nc.TLSConnectionState(); err != nil || len(cs.PeerCertificates) == 0 {
		t.Fatalf("connection is not TLS: %v", err)
	}

	noCert := cfg
	noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
	refused, err := app.ConnectNATS(noCert, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	for refused.LastError() == nil && !refused.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("no error and no connection without the client certificate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if refused.IsConnected() {
		t.Fatal("the server took a connection without a client certificate")
	}

	missing := cfg
	missing.TLS.CAFile = filepath.Join(dir, "nope.pem")
	if _, err := app.ConnectNATS(missing, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "nats.tls.ca_file") {
		t.Fatalf("a missing CA file: %v, want an error naming nats.tls.ca_file", err)
	}
}

// A NATS credentials file that cannot be read stops the start with an
// error naming the setting, not the servers it was never sent to.
func TestUnreadableNATSCredsFileIsNamed(t *testing.T) {
	cfg := config.Default().NATS
	cfg.URL = "nats://127.0.0.1:1"
	cfg.CredsFile = filepath.Join(t.TempDir(), "pushsync.creds")
	nc, err := app.ConnectNATS(cfg, zerolog.Nop())
	if err == nil {
		nc.Close()
		t.Fatal("connected with a credentials file that does not exist")
	}
	if want := "nats.creds_file: open " + cfg.CredsFile + ": no such file or directory"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}
