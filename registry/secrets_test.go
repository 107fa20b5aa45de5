package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

func TestAppSecretsAreEncryptedAtRest(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	box := secretbox.NewRandom()
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: box})
	ctx := context.Background()
	key := p8(t)
	app := registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: key}}
	if _, err := r.CreateApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	raw, err := rdb.HGetAll(ctx, prefix+":{config}").Result()
	if err != nil {
		t.Fatal(err)
	}
	for f, v := range raw {
		if strings.Contains(v, "PRIVATE KEY") || strings.Contains(v, key[40:80]) {
			t.Fatalf("field %s holds the key in plain text", f)
		}
	}
	got, err := r.App(ctx, "ios")
	if err != nil || got.APNs.AuthKey != key {
		t.Fatalf("App: %v", err)
	}
	// Another master key cannot read it, and says why.
	other := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	if _, err := other.App(ctx, "ios"); err == nil || !strings.Contains(err.Error(), "wrong master key") {
		t.Fatalf("App under another key: %v", err)
	}
	plain := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	if _, err := plain.App(ctx, "ios"); err == nil || !strings.Contains(err.Error(), "no master key") {
		t.Fatalf("App without a key: %v", err)
	}
	// Create refuses to touch a record it cannot read; a plain put (dev
	// stacks, tests) replaces it.
	if _, err := other.CreateApp(ctx, app); err == nil {
		t.Fatal("CreateApp overwrote a record it cannot read")
	}
	if _, err := other.PutApp(ctx, app); err != nil {
		t.Fatalf("PutApp over an unreadable record: %v", err)
	}
	if got, err := other.App(ctx, "ios"); err != nil || got.APNs.AuthKey != key {
		t.Fatalf("after PutApp under the new key: %v", err)
	}
}

// After the master key that sealed an app is lost, registering its
// credentials again (pushsyncctl app rotate, as secrets status advises)
// replaces the record no key opens; it is a new app from then on.
func TestReplaceAppNoKeyOpens(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	lost := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), Now: func() time.Time { return t0 }})
	android := registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: serviceAccount}}
	ios := registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: p8(t)}}
	for _, a := range []registry.App{android, ios} {
		if _, err := lost.CreateApp(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := lost.SetPoolPush(ctx, pool, registry.PoolPush{Apps: map[registry.Platform]string{registry.GCM: "android", registry.APNS: "ios"}}); err != nil {
		t.Fatal(err)
	}

	t1 := t0.Add(time.Hour)
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), Now: func() time.Time { return t1 }})
	if _, err := r.App(ctx, "android"); err == nil {
		t.Fatal("another key opened the record")
	}
	got, err := r.ReplaceApp(ctx, android)
	if err != nil {
		t.Fatalf("ReplaceApp of a record no key opens: %v", err)
	}
	if !got.CreatedAt.Equal(t1) || !got.UpdatedAt.Equal(t1) || got.Revision != 2 {
		t.Errorf("replaced: created %v, updated %v, revision %d; want %v, %v, 2", got.CreatedAt, got.UpdatedAt, got.Revision, t1, t1)
	}
	if back, err := r.App(ctx, "android"); err != nil || back.FCM.ServiceAccount != serviceAccount {
		t.Fatalf("App after the replace: %+v %v", back, err)
	}
	// The kind of a record no key opens is unknown, but the pools that
	// push through it say what it must be.
	asFCM := registry.App{Name: "ios", Kind: registry.KindFCM, FCM: android.FCM}
	if _, err := r.ReplaceApp(ctx, asFCM); !errors.Is(err, registry.ErrInvalidApp) || !strings.Contains(err.Error(), pool) || !strings.Contains(err.Error(), "APNS") {
		t.Fatalf("ReplaceApp with another kind than its pools need: %v", err)
	}
	if _, err := r.PutApp(ctx, asFCM); !errors.Is(err, registry.ErrInvalidApp) {
		t.Fatalf("PutApp with another kind than its pools need: %v", err)
	}
	if _, err := r.ReplaceApp(ctx, ios); err != nil {
		t.Fatalf("ReplaceApp of the APNs app: %v", err)
	}
	if _, err := r.ReplaceApp(ctx, registry.App{Name: "gone", Kind: registry.KindFCM, FCM: android.FCM}); !errors.Is(err, registry.ErrAppNotFound) {
		t.Fatalf("ReplaceApp of a missing app: %v", err)
	}
}

