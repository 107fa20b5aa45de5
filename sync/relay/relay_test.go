package relay_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/cognito"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/relay"
	"github.com/pushsync/pushsync/sync/store"
)

const (
	pool    = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	alice   = "us-east-1:11111111-2222-3333-4444-555555555555"
	bob     = "us-east-1:66666666-7777-8888-9999-000000000000"
	stream  = "RELAY_TEST"
	subject = "relaytest.changed"
	// sweepWindow is the stores' sweep window: a sweep claims a change
	// twice that after its write.
	sweepWindow = 20 * time.Millisecond
)

// claimable waits until the changes written so far can be claimed by a
// sweep.
func claimable() { time.Sleep(2*sweepWindow + 10*time.Millisecond) }

// TestSweepSkipsCorruptMarker: a marker that cannot be read is logged,
// counted and skipped, and the sweep still publishes every other change,
// rather than failing on it each time and publishing none.
func TestSweepSkipsCorruptMarker(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	st := store.New(rdb, store.Options{KeyPrefix: prefix, Now: aMinuteAgo, SweepWindow: sweepWindow})
	_, js := testenv.StartNATS(t).Connect(t)
	if _, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: stream, SubjectPrefix: subject}); err != nil {
		t.Fatal(err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: stream, SubjectPrefix: subject})
	if err != nil {
		t.Fatal(err)
	}

	// Two committed changes whose events were never published; one of the
	// markers is then damaged.
	for _, id := range []string{alice, bob} {
		u := store.Update{IdentityPoolID: pool, IdentityID: id, DatasetName: "settings", DeviceID: "dev", ModifiedBy: "dev",
			Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}
		if _, _, err := st.UpdateRecords(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	outbox := prefix + ":" + cognito.HashTag(pool, alice) + ":outbox"
	if n, err := rdb.HSet(ctx, outbox, "settings", "garbage").Result(); err != nil || n != 0 {
		t.Fatalf("damaging the marker: %d fields added, %v (the key layout changed?)", n, err)
	}

	logs := &testenv.LogBuffer{}
	reg := prometheus.NewRegistry()
	r, err := relay.New(st, pub, relay.Options{}, zerolog.New(logs), reg)
	if err != nil {
		t.Fatal(err)
	}
	claimable()
	published, err := r.Sweep(ctx)
	if err != nil || published != 1 {
		t.Fatalf("sweep published %d, error %v; want bob's change published and no error", published, err)
	}

	if ev, n := lastEvent(t, js); ev.IdentityID != bob || ev.SyncCount != 1 || n != 1 {
		t.Errorf("stream holds %d events, the last %s@%d; want 1, %s@1", n, ev.IdentityID, ev.SyncCount, bob)
	}

	got := gaugeValue(t, reg, "pushsync_relay_corrupt_markers")
	if got != 1 {
		t.Errorf("pushsync_relay_corrupt_markers = %v, want 1", got)
	}
	if l := logs.String(); !strings.Contains(l, alice) || !strings.Contains(l, "garbage") {
		t.Errorf("the skipped marker is not logged with its identity and value:\n%s", l)
	}

	// The next change of the dataset replaces the damaged marker.
	u := store.Update{IdentityPoolID: pool, IdentityID: alice, DatasetName: "settings", DeviceID: "dev", ModifiedBy: "dev",
		Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "w", SyncCount: 1}}}
	if _, _, err := st.UpdateRecords(ctx, u); err != nil {
		t.Fatal(err)
	}
	claimable()
	if published, err := r.Sweep(ctx); err != nil || published != 1 {
		t.Fatalf("second sweep published %d, error %v; want alice's new change", published, err)
	}
	if got := gaugeValue(t, reg, "pushsync_relay_corrupt_markers"); got != 0 {
		t.Errorf("pushsync_relay_corrupt_markers = %v after the marker was replaced, want 0", got)
	}
}

