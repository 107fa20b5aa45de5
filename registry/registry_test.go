package registry_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/emutls"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

const (
	pool     = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	identity = "us-east-1:11111111-2222-3333-4444-555555555555"
	other    = "us-east-1:99999999-2222-3333-4444-555555555555"
)

var apnsToken = strings.Repeat("ab12", 16)

func newRegistry(t *testing.T) (*registry.Registry, string) {
	rdb, prefix := testenv.Redis(t)
	return registry.New(rdb, registry.Options{KeyPrefix: prefix, MaxDevicesPerIdentity: 5, Now: tickingClock()}), prefix
}

// tickingClock returns a clock that moves a millisecond on every reading,
// so that devices registered one after the other have distinct
// registration times, which order subscribers.
func tickingClock() func() time.Time {
	var ms atomic.Int64
	ms.Store(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC).UnixMilli())
	return func() time.Time { return time.UnixMilli(ms.Add(1)) }
}

func TestNormalizeToken(t *testing.T) {
	upper := strings.ToUpper(apnsToken)
	tests := []struct {
		platform   registry.Platform
		in, want   string
		wantErrSub string
	}{
		{registry.APNS, upper, apnsToken, ""},
		{registry.APNSSandbox, "<" + upper[:8] + " " + upper[8:] + ">", apnsToken, ""},
		{registry.APNS, "xyz" + apnsToken[3:], "", "hex digits"},
		{registry.APNS, apnsToken[:10], "", "64 to 200 hex digits"},
		{registry.APNS, "", "", "must not be empty"},
		{registry.GCM, "  fcm:Token_1-x  ", "fcm:Token_1-x", ""},
		{registry.GCM, "two words", "", "printable ASCII"},
		{registry.GCM, strings.Repeat("a", 4097), "", "at most 4096"},
	}
	for _, tt := range tests {
		got, err := registry.NormalizeToken(tt.platform, tt.in)
		if tt.wantErrSub != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
				t.Errorf("%s %q: got %q, %v; want error with %q", tt.platform, tt.in, got, err, tt.wantErrSub)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s %q: got %q, %v; want %q", tt.platform, tt.in, got, err, tt.want)
		}
	}
	if _, err := registry.ParsePlatform("ADM"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("ADM: %v", err)
	}
	if _, err := registry.ParsePlatform("WNS"); err == nil || !strings.Contains(err.Error(), `"WNS" is not one of`) {
		t.Errorf("WNS: %v", err)
	}
}

func TestRegisterIsIdempotentPerToken(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	d1, created, err := r.RegisterDevice(ctx, pool, identity, registry.APNS, strings.ToUpper(apnsToken))
	if err != nil || !created {
		t.Fatalf("first register: %v created=%v", err, created)
	}
	if d1.Token != apnsToken || d1.Platform != registry.APNS || len(d1.ID) != 36 {
		t.Fatalf("device %+v", d1)
	}
	// Same token in another case: same device.
	d2, created, err := r.RegisterDevice(ctx, pool, identity, registry.APNS, apnsToken)
	if err != nil || created || d2.ID != d1.ID {
		t.Fatalf("re-register gave %+v created=%v err=%v, want id %s", d2, created, err, d1.ID)
	}
	// Same token for another identity or platform: another device.
	d3, _, err := r.RegisterDevice(ctx, pool, other, registry.APNS, apnsToken)
	if err != nil || d3.ID == d1.ID {
		t.Fatalf("other identity got %+v, %v", d3, err)
	}
	d4, _, err := r.RegisterDevice(ctx, pool, identity, registry.APNSSandbox, apnsToken)
	if err != nil || d4.ID == d1.ID {
		t.Fatalf("other platform got %+v, %v", d4, err)
	}
	got, err := r.Device(ctx, pool, identity, d1.ID)
	if err != nil || got.ID != d1.ID || got.Token != apnsToken || !got.RegisteredAt.Equal(d2.RegisteredAt) {
		t.Fatalf("Device: %+v, %v", got, err)
	}
}

func TestConcurrentRegisterOfOneTokenGivesOneDevice(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	ids := make([]string, 20)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, _, err := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-token-1")
			if err != nil {
				t.Error(err)
			}
			ids[i] = d.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent registrations got different ids: %v", ids)
		}
	}
}

