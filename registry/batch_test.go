package registry_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// TestRunBatch reads registrations and records sent pushes in one
// pipeline, and matches what the one-at-a-time calls give.
func TestRunBatch(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	ids := []registry.Identity{{Pool: pool, ID: identity}, {Pool: pool, ID: other}}
	a, _, err := r.RegisterDevice(ctx, pool, identity, registry.APNS, apnsToken)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := r.RegisterDevice(ctx, pool, other, registry.GCM, "fcm-token-b")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ id, dev string }{{identity, a.ID}, {other, b.ID}} {
		if err := r.Subscribe(ctx, pool, s.id, "settings", s.dev); err != nil {
			t.Fatal(err)
		}
	}
	lookups, errs := r.RunBatch(ctx, ids, []registry.Sent{
		{Pool: pool, Identity: identity, Dataset: "settings", SyncCount: 7, DeviceIDs: []string{a.ID}},
		{Pool: pool, Identity: other, Dataset: "settings", SyncCount: 3, DeviceIDs: []string{b.ID}},
		{Pool: pool, Identity: other, Dataset: "settings", SyncCount: 9}, // no devices: nothing to do
	})
	if len(lookups) != 2 || len(errs) != 3 {
		t.Fatalf("%d lookups and %d errors for 2 identities and 3 records", len(lookups), len(errs))
	}
	for i, e := range errs {
		if e != nil {
			t.Errorf("record %d: %v", i, e)
		}
	}
	for i, l := range lookups {
		if l.Err != nil {
			t.Fatalf("lookup %d: %v", i, l.Err)
		}
		one, err := r.Registration(ctx, ids[i].Pool, ids[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Registration.Devices) != 1 || fmt.Sprint(l.Registration.Devices) != fmt.Sprint(one.Devices) {
			t.Errorf("lookup %d: devices %v, one at a time %v", i, l.Registration.Devices, one.Devices)
		}
	}
	// The records were written: lookups now see the sent counts.
	after := r.Registrations(ctx, ids)
	if got := after[0].Registration.Sent[registry.SentKey(a.ID, "settings")]; got != 7 {
		t.Errorf("device a: sent count %d, want 7", got)
	}
	if got := after[1].Registration.Sent[registry.SentKey(b.ID, "settings")]; got != 3 {
		t.Errorf("device b: sent count %d, want 3", got)
	}
}

// TestRunBatchAfterScriptFlush records through a Redis that has
// forgotten the script, as after a restart or failover.
func TestRunBatchAfterScriptFlush(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	ctx := context.Background()
	d, _, err := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-token-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Subscribe(ctx, pool, identity, "settings", d.ID); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	_, errs := r.RunBatch(ctx, nil, []registry.Sent{{Pool: pool, Identity: identity, Dataset: "settings", SyncCount: 5, DeviceIDs: []string{d.ID}, CountAt: time.Now(), Window: time.Hour}})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	reg, err := r.Registration(ctx, pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Sent[registry.SentKey(d.ID, "settings")]; got != 5 {
		t.Fatalf("sent count %d after the script was reloaded, want 5", got)
	}
	if w := reg.Budget[d.ID]; w.Pushes != 1 {
		t.Fatalf("budget window %+v, want one push counted", w)
	}
}

// BenchmarkRegistrations32 reads 32 identities in one pipeline; compare
// its time per identity with BenchmarkRegistration's one round trip each.
func BenchmarkRegistrations32(b *testing.B) {
	rdb, prefix := testenv.Redis(b)
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	ctx := context.Background()
	ids := make([]registry.Identity, 32)
	for i := range ids {
		ids[i] = registry.Identity{Pool: pool, ID: fmt.Sprintf("us-east-1:%08x-2222-3333-4444-555555555555", i)}
		for j := range 4 {
			d, _, err := r.RegisterDevice(ctx, pool, ids[i].ID, registry.APNS, fmt.Sprintf("%08x%056x", i, j))
			if err != nil {
				b.Fatal(err)
			}
			if err := r.Subscribe(ctx, pool, ids[i].ID, "settings", d.ID); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, l := range r.Registrations(ctx, ids) {
			if l.Err != nil {
				b.Fatal(l.Err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ids)), "ns/identity")
}