// lastEvent returns the last event on the stream and how many it holds.
func lastEvent(t *testing.T, js jetstream.JetStream) (*event.DatasetChanged, uint64) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, subject+".>")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.Decode(subject, msg.Subject, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ev, info.State.Msgs
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// countingPublisher counts the publishes tried through the real publisher.
type countingPublisher struct {
	*event.Publisher
	tries atomic.Int32
}

func (p *countingPublisher) Publish(ctx context.Context, e *event.DatasetChanged) (*jetstream.PubAck, error) {
	p.tries.Add(1)
	return p.Publisher.Publish(ctx, e)
}

// aMinuteAgo dates a store's commits a minute back: changes a sweep finds
// left behind, rather than still being published by their request.
func aMinuteAgo() time.Time { return time.Now().Add(-time.Minute) }

// countingSetup returns a store on Redis that dates its commits by now, a
// NATS server with the event stream and a connection to it, and a
// publisher to the stream that counts its tries.
func countingSetup(t *testing.T, now func() time.Time) (*store.Store, *testenv.NATS, jetstream.JetStream, *countingPublisher) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	if _, err := event.EnsureStream(context.Background(), js, event.StreamConfig{Name: stream, SubjectPrefix: subject}); err != nil {
		t.Fatal(err)
	}
	p, err := event.NewPublisher(js, event.PublisherOptions{Stream: stream, SubjectPrefix: subject})
	if err != nil {
		t.Fatal(err)
	}
	return store.New(rdb, store.Options{KeyPrefix: prefix, Now: now, SweepWindow: sweepWindow}), srv, js, &countingPublisher{Publisher: p}
}

