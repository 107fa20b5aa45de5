package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
)

// deviceRow returns the line of device list's text output that starts with
// the DeviceId.
func deviceRow(t *testing.T, out, id string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, id+" ") {
			return strings.Join(strings.Fields(line), " ")
		}
	}
	t.Fatalf("no row of device %s in:\n%s", id, out)
	return ""
}

// TestDeviceListAndRemove follows an operator helping a user whose device
// gets no pushes: device list shows the identity's devices, what each is
// subscribed to and the sync counts pushed to it after real pushes, and
// device remove takes a device off with its subscriptions, so that it
// gets no more pushes.
func TestDeviceListAndRemove(t *testing.T) {
	d := startDaemon(t)
	d.pushApps()

	if out := d.ctl("device", "list", "-pool", pool, "-identity", alice); out != "no devices registered for identity "+alice+" in pool "+pool+"\n" {
		t.Errorf("device list before any device: %q", out)
	}
	if out := strings.TrimSpace(d.ctl("-o", "json", "device", "list", "-pool", pool, "-identity", alice)); !strings.Contains(out, `"devices": []`) {
		t.Errorf("device list -o json before any device: %s", out)
	}
	const phoneToken = "fcm-phone-registration-token"
	ipad := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", alice, "-platform", "APNS", "-token", tok(1)))
	phone := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", alice, "-platform", "GCM", "-token", phoneToken))
	bobs := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", bob, "-platform", "GCM", "-token", "fcm-bob-registration-token"))
	d.ctl("device", "subscribe", "-pool", pool, "-identity", alice, "-dataset", "settings", "-device", ipad)
	d.ctl("device", "subscribe", "-pool", pool, "-identity", alice, "-dataset", "scores", "-device", ipad)
	d.ctl("device", "subscribe", "-pool", pool, "-identity", alice, "-dataset", "settings", "-device", phone)

	// A change made on the phone pushes to the iPad; a change of scores
	// too, the phone not being subscribed to it.
	d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "5", "-origin", phone)
	d.waitDelivered(1)
	d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "scores", "-sync-count", "2")
	d.waitDelivered(2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.prod.WaitForPushes(ctx, 2); err != nil {
		t.Fatal(err)
	}

	out := d.ctl("device", "list", "-pool", pool, "-identity", alice)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "DEVICE") || !strings.Contains(lines[0], "TOKEN") {
		t.Fatalf("device list:\n%s", out)
	}
	if row := deviceRow(t, out, ipad); !strings.HasPrefix(row, ipad+" APNS 20") || !strings.HasSuffix(row, " scores (2), settings (5) "+tok(1)) {
		t.Errorf("device list row of the iPad: %q", row)
	}
	if row := deviceRow(t, out, phone); !strings.HasPrefix(row, phone+" GCM 20") || !strings.HasSuffix(row, " settings (none) "+phoneToken) {
		t.Errorf("device list row of the phone: %q", row)
	}
	if strings.Contains(out, bobs) {
		t.Errorf("alice's device list shows bob's device:\n%s", out)
	}
	var list struct {
		Devices []deviceView `json:"devices"`
	}
	if err := json.Unmarshal([]byte(d.ctl("-o", "json", "device", "list", "-pool", pool, "-identity", alice)), &list); err != nil {
		t.Fatal(err)
	}
	byID := map[string]deviceView{}
	for _, dv := range list.Devices {
		byID[dv.DeviceID] = dv
	}
	if dv := byID[ipad]; len(list.Devices) != 2 || dv.Platform != "APNS" || dv.Token != tok(1) || dv.RegisteredAt.IsZero() ||
		len(dv.Subscriptions) != 2 || dv.Subscriptions[0].DatasetName != "scores" || dv.Subscriptions[0].SentSyncCount != 2 ||
		dv.Subscriptions[1].DatasetName != "settings" || dv.Subscriptions[1].SentSyncCount != 5 {
		t.Errorf("device list -o json: %+v", list)
	}

	// Removed, the iPad is listed no more, and a change goes only to the
	// phone.
	if out := d.ctl("device", "remove", "-pool", pool, "-identity", alice, "-device", ipad); out != "removed device "+ipad+" of identity "+alice+"\n" {
		t.Errorf("device remove: %q", out)
	}
	out = d.ctl("device", "list", "-pool", pool, "-identity", alice)
	if strings.Contains(out, ipad) || !strings.Contains(out, phone) {
		t.Errorf("device list after removing the iPad:\n%s", out)
	}
	d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "settings", "-sync-count", "6")
	d.ctl("event", "publish", "-pool", pool, "-identity", alice, "-dataset", "scores", "-sync-count", "3")
	d.waitDelivered(3)
	// No device is subscribed to scores any more.
	testenv.WaitMetric(t, d.http, 1, "pushsync_events_consumed_total", "result", "no_subscribers")
	if _, err := d.fcm.WaitForPushes(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if p, f := len(d.prod.Pushes()), d.fcm.Pushes(); p != 2 || len(f) != 1 || f[0].Token != phoneToken || f[0].Data["syncCount"] != "6" {
		t.Errorf("pushes after removing the iPad: %d to APNs, want 2 as before; FCM %+v, want one of sync count 6 to the phone", p, f)
	}
	d.ctlFail(d.env, 1, []string{"pushsyncctl: ResourceNotFoundException: ", ipad}, "device", "remove", "-pool", pool, "-identity", alice, "-device", ipad)
	// Bob's device is not alice's.
	d.ctlFail(d.env, 1, []string{"pushsyncctl: ResourceNotFoundException: ", bobs}, "device", "remove", "-pool", pool, "-identity", alice, "-device", bobs)
	if out := d.ctl("device", "list", "-pool", pool, "-identity", bob); !strings.Contains(out, bobs) {
		t.Errorf("bob's devices:\n%s", out)
	}
	if out := d.ctl("-o", "json", "device", "remove", "-pool", pool, "-identity", bob, "-device", bobs); strings.TrimSpace(out) != "{}" {
		t.Errorf("device remove -o json: %q", out)
	}
}

