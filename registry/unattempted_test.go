package registry

import (
	"context"
	"testing"
	"time"
)

func TestUnattemptedDeliveriesAreCountedAndExpire(t *testing.T) {
	r, rdb, _ := layoutRegistry(t, time.Now())
	ctx := context.Background()
	if n, err := r.Unattempted(ctx, "S.1.x"); err != nil || n != 0 {
		t.Fatalf("Unattempted of an unknown message = %d, %v; want 0, nil", n, err)
	}
	for range 2 {
		if err := r.NoteUnattempted(ctx, "S.1.x", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.Unattempted(ctx, "S.1.x"); err != nil || n != 2 {
		t.Fatalf("Unattempted = %d, %v; want 2, nil", n, err)
	}
	if ttl := rdb.PTTL(ctx, r.unattemptedKey("S.1.x")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("count kept for %v, want at most a minute", ttl)
	}
	if err := r.NoteUnattempted(ctx, "", time.Minute); err == nil {
		t.Fatal("NoteUnattempted accepted an empty message id")
	}
}
