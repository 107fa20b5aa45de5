package app_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/app"
	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/internal/testenv"
)

// logBuffer is a log that goroutines write and the test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines that contain s.
func (l *logBuffer) lines(s string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

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
func runApp(ctx context.Context, cfg *config.Config) (*logBuffer, <-chan app.Addrs, <-chan error) {
	logs := &logBuffer{}
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
	if got := logs.lines("Authorization Violation"); len(got) == 0 || !strings.Contains(got[0], s.ClientURL()) {
		t.Errorf("the log does not say the server refused the credentials, naming it:\n%s", logs)
	}
	if strings.Contains(logs.String(), "wrong") {
		t.Errorf("the token is in the log:\n%s", logs)
	}
}

// A NATS that does not answer at start is logged at once with its URL and
// the cause, once rather than at every retry, and /readyz says it too.
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
	refused := logs.lines("connection refused")
	if len(refused) != 1 || !strings.Contains(refused[0], url) || !strings.Contains(refused[0], `"level":"error"`) {
		t.Errorf("want one error line naming %s and the refused connection, got %d:\n%s", url, len(refused), logs)
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
	for len(logs.lines("consuming events")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the client's callbacks run on their own goroutine
	if got := logs.lines("disconnected"); len(got) > 0 {
		t.Errorf("a clean stop logged %q", got)
	}
	if len(logs.lines(`"message":"stopped"`)) != 1 {
		t.Errorf("no stopped line:\n%s", logs)
	}
}
