package registry_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

func TestRecordSentOnlyRises(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	a, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-a")
	b, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-b")
	c, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-c")
	for _, d := range []registry.Device{a, b} {
		if err := r.Subscribe(ctx, pool, identity, "settings", d.ID); err != nil {
			t.Fatal(err)
		}
	}
	// c is registered but not subscribed to the dataset.
	if err := r.RecordSent(ctx, pool, identity, "settings", 5, []string{a.ID, b.ID, c.ID, "5cd28fbe-0000-0000-0000-00000000dead"}, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.RecordSent(ctx, pool, identity, "settings", 3, []string{a.ID}, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.RecordSent(ctx, pool, identity, "settings", 7, []string{b.ID}, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	reg, err := r.Registration(ctx, pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{registry.SentKey(a.ID, "settings"): 5, registry.SentKey(b.ID, "settings"): 7}
	if len(reg.Sent) != len(want) {
		t.Fatalf("sent %v, want %v (an unregistered or unsubscribed device gets no record)", reg.Sent, want)
	}
	for k, v := range want {
		if reg.Sent[k] != v {
			t.Fatalf("sent[%s] = %d, want %d", k, reg.Sent[k], v)
		}
	}
}

func TestRemoveDeadDevice(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	registered := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	now := registered
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, Now: func() time.Time { return now }})
	ctx := context.Background()
	d, _, _ := r.RegisterDevice(ctx, pool, identity, registry.APNS, apnsToken)
	keep, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-keep")
	for _, id := range []string{d.ID, keep.ID} {
		if err := r.Subscribe(ctx, pool, identity, "settings", id); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.RecordSent(ctx, pool, identity, "settings", 4, []string{d.ID, keep.ID}, time.Time{}, 0)

	// APNs says the token died before the device registered: it was
	// registered again since, and stays.
	if removed, err := r.RemoveDeadDevice(ctx, pool, identity, d.ID, apnsToken, registered.Add(-time.Minute), "Unregistered"); err != nil || removed {
		t.Fatalf("token dead before registration: removed=%v %v", removed, err)
	}
	// The same token registered again after the time APNs gives: the
	// device is live again, keeps its subscriptions, and stays.
	now = registered.Add(2 * time.Hour)
	again, created, err := r.RegisterDevice(ctx, pool, identity, registry.APNS, apnsToken)
	if err != nil || created || again.ID != d.ID || !again.RegisteredAt.Equal(now) {
		t.Fatalf("registered again: %+v created=%v %v; want device %s registered at %v", again, created, err, d.ID, now)
	}
	if removed, err := r.RemoveDeadDevice(ctx, pool, identity, d.ID, apnsToken, registered.Add(time.Hour), "Unregistered"); err != nil || removed {
		t.Fatalf("token dead before it was registered again: removed=%v %v", removed, err)
	}
	registered = now
	// Another token than the device's: stays.
	if removed, _ := r.RemoveDeadDevice(ctx, pool, identity, d.ID, "ff"+apnsToken[2:], registered.Add(time.Hour), "Unregistered"); removed {
		t.Fatal("removed on another token")
	}
	removed, err := r.RemoveDeadDevice(ctx, pool, identity, d.ID, apnsToken, registered.Add(time.Hour), "Unregistered")
	if err != nil || !removed {
		t.Fatalf("dead device not removed: %v %v", removed, err)
	}
	reg, _ := r.Registration(ctx, pool, identity)
	if _, ok := reg.Devices[d.ID]; ok {
		t.Fatal("device still registered")
	}
	if subs := reg.Subscribers("settings"); len(subs) != 1 || subs[0].ID != keep.ID {
		t.Fatalf("subscribers %v", subs)
	}
	if _, ok := reg.Sent[registry.SentKey(d.ID, "settings")]; ok || reg.Sent[registry.SentKey(keep.ID, "settings")] != 4 {
		t.Fatalf("sent records %v", reg.Sent)
	}
	if removed, _ := r.RemoveDeadDevice(ctx, pool, identity, d.ID, apnsToken, registered.Add(time.Hour), "Unregistered"); removed {
		t.Fatal("removed twice")
	}
}

func TestPushBudgetWindows(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	d, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-budget")
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i, at := range []time.Time{t0, t0.Add(10 * time.Minute), t0.Add(59 * time.Minute)} {
		if err := r.RecordSent(ctx, pool, identity, "settings", int64(i+1), []string{d.ID}, at, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	reg, _ := r.Registration(ctx, pool, identity)
	if w := reg.Budget[d.ID]; !w.Start.Equal(t0) || w.Pushes != 3 {
		t.Fatalf("window %+v, want 3 pushes from %v", w, t0)
	}
	// An hour after the window opened, a new one starts.
	if err := r.RecordSent(ctx, pool, identity, "settings", 4, []string{d.ID}, t0.Add(61*time.Minute), time.Hour); err != nil {
		t.Fatal(err)
	}
	reg, _ = r.Registration(ctx, pool, identity)
	if w := reg.Budget[d.ID]; !w.Start.Equal(t0.Add(61*time.Minute)) || w.Pushes != 1 {
		t.Fatalf("new window %+v", w)
	}
}

// A removal is noted in the same step as the removal itself, with the
// device's platform, the reason and the time, until ClearRemoval: a device
// removed for a dead token, or with a reason given; a removal without a
// reason, or a device kept, notes nothing.
func TestRemovalsAreNotedUntilCleared(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, Now: func() time.Time { return at }})
	ctx := context.Background()
	dead, _, _ := r.RegisterDevice(ctx, pool, identity, registry.APNS, apnsToken)
	named, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-named")
	quiet, _, _ := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-quiet")
	if removed, err := r.RemoveDeadDevice(ctx, pool, identity, dead.ID, apnsToken, at.Add(-time.Hour), "Unregistered"); err != nil || removed {
		t.Fatalf("a device registered after its token died was removed: %v %v", removed, err)
	}
	if removed, err := r.RemoveDeadDevice(ctx, pool, identity, dead.ID, apnsToken, at, "Unregistered"); err != nil || !removed {
		t.Fatalf("dead device not removed: %v %v", removed, err)
	}
	if _, err := r.RemoveDevice(ctx, pool, identity, named.ID, "RemovedByOperator"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RemoveDevice(ctx, pool, identity, quiet.ID, ""); err != nil {
		t.Fatal(err)
	}
	pending, err := r.PendingRemovals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(pending, func(i, j int) bool { return pending[i].Reason > pending[j].Reason })
	want := []registry.Removal{
		{IdentityPoolID: pool, IdentityID: identity, DeviceID: dead.ID, Platform: registry.APNS, Reason: "Unregistered", RemovedAt: at},
		{IdentityPoolID: pool, IdentityID: identity, DeviceID: named.ID, Platform: registry.GCM, Reason: "RemovedByOperator", RemovedAt: at},
	}
	if len(pending) != len(want) {
		t.Fatalf("noted removals %+v, want %+v", pending, want)
	}
	for i := range want {
		if p := pending[i]; p.IdentityPoolID != want[i].IdentityPoolID || p.IdentityID != want[i].IdentityID || p.DeviceID != want[i].DeviceID ||
			p.Platform != want[i].Platform || p.Reason != want[i].Reason || !p.RemovedAt.Equal(want[i].RemovedAt) {
			t.Errorf("noted removal %+v, want %+v", p, want[i])
		}
	}
	for _, p := range pending {
		if err := r.ClearRemoval(ctx, p.IdentityPoolID, p.IdentityID, p.DeviceID); err != nil {
			t.Fatal(err)
		}
	}
	if pending, err := r.PendingRemovals(ctx); err != nil || len(pending) != 0 {
		t.Fatalf("noted removals after clearing them: %+v %v", pending, err)
	}
}
