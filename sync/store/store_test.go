package store_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/cognito"
	"github.com/pushsync/pushsync/sync/store"
)

const (
	pool      = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	pool2     = "eu-west-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	identity  = "us-east-1:11111111-2222-3333-4444-555555555555"
	identity2 = "us-east-1:99999999-2222-3333-4444-555555555555"
)

var ctx = context.Background()

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func put(key, value string, sc int64) store.Patch {
	return store.Patch{Op: store.OpReplace, Key: key, Value: value, SyncCount: sc}
}

func del(key string, sc int64) store.Patch {
	return store.Patch{Op: store.OpRemove, Key: key, Value: "", SyncCount: sc}
}

func upd(dataset, device string, patches ...store.Patch) store.Update {
	return store.Update{IdentityPoolID: pool, IdentityID: identity, DatasetName: dataset, DeviceID: device, ModifiedBy: device, Patches: patches}
}

func mustUpdate(t testing.TB, s *store.Store, u store.Update) ([]store.Record, int64) {
	t.Helper()
	recs, c, err := s.UpdateRecords(ctx, u)
	if err != nil {
		t.Fatalf("UpdateRecords(%s): %v", u.DatasetName, err)
	}
	return recs, c.SyncCount
}

func mustList(t testing.TB, s *store.Store, dataset string, o store.ListOptions) *store.Page {
	t.Helper()
	p, err := s.ListRecords(ctx, pool, identity, dataset, o)
	if err != nil {
		t.Fatalf("ListRecords(%s, %+v): %v", dataset, o, err)
	}
	return p
}

// kv renders records as "key=value@sc" (value "<nil>" for tombstones) for
// compact comparisons.
func kv(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		v := "<nil>"
		if r.Value != nil {
			v = *r.Value
		}
		out[i] = fmt.Sprintf("%s=%s@%d", r.Key, v, r.SyncCount)
	}
	return out
}

// snapshot returns every key under the test's prefix with its content.
func snapshot(t testing.TB, rdb *redis.Client, s *store.Store) map[string]any {
	t.Helper()
	prefix := prefixOf(s)
	out := map[string]any{}
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "hash":
			out[k] = rdb.HGetAll(ctx, k).Val()
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			sort.Strings(m)
			out[k] = m
		case "zset":
			out[k] = rdb.ZRange(ctx, k, 0, -1).Val()
		default:
			out[k] = typ
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	prefixesMu sync.Mutex
	prefixes   = map[*store.Store]string{}
)

func prefixOf(s *store.Store) string {
	prefixesMu.Lock()
	defer prefixesMu.Unlock()
	return prefixes[s]
}

// newStore returns a store on the test Redis under the test's own key
// prefix, with a settable clock unless opts has one.
func newStore(t testing.TB, opts store.Options) (*store.Store, *redis.Client, *clock) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	clk := &clock{t: time.UnixMilli(1_700_000_000_123).UTC()}
	opts.KeyPrefix = prefix
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	s := store.New(rdb, opts)
	prefixesMu.Lock()
	prefixes[s] = prefix
	prefixesMu.Unlock()
	return s, rdb, clk
}

func TestTwoDeviceConvergence(t *testing.T) {
	s, _, clk := newStore(t, store.Options{})
	dlm := time.UnixMilli(1_600_000_000_000).UTC()

	// Device A writes twice.
	p := put("highScore", "100", 0)
	p.DeviceLastModifiedDate = dlm
	recs, sc := mustUpdate(t, s, upd("game", "devA", p, put("level", "3", 0)))
	if sc != 1 || len(recs) != 2 || recs[0].SyncCount != 1 || recs[1].SyncCount != 1 {
		t.Fatalf("first update: sc %d, records %+v", sc, recs)
	}
	if !recs[0].DeviceLastModifiedDate.Equal(dlm) || !recs[1].DeviceLastModifiedDate.Equal(clk.Now()) ||
		!recs[0].LastModifiedDate.Equal(clk.Now()) || recs[0].LastModifiedBy != "devA" {
		t.Errorf("first update dates/by: %+v", recs)
	}
	clk.Add(time.Second)
	recs, sc = mustUpdate(t, s, upd("game", "devA", put("highScore", "250", 1)))
	if sc != 2 || kv(recs)[0] != "highScore=250@2" {
		t.Fatalf("second update: sc %d, %v", sc, kv(recs))
	}

	// Device B lists from 0 and sees everything, then from 1 and sees only
	// the second change.
	tests := []struct {
		last int64
		want []string
	}{
		{0, []string{"level=3@1", "highScore=250@2"}},
		{1, []string{"highScore=250@2"}},
		{2, []string{}},
		{99, []string{}},
	}
	for _, tt := range tests {
		pg := mustList(t, s, "game", store.ListOptions{LastSyncCount: tt.last})
		if got := kv(pg.Records); !slices.Equal(got, tt.want) {
			t.Errorf("from %d: got %v, want %v", tt.last, got, tt.want)
		}
		if pg.DatasetSyncCount != 2 || !pg.DatasetExists || pg.DatasetDeletedAfterRequestedSyncCount || pg.LastModifiedBy != "devA" || pg.NextToken != "" {
			t.Errorf("from %d: page %+v", tt.last, pg)
		}
	}
	// B's record carries exactly what A's update returned.
	pg := mustList(t, s, "game", store.ListOptions{})
	if !reflect.DeepEqual(pg.Records[1], recs[0]) {
		t.Errorf("listed %+v, update returned %+v", pg.Records[1], recs[0])
	}

	// B writes on top of A using the count it learned.
	recs, sc = mustUpdate(t, s, upd("game", "devB", put("level", "4", 1)))
	if sc != 3 || recs[0].SyncCount != 3 || recs[0].LastModifiedBy != "devB" {
		t.Errorf("B's update: sc %d, %+v", sc, recs)
	}
	d, err := s.DescribeDataset(ctx, pool, identity, "game")
	if err != nil {
		t.Fatal(err)
	}
	// highScore=250 (9+3) + level=4 (5+1)
	if d.SyncCount != 3 || d.NumRecords != 2 || d.DataStorage != 18 || d.LastModifiedBy != "devB" ||
		!d.CreationDate.Equal(time.UnixMilli(1_700_000_000_123)) || !d.LastModifiedDate.Equal(clk.Now()) {
		t.Errorf("DescribeDataset: %+v", d)
	}
}

func TestEmptyModifiedByDefaultsToIdentity(t *testing.T) {
	s, _, _ := newStore(t, store.Options{})
	u := upd("ds", "", put("k", "v", 0))
	u.ModifiedBy = ""
	recs, _ := mustUpdate(t, s, u)
	if recs[0].LastModifiedBy != identity {
		t.Errorf("LastModifiedBy %q, want the identity", recs[0].LastModifiedBy)
	}
}

func TestZeroPatches(t *testing.T) {
	s, rdb, _ := newStore(t, store.Options{})
	recs, c, err := s.UpdateRecords(ctx, upd("ds", "d"))
	if err != nil || recs == nil || len(recs) != 0 || c.SyncCount != 0 {
		t.Fatalf("empty update of a missing dataset: %v, %d, %v", recs, c.SyncCount, err)
	}
	if snap := snapshot(t, rdb, s); len(snap) != 0 {
		t.Errorf("empty update wrote %v", snap)
	}
	mustUpdate(t, s, upd("ds", "d", put("a", "1", 0)))
	recs, c, err = s.UpdateRecords(ctx, upd("ds", "d"))
	if err != nil || len(recs) != 0 || c.SyncCount != 1 {
		t.Fatalf("empty update: %v, %d, %v", recs, c.SyncCount, err)
	}
	if d, _ := s.DescribeDataset(ctx, pool, identity, "ds"); d.SyncCount != 1 {
		t.Errorf("empty update raised the count to %d", d.SyncCount)
	}
}

func TestConflict(t *testing.T) {
	s, rdb, _ := newStore(t, store.Options{})
	mustUpdate(t, s, upd("ds", "d", put("a", "1", 0), put("b", "1", 0))) // 1
	mustUpdate(t, s, upd("ds", "d", put("a", "2", 1)))                   // 2
	mustUpdate(t, s, upd("ds", "d", del("b", 1)))                        // 3: b is a tombstone at 3
	tests := []struct {
		name    string
		patches []store.Patch
		want    string
	}{
		{"stale", []store.Patch{put("a", "x", 1)}, "Current SyncCount for: a is: 2 not: 1"},
		{"ahead", []store.Patch{put("a", "x", 7)}, "Current SyncCount for: a is: 2 not: 7"},
		{"new key with a count", []store.Patch{put("new", "x", 1)}, "Current SyncCount for: new is: 0 not: 1"},
		{"tombstone with 0", []store.Patch{put("b", "x", 0)}, "Current SyncCount for: b is: 3 not: 0"},
		{"first mismatch wins", []store.Patch{put("c", "ok", 0), put("a", "x", 0), put("b", "x", 1)}, "Current SyncCount for: a is: 2 not: 0"},
		{"remove stale", []store.Patch{del("a", 0)}, "Current SyncCount for: a is: 2 not: 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, rdb, s)
			_, _, err := s.UpdateRecords(ctx, upd("ds", "d", tt.patches...))
			var ce *store.ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, store.ErrConflict) {
				t.Fatalf("got %v, want a ConflictError", err)
			}
			if err.Error() != tt.want {
				t.Errorf("message %q, want %q", err.Error(), tt.want)
			}
			if after := snapshot(t, rdb, s); !reflect.DeepEqual(before, after) {
				t.Errorf("conflict changed Redis:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestRaceSameKey(t *testing.T) {
	s, _, _ := newStore(t, store.Options{})
	mustUpdate(t, s, upd("ds", "d", put("k", "start", 0)))
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = s.UpdateRecords(ctx, upd("ds", fmt.Sprint("dev", i), put("k", fmt.Sprint("v", i), 1)))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrConflict):
			if err.Error() != "Current SyncCount for: k is: 2 not: 1" {
				t.Errorf("conflict message %q", err)
			}
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d updates succeeded, want exactly 1", ok)
	}
	if d, _ := s.DescribeDataset(ctx, pool, identity, "ds"); d.SyncCount != 2 {
		t.Errorf("sync count %d, want 2", d.SyncCount)
	}
}

func TestRaceDistinctCounts(t *testing.T) {
	s, _, _ := newStore(t, store.Options{})
	const n = 20
	var wg sync.WaitGroup
	counts := make([]int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs, c, err := s.UpdateRecords(ctx, upd("ds", "d", put(fmt.Sprint("k", i), "v", 0)))
			if err != nil {
				t.Error(err)
				return
			}
			if recs[0].SyncCount != c.SyncCount {
				t.Errorf("record count %d, dataset %d", recs[0].SyncCount, c.SyncCount)
			}
			counts[i] = c.SyncCount
		}()
	}
	wg.Wait()
	slices.Sort(counts)
	for i, c := range counts {
		if c != int64(i+1) {
			t.Fatalf("counts %v, want 1..%d", counts, n)
		}
	}
	pg := mustList(t, s, "ds", store.ListOptions{})
	if len(pg.Records) != n || pg.DatasetSyncCount != n {
		t.Errorf("listed %d records at count %d", len(pg.Records), pg.DatasetSyncCount)
	}
}

