//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// TestChangesMadeWhileNATSIsDownArePublishedLater writes through the API
// while NATS is down: the write succeeds, and its event and pushes follow
// once NATS is back.
func TestChangesMadeWhileNATSIsDownArePublishedLater(t *testing.T) {
	s := newStack(t)
	s.cfg.Role = config.RoleAll
	s.cfg.API.Listen = "127.0.0.1:0"
	s.cfg.API.DeveloperAccessKeyID = devAccessKey
	s.cfg.API.DeveloperSecretAccessKey = devSecretKey
	s.start()
	creds, err := s.reg.IssueCredential(context.Background(), pool, alice, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sync := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + s.apiAddr), Region: aws.String("us-east-1"), MaxRetries: aws.Int(0),
		Credentials: credentials.NewStaticCredentials(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
	})))
	list, err := sync.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings")})
	if err != nil {
		t.Fatal(err)
	}

	s.ns.Shutdown()
	out, err := sync.UpdateRecords(&cognitosync.UpdateRecordsInput{
		IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings"),
		DeviceId: aws.String(s.devices["writer"].ID), SyncSessionToken: list.SyncSessionToken,
		RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("volume"), Value: aws.String("7"), SyncCount: aws.Int64(0)}},
	})
	if err != nil {
		t.Fatalf("UpdateRecords with NATS down: %v", err)
	}
	if len(out.Records) != 1 || aws.Int64Value(out.Records[0].SyncCount) != 1 {
		t.Fatalf("records %+v", out.Records)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(s.fcm.Pushes()) + len(s.prod.Pushes()) + len(s.sandbox.Pushes()); n != 0 {
		t.Fatalf("%d pushes while NATS was down", n)
	}

	s.ns.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.prod.WaitForPushes(ctx, 1); err != nil {
		t.Fatalf("APNs push after NATS came back: %v", err)
	}
	if _, err := s.sandbox.WaitForPushes(ctx, 1); err != nil {
		t.Fatalf("APNs sandbox push after NATS came back: %v", err)
	}
	fcm, err := s.fcm.WaitForPushes(ctx, 1)
	if err != nil {
		t.Fatalf("FCM push after NATS came back: %v", err)
	}
	if fcm[0].Token != "fcm-pixel-registration-token" || fcm[0].Data["syncCount"] != "1" {
		t.Fatalf("FCM push %+v (the writer must get none)", fcm[0])
	}
	s.waitMetric(1, "pushsync_relay_events_published_total", "path", "sweep")
}

// TestDeviceRemovedWhileNATSIsDownIsAnnouncedLater: an operator removes a
// device while NATS is down, and pushsyncd stops before NATS is back (its
// NATS client's buffer of unsent messages goes with it); the
// removal stands, and its DeviceRemoved event is published once NATS is
// back, not lost.
func TestDeviceRemovedWhileNATSIsDownIsAnnouncedLater(t *testing.T) {
	s := newStack(t)
	s.cfg.Role = config.RoleAll
	s.cfg.API.Listen = "127.0.0.1:0"
	s.cfg.API.DeveloperAccessKeyID = devAccessKey
	s.cfg.API.DeveloperSecretAccessKey = devSecretKey
	if _, err := s.reg.CreateIdentityPool(context.Background(), "", registry.IdentityPool{ID: pool, Name: "game"}); err != nil {
		t.Fatal(err)
	}
	s.start()
	tablet := s.devices["tablet"]

	s.ns.Shutdown()
	path := "/admin/v1/identitypools/" + url.PathEscape(pool) + "/identities/" + url.PathEscape(alice) + "/devices/" + tablet.ID
	req, err := http.NewRequest(http.MethodDelete, "http://"+s.apiAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v4.NewSigner(credentials.NewStaticCredentials(devAccessKey, devSecretKey, "")).Sign(req, nil, "pushsync", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("removing a device with NATS down: %d %s, want 200", res.StatusCode, body)
	}
	if reg, err := s.reg.Registration(context.Background(), pool, alice); err != nil || reg.Devices[tablet.ID].ID != "" {
		t.Fatalf("the tablet is still registered after its removal (%v)", err)
	}

	s.stop()
	s.ns.Restart()
	s.start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := event.DeviceRemoved{Version: event.Version, IdentityPoolID: pool, IdentityID: alice, DeviceID: tablet.ID,
		Platform: "GCM", Reason: event.ReasonRemovedByOperator}
	subject := event.DeviceRemovedSubject(s.cfg.NATS.DeviceSubjectPrefix, &want)
	for {
		stream, err := s.js.Stream(ctx, s.cfg.NATS.Stream)
		if err == nil {
			var msg *jetstream.RawStreamMsg
			if msg, err = stream.GetLastMsgForSubject(ctx, subject); err == nil {
				var got event.DeviceRemoved
				if err := json.Unmarshal(msg.Data, &got); err != nil {
					t.Fatalf("DeviceRemoved event %s: %v", msg.Data, err)
				}
				got.RemovedAt = time.Time{}
				if got != want {
					t.Fatalf("DeviceRemoved event %+v, want %+v", got, want)
				}
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no DeviceRemoved event for the device removed while NATS was down, a minute after NATS came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The note of the removal goes once its event is published.
	for {
		pending, err := s.reg.PendingRemovals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("removals still noted as unannounced after their events were published: %+v", pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
