package registry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// TestSubscriptionsPerDeviceAreBounded checks that a device may be
// subscribed to MaxSubscriptionsPerDevice datasets at once and no more,
// and that the limit refuses only new subscriptions of that device.
func TestSubscriptionsPerDeviceAreBounded(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, MaxSubscriptionsPerDevice: 3, Now: tickingClock()})
	ctx := context.Background()
	a, _, err := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-a")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := r.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-b")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := r.Subscribe(ctx, pool, identity, fmt.Sprintf("ds%d", i), a.ID); err != nil {
			t.Fatalf("subscription %d: %v", i+1, err)
		}
	}
	err = r.Subscribe(ctx, pool, identity, "ds3", a.ID)
	if !errors.Is(err, registry.ErrTooManySubscriptions) || !strings.Contains(err.Error(), a.ID) || !strings.Contains(err.Error(), "3 datasets") {
		t.Fatalf("fourth subscription: %v, want ErrTooManySubscriptions naming the device and the limit", err)
	}
	assertSubs(t, r, "ds3")
	if err := r.Subscribe(ctx, pool, identity, "ds1", a.ID); err != nil {
		t.Fatalf("subscribing again to a dataset at the limit: %v", err)
	}
	if err := r.Subscribe(ctx, pool, identity, "ds3", b.ID); err != nil {
		t.Fatalf("another device of the identity: %v", err)
	}
	if err := r.Unsubscribe(ctx, pool, identity, "ds0", a.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.Subscribe(ctx, pool, identity, "ds3", a.ID); err != nil {
		t.Fatalf("after an unsubscribe: %v", err)
	}
	assertSubs(t, r, "ds3", a.ID, b.ID)
}
