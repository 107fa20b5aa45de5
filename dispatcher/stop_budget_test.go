package dispatcher_test

import (
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher"
)

// TestShutdownWithDevicesWaitingForTheirBudget: an event cut short by a
// stop, with some of its devices waiting for their push budget and none
// whose push failed, goes back to the broker untried like one with no
// device waiting; it is not a try, so neither is it the last one, abandoned
// (or dead-lettered) with the pushes the stop kept from beginning never
// made.
func TestShutdownWithDevicesWaitingForTheirBudget(t *testing.T) {
	e := setup(t)
	budget := func(o *dispatcher.Options) { o.DeviceBudget = 1; o.BudgetWindow = time.Hour; o.MaxDeliver = 1 }
	// fcm-3 makes the first change: the three others spend their budget
	// on it, fcm-3 keeps its own.
	stop := e.start(t, budget)
	e.publish(t, "settings", 1, e.deviceID(t, "fcm-3"))
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	stop()

	// The second change, from fcm-origin, waits out its coalescing window
	// when the worker stops: fcm-3's push is not begun, the two APNs
	// devices wait for their budget.
	// A window the stop surely comes within, on a busy machine too: the
	// stop, not the window, ends it.
	stop = e.start(t, func(o *dispatcher.Options) { budget(o); o.CoalesceWindow = time.Minute })
	e.publish(t, "settings", 2, e.origin.ID)
	deadline := time.Now().Add(5 * time.Second)
	for len(e.logs.Lines("coalescing window opened")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no coalescing window opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	for _, result := range []string{"abandoned", "dead_lettered"} {
		if n := e.counter(t, "pushsync_events_consumed_total", "result", result); n != 0 {
			t.Fatalf("%v events %s in the stop: handed back with devices waiting for their budget, the event counted as its last try", n, result)
		}
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "skipped", "reason", "stopping"); n != 1 {
		t.Fatalf("pushes skipped for the stop = %v, want fcm-3's", n)
	}

	// The next worker pushes fcm-3.
	e.start(t, budget)
	pushed := func() bool {
		for _, p := range e.fcm.all() {
			if p.Event.SyncCount == 2 && p.Device.Token == "fcm-3" {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !pushed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("fcm-3 never got the second change")
		}
	}
}