func TestTombstones(t *testing.T) {
	s, _, _ := newStore(t, store.Options{})
	mustUpdate(t, s, upd("ds", "d", put("a", "1", 0), put("b", "22", 0)))
	recs, _ := mustUpdate(t, s, upd("ds", "d", store.Patch{Op: store.OpRemove, Key: "a", Value: "ignored", SyncCount: 1}))
	if recs[0].Value != nil || recs[0].SyncCount != 2 {
		t.Fatalf("remove returned %+v", recs[0])
	}
	pg := mustList(t, s, "ds", store.ListOptions{})
	if got := kv(pg.Records); !slices.Equal(got, []string{"b=22@1", "a=<nil>@2"}) {
		t.Errorf("listed %v", got)
	}
	pg = mustList(t, s, "ds", store.ListOptions{LastSyncCount: 1})
	if got := kv(pg.Records); !slices.Equal(got, []string{"a=<nil>@2"}) {
		t.Errorf("listed from 1: %v", got)
	}
	if d, _ := s.DescribeDataset(ctx, pool, identity, "ds"); d.NumRecords != 1 || d.DataStorage != 3 {
		t.Errorf("tombstone counted: %+v", d)
	}
	// Re-creating the key must present the tombstone's count.
	if _, _, err := s.UpdateRecords(ctx, upd("ds", "d", put("a", "back", 0))); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("re-create with 0: %v", err)
	}
	recs, _ = mustUpdate(t, s, upd("ds", "d", put("a", "back", 2)))
	if kv(recs)[0] != "a=back@3" {
		t.Errorf("re-created %v", kv(recs))
	}
	// Removing a tombstone again is allowed with its count; removing a key
	// never written leaves no tombstone (TestRemoveUnheldKeys).
	mustUpdate(t, s, upd("ds", "d", del("a", 3), del("never", 0)))
	pg = mustList(t, s, "ds", store.ListOptions{LastSyncCount: 3})
	if got := kv(pg.Records); !slices.Equal(got, []string{"a=<nil>@4"}) {
		t.Errorf("listed %v", got)
	}
	if d, _ := s.DescribeDataset(ctx, pool, identity, "ds"); d.NumRecords != 1 || d.DataStorage != 3 {
		t.Errorf("after removals: %+v", d)
	}
}

// TestRemoveUnheldKeys: removing keys the dataset never held stores nothing
// for them, however many, and is answered as any remove: the records come
// back removed with the update's new sync count, which the dataset takes.
func TestRemoveUnheldKeys(t *testing.T) {
	s, rdb, clk := newStore(t, store.Options{})
	tag := prefixOf(s) + ":" + cognito.HashTag(pool, identity)
	mustUpdate(t, s, upd("ds", "d", put("a", "1", 0), put("b", "22", 0))) // 1
	states := rdb.HGetAll(ctx, tag+":rs:ds").Val()
	values := rdb.HGetAll(ctx, tag+":rv:ds").Val()

	clk.Add(time.Second)
	dlm := time.UnixMilli(1_600_000_000_000).UTC()
	var ps []store.Patch
	for i := range 300 {
		ps = append(ps, store.Patch{Op: store.OpRemove, Key: fmt.Sprintf("never-%d", i), Value: "", SyncCount: 0, DeviceLastModifiedDate: dlm})
	}
	recs, c, err := s.UpdateRecords(ctx, upd("ds", "d", ps...))
	if err != nil {
		t.Fatal(err)
	}
	if c.SyncCount != 2 || c.OriginDeviceID != "d" {
		t.Errorf("change %+v, want sync count 2 from d", c)
	}
	for i, r := range recs {
		want := store.Record{Key: ps[i].Key, SyncCount: 2, LastModifiedDate: clk.Now(), LastModifiedBy: "d", DeviceLastModifiedDate: dlm}
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("answered %+v, want %+v", r, want)
		}
	}
	if got := rdb.HGetAll(ctx, tag+":rs:ds").Val(); !reflect.DeepEqual(got, states) {
		t.Errorf("record states grew from %d to %d fields", len(states), len(got))
	}
	if got := rdb.HGetAll(ctx, tag+":rv:ds").Val(); !reflect.DeepEqual(got, values) {
		t.Errorf("record values changed: %v", got)
	}
	d, err := s.DescribeDataset(ctx, pool, identity, "ds")
	if err != nil || d.SyncCount != 2 || d.NumRecords != 2 || d.DataStorage != 5 || d.LastModifiedBy != "d" || !d.LastModifiedDate.Equal(clk.Now()) {
		t.Errorf("dataset %+v, %v", d, err)
	}
	if pg := mustList(t, s, "ds", store.ListOptions{LastSyncCount: 1}); len(pg.Records) != 0 || pg.DatasetSyncCount != 2 {
		t.Errorf("listed %d records from 1, at %d", len(pg.Records), pg.DatasetSyncCount)
	}
	// With a remove of a key it holds, only that key gets a tombstone.
	mustUpdate(t, s, upd("ds", "d", del("a", 1), del("never-0", 0), del("other", 0))) // 3
	if got := kv(mustList(t, s, "ds", store.ListOptions{LastSyncCount: 2}).Records); !slices.Equal(got, []string{"a=<nil>@3"}) {
		t.Errorf("listed from 2: %v", got)
	}
	if n := rdb.HLen(ctx, tag+":rs:ds").Val(); n != 2 {
		t.Errorf("%d record states, want 2", n)
	}
	// A device that wrote one of those keys and has not synced yet pushes
	// it as a new key.
	if recs, _ := mustUpdate(t, s, upd("ds", "d", put("never-1", "mine", 0))); kv(recs)[0] != "never-1=mine@4" {
		t.Errorf("wrote %v", kv(recs))
	}
	// Only such removes in a dataset not yet written create it, empty, as
	// any first write does.
	_, c, err = s.UpdateRecords(ctx, upd("fresh", "d", del("x", 0)))
	if err != nil || c.SyncCount != 1 {
		t.Fatalf("remove in a new dataset: %d, %v", c.SyncCount, err)
	}
	if d, err := s.DescribeDataset(ctx, pool, identity, "fresh"); err != nil || d.SyncCount != 1 || d.NumRecords != 0 {
		t.Errorf("new dataset %+v, %v", d, err)
	}
	if n := rdb.Exists(ctx, tag+":rs:fresh").Val(); n != 0 {
		t.Errorf("the new dataset has record states")
	}
}

// TestRemoveUnheldKeyWrittenAgain: a device that removed a key the dataset
// never held (written and removed before it synced) keeps the key, removed
// at the count it was answered, and presents that count when it sets the
// key again. The write is taken, as it was when the remove left a
// tombstone; refused, it would conflict on every try, as the device's next
// sync lists nothing of the key. The count still conflicts once another
// device has written the key.
func TestRemoveUnheldKeyWrittenAgain(t *testing.T) {
	s, rdb, _ := newStore(t, store.Options{})
	tag := prefixOf(s) + ":" + cognito.HashTag(pool, identity)
	mustUpdate(t, s, upd("ds", "a", put("k", "v", 0))) // 1
	recs, _ := mustUpdate(t, s, upd("ds", "a", del("draft", 0), del("note", 0), put("k", "w", 1)))
	if got := kv(recs); !slices.Equal(got, []string{"draft=<nil>@2", "note=<nil>@2", "k=w@2"}) {
		t.Fatalf("answered %v", got)
	}
	if n := rdb.HLen(ctx, tag+":rs:ds").Val(); n != 1 {
		t.Errorf("%d record states, want 1", n)
	}
	recs, c, err := s.UpdateRecords(ctx, upd("ds", "a", put("draft", "final", 2)))
	if err != nil {
		t.Fatalf("setting again a key removed at 2, with 2: %v", err)
	}
	if got := kv(recs); c.SyncCount != 3 || !slices.Equal(got, []string{"draft=final@3"}) {
		t.Errorf("answered %v at %d", got, c.SyncCount)
	}
	// Device b writes note first: a's count of it then conflicts, and a's
	// next sync lists b's record.
	mustUpdate(t, s, upd("ds", "b", put("note", "b's", 0))) // 4
	if _, _, err := s.UpdateRecords(ctx, upd("ds", "a", put("note", "a's", 2))); err == nil || err.Error() != "Current SyncCount for: note is: 4 not: 2" {
		t.Errorf("a's stale count of note: %v", err)
	}
	if got := kv(mustList(t, s, "ds", store.ListOptions{LastSyncCount: 2}).Records); !slices.Equal(got, []string{"draft=final@3", "note=b's@4"}) {
		t.Errorf("listed from 2: %v", got)
	}
	// A count no change of the dataset answered still conflicts.
	if _, _, err := s.UpdateRecords(ctx, upd("ds", "a", put("other", "x", 9))); err == nil || err.Error() != "Current SyncCount for: other is: 0 not: 9" {
		t.Errorf("a count above every one answered: %v", err)
	}
}

