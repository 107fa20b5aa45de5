package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher"
)

// TestEventsPulledAheadAreNotRedelivered: under a backlog, while every
// worker is busy with pushes slower than AckWait, the events the process
// pulled ahead of its workers wait longer than AckWait. The broker must
// not take them for lost and deliver them again meanwhile: a second
// delivery is a second fan-out, and a step towards the delivery limit
// that no try used.
func TestEventsPulledAheadAreNotRedelivered(t *testing.T) {
	e := setup(t)
	e.apns.block = make(chan struct{})
	e.fcm.block = e.apns.block
	const ackWait = 2 * time.Second
	e.start(t, func(o *dispatcher.Options) {
		o.AckWait = ackWait
		o.Workers = 1
		o.SendTimeout = 4 * ackWait
	})
	e.publish(t, "settings", 1, e.origin.ID)
	e.waitPushInFlight(t)
	// The only worker is busy: a backlog builds up behind it.
	const backlog = 4
	for i := range backlog {
		e.publish(t, "other", int64(i+1), "")
	}
	time.Sleep(3 * ackWait)
	close(e.apns.block)

	const events = 1 + backlog
	e.expectDeliveredOnce(t, events)
}

// TestEventHandedBackAtShutdownKeepsItsTries: an event pulled but not yet
// handled when its worker stops is handed back to the broker, which counts
// that as a delivery. It must not count as a try: with one try allowed, the
// event is pushed after the restart, not dead-lettered untried.
func TestEventHandedBackAtShutdownKeepsItsTries(t *testing.T) {
	e := setup(t)
	e.apns.block = make(chan struct{})
	e.fcm.block = e.apns.block
	opts := func(o *dispatcher.Options) {
		o.Workers = 1
		o.MaxDeliver = 1
	}
	stop := e.start(t, opts)
	e.publish(t, "settings", 1, e.origin.ID)
	e.waitPushInFlight(t)
	// The only worker is busy: the second event waits for it when the
	// worker stops, and is handed back untried.
	e.publish(t, "other", 1, "")
	cons := mustConsumer(t, e)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second event was not pulled: ackPending=%d", info.NumAckPending)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(100 * time.Millisecond)
	close(e.apns.block)
	<-stopped
	pushed := len(e.allTokens())

	e.start(t, opts)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "abandoned"); n != 0 {
		t.Fatalf("%v events abandoned: the delivery handed back at shutdown counted as a try", n)
	}
	if got := len(e.allTokens()) - pushed; got != 2 {
		t.Fatalf("%d pushes for the second event after the restart, want 2", got)
	}
}
