package dispatcher_test

import (
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher"
)

// TestSuspensionOfAnUnusedAppEnds: an app suspended for refused credentials
// that nothing is sent through any more (deleted, or its pool moved to
// another app) stops showing as suspended a backoff after its suspension
// ran out, rather than raising pushsync_app_suspended until the process
// restarts.
func TestSuspensionOfAnUnusedAppEnds(t *testing.T) {
	e := setup(t)
	e.apns.answer = func(*dispatcher.Push, int) error {
		return &dispatcher.Error{Class: dispatcher.Config, Reason: "InvalidProviderToken"}
	}
	e.start(t, func(o *dispatcher.Options) { o.ConfigBackoff = 300 * time.Millisecond; o.MaxDeliver = 1 })
	e.publish(t, "settings", 5, e.origin.ID) // the one and only event: given up at once
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "abandoned")
	if v := gaugeValue(t, e, "pushsync_app_suspended"); v != 1 {
		t.Fatalf("pushsync_app_suspended = %v right after the refusal, want 1", v)
	}
	deadline := time.Now().Add(10 * time.Second)
	for gaugeValue(t, e, "pushsync_app_suspended") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("pushsync_app_suspended still 1 for an app nothing is sent through")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(e.logs.Lines("no longer shown as suspended")) == 0 {
		t.Error("the end of the suspension is not logged")
	}
}