// TestSweepStopsPublishingWhileNATSIsDown: with NATS down, a sweep tries
// one publish, not one per pending change each waiting out its timeout,
// still counts every pending change, and leaves them all marked; once
// NATS is back, the next sweep publishes each of them.
func TestSweepStopsPublishingWhileNATSIsDown(t *testing.T) {
	ctx := context.Background()
	st, srv, js, pub := countingSetup(t, aMinuteAgo)
	reg := prometheus.NewRegistry()
	r, err := relay.New(st, pub, relay.Options{PublishTimeout: 300 * time.Millisecond}, zerolog.New(zerolog.NewTestWriter(t)), reg)
	if err != nil {
		t.Fatal(err)
	}

	srv.Shutdown()
	datasets := []string{"a", "b", "c", "d"}
	for _, ds := range datasets {
		for _, id := range []string{alice, bob} {
			u := store.Update{IdentityPoolID: pool, IdentityID: id, DatasetName: ds, DeviceID: "dev", ModifiedBy: "dev",
				Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}
			if _, _, err := st.UpdateRecords(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	pending := 2 * len(datasets)
	claimable()
	published, err := r.Sweep(ctx)
	if err == nil || published != 0 {
		t.Fatalf("sweep with NATS down published %d, error %v; want none published and an error", published, err)
	}
	t.Logf("sweep with NATS down: %v", err)
	if n := pub.tries.Load(); n != 1 {
		t.Errorf("sweep with NATS down tried %d publishes, want 1 (it stops at the first that finds NATS unreachable)", n)
	}
	if got := gaugeValue(t, reg, "pushsync_relay_pending_changes"); got != float64(pending) {
		t.Errorf("pushsync_relay_pending_changes = %v with NATS down, want %d", got, pending)
	}
	for _, id := range []string{alice, bob} {
		if cs, err := st.PendingChanges(ctx, pool, id); err != nil || len(cs) != len(datasets) {
			t.Fatalf("%s has %d changes marked (%v), want %d", id, len(cs), err, len(datasets))
		}
	}

	srv.Restart()
	// Left by the failed sweep, the changes are claimed again a while after.
	published = 0
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var n int
		n, err = r.Sweep(ctx)
		published += n
		if (err == nil && published >= pending) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || published != pending {
		t.Fatalf("sweep with NATS back published %d, error %v; want %d", published, err, pending)
	}
	if got := gaugeValue(t, reg, "pushsync_relay_pending_changes"); got != 0 {
		t.Errorf("pushsync_relay_pending_changes = %v after the sweep, want 0", got)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(pending) {
		t.Errorf("stream holds %d events, want %d", info.State.Msgs, pending)
	}
}

// TestDeliverDoesNotWaitWhileNATSIsDown: once a publish on the request path
// has found NATS unreachable, the next changes (within the sweep interval)
// are not published there, each waiting out the publish timeout, but left
// marked for the sweep, which publishes them when NATS is back; then the
// request path publishes again.
func TestDeliverDoesNotWaitWhileNATSIsDown(t *testing.T) {
	ctx := context.Background()
	st, srv, _, pub := countingSetup(t, aMinuteAgo)
	// Sweeps are the test's own; the interval is how long the request
	// path leaves publishing to them after finding NATS down.
	r, err := relay.New(st, pub, relay.Options{Interval: time.Hour, PublishTimeout: 300 * time.Millisecond}, zerolog.New(zerolog.NewTestWriter(t)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	write := func(dataset string) store.Change {
		t.Helper()
		u := store.Update{IdentityPoolID: pool, IdentityID: alice, DatasetName: dataset, DeviceID: "dev", ModifiedBy: "dev",
			Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}
		_, c, err := st.UpdateRecords(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	srv.Shutdown()
	for i, ds := range []string{"a", "b", "c", "d"} {
		err := r.Deliver(ctx, write(ds))
		if err == nil {
			t.Fatalf("change %d delivered with NATS down", i+1)
		}
		if i > 0 && !errors.Is(err, relay.ErrUnreachable) {
			t.Errorf("change %d: %v, want ErrUnreachable after the first publish found NATS down", i+1, err)
		}
	}
	if n := pub.tries.Load(); n != 1 {
		t.Errorf("4 changes with NATS down tried %d publishes, want 1", n)
	}
	if cs, err := st.PendingChanges(ctx, pool, alice); err != nil || len(cs) != 4 {
		t.Fatalf("%d changes marked (%v), want 4", len(cs), err)
	}

	srv.Restart()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		claimable()
		published, err := r.Sweep(ctx)
		if err == nil {
			if published != 4 {
				t.Fatalf("sweep with NATS back published %d, want 4", published)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweep with NATS back: %v", err)
		}
	}
	if err := r.Deliver(ctx, write("e")); err != nil {
		t.Fatalf("a change after NATS came back: %v", err)
	}
	if cs, err := st.PendingChanges(ctx, pool, alice); err != nil || len(cs) != 0 {
		t.Errorf("%d changes still marked (%v), want none", len(cs), err)
	}
}

// TestSweepLeavesFreshChangesToTheRequestPath: a sweep does not publish a
// change committed within the grace period, which its request may be
// publishing still, nor count it as pending or left behind; it publishes
// one committed longer ago.
func TestSweepLeavesFreshChangesToTheRequestPath(t *testing.T) {
	ctx := context.Background()
	var committed atomic.Int64
	st, _, js, pub := countingSetup(t, func() time.Time { return time.Unix(0, committed.Load()) })
	reg := prometheus.NewRegistry()
	r, err := relay.New(st, pub, relay.Options{Grace: time.Minute}, zerolog.New(zerolog.NewTestWriter(t)), reg)
	if err != nil {
		t.Fatal(err)
	}
	for id, at := range map[string]time.Time{alice: time.Now(), bob: time.Now().Add(-2 * time.Minute)} {
		committed.Store(at.UnixNano())
		u := store.Update{IdentityPoolID: pool, IdentityID: id, DatasetName: "settings", DeviceID: "dev", ModifiedBy: "dev",
			Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}
		if _, _, err := st.UpdateRecords(ctx, u); err != nil {
			t.Fatal(err)
		}
	}

	claimable()
	published, err := r.Sweep(ctx)
	if err != nil || published != 1 {
		t.Fatalf("sweep published %d, error %v; want bob's change, committed before the grace period, alone", published, err)
	}
	if n := pub.tries.Load(); n != 1 {
		t.Errorf("sweep tried %d publishes, want 1", n)
	}
	if got := gaugeValue(t, reg, "pushsync_relay_pending_changes"); got != 0 {
		t.Errorf("pushsync_relay_pending_changes = %v, want 0: alice's change is her request's to publish", got)
	}
	if cs, err := st.PendingChanges(ctx, pool, alice); err != nil || len(cs) != 1 {
		t.Errorf("alice has %d changes marked (%v), want her fresh one", len(cs), err)
	}
	if ev, n := lastEvent(t, js); ev.IdentityID != bob || n != 1 {
		t.Errorf("stream holds %d events, the last %s's; want 1, bob's", n, ev.IdentityID)
	}
}

// TestSweepDoesNotPublishAgainAChangeStoredBeforeTheDuplicateWindow: a
// change whose event the stream stored, but whose marker stayed (the
// process was killed between the publish and the clear), is found by a
// sweep after the stream's duplicate window, when JetStream no longer
// recognises its id; the sweep clears the marker and stores no second
// event. A change left behind as long whose event the stream does not hold
// is published.
func TestSweepDoesNotPublishAgainAChangeStoredBeforeTheDuplicateWindow(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	st := store.New(rdb, store.Options{KeyPrefix: prefix, Now: aMinuteAgo, SweepWindow: sweepWindow})
	_, js := testenv.StartNATS(t).Connect(t)
	const window = time.Second
	if _, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: stream, SubjectPrefix: subject, Duplicates: window}); err != nil {
		t.Fatal(err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: stream, SubjectPrefix: subject})
	if err != nil {
		t.Fatal(err)
	}
	changes := map[string]store.Change{}
	for _, id := range []string{alice, bob} {
		u := store.Update{IdentityPoolID: pool, IdentityID: id, DatasetName: "settings", DeviceID: "dev", ModifiedBy: "dev",
			Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}
		_, c, err := st.UpdateRecords(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		changes[id] = c
	}
	// Alice's request published her change and died before clearing its
	// marker; bob's died before publishing.
	c := changes[alice]
	if _, err := pub.Publish(ctx, &event.DatasetChanged{IdentityPoolID: c.IdentityPoolID, IdentityID: c.IdentityID,
		DatasetName: c.DatasetName, SyncCount: c.SyncCount, OriginDeviceID: c.OriginDeviceID, ChangedAt: c.ChangedAt}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(window + 500*time.Millisecond) // the stream forgets the id

	reg := prometheus.NewRegistry()
	r, err := relay.New(st, pub, relay.Options{DuplicateWindow: window}, zerolog.New(zerolog.NewTestWriter(t)), reg)
	if err != nil {
		t.Fatal(err)
	}
	claimable()
	published, err := r.Sweep(ctx)
	if err != nil || published != 1 {
		t.Fatalf("sweep published %d, error %v; want 1, bob's change", published, err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{alice, bob} {
		e := &event.DatasetChanged{IdentityPoolID: pool, IdentityID: id, DatasetName: "settings"}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(event.Subject(subject, e)))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[event.Subject(subject, e)]; n != 1 {
			t.Errorf("the stream holds %d events of %s's change, want 1", n, id)
		}
		if cs, err := st.PendingChanges(ctx, pool, id); err != nil || len(cs) != 0 {
			t.Errorf("%s has %d changes marked (%v) after the sweep, want none", id, len(cs), err)
		}
	}
	if got := gaugeValue(t, reg, "pushsync_relay_pending_changes"); got != 0 {
		t.Errorf("pushsync_relay_pending_changes = %v after the sweep, want 0", got)
	}
}
