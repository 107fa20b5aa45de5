//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
)

// registerDevice registers a device of alice in pool through c.
func registerDevice(c *cognitosync.CognitoSync) error {
	_, err := c.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
		Platform: aws.String("GCM"), Token: aws.String("fcm-registration-token-of-alice-0001")})
	return err
}

// The checks of identity pools that every request makes, of identity and
// of developer credentials, read the pool's record in the configuration
// hash, one key, once per registry.Options.PoolCacheTTL, not once per
// request: on Redis Cluster that key's node would otherwise serve every
// request of the whole API.
func TestPoolChecksReadThePoolOncePerCacheTTL(t *testing.T) {
	_, prefix := testenv.Redis(t)
	var reads atomic.Int32
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { rdb.Close() })
	rdb.AddHook(commandHook{after: func(cmd redis.Cmder) {
		if touches(cmd, "ipool:"+pool, "hget", "hexists") {
			reads.Add(1)
		}
	}})
	f := fixtureOn(t, rdb, prefix, registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), PoolCacheTTL: time.Hour}))
	device, dev := f.identity(alice), f.developer()

	reads.Store(0)
	for range 5 {
		if err := registerDevice(device); err != nil {
			t.Fatal(err)
		}
		if _, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.Load(); n > 1 {
		t.Errorf("10 requests read the identity pool's record %d times, want at most once", n)
	}
}

// An API process that has read an identity pool takes it as it was for up
// to its PoolCacheTTL: a deletion through another process is seen within
// that time, and then refuses identity and developer credentials alike;
// a pool created again through another process is seen at once.
func TestPoolDeletedByAnotherProcessIsSeenWithinTheCacheTTL(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	const ttl = 5 * time.Second
	var ahead atomic.Int64 // how far this process's clock is ahead of the wall clock
	f := fixtureOn(t, rdb, prefix, registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), PoolCacheTTL: ttl,
		Now: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }}))
	// The process an operator deletes and creates the pool through.
	other := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	old, dev := f.identity(alice), f.developer()
	getConfiguration := func() error {
		_, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
		return err
	}
	if err := registerDevice(old); err != nil {
		t.Fatal(err)
	}
	if err := getConfiguration(); err != nil {
		t.Fatal(err)
	}

	if err := other.DeleteIdentityPool(ctx, pool); err != nil {
		t.Fatal(err)
	}
	// Within the cache's time, this process still takes the pool as it
	// read it.
	if err := registerDevice(old); err != nil {
		t.Errorf("identity credentials within %s of the deletion elsewhere: %v", ttl, err)
	}
	if err := getConfiguration(); err != nil {
		t.Errorf("developer credentials within %s of the deletion elsewhere: %v", ttl, err)
	}

	// Created again (restoring the deleted pool's data): the credentials
	// of the new pool work at once.
	if _, err := other.RestoreIdentityPool(ctx, registry.IdentityPool{ID: pool, Name: "game"}); err != nil {
		t.Fatal(err)
	}
	renewed := f.identity(alice)
	if err := registerDevice(renewed); err != nil {
		t.Errorf("credentials of the pool created again: %v", err)
	}

	if err := other.DeleteIdentityPool(ctx, pool); err != nil {
		t.Fatal(err)
	}
	ahead.Store(int64(ttl))
	for what, c := range map[string]*cognitosync.CognitoSync{"credentials of the first pool": old, "credentials of the second pool": renewed} {
		err := registerDevice(c)
		expectErr(t, what+" once the cache's time has passed", err, "NotAuthorizedException", http.StatusForbidden)
		if err == nil || !strings.Contains(err.Error(), "identity pool "+pool+" has been deleted") {
			t.Errorf("%s: %v, want a message saying that the pool was deleted", what, err)
		}
	}
	expectErr(t, "developer credentials once the cache's time has passed", getConfiguration(), "ResourceNotFoundException", http.StatusNotFound)
}

// Identity credentials are issued only for a pool that exists when they
// are minted, read from Redis, not from what the answering process still
// holds of it: a credential issued for a pool deleted through another
// process would be bound to no pool, and act in that pool id for its whole
// lifetime, long after the cache's time.
func TestCredentialsAreNotIssuedForAPoolDeletedElsewhere(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	f := fixtureOn(t, rdb, prefix, registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), PoolCacheTTL: time.Hour}))
	other := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	// The answering process has read the pool.
	if _, err := f.developer().GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)}); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteIdentityPool(ctx, pool); err != nil {
		t.Fatal(err)
	}

	before := f.snapshot()
	res := f.signed("POST", "/admin/v1/credentials", fmt.Sprintf(`{"IdentityPoolId":%q,"IdentityId":%q}`, pool, alice), api.AdminService, devKey, devSecret)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || res.Header.Get("X-Amzn-ErrorType") != "ResourceNotFoundException" || !strings.Contains(string(body), pool) {
		t.Errorf("credentials for a pool deleted elsewhere: %d %s %s, want 404 ResourceNotFoundException naming the pool",
			res.StatusCode, res.Header.Get("X-Amzn-ErrorType"), body)
	}
	if after := f.snapshot(); !reflect.DeepEqual(before, after) {
		t.Errorf("the refused issue changed Redis: %d keys before, %d after", len(before), len(after))
	}
}
