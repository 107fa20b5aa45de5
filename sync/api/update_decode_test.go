//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
	"github.com/pushsync/pushsync/sync/store"
)

// newDatasetFixture is newFixture with a dataset store on the test Redis;
// mutate, if given, changes the API's options.
func newDatasetFixture(t *testing.T, mutate ...func(*api.Options)) *fixture {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	f := &fixture{t: t, rdb: rdb, prefix: prefix}
	f.reg = registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	opts := api.Options{
		DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret,
		Store:           store.New(rdb, store.Options{KeyPrefix: prefix}),
		SessionTokenKey: []byte("session-token-key-for-tests"),
	}
	for _, m := range mutate {
		m(&opts)
	}
	srv, err := api.New(f.reg, opts, zerolog.New(zerolog.NewTestWriter(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(f.ts.Close)
	createPool(t, f.reg)
	return f
}

// TestUpdateRecordsBodyOfWrongShape sends UpdateRecords bodies that are
// JSON but not of the model's shape: each is refused with a message that
// names the member and what it must be, and nothing is written.
func TestUpdateRecordsBodyOfWrongShape(t *testing.T) {
	f := newDatasetFixture(t)
	dev := f.developer()
	list := func() *cognitosync.ListRecordsOutput {
		t.Helper()
		out, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings")})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	token := aws.StringValue(list().SyncSessionToken)
	patch := func(members string) string {
		return `{"SyncSessionToken":"` + token + `","RecordPatches":[{"Op":"replace","Key":"k","Value":"v",` + members + `}]}`
	}
	path := "/identitypools/" + esc(pool) + "/identities/" + esc(alice) + "/datasets/settings"
	tests := []struct{ name, body, message string }{
		{"array body", `[]`, "request body must be a JSON object, got a JSON array"},
		{"string body", `"records"`, "request body must be a JSON object, got a JSON string"},
		{"fractional sync count", patch(`"SyncCount":0.5`),
			"member RecordPatches.SyncCount must be an integer, got a JSON number 0.5"},
		{"sync count as a string", patch(`"SyncCount":"0"`),
			"member RecordPatches.SyncCount must be an integer, got a JSON string"},
		{"ISO 8601 device time", patch(`"SyncCount":0,"DeviceLastModifiedDate":"2024-01-01T00:00:00Z"`),
			`member RecordPatches.DeviceLastModifiedDate must be a timestamp, a number of seconds since the epoch, got a JSON string "2024-01-01T00:00:00Z"`},
		{"negative device time", patch(`"SyncCount":0,"DeviceLastModifiedDate":-5`),
			"member RecordPatches.DeviceLastModifiedDate must be a timestamp, a number of seconds since the epoch, got a JSON number -5"},
		{"boolean device time", patch(`"SyncCount":0,"DeviceLastModifiedDate":true`),
			"member RecordPatches.DeviceLastModifiedDate must be a timestamp, a number of seconds since the epoch, got a JSON boolean true"},
		{"device id as a number", `{"SyncSessionToken":"` + token + `","DeviceId":5}`,
			"member DeviceId must be a string, got a JSON number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := f.signed("POST", path, tt.body, api.CognitoSyncService, devKey, devSecret)
			defer res.Body.Close()
			data, _ := io.ReadAll(res.Body)
			var e struct {
				Type    string `json:"__type"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(data, &e); err != nil {
				t.Fatalf("%d %s: %v", res.StatusCode, data, err)
			}
			if res.StatusCode != http.StatusBadRequest || e.Type != "SerializationException" || e.Message != tt.message {
				t.Errorf("got %d %s %q\nwant 400 SerializationException %q", res.StatusCode, e.Type, e.Message, tt.message)
			}
		})
	}
	if out := list(); aws.BoolValue(out.DatasetExists) || len(out.Records) > 0 {
		t.Errorf("refused updates wrote %v", out)
	}
	// The same members in their right shape are taken.
	res := f.signed("POST", path, patch(`"SyncCount":0,"DeviceLastModifiedDate":1700000000.5`), api.CognitoSyncService, devKey, devSecret)
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(data), `"DeviceLastModifiedDate":1700000000.5`) {
		t.Errorf("well-formed update: %d %s", res.StatusCode, data)
	}
}

// TestLargestValueEscaped writes a record value as long as the model
// allows, filling the dataset, of characters that JSON escapes as
// \u00XX: six bytes each on the wire. The request is legal, so it is
// taken under the default body limit of both the API and pushsyncd's
// configuration, not refused with 413 for the length of its escaping.
func TestLargestValueEscaped(t *testing.T) {
	value := strings.Repeat("\x01", store.MaxValueLen)
	for _, limit := range []int64{0, int64(config.Default().API.MaxBodyBytes)} {
		f := newDatasetFixture(t, func(o *api.Options) { o.MaxBodyBytes = limit })
		dev := f.developer()
		in := &cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings")}
		first, err := dev.ListRecords(in)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
			DatasetName: aws.String("settings"), SyncSessionToken: first.SyncSessionToken,
			RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("k"), Value: aws.String(value), SyncCount: aws.Int64(0)}}})
		if err != nil {
			t.Errorf("max body bytes %d: %v", limit, err)
		} else if out, err := dev.ListRecords(in); err != nil || len(out.Records) != 1 || aws.StringValue(out.Records[0].Value) != value {
			t.Errorf("max body bytes %d: the value did not read back: %v", limit, err)
		}
		f.ts.Close()
	}
}
