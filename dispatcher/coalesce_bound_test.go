package dispatcher_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// TestCoalescingLeavesABurstToOtherWorkers: with coalescing on, the events
// waiting in a process's windows count towards what it holds. A burst
// larger than that is not all taken by the first worker process, to be
// pushed by its workers alone while the others sit idle: a second process
// on the consumer gets a share, and every change reaches its device, once.
func TestCoalescingLeavesABurstToOtherWorkers(t *testing.T) {
	e := setup(t)
	const identities, changes = 12, 3
	const events = identities * changes
	ctx := context.Background()
	ids := make([]string, identities)
	for i := range ids {
		ids[i] = fmt.Sprintf("us-east-1:%08d-2222-3333-4444-555555555555", i)
		d, _, err := e.reg.RegisterDevice(ctx, pool, ids[i], registry.GCM, fmt.Sprintf("fcm-burst-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.reg.Subscribe(ctx, pool, ids[i], "burst", d.ID); err != nil {
			t.Fatal(err)
		}
	}
	// Each process holds at most 4 × Workers events while coalescing.
	const workers, held = 2, 4 * 2
	opts := func(o *dispatcher.Options) { o.CoalesceWindow = time.Second; o.Workers = workers }
	e.start(t, opts)
	first := e.metrics
	for _, id := range ids {
		for n := int64(1); n <= changes; n++ {
			if _, err := e.pub.Publish(ctx, &event.DatasetChanged{
				IdentityPoolID: pool, IdentityID: id, DatasetName: "burst", SyncCount: n, ChangedAt: time.Now(),
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The first process fills its windows; it takes no more while they
	// are open.
	cons := mustConsumer(t, e)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending > held {
			t.Fatalf("the first process holds %d events, more than %d", info.NumAckPending, held)
		}
		if info.NumAckPending == held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first process holds %d events, want %d", info.NumAckPending, held)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.start(t, opts)
	second := e.metrics

	deadline = time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			if info.Delivered.Consumer != events {
				t.Fatalf("%d events were delivered %d times", events, info.Delivered.Consumer)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: ackPending=%d pending=%d", info.NumAckPending, info.NumPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	byFirst := counterIn(t, first, "pushsync_events_consumed_total")
	bySecond := counterIn(t, second, "pushsync_events_consumed_total")
	if byFirst+bySecond != events || bySecond == 0 {
		t.Fatalf("events consumed: %v by the first process, %v by the second; want %d, shared", byFirst, bySecond, events)
	}
	for _, g := range []float64{gaugeIn(t, first, "pushsync_events_coalescing"), gaugeIn(t, second, "pushsync_events_coalescing")} {
		if g != 0 {
			t.Fatalf("pushsync_events_coalescing = %v once every event settled, want 0", g)
		}
	}
	// Every device got its identity's newest change, and no change twice.
	got := map[string][]int64{}
	for _, p := range e.fcm.all() {
		got[p.Device.Token] = append(got[p.Device.Token], p.Event.SyncCount)
	}
	for i := range identities {
		counts := got[fmt.Sprintf("fcm-burst-%d", i)]
		slices.Sort(counts)
		if len(counts) == 0 || counts[len(counts)-1] != changes || len(slices.Compact(slices.Clone(counts))) != len(counts) {
			t.Errorf("fcm-burst-%d got sync counts %v: want the newest, %d, and none twice", i, counts, changes)
		}
	}
}
