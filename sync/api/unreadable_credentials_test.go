//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// Identity credentials sealed under a master key the server no longer has
// (lost, or dropped before a reseal) can never be checked again. A
// request signed with one is answered ExpiredTokenException, on which the
// AWS SDK fetches new credentials and retries, instead of an internal
// error on every request until the app's copy expires.
func TestUnreadableCredentialsAreReplacedBySDK(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	lost := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	old, err := lost.IssueCredential(context.Background(), pool, alice, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	f := fixtureOn(t, rdb, prefix, registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()}))
	register := func(c *cognitosync.CognitoSync) error {
		_, err := c.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-alice")})
		return err
	}

	err = register(f.client(old.AccessKeyID, old.SecretAccessKey, old.SessionToken))
	expectErr(t, "credentials no master key opens", err, "ExpiredTokenException", 403)

	provider := &issuingProvider{first: &credentials.Value{AccessKeyID: old.AccessKeyID, SecretAccessKey: old.SecretAccessKey, SessionToken: old.SessionToken}, reg: f.reg}
	device := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String(f.ts.URL), Region: aws.String("us-east-1"),
		Credentials: credentials.NewCredentials(provider), MaxRetries: aws.Int(1),
	})))
	if err := register(device); err != nil {
		t.Fatalf("with credentials no master key opens: %v", err)
	}
	if n := provider.issued.Load(); n != 2 {
		t.Errorf("the SDK fetched credentials %d times, want 2: once at first, once more when told they expired", n)
	}
}
