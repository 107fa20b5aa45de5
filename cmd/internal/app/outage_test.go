//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"

	"github.com/pushsync/pushsync/config"
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
