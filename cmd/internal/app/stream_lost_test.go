package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
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

// The dead-letter stream lost with the NATS store is created again too,
// when the next event's pushes fail on its last delivery, instead of that
// event coming back from the broker for good, its dead letter refused.
func TestDeadLetterStreamLostWithTheNATSStoreIsCreatedAgain(t *testing.T) {
	s := newStack(t)
	s.cfg.Dispatcher.MaxDeliver = 1
	s.fcm.FailToken("fcm-pixel-registration-token", fcmtest.Failure{HTTPStatus: 503, Status: "UNAVAILABLE"})
	s.start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deadLetters := func() uint64 {
		st, err := s.js.Stream(ctx, s.cfg.NATS.DeadLetterStream)
		if err != nil {
			return 0
		}
		info, err := st.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	waitDeadLetter := func(what string) {
		t.Helper()
		for deadLetters() != 1 {
			if ctx.Err() != nil {
				t.Fatalf("%s: no dead letter stored", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	s.publish(alice, "settings", 1, s.devices["writer"].ID)
	waitDeadLetter("before NATS lost its store")

	s.ns.RestartEmpty()
	ev := &event.DatasetChanged{IdentityPoolID: pool, IdentityID: alice, DatasetName: "settings", SyncCount: 2,
		OriginDeviceID: s.devices["writer"].ID, ChangedAt: time.Now()}
	for {
		if _, err := s.pub.Publish(ctx, ev); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("the event stream was not created again: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitDeadLetter("after NATS lost its store")
}