func TestDeviceLimit(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	for i := range 5 {
		if _, _, err := r.RegisterDevice(ctx, pool, identity, registry.GCM, fmt.Sprintf("tok-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.RegisterDevice(ctx, pool, identity, registry.GCM, "tok-5"); !errors.Is(err, registry.ErrTooManyDevices) {
		t.Fatalf("sixth device: got %v, want ErrTooManyDevices", err)
	}
	// An already registered token still answers.
	if _, created, err := r.RegisterDevice(ctx, pool, identity, registry.GCM, "tok-0"); err != nil || created {
		t.Fatalf("existing token at the limit: created=%v err=%v", created, err)
	}
}

func TestSubscriptions(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	a, _, _ := r.RegisterDevice(ctx, pool, identity, registry.APNS, apnsToken)
	b, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-b")
	c, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-c")
	for _, d := range []registry.Device{a, b, c} {
		if err := r.Subscribe(ctx, pool, identity, "settings", d.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Subscribe(ctx, pool, identity, "settings", a.ID); err != nil {
		t.Fatalf("subscribing twice: %v", err)
	}
	if err := r.Subscribe(ctx, pool, identity, "game.v2", b.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Subscribe(ctx, pool, identity, "settings", "5cd28fbe-0000-0000-0000-000000000000"); !errors.Is(err, registry.ErrDeviceNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	if err := r.Subscribe(ctx, pool, identity, "bad/name", a.ID); err == nil || !strings.Contains(err.Error(), "DatasetName") {
		t.Fatalf("bad dataset name: %v", err)
	}

	assertSubs(t, r, "settings", a.ID, b.ID, c.ID)
	assertSubs(t, r, "game.v2", b.ID)
	assertSubs(t, r, "nothing")

	if err := r.Unsubscribe(ctx, pool, identity, "settings", b.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Unsubscribe(ctx, pool, identity, "settings", b.ID); !errors.Is(err, registry.ErrNotSubscribed) {
		t.Fatalf("second unsubscribe: %v", err)
	}
	assertSubs(t, r, "settings", a.ID, c.ID)

	if _, err := r.RemoveDevice(ctx, pool, identity, c.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RemoveDevice(ctx, pool, identity, c.ID, ""); !errors.Is(err, registry.ErrDeviceNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	assertSubs(t, r, "settings", a.ID)
	reg, err := r.Registration(ctx, pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.Devices) != 2 {
		t.Fatalf("devices after removal: %v", reg.Devices)
	}
	for ds, ids := range reg.Subscriptions {
		for _, id := range ids {
			if id == c.ID {
				t.Fatalf("removed device still subscribed to %s", ds)
			}
		}
	}
	// The other identity sees none of this.
	if subs, _ := r.Subscribers(ctx, pool, other, "settings"); len(subs) != 0 {
		t.Fatalf("other identity has subscribers %v", subs)
	}
}

func assertSubs(t *testing.T, r *registry.Registry, dataset string, want ...string) {
	t.Helper()
	subs, err := r.Subscribers(context.Background(), pool, identity, dataset)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range subs {
		got = append(got, d.ID)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("subscribers of %s: got %v, want %v", dataset, got, want)
	}
}

func TestKeysShareTheIdentityHashTag(t *testing.T) {
	r, prefix := newRegistry(t)
	ctx := context.Background()
	d, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-x")
	if err := r.Subscribe(ctx, pool, identity, "settings", d.ID); err != nil {
		t.Fatal(err)
	}
	rdb, _ := testenv.Redis(t)
	keys, err := rdb.Keys(ctx, prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := prefix + ":{" + pool + "/" + identity + "}:push"
	if len(keys) != 1 || keys[0] != want {
		t.Fatalf("keys %v, want only %s", keys, want)
	}
}

func p8(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func certPEM(t *testing.T) string {
	id, err := emutls.New("client")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(id.Certificate.PrivateKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Certificate.Certificate[0]})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

var serviceAccount = testenv.ServiceAccount("demo")

func TestAppValidation(t *testing.T) {
	key := p8(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	sec1PEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	tests := []struct {
		name string
		app  registry.App
		want string
	}{
		{"token app", registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: key}}, ""},
		{"cert app", registry.App{Name: "ios-cert", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", Certificate: certPEM(t)}}, ""},
		{"fcm app", registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: serviceAccount}}, ""},
		{"bad name", registry.App{Name: "a b", Kind: registry.KindFCM}, "must be 1 to 256"},
		{"no topic", registry.App{Name: "x", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{KeyID: "k", TeamID: "t", AuthKey: key}}, "apns.topic"},
		{"no key id", registry.App{Name: "x", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "t", AuthKey: key}}, "needs apns.keyId and apns.teamId"},
		{"bad key", registry.App{Name: "x", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "t", KeyID: "k", TeamID: "t", AuthKey: "nope"}}, "apns.authKey: not PEM"},
		{"cert as key", registry.App{Name: "x", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "t", KeyID: "k", TeamID: "t", AuthKey: certPEM(t)}}, `apns.authKey: holds a PEM "CERTIFICATE" block, not the PRIVATE KEY of a .p8 file`},
		{"sec1 key", registry.App{Name: "x", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "t", KeyID: "k", TeamID: "t", AuthKey: sec1PEM}}, "openssl pkcs8 -topk8 -nocrypt"},
		{"both", registry.App{Name: "x", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "t", KeyID: "k", TeamID: "t", AuthKey: key, Certificate: "c"}}, "not both"},
		{"bad cert", registry.App{Name: "x", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "t", Certificate: "junk"}}, "apns.certificate"},
		{"fcm sa", registry.App{Name: "x", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "p", ServiceAccount: `{"type":"user"}`}}, "service account key file"},
		{"kind", registry.App{Name: "x", Kind: "wns"}, `kind must be "apns" or "fcm"`},
		{"mixed", registry.App{Name: "x", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "p", ServiceAccount: serviceAccount}, APNs: &registry.APNsCredentials{}}, "no apns credentials"},
	}
	for _, tt := range tests {
		err := tt.app.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, registry.ErrInvalidApp)) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestAppsAndPoolPush(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	ios := registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: p8(t)}}
	android := registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: serviceAccount}}
	put1, err := r.PutApp(ctx, ios)
	if err != nil || put1.Revision != 1 {
		t.Fatalf("put ios: %+v %v", put1, err)
	}
	put2, err := r.PutApp(ctx, ios)
	if err != nil || put2.Revision != 2 || !put2.CreatedAt.Equal(put1.CreatedAt) {
		t.Fatalf("second put: %+v %v", put2, err)
	}
	if _, err := r.PutApp(ctx, android); err != nil {
		t.Fatal(err)
	}
	got, err := r.App(ctx, "ios")
	if err != nil || got.Revision != 2 || got.APNs.AuthKey != ios.APNs.AuthKey {
		t.Fatalf("App: %+v %v", got, err)
	}
	if _, err := r.App(ctx, "missing"); !errors.Is(err, registry.ErrAppNotFound) {
		t.Fatalf("missing app: %v", err)
	}
	apps, err := r.Apps(ctx)
	if err != nil || len(apps) != 2 || apps[0].Name != "android" || apps[1].Revision != 2 {
		t.Fatalf("Apps: %+v %v", apps, err)
	}

	if _, err := r.PoolPush(ctx, pool); !errors.Is(err, registry.ErrPushNotEnabled) {
		t.Fatalf("unconfigured pool: %v", err)
	}
	bad := registry.PoolPush{Apps: map[registry.Platform]string{registry.GCM: "ios"}}
	if err := r.SetPoolPush(ctx, pool, bad); !errors.Is(err, registry.ErrInvalidPoolPush) || !strings.Contains(err.Error(), "needs an fcm app") {
		t.Fatalf("kind mismatch: %v", err)
	}
	missing := registry.PoolPush{Apps: map[registry.Platform]string{registry.GCM: "nope"}}
	if err := r.SetPoolPush(ctx, pool, missing); !errors.Is(err, registry.ErrAppNotFound) {
		t.Fatalf("missing app: %v", err)
	}
	pp := registry.PoolPush{Apps: map[registry.Platform]string{registry.APNS: "ios", registry.APNSSandbox: "ios", registry.GCM: "android"}}
	if err := r.SetPoolPush(ctx, pool, pp); err != nil {
		t.Fatal(err)
	}
	gotPP, err := r.PoolPush(ctx, pool)
	if err != nil || len(gotPP.Apps) != 3 || gotPP.Apps[registry.APNSSandbox] != "ios" {
		t.Fatalf("PoolPush: %+v %v", gotPP, err)
	}
	if err := r.DeleteApp(ctx, "android"); !errors.Is(err, registry.ErrAppInUse) {
		t.Fatalf("delete in-use app: %v", err)
	}
	if err := r.SetPoolPush(ctx, pool, registry.PoolPush{}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteApp(ctx, "android"); err != nil {
		t.Fatalf("delete unused app: %v", err)
	}
	if _, err := r.App(ctx, "android"); !errors.Is(err, registry.ErrAppNotFound) {
		t.Fatalf("deleted app still there: %v", err)
	}
}
