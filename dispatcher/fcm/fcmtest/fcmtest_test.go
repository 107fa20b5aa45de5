package fcmtest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"github.com/golang-jwt/jwt/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/emutls"
)

const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// client is a production-shaped FCM client talking to an emulator.
type client struct {
	mc    *messaging.Client
	creds *google.Credentials
	base  *http.Transport
}

// newClient builds the client the way production code does: service-account
// JSON -> google credentials -> oauth2.Transport -> firebase app.
func newClient(t testing.TB, s *fcmtest.Server, saJSON []byte, projectID string) *client {
	t.Helper()
	return newScopedClient(t, s, saJSON, projectID, fcmScope)
}

// newScopedClient is newClient asking for the given OAuth2 scopes.
func newScopedClient(t testing.TB, s *fcmtest.Server, saJSON []byte, projectID string, scopes ...string) *client {
	t.Helper()
	base := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: s.RootCAs()},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(base.CloseIdleConnections)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: base})
	creds, err := google.CredentialsFromJSONWithType(ctx, saJSON, google.ServiceAccount, scopes...)
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	hc := &http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: base}}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: projectID},
		option.WithEndpoint(s.Endpoint()), option.WithHTTPClient(hc))
	if err != nil {
		t.Fatalf("firebase app: %v", err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		t.Fatalf("messaging client: %v", err)
	}
	return &client{mc: mc, creds: creds, base: base}
}

func setup(t testing.TB, projectID string, opts ...fcmtest.Option) (*fcmtest.Server, *client) {
	t.Helper()
	s := fcmtest.NewServer(opts...)
	t.Cleanup(s.Close)
	sa, err := s.AddServiceAccount(projectID)
	if err != nil {
		t.Fatal(err)
	}
	return s, newClient(t, s, sa, projectID)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dataMsg(token string) *messaging.Message {
	ttl := 30 * time.Minute
	return &messaging.Message{
		Token: token,
		Data:  map[string]string{"type": "sync", "seq": "42"},
		Android: &messaging.AndroidConfig{
			Priority: "normal", TTL: &ttl, CollapseKey: "sync",
		},
	}
}

func TestServiceAccountKeyFile(t *testing.T) {
	s := fcmtest.NewServer()
	defer s.Close()
	sa, err := s.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]string
	if err := json.Unmarshal(sa, &f); err != nil {
		t.Fatal(err)
	}
	if f["type"] != "service_account" || f["project_id"] != "demo-project" || f["token_uri"] != s.TokenURL() ||
		!strings.HasSuffix(f["client_email"], "@demo-project.iam.gserviceaccount.com") ||
		len(f["private_key_id"]) != 40 || f["client_id"] == "" || f["auth_uri"] == "" {
		t.Fatalf("unexpected key file: %s", sa)
	}
	block, _ := pem.Decode([]byte(f["private_key"]))
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("private key is not PKCS#8 PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Fatalf("key is not RSA-2048")
	}
	if !bytes.Contains(s.CACertPEM(), []byte("BEGIN CERTIFICATE")) {
		t.Fatal("CACertPEM is not PEM")
	}
	if s.Endpoint() != s.URL+"/v1" || !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %q endpoint %q", s.URL, s.Endpoint())
	}
}

// TestServiceAccountKeyOfAnEarlierServer registers, with a second server
// of the first's identity, the key file the first issued: the client of
// the file, which trusts the first's authority, sends through the second.
func TestServiceAccountKeyOfAnEarlierServer(t *testing.T) {
	id, err := emutls.New("fcm.googleapis.com")
	if err != nil {
		t.Fatal(err)
	}
	first := fcmtest.NewServer(fcmtest.WithIdentity(id))
	sa, err := first.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	s := fcmtest.NewServer(fcmtest.WithIdentity(id))
	defer s.Close()
	sa = bytes.Replace(sa, []byte(first.TokenURL()), []byte(s.TokenURL()), 1)
	c := newClient(t, s, sa, "demo-project")
	if _, err := c.mc.Send(ctxT(t, 10*time.Second), dataMsg("fcm-registration-token")); err == nil || !strings.Contains(err.Error(), "account not found") {
		t.Fatalf("before AddServiceAccountKey: %v, want account not found", err)
	}
	if err := s.AddServiceAccountKey("demo-project", sa); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, s, sa, "demo-project")
	if _, err := c.mc.Send(ctxT(t, 10*time.Second), dataMsg("fcm-registration-token")); err != nil {
		t.Fatal(err)
	}
	if p := s.Pushes(); len(p) != 1 || p[0].ProjectID != "demo-project" {
		t.Fatalf("pushes %+v", p)
	}
}

func TestServiceAccountKeyErrors(t *testing.T) {
	s := fcmtest.NewServer()
	defer s.Close()
	sa, err := s.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	with := func(field string, v any) []byte {
		var m map[string]any
		if err := json.Unmarshal(sa, &m); err != nil {
			t.Fatal(err)
		}
		m[field] = v
		b, _ := json.Marshal(m)
		return b
	}
	ecKey := func() string {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}()
	for file, want := range map[string]string{
		"[1]":                                   "not a service account key file, a JSON object",
		string(with("type", "authorized_user")): `type is "authorized_user", not "service_account"`,
		string(with("project_id", "other")):     `project_id is "other", not "demo-project"`,
		string(with("client_email", "")):        "client_email and private_key_id are required",
		string(with("private_key", "key")):      "private_key is not a PEM PKCS#8 private key",
		string(with("private_key", ecKey)):      "private_key is a *ecdsa.PrivateKey, not the RSA key of a service account",
	} {
		if err := s.AddServiceAccountKey("demo-project", []byte(file)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.60s: %v, want %q", file, err, want)
		}
	}
}

