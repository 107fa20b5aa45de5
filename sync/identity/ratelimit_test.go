//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package identity_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/request"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/identity"
)

// The loopback addresses the tests connect from: each is a client of its
// own, and proxyAddr is the trusted proxy.
const (
	proxyAddr = "127.0.0.2"
	addrA     = "127.0.0.3"
	addrB     = "127.0.0.4"
)

type limitEnv struct {
	t       *testing.T
	rdb     *redis.Client
	prefix  string
	reg     *registry.Registry
	clock   *clock
	metrics *prometheus.Registry
	url     string
	pool    registry.IdentityPool
}

// newLimitEnv serves a handler allowing each client 1 call a second and 3
// at once, behind a trusted proxy at proxyAddr.
func newLimitEnv(t *testing.T) *limitEnv {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	e := &limitEnv{t: t, rdb: rdb, prefix: prefix, clock: &clock{}, metrics: prometheus.NewRegistry()}
	e.reg = registry.New(rdb, registry.Options{KeyPrefix: prefix, Now: e.clock.Now})
	h := identity.New(e.reg, identity.Options{
		CredentialTTL:  ttl,
		Now:            e.clock.Now,
		RateLimit:      1,
		RateBurst:      3,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix(proxyAddr + "/32")},
		Metrics:        e.metrics,
	}, zerolog.New(io.Discard))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	var err error
	e.pool, err = e.reg.CreateIdentityPool(context.Background(), "eu-west-1", registry.IdentityPool{Name: "guests", AllowUnauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// client returns an SDK client that connects from the loopback address
// local and, if forwardedFor is not empty, sends it as X-Forwarded-For.
// It does not retry, so that each call is one request.
func (e *limitEnv) client(local, forwardedFor string) *cognitoidentity.CognitoIdentity {
	e.t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: dialer.DialContext}
	e.t.Cleanup(tr.CloseIdleConnections)
	sess, err := session.NewSessionWithOptions(session.Options{SharedConfigState: session.SharedConfigDisable})
	if err != nil {
		e.t.Fatal(err)
	}
	c := cognitoidentity.New(sess, &aws.Config{
		Endpoint:    aws.String(e.url),
		Region:      aws.String("eu-west-1"),
		Credentials: credentials.AnonymousCredentials,
		MaxRetries:  aws.Int(0),
		HTTPClient:  &http.Client{Transport: tr},
	})
	if forwardedFor != "" {
		c.Handlers.Build.PushBack(func(r *request.Request) { r.HTTPRequest.Header.Set("X-Forwarded-For", forwardedFor) })
	}
	return c
}

// keys counts the test's keys in Redis.
func (e *limitEnv) keys() int {
	e.t.Helper()
	n := 0
	iter := e.rdb.Scan(context.Background(), 0, e.prefix+":*", 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if err := iter.Err(); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// throttled returns the count of refusals of op in the handler's metrics.
func (e *limitEnv) throttled(op string) float64 {
	e.t.Helper()
	families, err := e.metrics.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "pushsync_identity_throttled_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" && l.GetValue() == op {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (e *limitEnv) getID(c *cognitoidentity.CognitoIdentity) (string, error) {
	out, err := c.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(e.pool.ID)})
	if err != nil {
		return "", err
	}
	return aws.StringValue(out.IdentityId), nil
}

// wantThrottled checks that err is the TooManyRequestsException the SDK
// retries, and that the call stored nothing.
func (e *limitEnv) wantThrottled(err error, keysBefore int) {
	e.t.Helper()
	var aerr awserr.RequestFailure
	if !errors.As(err, &aerr) || aerr.Code() != "TooManyRequestsException" || aerr.StatusCode() != http.StatusBadRequest {
		e.t.Fatalf("over the limit: got %v, want TooManyRequestsException with status 400", err)
	}
	if !request.IsErrorThrottle(err) {
		e.t.Errorf("the SDK does not take %v for a throttle it retries", err)
	}
	if n := e.keys(); n != keysBefore {
		e.t.Errorf("a refused call stored %d keys", n-keysBefore)
	}
}

func TestRateLimitGetID(t *testing.T) {
	e := newLimitEnv(t)
	a := e.client(addrA, "")
	for i := range 3 {
		if _, err := e.getID(a); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	before := e.keys()
	_, err := e.getID(a)
	e.wantThrottled(err, before)
	if got := e.throttled("GetId"); got != 1 {
		t.Errorf("pushsync_identity_throttled_total{operation=\"GetId\"} = %v, want 1", got)
	}

	if _, err := e.getID(e.client(addrB, "")); err != nil {
		t.Fatalf("another client address was refused: %v", err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.getID(a); err != nil {
		t.Fatalf("a second later, one call must be allowed again: %v", err)
	}
	_, err = e.getID(a)
	e.wantThrottled(err, e.keys())
}

func TestRateLimitGetCredentialsForIdentity(t *testing.T) {
	e := newLimitEnv(t)
	id, err := e.getID(e.client(addrB, ""))
	if err != nil {
		t.Fatal(err)
	}
	a := e.client(addrA, "")
	in := &cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(id)}
	for i := range 3 {
		if _, err := a.GetCredentialsForIdentity(in); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	before := e.keys()
	_, err = a.GetCredentialsForIdentity(in)
	e.wantThrottled(err, before)
	if got := e.throttled("GetCredentialsForIdentity"); got != 1 {
		t.Errorf("pushsync_identity_throttled_total{operation=\"GetCredentialsForIdentity\"} = %v, want 1", got)
	}
	if _, err := e.client(addrB, "").GetCredentialsForIdentity(in); err != nil {
		t.Fatalf("another client address was refused: %v", err)
	}
}

func TestRateLimitForwardedFor(t *testing.T) {
	e := newLimitEnv(t)
	// Through the trusted proxy, each forwarded client has its own share.
	for _, client := range []string{"203.0.113.1", "203.0.113.2"} {
		c := e.client(proxyAddr, "198.51.100.99, "+client)
		for i := range 3 {
			if _, err := e.getID(c); err != nil {
				t.Fatalf("%s via the proxy, call %d within the burst: %v", client, i+1, err)
			}
		}
		_, err := e.getID(c)
		e.wantThrottled(err, e.keys())
	}
	// The proxy's own requests are not counted against the forwarded
	// clients, nor theirs against it.
	if _, err := e.getID(e.client(proxyAddr, "")); err != nil {
		t.Fatalf("the proxy itself: %v", err)
	}

	// A client not behind the trusted proxy cannot pose as others.
	for i, spoofed := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		if _, err := e.getID(e.client(addrA, spoofed)); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	_, err := e.getID(e.client(addrA, "192.0.2.4"))
	e.wantThrottled(err, e.keys())
}
