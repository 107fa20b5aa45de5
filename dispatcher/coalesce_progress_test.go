package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushsync/pushsync/dispatcher"
)

// TestCoalescedEventWaitingForAWorkerIsNotRedelivered: an event whose
// coalescing window has closed while every worker is busy with slow pushes
// waits for a worker longer than AckWait. The broker must not take it for
// lost and deliver it again meanwhile: a second delivery is a second
// fan-out, and a step towards the delivery limit that no try used.
func TestCoalescedEventWaitingForAWorkerIsNotRedelivered(t *testing.T) {
	e := setup(t)
	e.apns.block = make(chan struct{})
	e.fcm.block = e.apns.block
	const ackWait = 2 * time.Second
	e.start(t, func(o *dispatcher.Options) {
		o.AckWait = ackWait
		o.CoalesceWindow = 100 * time.Millisecond
		o.Workers = 1
	})
	e.publish(t, "settings", 1, e.origin.ID)
	e.waitPushInFlight(t)
	// The only worker is busy: this event waits, its window long closed.
	e.publish(t, "other", 1, "")
	time.Sleep(3 * ackWait)
	close(e.apns.block)

	e.waitCounter(t, 2, "pushsync_events_consumed_total", "result", "delivered")
	e.expectDeliveredOnce(t, 2)
}

// waitPushInFlight waits until a push has started.
func (e *env) waitPushInFlight(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(gauge(t, e.metrics, "pushsync_pushes_in_flight")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first event's pushes never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectDeliveredOnce waits until the consumer has nothing pending or
// unacked, and checks that its events were delivered once each and that
// none was handled twice.
func (e *env) expectDeliveredOnce(t *testing.T, events int) {
	t.Helper()
	cons := mustConsumer(t, e)
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			if info.Delivered.Consumer != uint64(events) {
				t.Fatalf("%d events were delivered %d times: redelivered while they waited for a worker", events, info.Delivered.Consumer)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: ackPending=%d pending=%d", info.NumAckPending, info.NumPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "skipped", "reason", "already_sent"); n != 0 {
		t.Fatalf("%v pushes skipped as already sent: an event was handled twice", n)
	}
}