// purgedTotal is the value of pushsync_store_purged_total{what}, 0 before
// the first purge of that kind.
func purgedTotal(t *testing.T, reg *prometheus.Registry, what string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pushsync_store_purged_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "what" && l.GetValue() == what {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestTombstoneCap: past MaxTombstones a dataset's oldest tombstones, those
// of the lowest sync count, are purged by the write that adds the newer
// ones, and are listed no more; a device still holding a purged record can
// push its change of it.
func TestTombstoneCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, rdb, _ := newStore(t, store.Options{MaxTombstones: 5, Metrics: reg})
	tag := prefixOf(s) + ":" + cognito.HashTag(pool, identity)
	states, index := tag+":rs:ds", tag+":rt:ds"
	var ps []store.Patch
	for i := range 10 {
		ps = append(ps, put(fmt.Sprint("k", i), "v", 0))
	}
	mustUpdate(t, s, upd("ds", "d", ps...))                                                  // 1
	mustUpdate(t, s, upd("ds", "d", del("k3", 1), del("k2", 1), del("k1", 1), del("k0", 1))) // 2
	mustUpdate(t, s, upd("ds", "d", del("k4", 1)))                                           // 3
	if got := purgedTotal(t, reg, "tombstones"); got != 0 {
		t.Errorf("purged %v tombstones at the cap", got)
	}
	mustUpdate(t, s, upd("ds", "d", del("k5", 1), del("k6", 1))) // 4: 7 tombstones, k0 and k1 go
	want := []string{"k7=v@1", "k8=v@1", "k9=v@1", "k2=<nil>@2", "k3=<nil>@2", "k4=<nil>@3", "k5=<nil>@4", "k6=<nil>@4"}
	if got := kv(mustList(t, s, "ds", store.ListOptions{}).Records); !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	if n, z := rdb.HLen(ctx, states).Val(), rdb.ZCard(ctx, index).Val(); n != 8 || z != 5 {
		t.Errorf("%d record states and %d indexed tombstones, want 8 and 5", n, z)
	}
	if got := purgedTotal(t, reg, "tombstones"); got != 2 {
		t.Errorf("pushsync_store_purged_total{what=tombstones} = %v, want 2", got)
	}
	if d, _ := s.DescribeDataset(ctx, pool, identity, "ds"); d.NumRecords != 3 || d.DataStorage != 9 || d.SyncCount != 4 {
		t.Errorf("dataset %+v", d)
	}

	// A device that read k0 at 1 and missed its removal writes it: its count
	// is below the highest purged (2), so it is taken. A count that no
	// purged tombstone explains, above the highest purged, still conflicts.
	if recs, _ := mustUpdate(t, s, upd("ds", "d", put("k0", "mine", 1))); kv(recs)[0] != "k0=mine@5" {
		t.Errorf("wrote %v", kv(recs))
	}
	if _, _, err := s.UpdateRecords(ctx, upd("ds", "d", put("k1", "x", 3))); err == nil || err.Error() != "Current SyncCount for: k1 is: 0 not: 3" {
		t.Errorf("a count above the purge mark: %v", err)
	}
	// Its removal of k1 stores nothing, as k1 holds nothing.
	mustUpdate(t, s, upd("ds", "d", del("k1", 1))) // 6
	if n := rdb.HLen(ctx, states).Val(); n != 9 {
		t.Errorf("%d record states, want 9", n)
	}
	// A tombstone written again leaves the index.
	mustUpdate(t, s, upd("ds", "d", put("k2", "back", 2))) // 7
	if z := rdb.ZScore(ctx, index, "k2"); z.Err() != redis.Nil {
		t.Errorf("re-written k2 still indexed: %v", z.Val())
	}

	// A member of the index that is not a tombstone of its count, as a
	// write by a version that kept no index leaves, is never purged.
	rdb.ZAdd(ctx, index, redis.Z{Score: 0, Member: "k0"}, redis.Z{Score: 0, Member: "k4"})
	mustUpdate(t, s, upd("ds", "d", del("k7", 1), del("k8", 1))) // 8: 6 tombstones, k3 goes
	want = []string{"k9=v@1", "k4=<nil>@3", "k5=<nil>@4", "k6=<nil>@4", "k0=mine@5", "k2=back@7", "k7=<nil>@8", "k8=<nil>@8"}
	if got := kv(mustList(t, s, "ds", store.ListOptions{}).Records); !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	// Tombstones the index misses (written before it was kept) are all
	// indexed when the cap is reached.
	rdb.Del(ctx, index)
	mustUpdate(t, s, upd("ds", "d", del("k9", 1))) // 9: 6 tombstones, k4 goes
	want = []string{"k5=<nil>@4", "k6=<nil>@4", "k0=mine@5", "k2=back@7", "k7=<nil>@8", "k8=<nil>@8", "k9=<nil>@9"}
	if got := kv(mustList(t, s, "ds", store.ListOptions{}).Records); !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	if got := rdb.ZRangeWithScores(ctx, index, 0, -1).Val(); fmt.Sprint(got) != "[{4 k5} {4 k6} {8 k7} {8 k8} {9 k9}]" {
		t.Errorf("index %v", got)
	}
	if got := purgedTotal(t, reg, "tombstones"); got != 4 {
		t.Errorf("pushsync_store_purged_total{what=tombstones} = %v, want 4", got)
	}

	// Deleting the dataset drops its tombstones and its purge mark: a
	// device that read k0 at 1 learns of the deletion, and its count
	// conflicts again.
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "ds", "d"); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, index).Val(); n != 0 {
		t.Errorf("index left after the deletion")
	}
	if _, _, err := s.UpdateRecords(ctx, upd("ds", "d", put("k1", "x", 1))); !errors.Is(err, store.ErrConflict) {
		t.Errorf("after the deletion, a purged key's count: %v", err)
	}
}

// TestTombstoneCapStaleIndex: when members that are not tombstones of their
// count (left by a process that kept no index, reviving tombstones) make
// the index look complete while tombstones that process wrote are missing
// from it, the purge still takes the oldest tombstones, not the newest.
func TestTombstoneCapStaleIndex(t *testing.T) {
	s, rdb, _ := newStore(t, store.Options{MaxTombstones: 3})
	index := prefixOf(s) + ":" + cognito.HashTag(pool, identity) + ":rt:ds"
	mustUpdate(t, s, upd("ds", "d", put("a", "v", 0), put("b", "v", 0), put("c", "v", 0), put("d", "v", 0), put("e", "v", 0), put("f", "v", 0))) // 1
	mustUpdate(t, s, upd("ds", "d", del("a", 1)))                                                                                                // 2
	mustUpdate(t, s, upd("ds", "d", del("b", 1)))                                                                                                // 3
	// As such a process leaves it: a and b removed but not indexed, c and
	// d indexed but live.
	rdb.ZRem(ctx, index, "a", "b")
	rdb.ZAdd(ctx, index, redis.Z{Score: 1, Member: "c"}, redis.Z{Score: 1, Member: "d"})
	mustUpdate(t, s, upd("ds", "d", del("e", 1), del("f", 1))) // 4: 4 tombstones, a (at 2) goes
	want := []string{"c=v@1", "d=v@1", "b=<nil>@3", "e=<nil>@4", "f=<nil>@4"}
	if got := kv(mustList(t, s, "ds", store.ListOptions{}).Records); !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	if got := rdb.ZRangeWithScores(ctx, index, 0, -1).Val(); fmt.Sprint(got) != "[{3 b} {4 e} {4 f}]" {
		t.Errorf("index %v", got)
	}
	// Only a count up to the oldest removal's is taken for a purged key.
	if _, _, err := s.UpdateRecords(ctx, upd("ds", "d", put("e", "x", 3))); err == nil || err.Error() != "Current SyncCount for: e is: 4 not: 3" {
		t.Errorf("a count of e below its tombstone's: %v", err)
	}
}

