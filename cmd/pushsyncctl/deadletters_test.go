package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/testenv"
)

// TestDeadLetters lets an event fail until its deliveries run out, lists
// it with pushsyncctl, fixes the cause and replays it.
func TestDeadLetters(t *testing.T) {
	d := startDaemon(t)
	const pool, identity = "us-east-1:0dead000-0000-4000-8000-000000000001", "us-east-1:0dead000-0000-4000-8000-000000000002"
	dev := d.subscribedFCMDevice("dl-android", pool, identity, "fcm-dead-letter-registration-token")
	if out := d.ctl("deadletter", "list"); !strings.Contains(out, "no dead letters") {
		t.Fatalf("list before: %s", out)
	}

	d.fcm.FailToken("fcm-dead-letter-registration-token", fcmtest.Internal())
	d.ctl("event", "publish", "-pool", pool, "-identity", identity, "-dataset", "settings", "-sync-count", "7")
	testenv.WaitMetric(t, d.http, 1, "pushsync_events_consumed_total", "result", "dead_lettered")
	list := d.ctl("deadletter", "list")
	if !strings.Contains(list, "retries exhausted: GCM INTERNAL") || !strings.Contains(list, "settings@7") || !strings.Contains(list, dev) {
		t.Fatalf("dead letter list, which must name the device not pushed, %s:\n%s", dev, list)
	}
	var letters struct {
		DeadLetters []struct {
			Devices []string `json:"devices"`
		} `json:"deadLetters"`
	}
	if out := d.ctl("-o", "json", "deadletter", "list"); json.Unmarshal([]byte(out), &letters) != nil ||
		len(letters.DeadLetters) != 1 || len(letters.DeadLetters[0].Devices) != 1 || letters.DeadLetters[0].Devices[0] != dev {
		t.Fatalf("deadletter list -o json: %s, want the letter naming the device %s", out, dev)
	}

	d.fcm.ClearFailures()
	if out := d.ctl("deadletter", "replay", "-all"); !strings.Contains(out, "replayed 1 dead letter(s)") {
		t.Fatalf("replay: %s", out)
	}
	testenv.WaitMetric(t, d.http, 1, "pushsync_events_consumed_total", "result", "delivered")
	pushes := d.fcm.Pushes()
	if len(pushes) != 1 || pushes[0].Token != "fcm-dead-letter-registration-token" || pushes[0].Data["syncCount"] != "7" {
		t.Fatalf("pushes after the replay: %+v", pushes)
	}
	if out := d.ctl("deadletter", "list"); !strings.Contains(out, "no dead letters") {
		t.Fatalf("list after the replay: %s", out)
	}
	d.ctlFail(d.env, 1, []string{"ResourceNotFoundException"}, "deadletter", "discard", "1")
	d.ctlFail(d.env, 1, []string{"ResourceNotFoundException", "no dead letter 999"}, "deadletter", "discard", "999")
	d.ctlFail(d.env, 2, []string{"deadletter replay"}, "deadletter", "replay", "1", "2")
}

// subscribedFCMDevice creates the identity pool pool and the FCM app app,
// makes app pool's app for GCM, registers a device of identity with token,
// subscribed to the dataset settings, and returns its DeviceId.
func (d *daemon) subscribedFCMDevice(app, pool, identity, token string) string {
	d.t.Helper()
	d.createPool(pool)
	d.serviceAccount("sa.json")
	d.ctl("app", "create", "-name", app, "-fcm-project", project, "-fcm-service-account-file", "sa.json")
	d.ctl("pool", "set-push", pool, "-gcm", app)
	dev := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", identity, "-platform", "GCM", "-token", token))
	d.ctl("device", "subscribe", "-pool", pool, "-identity", identity, "-dataset", "settings", "-device", dev)
	return dev
}

// deadLetterSeqs returns the sequences deadletter list -o json gives.
func (d *daemon) deadLetterSeqs() []uint64 {
	d.t.Helper()
	var list struct {
		DeadLetters []struct {
			Sequence uint64 `json:"sequence"`
		} `json:"deadLetters"`
	}
	out := d.ctl("-o", "json", "deadletter", "list")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		d.t.Fatalf("deadletter list -o json: %v\n%s", err, out)
	}
	seqs := make([]uint64, len(list.DeadLetters))
	for i, l := range list.DeadLetters {
		seqs[i] = l.Sequence
	}
	return seqs
}
