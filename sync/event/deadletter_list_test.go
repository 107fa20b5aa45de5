package event_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestDeadLetterListSkipsDiscardedInOneRequest: with the letters between
// the first and the last replayed or discarded, a list reads the two
// letters left, not every sequence number in between: an operator who kept
// a few of many thousand letters must still be able to list them.
func TestDeadLetterListSkipsDiscardedInOneRequest(t *testing.T) {
	ctx := context.Background()
	nc, _, dl := deadLetters(t)
	const n = 300
	for i := 1; i <= n; i++ {
		if err := dl.Put(ctx, fmt.Sprintf("PUSHSYNC_EVENTS.%d", i), prefix+".a.b.c", []byte(`{"version":1}`), "retries exhausted", 20, nil); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(2); seq < n; seq++ {
		if err := dl.Discard(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}

	var gets atomic.Int32
	sub, err := nc.Subscribe("$JS.API.STREAM.MSG.GET.DEAD", func(*nats.Msg) { gets.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	letters, err := dl.List(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 2 || letters[0].Sequence != 1 || letters[1].Sequence != n {
		t.Fatalf("listed %+v, want the letters 1 and %d", letters, n)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := gets.Load(); got > 3 {
		t.Fatalf("listing 2 letters took %d message reads: one per sequence number, discarded ones included", got)
	}

	// Listing after the first starts at the next letter kept.
	letters, err = dl.List(ctx, 1, 10)
	if err != nil || len(letters) != 1 || letters[0].Sequence != n {
		t.Fatalf("listed %+v (%v) after 1, want the letter %d", letters, err, n)
	}
	if letters, err = dl.List(ctx, n, 10); err != nil || len(letters) != 0 {
		t.Fatalf("listed %+v (%v) after the last, want none", letters, err)
	}
}
