package registry

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
)

func testBox(t *testing.T, key byte, previous ...byte) *secretbox.Box {
	t.Helper()
	var prev [][]byte
	for _, p := range previous {
		prev = append(prev, bytes.Repeat([]byte{p}, secretbox.KeySize))
	}
	b, err := secretbox.New(bytes.Repeat([]byte{key}, secretbox.KeySize), prev...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signingKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestMasterKeyRotation follows a rotation from key 1 to key 2: records
// sealed under 1 open while both are configured, ResealSecrets moves them,
// and then key 2 alone opens everything.
func TestMasterKeyRotation(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	const pool, identity = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "us-east-1:a11ce000-2222-3333-4444-555555555555"
	old := New(rdb, Options{KeyPrefix: prefix, Secrets: testBox(t, 1)})
	ios := App{Name: "ios", Kind: KindAPNs, APNs: &APNsCredentials{Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: signingKey(t)}}
	if _, err := old.CreateApp(ctx, ios); err != nil {
		t.Fatal(err)
	}
	android := App{Name: "android", Kind: KindAPNs, APNs: &APNsCredentials{Topic: "com.example.a", KeyID: "ABC123DEFH", TeamID: "TEAM123456", AuthKey: signingKey(t)}}
	if _, err := old.CreateApp(ctx, android); err != nil {
		t.Fatal(err)
	}
	// An app sealed under a key the rotation does not know.
	stranger := New(rdb, Options{KeyPrefix: prefix, Secrets: testBox(t, 9)})
	if _, err := stranger.CreateApp(ctx, App{Name: "lost", Kind: KindAPNs, APNs: ios.APNs}); err != nil {
		t.Fatal(err)
	}
	var creds []IdentityCredential
	for range 3 {
		c, err := old.IssueCredential(ctx, pool, identity, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, c)
	}

	rotating := New(rdb, Options{KeyPrefix: prefix, Secrets: testBox(t, 2, 1)})
	status, err := rotating.SecretsStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := SecretsReport{SecondaryKey: true,
		Apps:        SealedRecords{Total: 3, Secondary: 2, Unreadable: 1, UnreadableNames: []string{"lost"}},
		Credentials: SealedRecords{Total: 3, Secondary: 3},
	}
	if !reflect.DeepEqual(status, want) {
		t.Fatalf("status during the rotation:\n got %+v\nwant %+v", status, want)
	}
	if got, err := rotating.App(ctx, "ios"); err != nil || got.APNs.AuthKey != ios.APNs.AuthKey {
		t.Fatalf("app under the previous key during the rotation: %v", err)
	}
	if got, err := rotating.Credential(ctx, creds[0].AccessKeyID); err != nil || got != creds[0] {
		t.Fatalf("credential under the previous key during the rotation: %v", err)
	}
	// A record written during the rotation is sealed under the new key.
	if _, err := rotating.ReplaceApp(ctx, android); err != nil {
		t.Fatal(err)
	}

	var progress []SecretsReport
	rep, err := rotating.ResealSecrets(ctx, func(r SecretsReport) { progress = append(progress, r) })
	if err != nil {
		t.Fatal(err)
	}
	want = SecretsReport{SecondaryKey: true,
		Apps:        SealedRecords{Total: 3, Current: 2, Resealed: 1, Unreadable: 1, UnreadableNames: []string{"lost"}},
		Credentials: SealedRecords{Total: 3, Current: 3, Resealed: 3},
	}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("reseal:\n got %+v\nwant %+v", rep, want)
	}
	if len(progress) < 2 || !reflect.DeepEqual(progress[len(progress)-1], rep) {
		t.Errorf("progress %+v, want at least the apps and the last batch, ending with the report", progress)
	}
	key := prefix + ":cred:{" + creds[1].AccessKeyID + "}"
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= time.Hour || ttl > 2*time.Hour { // its hour, and an hour past its expiry
		t.Errorf("a resealed credential's expiry: %v", ttl)
	}

	// The new key alone now opens every record the rotation knew.
	done := New(rdb, Options{KeyPrefix: prefix, Secrets: testBox(t, 2)})
	for _, a := range []App{ios, android} {
		if got, err := done.App(ctx, a.Name); err != nil || got.APNs.AuthKey != a.APNs.AuthKey {
			t.Errorf("app %s under the new key alone: %v", a.Name, err)
		}
	}
	for _, c := range creds {
		if got, err := done.Credential(ctx, c.AccessKeyID); err != nil || got != c {
			t.Errorf("credential %s under the new key alone: %v", c.AccessKeyID, err)
		}
	}
	if again, err := rotating.ResealSecrets(ctx, nil); err != nil || again.Apps.Resealed+again.Credentials.Resealed != 0 {
		t.Errorf("a second reseal moved %+v, %v", again, err)
	}
	if st, err := done.SecretsStatus(ctx); err != nil || st.SecondaryKey || st.Apps.Current != 2 || st.Credentials.Current != 3 {
		t.Errorf("status under the new key alone: %+v, %v", st, err)
	}
	if _, err := New(rdb, Options{KeyPrefix: prefix}).SecretsStatus(ctx); !errors.Is(err, ErrNoMasterKey) {
		t.Errorf("status without a master key: %v", err)
	}
}

// TestResealLeavesAChangedRecord checks that a record rewritten between
// the read and the reseal keeps the rewrite.
func TestResealLeavesAChangedRecord(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	old := New(rdb, Options{KeyPrefix: prefix, Secrets: testBox(t, 1)})
	app := App{Name: "ios", Kind: KindAPNs, APNs: &APNsCredentials{Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: signingKey(t)}}
	if _, err := old.CreateApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	read, err := rdb.HGet(ctx, prefix+":{config}", "app:ios").Result()
	if err != nil {
		t.Fatal(err)
	}
	rotating := New(rdb, Options{KeyPrefix: prefix, Secrets: testBox(t, 2, 1)})
	app.APNs.AuthKey = signingKey(t)
	if _, err := rotating.ReplaceApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	var count SealedRecords
	stale := sealed{key: prefix + ":{config}", field: "app:ios", context: "app:ios", name: "ios", value: read}
	if err := rotating.sortOut(ctx, []sealed{stale}, true, &count, 1); err != nil {
		t.Fatal(err)
	}
	if want := (SealedRecords{Total: 1, Current: 1}); !reflect.DeepEqual(count, want) {
		t.Errorf("count %+v, want %+v (the record as rewritten, under the new key)", count, want)
	}
	if got, err := rotating.App(ctx, "ios"); err != nil || got.APNs.AuthKey != app.APNs.AuthKey {
		t.Fatalf("the rewrite was overwritten by the reseal of what was read before it: %v", err)
	}
}
