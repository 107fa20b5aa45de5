//go:build faults

package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// 7. APNs 410 Unregistered and FCM UNREGISTERED: the devices are gone from
// Redis within a second of the answer.
func TestDeadTokensRemovedWithinASecond(t *testing.T) {
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL})
	r.seedIdentities(2)
	r.setLatency(5 * time.Millisecond)
	w := r.startDaemon("worker", daemonConfig{})

	id := r.ids[0]
	var dead []registry.Device
	for _, d := range id.others {
		if (d.Platform == registry.APNS || d.Platform == registry.GCM) && len(dead) < 2 && (len(dead) == 0 || dead[0].Platform != d.Platform) {
			dead = append(dead, d)
		}
	}
	for _, d := range dead {
		if d.Platform == registry.APNS {
			r.prod.FailToken(d.Token, apnstest.Unregistered(time.Now())) // after the device registered
		} else {
			r.fcm.FailToken(d.Token, fcmtest.Unregistered())
		}
	}
	evs := r.nextEvents(2) // one per identity
	for _, d := range dead {
		for _, ev := range evs {
			delete(r.ledger.expected, push{token: d.Token, dataset: ev.DatasetName, syncCount: ev.SyncCount})
		}
	}
	r.publish(evs)

	ctx := context.Background()
	var notes []string
	for _, d := range dead {
		deadline := time.Now().Add(10 * time.Second)
		for {
			reg, err := r.reg.Registration(ctx, id.pool, id.id)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := reg.Devices[d.ID]; !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s device with a dead token still registered after 10s", d.Platform)
			}
			time.Sleep(5 * time.Millisecond)
		}
		gone := time.Now()
		var answered time.Time
		for _, h := range r.allHits() {
			if h.token == d.Token && (h.status == 410 || h.status == 404) {
				answered = h.end
			}
		}
		if answered.IsZero() {
			t.Fatalf("no dead-token answer seen for the %s device", d.Platform)
		}
		lag := gone.Sub(answered)
		if lag > time.Second {
			t.Errorf("%s device removed %s after the dead-token answer, want within 1s", d.Platform, lag)
		}
		notes = append(notes, fmt.Sprintf("%s removed %s after the answer", d.Platform, lag.Round(time.Millisecond)))
	}
	v, _ := r.settle(30 * time.Second)
	removed := w.metric("pushsync_devices_removed_total")
	report.add(t, row{"7. APNs 410 + FCM UNREGISTERED", len(evs), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("%s; devices removed %v; %s", notes, removed, v.summary())})
	assertLedger(t, v)
	assertNoDuplicates(t, v, w)
	if removed != 2 {
		t.Errorf("pushsync_devices_removed_total = %v, want 2", removed)
	}
}

// 8. A burst of 100 changes to one dataset: one or a few pushes per
// device, the last carrying the final sync count.
func TestBurstOfChangesToOneDataset(t *testing.T) {
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL})
	r.seedIdentities(1)
	r.setLatency(5 * time.Millisecond)
	r.startDaemon("worker", daemonConfig{coalesce: "500ms"})
	evs := r.nextEvents(100)
	r.publish(evs)
	v, took := r.settle(60 * time.Second)
	perDevice := map[string][]int64{}
	for _, p := range r.received() {
		perDevice[p.token] = append(perDevice[p.token], p.syncCount)
	}
	most := 0
	for tok, counts := range perDevice {
		most = max(most, len(counts))
		if counts[len(counts)-1] != 100 && maxOf(counts) != 100 {
			t.Errorf("device %s got %v, never the final sync count 100", tok, counts)
		}
	}
	report.add(t, row{"8. burst of 100 changes to one dataset (coalesce_window 500ms)", len(evs), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("%d devices, at most %d pushes each; settled in %s; %s", len(perDevice), most, took.Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
	if len(perDevice) != 4 || most > 5 {
		t.Errorf("pushes per device %v: want 4 devices with a few pushes each", perDevice)
	}
}

func maxOf(xs []int64) int64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
