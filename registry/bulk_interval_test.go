package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/registry"
)

// TestBulkPublishIntervalCountsFromTheCompletion: a bulk publish is refused
// for 24 hours after the last successful one completed, as Cognito Sync's
// AlreadyStreamedException says, not after it started: a run of a large
// pool that took hours does not let the next one start hours early. The
// refusal says when the next may start.
func TestBulkPublishIntervalCountsFromTheCompletion(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	r, at := clockedRegistry(t, start)
	ctx := context.Background()
	const day = 24 * time.Hour

	if _, err := r.CreateIdentityPool(ctx, "", registry.IdentityPool{ID: pool, Name: "Game players", AllowUnauthenticated: true}); err != nil {
		t.Fatal(err)
	}
	run, err := r.BeginBulkPublish(ctx, pool, time.Hour, day)
	if err != nil {
		t.Fatal(err)
	}
	for h := 30 * time.Minute; h < 3*time.Hour; h += 30 * time.Minute { // a run of a large pool, renewing its lease
		at(h)
		if err := r.RenewBulkPublish(ctx, pool, run.StartTime, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	at(3 * time.Hour)
	if err := r.FinishBulkPublish(ctx, pool, run.StartTime, ""); err != nil {
		t.Fatal(err)
	}
	st, err := r.BulkPublishState(ctx, pool)
	if err != nil || st.Status != registry.BulkSucceeded || !st.CompleteTime.Equal(start.Add(3*time.Hour)) {
		t.Fatalf("state %+v (%v), want SUCCEEDED, completed 3h after its start", st, err)
	}

	// 24 hours after the start, 21 after the completion: refused.
	at(day + time.Minute)
	_, err = r.BeginBulkPublish(ctx, pool, time.Minute, day)
	if !errors.Is(err, registry.ErrAlreadyStreamed) {
		t.Fatalf("begin 24h after the last start, 21h after its completion: %v, want %v", err, registry.ErrAlreadyStreamed)
	}
	if next := start.Add(3*time.Hour + day).Format(time.RFC3339); !strings.Contains(err.Error(), next) {
		t.Errorf("refusal %q does not say the next may start at %s", err, next)
	}
	at(3*time.Hour + day)
	if _, err := r.BeginBulkPublish(ctx, pool, time.Minute, day); err != nil {
		t.Fatalf("begin 24h after the last completion: %v", err)
	}
}
