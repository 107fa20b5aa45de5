//lint:file-ignore SA1019 apns2's constructors build an x/net http2.Transport; the tests drive apns2 clients as they come.

package apnstest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pushsync/pushsync/internal/emutls"
)

const (
	teamID      = "TEAM123456"
	keyID       = "KEY1234567"
	topic       = "com.example.app"
	deviceToken = "aff0c63d9eaa63ad161bafee732d5bc2c31f66d552054718ff19ce314371e5d0"
	bgPayload   = `{"aps":{"content-available":1},"k":"v"}`
)

// newAuthKey makes a fresh P-256 key the way a .p8 file holds it and loads
// it with apns2's own loader.
func newAuthKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	key, err := token.AuthKeyFromBytes(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// trust makes an apns2 client talk to s.
func trust(c *apns2.Client, s *Server) *apns2.Client {
	tr := c.HTTPClient.Transport.(*http2.Transport)
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.RootCAs = s.RootCAs()
	c.Host = s.URL
	return c
}

func tokenClient(t *testing.T, s *Server, key *ecdsa.PrivateKey, team, kid string) *apns2.Client {
	t.Helper()
	c := trust(apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: kid, TeamID: team}), s)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// newServer starts a server with one registered token key and returns it
// with a client using that key.
func newServer(t *testing.T, opts ...Option) (*Server, *apns2.Client) {
	t.Helper()
	s := NewServer(opts...)
	t.Cleanup(s.Close)
	key := newAuthKey(t)
	s.AddTokenKey(teamID, keyID, &key.PublicKey, topic)
	return s, tokenClient(t, s, key, teamID, keyID)
}

func background(tok string) *apns2.Notification {
	return &apns2.Notification{
		DeviceToken: tok,
		Topic:       topic,
		PushType:    apns2.PushTypeBackground,
		Priority:    apns2.PriorityLow,
		Payload:     []byte(bgPayload),
	}
}

func push(t *testing.T, c *apns2.Client, n *apns2.Notification) *apns2.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.PushWithContext(ctx, n)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return res
}

func wantAnswer(t *testing.T, res *apns2.Response, status int, reason string) {
	t.Helper()
	if res.StatusCode != status || res.Reason != reason {
		t.Fatalf("answer = %d %q, want %d %q", res.StatusCode, res.Reason, status, reason)
	}
	if !isUUID(res.ApnsID) {
		t.Fatalf("apns-id %q is not a UUID", res.ApnsID)
	}
}

