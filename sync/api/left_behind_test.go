//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/nats-io/nats.go/jetstream"
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
	lb := leaveBehind(t)
	lb.whileWriting(func() {
		lb.update("busy", 0)
		if _, err := lb.dev.DeleteDataset(&cognitosync.DeleteDatasetInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("busy")}); err != nil {
			t.Fatal(err)
		}
	})
}

// A write the store refuses notes its identity in the sweep index as any
// write does, which keeps a sweep from claiming it, and publishes nothing:
// a client retrying a refused write every second, here one with a stale
// sync count, must not hold back the identity's change left behind.
func TestChangeLeftBehindIsPublishedByRefusedWrites(t *testing.T) {
	lb := leaveBehind(t)
	lb.update("busy", 0)
	lb.whileWriting(func() {
		_, err := lb.write("busy", 0)
		if ae, ok := err.(awserr.Error); !ok || ae.Code() != "ResourceConflictException" {
			t.Fatalf("a write with a stale sync count: %v, want ResourceConflictException", err)
		}
	})
}

// leftBehind is alice's change of dataset "stuck", committed while NATS was
// unreachable and left unpublished, and what it takes to write more.
type leftBehind struct {
	t      *testing.T
	ctx    context.Context
	st     *store.Store
	js     jetstream.JetStream
	dev    *cognitosync.CognitoSync
	window time.Duration
	stream string
	prefix string
}

// leaveBehind starts the API with a relay and its sweep, and leaves a
// change of alice's unpublished.
func leaveBehind(t *testing.T) *leftBehind {
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
	lb := &leftBehind{t: t, ctx: ctx, st: st, js: js, dev: f.developer(), window: window, stream: stream, prefix: subject}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = rel.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

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
	lb.update("stuck", 0)
	if cs, err := st.PendingChanges(ctx, pool, alice); err != nil || len(cs) != 1 {
		t.Fatalf("alice's outbox after her write with NATS unreachable: %+v (%v), want its marker", cs, err)
	}
	nsrv.Restart()
	return lb
}

// write writes alice's record k of dataset with the given sync count, in a
// session of its own.
func (lb *leftBehind) write(dataset string, syncCount int64) (*cognitosync.UpdateRecordsOutput, error) {
	listed, err := lb.dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String(dataset)})
	if err != nil {
		lb.t.Fatal(err)
	}
	return lb.dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
		DatasetName: aws.String(dataset), SyncSessionToken: listed.SyncSessionToken, DeviceId: aws.String("device-of-alice"),
		RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("k"), Value: aws.String("v"), SyncCount: aws.Int64(syncCount)}}})
}

func (lb *leftBehind) update(dataset string, syncCount int64) {
	lb.t.Helper()
	if _, err := lb.write(dataset, syncCount); err != nil {
		lb.t.Fatal(err)
	}
}

// whileWriting calls write every second, for twice the sweep window and
// more, until the change left behind is on the stream; it fails the test
// if it never is.
func (lb *leftBehind) whileWriting(write func()) {
	t := lb.t
	onStream := func() bool {
		s, err := lb.js.Stream(lb.ctx, lb.stream)
		if err != nil {
			return false
		}
		msg, err := s.GetLastMsgForSubject(lb.ctx, event.Subject(lb.prefix, &event.DatasetChanged{IdentityPoolID: pool, IdentityID: alice, DatasetName: "stuck"}))
		return err == nil && msg != nil
	}
	start := time.Now()
	for time.Since(start) < 2*lb.window+2*time.Second {
		write()
		if onStream() {
			t.Logf("the change left behind was on the stream %v after the writes resumed", time.Since(start).Round(time.Millisecond))
			if cs, err := lb.st.PendingChanges(lb.ctx, pool, alice); err != nil || len(cs) != 0 {
				t.Errorf("alice's outbox: %+v (%v), want every marker cleared", cs, err)
			}
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("the change left unpublished was not on the stream after %v of writes of its identity every second: it waits for the identity to go quiet",
		time.Since(start).Round(time.Millisecond))
}
