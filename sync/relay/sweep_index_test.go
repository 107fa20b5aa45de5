package relay_test

import (
	"context"
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
