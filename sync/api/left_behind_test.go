//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/relay"
	"github.com/pushsync/pushsync/sync/store"
)

// An identity that writes without pause, here an update and a deletion of
// a dataset every second through the AWS SDK, is never claimed by a sweep,
// which waits for twice the sweep window after an identity's last write.
// A change of it whose publish failed is published by its next writes
// instead, while they go on, not once the identity goes quiet.
func TestChangeLeftBehindByABusyIdentityIsPublishedByItsNextWrites(t *testing.T) {
	ctx := context.Background()
	const window = 2 * time.Second
	rdb, prefix := testenv.Redis(t)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	st := store.New(rdb, store.Options{KeyPrefix: prefix, SweepWindow: window})
	nsrv := testenv.StartNATS(t)
	_, js := nsrv.Connect(t)
	const stream, subject = "LEFT_BEHIND_TEST", "leftbehind.changed"
	pub, rel := publishing(t, js, st, stream, subject, relay.Options{Interval: time.Second, PublishTimeout: 500 * time.Millisecond, Grace: time.Second})
	log := zerolog.New(zerolog.NewTestWriter(t))
	srv, err := api.New(reg, api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret,
		Store: st, Relay: rel, Publisher: pub, SessionTokenKey: []byte("0123456789abcdef0123456789abcdef")}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	f := &fixture{t: t, rdb: rdb, prefix: prefix, reg: reg, ts: ts}
	createPool(t, reg)
	dev := f.developer()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = rel.Run(rctx) }()
	defer func() { cancel(); <-done }()

	update := func(dataset string) {
		t.Helper()
		listed, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String(dataset)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
			DatasetName: aws.String(dataset), SyncSessionToken: listed.SyncSessionToken, DeviceId: aws.String("device-of-alice"),
			RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("k"), Value: aws.String("v"), SyncCount: aws.Int64(0)}}}); err != nil {
			t.Fatal(err)
		}
	}

	// NATS stops: a publish finds it so, and alice's change of "stuck"
	// right after is left unpublished, not even tried (a publish tried
	// while NATS is down may still reach the stream from the client's
	// buffer).
	nsrv.Shutdown()
	_, other, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: bob, DatasetName: "other",
		Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rel.Deliver(ctx, other); err == nil {
		t.Fatal("a change was published with NATS stopped")
	}
	update("stuck")
	if cs, err := st.PendingChanges(ctx, pool, alice); err != nil || len(cs) != 1 {
		t.Fatalf("alice's outbox after her write with NATS unreachable: %+v (%v), want its marker", cs, err)
	}
	nsrv.Restart()

	onStream := func() bool {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		msg, err := s.GetLastMsgForSubject(ctx, event.Subject(subject, &event.DatasetChanged{IdentityPoolID: pool, IdentityID: alice, DatasetName: "stuck"}))
		return err == nil && msg != nil
	}
	start := time.Now()
	for time.Since(start) < 2*window+2*time.Second {
		update("busy")
		if _, err := dev.DeleteDataset(&cognitosync.DeleteDatasetInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("busy")}); err != nil {
			t.Fatal(err)
		}
		if onStream() {
			t.Logf("the change left behind was on the stream %v after the writes resumed", time.Since(start).Round(time.Millisecond))
			if cs, err := st.PendingChanges(ctx, pool, alice); err != nil || len(cs) != 0 {
				t.Errorf("alice's outbox: %+v (%v), want every marker cleared", cs, err)
			}
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("the change left unpublished was not on the stream after %v of writes of its identity every second: it waits for the identity to go quiet",
		time.Since(start).Round(time.Millisecond))
}
