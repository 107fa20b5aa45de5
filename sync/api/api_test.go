//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
)

const (
	devKey    = "AKIAPUSHSYNCTEST0001"
	devSecret = "developer-secret-for-tests"
	pool      = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	alice     = "us-east-1:a11ce000-2222-3333-4444-555555555555"
	bob       = "us-east-1:b0b00000-2222-3333-4444-555555555555"
	apnsToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

type fixture struct {
	t      testing.TB
	rdb    *redis.Client
	prefix string
	reg    *registry.Registry
	ts     *httptest.Server
	now    time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	f := &fixture{t: t, rdb: rdb, prefix: prefix, now: time.Now()}
	f.reg = registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	log := zerolog.New(zerolog.NewTestWriter(t))
	if _, fuzz := t.(*testing.F); fuzz {
		// A fuzz target may not log through its *testing.F: the server
		// would panic on every request.
		log = zerolog.New(io.Discard)
	}
	srv, err := api.New(f.reg, api.Options{
		DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret,
		CORSAllowedOrigins: []string{"https://app.example.com"}, MaxBodyBytes: 64 << 10,
	}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(f.ts.Close)
	createPool(t, f.reg)
	return f
}

// createPool creates the identity pool pool, as an operator does before
// developer credentials act in it.
func createPool(t testing.TB, reg *registry.Registry) {
	t.Helper()
	if _, err := reg.CreateIdentityPool(context.Background(), "", registry.IdentityPool{ID: pool, Name: "game"}); err != nil {
		t.Fatal(err)
	}
}

// client is the real AWS SDK Cognito Sync client pointed at the server.
func (f *fixture) client(ak, sk, token string) *cognitosync.CognitoSync {
	sess := session.Must(session.NewSession(&aws.Config{
		Endpoint:    aws.String(f.ts.URL),
		Region:      aws.String("us-east-1"),
		Credentials: credentials.NewStaticCredentials(ak, sk, token),
		MaxRetries:  aws.Int(0),
	}))
	return cognitosync.New(sess)
}

func (f *fixture) developer() *cognitosync.CognitoSync { return f.client(devKey, devSecret, "") }

// identity issues identity credentials through the admin API and returns a
// client signing with them.
func (f *fixture) identity(identityID string) *cognitosync.CognitoSync {
	f.t.Helper()
	var out struct {
		Credentials struct{ AccessKeyId, SecretKey, SessionToken string }
	}
	f.admin("POST", "/admin/v1/credentials", fmt.Sprintf(`{"IdentityPoolId":%q,"IdentityId":%q}`, pool, identityID), http.StatusCreated, &out)
	c := out.Credentials
	return f.client(c.AccessKeyId, c.SecretKey, c.SessionToken)
}

// admin sends a developer-signed admin API request and decodes the answer.
func (f *fixture) admin(method, path, body string, wantStatus int, out any) {
	f.t.Helper()
	res := f.signed(method, path, body, api.AdminService, devKey, devSecret)
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != wantStatus {
		f.t.Fatalf("%s %s: %d %s, want %d", method, path, res.StatusCode, data, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			f.t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

func (f *fixture) signed(method, path, body, service, ak, sk string) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if _, err := v4.NewSigner(credentials.NewStaticCredentials(ak, sk, "")).Sign(req, strings.NewReader(body), service, "us-east-1", time.Now()); err != nil {
		f.t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

func p8(t testing.TB) string {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

var serviceAccount = testenv.ServiceAccount("demo")

// configure registers two apps and turns push sync on for the pool.
func (f *fixture) configure() {
	f.t.Helper()
	f.admin("POST", "/admin/v1/apps", fmt.Sprintf(`{"name":"game-ios","kind":"apns","apns":{"topic":"com.example.game","keyId":"ABC123DEFG","teamId":"TEAM123456","authKey":%q}}`, p8(f.t)), http.StatusCreated, nil)
	f.admin("POST", "/admin/v1/apps", fmt.Sprintf(`{"name":"game-android","kind":"fcm","fcm":{"projectId":"demo","serviceAccount":%q}}`, serviceAccount), http.StatusCreated, nil)
	_, err := f.developer().SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool),
		PushSync: &cognitosync.PushSync{ApplicationArns: aws.StringSlice([]string{
			"arn:aws:sns:us-east-1:123456789012:app/APNS/game-ios",
			"arn:aws:sns:us-east-1:123456789012:app/APNS_SANDBOX/game-ios",
			"arn:aws:sns:us-east-1:123456789012:app/GCM/game-android",
		}), RoleArn: aws.String("arn:aws:iam::123456789012:role/CognitoPushRole")},
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func awsCode(err error) (string, int) {
	var rf awserr.RequestFailure
	if errors.As(err, &rf) {
		return rf.Code(), rf.StatusCode()
	}
	var ae awserr.Error
	if errors.As(err, &ae) {
		return ae.Code(), 0
	}
	return "", 0
}

func expectErr(t *testing.T, what string, err error, code string, status int) {
	t.Helper()
	got, gotStatus := awsCode(err)
	if got != code || gotStatus != status {
		t.Errorf("%s: got %q %d (%v), want %s %d", what, got, gotStatus, err, code, status)
	}
}

func TestPoolConfigurationRoundTrip(t *testing.T) {
	f := newFixture(t)
	dev := f.developer()
	out, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
	if err != nil || out.PushSync != nil || aws.StringValue(out.IdentityPoolId) != pool {
		t.Fatalf("unconfigured pool: %+v %v", out, err)
	}
	f.configure()
	out, err = dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
	if err != nil {
		t.Fatal(err)
	}
	arns := aws.StringValueSlice(out.PushSync.ApplicationArns)
	if len(arns) != 3 || arns[2] != "arn:aws:sns:us-east-1:123456789012:app/GCM/game-android" || aws.StringValue(out.PushSync.RoleArn) != "arn:aws:iam::123456789012:role/CognitoPushRole" {
		t.Fatalf("configuration %+v", out)
	}
	set, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool),
		CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("events"), RoleArn: aws.String("arn:aws:iam::123456789012:role/Streams"), StreamingStatus: aws.String("ENABLED")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.PushSync.ApplicationArns) != 3 || aws.StringValue(set.CognitoStreams.StreamingStatus) != "ENABLED" {
		t.Fatalf("a streams-only update must keep push sync: %+v", set)
	}
	// Members left out keep their stored values.
	set, err = dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool),
		PushSync:       &cognitosync.PushSync{RoleArn: aws.String("arn:aws:iam::123456789012:role/NewPushRole")},
		CognitoStreams: &cognitosync.CognitoStreams{StreamingStatus: aws.String("DISABLED")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if arns := aws.StringValueSlice(set.PushSync.ApplicationArns); len(arns) != 3 || aws.StringValue(set.PushSync.RoleArn) != "arn:aws:iam::123456789012:role/NewPushRole" {
		t.Fatalf("a RoleArn-only PushSync update must keep the applications and change the role: %+v", set.PushSync)
	}
	if cs := set.CognitoStreams; aws.StringValue(cs.StreamingStatus) != "DISABLED" || aws.StringValue(cs.StreamName) != "events" || aws.StringValue(cs.RoleArn) != "arn:aws:iam::123456789012:role/Streams" {
		t.Fatalf("a StreamingStatus-only update must keep the stream name and role: %+v", cs)
	}
	if _, err := f.identity(alice).RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-role-only")}); err != nil {
		t.Fatalf("push sync is off after a RoleArn-only update: %v", err)
	}
	for _, tc := range []struct {
		arn, want string
	}{
		{"arn:aws:sns:us-east-1:1:app/GCM/missing", "no platform application named missing"},
		{"arn:aws:sns:us-east-1:1:app/GCM/game-ios", "is an apns application and cannot serve GCM"},
		{"arn:aws:sns:us-east-1:1:app/ADM/game-ios", "ADM is not supported"},
		{"not-an-arn", "is not a platform application ARN"},
	} {
		_, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
			IdentityPoolId: aws.String(pool), PushSync: &cognitosync.PushSync{ApplicationArns: aws.StringSlice([]string{tc.arn})}})
		expectErr(t, tc.arn, err, "InvalidParameterException", 400)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a message with %q", tc.arn, err, tc.want)
		}
	}
}

// A push configuration stored without the ARNs it was given as (made
// through the registry, by the dev stack or a tool) is shown with the ARNs
// of the apps it pushes through, so that it does not read as push sync off
// while pushes flow; those ARNs set it back unchanged.
func TestPoolConfigurationShowsTheARNsOfItsApps(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, a := range []registry.App{
		{Name: "game-ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example.game", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: p8(t)}},
		{Name: "game-android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: serviceAccount}},
	} {
		if _, err := f.reg.PutApp(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.reg.SetPoolPush(ctx, pool, registry.PoolPush{Apps: map[registry.Platform]string{
		registry.GCM: "game-android", registry.APNS: "game-ios", registry.APNSSandbox: "game-ios",
	}}); err != nil {
		t.Fatal(err)
	}
	dev := f.developer()
	out, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"arn:aws:sns:us-east-1:000000000000:app/APNS/game-ios",
		"arn:aws:sns:us-east-1:000000000000:app/APNS_SANDBOX/game-ios",
		"arn:aws:sns:us-east-1:000000000000:app/GCM/game-android",
	}
	if out.PushSync == nil || strings.Join(aws.StringValueSlice(out.PushSync.ApplicationArns), " ") != strings.Join(want, " ") || out.PushSync.RoleArn != nil {
		t.Fatalf("configuration %+v, want push sync through %v", out, want)
	}
	if _, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool), PushSync: out.PushSync,
	}); err != nil {
		t.Fatalf("setting the configuration shown: %v", err)
	}
	pp, err := f.reg.PoolPush(ctx, pool)
	if err != nil || len(pp.Apps) != 3 || pp.Apps[registry.APNSSandbox] != "game-ios" || len(pp.ApplicationARNs) != 3 {
		t.Fatalf("after setting it back: %+v %v", pp, err)
	}
}

