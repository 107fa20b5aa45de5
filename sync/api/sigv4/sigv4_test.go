//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package sigv4

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

const (
	testAK      = "AKIDEXAMPLE"
	testSK      = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	tempAK      = "ASIATEMPEXAMPLE"
	tempSK      = "tempSecretKey/EXAMPLE+1234567890abcdefgh"
	tempToken   = "FwoGZXIvYXdzEXAMPLE//token=="
	testRegion  = "us-east-1"
	testService = "cognito-sync"

	poolID     = "us-east-1:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	identityID = "us-east-1:11111111-2222-3333-4444-555555555555"
	// subscribePath is SubscribeToDataset's path as Cognito clients send it:
	// every label URI-encoded with ':' and '/' escaped.
	subscribePath = "/identitypools/us-east-1%3Aaaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" +
		"/identities/us-east-1%3A11111111-2222-3333-4444-555555555555/datasets/my.Data_set/subscriptions/dev%2F1"
	recordsPath = "/identitypools/us-east-1%3Aaaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" +
		"/identities/us-east-1%3A11111111-2222-3333-4444-555555555555/datasets/my.Data_set/records"
)

var signTime = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// lookupOf serves a fixed set of credentials.
func lookupOf(creds ...Credential) Lookup {
	return func(_ context.Context, id string) (Credential, error) {
		for _, c := range creds {
			if c.AccessKeyID == id {
				return c, nil
			}
		}
		return Credential{}, fmt.Errorf("key %q: %w", id, ErrUnknownAccessKey)
	}
}

func newVerifier(now time.Time, creds ...Credential) *Verifier {
	if len(creds) == 0 {
		creds = []Credential{
			{AccessKeyID: testAK, SecretAccessKey: testSK},
			{AccessKeyID: tempAK, SecretAccessKey: tempSK, SessionToken: tempToken},
		}
	}
	return &Verifier{
		Service: testService,
		Now:     func() time.Time { return now },
		Lookup:  lookupOf(creds...),
	}
}

// newSDKRequest builds a request the way aws-sdk-go v1's rest protocol does:
// URL.Path holds the decoded path and URL.RawPath the per-label escaped one,
// Content-Type and Content-Length are set in the header when there is a body.
func newSDKRequest(t testing.TB, method, base, rawPath, rawQuery string, body []byte) *http.Request {
	t.Helper()
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = path, rawPath, rawQuery
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Length", fmt.Sprint(len(body)))
		req.ContentLength = int64(len(body))
	}
	req.Header.Set("User-Agent", "aws-sdk-go/1.55.8 (go1.26; linux; amd64)")
	return req
}

func sign(t testing.TB, req *http.Request, body []byte, ak, sk, token, service, region string, at time.Time) {
	t.Helper()
	s := v4.NewSigner(credentials.NewStaticCredentials(ak, sk, token))
	if _, err := s.Sign(req, bytes.NewReader(body), service, region, at); err != nil {
		t.Fatal(err)
	}
}

func signDefault(t testing.TB, req *http.Request, body []byte) {
	t.Helper()
	sign(t, req, body, testAK, testSK, "", testService, testRegion, signTime)
}

// server runs a real HTTP server whose handler verifies each request and
// records what it saw.
type server struct {
	*httptest.Server
	v *Verifier

	mu      sync.Mutex
	results []*Result
	errs    []error
	rawPath []string
	answer  string
}

func newServer(t *testing.T, v *Verifier, answer string) *server {
	s := &server{v: v, answer: answer}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		res, err := s.v.Verify(r, body)
		s.mu.Lock()
		s.results, s.errs = append(s.results, res), append(s.errs, err)
		s.rawPath = append(s.rawPath, strings.SplitN(r.RequestURI, "?", 2)[0])
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-amzn-RequestId", "test-request")
		var e *Error
		switch {
		case errors.As(err, &e):
			w.Header().Set("x-amzn-ErrorType", e.Code)
			w.WriteHeader(e.Status)
			json.NewEncoder(w).Encode(map[string]string{"__type": e.Code, "message": e.Message})
		case err != nil:
			w.WriteHeader(500)
		default:
			io.WriteString(w, s.answer)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// last returns what the server's verifier made of the last request: its
// result, the raw path it saw, and its error.
func (s *server) last(t *testing.T) (*Result, string, error) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		t.Fatal("server saw no request")
	}
	n := len(s.errs) - 1
	return s.results[n], s.rawPath[n], s.errs[n]
}