func TestSendDataMessageOverHTTP2(t *testing.T) {
	s, c := setup(t, "demo-project")
	ctx := ctxT(t, 10*time.Second)

	id, err := c.mc.Send(ctx, dataMsg("fcm-device-token-0001"))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if !strings.HasPrefix(id, "projects/demo-project/messages/0:") {
		t.Fatalf("message id %q", id)
	}
	pushes := s.Pushes()
	if len(pushes) != 1 {
		t.Fatalf("got %d pushes", len(pushes))
	}
	p := pushes[0]
	if p.ProjectID != "demo-project" || p.Token != "fcm-device-token-0001" || p.Name != id {
		t.Fatalf("push %+v", p)
	}
	if len(p.Data) != 2 || p.Data["type"] != "sync" || p.Data["seq"] != "42" {
		t.Fatalf("data %v", p.Data)
	}
	var android map[string]any
	if err := json.Unmarshal(p.Android, &android); err != nil {
		t.Fatal(err)
	}
	if android["priority"] != "normal" || android["ttl"] != "1800s" || android["collapse_key"] != "sync" {
		t.Fatalf("android %s", p.Android)
	}
	if !json.Valid(p.Message) || !bytes.Contains(p.Message, []byte(`"token":"fcm-device-token-0001"`)) {
		t.Fatalf("message %s", p.Message)
	}
	if p.ProtoMajor != 2 || p.Proto != "HTTP/2.0" {
		t.Fatalf("request arrived over %s", p.Proto)
	}
	if !strings.HasPrefix(p.Header.Get("Authorization"), "Bearer ya29.") ||
		!strings.HasPrefix(p.Header.Get("X-Firebase-Client"), "fire-admin-go/") {
		t.Fatalf("headers %v", p.Header)
	}

	// Many more sends reuse the cached access token.
	msgs := make([]*messaging.Message, 100)
	for i := range msgs {
		msgs[i] = dataMsg("fcm-device-token-0002")
	}
	br, err := c.mc.SendEach(ctx, msgs)
	if err != nil || br.SuccessCount != 100 {
		t.Fatalf("send each: %v, %+v", err, br)
	}
	st := s.Stats()
	if st.TokensIssued != 1 || st.TokenRequests != 1 {
		t.Fatalf("token endpoint hit %d times, %d tokens issued", st.TokenRequests, st.TokensIssued)
	}
	if st.Requests != 101 || st.Accepted != 101 || st.HTTP2Requests != 101 || st.ByStatus["OK"] != 101 {
		t.Fatalf("stats %+v", st)
	}
	if len(s.Pushes()) != 101 {
		t.Fatalf("got %d pushes", len(s.Pushes()))
	}
}

func TestTopicMessage(t *testing.T) {
	s, c := setup(t, "demo-project")
	if _, err := c.mc.Send(ctxT(t, 10*time.Second), &messaging.Message{Topic: "/topics/news", Data: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if p := s.Pushes(); len(p) != 1 || p[0].Topic != "news" || p[0].Token != "" {
		t.Fatalf("pushes %+v", p)
	}
}

func TestHTTP1Client(t *testing.T) {
	s := fcmtest.NewServer()
	defer s.Close()
	sa, err := s.AddServiceAccount("p1")
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.RootCAs()},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}
	defer base.CloseIdleConnections()
	ctx := context.WithValue(ctxT(t, 10*time.Second), oauth2.HTTPClient, &http.Client{Transport: base})
	creds, err := google.CredentialsFromJSONWithType(ctx, sa, google.ServiceAccount, fcmScope)
	if err != nil {
		t.Fatal(err)
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: "p1"}, option.WithEndpoint(s.Endpoint()),
		option.WithHTTPClient(&http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: base}}))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.Send(ctx, dataMsg("fcm-registration-token")); err != nil {
		t.Fatal(err)
	}
	if p := s.Pushes(); len(p) != 1 || p[0].ProtoMajor != 1 {
		t.Fatalf("pushes %+v", p)
	}
}

func TestFailurePresets(t *testing.T) {
	s, c := setup(t, "demo-project")
	ctx := ctxT(t, 20*time.Second)
	cases := []struct {
		name   string
		f      fcmtest.Failure
		is     func(error) bool
		status func(error) bool
		code   int
	}{
		{"unregistered", fcmtest.Unregistered(), messaging.IsUnregistered, errorutils.IsNotFound, 404},
		{"sender-id-mismatch", fcmtest.SenderIDMismatch(), messaging.IsSenderIDMismatch, errorutils.IsPermissionDenied, 403},
		{"invalid-registration", fcmtest.InvalidRegistration(), messaging.IsInvalidArgument, errorutils.IsInvalidArgument, 400},
		{"quota-exceeded", fcmtest.QuotaExceeded(30 * time.Second), messaging.IsQuotaExceeded, errorutils.IsResourceExhausted, 429},
		{"internal", fcmtest.Internal(), messaging.IsInternal, errorutils.IsInternal, 500},
		{"third-party-auth", fcmtest.ThirdPartyAuthError(), messaging.IsThirdPartyAuthError, errorutils.IsUnauthenticated, 401},
	}
	all := []func(error) bool{messaging.IsUnregistered, messaging.IsSenderIDMismatch, messaging.IsInvalidArgument,
		messaging.IsQuotaExceeded, messaging.IsInternal, messaging.IsThirdPartyAuthError, messaging.IsUnavailable}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token := "tok-" + tc.name
			s.FailToken(token, tc.f)
			before := s.Stats().Requests
			_, err := c.mc.Send(ctx, dataMsg(token))
			if err == nil {
				t.Fatal("send succeeded")
			}
			if !tc.is(err) || !tc.status(err) {
				t.Fatalf("error %v not classified as %s", err, tc.name)
			}
			matches := 0
			for _, is := range all {
				if is(err) {
					matches++
				}
			}
			if matches != 1 {
				t.Fatalf("%d messaging.Is* functions matched %v", matches, err)
			}
			if err.Error() != tc.f.Message {
				t.Fatalf("message %q, want %q", err.Error(), tc.f.Message)
			}
			resp := errorutils.HTTPResponse(err)
			if resp == nil || resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != "application/json; charset=UTF-8" {
				t.Fatalf("response %+v", resp)
			}
			if tc.f.RetryAfter > 0 && resp.Header.Get("Retry-After") != "30" {
				t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
			if n := s.Stats().Requests - before; n != 1 {
				t.Fatalf("SDK made %d requests, want 1 (no retry)", n)
			}
		})
	}
	if len(s.Pushes()) != 0 {
		t.Fatalf("failed sends were recorded")
	}
}

