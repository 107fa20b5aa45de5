package sweepindex_test

import (
	"context"
	"slices"
	"strings"
	"sync"
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

// members returns the members of x's index.
func members(t *testing.T, rdb *redis.Client, x *sweepindex.Index) []string {
	t.Helper()
	var in []string
	for _, k := range x.Keys() {
		m, err := rdb.ZRange(context.Background(), k, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, m...)
	}
	slices.Sort(in)
	return in
}

// adoptWork adopts the keys <prefix>:{<member>}:work into x.
func adoptWork(ctx context.Context, x *sweepindex.Index, prefix string, again bool) (sweepindex.Adoption, error) {
	return x.Adopt(ctx, prefix+":{*}:work", func(k string) (string, bool) {
		m, ok := strings.CutPrefix(k, prefix+":{")
		m, ok2 := strings.CutSuffix(m, "}:work")
		return m, ok && ok2
	}, again)
}

// TestAdoptScansOncePerDeployment: an Adopt that completed is recorded in
// Redis, and the next one (a process started later) does not scan: work
// written without a note after the first, as a process of a version
// without the index goes on writing during a rolling upgrade, is not
// adopted by it, but is by an Adopt run again.
func TestAdoptScansOncePerDeployment(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	x := sweepindex.New(rdb, prefix, "test", window)
	if err := rdb.Set(ctx, prefix+":{p/a}:work", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	first, err := adoptWork(ctx, x, prefix, false)
	if err != nil || first.Skipped || first.Scanned != 1 || first.Adopted != 1 || first.Done.IsZero() {
		t.Fatalf("the first Adopt: %+v, %v; want p/a scanned and adopted", first, err)
	}

	if err := rdb.Set(ctx, prefix+":{p/b}:work", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	second, err := adoptWork(ctx, x, prefix, false)
	if err != nil || !second.Skipped || second.Scanned != 0 || !second.Done.Equal(first.Done) {
		t.Fatalf("an Adopt after one completed: %+v, %v; want it skipped as done at %v", second, err, first.Done)
	}
	if in, want := members(t, rdb, x), []string{"p/a"}; !slices.Equal(in, want) {
		t.Fatalf("the index holds %q after the second Adopt, want %q: it must not have scanned", in, want)
	}

	again, err := adoptWork(ctx, x, prefix, true)
	if err != nil || again.Skipped || again.Scanned != 2 || again.Adopted != 1 || !again.Done.After(first.Done) {
		t.Fatalf("Adopt run again: %+v, %v; want both scanned, p/b adopted", again, err)
	}
	if in, want := members(t, rdb, x), []string{"p/a", "p/b"}; !slices.Equal(in, want) {
		t.Fatalf("the index holds %q after Adopt was run again, want %q", in, want)
	}
	if next, err := adoptWork(ctx, x, prefix, false); err != nil || !next.Skipped || !next.Done.Equal(again.Done) {
		t.Errorf("an Adopt after the one run again: %+v, %v; want it skipped as done at %v", next, err, again.Done)
	}
}

// TestAdoptCutShortRecordsNothing: an Adopt that does not finish its scan
// (its process stopped or killed in the middle) records nothing, and the
// next Adopt scans and adopts.
func TestAdoptCutShortRecordsNothing(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	x := sweepindex.New(rdb, prefix, "test", window)
	if err := rdb.Set(ctx, prefix+":{p/a}:work", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	_, err := x.Adopt(cctx, prefix+":{*}:work", func(k string) (string, bool) {
		cancel() // stopped while the scan is under way
		return "p/a", true
	}, false)
	if err == nil {
		t.Fatal("an Adopt whose context ended during the scan returned no error")
	}
	if n, err := rdb.Exists(ctx, prefix+":{sweep:adopted:test}").Result(); err != nil || n != 0 {
		t.Fatalf("an Adopt cut short recorded its completion (%d, %v)", n, err)
	}
	a, err := adoptWork(ctx, x, prefix, false)
	if err != nil || a.Skipped || a.Adopted != 1 {
		t.Fatalf("the Adopt after one cut short: %+v, %v; want p/a scanned and adopted", a, err)
	}
	if in, want := members(t, rdb, x), []string{"p/a"}; !slices.Equal(in, want) {
		t.Fatalf("the index holds %q, want %q", in, want)
	}
}

// TestAdoptWhileAnotherScans: an Adopt that starts while another one is
// still scanning (two processes started at once) finds nothing recorded,
// and scans too; each records its completion once its own scan finished.
func TestAdoptWhileAnotherScans(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	x := sweepindex.New(rdb, prefix, "test", window)
	for _, m := range []string{"p/a", "p/b", "p/c"} {
		if err := rdb.Set(ctx, prefix+":{"+m+"}:work", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	scanning, release := make(chan struct{}), make(chan struct{})
	type result struct {
		a   sweepindex.Adoption
		err error
	}
	first := make(chan result, 1)
	go func() {
		var once sync.Once
		a, err := x.Adopt(ctx, prefix+":{*}:work", func(k string) (string, bool) {
			once.Do(func() { close(scanning); <-release })
			m, _ := strings.CutPrefix(k, prefix+":{")
			m, _ = strings.CutSuffix(m, "}:work")
			return m, true
		}, false)
		first <- result{a, err}
	}()
	<-scanning
	second, err := adoptWork(ctx, x, prefix, false)
	if err != nil || second.Skipped || second.Scanned != 3 || second.Adopted != 3 {
		t.Errorf("an Adopt started while another scans: %+v, %v; want it to scan and adopt all three", second, err)
	}
	close(release)
	r := <-first
	if r.err != nil || r.a.Skipped || r.a.Scanned != 3 || !r.a.Done.After(second.Done) {
		t.Errorf("the Adopt that was scanning: %+v, %v; want it to finish its scan and record it", r.a, r.err)
	}
	if in, want := members(t, rdb, x), []string{"p/a", "p/b", "p/c"}; !slices.Equal(in, want) {
		t.Fatalf("the index holds %q, want %q", in, want)
	}
	if a, err := adoptWork(ctx, x, prefix, false); err != nil || !a.Skipped || !a.Done.Equal(r.a.Done) {
		t.Errorf("an Adopt after both: %+v, %v; want it skipped as done at %v", a, err, r.a.Done)
	}
}