func TestCanonicalURIDoubleEncodes(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "/",
		"/":                     "/",
		"/a%3Ab/c%2Fd":          "/a%253Ab/c%252Fd",
		"/my.Data_set/x-y~z":    "/my.Data_set/x-y~z",
		"/sp%20ace/plus+$":      "/sp%2520ace/plus%2B%24",
		"/utf8/\xc3\xa9/%C3%A9": "/utf8/%C3%A9/%25C3%25A9",
	} {
		if got := canonicalURI(in); got != want {
			t.Errorf("canonicalURI(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRoundTrip signs requests with the real v1 signer, sends them through a
// real HTTP server and verifies them from the *http.Request it received.
func TestRoundTrip(t *testing.T) {
	v := newVerifier(signTime.Add(90 * time.Second))
	srv := newServer(t, v, "{}")
	jsonBody := []byte(`{"Platform":"GCM","Token":"push-token"}`)
	sum := sha256.Sum256(jsonBody)
	emptySum := sha256.Sum256(nil)

	cases := []struct {
		name        string
		method      string
		path, query string
		body        []byte
		prep        func(*http.Request) // before signing
		after       func(*http.Request) // after signing, before sending
		ak, sk, tok string
		wantSigned  string
	}{
		{name: "GET sorted query", method: "GET", path: recordsPath,
			query: "lastSyncCount=0&maxResults=1024&nextToken=a%2Fb", wantSigned: "host;x-amz-date"},
		{name: "GET query sent unsorted", method: "GET", path: recordsPath,
			query:      "lastSyncCount=0&maxResults=1024&nextToken=a%2Fb",
			after:      func(r *http.Request) { r.URL.RawQuery = "nextToken=a%2fb&maxResults=1024&lastSyncCount=0" },
			wantSigned: "host;x-amz-date"},
		{name: "POST JSON Go v1 style", method: "POST", path: recordsPath, body: jsonBody,
			wantSigned: "content-length;content-type;host;x-amz-date"},
		{name: "POST JSON JS style with x-amz-content-sha256", method: "POST", path: recordsPath, body: jsonBody,
			prep:       func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:])) },
			wantSigned: "content-length;content-type;host;x-amz-content-sha256;x-amz-date"},
		{name: "empty POST", method: "POST", path: subscribePath, wantSigned: "host;x-amz-date"},
		{name: "empty POST with signed Content-Length 0 and sha256", method: "POST", path: subscribePath,
			prep: func(r *http.Request) {
				r.Header.Set("Content-Length", "0")
				r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(emptySum[:]))
			},
			wantSigned: "content-length;host;x-amz-content-sha256;x-amz-date"},
		{name: "session token", method: "POST", path: subscribePath, ak: tempAK, sk: tempSK, tok: tempToken,
			wantSigned: "host;x-amz-date;x-amz-security-token"},
		{name: "header with runs of spaces", method: "POST", path: recordsPath, body: jsonBody,
			prep:       func(r *http.Request) { r.Header.Set("X-Amz-Client-Context", "  a   b  c ") },
			wantSigned: "content-length;content-type;host;x-amz-client-context;x-amz-date"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ak, sk := testAK, testSK
			if tc.ak != "" {
				ak, sk = tc.ak, tc.sk
			}
			req := newSDKRequest(t, tc.method, srv.URL, tc.path, tc.query, tc.body)
			if tc.prep != nil {
				tc.prep(req)
			}
			sign(t, req, tc.body, ak, sk, tc.tok, testService, testRegion, signTime)
			if tc.after != nil {
				tc.after(req)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			res, raw, verr := srv.last(t)
			if raw != tc.path {
				t.Fatalf("server received path %q, want the encoded %q", raw, tc.path)
			}
			if verr != nil || resp.StatusCode != 200 {
				t.Fatalf("Verify: %v (status %d)", verr, resp.StatusCode)
			}
			if got := strings.Join(res.SignedHeaders, ";"); got != tc.wantSigned {
				t.Errorf("signed headers %q, want %q", got, tc.wantSigned)
			}
			if res.AccessKeyID != ak || res.Region != testRegion || res.Service != testService ||
				!res.Time.Equal(signTime) || res.Credential.SecretAccessKey != sk || res.Credential.SessionToken != tc.tok {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// TestCognitoSyncClient drives the real aws-sdk-go v1 cognitosync client
// against a server that verifies every request.
func TestCognitoSyncClient(t *testing.T) {
	v := newVerifier(time.Time{})
	v.Now = time.Now
	v.Regions = []string{"eu-west-1"}
	srv := newServer(t, v, `{"DeviceId":"x"}`)
	newClient := func(sk string) *cognitosync.CognitoSync {
		sess := session.Must(session.NewSession())
		return cognitosync.New(sess, &aws.Config{
			Endpoint:    aws.String(srv.URL),
			Region:      aws.String("eu-west-1"),
			Credentials: credentials.NewStaticCredentials(tempAK, sk, tempToken),
			MaxRetries:  aws.Int(0),
		})
	}
	c := newClient(tempSK)

	out, err := c.RegisterDevice(&cognitosync.RegisterDeviceInput{
		IdentityPoolId: aws.String(poolID), IdentityId: aws.String(identityID),
		Platform: aws.String("GCM"), Token: aws.String("push/token:1"),
	})
	if err != nil {
		t.Fatalf("RegisterDevice: %v", err)
	}
	if aws.StringValue(out.DeviceId) != "x" {
		t.Errorf("DeviceId %q", aws.StringValue(out.DeviceId))
	}
	res, raw, _ := srv.last(t)
	if want := "/identitypools/us-east-1%3Aaaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/identity/us-east-1%3A11111111-2222-3333-4444-555555555555/device"; raw != want {
		t.Errorf("RegisterDevice path %q, want %q", raw, want)
	}
	if got := strings.Join(res.SignedHeaders, ";"); got != "content-length;content-type;host;x-amz-date;x-amz-security-token" {
		t.Errorf("RegisterDevice signed headers %q", got)
	}

	if _, err := c.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{
		IdentityPoolId: aws.String(poolID), IdentityId: aws.String(identityID),
		DatasetName: aws.String("my.Data_set"), DeviceId: aws.String("dev/1:x"),
	}); err != nil {
		t.Fatalf("SubscribeToDataset: %v", err)
	}
	res, raw, _ = srv.last(t)
	if !strings.HasSuffix(raw, "/datasets/my.Data_set/subscriptions/dev%2F1%3Ax") {
		t.Errorf("SubscribeToDataset path %q", raw)
	}
	if res.Region != "eu-west-1" || res.AccessKeyID != tempAK {
		t.Errorf("result %+v", res)
	}

	// A wrong secret reaches the client as a typed AWS error code.
	_, err = newClient("wrong-secret").SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{
		IdentityPoolId: aws.String(poolID), IdentityId: aws.String(identityID),
		DatasetName: aws.String("ds"), DeviceId: aws.String("d"),
	})
	var rf awserr.RequestFailure
	if !errors.As(err, &rf) || rf.Code() != "InvalidSignatureException" || rf.StatusCode() != 403 ||
		!strings.HasPrefix(rf.Message(), "The request signature we calculated does not match") {
		t.Errorf("wrong secret: %v", err)
	}
}

func TestVerifyFailures(t *testing.T) {
	body := []byte(`{"Platform":"GCM","Token":"t"}`)
	now := signTime.Add(30 * time.Second)
	base := "https://cognito-sync.us-east-1.amazonaws.com"
	type tc struct {
		name     string
		build    func(t *testing.T) (*http.Request, []byte)
		verifier func(v *Verifier)
		kind     *Error
		code     string
		status   int
		msg      string // substring
	}
	signed := func(mut func(r *http.Request) []byte) func(t *testing.T) (*http.Request, []byte) {
		return func(t *testing.T) (*http.Request, []byte) {
			r := newSDKRequest(t, "POST", base, subscribePath, "", body)
			signDefault(t, r, body)
			b := body
			if mut != nil {
				if nb := mut(r); nb != nil {
					b = nb
				}
			}
			return r, b
		}
	}
	setAuth := func(from, to string) func(r *http.Request) []byte {
		return func(r *http.Request) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), from, to, 1))
			return nil
		}
	}
	signWith := func(ak, sk, tok, service, region string, at time.Time, prep func(*http.Request)) func(t *testing.T) (*http.Request, []byte) {
		return func(t *testing.T) (*http.Request, []byte) {
			r := newSDKRequest(t, "POST", base, subscribePath, "", body)
			if prep != nil {
				prep(r)
			}
			sign(t, r, body, ak, sk, tok, service, region, at)
			return r, body
		}
	}
	const (
		incomplete = "IncompleteSignatureException"
		invalid    = "InvalidSignatureException"
		unrecog    = "UnrecognizedClientException"
	)
	cases := []tc{
		{name: "no authorization header", build: signed(func(r *http.Request) []byte { r.Header.Del("Authorization"); return nil }),
			kind: ErrMissingAuthentication, code: "MissingAuthenticationTokenException", status: 403, msg: "Missing Authentication Token"},
		{name: "body tampered after signing", build: signed(func(*http.Request) []byte { return []byte(`{"Platform":"APNS","Token":"t"}`) }),
			kind: ErrSignatureMismatch, code: invalid, status: 403, msg: "The request signature we calculated does not match"},
		{name: "signed header tampered", build: signed(func(r *http.Request) []byte { r.Header.Set("Content-Type", "text/plain"); return nil }),
			kind: ErrSignatureMismatch, code: invalid, status: 403},
		{name: "path tampered", build: signed(func(r *http.Request) []byte {
			r.URL.RawPath = strings.Replace(r.URL.RawPath, "dev%2F1", "dev%2F2", 1)
			r.URL.Path = strings.Replace(r.URL.Path, "dev/1", "dev/2", 1)
			return nil
		}), kind: ErrSignatureMismatch, code: invalid, status: 403},
		{name: "single-encoded canonical path is not accepted", build: signed(func(r *http.Request) []byte {
			// "dev%2F1" and "dev/1" differ on the wire; the decoded path must not be used.
			r.URL.RawPath = ""
			return nil
		}), kind: ErrSignatureMismatch, code: invalid, status: 403},
		{name: "wrong secret", build: signWith(testAK, "not-the-secret", "", testService, testRegion, signTime, nil),
			kind: ErrSignatureMismatch, code: invalid, status: 403},
		{name: "unknown access key", build: signWith("AKIDUNKNOWN", testSK, "", testService, testRegion, signTime, nil),
			kind: ErrUnknownAccessKey, code: unrecog, status: 403, msg: "The security token included in the request is invalid."},
		{name: "missing session token", build: signWith(tempAK, tempSK, "", testService, testRegion, signTime, nil),
			kind: ErrInvalidSecurityToken, code: unrecog, status: 403, msg: "The security token included in the request is invalid."},
		{name: "wrong session token", build: signWith(tempAK, tempSK, "other-token", testService, testRegion, signTime, nil),
			kind: ErrInvalidSecurityToken, code: unrecog, status: 403},
		{name: "extra session token", build: signWith(testAK, testSK, "unexpected", testService, testRegion, signTime, nil),
			kind: ErrInvalidSecurityToken, code: unrecog, status: 403},
		{name: "skew +6 min", build: signWith(testAK, testSK, "", testService, testRegion, now.Add(6*time.Minute), nil),
			kind: ErrSignatureExpired, code: invalid, status: 403,
			msg: "Signature not yet current: 20261122T100630Z is still later than 20261122T100530Z (20261122T100030Z + 5 min.)"},
		{name: "skew -6 min", build: signWith(testAK, testSK, "", testService, testRegion, now.Add(-6*time.Minute), nil),
			kind: ErrSignatureExpired, code: invalid, status: 403,
			msg: "Signature expired: 20261122T095430Z is now earlier than 20261122T095530Z (20261122T100030Z - 5 min.)"},
		{name: "region not accepted", build: signWith(testAK, testSK, "", testService, "eu-west-1", signTime, nil),
			verifier: func(v *Verifier) { v.Regions = []string{"us-east-1", "us-west-2"} },
			kind:     ErrInvalidSignature, code: invalid, status: 403, msg: "region, not 'eu-west-1'"},
		{name: "service s3", build: signWith(testAK, testSK, "", "s3", testRegion, signTime, nil),
			kind: ErrInvalidSignature, code: invalid, status: 403, msg: "correct service: 'cognito-sync'"},
		{name: "scope date mismatch", build: signed(setAuth("/20261122/", "/20261121/")),
			kind: ErrInvalidSignature, code: invalid, status: 403, msg: "'20261121' != '20261122'"},
		{name: "missing Signature component", build: signed(func(r *http.Request) []byte {
			h := r.Header.Get("Authorization")
			r.Header.Set("Authorization", h[:strings.Index(h, ", Signature=")])
			return nil
		}), kind: ErrIncompleteSignature, code: incomplete, status: 400, msg: "Authorization header requires 'Signature' parameter."},
		{name: "unsorted signed headers", build: signed(setAuth("SignedHeaders=content-length;content-type;host", "SignedHeaders=content-type;content-length;host")),
			kind: ErrIncompleteSignature, code: incomplete, status: 400},
		{name: "host not signed", build: signed(setAuth(";host;", ";")),
			kind: ErrIncompleteSignature, code: incomplete, status: 400, msg: "'Host'"},
		{name: "x-amz-date not signed", build: signed(setAuth(";x-amz-date,", ",")),
			kind: ErrIncompleteSignature, code: incomplete, status: 400, msg: "'X-Amz-Date' must be a 'SignedHeader'"},
		{name: "no date header", build: signed(func(r *http.Request) []byte { r.Header.Del("X-Amz-Date"); return nil }),
			kind: ErrIncompleteSignature, code: incomplete, status: 400, msg: "'X-Amz-Date' or a 'Date' header"},
		{name: "signed header absent", build: signed(func(r *http.Request) []byte { r.Header.Del("Content-Type"); return nil }),
			kind: ErrIncompleteSignature, code: incomplete, status: 400, msg: "'content-type' is missing"},
		{name: "bad x-amz-content-sha256", build: signWith(testAK, testSK, "", testService, testRegion, signTime, func(r *http.Request) {
			r.Header.Set("X-Amz-Content-Sha256", strings.Repeat("ab", 32))
		}), kind: ErrInvalidSignature, code: invalid, status: 403, msg: msgContentSHA},
		{name: "UNSIGNED-PAYLOAD", build: func(t *testing.T) (*http.Request, []byte) {
			r := newSDKRequest(t, "POST", base, subscribePath, "", body)
			s := v4.NewSigner(credentials.NewStaticCredentials(testAK, testSK, ""), func(s *v4.Signer) { s.UnsignedPayload = true })
			if _, err := s.Sign(r, bytes.NewReader(body), testService, testRegion, signTime); err != nil {
				t.Fatal(err)
			}
			return r, body
		}, kind: ErrInvalidSignature, code: invalid, status: 403, msg: msgContentSHA},
		{name: "presigned query", build: func(t *testing.T) (*http.Request, []byte) {
			r := newSDKRequest(t, "GET", base, recordsPath, "", nil)
			s := v4.NewSigner(credentials.NewStaticCredentials(testAK, testSK, ""))
			if _, err := s.Presign(r, nil, testService, testRegion, time.Hour, signTime); err != nil {
				t.Fatal(err)
			}
			return r, nil
		}, kind: ErrIncompleteSignature, code: incomplete, status: 400, msg: "presigned URLs are not accepted"},
		{name: "not AWS4-HMAC-SHA256", build: signed(setAuth("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512")),
			kind: ErrIncompleteSignature, code: incomplete, status: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := newVerifier(now)
			if c.verifier != nil {
				c.verifier(v)
			}
			r, b := c.build(t)
			res, err := v.Verify(r, b)
			if err == nil {
				t.Fatalf("Verify succeeded: %+v", res)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if !errors.Is(err, c.kind) || e.Code != c.code || e.Status != c.status {
				t.Fatalf("got %#v, want kind %q code %s status %d", e, c.kind.Message, c.code, c.status)
			}
			for _, other := range []*Error{ErrMissingAuthentication, ErrIncompleteSignature, ErrInvalidSignature,
				ErrSignatureExpired, ErrUnknownAccessKey, ErrInvalidSecurityToken, ErrSignatureMismatch} {
				if other != c.kind && errors.Is(err, other) {
					t.Errorf("error also matches %q", other.Message)
				}
			}
			if !strings.Contains(e.Message, c.msg) {
				t.Errorf("message %q does not contain %q", e.Message, c.msg)
			}
		})
	}
}

