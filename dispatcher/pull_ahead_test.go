package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(gauge(t, e.metrics, "pushsync_pushes_in_flight")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first event's pushes never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The only worker is busy: a backlog builds up behind it.
	const backlog = 4
	for i := range backlog {
		e.publish(t, "other", int64(i+1), "")
	}
	time.Sleep(3 * ackWait)
	close(e.apns.block)

	const events = 1 + backlog
	cons := mustConsumer(t, e)
	deadline = time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			if info.Delivered.Consumer != events {
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
