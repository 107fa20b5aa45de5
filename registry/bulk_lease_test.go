package registry_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// clockedRegistry is a registry whose clock the test sets: at(d) puts it d
// after start.
func clockedRegistry(t *testing.T, start time.Time) (r *registry.Registry, at func(time.Duration)) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	var now atomic.Int64
	now.Store(start.UnixNano())
	r = registry.New(rdb, registry.Options{KeyPrefix: prefix, Now: func() time.Time { return time.Unix(0, now.Load()).UTC() }})
	return r, func(d time.Duration) { now.Store(start.Add(d).UnixNano()) }
}

// TestBulkPublishWhoseLeaseRanOutStaysFailed: a run that stalled past its
// lease shows as failed, and stays failed when it wakes up: it can neither
// renew its lease, which would show it IN_PROGRESS again, nor record a
// success after a client took the failure as the run's outcome. The pool
// may be bulk published again at once.
func TestBulkPublishWhoseLeaseRanOutStaysFailed(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	r, at := clockedRegistry(t, start)
	ctx := context.Background()

	run, err := r.BeginBulkPublish(ctx, pool, time.Minute, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	at(2 * time.Minute) // the run's process stalled
	st, err := r.BulkPublishState(ctx, pool)
	if err != nil || st.Status != registry.BulkFailed {
		t.Fatalf("state of a run two minutes past its one-minute lease: %+v (%v), want FAILED", st, err)
	}
	if err := r.RenewBulkPublish(ctx, pool, run.StartTime, time.Minute); !errors.Is(err, registry.ErrBulkNotCurrent) {
		t.Errorf("renewal after the lease ran out: %v, want %v", err, registry.ErrBulkNotCurrent)
	} else if !strings.Contains(err.Error(), "lease run out") {
		t.Errorf("renewal after the lease ran out: %q does not say that the lease ran out", err)
	}
	if err := r.FinishBulkPublish(ctx, pool, run.StartTime, ""); !errors.Is(err, registry.ErrBulkNotCurrent) {
		t.Errorf("success recorded after the lease ran out: %v, want %v", err, registry.ErrBulkNotCurrent)
	}
	st, err = r.BulkPublishState(ctx, pool)
	if err != nil || st.Status != registry.BulkFailed || !st.LastSuccess.IsZero() {
		t.Fatalf("state after the stalled run woke up: %+v (%v), want FAILED with no success", st, err)
	}
	if _, err := r.BeginBulkPublish(ctx, pool, time.Minute, 24*time.Hour); err != nil {
		t.Errorf("a new run after the stalled one failed: %v", err)
	}
}

// TestBulkPublishOfADeletedPoolEnds: the lease of a run whose pool was
// deleted is not renewed, so that the run stops rather than go on
// publishing a deleted pool's datasets; the run can record why it failed,
// which a restored pool shows. Once the pool is purged, the run's record
// is gone with it, and the run is no longer current.
func TestBulkPublishOfADeletedPoolEnds(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	r, at := clockedRegistry(t, start)
	ctx := context.Background()
	p, err := r.CreateIdentityPool(ctx, "eu-west-2", registry.IdentityPool{Name: "Game players", AllowUnauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}

	run, err := r.BeginBulkPublish(ctx, p.ID, time.Minute, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RenewBulkPublish(ctx, p.ID, run.StartTime, time.Minute); err != nil {
		t.Fatalf("renewal while the pool exists: %v", err)
	}
	if err := r.DeleteIdentityPool(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	err = r.RenewBulkPublish(ctx, p.ID, run.StartTime, time.Minute)
	if !errors.Is(err, registry.ErrPoolNotFound) {
		t.Fatalf("renewal after the pool's deletion: %v, want %v", err, registry.ErrPoolNotFound)
	}
	if err := r.FinishBulkPublish(ctx, p.ID, run.StartTime, err.Error()); err != nil {
		t.Fatalf("recording the failure: %v", err)
	}
	if _, err := r.RestoreIdentityPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	st, err := r.BulkPublishState(ctx, p.ID)
	if err != nil || st.Status != registry.BulkFailed || !strings.Contains(st.FailureMessage, "deleted") {
		t.Fatalf("state of the run in the restored pool: %+v (%v), want FAILED saying the pool was deleted", st, err)
	}

	run, err = r.BeginBulkPublish(ctx, p.ID, time.Minute, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteIdentityPool(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	at(30 * time.Second) // past the time every process takes to see the deletion
	for cursor := ""; ; {
		res, err := r.PurgeIdentityPool(ctx, p.ID, nil, cursor, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if res.Phase == registry.PurgeWaiting {
			t.Fatalf("the purge waits 30s after the deletion: %+v", res)
		}
		if cursor = res.Next; cursor == "" {
			break
		}
	}
	if err := r.RenewBulkPublish(ctx, p.ID, run.StartTime, time.Minute); !errors.Is(err, registry.ErrBulkNotCurrent) {
		t.Errorf("renewal after the pool's purge: %v, want %v", err, registry.ErrBulkNotCurrent)
	}
	if err := r.FinishBulkPublish(ctx, p.ID, run.StartTime, ""); !errors.Is(err, registry.ErrBulkNotCurrent) {
		t.Errorf("outcome recorded after the pool's purge: %v, want %v", err, registry.ErrBulkNotCurrent)
	}
}
