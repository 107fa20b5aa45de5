package relay_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/cognito"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/relay"
	"github.com/pushsync/pushsync/sync/store"
)

// recorder records the names of the commands a Redis client sends,
// pipelined ones included.
type recorder struct {
	mu    sync.Mutex
	names []string
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.add(cmd)
		return next(ctx, cmd)
	}
}

func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			r.add(c)
		}
		return next(ctx, cmds)
	}
}

func (r *recorder) add(c redis.Cmder) {
	r.mu.Lock()
	r.names = append(r.names, strings.ToLower(c.Name()))
	r.mu.Unlock()
}

// take returns how many of each command were sent since the last take.
func (r *recorder) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, n := range r.names {
		out[n]++
	}
	r.names = nil
	return out
}

// sweepSetup returns a store on Redis (with a recorder of its commands)
// that dates its commits a minute ago, a relay and the event stream.
func sweepSetup(t *testing.T) (*store.Store, *redis.Client, string, *recorder, *relay.Relay, func() uint64) {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	rec := &recorder{}
	rdb.AddHook(rec)
	st := store.New(rdb, store.Options{KeyPrefix: prefix, Now: aMinuteAgo, SweepWindow: sweepWindow})
	_, js := testenv.StartNATS(t).Connect(t)
	if _, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: stream, SubjectPrefix: subject}); err != nil {
		t.Fatal(err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: stream, SubjectPrefix: subject})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(st, pub, relay.Options{Interval: 50 * time.Millisecond}, zerolog.New(zerolog.NewTestWriter(t)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	msgs := func() uint64 {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	return st, rdb, prefix, rec, r, msgs
}

func write(t *testing.T, st *store.Store, id, dataset string, sc int64) error {
	t.Helper()
	_, _, err := st.UpdateRecords(context.Background(), store.Update{IdentityPoolID: pool, IdentityID: id, DatasetName: dataset, DeviceID: "dev", ModifiedBy: "dev",
		Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v", SyncCount: sc}}})
	return err
}

// indexed returns the members of the outbox's sweep index.
func indexed(t *testing.T, rdb *redis.Client, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, cognito.EscapeGlob(prefix)+":{sweep:outbox:*}").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		m, err := rdb.ZRange(ctx, k, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	return out
}

// TestSweepReadsPendingWorkNotTheKeyspace: a sweep finds the changes left
// unpublished without a SCAN, reading only the identities the writes
// noted, and drops them from the index once published, so that the next
// sweep reads nothing at all. A sweep that SCANs every master's keyspace
// takes minutes at hundreds of millions of keys, in every process.
func TestSweepReadsPendingWorkNotTheKeyspace(t *testing.T) {
	ctx := context.Background()
	st, rdb, prefix, rec, r, msgs := sweepSetup(t)
	for _, id := range []string{alice, bob} {
		for _, ds := range []string{"a", "b"} {
			if err := write(t, st, id, ds, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	claimable()
	rec.take()
	published, err := r.Sweep(ctx)
	if err != nil || published != 4 {
		t.Fatalf("sweep published %d, error %v; want the 4 changes left behind", published, err)
	}
	sent := rec.take()
	if sent["scan"] != 0 {
		t.Errorf("the sweep sent %d SCANs (commands %v); it must read only the pending work", sent["scan"], sent)
	}
	if sent["hgetall"] != 2 {
		t.Errorf("the sweep read %d outboxes (commands %v), want 2, those of alice and bob", sent["hgetall"], sent)
	}
	if n := msgs(); n != 4 {
		t.Errorf("the stream holds %d events, want 4", n)
	}
	if in := indexed(t, rdb, prefix); len(in) != 0 {
		t.Errorf("the sweep index holds %q after every change was published, want nothing", in)
	}
	claimable()
	if published, err := r.Sweep(ctx); err != nil || published != 0 {
		t.Fatalf("second sweep published %d, error %v; want nothing", published, err)
	}
	if sent := rec.take(); sent["scan"] != 0 || sent["hgetall"] != 0 {
		t.Errorf("a sweep with nothing pending sent %v; want no SCAN and no outbox read", sent)
	}
}

// TestSweepDropsTheNoteOfAWriteThatNeverCommitted: a write noted in the
// sweep index whose commit did not happen (here refused as a conflict, as
// after a crash between the note and the commit) leaves only its note,
// which a sweep drops without publishing anything.
func TestSweepDropsTheNoteOfAWriteThatNeverCommitted(t *testing.T) {
	ctx := context.Background()
	st, rdb, prefix, _, r, msgs := sweepSetup(t)
	if err := write(t, st, alice, "a", 7); err == nil {
		t.Fatal("a write with a wrong sync count was committed")
	}
	if in := indexed(t, rdb, prefix); len(in) != 1 || in[0] != pool+"/"+alice {
		t.Fatalf("the sweep index holds %q, want alice's note", in)
	}
	claimable()
	if published, err := r.Sweep(ctx); err != nil || published != 0 {
		t.Fatalf("sweep published %d, error %v; want nothing", published, err)
	}
	if in := indexed(t, rdb, prefix); len(in) != 0 {
		t.Errorf("the sweep index still holds %q", in)
	}
	if n := msgs(); n != 0 {
		t.Errorf("the stream holds %d events, want none", n)
	}
}

// TestRunPublishesMarkersOfAnEarlierVersion: markers an earlier version
// left, which no note in the sweep index names, are found by the SCAN a
// relay makes once when it starts, and published.
func TestRunPublishesMarkersOfAnEarlierVersion(t *testing.T) {
	ctx := context.Background()
	st, rdb, prefix, _, r, msgs := sweepSetup(t)
	if err := write(t, st, alice, "a", 0); err != nil {
		t.Fatal(err)
	}
	// As an earlier version left it: the marker, and no note.
	keys, err := rdb.Keys(ctx, cognito.EscapeGlob(prefix)+":{sweep:outbox:*}").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("sweep index keys %q (%v), want alice's one", keys, err)
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	claimable()
	if published, err := r.Sweep(ctx); err != nil || published != 0 {
		t.Fatalf("sweep published %d, error %v; the change is in no note, so want nothing yet", published, err)
	}

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); msgs() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay's Run did not publish the change an earlier version left, within 10s")
		}
	}
	if n := msgs(); n != 1 {
		t.Errorf("the stream holds %d events, want 1, alice's", n)
	}
}

// TestRestartDoesNotScanAgain: once a relay's Run has adopted the markers
// of an earlier version, recording that in Redis, a Run started later (a
// restart, or another process) does not SCAN the keyspace. A marker left
// without a note after that, as a process of the earlier version still
// running during a rolling upgrade writes, waits for AdoptUnindexed to be
// run again (pushsyncd adopt), which finds it.
func TestRestartDoesNotScanAgain(t *testing.T) {
	ctx := context.Background()
	st, rdb, prefix, rec, r, msgs := sweepSetup(t)
	run := func() func() {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(rctx) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	for deadline := time.Now().Add(10 * time.Second); rdb.Exists(ctx, prefix+":{sweep:adopted:outbox}").Val() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay's first Run did not record its adoption within 10s")
		}
	}
	stop()

	// A process of the earlier version writes alice's marker, and no note.
	if err := write(t, st, alice, "a", 0); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, cognito.EscapeGlob(prefix)+":{sweep:outbox:*}").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("sweep index keys %q (%v), want alice's one", keys, err)
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	// bob's change, noted, is published by the restarted Run's sweeps,
	// which come after its adoption.
	if err := write(t, st, bob, "b", 0); err != nil {
		t.Fatal(err)
	}
	rec.take()
	stop = run()
	defer func() { stop() }()
	for deadline := time.Now().Add(10 * time.Second); msgs() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the restarted Run did not publish bob's change within 10s")
		}
	}
	if n := rec.take()["scan"]; n != 0 {
		t.Fatalf("the restarted Run sent %d SCANs, want none: the adoption was recorded done", n)
	}
	if n := msgs(); n != 1 {
		t.Fatalf("the stream holds %d events, want bob's only: alice's marker is in no note", n)
	}

	a, err := st.AdoptUnindexed(ctx, true)
	if err != nil || a.Skipped || a.Adopted != 1 {
		t.Fatalf("AdoptUnindexed run again: %+v, %v; want alice's outbox adopted", a, err)
	}
	for deadline := time.Now().Add(10 * time.Second); msgs() < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the change alice's earlier version left was not published within 10s of its adoption")
		}
	}
}

