package removals_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/cognito"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/removals"
)

const (
	pool     = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	identity = "us-east-1:11111111-2222-3333-4444-555555555555"
	stream   = "REMOVALS_TEST"
	// sweepWindow is the registry's sweep window: a sweep claims a removal
	// twice that after it.
	sweepWindow = 20 * time.Millisecond
)

// claimable waits until the removals made so far can be claimed.
func claimable() { time.Sleep(2*sweepWindow + 10*time.Millisecond) }

// scans counts the SCANs a Redis client sends, pipelined ones included.
type scans struct {
	mu sync.Mutex
	n  int
}

func (s *scans) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *scans) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		s.add(cmd)
		return next(ctx, cmd)
	}
}

func (s *scans) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			s.add(c)
		}
		return next(ctx, cmds)
	}
}

func (s *scans) add(c redis.Cmder) {
	if strings.EqualFold(c.Name(), "scan") {
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
	}
}

func (s *scans) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

type rig struct {
	reg    *registry.Registry
	rdb    *redis.Client
	prefix string
	scans  *scans
	sw     *removals.Sweeper
	events func() uint64
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	sc := &scans{}
	rdb.AddHook(sc)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, SweepWindow: sweepWindow,
		Now: func() time.Time { return time.Now().Add(-time.Minute) }})
	_, js := testenv.StartNATS(t).Connect(t)
	cfg := event.StreamConfig{Name: stream, SubjectPrefix: "removalstest.changed", DeviceSubjectPrefix: "removalstest.devices", Storage: jetstream.MemoryStorage}
	if _, err := event.EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: cfg.Name, SubjectPrefix: cfg.SubjectPrefix, DeviceSubjectPrefix: cfg.DeviceSubjectPrefix})
	if err != nil {
		t.Fatal(err)
	}
	events := func() uint64 {
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
	return &rig{reg: reg, rdb: rdb, prefix: prefix, scans: sc, events: events,
		sw: &removals.Sweeper{Registry: reg, Publisher: pub, Interval: 50 * time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t))}}
}

// indexKeys are the keys of the registry's sweep index that hold anything.
func (r *rig) indexKeys(t *testing.T) []string {
	t.Helper()
	keys, err := r.rdb.Keys(context.Background(), cognito.EscapeGlob(r.prefix)+":{sweep:removed:*}").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSweepPublishesRemovalsLeftBehindWithoutAScan: the event of a removal
// whose remover did not publish it is published by a sweep that reads the
// sweep index and the identities it names, never SCANning the keyspace;
// the index is empty afterwards. A removal of a device that does not exist
// (as a crash between the note and the removal) leaves only a note, which
// the sweep drops.
func TestSweepPublishesRemovalsLeftBehindWithoutAScan(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	d, _, err := r.reg.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-token")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.reg.RemoveDevice(ctx, pool, identity, d.ID, event.ReasonRemovedByOperator); err != nil {
		t.Fatal(err)
	}
	other := "us-east-1:66666666-7777-8888-9999-000000000000"
	if _, err := r.reg.RemoveDevice(ctx, pool, other, "no-such-device", event.ReasonRemovedByOperator); err == nil {
		t.Fatal("removed a device that does not exist")
	}
	claimable()
	before := r.scans.count()
	n, err := r.sw.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep published %d, error %v; want the one removal left behind", n, err)
	}
	if s := r.scans.count() - before; s != 0 {
		t.Errorf("the sweep sent %d SCANs; it must read only the removals noted", s)
	}
	if got := r.events(); got != 1 {
		t.Errorf("the stream holds %d events, want 1", got)
	}
	if pending, err := r.reg.PendingRemovals(ctx); err != nil || len(pending) != 0 {
		t.Errorf("removal notes after the sweep: %+v (%v), want none", pending, err)
	}
	if keys := r.indexKeys(t); len(keys) != 0 {
		t.Errorf("the sweep index still holds %q", keys)
	}
}

// TestRunPublishesRemovalsOfAnEarlierVersion: a removal note an earlier
// version left, which no note in the sweep index names, is found by the
// SCAN a sweeper makes once when it starts, and its event published.
func TestRunPublishesRemovalsOfAnEarlierVersion(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	d, _, err := r.reg.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-token")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.reg.RemoveDevice(ctx, pool, identity, d.ID, event.ReasonRemovedByOperator); err != nil {
		t.Fatal(err)
	}
	keys := r.indexKeys(t)
	if len(keys) != 1 {
		t.Fatalf("sweep index keys %q, want the removal's one", keys)
	}
	if err := r.rdb.Del(ctx, keys...).Err(); err != nil { // as an earlier version left it
		t.Fatal(err)
	}
	claimable()
	if n, err := r.sw.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep published %d, error %v; the removal is in no note, so want nothing yet", n, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.sw.Run(rctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); r.events() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper's Run did not publish the removal an earlier version left, within 10s")
		}
	}
}
