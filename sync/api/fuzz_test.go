//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws/credentials"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
)

// FuzzRequest sends properly signed developer requests with fuzzed methods,
// paths and bodies: the server must answer each with a well-formed AWS
// error or success, never a 5xx and never a panic.
func FuzzRequest(f *testing.F) {
	seeds := []struct{ method, path, body string }{
		{"POST", "/identitypools/" + esc(pool) + "/identity/" + esc(alice) + "/device", `{"Platform":"GCM","Token":"t"}`},
		{"POST", "/identitypools/" + esc(pool) + "/configuration", `{"PushSync":{"ApplicationArns":["arn:aws:sns:us-east-1:1:app/GCM/x"]}}`},
		{"DELETE", "/identitypools/" + esc(pool) + "/identities/" + esc(alice) + "/datasets/d/subscriptions/x", ""},
		{"POST", "/admin/v1/apps", `{"name":"a","kind":"fcm","fcm":{"projectId":"p","serviceAccount":"{}"}}`},
		{"POST", "/admin/v1/credentials", `{"IdentityPoolId":"x","IdentityId":"y","DurationSeconds":-1}`},
		{"GET", "/identitypools/%00/configuration", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.body)
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		switch method {
		case "GET", "POST", "PUT", "DELETE":
		default:
			method = "POST"
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u, err := url.Parse(fx.ts.URL + path)
		if err != nil || u.Host != strings.TrimPrefix(fx.ts.URL, "http://") {
			return
		}
		service := "cognito-sync"
		if strings.HasPrefix(u.Path, "/admin/") {
			service = "pushsync"
		}
		req, err := http.NewRequest(method, u.String(), strings.NewReader(body))
		if err != nil {
			return
		}
		if _, err := v4.NewSigner(credentials.NewStaticCredentials(devKey, devSecret, "")).Sign(req, strings.NewReader(body), service, "us-east-1", time.Now()); err != nil {
			return
		}
		res, err := http.DefaultClient.Do(req)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s %s %q: the server dropped the connection (a panic?): %v", method, path, body, err)
		}
		if err != nil {
			return // the client refused to send it
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, res.StatusCode, data)
		}
		if res.StatusCode >= 400 && res.Header.Get("X-Amzn-ErrorType") == "" {
			t.Fatalf("%s %s: error %d without X-Amzn-ErrorType", method, path, res.StatusCode)
		}
	})
}
