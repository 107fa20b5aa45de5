//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/relay"
	"github.com/pushsync/pushsync/sync/store"
)

// Developer credentials act only in identity pools that exist: every call
// naming a pool that was never created (a mistyped id) or that has been
// deleted is refused with ResourceNotFoundException naming the pool, and
// writes nothing to Redis and publishes no event, while the same calls in a
// pool that exists still write and publish.
func TestDeveloperCallsInAMissingPoolAreRefused(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	st := store.New(rdb, store.Options{KeyPrefix: prefix})
	_, js := testenv.StartNATS(t).Connect(t)
	const stream = "MISSING_POOL_TEST"
	pub, rel := publishing(t, js, st, stream, "missingpool.changed", relay.Options{})
	log := zerolog.New(zerolog.NewTestWriter(t))
	srv, err := api.New(reg, api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret,
		Store: st, Relay: rel, Publisher: pub, SessionTokenKey: []byte("0123456789abcdef0123456789abcdef")}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	f := &fixture{t: t, rdb: rdb, prefix: prefix, reg: reg, ts: ts}
	dev := f.developer()
	createPool(t, reg)
	f.configure()
	published := func() uint64 {
		t.Helper()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	// A pool that was used, push sync and a device included, and then
	// deleted: its push configuration stays stored.
	gone, err := reg.CreateIdentityPool(ctx, "us-east-1", registry.IdentityPool{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(gone.ID),
		PushSync: &cognitosync.PushSync{ApplicationArns: aws.StringSlice([]string{"arn:aws:sns:us-east-1:123456789012:app/GCM/game-android"})}}); err != nil {
		t.Fatal(err)
	}
	registered, err := dev.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(gone.ID), IdentityId: aws.String(alice),
		Platform: aws.String("GCM"), Token: aws.String("fcm-registration-token-of-alice-0001")})
	if err != nil {
		t.Fatal(err)
	}
	listed, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(gone.ID), IdentityId: aws.String(alice), DatasetName: aws.String("settings")})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.DeleteIdentityPool(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}

	// The pool id with its last digit mistyped.
	typo := pool[:len(pool)-1] + "1"
	before := redisSnapshot(t, f)
	for _, missing := range []struct {
		name, pool      string
		token, deviceID string
	}{
		{"a pool never created", typo, "", "2c3d4e5f-0000-4000-8000-000000000001"},
		{"a deleted pool", gone.ID, aws.StringValue(listed.SyncSessionToken), aws.StringValue(registered.DeviceId)},
	} {
		p, id, ds := aws.String(missing.pool), aws.String(alice), aws.String("settings")
		token := missing.token
		calls := []struct {
			name string
			call func() error
		}{
			{"ListRecords", func() error {
				out, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: p, IdentityId: id, DatasetName: ds})
				if err == nil && token == "" {
					token = aws.StringValue(out.SyncSessionToken) // so that the write below could happen
				}
				return err
			}},
			{"UpdateRecords", func() error {
				if token == "" {
					token = "none" // the SDK refuses an empty one itself
				}
				_, err := dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: p, IdentityId: id, DatasetName: ds,
					SyncSessionToken: aws.String(token),
					RecordPatches:    []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("volume"), Value: aws.String("7"), SyncCount: aws.Int64(0)}}})
				return err
			}},
			{"DescribeDataset", func() error {
				_, err := dev.DescribeDataset(&cognitosync.DescribeDatasetInput{IdentityPoolId: p, IdentityId: id, DatasetName: ds})
				return err
			}},
			{"DeleteDataset", func() error {
				_, err := dev.DeleteDataset(&cognitosync.DeleteDatasetInput{IdentityPoolId: p, IdentityId: id, DatasetName: ds})
				return err
			}},
			{"ListDatasets", func() error {
				_, err := dev.ListDatasets(&cognitosync.ListDatasetsInput{IdentityPoolId: p, IdentityId: id})
				return err
			}},
			{"DescribeIdentityUsage", func() error {
				_, err := dev.DescribeIdentityUsage(&cognitosync.DescribeIdentityUsageInput{IdentityPoolId: p, IdentityId: id})
				return err
			}},
			{"DescribeIdentityPoolUsage", func() error {
				_, err := dev.DescribeIdentityPoolUsage(&cognitosync.DescribeIdentityPoolUsageInput{IdentityPoolId: p})
				return err
			}},
			{"RegisterDevice", func() error {
				_, err := dev.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: p, IdentityId: id,
					Platform: aws.String("GCM"), Token: aws.String("fcm-registration-token-of-alice-0002")})
				return err
			}},
			{"SubscribeToDataset", func() error {
				_, err := dev.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{IdentityPoolId: p, IdentityId: id, DatasetName: ds, DeviceId: aws.String(missing.deviceID)})
				return err
			}},
			{"UnsubscribeFromDataset", func() error {
				_, err := dev.UnsubscribeFromDataset(&cognitosync.UnsubscribeFromDatasetInput{IdentityPoolId: p, IdentityId: id, DatasetName: ds, DeviceId: aws.String(missing.deviceID)})
				return err
			}},
			{"GetIdentityPoolConfiguration", func() error {
				_, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: p})
				return err
			}},
			{"SetIdentityPoolConfiguration", func() error {
				_, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: p,
					PushSync:       &cognitosync.PushSync{ApplicationArns: aws.StringSlice([]string{"arn:aws:sns:us-east-1:123456789012:app/APNS/game-ios"})},
					CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("events"), StreamingStatus: aws.String("ENABLED")}})
				return err
			}},
			{"BulkPublish", func() error {
				_, err := dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: p})
				return err
			}},
			{"IssueIdentityCredentials", func() error {
				return adminCall(f, "POST", "/admin/v1/credentials", fmt.Sprintf(`{"IdentityPoolId":%q,"IdentityId":%q}`, missing.pool, alice))
			}},
			{"PublishEvent", func() error {
				return adminCall(f, "POST", "/admin/v1/events", fmt.Sprintf(`{"IdentityPoolId":%q,"IdentityId":%q,"DatasetName":"settings","SyncCount":1}`, missing.pool, alice))
			}},
			{"ListIdentityDevices", func() error {
				return adminCall(f, "GET", devicesPath(missing.pool, alice), "")
			}},
			{"RemoveIdentityDevice", func() error {
				return adminCall(f, "DELETE", devicesPath(missing.pool, alice)+"/"+missing.deviceID, "")
			}},
		}
		for _, c := range calls {
			err := c.call()
			expectErr(t, missing.name+": "+c.name, err, "ResourceNotFoundException", http.StatusNotFound)
			if err != nil && !strings.Contains(err.Error(), missing.pool) {
				t.Errorf("%s: %s: %v, want a message naming the pool", missing.name, c.name, err)
			}
		}
	}
	if after := redisSnapshot(t, f); !maps.Equal(before, after) {
		t.Errorf("refused calls changed Redis:\nbefore %v\nafter  %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
	if n := published(); n != 0 {
		t.Errorf("refused calls published %d events, want none", n)
	}

	// The same write in the pool that exists is stored and published.
	out, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings"),
		SyncSessionToken: out.SyncSessionToken,
		RecordPatches:    []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("volume"), Value: aws.String("7"), SyncCount: aws.Int64(0)}}}); err != nil {
		t.Fatal(err)
	}
	if n := published(); n != 1 {
		t.Errorf("a write in a pool that exists published %d events, want 1", n)
	}
}