func TestDeviceOperationsWithIdentityAndDeveloperCredentials(t *testing.T) {
	f := newFixture(t)
	aliceC := f.identity(alice)
	// Before push sync is configured.
	_, err := aliceC.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-1")})
	expectErr(t, "register before configuration", err, "InvalidConfigurationException", 400)
	f.configure()

	reg, err := aliceC.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("APNS"), Token: aws.String(strings.ToUpper(apnsToken))})
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.developer().RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("APNS"), Token: aws.String(apnsToken)})
	if err != nil || aws.StringValue(again.DeviceId) != aws.StringValue(reg.DeviceId) {
		t.Fatalf("re-registration: %v %v", again, err)
	}
	dev := reg.DeviceId
	sub := &cognitosync.SubscribeToDatasetInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("game.settings:v2"), DeviceId: dev}
	if _, err := aliceC.SubscribeToDataset(sub); err != nil {
		t.Fatal(err)
	}
	subs, err := f.reg.Subscribers(context.Background(), pool, alice, "game.settings:v2")
	if err != nil || len(subs) != 1 || subs[0].ID != aws.StringValue(dev) || subs[0].Token != apnsToken {
		t.Fatalf("registry after subscribe: %+v %v", subs, err)
	}
	unsub := &cognitosync.UnsubscribeFromDatasetInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("game.settings:v2"), DeviceId: dev}
	if _, err := aliceC.UnsubscribeFromDataset(unsub); err != nil {
		t.Fatal(err)
	}
	_, err = aliceC.UnsubscribeFromDataset(unsub)
	expectErr(t, "second unsubscribe", err, "ResourceNotFoundException", 404)
	_, err = aliceC.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings"), DeviceId: aws.String("5cd28fbe-0000-0000-0000-000000000000")})
	expectErr(t, "subscribe unknown device", err, "ResourceNotFoundException", 404)

	// Input constraints, each named.
	for _, tc := range []struct {
		in      *cognitosync.RegisterDeviceInput
		message string
	}{
		{&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("WNS"), Token: aws.String("x")}, "Platform"},
		{&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("APNS"), Token: aws.String("nothex")}, "Token"},
		{&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("   ")}, "Token"},
	} {
		_, err := f.developer().RegisterDevice(tc.in)
		expectErr(t, tc.message, err, "InvalidParameterException", 400)
		if err == nil || !strings.Contains(err.Error(), tc.message) {
			t.Errorf("error %v does not name %s", err, tc.message)
		}
	}
	// Identity credentials cannot act for another identity or call
	// operator operations.
	_, err = aliceC.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(bob), Platform: aws.String("GCM"), Token: aws.String("fcm-x")})
	expectErr(t, "alice registers for bob", err, "NotAuthorizedException", 403)
	_, err = aliceC.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool), PushSync: &cognitosync.PushSync{ApplicationArns: []*string{}}})
	expectErr(t, "identity sets pool configuration", err, "NotAuthorizedException", 403)
	_, err = aliceC.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
	expectErr(t, "identity reads pool configuration", err, "NotAuthorizedException", 403)
	res := f.signedWith(aliceC, "GET", "/admin/v1/apps")
	if res.StatusCode != 403 || res.Header.Get("X-Amzn-ErrorType") != "NotAuthorizedException" {
		t.Errorf("identity on the admin API: %d %s", res.StatusCode, res.Header.Get("X-Amzn-ErrorType"))
	}
	// The developer acts for anyone.
	if _, err := f.developer().RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(bob), Platform: aws.String("GCM"), Token: aws.String("fcm-bob")}); err != nil {
		t.Fatal(err)
	}
}