func TestUnavailable(t *testing.T) {
	s, c := setup(t, "demo-project")

	// Once: the SDK's first retry (no delay) succeeds.
	f := fcmtest.Unavailable()
	f.Times = 1
	s.FailToken("fcm-registration-token", f)
	if _, err := c.mc.Send(ctxT(t, 10*time.Second), dataMsg("fcm-registration-token")); err != nil {
		t.Fatalf("send after one 503: %v", err)
	}
	st := s.Stats()
	if st.Requests != 2 || st.ByStatus["UNAVAILABLE"] != 1 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Forever: the SDK keeps retrying (0 s, 1 s, 2 s, 4 s) until the
	// context ends, and then returns the bare context error.
	s.FailToken("fcm-registration-token", fcmtest.Unavailable())
	start := time.Now()
	_, err := c.mc.Send(ctxT(t, 1500*time.Millisecond), dataMsg("fcm-registration-token"))
	if !errors.Is(err, context.DeadlineExceeded) || messaging.IsUnavailable(err) {
		t.Fatalf("error %v after %v", err, time.Since(start))
	}
	if n := s.Stats().ByStatus["UNAVAILABLE"] - 1; n < 2 {
		t.Fatalf("SDK made %d attempts, want at least 2", n)
	}

	// A raw request shows the FcmError detail the SDK would classify.
	resp := rawSend(t, s, c, "demo-project", `{"message":{"token":"fcm-registration-token"}}`)
	body := readBody(t, resp)
	if resp.StatusCode != 503 || !strings.Contains(body, `"errorCode": "UNAVAILABLE"`) {
		t.Fatalf("raw 503: %d %s", resp.StatusCode, body)
	}
}