// adminCall sends a developer-signed admin API request and returns its
// error as the SDK would decode it, or nil for a 2xx answer.
func adminCall(f *fixture, method, path, body string) error {
	res := f.signed(method, path, body, api.AdminService, devKey, devSecret)
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode < 300 {
		return nil
	}
	var e struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, data)
	}
	return awserr.NewRequestFailure(awserr.New(e.Type, e.Message, nil), res.StatusCode, res.Header.Get("X-Amzn-RequestId"))
}

// redisSnapshot returns every key under the fixture's prefix with its
// serialized value.
func redisSnapshot(t *testing.T, f *fixture) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := f.rdb.Keys(ctx, f.prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	snap := make(map[string]string, len(keys))
	for _, k := range keys {
		v, err := f.rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		snap[k] = v
	}
	return snap
}

// publishing makes the event stream of a test's API server on js, and a
// publisher and a relay with opts for it; no sweep runs unless the test
// runs the relay.
func publishing(t *testing.T, js jetstream.JetStream, st *store.Store, stream, subject string, opts relay.Options) (*event.Publisher, *relay.Relay) {
	t.Helper()
	if _, err := event.EnsureStream(context.Background(), js, event.StreamConfig{Name: stream, SubjectPrefix: subject}); err != nil {
		t.Fatal(err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: stream, SubjectPrefix: subject})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := relay.New(st, pub, opts, zerolog.New(zerolog.NewTestWriter(t)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return pub, rel
}