// TestTombstoneCapTombstoneReader: a device that synced a removal keeps the
// key with the tombstone's count and presents that count when the key is
// set again. When that tombstone was among the newest purged, its count is
// the purge mark itself, and the write is taken as one below it is; refused,
// it would conflict on every try, as the device's next sync lists nothing of
// the key.
func TestTombstoneCapTombstoneReader(t *testing.T) {
	s, _, _ := newStore(t, store.Options{MaxTombstones: 2})
	mustUpdate(t, s, upd("ds", "a", put("k0", "v", 0), put("k1", "v", 0), put("k2", "v", 0), put("k3", "v", 0), put("k4", "v", 0))) // 1
	mustUpdate(t, s, upd("ds", "a", del("k0", 1), del("k1", 1)))                                                                    // 2
	// Device b syncs from 1 and learns of both removals at 2.
	pg := mustList(t, s, "ds", store.ListOptions{LastSyncCount: 1})
	if got := kv(pg.Records); !slices.Equal(got, []string{"k0=<nil>@2", "k1=<nil>@2"}) || pg.DatasetSyncCount != 2 {
		t.Fatalf("b listed %v at %d", got, pg.DatasetSyncCount)
	}
	mustUpdate(t, s, upd("ds", "a", del("k2", 1), del("k3", 1))) // 3: 4 tombstones, k0 and k1 (at 2) go
	if got := kv(mustList(t, s, "ds", store.ListOptions{LastSyncCount: 2}).Records); !slices.Equal(got, []string{"k2=<nil>@3", "k3=<nil>@3"}) {
		t.Fatalf("listed from 2: %v", got)
	}
	// b sets k0 again and removes k1 again, with the counts it holds.
	recs, c, err := s.UpdateRecords(ctx, upd("ds", "b", put("k0", "back", 2), del("k1", 2)))
	if err != nil {
		t.Fatalf("b's change of keys whose tombstones it read: %v", err)
	}
	if got := kv(recs); c.SyncCount != 4 || !slices.Equal(got, []string{"k0=back@4", "k1=<nil>@4"}) {
		t.Errorf("answered %v at %d", got, c.SyncCount)
	}
	if got := kv(mustList(t, s, "ds", store.ListOptions{}).Records); !slices.Equal(got, []string{"k4=v@1", "k2=<nil>@3", "k3=<nil>@3", "k0=back@4"}) {
		t.Errorf("listed %v", got)
	}
}

// TestDeletedDatasetCap: past MaxDeletedDatasets the entries of an
// identity's oldest deletions are purged, and the highest of their counts
// becomes the count a dataset without an entry continues from and the
// deletion ListRecords reports, so no count a device saw comes back.
func TestDeletedDatasetCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, rdb, clk := newStore(t, store.Options{MaxDeletedDatasets: 3, Metrics: reg})
	tag := prefixOf(s) + ":" + cognito.HashTag(pool, identity)
	for i := range 5 {
		mustUpdate(t, s, upd(fmt.Sprint("d", i), "d", put("k", "v", 0)))
	}
	for sc := range int64(4) {
		mustUpdate(t, s, upd("d0", "d", put("k", "v", sc+1))) // d0 at 5
	}
	for _, name := range []string{"d0", "d1", "d2", "d3"} {
		clk.Add(time.Second)
		if _, _, err := s.DeleteDataset(ctx, pool, identity, name, "d"); err != nil {
			t.Fatal(err)
		}
	}
	// d0, deleted first (at 6), is purged; d1 to d3 (at 2) and d4 stay.
	names := rdb.HKeys(ctx, tag+":datasets").Val()
	slices.Sort(names)
	if !slices.Equal(names, []string{"d1", "d2", "d3", "d4"}) {
		t.Errorf("dataset entries %v", names)
	}
	if got := purgedTotal(t, reg, "deleted_datasets"); got != 1 {
		t.Errorf("pushsync_store_purged_total{what=deleted_datasets} = %v, want 1", got)
	}
	for _, tt := range []struct {
		name          string
		last          int64
		deletedAfter  bool
		datasetExists bool
	}{
		{"d0", 0, false, false}, {"d0", 3, true, false}, {"d0", 5, true, false},
		{"d1", 1, true, false}, {"d1", 2, false, false},
		{"never", 0, false, false},
	} {
		pg := mustList(t, s, tt.name, store.ListOptions{LastSyncCount: tt.last})
		if pg.DatasetDeletedAfterRequestedSyncCount != tt.deletedAfter || pg.DatasetExists || pg.DatasetSyncCount != 0 || len(pg.Records) != 0 {
			t.Errorf("%s from %d: %+v", tt.name, tt.last, pg)
		}
	}
	// Written again, d0 continues from the purged count, 6, past every count
	// a device saw; so does a dataset never written.
	if recs, _ := mustUpdate(t, s, upd("d0", "d", put("k", "again", 0))); kv(recs)[0] != "k=again@7" {
		t.Errorf("re-created d0: %v", kv(recs))
	}
	for _, tt := range []struct {
		last         int64
		deletedAfter bool
		want         []string
	}{{0, false, []string{"k=again@7"}}, {5, true, []string{"k=again@7"}}, {6, false, []string{"k=again@7"}}, {7, false, []string{}}} {
		pg := mustList(t, s, "d0", store.ListOptions{LastSyncCount: tt.last})
		if !pg.DatasetExists || pg.DatasetSyncCount != 7 || pg.DatasetDeletedAfterRequestedSyncCount != tt.deletedAfter || !slices.Equal(kv(pg.Records), tt.want) {
			t.Errorf("re-created d0 from %d: %+v %v", tt.last, pg, kv(pg.Records))
		}
	}
	if _, sc := mustUpdate(t, s, upd("new", "d", put("k", "v", 0))); sc != 7 {
		t.Errorf("a new dataset starts at %d, want 7", sc)
	}
	// The next purge takes d1, deleted at 2, and leaves the mark at 6.
	clk.Add(time.Second)
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "d4", "d"); err != nil {
		t.Fatal(err)
	}
	if rdb.HExists(ctx, tag+":datasets", "d1").Val() || rdb.HGet(ctx, tag+":purged", "#datasets").Val() != "6" {
		t.Errorf("after a second purge: entries %v, mark %q", rdb.HKeys(ctx, tag+":datasets").Val(), rdb.HGet(ctx, tag+":purged", "#datasets").Val())
	}
	if u, err := s.IdentityUsage(ctx, pool, identity); err != nil || u.DatasetCount != 2 || !u.LastModifiedDate.Equal(clk.Now()) {
		t.Errorf("identity usage %+v, %v", u, err)
	}
}

func TestLimits(t *testing.T) {
	s, rdb, _ := newStore(t, store.Options{})
	for i := range 20 {
		mustUpdate(t, s, upd(fmt.Sprint("ds", i), "d", put("k", "v", 0)))
	}
	// 1024 records in "big": 1000 + 24.
	var ps []store.Patch
	for i := range 1000 {
		ps = append(ps, put(fmt.Sprint("r", i), "v", 0))
	}
	mustUpdate(t, s, upd("ds0", "d", ps...))
	ps = ps[:0]
	for i := 1000; i < 1023; i++ {
		ps = append(ps, put(fmt.Sprint("r", i), "v", 0))
	}
	mustUpdate(t, s, upd("ds0", "d", ps...)) // with "k": 1024 records
	// "ds1" gets 1 MiB exactly: "k"+"v" = 2 bytes, "big" (3) + value.
	mb := strings.Repeat("é", (1<<20-2-3-1)/2) + "a" // 2-byte characters
	mustUpdate(t, s, upd("ds1", "d", put("big", mb, 0)))
	if d, _ := s.DescribeDataset(ctx, pool, identity, "ds1"); d.DataStorage != 1<<20 {
		t.Fatalf("ds1 holds %d bytes", d.DataStorage)
	}

	tests := []struct {
		name  string
		u     store.Update
		what  string
		limit int64
	}{
		{"21st dataset", upd("ds20", "d", put("k", "v", 0)), store.LimitDatasets, 20},
		{"1025th record", upd("ds0", "d", put("one-more", "", 0)), store.LimitRecords, 1024},
		{"1 byte over 1 MiB", upd("ds1", "d", put("x", "", 0)), store.LimitDatasetSize, 1 << 20},
		{"multi-byte growth", upd("ds1", "d", put("big", mb[:len(mb)-1]+"é", 2)), store.LimitDatasetSize, 1 << 20},
		{"one big value", upd("ds2", "d", put("v", strings.Repeat("€", 349526), 0)), store.LimitDatasetSize, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, rdb, s)
			_, _, err := s.UpdateRecords(ctx, tt.u)
			var le *store.LimitError
			if !errors.As(err, &le) || !errors.Is(err, store.ErrLimitExceeded) || le.What != tt.what || le.Limit != tt.limit {
				t.Fatalf("got %v, want LimitError{%s, %d}", err, tt.what, tt.limit)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tt.limit)) {
				t.Errorf("message %q does not name the limit", err)
			}
			if after := snapshot(t, rdb, s); !reflect.DeepEqual(before, after) {
				t.Errorf("limit error changed Redis")
			}
		})
	}
	// Updates that do not grow the measure still pass at the limit.
	mustUpdate(t, s, upd("ds0", "d", put("k", "w", 1)))                     // replace at 1024 records
	mustUpdate(t, s, upd("ds1", "d", put("big", mb[:len(mb)-1]+"b", 2)))    // same size
	mustUpdate(t, s, upd("ds0", "d", del("r0", 2), put("one-more", "", 0))) // remove one, add one
	// A device that removed every record of the full dataset and wrote as
	// many new ones pushes it all in one call.
	d0, err := s.DescribeDataset(ctx, pool, identity, "ds0")
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.ListRecords(ctx, pool, identity, "ds0", store.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	ps = ps[:0]
	for _, r := range page.Records {
		if r.Value != nil {
			ps = append(ps, del(r.Key, r.SyncCount))
		}
	}
	for i := range d0.NumRecords {
		ps = append(ps, put(fmt.Sprint("new", i), "v", 0))
	}
	if len(ps) != store.MaxPatches {
		t.Fatalf("%d patches, want %d", len(ps), store.MaxPatches)
	}
	mustUpdate(t, s, upd("ds0", "d", ps...))
	if d, _ := s.DescribeDataset(ctx, pool, identity, "ds0"); d.NumRecords != 1024 || d.SyncCount != d0.SyncCount+1 {
		t.Fatalf("after replacing every record: %+v", d)
	}
	// Deleting a dataset frees its slot.
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "ds19", "d"); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, upd("ds20", "d", put("k", "v", 0)))
	if _, _, err := s.UpdateRecords(ctx, upd("ds19", "d", put("k", "v", 0))); !errors.Is(err, store.ErrLimitExceeded) {
		t.Errorf("re-creating a deleted dataset over the limit: %v", err)
	}
}

