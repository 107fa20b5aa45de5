//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
)

// issuingProvider gives the AWS SDK identity credentials minted by the
// registry (first, if set, the first time), and never thinks they expired
// on its own: the clock of the device it stands for is behind.
type issuingProvider struct {
	reg    *registry.Registry
	first  *credentials.Value
	issued atomic.Int32
}

func (p *issuingProvider) Retrieve() (credentials.Value, error) {
	if p.issued.Add(1) == 1 && p.first != nil {
		return *p.first, nil
	}
	c, err := p.reg.IssueCredential(context.Background(), pool, alice, time.Hour)
	if err != nil {
		return credentials.Value{}, err
	}
	return credentials.Value{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
}

func (p *issuingProvider) IsExpired() bool { return false }

// fixtureOn returns a configured fixture whose server uses reg.
func fixtureOn(t *testing.T, rdb *redis.Client, prefix string, reg *registry.Registry) *fixture {
	t.Helper()
	f := &fixture{t: t, rdb: rdb, prefix: prefix, now: time.Now(), reg: reg}
	srv, err := api.New(f.reg, api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret}, zerolog.New(zerolog.NewTestWriter(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(f.ts.Close)
	createPool(t, f.reg)
	f.configure()
	return f
}

// A request signed with identity credentials that expired is answered
// ExpiredTokenException, on which the AWS SDK fetches new credentials and
// retries, instead of UnrecognizedClientException, on which it gives up.
func TestExpiredCredentialsAreRefreshedBySDK(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	var ahead atomic.Int64 // how far the server's clock is ahead of the device's
	clock := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	f := fixtureOn(t, rdb, prefix, registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), Now: clock}))

	provider := &issuingProvider{reg: f.reg}
	device := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String(f.ts.URL), Region: aws.String("us-east-1"),
		Credentials: credentials.NewCredentials(provider), MaxRetries: aws.Int(1),
	})))
	register := func() error {
		_, err := device.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-alice")})
		return err
	}
	if err := register(); err != nil {
		t.Fatal(err)
	}
	old, err := device.Config.Credentials.Get()
	if err != nil {
		t.Fatal(err)
	}

	// The credentials expire on the server's clock.
	ahead.Store(int64(time.Hour + time.Second))
	if err := register(); err != nil {
		t.Fatalf("with credentials that expired: %v", err)
	}
	if n := provider.issued.Load(); n != 2 {
		t.Errorf("the SDK fetched credentials %d times, want 2: once at first, once more when told they expired", n)
	}

	_, err = f.client(old.AccessKeyID, old.SecretAccessKey, old.SessionToken).RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-alice")})
	expectErr(t, "expired credentials", err, "ExpiredTokenException", 403)
	if err == nil || !strings.Contains(err.Error(), "The security token included in the request is expired") {
		t.Errorf("expired credentials: %v, want AWS's message", err)
	}
	// Only the holder of the secret learns that the key expired.
	_, err = f.client(old.AccessKeyID, "not-the-secret-of-the-key-at-all0000000", old.SessionToken).RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-alice")})
	expectErr(t, "an expired key with a wrong secret", err, "InvalidSignatureException", 403)

	// An hour after they expired, the credentials are unknown.
	ahead.Store(int64(2*time.Hour + time.Second))
	_, err = f.client(old.AccessKeyID, old.SecretAccessKey, old.SessionToken).RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-alice")})
	expectErr(t, "credentials that expired an hour ago", err, "UnrecognizedClientException", 403)
}
