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
// credentials and syncs under way keep working at every step, also for a
// process that is a step behind the others.
func TestMasterKeyRotation(t *testing.T) {
	d := startDaemon(t)
	d.pushApps()
	for _, dev := range []struct{ platform, token string }{{"APNS", tok(1)}, {"GCM", "fcm-pixel-registration-token"}} {
		id := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", alice, "-platform", dev.platform, "-token", dev.token))
		d.ctl("device", "subscribe", "-pool", pool, "-identity", alice, "-dataset", "settings", "-device", id)
	}
	// A client of alice's with credentials issued now, under the key the
	// process seals with.
	identityClient := func() *cognitosync.CognitoSync {
		t.Helper()
		var issued struct {
			Credentials struct{ AccessKeyId, SecretKey, SessionToken string }
		}
		if out := d.ctl("-o", "json", "credentials", "issue", "-pool", pool, "-identity", alice); json.Unmarshal([]byte(out), &issued) != nil || issued.Credentials.SessionToken == "" {
			t.Fatalf("credentials issue -o json printed:\n%s", out)
		}
		cr := issued.Credentials
		return cognitosync.New(session.Must(session.NewSession(&aws.Config{
			Endpoint: aws.String("http://" + d.api), Region: aws.String("us-east-1"),
			Credentials: credentials.NewStaticCredentials(cr.AccessKeyId, cr.SecretKey, cr.SessionToken), MaxRetries: aws.Int(0),
		})))
	}
	settings := &cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings")}
	write := func(c *cognitosync.CognitoSync, token *string, value string, syncCount int64) {
		t.Helper()
		if _, err := c.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
			DatasetName: aws.String("settings"), SyncSessionToken: token,
			RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("volume"), Value: aws.String(value), SyncCount: aws.Int64(syncCount)}},
		}); err != nil {
			t.Fatalf("UpdateRecords: %v", err)
		}
	}
	status := func(wantApps, wantCredentials, wantLine string) string {
		t.Helper()
		out := d.ctl("secrets", "status")
		if secretsRow(t, out, "apps") != wantApps || secretsRow(t, out, "credentials") != wantCredentials || !strings.Contains(out, wantLine) {
			t.Fatalf("secrets status: want apps %s, credentials %s and %q:\n%s", wantApps, wantCredentials, wantLine, out)
		}
		return out
	}
	oldOnly := fmt.Sprintf("{master_key: %q}", masterKey)
	phase1 := fmt.Sprintf("{master_key: %q, secondary_master_key: %q}", masterKey, newMasterKey)
	phase2 := fmt.Sprintf("{master_key: %q, secondary_master_key: %q}", newMasterKey, masterKey)
	newOnly := fmt.Sprintf("{master_key: %q}", newMasterKey)

	// Before: a sync starts, its session token signed with the old key.
	before := identityClient()
	listA, err := before.ListRecords(settings)
	if err != nil {
		t.Fatal(err)
	}
	status("2 2 0 0", "1 1 0 0", "the API process that answered has no secrets.secondary_master_key")

	// Step 1: every process learns the new key as secondary.
	d.restart(phase1)
	status("2 2 0 0", "1 1 0 0", "no record is under the secondary master key")

	// Step 2: the keys swap. The sync started before finishes, through
	// credentials sealed under the old key, and its change reaches both
	// devices through apps sealed under it. A new sync starts, signed with
	// the new key, with credentials sealed under it.
	d.restart(phase2)
	status("2 0 2 0", "1 0 1 0", "3 records are under the secondary master key: once every process has the new master_key, run pushsyncctl secrets reseal")
	write(before, listA.SyncSessionToken, "7", 0)
	d.waitPushes(1, 1)
	during := identityClient()
	listB, err := during.ListRecords(settings)
	if err != nil {
		t.Fatal(err)
	}
	// A process still at step 1 serves it: it opens those credentials and
	// checks that token with its secondary key.
	d.restart(phase1)
	write(during, listB.SyncSessionToken, "8", 1)
	d.waitPushes(2, 2)

	// Step 3: reseal, once every process is at step 2.
	d.restart(phase2)
	out := d.ctl("secrets", "reseal")
	if apps, cred := secretsRow(t, out, "apps"), secretsRow(t, out, "credentials"); apps != "2 2 0 0 2" || cred != "2 2 0 0 1" ||
		!strings.Contains(out, "no record is under the secondary master key") {
		t.Fatalf("secrets reseal:\n%s", out)
	}
	var rep secretsReport
	if err := json.Unmarshal([]byte(d.ctl("-o", "json", "secrets", "status")), &rep); err != nil || !rep.SecondaryKey ||
		rep.Apps.Secondary+rep.Credentials.Secondary != 0 || rep.Credentials.Current != 2 {
		t.Errorf("secrets status -o json after the reseal: %+v, %v", rep, err)
	}

	// Step 4: the old key goes; everything still opens.
	d.restart(newOnly)
	status("2 2 0 0", "2 2 0 0", "the API process that answered has no secrets.secondary_master_key")
	d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "3")
	d.waitPushes(3, 3)
	for _, c := range []*cognitosync.CognitoSync{before, during} {
		if _, err := c.ListDatasets(&cognitosync.ListDatasetsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice)}); err != nil {
			t.Fatalf("identity credentials after the rotation: %v", err)
		}
	}

	// A deployment that lost the new key says which records it cannot
	// open.
	d.restart(oldOnly)
	out = status("2 0 0 2", "2 0 0 2", "has no secrets.secondary_master_key")
	if !strings.Contains(out, "apps no configured key opens: game-android, game-ios") || !strings.Contains(out, "2 identity credentials no configured key opens") {
		t.Fatalf("secrets status under a key that opens nothing:\n%s", out)
	}
	// As it advises, registering an app's credentials again makes it
	// readable.
	d.ctl("app", "rotate", "game-ios", "-apns-topic", topic, "-apns-key-file", "key.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)
	out = status("2 1 0 1", "2 0 0 2", "has no secrets.secondary_master_key")
	if !strings.Contains(out, "apps no configured key opens: game-android (") {
		t.Fatalf("secrets status after app rotate game-ios:\n%s", out)
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

// TestResealWithoutSecondaryKeyFails: secrets reseal answered by a process
// with no secondary master key reseals nothing, so it fails (exit 1, after
// the report) rather than letting a rotation script go on to remove the
// old key as if step 3 had been done.
func TestResealWithoutSecondaryKeyFails(t *testing.T) {
	d := startDaemon(t)
	d.serviceAccount("sa.json")
	d.ctl("app", "create", "-name", "game-android", "-fcm-project", project, "-fcm-service-account-file", "sa.json")
	for _, args := range [][]string{{"secrets", "reseal"}, {"-o", "json", "secrets", "reseal"}} {
		r := d.ctlFail(d.env, 1, []string{"nothing was resealed", "secrets.secondary_master_key"}, args...)
		if !strings.Contains(r.stdout, "apps") {
			t.Errorf("pushsyncctl %s printed no report:\n%s", strings.Join(args, " "), r)
		}
	}
	if out := d.ctl("secrets", "status"); secretsRow(t, out, "apps") != "1 1 0 0" {
		t.Fatalf("secrets status:\n%s", out)
	}
}
