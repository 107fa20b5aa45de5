package main

import (
	"context"
	"crypto/x509"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/dispatcher/apns"
	"github.com/pushsync/pushsync/dispatcher/fcm"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// TestEventIsDeliveredOnlyWhenEachDeviceHasItsPush sends an event's pushes
// through the in-process emulators with pushsyncd's own notifiers, as many
// pushes as the event has devices, but one device twice and another not at
// all, and one more to a device of another identity: the tracker must
// count the event as not delivered, and say that a push was repeated and
// one went astray, rather than take the number of pushes for the fan-out.
func TestEventIsDeliveredOnlyWhenEachDeviceHasItsPush(t *testing.T) {
	s := &stack{dir: t.TempDir()}
	s.plan(2, 4) // devices 0 and 2 of each identity on APNs, 1 and 3 on FCM
	emu, err := startEmulators(s.dir, s.tracker.push)
	if err != nil {
		t.Fatal(err)
	}
	defer emu.close()
	caPEM, err := os.ReadFile(emu.caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificates in the emulators' authority")
	}
	authKey, err := os.ReadFile(emu.authKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := os.ReadFile(emu.serviceAccountFile)
	if err != nil {
		t.Fatal(err)
	}
	apnsNotifier := apns.New(apns.Options{ProductionHost: emu.apnsURL, RootCAs: roots, TTL: time.Hour}, zerolog.Nop())
	fcmNotifier, err := fcm.New(fcm.Options{Endpoint: emu.fcmEndpoint, RootCAs: roots, TTL: time.Hour}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	apnsApp := &registry.App{Name: "bench-apns", Kind: registry.KindAPNs,
		APNs: &registry.APNsCredentials{Topic: apnsTopic, KeyID: emu.keyID, TeamID: emu.teamID, AuthKey: string(authKey)}}
	fcmApp := &registry.App{Name: "bench-fcm", Kind: registry.KindFCM,
		FCM: &registry.FCMCredentials{ProjectID: emu.projectID, ServiceAccount: string(sa)}}

	tr := s.tracker
	tr.measuring.Store(true)
	identity, syncCount := tr.event(0)
	tr.published(0, time.Now())
	ev := &event.DatasetChanged{Version: event.Version, IdentityPoolID: "us-east-1:" + uuidish(1, 1), IdentityID: s.identities[identity],
		DatasetName: dataset, SyncCount: syncCount, ChangedAt: time.Now()}
	ctx := context.Background()
	send := func(n dispatcher.Notifier, app *registry.App, p registry.Platform, token string) {
		t.Helper()
		if err := n.Notify(ctx, &dispatcher.Push{Event: ev, App: app, Device: registry.Device{Platform: p, Token: token}}); err != nil {
			t.Fatalf("push to %s: %v", token, err)
		}
	}
	send(apnsNotifier, apnsApp, registry.APNS, s.apnsTokens[identity][0])
	send(apnsNotifier, apnsApp, registry.APNS, s.apnsTokens[identity][0]) // again; device 2 gets none
	send(fcmNotifier, fcmApp, registry.GCM, s.fcmTokens[identity][0])
	send(fcmNotifier, fcmApp, registry.GCM, s.fcmTokens[identity][1])
	send(fcmNotifier, fcmApp, registry.GCM, s.fcmTokens[1-identity][0]) // another identity's device

	if n := tr.events.Load(); n != 0 {
		t.Errorf("%d events delivered, want 0: device 2 got no push", n)
	}
	if n := tr.duplicates.Load(); n != 1 {
		t.Errorf("%d duplicate pushes, want 1", n)
	}
	if n := tr.misrouted.Load(); n != 1 {
		t.Errorf("%d pushes to a device not of the event's identity, want 1", n)
	}
	if p := percentiles(tr.takeLatencies()); p.Samples != 3 {
		t.Errorf("%d latency samples, want 3: one per device that got its push", p.Samples)
	}
}

func TestDeviceNumberReadsTheBenchTokens(t *testing.T) {
	for _, n := range []int{0, 1, 63, 4095, 39_999, 1 << 30} {
		if got, ok := deviceNumber(apnsToken(n)); !ok || got != n {
			t.Errorf("APNs token %d read as %d, %v", n, got, ok)
		}
		if got, ok := deviceNumber(fcmToken(n)); !ok || got != n {
			t.Errorf("FCM token %d read as %d, %v", n, got, ok)
		}
	}
	for _, token := range []string{"", "abc", "zz" + apnsToken(1)[2:], "not-an-fcm:token-of-any-kind"} {
		if n, ok := deviceNumber(token); ok {
			t.Errorf("%q read as device %d", token, n)
		}
	}
	if _, err := parseFlags([]string{"-devices", "65"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-devices must be at most 64") {
		t.Errorf("-devices 65: %v", err)
	}
}
