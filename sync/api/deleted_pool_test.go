//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
	"github.com/pushsync/pushsync/sync/identity"
	"github.com/pushsync/pushsync/sync/store"
)

// Credentials GetCredentialsForIdentity issued stop working when their
// identity pool is deleted, also once a pool of the same id is created
// again; credentials of a pool the registry does not hold keep working.
// The pool is deleted through the process that serves the requests, which
// sees it at once, however long it may keep what it read of pools.
func TestCredentialsOfADeletedPoolAreRefused(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), PoolCacheTTL: time.Hour})
	log := zerolog.New(zerolog.NewTestWriter(t))
	srv, err := api.New(reg, api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret,
		Store: store.New(rdb, store.Options{KeyPrefix: prefix}), SessionTokenKey: []byte("0123456789abcdef0123456789abcdef"),
		Identity: identity.New(reg, identity.Options{}, log)}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	f := &fixture{t: t, rdb: rdb, prefix: prefix, reg: reg, ts: ts}

	p, err := reg.CreateIdentityPool(ctx, "eu-west-1", registry.IdentityPool{Name: "game", AllowUnauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	cognito := cognitoidentity.New(session.Must(session.NewSession(&aws.Config{Endpoint: aws.String(ts.URL),
		Region: aws.String("eu-west-1"), Credentials: credentials.AnonymousCredentials, MaxRetries: aws.Int(0)})))
	id, err := cognito.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(p.ID)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cognito.GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: id.IdentityId})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	device := f.client(aws.StringValue(c.AccessKeyId), aws.StringValue(c.SecretKey), aws.StringValue(c.SessionToken))
	list := func() error {
		_, err := device.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(p.ID), IdentityId: id.IdentityId, DatasetName: aws.String("game")})
		return err
	}
	describe := func() error {
		_, err := device.DescribeIdentityUsage(&cognitosync.DescribeIdentityUsageInput{IdentityPoolId: aws.String(p.ID), IdentityId: id.IdentityId})
		return err
	}
	if err := list(); err != nil {
		t.Fatalf("ListRecords before the pool is deleted: %v", err)
	}

	if err := reg.DeleteIdentityPool(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{"ListRecords": list, "DescribeIdentityUsage": describe} {
		err := call()
		expectErr(t, what+" after the pool is deleted", err, "NotAuthorizedException", http.StatusForbidden)
		if err == nil || !strings.Contains(err.Error(), "identity pool "+p.ID+" has been deleted") {
			t.Errorf("%s after the pool is deleted: %v, want a message saying that the pool was deleted", what, err)
		}
	}
	// Only the holder of the secret learns why.
	_, err = f.client(aws.StringValue(c.AccessKeyId), "not-the-secret-of-the-key-at-all0000000", aws.StringValue(c.SessionToken)).ListRecords(
		&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(p.ID), IdentityId: id.IdentityId, DatasetName: aws.String("game")})
	expectErr(t, "a wrong secret", err, "InvalidSignatureException", http.StatusForbidden)

	// A pool of the same id created again, even restoring the deleted
	// one's data, is another pool.
	if _, err := reg.RestoreIdentityPool(ctx, registry.IdentityPool{ID: p.ID, Name: "game", AllowUnauthenticated: true}); err != nil {
		t.Fatal(err)
	}
	expectErr(t, "ListRecords after the pool is created again", list(), "NotAuthorizedException", http.StatusForbidden)

	// Credentials of a pool only the data store knows (issued through the
	// registry: the admin API issues none for a pool that does not exist)
	// are not bound to any pool record.
	unbound, err := reg.IssueCredential(ctx, pool, alice, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client(unbound.AccessKeyID, unbound.SecretAccessKey, unbound.SessionToken).DescribeIdentityUsage(
		&cognitosync.DescribeIdentityUsageInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice)}); err != nil {
		t.Errorf("credentials of a pool the registry does not hold: %v", err)
	}
}

// GetCredentialsForIdentity issues no credentials when the identity's pool
// is deleted between its check of the pool and the minting: they would be
// bound to no pool, and act in that pool id, also once created again, for
// their whole lifetime.
func TestCredentialsAreNotIssuedForAPoolDeletedMeanwhile(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	p, err := reg.CreateIdentityPool(ctx, "eu-west-1", registry.IdentityPool{Name: "game", AllowUnauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	// The server's client deletes the pool, as another process would, as
	// soon as the pool has been read once while armed.
	served := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { served.Close() })
	var armed atomic.Bool
	served.AddHook(commandHook{after: func(cmd redis.Cmder) {
		if touches(cmd, "ipool:"+p.ID, "hget") && armed.CompareAndSwap(true, false) {
			if err := reg.DeleteIdentityPool(ctx, p.ID); err != nil {
				t.Error(err)
			}
		}
	}})
	log := zerolog.New(zerolog.NewTestWriter(t))
	srv, err := api.New(registry.New(served, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()}),
		api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret,
			Identity: identity.New(registry.New(served, registry.Options{KeyPrefix: prefix}), identity.Options{}, log)}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	cognito := cognitoidentity.New(session.Must(session.NewSession(&aws.Config{Endpoint: aws.String(ts.URL),
		Region: aws.String("eu-west-1"), Credentials: credentials.AnonymousCredentials, MaxRetries: aws.Int(0)})))
	id, err := cognito.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(p.ID)})
	if err != nil {
		t.Fatal(err)
	}

	armed.Store(true)
	out, err := cognito.GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: id.IdentityId})
	expectErr(t, "GetCredentialsForIdentity as its pool is deleted", err, "ResourceNotFoundException", http.StatusNotFound)
	if err == nil {
		t.Errorf("credentials %s were issued for a deleted pool", aws.StringValue(out.Credentials.AccessKeyId))
	}
	if keys, err := rdb.Keys(ctx, prefix+":cred:*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("credential records after the refusal: %v %v, want none", keys, err)
	}
}
