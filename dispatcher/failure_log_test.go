package dispatcher_test

import (
	"strings"
	"testing"

	"github.com/pushsync/pushsync/dispatcher"
)

// TestPushFailuresAreNotLoggedOneByOne: while a push service keeps failing,
// each kind of failure (app, platform, class, reason) is logged once, not
// once per push, which in an outage would be a line per push; the metrics
// still count every failure.
func TestPushFailuresAreNotLoggedOneByOne(t *testing.T) {
	e := setup(t)
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		return &dispatcher.Error{Class: dispatcher.Retry, Reason: "UNAVAILABLE"}
	}
	e.apns.answer = func(p *dispatcher.Push, attempt int) error {
		return &dispatcher.Error{Class: dispatcher.Retry, Reason: "ServiceUnavailable"}
	}
	e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	// Five deliveries (MaxDeliver), each with its own tries of every push.
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "abandoned")
	fcm := e.counter(t, "pushsync_pushes_total", "platform", "GCM", "result", "retry", "reason", "UNAVAILABLE")
	apns := e.counter(t, "pushsync_pushes_total", "platform", "APNS", "result", "retry", "reason", "ServiceUnavailable")
	if fcm < 5 || apns < 5 {
		t.Fatalf("failures counted: FCM %v, APNs %v; want at least one per delivery", fcm, apns)
	}
	lines := e.logs.Lines("push not accepted")
	kinds := map[string]int{}
	for _, l := range lines {
		for _, reason := range []string{`"reason":"UNAVAILABLE"`, `"reason":"ServiceUnavailable"`} {
			if strings.Contains(l, reason) {
				kinds[reason]++
			}
		}
	}
	// APNS and APNS_SANDBOX are two platforms of the same app.
	if kinds[`"reason":"UNAVAILABLE"`] != 1 || kinds[`"reason":"ServiceUnavailable"`] != 2 || len(lines) != 3 {
		t.Errorf("%d lines logged for %v FCM and %v APNs failures, want one per kind (FCM, APNS, APNS_SANDBOX):\n%s",
			len(lines), fcm, apns, strings.Join(lines, ""))
	}
}