func TestTokenPushAcceptedAndRecorded(t *testing.T) {
	s, c := newServer(t)
	exp := time.Now().Add(30 * time.Minute).Truncate(time.Second)
	n := background(deviceToken)
	n.Expiration = exp
	n.CollapseID = "sync"
	res := push(t, c, n)
	wantAnswer(t, res, http.StatusOK, "")
	if res.ApnsID != strings.ToLower(res.ApnsID) {
		t.Errorf("generated apns-id %q is not lower case", res.ApnsID)
	}
	if res.ApnsUniqueID != "" {
		t.Errorf("production answer has apns-unique-id %q", res.ApnsUniqueID)
	}

	pushes := s.Pushes()
	if len(pushes) != 1 {
		t.Fatalf("recorded %d pushes, want 1", len(pushes))
	}
	p := pushes[0]
	want := Push{
		ApnsID: res.ApnsID, DeviceToken: deviceToken, Topic: topic, PushType: "background",
		CollapseID: "sync", Priority: 5, Expiration: exp.Unix(), Environment: EnvironmentProduction,
		Auth: AuthToken, TeamID: teamID, KeyID: keyID,
	}
	got := p
	got.Payload, got.Header, got.ReceivedAt = nil, nil, time.Time{}
	if !equalPush(got, want) {
		t.Errorf("push = %+v\nwant   %+v", got, want)
	}
	if string(p.Payload) != bgPayload {
		t.Errorf("payload = %s, want %s", p.Payload, bgPayload)
	}
	for k, v := range map[string]string{
		"Apns-Push-Type":   "background",
		"Apns-Priority":    "5",
		"Apns-Topic":       topic,
		"Apns-Collapse-Id": "sync",
		"Content-Type":     "application/json; charset=utf-8",
	} {
		if got := p.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if !strings.HasPrefix(p.Header.Get("Authorization"), "bearer ey") {
		t.Errorf("authorization = %q", p.Header.Get("Authorization"))
	}
	if time.Since(p.ReceivedAt) > time.Minute {
		t.Errorf("received at %v", p.ReceivedAt)
	}

	// A given apns-id is echoed.
	n.ApnsID = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
	if res := push(t, c, n); res.ApnsID != n.ApnsID {
		t.Errorf("apns-id = %q, want %q", res.ApnsID, n.ApnsID)
	}
}

func equalPush(a, b Push) bool {
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	return bytes.Equal(aj, bj)
}

// signedJWT builds a provider token by hand.
func signedJWT(t *testing.T, key *ecdsa.PrivateKey, team, kid string, iat int64) string {
	t.Helper()
	tok := &jwt.Token{
		Header: map[string]any{"alg": "ES256", "kid": kid},
		Claims: jwt.MapClaims{"iss": team, "iat": iat},
		Method: jwt.SigningMethodES256,
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenAuthErrors(t *testing.T) {
	s := NewServer()
	t.Cleanup(s.Close)
	key := newAuthKey(t)
	s.AddTokenKey(teamID, keyID, &key.PublicKey, topic)
	other := newAuthKey(t)

	tests := []struct {
		name       string
		key        *ecdsa.PrivateKey
		team, kid  string
		bearer     string // hand-made token, if set
		topic      string
		wantStatus int
		wantReason string
	}{
		{"ok", key, teamID, keyID, "", topic, 200, ""},
		{"wrong key", other, teamID, keyID, "", topic, 403, "InvalidProviderToken"},
		{"unknown key id", key, teamID, "OTHERKEY00", "", topic, 403, "InvalidProviderToken"},
		{"unknown team", key, "OTHERTEAM0", keyID, "", topic, 403, "InvalidProviderToken"},
		{"expired", key, teamID, keyID, signedJWT(t, key, teamID, keyID, time.Now().Add(-2*time.Hour).Unix()), topic, 403, "ExpiredProviderToken"},
		{"expired and wrong key", other, teamID, keyID, signedJWT(t, other, teamID, keyID, time.Now().Add(-2*time.Hour).Unix()), topic, 403, "InvalidProviderToken"},
		{"not yet an hour old", key, teamID, keyID, signedJWT(t, key, teamID, keyID, time.Now().Add(-59*time.Minute).Unix()), topic, 200, ""},
		{"wrong algorithm", key, teamID, keyID, "eyJhbGciOiJIUzI1NiIsImtpZCI6IktFWTEyMzQ1NjcifQ.eyJpc3MiOiJURUFNMTIzNDU2IiwiaWF0IjoxfQ.c2ln", topic, 403, "InvalidProviderToken"},
		{"unknown topic", key, teamID, keyID, "", "com.example.other", 400, "TopicDisallowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := &token.Token{AuthKey: tt.key, KeyID: tt.kid, TeamID: tt.team}
			if tt.bearer != "" {
				tok.Bearer, tok.IssuedAt = tt.bearer, time.Now().Unix()
			}
			c := trust(apns2.NewTokenClient(tok), s)
			defer c.CloseIdleConnections()
			n := background(deviceToken)
			n.Topic = tt.topic
			wantAnswer(t, push(t, c, n), tt.wantStatus, tt.wantReason)
		})
	}
}

func TestReplacedKeyInvalidatesCachedTokens(t *testing.T) {
	s, c := newServer(t)
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "")
	s.AddTokenKey(teamID, keyID, &newAuthKey(t).PublicKey, topic)
	wantAnswer(t, push(t, c, background(deviceToken)), 403, "InvalidProviderToken")
}

func TestValidationThroughApns2(t *testing.T) {
	_, c := newServer(t)
	tests := []struct {
		name       string
		edit       func(*apns2.Notification)
		wantStatus int
		wantReason string
	}{
		{"payload 4096 bytes", func(n *apns2.Notification) { n.Payload = padded(4096) }, 200, ""},
		{"payload 4097 bytes", func(n *apns2.Notification) { n.Payload = padded(4097) }, 413, "PayloadTooLarge"},
		{"voip payload 5120 bytes", func(n *apns2.Notification) {
			n.PushType, n.Priority, n.Payload = apns2.PushTypeVOIP, 10, padded(5120)
		}, 200, ""},
		{"voip payload 5121 bytes", func(n *apns2.Notification) {
			n.PushType, n.Priority, n.Payload = apns2.PushTypeVOIP, 10, padded(5121)
		}, 413, "PayloadTooLarge"},
		{"short device token", func(n *apns2.Notification) { n.DeviceToken = "abcd" }, 400, "BadDeviceToken"},
		{"non-hex device token", func(n *apns2.Notification) { n.DeviceToken = strings.Repeat("zz", 32) }, 400, "BadDeviceToken"},
		{"upper-case device token", func(n *apns2.Notification) { n.DeviceToken = strings.ToUpper(deviceToken) }, 200, ""},
		{"background at priority 10", func(n *apns2.Notification) { n.Priority = apns2.PriorityHigh }, 400, "BadPriority"},
		{"alert at priority 10", func(n *apns2.Notification) { n.PushType, n.Priority = apns2.PushTypeAlert, 10 }, 200, ""},
		{"priority 1", func(n *apns2.Notification) { n.Priority = 1 }, 200, ""},
		{"priority 7", func(n *apns2.Notification) { n.Priority = 7 }, 400, "BadPriority"},
		{"unknown push type", func(n *apns2.Notification) { n.PushType = "silent" }, 400, "InvalidPushType"},
		{"collapse id 64 bytes", func(n *apns2.Notification) { n.CollapseID = strings.Repeat("c", 64) }, 200, ""},
		{"collapse id 65 bytes", func(n *apns2.Notification) { n.CollapseID = strings.Repeat("c", 65) }, 400, "BadCollapseId"},
		{"apns-id not a UUID", func(n *apns2.Notification) { n.ApnsID = "not-a-uuid" }, 400, "BadMessageId"},
		{"past expiration", func(n *apns2.Notification) { n.Expiration = time.Unix(1, 0) }, 200, ""},
		{"no topic", func(n *apns2.Notification) { n.Topic = "" }, 400, "MissingTopic"},
		{"payload without aps", func(n *apns2.Notification) { n.Payload = []byte(`{"k":"v"}`) }, 400, ReasonBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := background(deviceToken)
			tt.edit(n)
			wantAnswer(t, push(t, c, n), tt.wantStatus, tt.wantReason)
		})
	}
}

