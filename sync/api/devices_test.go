//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).
package api_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws/credentials"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
	"github.com/pushsync/pushsync/sync/event"
)

type deviceList struct {
	IdentityPoolID string `json:"identityPoolId"`
	IdentityID     string `json:"identityId"`
	Devices        []struct {
		DeviceID      string    `json:"deviceId"`
		Platform      string    `json:"platform"`
		Token         string    `json:"token"`
		RegisteredAt  time.Time `json:"registeredAt"`
		Subscriptions []struct {
			DatasetName   string `json:"datasetName"`
			SentSyncCount int64  `json:"sentSyncCount"`
		} `json:"subscriptions"`
	} `json:"devices"`
}

func devicesPath(pool, identity string) string {
	return "/admin/v1/identitypools/" + pool + "/identities/" + identity + "/devices"
}

// listDevices lists an identity's devices through the admin API and
// returns the answer decoded and as it came.
func (f *fixture) listDevices(identity string) (deviceList, string) {
	f.t.Helper()
	var raw json.RawMessage
	f.admin("GET", devicesPath(pool, identity), "", http.StatusOK, &raw)
	var l deviceList
	if err := json.Unmarshal(raw, &l); err != nil {
		f.t.Fatal(err)
	}
	if l.IdentityPoolID != pool || l.IdentityID != identity {
		f.t.Errorf("device list names %s %s, want %s %s", l.IdentityPoolID, l.IdentityID, pool, identity)
	}
	return l, string(raw)
}

