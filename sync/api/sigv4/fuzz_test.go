//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package sigv4

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws/credentials"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
)

// FuzzParseAuthorization checks that parsing never panics, that failures are
// IncompleteSignature errors and that every accepted header round-trips
// through String.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261122/us-east-1/cognito-sync/aws4_request, SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024")
	f.Add("AWS4-HMAC-SHA256 Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024,SignedHeaders=host,Credential=A/20261122/r/s/aws4_request")
	f.Add("AWS4-HMAC-SHA256 Credential=A/20261122/r/s/aws4_request, SignedHeaders=host")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseAuthorization(h)
		if err != nil {
			if a != nil || !errors.Is(err, ErrIncompleteSignature) {
				t.Fatalf("ParseAuthorization(%q) = %v, %v", h, a, err)
			}
			return
		}
		s := a.String()
		b, err := ParseAuthorization(s)
		if err != nil {
			t.Fatalf("re-parsing %q (from %q): %v", s, h, err)
		}
		if !reflect.DeepEqual(a, b) || b.String() != s {
			t.Fatalf("round trip of %q: %+v != %+v", h, a, b)
		}
	})
}

// FuzzVerify signs a request built from fuzzed path, query, header value and
// body with the real aws-sdk-go v1 signer and checks that Verify accepts it
// (our canonical request matches the signer's for any input), rejects it
// after a mutation, and never accepts a fuzzed Authorization header unless it
// is equivalent to the real one. Verify must never panic.
func FuzzVerify(f *testing.F) {
	f.Add("/identitypools/us-east-1:aaaa/identities/x/datasets/d/subscriptions/dev/1", "lastSyncCount=0&nextToken=a%2Fb",
		"  a   b ", []byte(`{"a":1}`), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261122/us-east-1/cognito-sync/aws4_request, SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024", uint8(0))
	f.Add("/", "", "", []byte(nil), "", uint8(1))
	f.Add("/a b/%zz/é", "x=1;y=2&&=&a+b=c+d", "\tv\t", []byte("body"), "AWS4-HMAC-SHA256 ", uint8(2))
	f.Add("", "X-Amz-Algorithm=AWS4-HMAC-SHA256", "v", []byte{0}, "garbage", uint8(3))
	f.Fuzz(func(t *testing.T, path, rawQuery, hval string, body []byte, fuzzAuth string, mutate uint8) {
		v := newVerifier(signTime)
		u := &url.URL{Scheme: "http", Host: "example.com", Path: path, RawQuery: rawQuery}
		if !strings.HasPrefix(path, "/") {
			u.Path = "/" + path
		}
		r := &http.Request{Method: "POST", URL: u, Host: u.Host, Header: http.Header{}, ContentLength: int64(len(body))}
		r.Header.Set("X-Custom", hval)
		s := v4.NewSigner(credentials.NewStaticCredentials(testAK, testSK, ""))
		if _, err := s.Sign(r, bytes.NewReader(body), testService, testRegion, signTime); err != nil {
			t.Skip(err)
		}
		// As a server would see it: the request target as sent.
		r.RequestURI = r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			r.RequestURI += "?" + r.URL.RawQuery
		}
		_, err := v.Verify(r, body)
		q, _ := url.ParseQuery(r.URL.RawQuery)
		presigned := q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential")
		if presigned {
			if !errors.Is(err, ErrIncompleteSignature) {
				t.Fatalf("presigned-looking query %q: %v", r.URL.RawQuery, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("properly signed request rejected: %v\npath %q query %q header %q", err, r.RequestURI, r.URL.RawQuery, hval)
		}
		orig := r.Header.Get("Authorization")

		// A fuzzed Authorization header only passes if it says the same.
		r.Header.Set("Authorization", fuzzAuth)
		if _, err := v.Verify(r, body); err == nil {
			a, _ := ParseAuthorization(orig)
			b, perr := ParseAuthorization(fuzzAuth)
			if perr != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("accepted forged Authorization %q", fuzzAuth)
			}
		}
		r.Header.Set("Authorization", orig)

		// Any change to what was signed must be rejected.
		switch mutate % 4 {
		case 0:
			body = append(append([]byte(nil), body...), 'x')
		case 1:
			i := strings.LastIndex(orig, "=") + 1
			c := byte('0')
			if orig[i] == '0' {
				c = '1'
			}
			r.Header.Set("Authorization", orig[:i]+string(c)+orig[i+1:])
		case 2:
			r.Header.Set("X-Custom", hval+"x")
		case 3:
			p, _, _ := strings.Cut(r.RequestURI, "?")
			r.RequestURI = p + "x" + strings.TrimPrefix(r.RequestURI, p)
		}
		if _, err := v.Verify(r, body); !errors.Is(err, ErrSignatureMismatch) {
			t.Fatalf("mutation %d: got %v, want a signature mismatch", mutate%4, err)
		}
	})
}