// padded returns a valid background payload of exactly n bytes.
func padded(n int) []byte {
	const head, tail = `{"aps":{"content-available":1},"pad":"`, `"}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

// h2Client is a plain HTTP/2 client trusting s, for requests apns2 cannot make.
func h2Client(t *testing.T, s *Server, http1 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.RootCAs()}}
	tr.Protocols = new(http.Protocols)
	if http1 {
		tr.Protocols.SetHTTP1(true)
	} else {
		tr.Protocols.SetHTTP2(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type answer struct {
	status int
	reason string
	header http.Header
	body   []byte
}

func do(t *testing.T, c *http.Client, req *http.Request) answer {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: res.StatusCode, header: res.Header, body: body}
	if len(body) > 0 {
		var r struct{ Reason string }
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		a.reason = r.Reason
	}
	return a
}

func TestRawValidation(t *testing.T) {
	s, ac := newServer(t)
	bearer := "bearer " + ac.Token.GenerateIfExpired()
	c := h2Client(t, s, false)

	valid := func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/3/device/"+deviceToken, strings.NewReader(bgPayload))
		req.Header.Set("authorization", bearer)
		req.Header.Set("apns-topic", topic)
		req.Header.Set("apns-push-type", "background")
		req.Header.Set("apns-priority", "5")
		return req
	}
	tests := []struct {
		name       string
		edit       func(*http.Request) *http.Request
		wantStatus int
		wantReason string
	}{
		{"valid", func(r *http.Request) *http.Request { return r }, 200, ""},
		{"Bearer scheme", func(r *http.Request) *http.Request {
			r.Header.Set("authorization", "Bearer "+strings.TrimPrefix(bearer, "bearer "))
			return r
		}, 200, ""},
		{"GET", func(r *http.Request) *http.Request { r.Method = http.MethodGet; r.Body = nil; return r }, 405, "MethodNotAllowed"},
		{"other path", func(r *http.Request) *http.Request { r.URL.Path = "/3/devices/" + deviceToken; return r }, 404, "BadPath"},
		{"extra path segment", func(r *http.Request) *http.Request { r.URL.Path += "/x"; return r }, 404, "BadPath"},
		{"no device token", func(r *http.Request) *http.Request { r.URL.Path = "/3/device/"; return r }, 400, "MissingDeviceToken"},
		{"repeated topic", func(r *http.Request) *http.Request { r.Header.Add("apns-topic", topic); return r }, 400, "DuplicateHeaders"},
		{"bad apns-id", func(r *http.Request) *http.Request { r.Header.Set("apns-id", "123"); return r }, 400, "BadMessageId"},
		{"no push type", func(r *http.Request) *http.Request { r.Header.Del("apns-push-type"); return r }, 400, "InvalidPushType"},
		{"bad priority", func(r *http.Request) *http.Request { r.Header.Set("apns-priority", "high"); return r }, 400, "BadPriority"},
		// APNs takes a push without apns-priority for one at 10.
		{"background without priority", func(r *http.Request) *http.Request { r.Header.Del("apns-priority"); return r }, 400, "BadPriority"},
		{"alert without priority", func(r *http.Request) *http.Request {
			r.Header.Set("apns-push-type", "alert")
			r.Header.Del("apns-priority")
			return r
		}, 200, ""},
		{"bad expiration", func(r *http.Request) *http.Request { r.Header.Set("apns-expiration", "soon"); return r }, 400, "BadExpirationDate"},
		{"no authorization", func(r *http.Request) *http.Request { r.Header.Del("authorization"); return r }, 403, "MissingProviderToken"},
		{"basic authorization", func(r *http.Request) *http.Request { r.Header.Set("authorization", "Basic eA=="); return r }, 403, "InvalidProviderToken"},
		{"garbage token", func(r *http.Request) *http.Request { r.Header.Set("authorization", "bearer a.b.c"); return r }, 403, "InvalidProviderToken"},
		{"not JSON", func(r *http.Request) *http.Request { return withBody(r, "hello") }, 400, ReasonBadRequest},
		{"JSON array", func(r *http.Request) *http.Request { return withBody(r, `[{"aps":{}}]`) }, 400, ReasonBadRequest},
		{"aps not an object", func(r *http.Request) *http.Request { return withBody(r, `{"aps":1}`) }, 400, ReasonBadRequest},
		{"empty body", func(r *http.Request) *http.Request { return withBody(r, "") }, 400, "PayloadEmpty"},
		{"chunked too large", func(r *http.Request) *http.Request {
			r = withBody(r, string(padded(5000)))
			r.ContentLength = -1
			r.Body = io.NopCloser(bytes.NewReader(padded(5000)))
			return r
		}, 413, "PayloadTooLarge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, c, tt.edit(valid()))
			if a.status != tt.wantStatus || a.reason != tt.wantReason {
				t.Fatalf("answer = %d %q, want %d %q", a.status, a.reason, tt.wantStatus, tt.wantReason)
			}
			if !isUUID(a.header.Get("apns-id")) {
				t.Errorf("apns-id = %q", a.header.Get("apns-id"))
			}
			if a.status == 200 {
				if len(a.body) != 0 {
					t.Errorf("success body %q", a.body)
				}
			} else if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content-type = %q", ct)
			}
		})
	}

	// HTTP/1.1 is refused on the APNs API.
	a := do(t, h2Client(t, s, true), valid())
	if a.status != http.StatusHTTPVersionNotSupported || a.reason != ReasonHTTP2Required {
		t.Errorf("HTTP/1.1 answer = %d %q", a.status, a.reason)
	}
}

func withBody(r *http.Request, body string) *http.Request {
	r.Body = io.NopCloser(strings.NewReader(body))
	r.ContentLength = int64(len(body))
	return r
}

func TestRetryAfter(t *testing.T) {
	s, ac := newServer(t)
	s.FailToken(deviceToken, TooManyRequests(1500*time.Millisecond))
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/3/device/"+deviceToken, strings.NewReader(bgPayload))
	req.Header.Set("authorization", "bearer "+ac.Token.GenerateIfExpired())
	req.Header.Set("apns-topic", topic)
	req.Header.Set("apns-push-type", "background")
	req.Header.Set("apns-priority", "5")
	a := do(t, h2Client(t, s, false), req)
	if a.status != 429 || a.reason != "TooManyRequests" || a.header.Get("Retry-After") != "2" {
		t.Fatalf("answer = %d %q Retry-After %q", a.status, a.reason, a.header.Get("Retry-After"))
	}
}

func TestFailures(t *testing.T) {
	s, c := newServer(t)
	other := strings.Repeat("ab", 32)

	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	s.FailToken(strings.ToUpper(deviceToken), Unregistered(at))
	res := push(t, c, background(deviceToken))
	wantAnswer(t, res, http.StatusGone, "Unregistered")
	if !res.Timestamp.Equal(at) {
		t.Errorf("timestamp = %v, want %v", res.Timestamp.Time, at)
	}
	wantAnswer(t, push(t, c, background(other)), 200, "")
	wantAnswer(t, push(t, c, background(deviceToken)), http.StatusGone, "Unregistered") // forever
	// Validation comes first: a bad request is not answered with the failure.
	bad := background(deviceToken)
	bad.Priority = 10
	wantAnswer(t, push(t, c, bad), 400, "BadPriority")

	f := InternalServerError()
	f.Times = 2
	s.FailToken(deviceToken, f)
	wantAnswer(t, push(t, c, background(deviceToken)), 500, "InternalServerError")
	wantAnswer(t, push(t, c, background(deviceToken)), 500, "InternalServerError")
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "")

	outage := ServiceUnavailable()
	s.FailAll(&outage)
	s.FailToken(deviceToken, BadDeviceToken())
	wantAnswer(t, push(t, c, background(other)), 503, "ServiceUnavailable")
	wantAnswer(t, push(t, c, background(deviceToken)), 400, "BadDeviceToken") // token's own failure wins
	s.FailAll(nil)
	wantAnswer(t, push(t, c, background(other)), 200, "")
	wantAnswer(t, push(t, c, background(deviceToken)), 400, "BadDeviceToken")
	s.ClearFailures()
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "")

	s.FailToken(deviceToken, DeviceTokenNotForTopic())
	wantAnswer(t, push(t, c, background(deviceToken)), 400, "DeviceTokenNotForTopic")
	s.ClearToken(deviceToken)
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "")

	st := s.Stats()
	wantReasons := map[string]int64{
		"Unregistered": 2, "BadPriority": 1, "InternalServerError": 2, "ServiceUnavailable": 1,
		"BadDeviceToken": 2, "DeviceTokenNotForTopic": 1,
	}
	if st.Accepted != 5 || st.Rejected != 9 || st.Requests != 14 || !equalCounts(st.ByReason, wantReasons) {
		t.Errorf("stats = %+v", st)
	}
	if got := len(s.Pushes()); got != 5 {
		t.Errorf("recorded %d pushes, want 5", got)
	}
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// clientCert makes a self-signed client certificate like Apple's.
func clientCert(t *testing.T, bundleID string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "Apple Push Services: " + bundleID},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestCertificateAuth(t *testing.T) {
	s := NewServer()
	t.Cleanup(s.Close)
	single := clientCert(t, topic)
	multi := clientCert(t, "com.example.multi")
	s.AddCertificate(single.Leaf, topic)
	s.AddCertificate(multi.Leaf, "com.example.multi", "com.example.multi.voip")
	unknown := clientCert(t, topic)

	tests := []struct {
		name       string
		cert       tls.Certificate
		topic      string
		wantStatus int
		wantReason string
		wantTopic  string
	}{
		{"registered", single, topic, 200, "", topic},
		{"single-topic default", single, "", 200, "", topic},
		{"other topic", single, "com.example.other", 400, "TopicDisallowed", ""},
		{"multi-topic second", multi, "com.example.multi.voip", 200, "", "com.example.multi.voip"},
		{"multi-topic needs topic", multi, "", 400, "MissingTopic", ""},
		{"unknown certificate", unknown, topic, 403, "BadCertificate", ""},
		{"unknown certificate without topic", unknown, "", 403, "BadCertificate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Reset()
			c := trust(apns2.NewClient(tt.cert), s)
			defer c.CloseIdleConnections()
			n := background(deviceToken)
			n.Topic = tt.topic
			wantAnswer(t, push(t, c, n), tt.wantStatus, tt.wantReason)
			if tt.wantStatus != 200 {
				return
			}
			p := s.Pushes()[0]
			if p.Auth != AuthCertificate || p.Topic != tt.wantTopic || p.TeamID != "" {
				t.Errorf("push auth %q topic %q team %q", p.Auth, p.Topic, p.TeamID)
			}
		})
	}
}

// TestExpiredCertificateFailsTheHandshake: as APNs does, the emulator
// refuses an expired client certificate, even a registered one, with a TLS
// alert at the handshake rather than an HTTP answer.
func TestExpiredCertificateFailsTheHandshake(t *testing.T) {
	s := NewServer()
	t.Cleanup(s.Close)
	cert := clientCert(t, topic)
	tmpl := *cert.Leaf
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, cert.Leaf.PublicKey, cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := x509.ParseCertificate(der)
	s.AddCertificate(expired, topic)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(s.URL, "https://"), &tls.Config{
		RootCAs: s.RootCAs(), NextProtos: []string{"h2"},
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: cert.PrivateKey}},
	})
	if err == nil {
		// With TLS 1.3 the server checks the certificate after the
		// client's side of the handshake: the alert is read next.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "remote error: tls: bad certificate") {
		t.Fatalf("connection with an expired certificate: %v; want it refused with a TLS alert", err)
	}
	if st := s.Stats(); st.Requests != 0 {
		t.Errorf("%d requests reached the API with an expired certificate", st.Requests)
	}
}

func TestWaitForPushes(t *testing.T) {
	s, c := newServer(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			time.Sleep(10 * time.Millisecond)
			if _, err := c.Push(background(deviceToken)); err != nil {
				t.Error(err)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := s.WaitForPushes(ctx, 3)
	if err != nil || len(got) < 3 {
		t.Fatalf("WaitForPushes = %d pushes, %v", len(got), err)
	}
	<-done

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	got, err = s.WaitForPushes(short, 4)
	if !errors.Is(err, context.DeadlineExceeded) || len(got) != 3 {
		t.Fatalf("WaitForPushes past deadline = %d pushes, %v", len(got), err)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := s.WaitForPushes(context.Background(), 100)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitForPushes after Close = %v", err)
	}
}

func TestNoRecordAndOnPush(t *testing.T) {
	var seen atomic.Int64
	s, c := newServer(t, WithRecord(false), WithOnPush(func(p Push) {
		if p.DeviceToken == deviceToken {
			seen.Add(1)
		}
	}))
	for range 5 {
		wantAnswer(t, push(t, c, background(deviceToken)), 200, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := s.WaitForPushes(ctx, 5)
	if err != nil || len(got) != 0 {
		t.Fatalf("WaitForPushes = %d pushes, %v", len(got), err)
	}
	if seen.Load() != 5 || s.Stats().Accepted != 5 || len(s.Pushes()) != 0 {
		t.Errorf("onPush %d, accepted %d, recorded %d", seen.Load(), s.Stats().Accepted, len(s.Pushes()))
	}
}

func TestDevelopmentEnvironment(t *testing.T) {
	s, c := newServer(t, WithEnvironment(EnvironmentDevelopment))
	res := push(t, c, background(deviceToken))
	wantAnswer(t, res, 200, "")
	if !isUUID(res.ApnsUniqueID) {
		t.Errorf("apns-unique-id = %q", res.ApnsUniqueID)
	}
	if env := s.Pushes()[0].Environment; env != EnvironmentDevelopment {
		t.Errorf("environment = %q", env)
	}
}

func TestControlAPI(t *testing.T) {
	s, c := newServer(t)
	hc := h2Client(t, s, true) // the control API also speaks HTTP/1.1
	call := func(method, path, body string) answer {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return answer{status: res.StatusCode, body: b, header: res.Header}
	}

	// apns2 compacts and HTML-escapes payloads, so send this one by hand to
	// show that the control API hands back the exact bytes.
	spaced := `{ "aps" : { "content-available" : 1 }, "html": "<b>&</b>" }`
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/3/device/"+deviceToken, strings.NewReader(spaced))
	req.Header.Set("authorization", "bearer "+c.Token.GenerateIfExpired())
	req.Header.Set("apns-topic", topic)
	req.Header.Set("apns-push-type", "background")
	req.Header.Set("apns-priority", "5")
	if a := do(t, h2Client(t, s, false), req); a.status != 200 {
		t.Fatalf("push = %d %q", a.status, a.reason)
	}

	a := call("GET", "/_emulator/pushes", "")
	if a.status != 200 || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET pushes = %d %s", a.status, a.body)
	}
	if !bytes.Contains(a.body, []byte(`"payload":`+spaced)) {
		t.Errorf("payload not verbatim in %s", a.body)
	}
	var pushes []Push
	if err := json.Unmarshal(a.body, &pushes); err != nil {
		t.Fatal(err)
	}
	if len(pushes) != 1 || string(pushes[0].Payload) != spaced || pushes[0].DeviceToken != deviceToken ||
		pushes[0].Header.Get("Apns-Topic") != topic || !pushes[0].ReceivedAt.Equal(s.Pushes()[0].ReceivedAt) {
		t.Errorf("decoded pushes = %+v", pushes)
	}

	if a := call("PUT", "/_emulator/failures/"+deviceToken,
		`{"status":410,"reason":"Unregistered","timestamp":1700000000000,"times":1}`); a.status != 204 {
		t.Fatalf("PUT failure = %d %s", a.status, a.body)
	}
	res := push(t, c, background(deviceToken))
	wantAnswer(t, res, 410, "Unregistered")
	if res.Timestamp.Unix() != 1700000000 {
		t.Errorf("timestamp = %v", res.Timestamp)
	}
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "")

	if a := call("PUT", "/_emulator/failures", `{"status":503,"retryAfter":"10s"}`); a.status != 204 {
		t.Fatalf("PUT FailAll = %d %s", a.status, a.body)
	}
	wantAnswer(t, push(t, c, background(deviceToken)), 503, "ServiceUnavailable")
	if a := call("PUT", "/_emulator/failures", `null`); a.status != 204 {
		t.Fatalf("PUT FailAll null = %d %s", a.status, a.body)
	}
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "")

	call("PUT", "/_emulator/failures/"+deviceToken, `{"status":500}`)
	call("DELETE", "/_emulator/failures", "")
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "")

	if a := call("PUT", "/_emulator/failures", `{"status":200}`); a.status != 400 {
		t.Errorf("PUT status 200 failure = %d", a.status)
	}
	if a := call("GET", "/_emulator/nope", ""); a.status != 404 {
		t.Errorf("unknown endpoint = %d", a.status)
	}

	a = call("GET", "/_emulator/stats", "")
	var st Stats
	if err := json.Unmarshal(a.body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Requests != 6 || st.Accepted != 4 || st.Rejected != 2 || st.ByReason["Unregistered"] != 1 ||
		st.ByReason["ServiceUnavailable"] != 1 || st.Connections < 2 {
		t.Errorf("stats = %+v", st)
	}

	if a := call("DELETE", "/_emulator/pushes", ""); a.status != 204 {
		t.Fatalf("DELETE pushes = %d", a.status)
	}
	if a := call("GET", "/_emulator/pushes", ""); string(a.body) != "[]" {
		t.Errorf("pushes after reset = %s", a.body)
	}
	if st := s.Stats(); st.Requests != 0 || st.Accepted != 0 || len(st.ByReason) != 0 {
		t.Errorf("stats after reset = %+v", st)
	}
}

func TestConnectionReuse(t *testing.T) {
	s, c := newServer(t)
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "") // warm up
	s.Reset()

	const n = 1000
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range n {
		wg.Go(func() {
			res, err := c.Push(background(deviceToken))
			if err != nil || res.StatusCode != 200 {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if failed.Load() != 0 || st.Accepted != n {
		t.Fatalf("%d failed, %d accepted", failed.Load(), st.Accepted)
	}
	if st.Connections > 4 {
		t.Errorf("%d pushes opened %d connections, want <= 4", n, st.Connections)
	}
}

func TestMaxConcurrentStreamsAndHosts(t *testing.T) {
	s := NewServer(WithMaxConcurrentStreams(7), WithStreamsBeforeToken(0), WithHosts("apns.test"))
	t.Cleanup(s.Close)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(s.URL, "https://"), &tls.Config{
		RootCAs: s.RootCAs(), ServerName: "apns.test", NextProtos: []string{"h2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T", f)
	}
	if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 7 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, %v", v, ok)
	}
	if !bytes.Contains(s.CACertPEM(), []byte("BEGIN CERTIFICATE")) {
		t.Error("CACertPEM is not PEM")
	}
}

// TestStreamsBeforeToken checks APNs' stream limit on a token
// connection: one stream until a request carries a valid provider token,
// a second one refused meanwhile, then the full limit, announced before
// the answer of that request.
func TestStreamsBeforeToken(t *testing.T) {
	s := NewServer(WithMaxConcurrentStreams(7))
	t.Cleanup(s.Close)
	key := newAuthKey(t)
	s.AddTokenKey(teamID, keyID, &key.PublicKey, topic)
	tok := &token.Token{AuthKey: key, KeyID: keyID, TeamID: teamID}
	if _, err := tok.Generate(); err != nil {
		t.Fatal(err)
	}

	// run opens stream 1 with authz, then stream 3, then ends stream 1,
	// and returns what arrived until stream 1's answer: the first
	// SETTINGS' limit, whether stream 3 was refused, the limit a later
	// SETTINGS announced (0 if none) and stream 1's status.
	run := func(authz string) (first uint32, refused bool, raised uint32, status string) {
		t.Helper()
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.URL, "https://"), &tls.Config{
			RootCAs: s.RootCAs(), NextProtos: []string{"h2"},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(conn, conn)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		headers := func(id uint32) {
			hbuf.Reset()
			for _, f := range [][2]string{
				{":method", "POST"}, {":scheme", "https"}, {":authority", "apns"},
				{":path", "/3/device/" + deviceToken}, {"apns-topic", topic},
				{"apns-push-type", "background"}, {"apns-priority", "5"}, {"authorization", authz},
			} {
				if f[1] != "" {
					_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
		}
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		headers(1)
		headers(3)
		if err := fr.WriteData(1, true, []byte(bgPayload)); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok && !f.IsAck() {
					if first == 0 {
						first = v
					} else {
						raised = v
					}
				}
			case *http2.RSTStreamFrame:
				refused = refused || f.StreamID == 3 && f.ErrCode == http2.ErrCodeRefusedStream
			case *http2.MetaHeadersFrame:
				if f.StreamID == 1 {
					return first, refused, raised, f.PseudoValue("status")
				}
			}
		}
	}

	if first, refused, raised, status := run(""); first != 1 || !refused || raised != 0 || status != "403" {
		t.Errorf("no provider token: limit %d, second stream refused %v, raised to %d, answer %s; want 1, true, 0, 403",
			first, refused, raised, status)
	}
	if first, refused, raised, status := run("bearer " + tok.Bearer); first != 1 || !refused || raised != 7 || status != "200" {
		t.Errorf("valid provider token: limit %d, second stream refused %v, raised to %d, answer %s; want 1, true, 7, 200",
			first, refused, raised, status)
	}
}

// TestWithIdentity starts a server with the identity a first one had: a
// client that trusts the first, as a CA file written then does, pushes to
// the second.
func TestWithIdentity(t *testing.T) {
	id, err := emutls.New("apns-emulator", "apns.test")
	if err != nil {
		t.Fatal(err)
	}
	first := NewServer(WithIdentity(id))
	first.Close()
	s := NewServer(WithIdentity(id), WithHosts("ignored.test"))
	t.Cleanup(s.Close)
	key := newAuthKey(t)
	s.AddTokenKey(teamID, keyID, &key.PublicKey)
	c := tokenClient(t, first, key, teamID, keyID) // trusts first's authority
	c.Host = s.URL
	wantAnswer(t, push(t, c, background(deviceToken)), 200, "")
	if !bytes.Equal(s.CACertPEM(), id.CAPEM) {
		t.Error("CACertPEM is not the identity's authority")
	}
}

func TestHasApsObject(t *testing.T) {
	tests := map[string]bool{
		`{"aps":{}}`: true,
		` { "k" : [1,{"aps":2}], "aps" : {"a":1}}`: true,
		`{"k":"\"aps\"","aps":{"x":"}"}}`:          true,
		`{"k":{"aps":{}}}`:                         false,
		`{"aps":[]}`:                               false,
		`{"aps":null}`:                             false,
		`{"APS":{}}`:                               false,
		`{}`:                                       false,
		`[]`:                                       false,
		`{"aps":{}`:                                false,
		`"aps"`:                                    false,
		`{"n":-1.5e3,"t":true,"aps":{}}`:           true,
	}
	for in, want := range tests {
		if got := hasApsObject([]byte(in)); got != want {
			t.Errorf("hasApsObject(%s) = %v, want %v", in, got, want)
		}
	}
}

func TestFailureJSON(t *testing.T) {
	f := Failure{Status: 410, Reason: "Unregistered", Timestamp: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		RetryAfter: 30 * time.Second, Times: 2}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back Failure
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Timestamp.Equal(f.Timestamp) || back.Status != f.Status || back.Reason != f.Reason ||
		back.RetryAfter != f.RetryAfter || back.Times != f.Times {
		t.Errorf("round trip %s = %+v", b, back)
	}
	if err := json.Unmarshal([]byte(`{"status":429,"retryAfter":2.5}`), &back); err != nil || back.RetryAfter != 2500*time.Millisecond {
		t.Errorf("numeric retryAfter = %v, %v", back.RetryAfter, err)
	}
}

func TestNewUUID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		u := newUUID()
		if !isUUID(u) || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) || seen[u] {
			t.Fatalf("bad or repeated UUID %q", u)
		}
		seen[u] = true
	}
}

func BenchmarkPush(b *testing.B) {
	s := NewServer(WithRecord(false))
	defer s.Close()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s.AddTokenKey(teamID, keyID, &k.PublicKey, topic)
	c := trust(apns2.NewTokenClient(&token.Token{AuthKey: k, KeyID: keyID, TeamID: teamID}), s)
	defer c.CloseIdleConnections()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := background(deviceToken)
		for pb.Next() {
			if res, err := c.Push(n); err != nil || res.StatusCode != 200 {
				b.Errorf("push: %v %v", res, err)
				return
			}
		}
	})
}

// sendBearer sends a background push to deviceToken on c with the provider
// token bearer.
func sendBearer(t *testing.T, s *Server, c *http.Client, bearer string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/3/device/"+deviceToken, strings.NewReader(bgPayload))
	req.Header.Set("authorization", "bearer "+bearer)
	req.Header.Set("apns-topic", topic)
	req.Header.Set("apns-push-type", "background")
	req.Header.Set("apns-priority", "5")
	return do(t, c, req)
}

// TestTooManyProviderTokenUpdates: on a connection, a team's provider
// token may give way to a new one at most once every
// WithProviderTokenUpdateInterval (20 minutes unless set, as at APNs); a
// new token sooner is answered 429 TooManyProviderTokenUpdates, while the
// tokens the connection took still serve. Another connection takes a
// token of its own at once. Zero turns the check off.
func TestTooManyProviderTokenUpdates(t *testing.T) {
	send := sendBearer
	want := func(t *testing.T, a answer, status int, reason, what string) {
		t.Helper()
		if a.status != status || a.reason != reason {
			t.Errorf("%s: answer %d %q, want %d %q", what, a.status, a.reason, status, reason)
		}
	}
	tokens := func(t *testing.T, ac *apns2.Client, n int) []string {
		var jwts []string
		for i := range n {
			jwts = append(jwts, signedJWT(t, ac.Token.AuthKey, teamID, keyID, time.Now().Unix()-int64(10*i)))
		}
		return jwts
	}

	t.Run("default", func(t *testing.T) {
		s, ac := newServer(t)
		c := h2Client(t, s, false)
		for i, jwt := range tokens(t, ac, 10) {
			if i == 0 {
				want(t, send(t, s, c, jwt), 200, "", "the connection's first token")
			} else {
				want(t, send(t, s, c, jwt), 429, "TooManyProviderTokenUpdates", fmt.Sprintf("new token %d", i))
			}
		}
		if n := s.Stats().ByReason["TooManyProviderTokenUpdates"]; n != 9 {
			t.Errorf("stats count %d TooManyProviderTokenUpdates, want 9", n)
		}
	})
	t.Run("shorter interval", func(t *testing.T) {
		const interval = 300 * time.Millisecond
		s, ac := newServer(t, WithProviderTokenUpdateInterval(interval))
		jwts := tokens(t, ac, 3)
		c := h2Client(t, s, false)
		want(t, send(t, s, c, jwts[0]), 200, "", "the first token")
		want(t, send(t, s, c, jwts[1]), 429, "TooManyProviderTokenUpdates", "a second token at once")
		want(t, send(t, s, c, jwts[0]), 200, "", "the first token after the second was refused")
		want(t, send(t, s, h2Client(t, s, false), jwts[2]), 200, "", "a third token on a new connection")
		time.Sleep(interval)
		want(t, send(t, s, c, jwts[1]), 200, "", "the second token after the interval")
		want(t, send(t, s, c, jwts[0]), 200, "", "the first token, taken before")
		want(t, send(t, s, c, jwts[2]), 429, "TooManyProviderTokenUpdates", "a third token right after the second")
	})
	t.Run("off", func(t *testing.T) {
		s, ac := newServer(t, WithProviderTokenUpdateInterval(0))
		c := h2Client(t, s, false)
		for i, jwt := range tokens(t, ac, 5) {
			want(t, send(t, s, c, jwt), 200, "", fmt.Sprintf("token %d", i))
		}
	})
}

// TestOneTeamPerConnection: a connection serves the team of the first
// provider token it took; a valid token of another team on it is answered
// 403 InvalidProviderToken, with or without the token update interval,
// while the same token opens a connection of its own.
func TestOneTeamPerConnection(t *testing.T) {
	const otherTeam = "TEAM654321"
	for _, every := range []time.Duration{DefaultProviderTokenUpdateInterval, 0} {
		t.Run(fmt.Sprintf("interval %v", every), func(t *testing.T) {
			s, ac := newServer(t, WithProviderTokenUpdateInterval(every))
			otherKey := newAuthKey(t)
			s.AddTokenKey(otherTeam, keyID, &otherKey.PublicKey, topic)
			now := time.Now().Unix()
			mine := signedJWT(t, ac.Token.AuthKey, teamID, keyID, now)
			theirs := signedJWT(t, otherKey, otherTeam, keyID, now)
			send := func(c *http.Client, bearer string) answer {
				t.Helper()
				return sendBearer(t, s, c, bearer)
			}
			c, other := h2Client(t, s, false), h2Client(t, s, false)
			steps := []struct {
				what   string
				c      *http.Client
				bearer string
				status int
				reason string
			}{
				{"the connection's first token", c, mine, 200, ""},
				{"another team's token on the connection", c, theirs, 403, "InvalidProviderToken"},
				{"the first team's token again", c, mine, 200, ""},
				{"another team's token on a connection of its own", other, theirs, 200, ""},
				{"the first team's token on that connection", other, mine, 403, "InvalidProviderToken"},
			}
			for _, st := range steps {
				if a := send(st.c, st.bearer); a.status != st.status || a.reason != st.reason {
					t.Errorf("%s: answer %d %q, want %d %q", st.what, a.status, a.reason, st.status, st.reason)
				}
			}
			if n := s.Stats().Connections; n != 2 {
				t.Errorf("%d connections, want 2", n)
			}
		})
	}
}
