package dispatcher_test

import (
	"context"
	"slices"
	"testing"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/registry"
)

// TestDeadLetterNamesTheDevicesNotPushed: a dead letter names the devices
// whose push failed on the event's last try, so that an operator knows
// whom the event has not reached (and can look them up with pushsyncctl
// device list) without comparing every device's sync count; the devices
// that got their push are not named.
func TestDeadLetterNamesTheDevicesNotPushed(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dl := e.deadLetters(t)
	e.fcmDown()
	fcm3, created, err := e.reg.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-3")
	if err != nil || created {
		t.Fatalf("looking up the device of fcm-3: %v (created %v)", err, created)
	}
	e.start(t, func(o *dispatcher.Options) { o.MaxDeliver = 2; o.DeadLetters = dl })
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "dead_lettered")
	letters, err := dl.List(ctx, 0, 10)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters %+v %v", letters, err)
	}
	if got := letters[0].Devices; !slices.Equal(got, []string{fcm3.ID}) {
		t.Fatalf("dead letter names devices %q, want only %q, the FCM device whose push failed", got, fcm3.ID)
	}
}
