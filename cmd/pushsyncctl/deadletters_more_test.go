package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/testenv"
)

// TestDeadLetterListSaysWhenMoreFollow: a list cut short by -limit says so
// and how to list the rest, so that an operator does not take the first
// page of dead letters for all of them; a list that shows the last one
// says nothing more, and the empty page after it says none follow it.
func TestDeadLetterListSaysWhenMoreFollow(t *testing.T) {
	d := startDaemon(t)
	const pool, identity = "us-east-1:0dead000-0000-4000-8000-000000000021", "us-east-1:0dead000-0000-4000-8000-000000000022"
	const token = "fcm-dead-letter-page-registration-token"
	d.subscribedFCMDevice("dlp-android", pool, identity, token)
	d.fcm.FailToken(token, fcmtest.Internal())
	for i := 1; i <= 2; i++ {
		d.ctl("event", "publish", "-pool", pool, "-identity", identity, "-dataset", "settings", "-sync-count", fmt.Sprint(i))
		testenv.WaitMetric(t, d.http, float64(i), "pushsync_events_consumed_total", "result", "dead_lettered")
	}
	seqs := d.deadLetterSeqs()
	if len(seqs) != 2 {
		t.Fatalf("dead letters: %v, want two", seqs)
	}
	first, second := seqs[0], seqs[1]

	more := fmt.Sprintf("deadletter list -after %d", first)
	if out := d.ctl("deadletter", "list", "-limit", "1"); !strings.Contains(out, "settings@1") || strings.Contains(out, "settings@2") || !strings.Contains(out, more) {
		t.Errorf("list -limit 1 of 2 dead letters does not point to the rest (%q):\n%s", more, out)
	}
	for _, args := range [][]string{{"-limit", "2"}, {"-after", fmt.Sprint(first), "-limit", "1"}} {
		out := d.ctl(append([]string{"deadletter", "list"}, args...)...)
		if strings.Contains(out, "-after") || !strings.Contains(out, fmt.Sprintf("%d ", second)) || !strings.Contains(out, "settings@2") {
			t.Errorf("list %v, which shows the last dead letter, says more follow or lacks it:\n%s", args, out)
		}
	}
	// The page after the last says there are none after it, not none at
	// all.
	if out := d.ctl("deadletter", "list", "-after", fmt.Sprint(second)); out != fmt.Sprintf("no dead letters after %d\n", second) {
		t.Errorf("list -after the last dead letter: %q", out)
	}
}