func TestTimesAndFailAll(t *testing.T) {
	s, c := setup(t, "demo-project")
	ctx := ctxT(t, 10*time.Second)

	f := fcmtest.Unregistered()
	f.Times = 2
	s.FailToken("fcm-registration-token", f)
	for i := 0; i < 2; i++ {
		if _, err := c.mc.Send(ctx, dataMsg("fcm-registration-token")); !messaging.IsUnregistered(err) {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if _, err := c.mc.Send(ctx, dataMsg("fcm-registration-token")); err != nil {
		t.Fatalf("third send: %v", err)
	}

	internal := fcmtest.Internal()
	s.FailAll(&internal)
	s.FailToken("fcm-special-registration-token", fcmtest.Unregistered())
	if _, err := c.mc.Send(ctx, dataMsg("fcm-any-registration-token")); !messaging.IsInternal(err) {
		t.Fatalf("FailAll: %v", err)
	}
	if _, err := c.mc.Send(ctx, &messaging.Message{Topic: "news"}); !messaging.IsInternal(err) {
		t.Fatalf("FailAll on topic: %v", err)
	}
	if _, err := c.mc.Send(ctx, dataMsg("fcm-special-registration-token")); !messaging.IsUnregistered(err) {
		t.Fatalf("token failure should win over FailAll: %v", err)
	}
	s.FailAll(nil)
	if _, err := c.mc.Send(ctx, dataMsg("fcm-any-registration-token")); err != nil {
		t.Fatalf("after FailAll(nil): %v", err)
	}
	once := fcmtest.QuotaExceeded(0)
	once.Times = 1
	s.FailAll(&once)
	if _, err := c.mc.Send(ctx, dataMsg("fcm-any-registration-token")); !messaging.IsQuotaExceeded(err) {
		t.Fatalf("FailAll once: %v", err)
	}
	if _, err := c.mc.Send(ctx, dataMsg("fcm-any-registration-token")); err != nil {
		t.Fatalf("FailAll Times=1 not consumed: %v", err)
	}
	s.ClearFailures()
	if _, err := c.mc.Send(ctx, dataMsg("fcm-special-registration-token")); err != nil {
		t.Fatalf("after ClearFailures: %v", err)
	}
	// A Failure with only an ErrorCode gets FCM's status for it.
	s.FailToken("x", fcmtest.Failure{ErrorCode: fcmtest.ErrorCodeSenderIDMismatch})
	if _, err := c.mc.Send(ctx, dataMsg("x")); !messaging.IsSenderIDMismatch(err) || !errorutils.IsPermissionDenied(err) {
		t.Fatalf("ErrorCode-only failure: %v", err)
	}
}

// TestFailTokenRequests: the token endpoint throttles token requests, with
// a Retry-After, for as many requests as asked, then issues tokens again.
func TestFailTokenRequests(t *testing.T) {
	s := fcmtest.NewServer()
	defer s.Close()
	sa, err := s.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s, sa, "demo-project")
	s.FailTokenRequests(&fcmtest.TokenFailure{HTTPStatus: 429, RetryAfter: 3 * time.Second, Times: 1})
	_, err = c.creds.TokenSource.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != 429 || re.Response.Header.Get("Retry-After") != "3" || !bytes.Contains(re.Body, []byte(`"error": "rate_limit_exceeded"`)) {
		t.Fatalf("token request while throttled: %v, want 429 rate_limit_exceeded with Retry-After 3", err)
	}
	if _, err := c.creds.TokenSource.Token(); err != nil {
		t.Fatalf("token request once the failure was used up: %v", err)
	}
	if st := s.Stats(); st.TokenRequests != 2 || st.TokensIssued != 1 {
		t.Errorf("%d token requests and %d tokens issued, want 2 and 1", st.TokenRequests, st.TokensIssued)
	}
}

func TestBadAssertion(t *testing.T) {
	s := fcmtest.NewServer()
	defer s.Close()
	sa, err := s.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	// Same account, another private key.
	var f map[string]any
	if err := json.Unmarshal(sa, &f); err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	f["private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	forged, _ := json.Marshal(f)
	// An account the emulator never issued.
	f["client_email"] = "stranger@demo-project.iam.gserviceaccount.com"
	unknown, _ := json.Marshal(f)

	for name, key := range map[string][]byte{"other-key": forged, "unknown-account": unknown} {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, s, key, "demo-project")
			_, err := c.creds.TokenSource.Token()
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || !bytes.Contains(re.Body, []byte(`"error": "invalid_grant"`)) || re.Response.StatusCode != 400 {
				t.Fatalf("token error %v", err)
			}
			// The send fails: the SDK retries the transport error until the
			// context ends, and nothing reaches messages:send.
			if _, err := c.mc.Send(ctxT(t, 300*time.Millisecond), dataMsg("fcm-registration-token")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("send without a token: %v", err)
			}
		})
	}
	st := s.Stats()
	if st.TokensIssued != 0 || st.TokenRequests < 4 || st.Requests != 0 || len(s.Pushes()) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTokenEndpointClaims(t *testing.T) {
	s := fcmtest.NewServer()
	defer s.Close()
	sa, err := s.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Email string `json:"client_email"`
		Key   string `json:"private_key"`
		KeyID string `json:"private_key_id"`
	}
	if err := json.Unmarshal(sa, &f); err != nil {
		t.Fatal(err)
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(f.Key))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	sign := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = f.KeyID
		str, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return str
	}
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": f.Email, "scope": fcmScope, "aud": s.TokenURL(), "iat": now, "exp": now + 3600}
	}
	post := func(grant, assertion string) (int, map[string]any) {
		form := url.Values{"grant_type": {grant}, "assertion": {assertion}}
		resp, err := s.Client().PostForm(s.TokenURL(), form)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(readBody(t, resp)), &out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}
	const grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

	code, out := post(grant, sign(good()))
	if code != 200 || out["token_type"] != "Bearer" || out["expires_in"] != float64(3600) ||
		!strings.HasPrefix(out["access_token"].(string), "ya29.") {
		t.Fatalf("good assertion: %d %v", code, out)
	}

	mod := func(k string, v any) jwt.MapClaims {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	bad := map[string]struct {
		grant, assertion, err string
	}{
		"expired":        {grant, sign(mod("exp", now-10)), "invalid_grant"},
		"too-long-lived": {grant, sign(mod("exp", now+3601)), "invalid_grant"},
		"future-iat":     {grant, sign(jwt.MapClaims{"iss": f.Email, "scope": fcmScope, "aud": s.TokenURL(), "iat": now + 3600, "exp": now + 4000}), "invalid_grant"},
		"wrong-aud":      {grant, sign(mod("aud", "https://oauth2.googleapis.com/token")), "invalid_grant"},
		"unknown-iss":    {grant, sign(mod("iss", "x@demo-project.iam.gserviceaccount.com")), "invalid_grant"},
		"no-scope":       {grant, sign(mod("scope", nil)), "invalid_scope"},
		"garbage":        {grant, "not.a.jwt", "invalid_grant"},
		"tampered":       {grant, sign(good()) + "x", "invalid_grant"},
		"wrong-grant":    {"client_credentials", sign(good()), "unsupported_grant_type"},
		"no-assertion":   {grant, "", "invalid_request"},
	}
	for name, tc := range bad {
		code, out := post(tc.grant, tc.assertion)
		if code != 400 || out["error"] != tc.err || out["error_description"] == "" {
			t.Errorf("%s: %d %v", name, code, out)
		}
	}
	if st := s.Stats(); st.TokensIssued != 1 {
		t.Fatalf("tokens issued %d", st.TokensIssued)
	}
}

func TestAuthErrors(t *testing.T) {
	s, c := setup(t, "demo-project")
	ctx := ctxT(t, 10*time.Second)
	if _, err := c.mc.Send(ctx, dataMsg("fcm-registration-token")); err != nil {
		t.Fatal(err)
	}

	for name, authz := range map[string]string{"missing": "", "unknown": "Bearer ya29.nope", "basic": "Basic Zm9vOmJhcg=="} {
		req, _ := http.NewRequest("POST", s.Endpoint()+"/projects/demo-project/messages:send", strings.NewReader(`{"message":{"token":"fcm-registration-token"}}`))
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		st := decodeStatus(t, resp)
		if resp.StatusCode != 401 || st.Status != "UNAUTHENTICATED" || len(st.Details) != 0 {
			t.Errorf("%s: %d %+v", name, resp.StatusCode, st)
		}
	}

	// A revoked (expired) token: the SDK sees 401 without an FcmError detail.
	s.ExpireTokens()
	_, err := c.mc.Send(ctx, dataMsg("fcm-registration-token"))
	if !errorutils.IsUnauthenticated(err) || messaging.IsThirdPartyAuthError(err) {
		t.Fatalf("expired token: %v", err)
	}
}