// TestBusyIdentityPublishesTheChangeItLeftBehind: a change whose publish
// failed (NATS was stopped) is published at a later write of its
// identity, while that identity goes on writing another dataset every
// second. A sweep claims an identity only once it has not been written
// for twice the sweep window, which such an identity never is: waiting
// for it would hold the change back until the identity goes quiet.
func TestBusyIdentityPublishesTheChangeItLeftBehind(t *testing.T) {
	ctx := context.Background()
	const window = 2 * time.Second
	rdb, prefix := testenv.Redis(t)
	st := store.New(rdb, store.Options{KeyPrefix: prefix, SweepWindow: window})
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	if _, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: stream, SubjectPrefix: subject}); err != nil {
		t.Fatal(err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: stream, SubjectPrefix: subject})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(st, pub, relay.Options{Interval: time.Second, PublishTimeout: 500 * time.Millisecond, Grace: time.Second},
		zerolog.New(zerolog.NewTestWriter(t)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	defer func() { cancel(); <-done }()

	update := func(dataset string, sc int64) store.Change {
		t.Helper()
		_, c, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: alice, DatasetName: dataset, DeviceID: "dev", ModifiedBy: "dev",
			Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v", SyncCount: sc}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// NATS stops: a publish of bob's finds it so, and alice's change is
	// then left unpublished, not even tried (a publish tried while NATS
	// is down may still reach the stream, from the client's buffer).
	srv.Shutdown()
	_, other, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: bob, DatasetName: "other", DeviceID: "dev", ModifiedBy: "dev",
		Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Deliver(ctx, other); err == nil {
		t.Fatal("a change was published with NATS stopped")
	}
	stuck := update("stuck", 0)
	if err := r.Deliver(ctx, stuck); !errors.Is(err, relay.ErrUnreachable) {
		t.Fatalf("publishing a change right after NATS was found unreachable: %v, want relay.ErrUnreachable", err)
	}
	srv.Restart()

	onStream := func() bool {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		e := &event.DatasetChanged{IdentityPoolID: pool, IdentityID: alice, DatasetName: "stuck"}
		msg, err := s.GetLastMsgForSubject(ctx, event.Subject(subject, e))
		if err != nil {
			return false
		}
		ev, err := event.Decode(subject, msg.Subject, msg.Data)
		return err == nil && ev.SyncCount == stuck.SyncCount
	}
	start := time.Now()
	for sc := int64(0); time.Since(start) < 2*window+2*time.Second; sc++ {
		c := update("busy", sc)
		if err := r.Deliver(ctx, c); err != nil {
			t.Logf("publishing the busy dataset's change %d: %v", c.SyncCount, err)
		}
		if onStream() {
			t.Logf("the change left behind was on the stream %v after the writes resumed", time.Since(start).Round(time.Millisecond))
			if cs, err := st.PendingChanges(ctx, pool, alice); err != nil || slices.ContainsFunc(cs, func(c store.Change) bool { return c.DatasetName == "stuck" }) {
				t.Errorf("alice's outbox after the change left behind was published: %+v (%v), want its marker cleared", cs, err)
			}
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("the change left unpublished was not on the stream after %v of writes of its identity every second: it waits for the identity to go quiet",
		time.Since(start).Round(time.Millisecond))
}