// signedWith signs a request with a client's credentials for the admin
// service.
func (f *fixture) signedWith(c *cognitosync.CognitoSync, method, path string) *http.Response {
	creds, err := c.Config.Credentials.Get()
	if err != nil {
		f.t.Fatal(err)
	}
	req, _ := http.NewRequest(method, f.ts.URL+path, nil)
	_, _ = v4.NewSigner(credentials.NewStaticCredentials(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)).Sign(req, nil, api.AdminService, "us-east-1", time.Now())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// DurationSeconds takes from 1m to 12h, the range pushsyncctl's -duration
// checks before it asks.
func TestCredentialDurationRange(t *testing.T) {
	f := newFixture(t)
	f.configure()
	for secs, status := range map[int]int{59: http.StatusBadRequest, 60: http.StatusCreated, 43200: http.StatusCreated, 43201: http.StatusBadRequest} {
		f.admin("POST", "/admin/v1/credentials", fmt.Sprintf(`{"IdentityPoolId":%q,"IdentityId":%q,"DurationSeconds":%d}`, pool, alice, secs), status, nil)
	}
}

func TestExpiredIdentityCredentialsAreRefused(t *testing.T) {
	f := newFixture(t)
	f.configure()
	var out struct {
		Credentials struct{ AccessKeyId, SecretKey, SessionToken string }
	}
	f.admin("POST", "/admin/v1/credentials", fmt.Sprintf(`{"IdentityPoolId":%q,"IdentityId":%q,"DurationSeconds":60}`, pool, alice), http.StatusCreated, &out)
	c := f.client(out.Credentials.AccessKeyId, out.Credentials.SecretKey, out.Credentials.SessionToken)
	in := &cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-1")}
	if _, err := c.RegisterDevice(in); err != nil {
		t.Fatal(err)
	}
	// Let the record lapse in Redis, as it does when the TTL runs out.
	if err := f.rdb.Del(context.Background(), f.prefix+":cred:{"+out.Credentials.AccessKeyId+"}").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := c.RegisterDevice(in)
	expectErr(t, "expired credentials", err, "UnrecognizedClientException", 403)
	// A wrong session token is refused too.
	f.admin("POST", "/admin/v1/credentials", fmt.Sprintf(`{"IdentityPoolId":%q,"IdentityId":%q}`, pool, alice), http.StatusCreated, &out)
	_, err = f.client(out.Credentials.AccessKeyId, out.Credentials.SecretKey, "forged").RegisterDevice(in)
	expectErr(t, "forged session token", err, "UnrecognizedClientException", 403)
	_, err = f.client(devKey, "wrong-secret-0000000", "").RegisterDevice(in)
	expectErr(t, "wrong developer secret", err, "InvalidSignatureException", 403)
}

func TestAdminPlatformApps(t *testing.T) {
	f := newFixture(t)
	key := p8(t)
	var created map[string]any
	f.admin("POST", "/admin/v1/apps", fmt.Sprintf(`{"name":"ios","kind":"apns","apns":{"topic":"com.example","keyId":"ABC123DEFG","teamId":"TEAM123456","authKey":%q}}`, key), http.StatusCreated, &created)
	if created["revision"] != float64(1) || created["applicationArns"].(map[string]any)["APNS_SANDBOX"] != "arn:aws:sns:us-east-1:000000000000:app/APNS_SANDBOX/ios" {
		t.Fatalf("created %v", created)
	}
	// Never the secrets, in any answer.
	for _, path := range []string{"/admin/v1/apps", "/admin/v1/apps/ios"} {
		res := f.signed("GET", path, "", api.AdminService, devKey, devSecret)
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || bytes.Contains(data, []byte("PRIVATE KEY")) || bytes.Contains(data, []byte(key[40:70])) {
			t.Fatalf("GET %s: %d, leaks the key or fails: %s", path, res.StatusCode, data)
		}
	}
	f.admin("POST", "/admin/v1/apps", fmt.Sprintf(`{"name":"ios","kind":"apns","apns":{"topic":"com.example","keyId":"ABC123DEFG","teamId":"TEAM123456","authKey":%q}}`, key), http.StatusConflict, nil)
	var rotated map[string]any
	f.admin("PUT", "/admin/v1/apps/ios", fmt.Sprintf(`{"kind":"apns","apns":{"topic":"com.example","keyId":"NEWKEY0001","teamId":"TEAM123456","authKey":%q}}`, p8(t)), http.StatusOK, &rotated)
	if rotated["revision"] != float64(2) || rotated["apns"].(map[string]any)["keyId"] != "NEWKEY0001" {
		t.Fatalf("rotated %v", rotated)
	}
	f.admin("PUT", "/admin/v1/apps/nope", fmt.Sprintf(`{"kind":"fcm","fcm":{"projectId":"p","serviceAccount":%q}}`, serviceAccount), http.StatusNotFound, nil)
	f.admin("POST", "/admin/v1/apps", `{"name":"bad","kind":"apns","apns":{"topic":"t","keyId":"k","teamId":"t","authKey":"not a key"}}`, http.StatusBadRequest, nil)
	f.admin("POST", "/admin/v1/apps", `{"name":`, http.StatusBadRequest, nil)
	var list struct{ Apps []map[string]any }
	f.admin("GET", "/admin/v1/apps", "", http.StatusOK, &list)
	if len(list.Apps) != 1 {
		t.Fatalf("list %v", list)
	}
	// In use by a pool: no delete.
	if _, err := f.developer().SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool),
		PushSync: &cognitosync.PushSync{ApplicationArns: aws.StringSlice([]string{"arn:aws:sns:us-east-1:000000000000:app/APNS/ios"})}}); err != nil {
		t.Fatal(err)
	}
	f.admin("DELETE", "/admin/v1/apps/ios", "", http.StatusConflict, nil)
	if _, err := f.developer().SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool),
		PushSync: &cognitosync.PushSync{ApplicationArns: []*string{}}}); err != nil {
		t.Fatal(err)
	}
	f.admin("DELETE", "/admin/v1/apps/ios", "", http.StatusOK, nil)
	f.admin("GET", "/admin/v1/apps/ios", "", http.StatusNotFound, nil)
}