// summary shows a device list as "id platform token registered-ms
// dataset@sent,…" lines.
func (l deviceList) summary() []string {
	var out []string
	for _, d := range l.Devices {
		var subs []string
		for _, s := range d.Subscriptions {
			subs = append(subs, s.DatasetName+"@"+itoa(s.SentSyncCount))
		}
		out = append(out, strings.Join([]string{d.DeviceID, d.Platform, d.Token, itoa(d.RegisteredAt.UnixMilli()), strings.Join(subs, ",")}, " "))
	}
	return out
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// The admin API lists an identity's devices, oldest registration first
// (ties by DeviceId), each with its platform, token, registration time and
// subscriptions, by dataset name, with the highest sync count pushed to it;
// it removes one device with its subscriptions, and a device the identity
// does not have is 404.
func TestAdminListsAndRemovesAnIdentitysDevices(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	t0 := time.UnixMilli(1_790_000_000_000).UTC()
	now, id := t0, ""
	// The API's registry and this one share their keys; this one's clock
	// and DeviceIds are the test's.
	reg := registry.New(f.rdb, registry.Options{KeyPrefix: f.prefix, Now: func() time.Time { return now }, NewID: func() string { return id }})
	register := func(identity string, at time.Time, deviceID string, platform registry.Platform, token string) {
		t.Helper()
		now, id = at, deviceID
		if _, _, err := reg.RegisterDevice(ctx, pool, identity, platform, token); err != nil {
			t.Fatal(err)
		}
	}
	const (
		ipad   = "5cd28fbe-0000-4000-8000-000000000003"
		phone  = "5cd28fbe-0000-4000-8000-000000000002"
		tablet = "5cd28fbe-0000-4000-8000-000000000001"
		bobs   = "5cd28fbe-0000-4000-8000-000000000009"
	)
	register(alice, t0.Add(2*time.Minute), ipad, registry.APNS, strings.ToUpper(apnsToken))
	register(alice, t0, phone, registry.GCM, "fcm-registration-token-of-the-phone")
	register(alice, t0, tablet, registry.APNSSandbox, apnsToken)
	register(bob, t0, bobs, registry.GCM, "fcm-registration-token-of-bob")
	for _, s := range []struct{ device, dataset string }{{ipad, "settings"}, {ipad, "scores"}, {phone, "settings"}} {
		if err := f.reg.Subscribe(ctx, pool, alice, s.dataset, s.device); err != nil {
			t.Fatal(err)
		}
	}
	// Pushes of settings at 7 to the iPad and the phone, of scores at 3
	// to the iPad, as the dispatcher records them.
	if err := f.reg.RecordSent(ctx, pool, alice, "settings", 7, []string{ipad, phone}, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.reg.RecordSent(ctx, pool, alice, "scores", 3, []string{ipad}, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}

	l, raw := f.listDevices(alice)
	ms := itoa(t0.UnixMilli())
	want := []string{
		tablet + " APNS_SANDBOX " + apnsToken + " " + ms + " ",
		phone + " GCM fcm-registration-token-of-the-phone " + ms + " settings@7",
		ipad + " APNS " + apnsToken + " " + itoa(t0.Add(2*time.Minute).UnixMilli()) + " scores@3,settings@7",
	}
	if got := l.summary(); !reflect.DeepEqual(got, want) {
		t.Errorf("alice's devices:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(raw, `"subscriptions":[]`) {
		t.Errorf("a device subscribed to nothing has no empty subscriptions list: %s", raw)
	}
	if b, _ := f.listDevices(bob); len(b.Devices) != 1 || b.Devices[0].DeviceID != bobs {
		t.Errorf("bob's devices: %+v", b)
	}
	const carol = "us-east-1:ca401000-2222-3333-4444-555555555555"
	if _, raw := f.listDevices(carol); !strings.Contains(raw, `"devices":[]`) {
		t.Errorf("an identity without devices: %s, want an empty list", raw)
	}

	// Removing the iPad removes its subscriptions too.
	f.admin("DELETE", devicesPath(pool, alice)+"/"+ipad, "", http.StatusOK, nil)
	l, _ = f.listDevices(alice)
	if got := l.summary(); !reflect.DeepEqual(got, want[:2]) {
		t.Errorf("alice's devices after removing the iPad:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want[:2], "\n"))
	}
	r, err := f.reg.Registration(ctx, pool, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Subscriptions["scores"]) != 0 || !slices.Equal(r.Subscriptions["settings"], []string{phone}) {
		t.Errorf("subscriptions after removing the iPad: %v", r.Subscriptions)
	}
	err = adminCall(f, "DELETE", devicesPath(pool, alice)+"/"+ipad, "")
	expectErr(t, "removing the iPad again", err, "ResourceNotFoundException", http.StatusNotFound)
	if err == nil || !strings.Contains(err.Error(), ipad) {
		t.Errorf("removing the iPad again: %v, want a message naming the device", err)
	}
	// Bob's device is not alice's to remove.
	expectErr(t, "removing bob's device as alice's", adminCall(f, "DELETE", devicesPath(pool, alice)+"/"+bobs, ""), "ResourceNotFoundException", http.StatusNotFound)
	if b, _ := f.listDevices(bob); len(b.Devices) != 1 {
		t.Errorf("bob's devices after a removal of his device under alice: %+v", b)
	}
}

// Malformed pool, identity and device ids are refused with
// InvalidParameterException naming the field, and change nothing.
func TestAdminDeviceCallsRefuseMalformedIDs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.configure()
	dev, _, err := f.reg.RegisterDevice(ctx, pool, alice, registry.GCM, "fcm-registration-token-of-alice")
	if err != nil {
		t.Fatal(err)
	}
	before := redisSnapshot(t, f)
	for _, c := range []struct{ method, path, field string }{
		{"GET", devicesPath("not-a-pool", alice), "IdentityPoolId"},
		{"GET", devicesPath(pool, "us-east-1:NOT-HEX"), "IdentityId"},
		{"GET", devicesPath(pool, strings.Repeat("a", 60)+":0"), "IdentityId"},
		{"DELETE", devicesPath("us-east-1%2F..", alice) + "/" + dev.ID, "IdentityPoolId"},
		{"DELETE", devicesPath(pool, "alice") + "/" + dev.ID, "IdentityId"},
		{"DELETE", devicesPath(pool, alice) + "/" + strings.Repeat("d", 257), "DeviceId"},
		{"DELETE", devicesPath(pool, alice) + "/a%01b", "DeviceId"},
		{"DELETE", devicesPath(pool, alice) + "/" + dev.ID + "%20", "DeviceId"},
	} {
		err := adminCall(f, c.method, c.path, "")
		expectErr(t, c.method+" "+c.path, err, "InvalidParameterException", http.StatusBadRequest)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s %s: %v, want a message naming %s", c.method, c.path, err, c.field)
		}
	}
	if after := redisSnapshot(t, f); !maps.Equal(before, after) {
		t.Error("refused device calls changed Redis")
	}
}

// The device calls are for operators: identity credentials are refused,
// also for their own identity, and remove nothing.
func TestAdminDeviceCallsNeedDeveloperCredentials(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.configure()
	dev, _, err := f.reg.RegisterDevice(ctx, pool, alice, registry.GCM, "fcm-registration-token-of-alice")
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Credentials struct{ AccessKeyId, SecretKey, SessionToken string }
	}
	f.admin("POST", "/admin/v1/credentials", `{"IdentityPoolId":"`+pool+`","IdentityId":"`+alice+`"}`, http.StatusCreated, &out)
	creds := credentials.NewStaticCredentials(out.Credentials.AccessKeyId, out.Credentials.SecretKey, out.Credentials.SessionToken)
	for _, c := range []struct{ method, path string }{
		{"GET", devicesPath(pool, alice)},
		{"DELETE", devicesPath(pool, alice) + "/" + dev.ID},
	} {
		req, err := http.NewRequest(c.method, f.ts.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v4.NewSigner(creds).Sign(req, nil, api.AdminService, "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden || res.Header.Get("X-Amzn-ErrorType") != "NotAuthorizedException" || !strings.Contains(string(body), "developer credentials") {
			t.Errorf("%s %s with identity credentials: %d %s %s, want 403 NotAuthorizedException", c.method, c.path, res.StatusCode, res.Header.Get("X-Amzn-ErrorType"), body)
		}
	}
	if l, _ := f.listDevices(alice); len(l.Devices) != 1 || l.Devices[0].DeviceID != dev.ID {
		t.Errorf("alice's devices after refused calls: %+v", l)
	}
}

// An operator's removal of a device is announced with a DeviceRemoved
// event, as the dispatcher's removal of a device with a dead token is, so
// that a consumer of those events learns of every device that goes; a
// removal of a device that is not there announces nothing.
func TestAdminRemovalPublishesDeviceRemoved(t *testing.T) {
	ctx := context.Background()
	_, js := testenv.StartNATS(t).Connect(t)
	sc := event.StreamConfig{Name: "ADMIN_REMOVAL_TEST", SubjectPrefix: "adminremoval.changed",
		DeviceSubjectPrefix: "adminremoval.devices", Storage: jetstream.MemoryStorage}
	if _, err := event.EnsureStream(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: sc.Name, SubjectPrefix: sc.SubjectPrefix, DeviceSubjectPrefix: sc.DeviceSubjectPrefix})
	if err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	srv, err := api.New(reg, api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret, Publisher: pub, DeviceEvents: pub},
		zerolog.New(zerolog.NewTestWriter(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	f := &fixture{t: t, rdb: rdb, prefix: prefix, reg: reg, ts: ts}
	createPool(t, reg)
	ipad, _, err := reg.RegisterDevice(ctx, pool, alice, registry.APNS, apnsToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Subscribe(ctx, pool, alice, "settings", ipad.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.RegisterDevice(ctx, pool, alice, registry.GCM, "fcm-registration-token-of-the-phone"); err != nil {
		t.Fatal(err)
	}

	before := time.Now().Truncate(time.Millisecond)
	f.admin("DELETE", devicesPath(pool, alice)+"/"+ipad.ID, "", http.StatusOK, nil)
	stream, err := js.Stream(ctx, sc.Name)
	if err != nil {
		t.Fatal(err)
	}
	want := event.DeviceRemoved{Version: event.Version, IdentityPoolID: pool, IdentityID: alice, DeviceID: ipad.ID,
		Platform: "APNS", Reason: event.ReasonRemovedByOperator}
	msg, err := stream.GetLastMsgForSubject(ctx, event.DeviceRemovedSubject(sc.DeviceSubjectPrefix, &want))
	if err != nil {
		t.Fatalf("no DeviceRemoved event for the device the operator removed: %v", err)
	}
	var got event.DeviceRemoved
	if err := json.Unmarshal(msg.Data, &got); err != nil {
		t.Fatalf("DeviceRemoved event %s: %v", msg.Data, err)
	}
	if got.RemovedAt.Before(before) || got.RemovedAt.After(time.Now()) {
		t.Errorf("removedAt %v, want the time of the removal (after %v)", got.RemovedAt, before)
	}
	got.RemovedAt = time.Time{}
	if got != want {
		t.Errorf("DeviceRemoved event %+v, want %+v", got, want)
	}
	if msg.Header.Get(jetstream.MsgIDHeader) == "" {
		t.Error("the event was published without a deduplication id")
	}
	if pending, err := reg.PendingRemovals(ctx); err != nil || len(pending) != 0 {
		t.Errorf("the removal is still noted as unannounced after its event was published: %+v %v", pending, err)
	}

	// Removing it again is 404 and announces nothing more.
	expectErr(t, "removing the iPad again", adminCall(f, "DELETE", devicesPath(pool, alice)+"/"+ipad.ID, ""), "ResourceNotFoundException", http.StatusNotFound)
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("%d messages on the stream, want the one DeviceRemoved event", info.State.Msgs)
	}
}
