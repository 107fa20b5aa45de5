package relay_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/pushsync/pushsync/internal/sweepindex"
)

// shard is the sorted set of the sweep index that notes member (see
// internal/sweepindex).
func shard(member string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(member))
	return h.Sum32() % sweepindex.Shards
}

// TestSweepGoesPastNotesWithNothingPending: a sweep whose claims find
// only notes with nothing pending (the writes published their own changes,
// or were refused) claims again until the index has no claimable note
// left, and so publishes a change left behind behind more such notes than
// one claim takes. It stopped at the first claim that found nothing to
// publish: at a few hundred identities written a second, most notes are
// such, and the index grew without end, the change left behind waiting
// further and further back in it.
func TestSweepGoesPastNotesWithNothingPending(t *testing.T) {
	ctx := context.Background()
	st, rdb, prefix, _, r, msgs := sweepSetup(t)
	// 150 refused writes, more than one claim takes of a shard (100),
	// noted in alice's shard before her change.
	want := shard(pool + "/" + alice)
	for i, n := 0, 0; n < 150; i++ {
		id := fmt.Sprintf("us-east-1:00000000-0000-0000-0000-%012d", i)
		if shard(pool+"/"+id) != want {
			continue
		}
		n++
		if err := write(t, st, id, "a", 7); err == nil {
			t.Fatal("a write with a wrong sync count was committed")
		}
	}
	if err := write(t, st, alice, "a", 0); err != nil {
		t.Fatal(err)
	}
	claimable()
	if published, err := r.Sweep(ctx); err != nil || published != 1 {
		t.Fatalf("sweep published %d, error %v; want alice's change, left behind", published, err)
	}
	if n := msgs(); n != 1 {
		t.Errorf("the stream holds %d events, want 1", n)
	}
	if in := indexed(t, rdb, prefix); len(in) != 0 {
		t.Errorf("the sweep index holds %d notes after the sweep, want none", len(in))
	}
}
