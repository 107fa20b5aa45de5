//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package main

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/testenv"
)

// TestIdentityPoolPurge fills two pools through the API as apps and
// operators do (identities, datasets, sync sessions, a device with a
// subscription, push settings, a bulk publish), deletes one and purges it
// with pushsyncctl: afterwards no key of the purged pool is left in Redis,
// a pool created again with its id finds nothing of the old one, and every
// key of the other pool is as it was, byte for byte. The purge is refused
// while the pool exists, and purging again finds nothing to remove.
func TestIdentityPoolPurge(t *testing.T) {
	d := startDaemon(t)
	const other = "us-east-1:00000000-1111-2222-3333-444444444444"
	d.createPool(other)
	d.serviceAccount("service-account.json")
	d.ctl("app", "create", "-name", "game-android", "-fcm-project", project, "-fcm-service-account-file", "service-account.json")
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()

	ci := cognitoidentity.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("us-east-1"), Credentials: credentials.AnonymousCredentials, MaxRetries: aws.Int(0)})))
	dev := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("us-east-1"),
		Credentials: credentials.NewStaticCredentials(devKey, devSecret, ""), MaxRetries: aws.Int(0)})))
	fill := func(p string) string {
		t.Helper()
		d.ctl("identitypool", "update", p, "-allow-unauthenticated=true")
		d.ctl("pool", "set-push", p, "-gcm", "game-android")
		got, err := ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(p)})
		if err != nil {
			t.Fatalf("GetId in %s: %v", p, err)
		}
		identity := aws.StringValue(got.IdentityId)
		list, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(p), IdentityId: aws.String(identity), DatasetName: aws.String("settings")})
		if err != nil {
			t.Fatalf("ListRecords in %s: %v", p, err)
		}
		if _, err := dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(p), IdentityId: aws.String(identity),
			DatasetName: aws.String("settings"), SyncSessionToken: list.SyncSessionToken,
			RecordPatches: []*cognitosync.RecordPatch{
				{Op: aws.String("replace"), Key: aws.String("volume"), Value: aws.String("7"), SyncCount: aws.Int64(0)},
				{Op: aws.String("replace"), Key: aws.String("level"), Value: aws.String("3"), SyncCount: aws.Int64(0)},
			}}); err != nil {
			t.Fatalf("UpdateRecords in %s: %v", p, err)
		}
		if _, err := dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(p), IdentityId: aws.String(identity),
			DatasetName: aws.String("settings"), SyncSessionToken: list.SyncSessionToken,
			RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("remove"), Key: aws.String("level"), SyncCount: aws.Int64(1)}}}); err != nil {
			t.Fatalf("UpdateRecords removing in %s: %v", p, err)
		}
		reg, err := dev.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(p), IdentityId: aws.String(identity),
			Platform: aws.String("GCM"), Token: aws.String("fcm-token-" + p)})
		if err != nil {
			t.Fatalf("RegisterDevice in %s: %v", p, err)
		}
		if _, err := dev.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{IdentityPoolId: aws.String(p), IdentityId: aws.String(identity),
			DatasetName: aws.String("settings"), DeviceId: reg.DeviceId}); err != nil {
			t.Fatalf("SubscribeToDataset in %s: %v", p, err)
		}
		if _, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(p),
			CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("game-stream"), RoleArn: aws.String("arn:aws:iam::000000000000:role/streams"),
				StreamingStatus: aws.String("ENABLED")}}); err != nil {
			t.Fatalf("SetIdentityPoolConfiguration in %s: %v", p, err)
		}
		if _, err := dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: aws.String(p)}); err != nil {
			t.Fatalf("BulkPublish in %s: %v", p, err)
		}
		// The run records its outcome when it ends: wait for it, so
		// that the snapshots below see the pool's settings as they stay.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			det, err := dev.GetBulkPublishDetails(&cognitosync.GetBulkPublishDetailsInput{IdentityPoolId: aws.String(p)})
			if err != nil {
				t.Fatalf("GetBulkPublishDetails in %s: %v", p, err)
			}
			if st := aws.StringValue(det.BulkPublishStatus); st == "SUCCEEDED" {
				break
			} else if st == "FAILED" || time.Now().After(deadline) {
				t.Fatalf("bulk publish in %s: %s %s", p, st, aws.StringValue(det.FailureMessage))
			}
		}
		return identity
	}
	gone := fill(pool)
	fill(other)

	// Every key under the test's prefix with its DUMP, and the fields of
	// the configuration hash.
	snapshot := func() (map[string]string, map[string]string) {
		t.Helper()
		keys := map[string]string{}
		iter := rdb.Scan(ctx, 0, d.prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			if k == d.prefix+":{config}" {
				continue
			}
			dump, err := rdb.Dump(ctx, k).Result()
			if err != nil && err != redis.Nil {
				t.Fatal(err)
			}
			keys[k] = dump
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		config, err := rdb.HGetAll(ctx, d.prefix+":{config}").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys, config
	}
	// of says which of the keys or fields name the pool p.
	of := func(m map[string]string, p string) []string {
		var out []string
		for k := range m {
			if strings.Contains(k, p) {
				out = append(out, k)
			}
		}
		sort.Strings(out)
		return out
	}
	beforeKeys, beforeConfig := snapshot()
	if ks := of(beforeKeys, pool); len(ks) < 7 {
		t.Fatalf("the flows wrote only these keys of the pool: %q", ks)
	}
	identityKey := d.prefix + ":{ident:" + gone + "}"
	if _, ok := beforeKeys[identityKey]; !ok {
		t.Fatalf("no identity record %s", identityKey)
	}

	d.ctlFail(d.env, 1, []string{"ResourceConflictException", pool, "only the data of a deleted pool can be purged"}, "identitypool", "purge", pool)
	if keys, config := snapshot(); len(keys) != len(beforeKeys) || len(config) != len(beforeConfig) {
		t.Fatalf("a refused purge changed Redis: %d keys and %d config fields, were %d and %d", len(keys), len(config), len(beforeKeys), len(beforeConfig))
	}

	d.ctl("identitypool", "delete", pool)
	out := d.ctl("identitypool", "purge", pool)
	if !strings.HasPrefix(out, "purged identity pool "+pool+": ") || strings.HasSuffix(out, ": 0 keys removed\n") {
		t.Fatalf("purge printed %q", out)
	}
	afterKeys, afterConfig := snapshot()
	if ks := of(afterKeys, pool); len(ks) > 0 {
		t.Errorf("keys of the purged pool left: %q", ks)
	}
	if _, ok := afterKeys[identityKey]; ok {
		t.Errorf("identity record %s left", identityKey)
	}
	if fs := of(afterConfig, pool); len(fs) > 0 {
		t.Errorf("configuration fields of the purged pool left: %q", fs)
	}
	if n, err := rdb.ZScore(ctx, d.prefix+":{pools}", pool).Result(); err != redis.Nil {
		t.Errorf("the purged pool is still listed among the pools that wrote: %v %v", n, err)
	}
	for k, v := range beforeKeys {
		if strings.Contains(k, pool) || k == identityKey || k == d.prefix+":{pools}" {
			continue
		}
		if afterKeys[k] != v {
			t.Errorf("key %s changed", k)
		}
	}
	for f, v := range beforeConfig {
		if !strings.Contains(f, pool) && afterConfig[f] != v {
			t.Errorf("configuration field %s changed", f)
		}
	}
	if len(of(afterKeys, other)) != len(of(beforeKeys, other)) {
		t.Errorf("keys of the other pool: %q, were %q", of(afterKeys, other), of(beforeKeys, other))
	}

	if out := d.ctl("identitypool", "purge", pool); out != "purged identity pool "+pool+": 0 keys removed\n" {
		t.Errorf("purging again printed %q", out)
	}

	// A pool created again with the id finds nothing of the old one.
	d.createPool(pool)
	if _, err := dev.ListDatasets(&cognitosync.ListDatasetsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(gone)}); err != nil {
		t.Fatalf("ListDatasets: %v", err)
	} else if ds, _ := dev.ListDatasets(&cognitosync.ListDatasetsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(gone)}); len(ds.Datasets) != 0 {
		t.Errorf("the old identity's datasets are back: %v", ds.Datasets)
	}
	if _, err := ci.GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(gone)}); err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Errorf("GetCredentialsForIdentity of the old identity: %v, want ResourceNotFoundException", err)
	}
	if out := d.ctl("pool", "show", pool); strings.Contains(out, "game-android") {
		t.Errorf("the old pool's push settings are back:\n%s", out)
	}
}
