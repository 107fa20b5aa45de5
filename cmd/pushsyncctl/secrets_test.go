//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

// newMasterKey is the key the rotation moves to.
const newMasterKey = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

// secretsRow returns the numbers of one row of secrets status or reseal.
func secretsRow(t *testing.T, out, records string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == records {
			return strings.Join(f[1:], " ")
		}
	}
	t.Fatalf("no %s row in:\n%s", records, out)
	return ""
}

// TestMasterKeyRotation rotates the master key of a working deployment as
// docs/deploy.md tells an operator to, and checks that pushes, identity
// credentials and a sync under way keep working at every step.
func TestMasterKeyRotation(t *testing.T) {
	d := startDaemon(t)
	d.apnsKey("key.p8", "KEY1234567")
	d.serviceAccount("sa.json")
	d.ctl("app", "create", "-name", "game-ios", "-apns-topic", topic, "-apns-key-file", "key.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)
	d.ctl("app", "create", "-name", "game-android", "-fcm-project", project, "-fcm-service-account-file", "sa.json")
	d.ctl("pool", "set-push", pool, "-apns", "game-ios", "-gcm", "game-android")
	for _, dev := range []struct{ platform, token string }{{"APNS", tok(1)}, {"GCM", "fcm-pixel"}} {
		id := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", alice, "-platform", dev.platform, "-token", dev.token))
		d.ctl("device", "subscribe", "-pool", pool, "-identity", alice, "-dataset", "settings", "-device", id)
	}
	var issued struct {
		Credentials struct{ AccessKeyId, SecretKey, SessionToken string }
	}
	if out := d.ctl("-o", "json", "credentials", "issue", "-pool", pool, "-identity", alice); json.Unmarshal([]byte(out), &issued) != nil || issued.Credentials.SessionToken == "" {
		t.Fatalf("credentials issue -o json printed:\n%s", out)
	}
	cr := issued.Credentials
	client := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("us-east-1"),
		Credentials: credentials.NewStaticCredentials(cr.AccessKeyId, cr.SecretKey, cr.SessionToken), MaxRetries: aws.Int(0),
	})))
	// A sync starts before the rotation: its session token is signed under
	// the old key.
	list, err := client.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings")})
	if err != nil {
		t.Fatal(err)
	}

	out := d.ctl("secrets", "status")
	if apps, cred := secretsRow(t, out, "apps"), secretsRow(t, out, "credentials"); apps != "2 2 0 0" || cred != "1 1 0 0" ||
		!strings.Contains(out, "no record is under a previous master key") {
		t.Fatalf("secrets status before the rotation:\n%s", out)
	}

	// Step 1: every process gets the new key, with the old as previous.
	d.restart(fmt.Sprintf("{master_key: %q, previous_master_key: %q}", newMasterKey, masterKey))
	out = d.ctl("secrets", "status")
	if apps, cred := secretsRow(t, out, "apps"), secretsRow(t, out, "credentials"); apps != "2 0 2 0" || cred != "1 0 1 0" ||
		!strings.Contains(out, "3 records are under the previous master key: run pushsyncctl secrets reseal") {
		t.Fatalf("secrets status with the new key and the old as previous:\n%s", out)
	}
	// The sync started under the old key finishes, through credentials
	// sealed under it, and its change reaches both devices through apps
	// sealed under it.
	if _, err := client.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
		DatasetName: aws.String("settings"), SyncSessionToken: list.SyncSessionToken,
		RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("volume"), Value: aws.String("7"), SyncCount: aws.Int64(0)}},
	}); err != nil {
		t.Fatalf("UpdateRecords with a session token and credentials from before the rotation: %v", err)
	}
	d.waitPushes(1, 1)

	// Step 2: reseal.
	out = d.ctl("secrets", "reseal")
	if apps, cred := secretsRow(t, out, "apps"), secretsRow(t, out, "credentials"); apps != "2 2 0 0 2" || cred != "1 1 0 0 1" ||
		!strings.Contains(out, "secrets.previous_master_key can be removed") {
		t.Fatalf("secrets reseal:\n%s", out)
	}
	if out := d.ctl("-o", "json", "secrets", "status"); !strings.Contains(out, `"previous": 0`) && !strings.Contains(out, `"previous":0`) {
		t.Errorf("secrets status -o json after the reseal:\n%s", out)
	}

	// Step 3: the old key goes; everything still opens.
	d.restart(fmt.Sprintf("{master_key: %q}", newMasterKey))
	if out := d.ctl("secrets", "status"); secretsRow(t, out, "apps") != "2 2 0 0" || secretsRow(t, out, "credentials") != "1 1 0 0" {
		t.Fatalf("secrets status with the new key alone:\n%s", out)
	}
	d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "2")
	d.waitPushes(2, 2)
	if _, err := client.ListDatasets(&cognitosync.ListDatasetsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice)}); err != nil {
		t.Fatalf("identity credentials after the rotation: %v", err)
	}

	// A deployment that lost the old key before resealing says which
	// records it cannot open.
	d.restart(fmt.Sprintf("{master_key: %q}", masterKey))
	out = d.ctl("secrets", "status")
	if secretsRow(t, out, "apps") != "2 0 0 2" || !strings.Contains(out, "apps no configured key opens: game-android, game-ios") {
		t.Fatalf("secrets status under a key that opens nothing:\n%s", out)
	}
}

// waitPushes waits until the APNs production and the FCM emulators have
// received apns and fcm pushes.
func (d *daemon) waitPushes(apns, fcm int) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.prod.WaitForPushes(ctx, apns); err != nil {
		d.t.Fatalf("APNs pushes: %d, want %d: %v", len(d.prod.Pushes()), apns, err)
	}
	if _, err := d.fcm.WaitForPushes(ctx, fcm); err != nil {
		d.t.Fatalf("FCM pushes: %d, want %d: %v", len(d.fcm.Pushes()), fcm, err)
	}
}