func TestInsufficientScope(t *testing.T) {
	s := fcmtest.NewServer()
	defer s.Close()
	sa, err := s.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)

	// Google issues the token, but FCM refuses it for sending: 403
	// PERMISSION_DENIED with an ErrorInfo detail and no FcmError one.
	c := newScopedClient(t, s, sa, "demo-project", "https://www.googleapis.com/auth/userinfo.email")
	_, err = c.mc.Send(ctx, dataMsg("fcm-registration-token"))
	if !errorutils.IsPermissionDenied(err) || messaging.IsSenderIDMismatch(err) ||
		err.Error() != "Request had insufficient authentication scopes." {
		t.Fatalf("token without the messaging scope: %v", err)
	}
	res := errorutils.HTTPResponse(err)
	if res == nil || res.StatusCode != 403 || !strings.Contains(res.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("token without the messaging scope: response %v", res)
	}
	if len(s.Pushes()) != 0 {
		t.Fatal("recorded a push sent with a token lacking the messaging scope")
	}

	// Either scope that covers FCM serves, among others.
	for _, scopes := range [][]string{
		{"https://www.googleapis.com/auth/cloud-platform"},
		{"https://www.googleapis.com/auth/userinfo.email", fcmScope},
	} {
		c := newScopedClient(t, s, sa, "demo-project", scopes...)
		if _, err := c.mc.Send(ctx, dataMsg("fcm-registration-token")); err != nil {
			t.Fatalf("scopes %v: %v", scopes, err)
		}
	}
	if n := len(s.Pushes()); n != 2 {
		t.Fatalf("%d pushes recorded, want 2", n)
	}
}

func TestWrongProject(t *testing.T) {
	s := fcmtest.NewServer()
	defer s.Close()
	sa, err := s.AddServiceAccount("project-a")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s, sa, "project-b")
	_, err = c.mc.Send(ctxT(t, 10*time.Second), dataMsg("fcm-registration-token"))
	// As FCM answers it: the service account has no permission on the
	// project, with no FcmError detail (SENDER_ID_MISMATCH is about a
	// registration token of another project).
	want := "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/project-b' (or it may not exist)."
	if !errorutils.IsPermissionDenied(err) || messaging.IsSenderIDMismatch(err) || err.Error() != want {
		t.Fatalf("wrong project: %v", err)
	}
	if res := errorutils.HTTPResponse(err); res == nil || res.StatusCode != 403 {
		t.Fatalf("wrong project: response %v", res)
	}
	if len(s.Pushes()) != 0 {
		t.Fatal("recorded a push for the wrong project")
	}
}

func TestSDKValidationErrors(t *testing.T) {
	s, c := setup(t, "demo-project")
	ctx := ctxT(t, 10*time.Second)

	// "from", "message_type" and any key starting with "google" or "gcm".
	for _, key := range []string{"from", "gcm", "message_type", "collapse_key", "google.x", "google_sent_time", "googleFoo",
		"gcm.notification.title", "gcmx"} {
		_, err := c.mc.Send(ctx, &messaging.Message{Token: "fcm-registration-token", Data: map[string]string{key: "v"}})
		if !messaging.IsInvalidArgument(err) || !errorutils.IsInvalidArgument(err) {
			t.Errorf("reserved key %q: %v", key, err)
		}
	}
	// android.data is checked as well.
	_, err := c.mc.Send(ctx, &messaging.Message{Token: "fcm-registration-token", Android: &messaging.AndroidConfig{Data: map[string]string{"from": "x"}}})
	if !messaging.IsInvalidArgument(err) {
		t.Errorf("reserved android key: %v", err)
	}

	// Payload: keys plus values up to 4096 bytes pass, one more byte fails.
	_, err = c.mc.Send(ctx, &messaging.Message{Token: "fcm-registration-token", Data: map[string]string{"k": strings.Repeat("x", 4095)}})
	if err != nil {
		t.Errorf("4096-byte payload: %v", err)
	}
	_, err = c.mc.Send(ctx, &messaging.Message{Token: "fcm-registration-token", Data: map[string]string{"k": strings.Repeat("x", 4096)}})
	if !messaging.IsInvalidArgument(err) || err.Error() != "Message is too big" {
		t.Errorf("oversized payload: %v", err)
	}

	ttl := fcmtest.MaxTTL + time.Second
	_, err = c.mc.Send(ctx, &messaging.Message{Token: "fcm-registration-token", Android: &messaging.AndroidConfig{TTL: &ttl}})
	if !errorutils.IsInvalidArgument(err) {
		t.Errorf("ttl over 4 weeks: %v", err)
	}
	ttl = time.Second + 500*time.Millisecond
	if _, err = c.mc.Send(ctx, &messaging.Message{Token: "fcm-registration-token", Android: &messaging.AndroidConfig{TTL: &ttl, Priority: "high"}}); err != nil {
		t.Errorf("fractional ttl: %v", err)
	}
	if n := len(s.Pushes()); n != 2 {
		t.Fatalf("recorded %d pushes, want 2", n)
	}
}