// device list and device remove refuse malformed ids, a pool that does not
// exist and identity credentials, saying so.
func TestDeviceCommandErrors(t *testing.T) {
	d := startDaemon(t)
	typo := pool[:len(pool)-1] + "1"
	for _, c := range []struct {
		want []string
		args []string
	}{
		{[]string{"InvalidParameterException", "IdentityPoolId"}, []string{"device", "list", "-pool", "not-a-pool", "-identity", alice}},
		{[]string{"InvalidParameterException", "IdentityId"}, []string{"device", "list", "-pool", pool, "-identity", "alice"}},
		{[]string{"InvalidParameterException", "IdentityId"}, []string{"device", "remove", "-pool", pool, "-identity", "us-east-1/..", "-device", "x"}},
		{[]string{"InvalidParameterException", "DeviceId", "white space"}, []string{"device", "remove", "-pool", pool, "-identity", alice, "-device", "a b"}},
		{[]string{"InvalidParameterException", "IdentityPoolId", `".."`}, []string{"device", "list", "-pool", "..", "-identity", alice}},
		{[]string{"InvalidParameterException", "IdentityId", `"."`}, []string{"device", "remove", "-pool", pool, "-identity", ".", "-device", "x"}},
		{[]string{"ResourceNotFoundException", "device not found: .."}, []string{"device", "remove", "-pool", pool, "-identity", alice, "-device", ".."}},
		// The ids "." and ".." of other commands are sent as ids too.
		{[]string{"InvalidParameterException", `".."`}, []string{"identitypool", "show", ".."}},
		{[]string{"ResourceNotFoundException", "identity pool not found: ."}, []string{"identitypool", "delete", "."}},
		{[]string{"ResourceNotFoundException", "platform app not found: .."}, []string{"app", "show", ".."}},
		{[]string{"ResourceNotFoundException", "identity pool not found", typo}, []string{"device", "list", "-pool", typo, "-identity", alice}},
		{[]string{"ResourceNotFoundException", "identity pool not found", typo}, []string{"device", "remove", "-pool", typo, "-identity", alice, "-device", "5cd28fbe-0000-4000-8000-000000000001"}},
	} {
		d.ctlFail(d.env, 1, append([]string{"pushsyncctl: "}, c.want...), c.args...)
	}

	var creds struct {
		Credentials struct{ AccessKeyId, SecretKey, SessionToken string }
	}
	if err := json.Unmarshal([]byte(d.ctl("-o", "json", "credentials", "issue", "-pool", pool, "-identity", alice)), &creds); err != nil {
		t.Fatal(err)
	}
	idEnv := d.with("AWS_ACCESS_KEY_ID", creds.Credentials.AccessKeyId, "AWS_SECRET_ACCESS_KEY", creds.Credentials.SecretKey, "AWS_SESSION_TOKEN", creds.Credentials.SessionToken)
	d.ctlFail(idEnv, 1, []string{"pushsyncctl: NotAuthorizedException: ", "developer credentials"}, "device", "list", "-pool", pool, "-identity", alice)
	d.ctlFail(idEnv, 1, []string{"pushsyncctl: NotAuthorizedException: ", "developer credentials"}, "device", "remove", "-pool", pool, "-identity", alice, "-device", "5cd28fbe-0000-4000-8000-000000000001")
}