func TestLimitOptions(t *testing.T) {
	s, _, _ := newStore(t, store.Options{MaxDatasets: 1, MaxRecords: 2, MaxDatasetBytes: 10})
	mustUpdate(t, s, upd("a", "d", put("k1", "12345678", 0)))
	for _, tt := range []struct {
		u    store.Update
		what string
	}{
		{upd("b", "d", put("k", "", 0)), store.LimitDatasets},
		{upd("a", "d", put("k2", "", 0), put("k3", "", 0)), store.LimitRecords},
		{upd("a", "d", put("k2", "1", 0)), store.LimitDatasetSize},
	} {
		var le *store.LimitError
		if _, _, err := s.UpdateRecords(ctx, tt.u); !errors.As(err, &le) || le.What != tt.what {
			t.Errorf("%s: %v", tt.what, err)
		}
	}
}

func TestDeleteAndRecreate(t *testing.T) {
	s, _, _ := newStore(t, store.Options{})
	if _, err := s.DescribeDataset(ctx, pool, identity, "ds"); !errors.Is(err, store.ErrDatasetNotFound) {
		t.Errorf("describe missing: %v", err)
	}
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "ds", "d"); !errors.Is(err, store.ErrDatasetNotFound) {
		t.Errorf("delete missing: %v", err)
	}
	pg := mustList(t, s, "ds", store.ListOptions{LastSyncCount: 5})
	if pg.DatasetExists || pg.DatasetSyncCount != 0 || pg.DatasetDeletedAfterRequestedSyncCount || len(pg.Records) != 0 || pg.Records == nil {
		t.Errorf("list of a never-written dataset: %+v", pg)
	}

	mustUpdate(t, s, upd("ds", "d", put("a", "1", 0), put("b", "2", 0))) // 1
	mustUpdate(t, s, upd("ds", "d", put("a", "3", 1)))                   // 2
	mustUpdate(t, s, upd("other", "d", put("x", "1", 0)))
	d, dc, err := s.DeleteDataset(ctx, pool, identity, "ds", "deleter")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "ds" || d.SyncCount != 3 || d.NumRecords != 2 || d.DataStorage != 4 || d.LastModifiedBy != "deleter" {
		t.Errorf("deleted dataset %+v", d)
	}
	// The returned dataset and change name the deletion's marker; the
	// change also tells of the other dataset's marker, still there.
	c := store.Change{IdentityPoolID: pool, IdentityID: identity, DatasetName: "ds", SyncCount: d.SyncCount, ChangedAt: d.LastModifiedDate}
	if ch, _ := s.PendingChanges(ctx, pool, identity); !slices.Contains(ch, c) {
		t.Errorf("no marker %+v in %+v", c, ch)
	}
	if dc.OthersSince.IsZero() {
		t.Errorf("the deletion's change %+v does not tell of the marker of dataset other", dc)
	}
	dc.OthersSince = time.Time{}
	if dc != c {
		t.Errorf("the deletion returned the change %+v, want its marker %+v", dc, c)
	}
	if _, err := s.DescribeDataset(ctx, pool, identity, "ds"); !errors.Is(err, store.ErrDatasetNotFound) {
		t.Errorf("describe deleted: %v", err)
	}
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "ds", "d"); !errors.Is(err, store.ErrDatasetNotFound) {
		t.Errorf("delete deleted: %v", err)
	}
	ds, _, err := s.ListDatasets(ctx, pool, identity, 0, "")
	if err != nil || len(ds) != 1 || ds[0].Name != "other" {
		t.Errorf("ListDatasets after delete: %+v, %v", ds, err)
	}
	// Deleted at count 3.
	for _, tt := range []struct {
		last        int64
		deleteAfter bool
	}{{0, false}, {1, true}, {2, true}, {3, false}, {4, false}} {
		pg := mustList(t, s, "ds", store.ListOptions{LastSyncCount: tt.last})
		if pg.DatasetExists || len(pg.Records) != 0 || pg.DatasetSyncCount != 0 || pg.DatasetDeletedAfterRequestedSyncCount != tt.deleteAfter {
			t.Errorf("deleted, from %d: %+v", tt.last, pg)
		}
	}
	// Writing again re-creates it from the kept count; old records are gone,
	// so keys start over at 0.
	recs, sc := mustUpdate(t, s, upd("ds", "d", put("a", "new", 0)))
	if sc != 4 || recs[0].SyncCount != 4 {
		t.Fatalf("re-created at %d", sc)
	}
	for _, tt := range []struct {
		last        int64
		deleteAfter bool
		want        []string
	}{
		{0, false, []string{"a=new@4"}},
		{2, true, []string{"a=new@4"}},
		{3, false, []string{"a=new@4"}},
		{4, false, []string{}},
	} {
		pg := mustList(t, s, "ds", store.ListOptions{LastSyncCount: tt.last})
		if !pg.DatasetExists || pg.DatasetSyncCount != 4 || pg.DatasetDeletedAfterRequestedSyncCount != tt.deleteAfter || !slices.Equal(kv(pg.Records), tt.want) {
			t.Errorf("re-created, from %d: %+v %v", tt.last, pg, kv(pg.Records))
		}
	}
	d, err = s.DescribeDataset(ctx, pool, identity, "ds")
	if err != nil || d.NumRecords != 1 || d.DataStorage != 4 || d.SyncCount != 4 {
		t.Errorf("re-created dataset %+v, %v", d, err)
	}
}

func TestPaging(t *testing.T) {
	s, _, _ := newStore(t, store.Options{})
	mustUpdate(t, s, upd("ds", "d", put("c", "1", 0), put("a", "1", 0), put("b", "1", 0))) // 1
	mustUpdate(t, s, upd("ds", "d", put("e", "2", 0), put("d", "2", 0)))                   // 2

	var pages [][]string
	tok := ""
	for {
		pg := mustList(t, s, "ds", store.ListOptions{MaxResults: 2, NextToken: tok})
		if pg.DatasetSyncCount != 2 || !pg.DatasetExists || pg.LastModifiedBy != "d" {
			t.Errorf("page repeats %+v", pg)
		}
		pages = append(pages, kv(pg.Records))
		if tok = pg.NextToken; tok == "" {
			break
		}
	}
	want := [][]string{{"a=1@1", "b=1@1"}, {"c=1@1", "d=2@2"}, {"e=2@2"}}
	if !reflect.DeepEqual(pages, want) {
		t.Errorf("pages %v, want %v", pages, want)
	}

	// Records changed or removed between pages are not skipped.
	pg := mustList(t, s, "ds", store.ListOptions{MaxResults: 2})
	mustUpdate(t, s, upd("ds", "d", put("a", "changed", 1), del("e", 2))) // 3: a was on page 1, e not yet listed
	var rest []string
	for tok = pg.NextToken; tok != ""; {
		pg = mustList(t, s, "ds", store.ListOptions{MaxResults: 2, NextToken: tok})
		rest = append(rest, kv(pg.Records)...)
		tok = pg.NextToken
	}
	if want := []string{"c=1@1", "d=2@2", "a=changed@3", "e=<nil>@3"}; !slices.Equal(rest, want) {
		t.Errorf("after concurrent change: %v, want %v", rest, want)
	}
	if pg.DatasetSyncCount != 3 {
		t.Errorf("last page count %d", pg.DatasetSyncCount)
	}

	// Paging with a lastSyncCount, exact page boundary.
	pg = mustList(t, s, "ds", store.ListOptions{LastSyncCount: 1, MaxResults: 1})
	pg2 := mustList(t, s, "ds", store.ListOptions{LastSyncCount: 1, MaxResults: 1, NextToken: pg.NextToken})
	pg3 := mustList(t, s, "ds", store.ListOptions{LastSyncCount: 1, MaxResults: 1, NextToken: pg2.NextToken})
	got := slices.Concat(kv(pg.Records), kv(pg2.Records), kv(pg3.Records))
	if !slices.Equal(got, []string{"d=2@2", "a=changed@3", "e=<nil>@3"}) || pg3.NextToken != "" {
		t.Errorf("from 1 by 1: %v, last token %q", got, pg3.NextToken)
	}

	for _, bad := range []string{"2", "!!!", "cjE", "eDF8YQ", "cjB8YQ", "cjF8"} {
		_, err := s.ListRecords(ctx, pool, identity, "ds", store.ListOptions{NextToken: bad})
		var fe *cognito.FieldError
		if !errors.As(err, &fe) || fe.Field != "NextToken" {
			t.Errorf("token %q: %v", bad, err)
		}
	}
}