func TestLookupErrorPassedThrough(t *testing.T) {
	backend := errors.New("store unavailable")
	v := newVerifier(signTime)
	v.Lookup = func(context.Context, string) (Credential, error) { return Credential{}, backend }
	r := newSDKRequest(t, "GET", "http://localhost", recordsPath, "", nil)
	signDefault(t, r, nil)
	_, err := v.Verify(r, nil)
	var e *Error
	if !errors.Is(err, backend) || errors.As(err, &e) {
		t.Fatalf("got %v, want the wrapped backend error", err)
	}
}

func TestSkewBoundaryAndDefault(t *testing.T) {
	for _, d := range []time.Duration{5 * time.Minute, -5 * time.Minute, 0} {
		v := newVerifier(signTime.Add(d))
		r := newSDKRequest(t, "GET", "http://localhost", recordsPath, "", nil)
		signDefault(t, r, nil)
		if _, err := v.Verify(r, nil); err != nil {
			t.Errorf("skew %v: %v", d, err)
		}
	}
	v := newVerifier(signTime.Add(90 * time.Second))
	v.MaxSkew = time.Minute
	r := newSDKRequest(t, "GET", "http://localhost", recordsPath, "", nil)
	signDefault(t, r, nil)
	if _, err := v.Verify(r, nil); !errors.Is(err, ErrSignatureExpired) || !strings.Contains(err.Error(), "- 1 min.)") {
		t.Errorf("MaxSkew 1m: %v", err)
	}
}

