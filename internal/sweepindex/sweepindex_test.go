package sweepindex_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/internal/testenv"
)

const window = 30 * time.Millisecond

// commitScript is a commit as the stores write one: Check first.
var commitScript = redis.NewScript(sweepindex.Check + `
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// TestCheckRefusesACommitPastItsDeadline: a commit that reaches Redis more
// than the window after its note (a writer paused between the two) is
// refused and writes nothing, so that a sweep that claims the note twice
// the window after it and finds nothing can drop it without losing the
// commit; one in time is applied.
func TestCheckRefusesACommitPastItsDeadline(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	x := sweepindex.New(rdb, prefix, "test", window)
	key := prefix + ":{a/b}:data"

	deadline, err := x.Note(ctx, "a/b", nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(window + 20*time.Millisecond)
	err = commitScript.Run(ctx, rdb, []string{key}, "late", deadline).Err()
	if !sweepindex.Late(err) {
		t.Fatalf("a commit after its deadline: %v, want PSLATE", err)
	}
	if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
		t.Errorf("the refused commit wrote its key")
	}

	if deadline, err = x.Note(ctx, "a/b", nil); err != nil {
		t.Fatal(err)
	}
	if err := commitScript.Run(ctx, rdb, []string{key}, "in time", deadline).Err(); err != nil {
		t.Fatalf("a commit within its window: %v", err)
	}
	if err := commitScript.Run(ctx, rdb, []string{key}, "no note", 0).Err(); err != nil {
		t.Fatalf("a commit with no deadline: %v", err)
	}
}

// TestClaimSettleAndNoteAgain: a member is claimed once twice the window
// after its note, by one claimer only while its claim lasts; settled done
// it leaves the index, settled left it is claimed again later, and one
// noted again after its claim stays for the new note whatever the claimer
// settles.
func TestClaimSettleAndNoteAgain(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	x := sweepindex.New(rdb, prefix, "test", window)
	members := []string{"p/done", "p/left", "p/again"}
	for _, m := range members {
		if _, err := x.Note(ctx, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if cs, err := x.Claim(ctx, 10, time.Minute); err != nil || len(cs) != 0 {
		t.Fatalf("claimed %v (%v) right after the notes, want nothing before twice the window", cs, err)
	}
	time.Sleep(2*window + 20*time.Millisecond)
	cs, err := x.Claim(ctx, 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]sweepindex.Claim{}
	for _, c := range cs {
		got[c.Member] = c
	}
	if len(got) != len(members) || len(cs) != len(members) {
		t.Fatalf("claimed %v, want each of %q once", cs, members)
	}
	if again, err := x.Claim(ctx, 10, time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("claimed %v (%v) while the first claims hold", again, err)
	}
	// A write notes p/again after the claim: its new note stays.
	if _, err := x.Note(ctx, "p/again", nil); err != nil {
		t.Fatal(err)
	}
	if err := x.Settle(ctx, []sweepindex.Claim{got["p/done"], got["p/again"]}, []sweepindex.Claim{got["p/left"]}); err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, k := range x.Keys() {
		m, err := rdb.ZRange(ctx, k, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, m...)
	}
	slices.Sort(in)
	if want := []string{"p/again", "p/left"}; !slices.Equal(in, want) {
		t.Fatalf("the index holds %q after settling, want %q", in, want)
	}
	time.Sleep(2*window + 20*time.Millisecond)
	cs, err = x.Claim(ctx, 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Member)
	}
	slices.Sort(names)
	if want := []string{"p/again", "p/left"}; !slices.Equal(names, want) {
		t.Errorf("claimed %q later, want %q", names, want)
	}
}
