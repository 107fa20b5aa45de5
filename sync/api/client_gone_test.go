//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
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

// A client that hangs up once its write is committed (an app sent to the
// background, an SDK timeout) does not hold back the change's event: the
// write publishes it and clears its marker as for a client that waits,
// rather than failing the publish on the request's cancelled context and
// leaving the event to the relay's next sweep.
func TestChangeOfAClientThatHangsUpIsPublishedAtOnce(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	st := store.New(rdb, store.Options{KeyPrefix: prefix})
	_, js := testenv.StartNATS(t).Connect(t)
	const stream, subject = "CLIENT_GONE_TEST", "clientgone.changed"
	pub, rel := publishing(t, js, st, stream, subject, relay.Options{})
	log := zerolog.New(zerolog.NewTestWriter(t))

	// Once armed, the client hangs up right after the commit, and the
	// write goes on only once the server has seen it go.
	var (
		armed     atomic.Bool
		hangUp    context.CancelFunc
		reqCtx    atomic.Pointer[context.Context]
		handled   = make(chan struct{}, 1)
		gone      = make(chan bool, 1)
		afterSeen = func() {
			if !armed.Load() {
				return
			}
			hangUp()
			select {
			case <-(*reqCtx.Load()).Done():
				gone <- true
			case <-time.After(10 * time.Second):
				gone <- false
			}
		}
	)
	srv, err := api.New(reg, api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret,
		Store: st, Relay: rel, Publisher: pub, SessionTokenKey: []byte("0123456789abcdef0123456789abcdef"),
		AfterCommit: afterSeen}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := r.Context()
		reqCtx.Store(&c)
		h.ServeHTTP(w, r)
		if armed.Load() {
			handled <- struct{}{}
		}
	}))
	t.Cleanup(ts.Close)
	f := &fixture{t: t, rdb: rdb, prefix: prefix, reg: reg, ts: ts}
	createPool(t, reg)
	dev := f.developer()
	listed, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings")})
	if err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hangUp = cancel
	armed.Store(true)
	_, err = dev.UpdateRecordsWithContext(cctx, &cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
		DatasetName: aws.String("settings"), SyncSessionToken: listed.SyncSessionToken, DeviceId: aws.String("device-of-alice"),
		RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("volume"), Value: aws.String("7"), SyncCount: aws.Int64(0)}}})
	if err == nil {
		t.Fatal("UpdateRecords answered the client that hung up")
	}
	if !<-gone {
		t.Fatal("the server did not see the client hang up within 10s")
	}
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("UpdateRecords did not end within 10s of the client hanging up")
	}

	if cs, err := st.PendingChanges(ctx, pool, alice); err != nil || len(cs) != 0 {
		t.Errorf("the committed change is still marked to publish (%v, %v): its event was left to a sweep", cs, err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, subject+".>")
	if err != nil {
		t.Fatalf("no event on the stream for the committed change: %v", err)
	}
	ev, err := event.Decode(subject, msg.Subject, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if ev.IdentityID != alice || ev.DatasetName != "settings" || ev.SyncCount != 1 || ev.OriginDeviceID != "device-of-alice" {
		t.Errorf("event %+v, want alice's settings at sync count 1 from device-of-alice", ev)
	}
}