// TestDateHeaderFallback signs by hand, following the SigV4 specification,
// a request that carries only a Date header (the v1 signer always adds
// X-Amz-Date).
func TestDateHeaderFallback(t *testing.T) {
	hm := func(key []byte, data string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(data))
		return h.Sum(nil)
	}
	const date = "Sun, 22 Nov 2026 10:00:00 GMT"
	empty := sha256.Sum256(nil)
	canon := "GET\n/a%253Ab\nk=v\ndate:" + date + "\nhost:example.com\n\ndate;host\n" + hex.EncodeToString(empty[:])
	canonSum := sha256.Sum256([]byte(canon))
	scope := "20261122/us-east-1/cognito-sync/aws4_request"
	sts := "AWS4-HMAC-SHA256\n20261122T100000Z\n" + scope + "\n" + hex.EncodeToString(canonSum[:])
	key := hm(hm(hm(hm([]byte("AWS4"+testSK), "20261122"), "us-east-1"), "cognito-sync"), "aws4_request")
	sig := hex.EncodeToString(hm(key, sts))

	r := httptest.NewRequest("GET", "http://example.com/a%3Ab?k=v", nil)
	r.Header.Set("Date", date)
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+testAK+"/"+scope+", SignedHeaders=date;host, Signature="+sig)
	res, err := newVerifier(signTime.Add(time.Minute)).Verify(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Time.Equal(signTime) {
		t.Errorf("time %v", res.Time)
	}
	// The Date header must be signed when it is the request time.
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+testAK+"/"+scope+", SignedHeaders=host, Signature="+sig)
	if _, err := newVerifier(signTime).Verify(r, nil); !errors.Is(err, ErrIncompleteSignature) {
		t.Errorf("unsigned Date: %v", err)
	}
}

