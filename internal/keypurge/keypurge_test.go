package keypurge_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/keypurge"
	"github.com/pushsync/pushsync/internal/testenv"
)

// TestStepResumedWithOtherPhases: a purge interrupted in its second phase
// and resumed, with the cursor it returned, by a version that added a
// phase before that one (as an upgrade does) still removes every key of
// every phase; resumed in the phase at the cursor's old position, it would
// scan the new phase from the middle and leave part of its keys.
func TestStepResumedWithOtherPhases(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	const n = 300
	for _, kind := range []string{"a", "b", "c"} {
		p := rdb.Pipeline()
		for i := range n {
			p.Set(ctx, fmt.Sprintf("%s:%s:%d", prefix, kind, i), "x", 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	count := func(kind string) int {
		t.Helper()
		keys, err := rdb.Keys(ctx, prefix+":"+kind+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	a := keypurge.Phase{Name: "a", Match: prefix + ":a:*"}
	b := keypurge.Phase{Name: "b", Match: prefix + ":b:*"}
	c := keypurge.Phase{Name: "c", Match: prefix + ":c:*"}
	// A deadline already past and a small batch: each step ends after one
	// SCAN call. Step until the purge is midway through phase c.
	opts := keypurge.Options{Deadline: time.Now(), Count: 10}
	cursor := ""
	for steps := 0; count("a") > 0 || count("c") == n; steps++ {
		res, err := keypurge.Step(ctx, rdb, []keypurge.Phase{a, c}, cursor, opts)
		if err != nil {
			t.Fatalf("step %d from %q: %v", steps+1, cursor, err)
		}
		if res.Next == "" || steps > 100000 {
			t.Fatalf("the purge of phases a, c ended (cursor %q) before it was midway through c; %d of c left", res.Next, count("c"))
		}
		cursor = res.Next
	}
	t.Logf("interrupted at cursor %q with %d keys of c left", cursor, count("c"))

	for steps := 0; cursor != ""; steps++ {
		res, err := keypurge.Step(ctx, rdb, []keypurge.Phase{a, b, c}, cursor, opts)
		if err != nil {
			t.Fatalf("step %d of the resumed purge from %q: %v", steps+1, cursor, err)
		}
		if steps > 100000 {
			t.Fatal("the resumed purge does not end")
		}
		cursor = res.Next
	}
	for _, kind := range []string{"a", "b", "c"} {
		if left := count(kind); left > 0 {
			t.Errorf("%d keys of phase %s left after the resumed purge", left, kind)
		}
	}

	if _, err := keypurge.Step(ctx, rdb, []keypurge.Phase{a, b, c}, "not-a-cursor", opts); !errors.Is(err, keypurge.ErrBadCursor) {
		t.Errorf("step from a cursor no step returned: %v, want %v", err, keypurge.ErrBadCursor)
	}
}
