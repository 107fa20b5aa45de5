package dispatcher_test

import (
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher"
)

// TestBudgetDeferralIsNotATry: a change deferred because its devices spent
// their push budget has not failed; its delivery must not count against
// MaxDeliver, or the deferral would dead-letter a change that the devices
// are promised to get once their window ends.
func TestBudgetDeferralIsNotATry(t *testing.T) {
	e := setup(t)
	const window = 1500 * time.Millisecond
	e.start(t, func(o *dispatcher.Options) {
		o.DeviceBudget = 1
		o.BudgetWindow = window
		o.MaxDeliver = 1
	})
	e.publish(t, "settings", 1, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	// The budget is spent: the second change is deferred, and then pushed.
	e.publish(t, "settings", 2, e.origin.ID)
	e.waitCounter(t, 3, "pushsync_pushes_total", "result", "deferred", "reason", "budget")
	deadline := time.Now().Add(10 * time.Second)
	for e.counter(t, "pushsync_events_consumed_total", "result", "delivered") < 2 {
		if n := e.counter(t, "pushsync_events_consumed_total", "result", "abandoned"); n != 0 {
			t.Fatalf("%v events abandoned: a deferral for the push budget counted as a failed try", n)
		}
		if time.Now().After(deadline) {
			t.Fatal("the deferred change was never pushed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range append(e.apns.all(), e.fcm.all()...) {
		if p.Event.SyncCount == 2 {
			return
		}
	}
	t.Fatal("no push carries the deferred change")
}