// TestSecretsEndpoints covers the admin API's side of a master key
// rotation; cmd/pushsyncctl's TestMasterKeyRotation runs a whole one.
func TestSecretsEndpoints(t *testing.T) {
	f := newFixture(t)
	f.identity(alice)
	var rep registry.SecretsReport
	f.admin("GET", "/admin/v1/secrets", "", http.StatusOK, &rep)
	if c := rep.Credentials; c.Total != 1 || c.Current != 1 || c.Secondary != 0 || c.Unreadable != 0 || rep.Apps.Total != 0 {
		t.Fatalf("status %+v", rep)
	}
	f.admin("POST", "/admin/v1/secrets/reseal", "", http.StatusOK, &rep)
	if rep.Credentials.Resealed != 0 || rep.Credentials.Current != 1 {
		t.Fatalf("reseal with nothing under a previous key: %+v", rep)
	}
	// A registry without a master key says so.
	plain, err := api.New(registry.New(f.rdb, registry.Options{KeyPrefix: f.prefix}), api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret},
		zerolog.New(zerolog.NewTestWriter(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.ts.Config.Handler = plain.Handler()
	res := f.signed("GET", "/admin/v1/secrets", "", api.AdminService, devKey, devSecret)
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !bytes.Contains(data, []byte("InvalidConfigurationException")) || !bytes.Contains(data, []byte("secrets.master_key is not set")) {
		t.Errorf("status without a master key: %d %s", res.StatusCode, data)
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("OPTIONS", f.ts.URL+"/identitypools/x/identity/y/device", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,x-amz-date,content-type")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	h := res.Header
	if res.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "x-amz-security-token") ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "DELETE") {
		t.Fatalf("preflight: %d %v", res.StatusCode, h)
	}
	req.Header.Set("Origin", "https://evil.example.com")
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	if res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from a foreign origin: %d %v", res.StatusCode, res.Header)
	}
	// An actual request carries the exposed headers.
	get, _ := http.NewRequest("GET", f.ts.URL+"/identitypools/"+pool+"/configuration", nil)
	get.Header.Set("Origin", "https://app.example.com")
	res, _ = http.DefaultClient.Do(get)
	res.Body.Close()
	if !strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "x-amzn-RequestId") || res.Header.Get("X-Amzn-RequestId") == "" {
		t.Fatalf("exposed headers: %v", res.Header)
	}
}

