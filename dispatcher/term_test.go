package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/sync/event"
)

// TestTerminationIsAPlainTerm: the dispatcher ends a malformed event and
// one whose tries ran out with a bare +TERM. NATS servers before 2.10.4
// take only that: a +TERM followed by a reason is ignored there, and the
// message came back after every AckWait, dead-lettered and logged again
// each time, for as long as the stream kept it.
func TestTerminationIsAPlainTerm(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dl := e.deadLetters(t)
	e.fcmDown()
	nc, _ := e.ns.Connect(t)
	acks, err := nc.SubscribeSync("$JS.ACK." + stream + ".dispatcher.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	e.start(t, func(o *dispatcher.Options) { o.MaxDeliver = 2; o.DeadLetters = dl })
	good := &event.DatasetChanged{Version: 1, IdentityPoolID: pool, IdentityID: identity, DatasetName: "settings", SyncCount: 9, ChangedAt: time.Now()}
	if _, err := e.js.Publish(ctx, event.Subject(prefix, good), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "dead_lettered")
	terms := 0
	for terms < 2 {
		msg, err := acks.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d terminations: %v", terms, err)
		}
		switch body := string(msg.Data); {
		case body == "+TERM":
			terms++
		case len(body) >= 5 && body[:5] == "+TERM":
			t.Fatalf("message terminated with %q; NATS servers before 2.10.4 ignore a +TERM with a reason", body)
		}
	}
}
