package dispatcher_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/sync/event"
)

// shortLivedStream gives the test's event stream a max age of maxAge: the
// stream deletes every event that old, delivered or not.
func (e *env) shortLivedStream(t *testing.T, maxAge time.Duration) {
	t.Helper()
	if _, err := event.EnsureStream(context.Background(), e.js, event.StreamConfig{
		Name: stream, SubjectPrefix: prefix, Storage: jetstream.FileStorage, MaxAge: maxAge, Duplicates: time.Second,
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRetriesThatWouldOutliveTheStreamAreDeadLettered: without a push TTL
// an event is retried as long as its deliveries last, but the stream
// deletes it at its max age whether it waits for a retry or not. An event
// whose next try would come after that is kept as a dead letter, not left
// for the stream to delete unseen.
func TestRetriesThatWouldOutliveTheStreamAreDeadLettered(t *testing.T) {
	e := setup(t)
	e.shortLivedStream(t, 6*time.Second)
	dl := e.deadLetters(t)
	e.fcmDown()
	e.start(t, func(o *dispatcher.Options) {
		o.DeadLetters, o.PushTTL, o.MaxDeliver = dl, 0, -1
		o.AckWait = 2 * time.Second
		o.RetryDelay, o.MaxRetryDelay = 3*time.Second, 3*time.Second
	})
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "dead_lettered")
	letters, err := dl.List(context.Background(), 0, 10)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters %+v %v", letters, err)
	}
	if r := letters[0].Reason; !strings.HasPrefix(r, "the event stream deletes it before the next try") {
		t.Fatalf("dead letter reason %q", r)
	}
}

// TestBudgetNeverOutlivesTheStream: without a push TTL, a push deferred by
// the device's budget until after the stream deletes its event would never
// come; it goes at once, over the budget.
func TestBudgetNeverOutlivesTheStream(t *testing.T) {
	e := setup(t)
	e.shortLivedStream(t, 6*time.Second)
	e.start(t, func(o *dispatcher.Options) {
		o.PushTTL = 0
		o.AckWait = 2 * time.Second
		o.DeviceBudget = 1
		o.BudgetWindow = time.Hour
	})
	e.publish(t, "settings", 1, e.origin.ID) // spends every device's budget
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	e.publish(t, "settings", 2, e.origin.ID)
	e.waitCounter(t, 2, "pushsync_events_consumed_total", "result", "delivered")
	if n := e.counter(t, "pushsync_pushes_total", "result", "deferred"); n != 0 {
		t.Fatalf("%v pushes deferred past the stream's max age", n)
	}
	if got := len(e.allTokens()); got != 6 {
		t.Fatalf("%d pushes, want 6: both changes to the 3 devices", got)
	}
}