// TestCreateAndReplaceApp: an app is created once and replaced only if it
// exists, keeping its kind; each refusal names the app once, as in
// "registry: platform app not found: android".
func TestCreateAndReplaceApp(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	namedOnce := func(what string, err error) {
		t.Helper()
		if n := strings.Count(err.Error(), "android"); n != 1 || strings.Count(err.Error(), "registry: ") != 1 {
			t.Errorf("%s: %q names the app %d times; want it once, after one \"registry: \"", what, err, n)
		}
	}
	app := registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: serviceAccount}}
	_, err := r.ReplaceApp(ctx, app)
	if !errors.Is(err, registry.ErrAppNotFound) {
		t.Fatalf("replace of a missing app: %v", err)
	}
	namedOnce("replace of a missing app", err)
	if err := r.DeleteApp(ctx, "android"); !errors.Is(err, registry.ErrAppNotFound) {
		t.Fatalf("delete of a missing app: %v", err)
	} else {
		namedOnce("delete of a missing app", err)
	}
	created, err := r.CreateApp(ctx, app)
	if err != nil || created.Revision != 1 {
		t.Fatalf("create: %+v %v", created, err)
	}
	if _, err := r.CreateApp(ctx, app); !errors.Is(err, registry.ErrAppExists) {
		t.Fatalf("second create: %v", err)
	} else {
		namedOnce("second create", err)
	}
	ios := registry.App{Name: "android", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "t", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: p8(t)}}
	if _, err := r.ReplaceApp(ctx, ios); !errors.Is(err, registry.ErrInvalidApp) || !strings.Contains(err.Error(), "kind cannot change") {
		t.Fatalf("kind change: %v", err)
	} else {
		namedOnce("kind change", err)
	}
	app.FCM.ProjectID = "demo-2"
	replaced, err := r.ReplaceApp(ctx, app)
	if err != nil || replaced.Revision != 2 || !replaced.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("replace: %+v %v", replaced, err)
	}
}

func TestIdentityCredentials(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	now := time.Now()
	clock := func() time.Time { return now }
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom(), Now: clock})
	ctx := context.Background()
	c, err := r.IssueCredential(ctx, pool, identity, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.AccessKeyID, "ASIA") || len(c.AccessKeyID) != 20 || len(c.SecretAccessKey) != 40 || c.SessionToken == "" {
		t.Fatalf("credential shape %+v", c)
	}
	got, err := r.Credential(ctx, c.AccessKeyID)
	if err != nil || got != c {
		t.Fatalf("Credential: %+v %v", got, err)
	}
	stored, _ := rdb.Get(ctx, prefix+":cred:{"+c.AccessKeyID+"}").Result()
	if strings.Contains(stored, c.SecretAccessKey) || strings.Contains(stored, c.SessionToken) {
		t.Fatal("the secret is stored in plain text")
	}
	if ttl := rdb.PTTL(ctx, prefix+":cred:{"+c.AccessKeyID+"}").Val(); ttl <= time.Hour || ttl > 2*time.Hour { // its hour, and an hour past its expiry
		t.Fatalf("record TTL %v", ttl)
	}
	now = now.Add(time.Hour)
	if _, err := r.Credential(ctx, c.AccessKeyID); !errors.Is(err, registry.ErrNoCredential) {
		t.Fatalf("expired credential: %v", err)
	}
	if _, err := r.Credential(ctx, "ASIAUNKNOWN0000000"); !errors.Is(err, registry.ErrNoCredential) {
		t.Fatalf("unknown credential: %v", err)
	}
	if _, err := r.IssueCredential(ctx, "bad", identity, time.Hour); err == nil {
		t.Fatal("credential issued for an invalid pool")
	}
}

func TestPoolPushKeepsARNsAndStreams(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	if _, err := r.PutApp(ctx, registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: serviceAccount}}); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:sns:us-east-1:123456789012:app/GCM/android"
	if err := r.SetPoolPush(ctx, pool, registry.PoolPush{Apps: map[registry.Platform]string{registry.GCM: "android"}, ApplicationARNs: []string{arn}, RoleARN: "arn:aws:iam::123456789012:role/push"}); err != nil {
		t.Fatal(err)
	}
	pp, err := r.PoolPush(ctx, pool)
	if err != nil || len(pp.ApplicationARNs) != 1 || pp.ApplicationARNs[0] != arn || pp.RoleARN == "" {
		t.Fatalf("PoolPush %+v %v", pp, err)
	}
	if s, err := r.PoolStreams(ctx, pool); s != nil || err != nil {
		t.Fatalf("streams of an unconfigured pool: %+v %v", s, err)
	}
	want := registry.Streams{StreamName: "events", RoleARN: "arn:aws:iam::123456789012:role/streams", StreamingStatus: "ENABLED"}
	if err := r.SetPoolStreams(ctx, pool, &want); err != nil {
		t.Fatal(err)
	}
	if s, err := r.PoolStreams(ctx, pool); err != nil || *s != want {
		t.Fatalf("PoolStreams %+v %v", s, err)
	}
}
