package dispatcher_test

import (
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher"
)

// TestShutdownHandsBackEveryOriginsCoalescedEvent: a worker stopping inside
// the window of two changes from two devices hands both events back
// untried, the older one too, which comes back for the newer one's origin.
// Counted as a try, the older one came back past its last delivery and was
// abandoned (or dead-lettered) untried, and the newer change's origin never
// learned of the older change.
func TestShutdownHandsBackEveryOriginsCoalescedEvent(t *testing.T) {
	e := setup(t)
	second := e.deviceID(t, "fcm-3")
	one := func(o *dispatcher.Options) { o.MaxDeliver = 1 }
	// A window the stop surely comes within, on a busy machine too: the
	// stop, not the window, ends it.
	stop := e.start(t, func(o *dispatcher.Options) { one(o); o.CoalesceWindow = time.Minute })
	e.publish(t, "settings", 5, second)
	e.publish(t, "settings", 6, e.origin.ID)
	e.waitCoalescing(t, 2)
	stop()

	e.start(t, one)
	pushed := func() bool {
		for _, p := range e.fcm.all() {
			if p.Event.SyncCount == 5 && p.Device.Token == "fcm-origin" {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !pushed(); time.Sleep(10 * time.Millisecond) {
		if n := e.counter(t, "pushsync_events_consumed_total", "result", "abandoned"); n != 0 || time.Now().After(deadline) {
			t.Fatalf("fcm-origin never got the change of fcm-3 handed back at the stop (%v events abandoned)", n)
		}
	}
}
