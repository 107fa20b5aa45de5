//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"

	"github.com/pushsync/pushsync/config"
)

const (
	devAccessKey = "AKIAPUSHSYNCE2E0001"
	devSecretKey = "e2e-developer-secret-000"
)

// TestDeviceRegisteredThroughTheSDKReceivesPushes registers and subscribes
// devices with the AWS SDK's Cognito Sync client, as a mobile app does,
// then checks that a change reaches them as silent pushes.
func TestDeviceRegisteredThroughTheSDKReceivesPushes(t *testing.T) {
	s := newStack(t)
	s.cfg.Role = config.RoleAll
	s.cfg.API.Listen = "127.0.0.1:0"
	s.cfg.API.DeveloperAccessKeyID = devAccessKey
	s.cfg.API.DeveloperSecretAccessKey = devSecretKey
	s.start()
	ctx := context.Background()
	carol := "us-east-1:ca201000-2222-3333-4444-555555555555"
	creds, err := s.reg.IssueCredential(ctx, pool, carol, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sync := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint:    aws.String("http://" + s.apiAddr),
		Region:      aws.String("eu-west-1"),
		Credentials: credentials.NewStaticCredentials(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
		MaxRetries:  aws.Int(0),
	})))
	register := func(platform, token string) string {
		out, err := sync.RegisterDevice(&cognitosync.RegisterDeviceInput{
			IdentityPoolId: aws.String(pool), IdentityId: aws.String(carol), Platform: aws.String(platform), Token: aws.String(token)})
		if err != nil {
			t.Fatalf("RegisterDevice %s: %v", platform, err)
		}
		if _, err := sync.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{
			IdentityPoolId: aws.String(pool), IdentityId: aws.String(carol), DatasetName: aws.String("profile.v1"), DeviceId: out.DeviceId}); err != nil {
			t.Fatalf("SubscribeToDataset: %v", err)
		}
		return aws.StringValue(out.DeviceId)
	}
	register("APNS", strings.ToUpper(tok(41))) // iOS SDKs send upper-case hex
	register("GCM", "fcm-carol-phone-registration-token")
	writer := register("APNS_SANDBOX", tok(42))

	s.publish(carol, "profile.v1", 12, writer)
	s.waitMetric(1, "pushsync_events_consumed_total", "result", "delivered")
	prod, sandbox, fcm := s.prod.Pushes(), s.sandbox.Pushes(), s.fcm.Pushes()
	if len(prod) != 1 || prod[0].DeviceToken != tok(41) || len(fcm) != 1 || fcm[0].Token != "fcm-carol-phone-registration-token" || len(sandbox) != 0 {
		t.Fatalf("pushes: production %d, FCM %d, sandbox %d (the writer's)", len(prod), len(fcm), len(sandbox))
	}
	want := fmt.Sprintf(`"identityId":%q,"datasetName":"profile.v1","syncCount":12`, carol)
	if !strings.Contains(string(prod[0].Payload), want) || fcm[0].Data["syncCount"] != "12" || fcm[0].Data["identityId"] != carol {
		t.Fatalf("payloads %s / %v", prod[0].Payload, fcm[0].Data)
	}

	// Unsubscribed through the SDK: no more pushes to that device.
	if _, err := sync.UnsubscribeFromDataset(&cognitosync.UnsubscribeFromDatasetInput{
		IdentityPoolId: aws.String(pool), IdentityId: aws.String(carol), DatasetName: aws.String("profile.v1"), DeviceId: aws.String(writer)}); err != nil {
		t.Fatal(err)
	}
	s.publish(carol, "profile.v1", 13, "")
	s.waitMetric(2, "pushsync_events_consumed_total", "result", "delivered")
	if len(s.sandbox.Pushes()) != 0 || len(s.prod.Pushes()) != 2 || len(s.fcm.Pushes()) != 2 {
		t.Fatalf("after unsubscribe: production %d, FCM %d, sandbox %d", len(s.prod.Pushes()), len(s.fcm.Pushes()), len(s.sandbox.Pushes()))
	}
}