type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Details []struct {
		Type            string `json:"@type"`
		ErrorCode       string `json:"errorCode"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

func decodeStatus(t *testing.T, resp *http.Response) rpcStatus {
	t.Helper()
	var body struct {
		Error rpcStatus `json:"error"`
	}
	raw := readBody(t, resp)
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		t.Fatalf("body %q: %v", raw, err)
	}
	return body.Error
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func rawSend(t *testing.T, s *fcmtest.Server, c *client, project, body string) *http.Response {
	t.Helper()
	tok, err := c.creds.TokenSource.Token()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", s.Endpoint()+"/projects/"+project+"/messages:send", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestRawValidation(t *testing.T) {
	s, c := setup(t, "demo-project")
	cases := []struct {
		name, body string
		ok         bool
		fcmCode    string // FcmError detail expected, "" = none
		field      string // BadRequest field expected
	}{
		{"plain", `{"message":{"token":"fcm-registration-token","data":{"a":"1"}}}`, true, "", ""},
		{"upper-priority", `{"message":{"token":"fcm-registration-token","android":{"priority":"HIGH","ttl":"0s"}}}`, true, "", ""},
		{"camel-case", `{"validateOnly":false,"message":{"token":"fcm-registration-token","android":{"collapseKey":"c","directBootOk":true}}}`, true, "", ""},
		{"max-ttl", `{"message":{"token":"fcm-registration-token","android":{"ttl":"2419200s"}}}`, true, "", ""},
		{"nine-digit-ttl", `{"message":{"token":"fcm-registration-token","android":{"ttl":"1.123456789s"}}}`, true, "", ""},
		{"non-string-data", `{"message":{"token":"fcm-registration-token","data":{"a":"1","b":2}}}`, false, "", "message.data[1].value"},
		{"data-not-object", `{"message":{"token":"fcm-registration-token","data":["a"]}}`, false, "", "message.data"},
		{"reserved-google", `{"message":{"token":"fcm-registration-token","data":{"google.c.a":"1"}}}`, false, "INVALID_ARGUMENT", "message.data"},
		{"no-target", `{"message":{"data":{"a":"1"}}}`, false, "INVALID_ARGUMENT", "message"},
		{"two-targets", `{"message":{"token":"fcm-registration-token","topic":"x"}}`, false, "", "message"},
		{"bad-topic", `{"message":{"topic":"/topics/x"}}`, false, "INVALID_ARGUMENT", "message.topic"},
		{"bad-priority", `{"message":{"token":"fcm-registration-token","android":{"priority":"urgent"}}}`, false, "", "message.android.priority"},
		{"ttl-no-unit", `{"message":{"token":"fcm-registration-token","android":{"ttl":"30"}}}`, false, "", "message.android.ttl"},
		{"ttl-ten-digits", `{"message":{"token":"fcm-registration-token","android":{"ttl":"1.1234567890s"}}}`, false, "", "message.android.ttl"},
		{"ttl-negative", `{"message":{"token":"fcm-registration-token","android":{"ttl":"-1s"}}}`, false, "", "message.android.ttl"},
		{"ttl-too-long", `{"message":{"token":"fcm-registration-token","android":{"ttl":"2419200.5s"}}}`, false, "INVALID_ARGUMENT", "message.android.ttl"},
		{"unknown-field", `{"message":{"token":"fcm-registration-token","priority":"high"}}`, false, "", "message"},
		{"unknown-android-field", `{"message":{"token":"fcm-registration-token","android":{"prio":"high"}}}`, false, "", "message.android"},
		{"unknown-after-nested", `{"message":{"android":{"data":{"x":"}],"}},"token":"fcm-registration-token","bogus":[1,{"a":"b"}]}}`, false, "", "message"},
		{"escaped-key", `{"message":{"tok\u0065n":"fcm-registration-token","data":{"a\"b":"1"}}}`, true, "", ""},
		{"wrong-case-key", `{"message":{"Token":"t"}}`, false, "", "message"},
		{"unknown-top-level", `{"message":{"token":"fcm-registration-token"},"dry_run":true}`, false, "", ""},
		{"token-not-string", `{"message":{"token":5}}`, false, "", "message.token"},
		{"validate-only-not-bool", `{"validate_only":"yes","message":{"token":"fcm-registration-token"}}`, false, "", "validate_only"},
		{"android-not-object", `{"message":{"token":"fcm-registration-token","android":true}}`, false, "", "message.android"},
		{"no-message", `{}`, false, "INVALID_ARGUMENT", "message"},
		{"syntax", `{"message":`, false, "", ""},
		{"oversized", `{"message":{"token":"fcm-registration-token","data":{"k":"` + strings.Repeat("x", 5000) + `"}}}`, false, "INVALID_ARGUMENT", "message"},
		// Data of 2048 bytes (key and value) is the most a topic message carries; a token message carries 4096.
		{"topic-at-limit", `{"message":{"topic":"news","data":{"k":"` + strings.Repeat("x", 2047) + `"}}}`, true, "", ""},
		{"topic-oversized", `{"message":{"topic":"news","data":{"k":"` + strings.Repeat("x", 2048) + `"}}}`, false, "INVALID_ARGUMENT", "message"},
		{"token-over-topic-limit", `{"message":{"token":"fcm-registration-token","data":{"k":"` + strings.Repeat("x", 4095) + `"}}}`, true, "", ""},
	}
	messages := map[string]string{ // exact error messages, where checked
		"non-string-data":        "Invalid value at 'message.data[1].value' (TYPE_STRING), 2",
		"token-not-string":       "Invalid value at 'message.token' (TYPE_STRING), 5",
		"validate-only-not-bool": `Invalid value at 'validate_only' (TYPE_BOOL), "yes"`,
		"android-not-object":     "Invalid value at 'message.android' (type.googleapis.com/google.firebase.fcm.v1.AndroidConfig), true",
		"oversized":              "Message is too big",
		"topic-oversized":        "Message is too big",
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawSend(t, s, c, "demo-project", tc.body)
			if tc.ok {
				if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"name": "projects/demo-project/messages/`) {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
				t.Fatalf("content type %q", ct)
			}
			st := decodeStatus(t, resp)
			if resp.StatusCode != 400 || st.Code != 400 || st.Status != "INVALID_ARGUMENT" || st.Message == "" {
				t.Fatalf("%d %+v", resp.StatusCode, st)
			}
			var gotCode, gotField string
			var badRequest bool
			for _, d := range st.Details {
				switch d.Type {
				case "type.googleapis.com/google.firebase.fcm.v1.FcmError":
					gotCode = d.ErrorCode
				case "type.googleapis.com/google.rpc.BadRequest":
					badRequest = true
					if len(d.FieldViolations) > 0 {
						gotField = d.FieldViolations[0].Field
					}
				}
			}
			if want, ok := messages[tc.name]; ok && st.Message != want {
				t.Fatalf("message %q, want %q", st.Message, want)
			}
			if gotCode != tc.fcmCode || !badRequest || gotField != tc.field {
				t.Fatalf("details: fcm %q field %q badRequest %v; %+v", gotCode, gotField, badRequest, st)
			}
		})
	}
}