// TestDeletionBetweenPages deletes a dataset, and writes it again, while a
// device lists it from 0 page by page: every page after the deletion says
// the dataset was deleted, so that the device drops the records of the
// earlier pages, which the deletion removed.
func TestDeletionBetweenPages(t *testing.T) {
	s, rdb, clk := newStore(t, store.Options{MaxDeletedDatasets: 1})
	mustUpdate(t, s, upd("ds", "d", put("a", "1", 0), put("b", "1", 0), put("c", "1", 0))) // 1
	first := mustList(t, s, "ds", store.ListOptions{MaxResults: 2})
	if first.DatasetDeletedAfterRequestedSyncCount || first.NextToken == "" {
		t.Fatalf("first page %+v", first)
	}
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "ds", "d"); err != nil { // 2
		t.Fatal(err)
	}
	pg := mustList(t, s, "ds", store.ListOptions{MaxResults: 2, NextToken: first.NextToken})
	if pg.DatasetExists || !pg.DatasetDeletedAfterRequestedSyncCount || len(pg.Records) != 0 {
		t.Errorf("page after the deletion: %+v", pg)
	}

	mustUpdate(t, s, upd("ds", "d", put("x", "2", 0), put("y", "2", 0), put("z", "2", 0))) // 3
	var got []string
	for tok := first.NextToken; tok != ""; tok = pg.NextToken {
		pg = mustList(t, s, "ds", store.ListOptions{MaxResults: 2, NextToken: tok})
		if !pg.DatasetExists || !pg.DatasetDeletedAfterRequestedSyncCount {
			t.Errorf("page after the deletion and the new write: %+v", pg)
		}
		got = append(got, kv(pg.Records)...)
	}
	if want := []string{"x=2@3", "y=2@3", "z=2@3"}; !slices.Equal(got, want) {
		t.Errorf("pages after the deletion: %v, want %v", got, want)
	}

	// A listing begun after the deletion is not told of it, and a token
	// of the earlier form ("r<count>|<key>") still tells a deletion.
	got = nil
	for tok := ""; ; {
		pg = mustList(t, s, "ds", store.ListOptions{MaxResults: 2, NextToken: tok})
		if pg.DatasetDeletedAfterRequestedSyncCount {
			t.Errorf("listing begun after the deletion: %+v", pg)
		}
		got = append(got, kv(pg.Records)...)
		if tok = pg.NextToken; tok == "" {
			break
		}
	}
	if want := []string{"x=2@3", "y=2@3", "z=2@3"}; !slices.Equal(got, want) {
		t.Errorf("listing begun after the deletion: %v", got)
	}
	old := base64.RawURLEncoding.EncodeToString([]byte("r1|b"))
	if pg = mustList(t, s, "ds", store.ListOptions{MaxResults: 2, NextToken: old}); !pg.DatasetDeletedAfterRequestedSyncCount {
		t.Errorf("token of the earlier form: %+v", pg)
	}

	// The same once the deletion's entry is purged (MaxDeletedDatasets 1).
	mustUpdate(t, s, upd("other", "d", put("k", "v", 0)))
	pg1 := mustList(t, s, "ds", store.ListOptions{MaxResults: 2})
	for _, name := range []string{"ds", "other"} {
		clk.Add(time.Second)
		if _, _, err := s.DeleteDataset(ctx, pool, identity, name, "d"); err != nil {
			t.Fatal(err)
		}
	}
	tag := prefixOf(s) + ":" + cognito.HashTag(pool, identity)
	if names := rdb.HKeys(ctx, tag+":datasets").Val(); !slices.Equal(names, []string{"other"}) {
		t.Fatalf("dataset entries %v, want only other's: that of ds purged", names)
	}
	pg = mustList(t, s, "ds", store.ListOptions{MaxResults: 2, NextToken: pg1.NextToken})
	if pg.DatasetExists || !pg.DatasetDeletedAfterRequestedSyncCount {
		t.Errorf("page after a deletion whose entry was purged: %+v", pg)
	}
}

func TestKeyOrderIsBytewise(t *testing.T) {
	s, _, _ := newStore(t, store.Options{})
	keys := []string{"b", "B", "a", "ä", "a_", "A", "aa", "Z", "~", "é", "1"}
	var ps []store.Patch
	for _, k := range keys {
		ps = append(ps, put(k, k, 0))
	}
	mustUpdate(t, s, upd("ds", "d", ps...))
	var got []string
	tok := ""
	for {
		pg := mustList(t, s, "ds", store.ListOptions{MaxResults: 3, NextToken: tok})
		for _, r := range pg.Records {
			got = append(got, r.Key)
		}
		if tok = pg.NextToken; tok == "" {
			break
		}
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
}

func TestListDatasets(t *testing.T) {
	s, _, clk := newStore(t, store.Options{})
	for _, n := range []string{"c", "a", "e", "b", "d"} {
		mustUpdate(t, s, upd(n, "d", put("k", n, 0)))
		clk.Add(time.Second)
	}
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "d", ""); err != nil {
		t.Fatal(err)
	}
	var names []string
	tok := ""
	pages := 0
	for {
		ds, next, err := s.ListDatasets(ctx, pool, identity, 2, tok)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, d := range ds {
			names = append(names, d.Name)
			if d.NumRecords != 1 || d.DataStorage != 2 || d.SyncCount != 1 || d.IdentityID != identity {
				t.Errorf("dataset %+v", d)
			}
		}
		if tok = next; tok == "" {
			break
		}
	}
	if !slices.Equal(names, []string{"a", "b", "c", "e"}) || pages != 2 {
		t.Errorf("names %v in %d pages", names, pages)
	}
	ds, _, err := s.ListDatasets(ctx, pool, identity2, 0, "")
	if err != nil || len(ds) != 0 {
		t.Errorf("identity without datasets: %v, %v", ds, err)
	}
	var fe *cognito.FieldError
	if _, _, err := s.ListDatasets(ctx, pool, identity, 0, "%%"); !errors.As(err, &fe) || fe.Field != "NextToken" {
		t.Errorf("bad token: %v", err)
	}
}

func TestOutbox(t *testing.T) {
	s, rdb, clk := newStore(t, store.Options{SweepWindow: 50 * time.Millisecond})
	mustUpdate(t, s, upd("a", "devA", put("k", "1", 0)))
	clk.Add(time.Second)
	mustUpdate(t, s, upd("a", "devB", put("k", "2", 1)))
	mustUpdate(t, s, upd("b", "", put("k", "1", 0)))
	ch, err := s.PendingChanges(ctx, pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	// devA's change was not published when devB's replaced its marker: the
	// one event left must reach devB too.
	want := []store.Change{
		{IdentityPoolID: pool, IdentityID: identity, DatasetName: "a", SyncCount: 2, ChangedAt: clk.Now()},
		{IdentityPoolID: pool, IdentityID: identity, DatasetName: "b", SyncCount: 1, ChangedAt: clk.Now()},
	}
	if !reflect.DeepEqual(ch, want) {
		t.Fatalf("pending %+v\nwant    %+v", ch, want)
	}
	// Clearing an older count keeps the newer marker.
	old := want[0]
	old.SyncCount = 1
	if err := s.ClearChange(ctx, old); err != nil {
		t.Fatal(err)
	}
	if ch, _ := s.PendingChanges(ctx, pool, identity); len(ch) != 2 {
		t.Errorf("clear of an old count removed a marker: %+v", ch)
	}
	if err := s.ClearChange(ctx, want[0]); err != nil {
		t.Fatal(err)
	}
	if ch, _ := s.PendingChanges(ctx, pool, identity); !reflect.DeepEqual(ch, want[1:]) {
		t.Errorf("after clear: %+v", ch)
	}
	// A deletion leaves a marker too.
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "a", "op"); err != nil {
		t.Fatal(err)
	}
	ch, _ = s.PendingChanges(ctx, pool, identity)
	if len(ch) != 2 || ch[0].DatasetName != "a" || ch[0].SyncCount != 3 || ch[0].OriginDeviceID != "" {
		t.Errorf("after delete: %+v", ch)
	}
	// An update returns the change its marker holds: its device as the
	// origin while no other change of the dataset waits to be published,
	// and also when the waiting one is the same device's.
	clearAll := func() {
		pending, _ := s.PendingChanges(ctx, pool, identity)
		for _, c := range pending {
			if c.DatasetName != "b" {
				_ = s.ClearChange(ctx, c)
			}
		}
	}
	clearAll()
	for i, step := range []struct {
		dataset, device, before, wantOrigin string
	}{
		{"a", "devA", "", "devA"},
		{"a", "devA", "", "devA"},         // devA's own change waits
		{"a", "devB", "", ""},             // devA's waits
		{"a", "devB", "clear", "devB"},    // nothing waits
		{"c", "devC", "clear", "devC"},    // a new dataset
		{"c", "devC", "clear,delete", ""}, // its deletion, which has no origin, waits
		{"c", "devC", "clear", "devC"},    // nothing waits
	} {
		if strings.Contains(step.before, "clear") {
			clearAll()
		}
		if strings.Contains(step.before, "delete") {
			if _, _, err := s.DeleteDataset(ctx, pool, identity, step.dataset, "op"); err != nil {
				t.Fatal(err)
			}
		}
		_, c, err := s.UpdateRecords(ctx, upd(step.dataset, step.device, put(fmt.Sprint("k", i), "v", 0)))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		pending, _ := s.PendingChanges(ctx, pool, identity)
		// b's marker is there throughout, the only one of another dataset.
		marker := c
		marker.OthersSince = time.Time{}
		if c.OriginDeviceID != step.wantOrigin || !slices.Contains(pending, marker) || !c.OthersSince.Equal(ch[1].ChangedAt) {
			t.Errorf("step %d: %s's update returned %+v, want origin %q and others since %v; pending %+v", i, step.device, c, step.wantOrigin, ch[1].ChangedAt, pending)
		}
	}
	clearAll()

	// A failed update leaves no marker.
	_ = s.ClearChange(ctx, ch[0])
	if _, _, err := s.UpdateRecords(ctx, upd("a", "x", put("k", "v", 9))); err == nil {
		t.Fatal("stale update succeeded")
	}
	if ch, _ := s.PendingChanges(ctx, pool, identity); len(ch) != 1 || ch[0].DatasetName != "b" {
		t.Errorf("after a failed update: %+v", ch)
	}

	// ClaimPending finds markers across identities and pools, once their
	// notes are twice the sweep window old.
	for _, id := range []struct{ pool, identity string }{{pool, identity2}, {pool2, identity}} {
		u := upd("c", "devC", put("k", "v", 0))
		u.IdentityPoolID, u.IdentityID = id.pool, id.identity
		mustUpdate(t, s, u)
	}
	var (
		found   []string
		claimed []store.Pending
	)
	for deadline := time.Now().Add(5 * time.Second); len(claimed) < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ps, err := s.ClaimPending(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Err != nil {
				t.Errorf("claim of %s/%s: %v", p.IdentityPoolID, p.IdentityID, p.Err)
			}
			for _, c := range p.Changes {
				found = append(found, fmt.Sprintf("%s %s %s %d %s", c.IdentityPoolID, c.IdentityID, c.DatasetName, c.SyncCount, c.OriginDeviceID))
			}
		}
		claimed = append(claimed, ps...)
	}
	slices.Sort(found)
	wantFound := []string{
		pool2 + " " + identity + " c 1 devC",
		pool + " " + identity + " b 1 ",
		pool + " " + identity2 + " c 1 devC",
	}
	slices.Sort(wantFound)
	if !slices.Equal(found, wantFound) {
		t.Errorf("ClaimPending found\n%q\nwant\n%q", found, wantFound)
	}
	if ps, err := s.ClaimPending(ctx, 100); err != nil || len(ps) != 0 {
		t.Errorf("claimed again while the first claims hold: %+v, %v", ps, err)
	}
	// Settled as done, they leave the index, and nothing is left in it.
	if err := s.SettlePending(ctx, claimed, nil); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, k := range sweepKeys(t, s, rdb) {
		m, err := rdb.ZRange(ctx, k, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, m...)
	}
	if len(left) != 0 {
		t.Errorf("the sweep index still holds %q after every claim was settled done", left)
	}
}

