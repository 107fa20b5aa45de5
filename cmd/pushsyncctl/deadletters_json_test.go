package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/testenv"
)

// deadletter replay and discard answer -o json with JSON, as every other
// command does, naming the dead letters they replayed or discarded.
func TestDeadLetterReplayAndDiscardPrintJSON(t *testing.T) {
	d := startDaemon(t)
	const pool, identity = "us-east-1:0dead000-0000-4000-8000-000000000011", "us-east-1:0dead000-0000-4000-8000-000000000012"
	const token = "fcm-dead-letter-json-registration-token"
	d.subscribedFCMDevice("dlj-android", pool, identity, token)

	decode := func(out string) map[string][]uint64 {
		t.Helper()
		var v map[string][]uint64
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("output is not the JSON wanted: %v\n%s", err, out)
		}
		return v
	}
	deadLetter := func(syncCount string, n float64) uint64 {
		t.Helper()
		d.ctl("event", "publish", "-pool", pool, "-identity", identity, "-dataset", "settings", "-sync-count", syncCount)
		testenv.WaitMetric(t, d.http, n, "pushsync_events_consumed_total", "result", "dead_lettered")
		seqs := d.deadLetterSeqs()
		if len(seqs) != 1 {
			t.Fatalf("dead letters: %v, want one", seqs)
		}
		return seqs[0]
	}

	if got := decodeReplayReport(t, d.ctl("-o", "json", "deadletter", "replay", "-all")); got.Replayed == nil || len(got.Replayed) != 0 {
		t.Errorf("replay -all of none: %+v, want an empty replayed list", got)
	}
	d.fcm.FailToken(token, fcmtest.Internal())
	first := deadLetter("1", 1)
	if got := decode(d.ctl("-o", "json", "deadletter", "discard", fmt.Sprint(first))); !slices.Equal(got["discarded"], []uint64{first}) {
		t.Errorf("discard %d: %v", first, got)
	}
	second := deadLetter("2", 2)
	d.fcm.ClearFailures()
	if got := decodeReplayReport(t, d.ctl("-o", "json", "deadletter", "replay", "-all")); !slices.Equal(got.Replayed, []uint64{second}) {
		t.Errorf("replay -all: %+v, want [%d] replayed", got, second)
	}
	d.waitDelivered(1)
	d.fcm.FailToken(token, fcmtest.Internal())
	third := deadLetter("3", 3)
	d.fcm.ClearFailures()
	if got := decodeReplayReport(t, d.ctl("-o", "json", "deadletter", "replay", fmt.Sprint(third))); !slices.Equal(got.Replayed, []uint64{third}) {
		t.Errorf("replay %d: %+v, want it replayed", third, got)
	}
}