func TestHostWithoutPortAndDefaultPort(t *testing.T) {
	// The v1 signer strips a default port from Host before signing; the Go
	// client then sends that Host, which is what the server sees in r.Host.
	r := newSDKRequest(t, "GET", "https://cognito-sync.us-east-1.amazonaws.com:443", recordsPath, "", nil)
	signDefault(t, r, nil)
	if r.Host != "cognito-sync.us-east-1.amazonaws.com" {
		t.Fatalf("signer left Host %q", r.Host)
	}
	if _, err := newVerifier(signTime).Verify(r, nil); err != nil {
		t.Fatal(err)
	}
}

func TestSigningKeyCacheBounded(t *testing.T) {
	var c keyCache
	for i := 0; i < 3*maxCachedKeys; i++ {
		secret, region := fmt.Sprintf("secret-%d", i%7), fmt.Sprintf("region-%d", i)
		got := c.get(secret, "20261122", region, testService)
		if want := deriveSigningKey(secret, "20261122", region, testService); !bytes.Equal(got, want) {
			t.Fatalf("key %d differs", i)
		}
		if n := c.len(); n > maxCachedKeys {
			t.Fatalf("cache holds %d keys, bound is %d", n, maxCachedKeys)
		}
	}
	if c.len() != maxCachedKeys {
		t.Errorf("cache holds %d keys, want it full at %d", c.len(), maxCachedKeys)
	}
	// A repeated key is served from the cache.
	a := c.get("s", "20261122", "r", "svc")
	b := c.get("s", "20261122", "r", "svc")
	if &a[0] != &b[0] {
		t.Error("repeated key was derived again")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	v := newVerifier(signTime)
	reqs := make([]*http.Request, 16)
	bodies := make([][]byte, len(reqs))
	for i := range reqs {
		bodies[i] = []byte(fmt.Sprintf(`{"n":%d}`, i))
		reqs[i] = newSDKRequest(t, "POST", "http://localhost:8080", recordsPath, "", bodies[i])
		sign(t, reqs[i], bodies[i], testAK, testSK, "", testService, fmt.Sprintf("region-%d", i%3), signTime)
	}
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(reqs[i], bodies[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestParseAuthorization(t *testing.T) {
	const sig = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
	good := "AWS4-HMAC-SHA256 Credential=AKID/20261122/us-east-1/cognito-sync/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig
	a, err := ParseAuthorization(good)
	if err != nil {
		t.Fatal(err)
	}
	want := Authorization{AccessKeyID: "AKID", Date: "20261122", Region: "us-east-1", Service: "cognito-sync",
		SignedHeaders: []string{"host", "x-amz-date"}, Signature: sig}
	if a.String() != good || fmt.Sprint(*a) != fmt.Sprint(want) {
		t.Errorf("got %+v / %q", a, a.String())
	}
	for _, h := range []string{
		"AWS4-HMAC-SHA256 Signature=" + sig + ",SignedHeaders=host,Credential=AKID/20261122/r/s/aws4_request",
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request ,  SignedHeaders=host , Signature=" + sig,
	} {
		if _, err := ParseAuthorization(h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	for _, h := range []string{
		"",
		"AWS4-HMAC-SHA256",
		"AWS Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host",
		"AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host, Signature=" + sig + ", Extra=1",
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/2026112/r/s/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request/x, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws5_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=/20261122/r/s/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122//s/aws4_request, SignedHeaders=host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=Host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=x-amz-date;host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host;host, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host;;x-amz-date, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=x-amz-date, Signature=" + sig,
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host, Signature=" + strings.ToUpper(sig),
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host, Signature=" + sig[:63],
		"AWS4-HMAC-SHA256 Credential=AKID/20261122/r/s/aws4_request, SignedHeaders=host, Signature",
	} {
		if _, err := ParseAuthorization(h); !errors.Is(err, ErrIncompleteSignature) {
			t.Errorf("%q: got %v, want IncompleteSignature", h, err)
		}
	}
}
