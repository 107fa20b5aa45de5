package store_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/sync/store"
)

func BenchmarkUpdateRecords(b *testing.B) {
	for _, bc := range []struct {
		name    string
		patches int
		size    int
	}{
		{"1x16B", 1, 16},
		{"10x100B", 10, 100},
		{"1x100KiB", 1, 100 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, _, _ := newStore(b, store.Options{})
			value := strings.Repeat("v", bc.size)
			ps := make([]store.Patch, bc.patches)
			for i := range ps {
				ps[i] = put(fmt.Sprint("key", i), value, 0)
			}
			b.ReportAllocs()
			b.SetBytes(int64(bc.patches * bc.size))
			for b.Loop() {
				_, c, err := s.UpdateRecords(ctx, upd("bench", "dev", ps...))
				if err != nil {
					b.Fatal(err)
				}
				for i := range ps {
					ps[i].SyncCount = c.SyncCount
				}
			}
		})
	}
}

// BenchmarkRemoveRecords writes a new key and removes the one before in
// each update, as an app whose keys change over time does: every update
// leaves a tombstone, in a dataset that already holds 4096 of them.
func BenchmarkRemoveRecords(b *testing.B) {
	s, _, _ := newStore(b, store.Options{})
	for round := range 4 {
		ps := make([]store.Patch, 1024)
		for j := range ps {
			ps[j] = put(fmt.Sprint("old", round, "-", j), "v", 0)
		}
		_, sc := mustUpdate(b, s, upd("bench", "dev", ps...))
		for j := range ps {
			ps[j] = del(ps[j].Key, sc)
		}
		mustUpdate(b, s, upd("bench", "dev", ps...))
	}
	_, sc := mustUpdate(b, s, upd("bench", "dev", put("key0", "v", 0)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		_, c, err := s.UpdateRecords(ctx, upd("bench", "dev", put(fmt.Sprint("key", i), "v", 0), del(fmt.Sprint("key", i-1), sc)))
		if err != nil {
			b.Fatal(err)
		}
		sc = c.SyncCount
	}
}

func BenchmarkListRecords(b *testing.B) {
	for _, bc := range []struct {
		name     string
		records  int
		size     int
		fromLast bool // list only the last update (an incremental sync)
	}{
		{"all-100x100B", 100, 100, false},
		{"all-1000x1000B", 1000, 1000, false},
		{"incremental-1000x1000B", 1000, 1000, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, _, _ := newStore(b, store.Options{})
			value := strings.Repeat("v", bc.size)
			var sc int64
			for i := 0; i < bc.records; i += 100 {
				var ps []store.Patch
				for j := i; j < i+100 && j < bc.records; j++ {
					ps = append(ps, put(fmt.Sprint("key", j), value, 0))
				}
				_, sc = mustUpdate(b, s, upd("bench", "dev", ps...))
			}
			o := store.ListOptions{}
			want := bc.records
			if bc.fromLast {
				_, sc = mustUpdate(b, s, upd("bench", "dev", put("key0", "changed", sc-int64(bc.records/100)+1)))
				o.LastSyncCount, want = sc-1, 1
			}
			b.ReportAllocs()
			for b.Loop() {
				pg, err := s.ListRecords(ctx, pool, identity, "bench", o)
				if err != nil || len(pg.Records) != want {
					b.Fatalf("%d records, %v", len(pg.Records), err)
				}
			}
		})
	}
}