// TestCORSVaryOrigin checks that every answer of a server with allowed
// origins says Vary: Origin, also those that carry no CORS headers (no
// Origin, or one not allowed): a cache that kept such an answer without it
// would hand it to a browser at an allowed origin, which then refuses it
// for want of Access-Control-Allow-Origin.
func TestCORSVaryOrigin(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct{ name, method, origin string }{
		{"allowed origin", "GET", "https://app.example.com"},
		{"no origin", "GET", ""},
		{"origin not allowed", "GET", "https://evil.example.com"},
		{"preflight from an origin not allowed", "OPTIONS", "https://evil.example.com"},
	} {
		req, _ := http.NewRequest(tt.method, f.ts.URL+"/identitypools/"+esc(pool)+"/configuration", nil)
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		if tt.method == "OPTIONS" {
			req.Header.Set("Access-Control-Request-Method", "GET")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if vary := res.Header.Values("Vary"); len(vary) != 1 || vary[0] != "Origin" {
			t.Errorf("%s: %d, Vary %q, want Origin", tt.name, res.StatusCode, vary)
		}
	}
}

// snapshot returns every key and value under the test's prefix.
func (f *fixture) snapshot() map[string]string {
	f.t.Helper()
	ctx := context.Background()
	keys, err := f.rdb.Keys(ctx, f.prefix+":*").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	sort.Strings(keys)
	out := map[string]string{}
	for _, k := range keys {
		dump, err := f.rdb.Dump(ctx, k).Result()
		if err != nil {
			f.t.Fatal(err)
		}
		out[k] = dump
	}
	return out
}
