// Package testenv gives tests the real services pushsync runs on: a NATS
// server with JetStream started inside the test process, and the Redis
// server of the machine (127.0.0.1:6379, or PUSHSYNC_TEST_REDIS_ADDR) with
// a key prefix of the test's own.
//
// A missing dependency fails the test when CI=true. Elsewhere the test is
// skipped with a message that says how to provide it; it is never skipped
// quietly.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// NATS is a NATS server with JetStream running in the test process.
type NATS struct {
	t      testing.TB
	opts   server.Options
	Server *server.Server
	// URL is the client URL of the server, stable across Restart.
	URL string
}

// StartNATS starts a JetStream-enabled NATS server on a random loopback
// port with its store in a temporary directory. It is shut down when the
// test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{t: t, opts: server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}}
	n.start()
	// Keep the port across restarts so clients reconnect to the same URL.
	n.opts.Port = n.Server.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.Shutdown)
	return n
}

func (n *NATS) start() {
	n.t.Helper()
	s, err := server.NewServer(&n.opts)
	if err != nil {
		n.t.Fatalf("testenv: nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("testenv: nats server did not become ready")
	}
	n.Server = s
	n.URL = s.ClientURL()
}

// Shutdown stops the server.
func (n *NATS) Shutdown() {
	if n.Server != nil {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	}
}

// Restart stops the server and starts it again on the same port with the
// same store, as an operator's restart would.
func (n *NATS) Restart() {
	n.t.Helper()
	n.Shutdown()
	n.start()
}

// RestartEmpty stops the server and starts it again on the same port with
// an empty store, as a server that lost its store (memory storage, a new
// disk or container) comes back: without its streams and consumers.
func (n *NATS) RestartEmpty() {
	n.t.Helper()
	n.Shutdown()
	n.opts.StoreDir = n.t.TempDir()
	n.start()
}

// Connect returns a client connection and its JetStream context, closed when
// the test ends.
func (n *NATS) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("testenv: connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testenv: jetstream: %v", err)
	}
	return nc, js
}

// RedisAddr is the address of the Redis server tests use.
func RedisAddr() string {
	if a := os.Getenv("PUSHSYNC_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// Redis returns a client of the test Redis server and a key prefix unique to
// this test; every key under the prefix is deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: RedisAddr()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		Missing(t, "Redis at "+RedisAddr()+" ("+err.Error()+"); start one with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no")
	}
	prefix := "pstest-" + RandomHex(6)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})
	return rdb, prefix
}

// Missing reports a dependency the test cannot run without: a failure under
// CI=true, a skip that says what is missing elsewhere.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("required test dependency missing: %s", what)
	}
	t.Skipf("SKIPPED, dependency missing (this fails under CI=true): %s", what)
}

// RandomHex returns n random bytes in hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// HoldRequest opens a connection to the HTTP server at addr and sends a
// request whose body never completes, which holds a graceful shutdown of
// that server open. The connection closes when the test ends.
func HoldRequest(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")); err != nil {
		t.Fatal(err)
	}
	return conn
}