// sweepKeys returns the sweep index keys of the outbox that hold anything.
func sweepKeys(t *testing.T, s *store.Store, rdb *redis.Client) []string {
	t.Helper()
	keys, err := rdb.Keys(ctx, cognito.EscapeGlob(prefixOf(s))+":{sweep:outbox:*}").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestChangeTellsOfOtherMarkers: the change an update or a deletion
// returns carries, at no extra round trip, when the oldest marker of
// another of the identity's datasets was written, for the relay to
// publish the changes left behind; its own dataset's marker, and markers
// that cannot be read, do not count.
func TestChangeTellsOfOtherMarkers(t *testing.T) {
	s, rdb, clk := newStore(t, store.Options{})
	_, c, err := s.UpdateRecords(ctx, upd("a", "dev", put("k", "1", 0)))
	if err != nil || !c.OthersSince.IsZero() {
		t.Fatalf("the first change: %+v (%v), want no others", c, err)
	}
	if _, c, err = s.UpdateRecords(ctx, upd("a", "dev", put("k", "2", 1))); err != nil || !c.OthersSince.IsZero() {
		t.Fatalf("a second change of the same dataset: %+v (%v), want no others", c, err)
	}
	first := clk.Now()
	clk.Add(time.Second)
	if _, c, err = s.UpdateRecords(ctx, upd("b", "dev", put("k", "1", 0))); err != nil || !c.OthersSince.Equal(first) {
		t.Fatalf("a change of b: %+v (%v), want others since %v, a's", c, err, first)
	}
	clk.Add(time.Second)
	if _, c, err = s.UpdateRecords(ctx, upd("c", "dev", put("k", "1", 0))); err != nil || !c.OthersSince.Equal(first) {
		t.Fatalf("a change of c: %+v (%v), want others since %v, the oldest", c, err, first)
	}
	outbox := prefixOf(s) + ":" + cognito.HashTag(pool, identity) + ":outbox"
	if err := rdb.HSet(ctx, outbox, "a", "garbage").Err(); err != nil {
		t.Fatal(err)
	}
	_, dc, err := s.DeleteDataset(ctx, pool, identity, "c", "op")
	if err != nil || !dc.OthersSince.Equal(first.Add(time.Second)) {
		t.Fatalf("the deletion of c: %+v (%v), want others since %v, b's, a's marker being unreadable", dc, err, first.Add(time.Second))
	}
	if err := rdb.Del(ctx, outbox).Err(); err != nil {
		t.Fatal(err)
	}
	if _, c, err = s.UpdateRecords(ctx, upd("b", "dev", put("k", "2", 1))); err != nil || !c.OthersSince.IsZero() {
		t.Fatalf("a change with the outbox otherwise empty: %+v (%v), want no others", c, err)
	}
}

// TestClearChangeKeepsAnotherChangeOfTheSameCount: a Redis failover that
// lost a change lets the next change of the dataset take the same sync
// count. The relay that published the lost change, clearing its marker
// afterwards, must leave the new change's marker, or the new change gets
// no event when its own publish fails.
func TestClearChangeKeepsAnotherChangeOfTheSameCount(t *testing.T) {
	s, rdb, clk := newStore(t, store.Options{})
	_, lost, err := s.UpdateRecords(ctx, upd("a", "devA", put("k", "1", 0)))
	if err != nil {
		t.Fatal(err)
	}
	// The failover: the new master never had the change.
	keys, err := rdb.Keys(ctx, cognito.EscapeGlob(prefixOf(s)+":"+cognito.HashTag(pool, identity))+":*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("the identity's keys: %q, %v", keys, err)
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	_, next, err := s.UpdateRecords(ctx, upd("a", "devB", put("k", "2", 0)))
	if err != nil {
		t.Fatal(err)
	}
	if next.SyncCount != lost.SyncCount {
		t.Fatalf("the change after the loss has sync count %d, want %d as the lost one had", next.SyncCount, lost.SyncCount)
	}

	if err := s.ClearChange(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if ch, err := s.PendingChanges(ctx, pool, identity); err != nil || !reflect.DeepEqual(ch, []store.Change{next}) {
		t.Fatalf("after clearing the lost change, pending %+v (%v); want the new change %+v", ch, err, next)
	}
	if err := s.ClearChange(ctx, next); err != nil {
		t.Fatal(err)
	}
	if ch, err := s.PendingChanges(ctx, pool, identity); err != nil || len(ch) != 0 {
		t.Errorf("after clearing the new change, pending %+v (%v); want none", ch, err)
	}
}

func TestUsage(t *testing.T) {
	s, rdb, clk := newStore(t, store.Options{})
	// Listing an empty dataset starts a session but makes no pool.
	if _, err := s.ListRecords(ctx, pool, identity, "a", store.ListOptions{NewSession: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PoolUsage(ctx, pool); !errors.Is(err, store.ErrPoolNotFound) {
		t.Errorf("PoolUsage of an empty pool: %v", err)
	}
	u, err := s.IdentityUsage(ctx, pool, identity)
	if err != nil || u.DatasetCount != 0 || u.DataStorage != 0 || !u.LastModifiedDate.IsZero() {
		t.Errorf("IdentityUsage of a new identity: %+v, %v", u, err)
	}
	t0 := clk.Now()
	mustUpdate(t, s, upd("a", "d", put("key", "value", 0), put("ü", "€", 0))) // 8 + 2+3
	clk.Add(time.Second)
	mustUpdate(t, s, upd("b", "d", put("k", "v", 0))) // 2
	u2 := upd("a", "d", put("x", "yy", 0))
	u2.IdentityID = identity2
	mustUpdate(t, s, u2) // 3
	u3 := upd("a", "d", put("x", "y", 0))
	u3.IdentityPoolID = pool2
	clk.Add(time.Second)
	mustUpdate(t, s, u3) // 2

	// Every key written is in the hash slot of its pool or of one of its
	// identities: a key common to every pool would take every write of a
	// Redis Cluster deployment to one node. The sweep index is spread over
	// sweepindex.Shards keys by identity for that reason.
	keys, err := rdb.Keys(ctx, prefixOf(s)+":*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys written: %q, %v", keys, err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, prefixOf(s)+":{sweep:outbox:") {
			continue
		}
		open, end := strings.IndexByte(k, '{'), strings.IndexByte(k, '}')
		if open < 0 || end < open || !strings.HasPrefix(k[open+1:end], pool) && !strings.HasPrefix(k[open+1:end], pool2) {
			t.Errorf("key %s is in no pool's hash slot", k)
		}
	}

	u, err = s.IdentityUsage(ctx, pool, identity)
	if err != nil || u.DatasetCount != 2 || u.DataStorage != 15 || !u.LastModifiedDate.Equal(t0.Add(time.Second)) ||
		u.IdentityID != identity || u.IdentityPoolID != pool {
		t.Errorf("IdentityUsage: %+v, %v", u, err)
	}
	pu, err := s.PoolUsage(ctx, pool)
	if err != nil || pu.DataStorage != 18 || !pu.LastModifiedDate.Equal(t0.Add(time.Second)) {
		t.Errorf("PoolUsage: %+v, %v", pu, err)
	}
	// Removing and deleting shrink the figures.
	clk.Add(time.Second)
	mustUpdate(t, s, upd("a", "d", del("key", 1)))
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "b", "d"); err != nil {
		t.Fatal(err)
	}
	u, _ = s.IdentityUsage(ctx, pool, identity)
	if u.DatasetCount != 1 || u.DataStorage != 5 || !u.LastModifiedDate.Equal(clk.Now()) {
		t.Errorf("IdentityUsage after delete: %+v", u)
	}
	pu, _ = s.PoolUsage(ctx, pool)
	if pu.DataStorage != 8 || !pu.LastModifiedDate.Equal(clk.Now()) {
		t.Errorf("PoolUsage after delete: %+v", pu)
	}

	// Sync sessions: only listings that start one count.
	for _, newSession := range []bool{true, false, true} {
		if _, err := s.ListRecords(ctx, pool, identity, "a", store.ListOptions{NewSession: newSession}); err != nil {
			t.Fatal(err)
		}
	}
	if pu, _ = s.PoolUsage(ctx, pool); pu.SyncSessions != 3 || pu.DataStorage != 8 {
		t.Errorf("PoolUsage after four listings, three starting a session: %+v", pu)
	}

	all, next, err := s.ListPoolUsage(ctx, 1, "", []string{pool, pool2})
	if err != nil || len(all) != 1 || next == "" || all[0].IdentityPoolID != pool2 || all[0].DataStorage != 2 || all[0].SyncSessions != 0 {
		t.Fatalf("ListPoolUsage page 1: %+v %q %v", all, next, err)
	}
	all, next, err = s.ListPoolUsage(ctx, 1, next, []string{pool, pool2})
	if err != nil || len(all) != 1 || next != "" || all[0].IdentityPoolID != pool || all[0].DataStorage != 8 || all[0].SyncSessions != 3 {
		t.Fatalf("ListPoolUsage page 2: %+v %q %v", all, next, err)
	}

	// The pools named come in order, with zero usage until they store
	// something, and once however often they are named; a pool that
	// stored data and is not named (deleted) is not listed.
	const empty1, empty2 = "ap-south-1:00000000-0000-0000-0000-000000000000", "sa-east-1:00000000-0000-0000-0000-000000000000"
	named := []string{empty2, pool, empty1, pool}
	var listed []string
	for next = ""; ; {
		all, next, err = s.ListPoolUsage(ctx, 2, next, named)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range all {
			listed = append(listed, u.IdentityPoolID)
			if (u.IdentityPoolID == empty1 || u.IdentityPoolID == empty2) && (u.DataStorage != 0 || !u.LastModifiedDate.IsZero()) {
				t.Errorf("ListPoolUsage of a pool that stores nothing: %+v", u)
			}
		}
		if next == "" {
			break
		}
	}
	if want := []string{empty1, empty2, pool}; !slices.Equal(listed, want) {
		t.Errorf("ListPoolUsage of %q listed %q, want %q", named, listed, want)
	}

	var ids []string
	cursor := ""
	for {
		got, next, err := s.Identities(ctx, pool, cursor, 1)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
		if cursor = next; cursor == "" {
			break
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if !slices.Equal(ids, []string{identity, identity2}) {
		t.Errorf("Identities: %v", ids)
	}
}

func TestValidation(t *testing.T) {
	s, rdb, _ := newStore(t, store.Options{})
	long := strings.Repeat("k", 1025)
	tooMany := make([]store.Patch, store.MaxPatches+1)
	for i := range tooMany {
		tooMany[i] = put(fmt.Sprint("k", i), "", 0)
	}
	mod := func(f func(*store.Update)) store.Update {
		u := upd("ds", "dev", put("ok", "v", 0))
		f(&u)
		return u
	}
	tests := []struct {
		name  string
		u     store.Update
		field string
	}{
		{"pool", mod(func(u *store.Update) { u.IdentityPoolID = "nocolon" }), "IdentityPoolId"},
		{"identity", mod(func(u *store.Update) { u.IdentityID = "" }), "IdentityId"},
		{"dataset", mod(func(u *store.Update) { u.DatasetName = "no spaces" }), "DatasetName"},
		{"device", mod(func(u *store.Update) { u.DeviceID = "a\nb" }), "DeviceId"},
		{"op", upd("ds", "d", put("a", "", 0), store.Patch{Op: "add", Key: "b"}), "RecordPatches[1].Op"},
		{"empty key", upd("ds", "d", put("", "v", 0)), "RecordPatches[0].Key"},
		{"long key", upd("ds", "d", put("a", "", 0), put("b", "", 0), put("c", "", 0), put(long, "v", 0)), "RecordPatches[3].Key"},
		{"bad utf-8 key", upd("ds", "d", put("\xff", "v", 0)), "RecordPatches[0].Key"},
		{"long value", upd("ds", "d", put("k", strings.Repeat("é", 1<<20), 0)), "RecordPatches[0].Value"},
		{"negative count", upd("ds", "d", put("k", "v", -1)), "RecordPatches[0].SyncCount"},
		{"duplicate key", upd("ds", "d", put("k", "v", 0), del("k", 0)), "RecordPatches[1].Key"},
		{"too many", upd("ds", "d", tooMany...), "RecordPatches"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.UpdateRecords(ctx, tt.u)
			var fe *cognito.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("got %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
	other := []struct {
		name  string
		call  func() error
		field string
	}{
		{"ListRecords dataset", func() error {
			_, err := s.ListRecords(ctx, pool, identity, "", store.ListOptions{})
			return err
		}, "DatasetName"},
		{"ListRecords lastSyncCount", func() error {
			_, err := s.ListRecords(ctx, pool, identity, "ds", store.ListOptions{LastSyncCount: -1})
			return err
		}, "LastSyncCount"},
		{"ListRecords maxResults", func() error {
			_, err := s.ListRecords(ctx, pool, identity, "ds", store.ListOptions{MaxResults: -1})
			return err
		}, "MaxResults"},
		{"DescribeDataset", func() error { _, err := s.DescribeDataset(ctx, "x", identity, "ds"); return err }, "IdentityPoolId"},
		{"DeleteDataset", func() error { _, _, err := s.DeleteDataset(ctx, pool, identity, "a/b", ""); return err }, "DatasetName"},
		{"ListDatasets", func() error { _, _, err := s.ListDatasets(ctx, pool, "x:y", 0, ""); return err }, "IdentityId"},
		{"IdentityUsage", func() error { _, err := s.IdentityUsage(ctx, pool, ""); return err }, "IdentityId"},
		{"PoolUsage", func() error { _, err := s.PoolUsage(ctx, "us-east-1:XYZ"); return err }, "IdentityPoolId"},
		{"Identities", func() error { _, _, err := s.Identities(ctx, pool, "zz", 10); return err }, "Cursor"},
		{"ClearChange", func() error { return s.ClearChange(ctx, store.Change{IdentityPoolID: pool, IdentityID: identity}) }, "DatasetName"},
		{"PendingChanges", func() error { _, err := s.PendingChanges(ctx, "", identity); return err }, "IdentityPoolId"},
	}
	for _, tt := range other {
		var fe *cognito.FieldError
		if err := tt.call(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s: got %v, want a FieldError on %s", tt.name, err, tt.field)
		}
	}
	if snap := snapshot(t, rdb, s); len(snap) != 0 {
		t.Errorf("invalid calls touched Redis: %v", snap)
	}
	// A value of exactly the maximum length in characters passes validation
	// (and then fails on the size limit).
	if _, _, err := s.UpdateRecords(ctx, upd("ds", "d", put("k", strings.Repeat("é", 1<<20-1), 0))); !errors.Is(err, store.ErrLimitExceeded) {
		t.Errorf("max-length value: %v", err)
	}
}

// TestRecordTokensOfTheEarlierForm: a listing with no deletion since its
// first page is paged with NextTokens of the earlier form, "r<count>|<key>",
// the form the previous version reads: during a rolling upgrade, a device's
// next page may go to a process of that version, which refused a token
// carrying the deletion mark as not one ListRecords returned. Past a
// deletion between pages the mark goes on being carried (see
// TestDeletionBetweenPages).
func TestRecordTokensOfTheEarlierForm(t *testing.T) {
	s, _, _ := newStore(t, store.Options{})
	mustUpdate(t, s, upd("ds", "d", put("a", "1", 0), put("b", "1", 0), put("c", "1", 0))) // 1
	if _, _, err := s.DeleteDataset(ctx, pool, identity, "ds", "d"); err != nil {          // 2
		t.Fatal(err)
	}
	mustUpdate(t, s, upd("ds", "d", put("d", "1", 0), put("e", "1", 0), put("f", "1", 0))) // 3
	mustUpdate(t, s, upd("ds", "d", put("g", "1", 0), put("h", "1", 0)))                   // 4
	for _, from := range []int64{0, 3} {
		var got []string
		for tok := ""; ; {
			pg := mustList(t, s, "ds", store.ListOptions{LastSyncCount: from, MaxResults: 2, NextToken: tok})
			if pg.DatasetDeletedAfterRequestedSyncCount {
				t.Errorf("from %d: a page reports a deletion before the listing: %+v", from, pg)
			}
			got = append(got, kv(pg.Records)...)
			if tok = pg.NextToken; tok == "" {
				break
			}
			// The previous version's reading of a token.
			b, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil || len(b) < 4 || b[0] != 'r' {
				t.Fatalf("from %d: NextToken %q (%q) is not of the earlier form r<count>|<key>", from, tok, b)
			}
			scS, key, _ := strings.Cut(string(b[1:]), "|")
			last := pg.Records[len(pg.Records)-1]
			if sc, err := strconv.ParseInt(scS, 10, 64); err != nil || sc != last.SyncCount || key != last.Key {
				t.Fatalf("from %d: NextToken %q names %s@%s, want the page's last record %s@%d", from, b, key, scS, last.Key, last.SyncCount)
			}
		}
		want := []string{"d=1@3", "e=1@3", "f=1@3", "g=1@4", "h=1@4"}
		if from == 3 {
			want = want[3:]
		}
		if !slices.Equal(got, want) {
			t.Errorf("from %d: listed %v, want %v", from, got, want)
		}
	}
}
