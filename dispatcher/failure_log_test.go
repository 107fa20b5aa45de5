package dispatcher_test

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/registry"
)

// TestPushFailuresAreNotLoggedOneByOne: while a push service keeps failing,
// each kind of failure (app, platform, class, reason) is logged once, not
// once per push, which in an outage would be a line per push; the metrics
// still count every failure.
func TestPushFailuresAreNotLoggedOneByOne(t *testing.T) {
	e := setup(t)
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		return &dispatcher.Error{Class: dispatcher.Retry, Reason: "UNAVAILABLE"}
	}
	e.apns.answer = func(p *dispatcher.Push, attempt int) error {
		return &dispatcher.Error{Class: dispatcher.Retry, Reason: "ServiceUnavailable"}
	}
	e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	// Five deliveries (MaxDeliver), each with its own tries of every push.
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "abandoned")
	fcm := e.counter(t, "pushsync_pushes_total", "platform", "GCM", "result", "retry", "reason", "UNAVAILABLE")
	apns := e.counter(t, "pushsync_pushes_total", "platform", "APNS", "result", "retry", "reason", "ServiceUnavailable")
	if fcm < 5 || apns < 5 {
		t.Fatalf("failures counted: FCM %v, APNs %v; want at least one per delivery", fcm, apns)
	}
	lines := e.logs.Lines("push not accepted")
	kinds := map[string]int{}
	for _, l := range lines {
		for _, reason := range []string{`"reason":"UNAVAILABLE"`, `"reason":"ServiceUnavailable"`} {
			if strings.Contains(l, reason) {
				kinds[reason]++
			}
		}
	}
	// APNS and APNS_SANDBOX are two platforms of the same app.
	if kinds[`"reason":"UNAVAILABLE"`] != 1 || kinds[`"reason":"ServiceUnavailable"`] != 2 || len(lines) != 3 {
		t.Errorf("%d lines logged for %v FCM and %v APNs failures, want one per kind (FCM, APNS, APNS_SANDBOX):\n%s",
			len(lines), fcm, apns, strings.Join(lines, ""))
	}
	// The wait before the next try says its unit: a bare number (zerolog's
	// milliseconds) reads as seconds as easily.
	retried := e.logs.Lines("event will be retried")
	if len(retried) == 0 {
		t.Fatal("no event will be retried line")
	}
	for _, l := range retried {
		var line struct{ Delay string }
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if d, err := time.ParseDuration(line.Delay); err != nil || d <= 0 {
			t.Errorf("retry line's delay %q is not a duration with its unit: %s", line.Delay, l)
		}
	}
}

// TestRegistryTroubleIsNotLoggedOneByOne: while the registry cannot be
// read, every event fails its lookup on each of its deliveries; the
// failure is logged as a warning once, not once per event, and the rest go
// at debug level.
func TestRegistryTroubleIsNotLoggedOneByOne(t *testing.T) {
	t.Run("registry unreachable", func(t *testing.T) {
		e := setup(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		rdb := redis.NewClient(&redis.Options{Addr: closed, MaxRetries: -1})
		t.Cleanup(func() { rdb.Close() })
		e.reg = registry.New(rdb, registry.Options{KeyPrefix: "unreachable"})
		e.start(t, nil)
		for i := range 5 {
			e.publish(t, "settings", int64(i+1), e.origin.ID)
		}
		e.waitCounter(t, 10, "pushsync_events_consumed_total", "result", "retry")
		var warnings []string
		for _, l := range e.logs.Lines("registry lookup failed") {
			if strings.Contains(l, `"level":"warn"`) {
				warnings = append(warnings, l)
			}
		}
		if len(warnings) != 1 {
			t.Errorf("%d warnings logged for %v failed lookups, want 1:\n%s", len(warnings),
				e.counter(t, "pushsync_events_consumed_total", "result", "retry"), strings.Join(warnings, ""))
		}
	})
}

// TestPushFailureLogNamesTheDevice: the line logged for a push the service
// did not accept names the pool and identity of its device along with the
// device, which together find it (pushsyncctl device list -pool -identity),
// and the change it carried.
func TestPushFailureLogNamesTheDevice(t *testing.T) {
	e := setup(t)
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		if p.Device.Token == "fcm-3" {
			return &dispatcher.Error{Class: dispatcher.Permanent, Reason: "INVALID_ARGUMENT"}
		}
		return nil
	}
	e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	lines := e.logs.Lines("push not accepted")
	if len(lines) != 1 {
		t.Fatalf("%d lines for one push not accepted, want 1:\n%s", len(lines), strings.Join(lines, ""))
	}
	for _, want := range []string{
		`"pool":"` + pool + `"`, `"identity":"` + identity + `"`, `"device":"` + e.deviceID(t, "fcm-3") + `"`,
		`"dataset":"settings"`, `"sync_count":5`, `"app":"android"`, `"reason":"INVALID_ARGUMENT"`,
	} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the line lacks %s:\n%s", want, lines[0])
		}
	}
	if n := strings.Count(lines[0], `"dataset":`); n != 1 {
		t.Errorf("the line has %d dataset fields, want 1:\n%s", n, lines[0])
	}
}
