package app

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/config"
)

// natsConn is a NATS connection that retries for ever while the servers
// are unreachable, logs why it cannot connect, and reports when the client
// gives up for good, which it does when a server refuses the credentials
// twice in a row.
type natsConn struct {
	*nats.Conn
	log  zerolog.Logger
	urls string // the configured servers, without credentials

	closing atomic.Bool   // set by Close: the closing is ours
	lost    chan struct{} // closed when the connection closed for good, not by Close

	mu      sync.Mutex
	server  string // the server connected to last
	lastErr error  // the last error of the connection, for readiness and the exit
	errs    errorLog
}

// ConnectNATS connects to the servers cfg names. The connection retries
// for ever, both at start and after losing the server, and logs why it
// cannot connect, naming the servers.
func ConnectNATS(cfg config.NATSConfig, log zerolog.Logger) (*nats.Conn, error) {
	c, err := connectNATS(cfg, log)
	if err != nil {
		return nil, err
	}
	return c.Conn, nil
}

func connectNATS(cfg config.NATSConfig, log zerolog.Logger) (*natsConn, error) {
	c := &natsConn{log: log, urls: redactURLs(cfg.URL), lost: make(chan struct{})}
	opts := []nats.Option{
		nats.Name("pushsyncd"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.Timeout(cfg.ConnectTimeout.Std()),
		nats.ConnectHandler(func(nc *nats.Conn) { c.connected(nc, "connected to NATS") }),
		nats.ReconnectHandler(func(nc *nats.Conn) { c.connected(nc, "reconnected to NATS") }),
		nats.DisconnectErrHandler(c.disconnected),
		nats.ReconnectErrHandler(c.connectFailed),
		nats.ErrorHandler(c.asyncError),
		nats.ClosedHandler(c.closed),
	}
	if t := cfg.TLS; t != (config.NATSTLSConfig{}) {
		tc, err := natsTLS(t)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	switch {
	case cfg.CredsFile != "":
		// The client reads the file at each connection, and names neither
		// the setting nor, when it is not there, anything but the path.
		if _, err := os.ReadFile(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("nats.creds_file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.Token != "":
		opts = append(opts, nats.Token(string(cfg.Token)))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, string(cfg.Password)))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: %s: %w", c.urls, err)
	}
	c.Conn = nc
	return c, nil
}

// Close closes the connection; nothing is logged or reported as lost.
func (c *natsConn) Close() {
	c.closing.Store(true)
	c.Conn.Close()
}

// Lost is closed when the connection is closed for good other than by
// Close; Err then says why.
func (c *natsConn) Lost() <-chan struct{} { return c.lost }

// Err returns the last error of the connection: why it is not connected,
// or why it was closed.
func (c *natsConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Ready reports whether the connection is up, and if not, why.
func (c *natsConn) Ready() error {
	if c.IsConnected() {
		return nil
	}
	if err := c.Err(); err != nil {
		return fmt.Errorf("not connected to %s: %v", c.urls, err)
	}
	return fmt.Errorf("not connected to %s", c.urls)
}

func (c *natsConn) setErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

func (c *natsConn) connected(nc *nats.Conn, msg string) {
	server := nc.ConnectedUrlRedacted()
	c.mu.Lock()
	c.server, c.lastErr = server, nil
	c.errs.reset()
	c.mu.Unlock()
	c.log.Info().Str("server", server).Msg(msg)
}

func (c *natsConn) disconnected(_ *nats.Conn, err error) {
	if c.closing.Load() {
		return
	}
	c.mu.Lock()
	server := c.server
	if err != nil {
		c.lastErr = err
	}
	c.mu.Unlock()
	c.log.Warn().Err(err).Str("server", server).Msg("disconnected from NATS; reconnecting")
}

// connectFailed logs a failed attempt to connect: the first of each kind at
// once, then at most once a minute while it repeats. A first connection
// that every server refused is reported as nats.ErrNoServers, which names
// no cause; it is kept for readiness until the next attempt, a second
// later, reports the cause, and not logged.
func (c *natsConn) connectFailed(_ *nats.Conn, err error) {
	if errors.Is(err, nats.ErrNoServers) {
		c.mu.Lock()
		if c.lastErr == nil {
			c.lastErr = err
		}
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.lastErr = err
	ok, repeated := c.errs.take(err, time.Now())
	c.mu.Unlock()
	if !ok || c.closing.Load() {
		return
	}
	ev := c.log.Error().Err(err).Str("url", c.urls)
	if repeated > 0 {
		ev = ev.Int("failed_attempts", repeated)
	}
	ev.Msg("cannot connect to NATS; retrying")
}

// asyncError logs an error the server or the client reports outside any
// call: a permission or authorization violation, a slow consumer.
func (c *natsConn) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	c.mu.Lock()
	server := c.server
	ok, repeated := c.errs.take(err, time.Now())
	c.mu.Unlock()
	if !ok {
		return
	}
	ev := c.log.Error().Err(err).Str("server", server)
	if sub != nil {
		ev = ev.Str("subject", sub.Subject)
	}
	if repeated > 0 {
		ev = ev.Int("repeated", repeated)
	}
	ev.Msg("NATS error")
}

func (c *natsConn) closed(nc *nats.Conn) {
	if c.closing.Load() {
		return
	}
	err := nc.LastError()
	if err == nil {
		err = c.Err()
	}
	if err == nil {
		err = errors.New("closed without an error")
	}
	c.setErr(err)
	c.log.Error().Err(err).Str("url", c.urls).Msg("the NATS connection is closed for good; the client stopped retrying")
	close(c.lost)
}

// errorLog decides which of a stream of repeated errors to log: each one
// that differs from the last logged, and the same one again a minute after
// it was last logged, with how many times it occurred meanwhile.
type errorLog struct {
	last    string
	at      time.Time
	skipped int
}

const errorLogEvery = time.Minute

// take reports whether to log err now, and how many times it occurred
// since it was last logged.
func (e *errorLog) take(err error, now time.Time) (log bool, repeated int) {
	msg := err.Error()
	if msg == e.last && now.Sub(e.at) < errorLogEvery {
		e.skipped++
		return false, 0
	}
	repeated = 0
	if msg == e.last {
		repeated = e.skipped + 1
	}
	e.last, e.at, e.skipped = msg, now, 0
	return true, repeated
}

func (e *errorLog) reset() { *e = errorLog{} }

// redactURLs returns the comma-separated server URLs u without the user
// names, passwords and tokens in them.
func redactURLs(u string) string {
	var out []string
	for s := range strings.SplitSeq(u, ",") {
		s = strings.TrimSpace(s)
		if p, err := url.Parse(s); err == nil && p.User != nil {
			p.User = url.User("redacted")
			s = p.String()
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// natsTLS is the TLS configuration of the NATS connection t describes.
func natsTLS(t config.NATSTLSConfig) (*tls.Config, error) {
	pool, err := loadPool(t.CAFile, "nats.tls.ca_file")
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.tls.cert_file, nats.tls.key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
