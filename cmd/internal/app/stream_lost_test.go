package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushsync/pushsync/sync/event"
)

// A NATS that comes back without its store (memory storage, a new disk or
// container) has lost the event stream and the dispatcher's consumer. The
// running process creates the stream again and consumes from it, so that
// events published from then on are pushed without a restart.
func TestEventStreamLostWithTheNATSStoreIsCreatedAgain(t *testing.T) {
	s := newStack(t)
	s.start()
	s.ns.RestartEmpty()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ev := &event.DatasetChanged{IdentityPoolID: pool, IdentityID: alice, DatasetName: "settings", SyncCount: 3,
		OriginDeviceID: s.devices["writer"].ID, ChangedAt: time.Now()}
	for {
		_, err := s.pub.Publish(ctx, ev)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the event stream was not created again: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := s.prod.WaitForPushes(ctx, 1); err != nil {
		t.Fatalf("no push for an event published to the stream created again: %v", err)
	}
	s.waitReady()
}
