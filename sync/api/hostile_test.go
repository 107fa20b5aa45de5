//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

// TestHostileRequests sends requests an attacker or a broken client might,
// and checks each gets its documented error and changes nothing in Redis.
func TestHostileRequests(t *testing.T) {
	f := newFixture(t)
	f.configure()
	aliceC := f.identity(alice)
	reg, err := aliceC.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-alice")})
	if err != nil {
		t.Fatal(err)
	}
	bobC := f.identity(bob)
	bobCreds, _ := bobC.Config.Credentials.Get()
	aliceCreds, _ := aliceC.Config.Credentials.Get()
	dev := aws.StringValue(reg.DeviceId)
	aliceDevicePath := "/identitypools/" + esc(pool) + "/identity/" + esc(alice) + "/device"
	aliceSubPath := "/identitypools/" + esc(pool) + "/identities/" + esc(alice) + "/datasets/settings/subscriptions/" + dev
	goodBody := `{"Platform":"GCM","Token":"fcm-new"}`

	type req struct {
		method, path, body string
		service            string
		creds              credentials.Value
		signTime           time.Time
		tamper             func(*http.Request)
		noSign             bool
	}
	dev0 := credentials.Value{AccessKeyID: devKey, SecretAccessKey: devSecret}
	tests := []struct {
		name       string
		r          req
		status     int
		errType    string
		msgContain string
	}{
		{"no signature", req{method: "POST", path: aliceDevicePath, body: goodBody, noSign: true}, 403, "MissingAuthenticationTokenException", "Missing Authentication Token"},
		{"body changed after signing", req{method: "POST", path: aliceDevicePath, body: goodBody, creds: aliceCreds,
			tamper: func(r *http.Request) {
				// Same length, so the transport sends it as is; no GetBody, so it
				// cannot fall back to the signed original.
				r.Body, r.GetBody = io.NopCloser(strings.NewReader(`{"Platform":"GCM","Token":"fcm-bad"}`)), nil
			}}, 403, "InvalidSignatureException", "signature"},
		{"wrong secret", req{method: "POST", path: aliceDevicePath, body: goodBody, creds: credentials.Value{AccessKeyID: devKey, SecretAccessKey: "not-the-secret-at-all"}}, 403, "InvalidSignatureException", "signature"},
		{"unknown access key", req{method: "POST", path: aliceDevicePath, body: goodBody, creds: credentials.Value{AccessKeyID: "AKIAUNKNOWN000000000", SecretAccessKey: "x"}}, 403, "UnrecognizedClientException", "security token"},
		{"replayed beyond the skew", req{method: "POST", path: aliceDevicePath, body: goodBody, creds: aliceCreds, signTime: time.Now().Add(-6 * time.Minute)}, 403, "InvalidSignatureException", "Signature expired"},
		{"signed in the future", req{method: "POST", path: aliceDevicePath, body: goodBody, creds: aliceCreds, signTime: time.Now().Add(6 * time.Minute)}, 403, "InvalidSignatureException", "not yet current"},
		{"signed for another service", req{method: "POST", path: aliceDevicePath, body: goodBody, creds: dev0, service: "pushsync"}, 403, "InvalidSignatureException", ""},
		{"another identity's device path", req{method: "POST", path: aliceDevicePath, body: goodBody, creds: bobCreds}, 403, "NotAuthorizedException", "act only for that identity"},
		{"another identity's subscription", req{method: "DELETE", path: aliceSubPath, creds: bobCreds}, 403, "NotAuthorizedException", "act only for that identity"},
		{"oversized body", req{method: "POST", path: aliceDevicePath, body: `{"Platform":"GCM","Token":"` + strings.Repeat("a", 70<<10) + `"}`, creds: aliceCreds}, 413, "RequestEntityTooLargeException", "larger than"},
		{"malformed JSON", req{method: "POST", path: aliceDevicePath, body: `{"Platform":"GCM",`, creds: aliceCreds}, 400, "SerializationException", "not valid JSON"},
		{"wrong JSON type", req{method: "POST", path: aliceDevicePath, body: `{"Platform":5,"Token":"x"}`, creds: aliceCreds}, 400, "SerializationException", "Platform"},
		{"two JSON values", req{method: "POST", path: aliceDevicePath, body: goodBody + goodBody, creds: aliceCreds}, 400, "SerializationException", "more than one"},
		{"unknown platform", req{method: "POST", path: aliceDevicePath, body: `{"Platform":"WNS","Token":"x"}`, creds: aliceCreds}, 400, "InvalidParameterException", "Platform"},
		{"missing token", req{method: "POST", path: aliceDevicePath, body: `{"Platform":"GCM"}`, creds: aliceCreds}, 400, "InvalidParameterException", "Token"},
		{"encoded traversal in the pool label", req{method: "POST", path: "/identitypools/..%2F..%2Fadmin%2Fv1/identity/" + esc(alice) + "/device", body: goodBody, creds: dev0}, 400, "InvalidParameterException", "IdentityPoolId"},
		{"encoded traversal in the dataset label", req{method: "POST", path: "/identitypools/" + esc(pool) + "/identities/" + esc(alice) + "/datasets/..%2F..%2Fx/subscriptions/" + dev, creds: dev0}, 400, "InvalidParameterException", "DatasetName"},
		{"encoded dot segments", req{method: "POST", path: "/identitypools/%2E%2E/identity/" + esc(alice) + "/device", body: goodBody, creds: dev0}, 400, "InvalidParameterException", ""},
		{"encoded slash in the device label", req{method: "POST", path: "/identitypools/" + esc(pool) + "/identities/" + esc(alice) + "/datasets/settings/subscriptions/" + dev + "%2F..%2Fx", creds: aliceCreds}, 404, "ResourceNotFoundException", ""},
		{"identity calls an operator operation", req{method: "POST", path: "/identitypools/" + esc(pool) + "/configuration", body: `{"PushSync":{"ApplicationArns":[]}}`, creds: aliceCreds}, 403, "NotAuthorizedException", "developer credentials"},
		{"identity on the admin API", req{method: "POST", path: "/admin/v1/credentials", body: fmt.Sprintf(`{"IdentityPoolId":%q,"IdentityId":%q}`, pool, bob), creds: aliceCreds, service: "pushsync"}, 403, "NotAuthorizedException", "developer credentials"},
		{"unknown operation", req{method: "PUT", path: "/identitypools/" + esc(pool) + "/configuration", creds: dev0}, 404, "UnknownOperationException", ""},
	}
	before := f.contents()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			httpReq, err := http.NewRequest(r.method, f.ts.URL+r.path, strings.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			if r.body != "" {
				httpReq.Header.Set("Content-Type", "application/json")
			}
			if !r.noSign {
				service := r.service
				if service == "" {
					service = "cognito-sync"
				}
				when := r.signTime
				if when.IsZero() {
					when = time.Now()
				}
				signer := v4.NewSigner(credentials.NewStaticCredentials(r.creds.AccessKeyID, r.creds.SecretAccessKey, r.creds.SessionToken))
				if _, err := signer.Sign(httpReq, strings.NewReader(r.body), service, "us-east-1", when); err != nil {
					t.Fatal(err)
				}
			}
			if r.tamper != nil {
				r.tamper(httpReq)
			}
			res, err := http.DefaultClient.Do(httpReq)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			data, _ := io.ReadAll(res.Body)
			var body struct {
				Type    string `json:"__type"`
				Message string `json:"message"`
			}
			_ = json.Unmarshal(data, &body)
			if res.StatusCode != tt.status || res.Header.Get("X-Amzn-ErrorType") != tt.errType || body.Type != tt.errType ||
				!strings.Contains(body.Message, tt.msgContain) || res.Header.Get("X-Amzn-RequestId") == "" {
				t.Errorf("got %d %s %s, want %d %s with %q", res.StatusCode, res.Header.Get("X-Amzn-ErrorType"), bytes.TrimSpace(data), tt.status, tt.errType, tt.msgContain)
			}
		})
	}
	if after := f.contents(); !reflect.DeepEqual(before, after) {
		t.Fatalf("hostile requests changed Redis:\nbefore %d keys\nafter  %d keys", len(before), len(after))
	}
}

// contents returns what every key of the test holds, read as data: a
// dump of a hash follows the order of its table, which mere reads change
// while Redis rehashes it.
func (f *fixture) contents() map[string]any {
	f.t.Helper()
	ctx := context.Background()
	out := map[string]any{}
	for k := range f.snapshot() {
		typ, err := f.rdb.Type(ctx, k).Result()
		if err != nil {
			f.t.Fatal(err)
		}
		var v any
		switch typ {
		case "hash":
			v, err = f.rdb.HGetAll(ctx, k).Result()
		case "set":
			var m []string
			m, err = f.rdb.SMembers(ctx, k).Result()
			sort.Strings(m)
			v = m
		case "zset":
			v, err = f.rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		default:
			v, err = f.rdb.Dump(ctx, k).Result()
		}
		if err != nil {
			f.t.Fatal(err)
		}
		ttl, err := f.rdb.PTTL(ctx, k).Result()
		if err != nil {
			f.t.Fatal(err)
		}
		out[k] = []any{typ, v, ttl > 0}
	}
	return out
}

func esc(s string) string { return strings.ReplaceAll(s, ":", "%3A") }