func TestMalformedRegistrationToken(t *testing.T) {
	s, c := setup(t, "demo-project")
	for _, tok := range []string{"x", "not a token", "tok\u00e9n/with/slashes/and-more-chars", strings.Repeat("a", fcmtest.MinTokenLength-1)} {
		resp := rawSend(t, s, c, "demo-project", `{"message":{"token":"`+tok+`","data":{"a":"1"}}}`)
		st := decodeStatus(t, resp)
		if resp.StatusCode != 400 || st.Status != "INVALID_ARGUMENT" || st.Message != "The registration token is not a valid FCM registration token" ||
			len(st.Details) == 0 || st.Details[0].ErrorCode != "INVALID_ARGUMENT" {
			t.Errorf("token %q: %d %+v", tok, resp.StatusCode, st)
		}
	}
	// The SDK sees an invalid argument about the registration token.
	_, err := c.mc.Send(ctxT(t, 10*time.Second), dataMsg("x"))
	if !messaging.IsInvalidArgument(err) || !strings.Contains(err.Error(), "registration token") {
		t.Errorf("SDK send to token \"x\": %v", err)
	}
	// Tokens as FCM issues them pass.
	for _, tok := range []string{strings.Repeat("a", fcmtest.MinTokenLength), "fGcZ1x2Q:APA91bH-Ol_9zQ"} {
		if _, err := c.mc.Send(ctxT(t, 10*time.Second), dataMsg(tok)); err != nil {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	if n := len(s.Pushes()); n != 2 {
		t.Fatalf("%d pushes recorded, want 2", n)
	}

	// Without the check, any token goes.
	s, c = setup(t, "demo-project", fcmtest.WithTokenCheck(false))
	if _, err := c.mc.Send(ctxT(t, 10*time.Second), dataMsg("x")); err != nil {
		t.Fatalf("token \"x\" without the check: %v", err)
	}
	if p := s.Pushes(); len(p) != 1 || p[0].Token != "x" {
		t.Fatalf("pushes %+v", p)
	}
}

func TestValidateOnly(t *testing.T) {
	s, c := setup(t, "demo-project")
	id, err := c.mc.SendDryRun(ctxT(t, 10*time.Second), dataMsg("fcm-registration-token"))
	if err != nil || id == "" {
		t.Fatalf("dry run: %q %v", id, err)
	}
	if len(s.Pushes()) != 0 {
		t.Fatal("dry run recorded as delivered")
	}
	if d := s.DryRuns(); len(d) != 1 || !d[0].ValidateOnly || d[0].Token != "fcm-registration-token" {
		t.Fatalf("dry runs %+v", d)
	}
	if st := s.Stats(); st.DryRuns != 1 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
	s.FailToken("fcm-registration-token", fcmtest.Unregistered())
	if _, err := c.mc.SendDryRun(ctxT(t, 10*time.Second), dataMsg("fcm-registration-token")); !messaging.IsUnregistered(err) {
		t.Fatalf("dry run of an unregistered token: %v", err)
	}
}

func TestWaitForPushes(t *testing.T) {
	s, c := setup(t, "demo-project")
	go func() {
		for i := 0; i < 3; i++ {
			time.Sleep(20 * time.Millisecond)
			_, _ = c.mc.Send(context.Background(), dataMsg("fcm-registration-token"))
		}
	}()
	pushes, err := s.WaitForPushes(ctxT(t, 10*time.Second), 3)
	if err != nil || len(pushes) < 3 {
		t.Fatalf("wait: %d %v", len(pushes), err)
	}
	pushes, err = s.WaitForPushes(ctxT(t, 50*time.Millisecond), 4)
	if !errors.Is(err, context.DeadlineExceeded) || len(pushes) != 3 {
		t.Fatalf("wait past timeout: %d %v", len(pushes), err)
	}
	s.Reset()
	if len(s.Pushes()) != 0 {
		t.Fatal("Reset kept pushes")
	}
}

func TestOnPushWithoutRecording(t *testing.T) {
	var n atomic.Int64
	var mu sync.Mutex
	var last fcmtest.Push
	s, c := setup(t, "demo-project", fcmtest.WithRecord(false), fcmtest.WithOnPush(func(p fcmtest.Push) {
		n.Add(1)
		mu.Lock()
		last = p
		mu.Unlock()
	}))
	ctx := ctxT(t, 10*time.Second)
	for i := 0; i < 5; i++ {
		if _, err := c.mc.Send(ctx, dataMsg("fcm-registration-token")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.mc.SendDryRun(ctx, dataMsg("fcm-registration-token")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n.Load() != 5 || last.Data["seq"] != "42" || len(s.Pushes()) != 0 {
		t.Fatalf("onPush %d, last %+v, recorded %d", n.Load(), last, len(s.Pushes()))
	}
	if _, err := s.WaitForPushes(ctx, 1); err == nil {
		t.Fatal("WaitForPushes without recording should fail")
	}
}

func TestControlAPI(t *testing.T) {
	s, c := setup(t, "demo-project")
	ctx := ctxT(t, 10*time.Second)
	hc := s.Client()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(t, resp)
	}

	if code, _ := do("PUT", "/_emulator/failures/fcm-registration-token%3A1", `{"errorCode":"UNREGISTERED","times":1}`); code != 204 {
		t.Fatalf("put token failure: %d", code)
	}
	if _, err := c.mc.Send(ctx, dataMsg("fcm-registration-token:1")); !messaging.IsUnregistered(err) {
		t.Fatalf("token failure via API: %v", err)
	}
	if _, err := c.mc.Send(ctx, dataMsg("fcm-registration-token:1")); err != nil {
		t.Fatalf("times=1 via API: %v", err)
	}

	if code, _ := do("PUT", "/_emulator/failures", `{"httpStatus":429,"status":"RESOURCE_EXHAUSTED","errorCode":"QUOTA_EXCEEDED","retryAfter":"10s"}`); code != 204 {
		t.Fatalf("put FailAll: %d", code)
	}
	_, err := c.mc.Send(ctx, dataMsg("fcm-other-registration-token"))
	if !messaging.IsQuotaExceeded(err) || errorutils.HTTPResponse(err).Header.Get("Retry-After") != "10" {
		t.Fatalf("FailAll via API: %v", err)
	}
	if code, _ := do("PUT", "/_emulator/failures", `null`); code != 204 {
		t.Fatalf("clear FailAll: %d", code)
	}
	if _, err := c.mc.Send(ctx, dataMsg("fcm-other-registration-token")); err != nil {
		t.Fatalf("after null FailAll: %v", err)
	}
	do("PUT", "/_emulator/failures/fcm-a-registration-token", `{"errorCode":"INTERNAL"}`)
	if code, _ := do("DELETE", "/_emulator/failures", ""); code != 204 {
		t.Fatalf("delete failures: %d", code)
	}
	if _, err := c.mc.Send(ctx, dataMsg("fcm-a-registration-token")); err != nil {
		t.Fatalf("after DELETE failures: %v", err)
	}
	if code, body := do("PUT", "/_emulator/failures/fcm-a-registration-token", `{"httpStatus":200}`); code != 400 || !strings.Contains(body, "error") {
		t.Fatalf("invalid failure accepted: %d %s", code, body)
	}

	code, body := do("GET", "/_emulator/pushes", "")
	var pushes []fcmtest.Push
	if err := json.Unmarshal([]byte(body), &pushes); code != 200 || err != nil || len(pushes) != 3 ||
		pushes[0].Token != "fcm-registration-token:1" || pushes[0].Data["type"] != "sync" || pushes[0].ProtoMajor != 2 {
		t.Fatalf("GET pushes: %d %v %s", code, err, body)
	}
	code, body = do("GET", "/_emulator/stats", "")
	var st fcmtest.Stats
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.Accepted != 3 || st.Rejected != 2 ||
		st.ByStatus["NOT_FOUND"] != 1 || st.ByStatus["RESOURCE_EXHAUSTED"] != 1 || st.TokensIssued != 1 || st.Connections < 1 {
		t.Fatalf("GET stats: %d %v %s", code, err, body)
	}
	if code, _ := do("DELETE", "/_emulator/pushes", ""); code != 204 || len(s.Pushes()) != 0 {
		t.Fatalf("DELETE pushes: %d", code)
	}
	if code, body := do("GET", "/_emulator/pushes", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("GET pushes after reset: %d %s", code, body)
	}
	if code, _ := do("GET", "/_emulator/nope", ""); code != 404 {
		t.Fatalf("unknown control path: %d", code)
	}
}

func TestOptions(t *testing.T) {
	s := fcmtest.NewServer(fcmtest.WithAddr("127.0.0.1:0"), fcmtest.WithHosts("fcm.example.test"),
		fcmtest.WithTokenLifetime(300*time.Millisecond), fcmtest.WithMaxConcurrentStreams(100))
	defer s.Close()
	// The certificate covers the extra host name.
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: s.RootCAs(), ServerName: "fcm.example.test"},
		ForceAttemptHTTP2: true,
	}}
	resp, err := hc.Get(s.URL + "/_emulator/stats")
	if err != nil {
		t.Fatal(err)
	}
	if readBody(t, resp); resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("%d over %s", resp.StatusCode, resp.Proto)
	}
	// Short-lived tokens expire.
	sa, err := s.AddServiceAccount("p")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s, sa, "p")
	if resp := rawSend(t, s, c, "p", `{"message":{"token":"fcm-registration-token"}}`); resp.StatusCode != 200 {
		t.Fatalf("fresh token: %d %s", resp.StatusCode, readBody(t, resp))
	} else {
		readBody(t, resp)
	}
	tok, _ := c.creds.TokenSource.Token()
	time.Sleep(400 * time.Millisecond)
	req, _ := http.NewRequest("POST", s.Endpoint()+"/projects/p/messages:send", strings.NewReader(`{"message":{"token":"fcm-registration-token"}}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if st := decodeStatus(t, resp); resp.StatusCode != 401 || st.Status != "UNAUTHENTICATED" {
		t.Fatalf("expired token: %d %+v", resp.StatusCode, st)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	s := fcmtest.NewServer(fcmtest.WithHosts("fcm.example.test"))
	s.Close()
	s.Close()
	if _, err := s.Client().Get(s.URL + "/_emulator/stats"); err == nil {
		t.Fatal("server still answering after Close")
	}
}

func BenchmarkSend(b *testing.B) {
	s, c := setup(b, "bench-project", fcmtest.WithRecord(false))
	ctx := context.Background()
	if _, err := c.mc.Send(ctx, dataMsg("fcm-warm-up-registration-token")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		msg := dataMsg("fcm-bench-registration-token")
		for pb.Next() {
			if _, err := c.mc.Send(ctx, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	_ = s
}

// BenchmarkHandler measures the emulator's own cost per message, without
// TLS, HTTP/2 or the SDK.
func BenchmarkHandler(b *testing.B) {
	s, c := setup(b, "bench-project", fcmtest.WithRecord(false))
	tok, err := c.creds.TokenSource.Token()
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"message":{"data":{"seq":"42","type":"sync"},"android":{"collapse_key":"sync","priority":"normal","ttl":"1800s"},"token":"fcm-bench-registration-token"}}`)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/projects/bench-project/messages:send", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
