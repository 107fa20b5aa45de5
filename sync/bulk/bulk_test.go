//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package bulk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
	"github.com/pushsync/pushsync/sync/bulk"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/store"
)

const (
	devKey    = "AKIAPUSHSYNCBULK0001"
	devSecret = "developer-secret-for-bulk-tests"
	pool      = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	alice     = "us-east-1:a11ce000-2222-3333-4444-555555555555"
)

// writingStore is the real store, through which another device writes to
// the dataset right after the bulk publish has read its first records.
type writingStore struct {
	*store.Store
	listed atomic.Int32
	write  func()
}

func (s *writingStore) ListRecords(ctx context.Context, pool, identity, dataset string, o store.ListOptions) (*store.Page, error) {
	p, err := s.Store.ListRecords(ctx, pool, identity, dataset, o)
	if err == nil && s.listed.Add(1) == 1 {
		s.write()
	}
	return p, err
}

// A record written while a bulk publish reads its dataset appears once in
// the dataset's message, and the message is the dataset as it was at one
// moment: every record's SyncCount at most the message's.
func TestBulkPublishHasEachRecordOnceWhenItChangesDuringTheRun(t *testing.T) {
	ctx := context.Background()
	reg, st, _, js := stack(t)
	if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: "BULK_ONCE", StreamingStatus: "ENABLED"}); err != nil {
		t.Fatal(err)
	}

	// More records and tombstones than one page of ListRecords holds
	// (1,024): 1,024 written, 10 of them removed, 10 more written.
	update := func(patches []store.Patch) {
		t.Helper()
		if _, _, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: alice, DatasetName: "game", Patches: patches}); err != nil {
			t.Fatal(err)
		}
	}
	var ps []store.Patch
	for i := range 1024 {
		ps = append(ps, store.Patch{Op: store.OpReplace, Key: fmt.Sprintf("k%04d", i), Value: "v1"})
	}
	update(ps)
	ps = nil
	for i := 1000; i < 1010; i++ {
		ps = append(ps, store.Patch{Op: store.OpRemove, Key: fmt.Sprintf("k%04d", i), SyncCount: 1})
	}
	update(ps)
	ps = nil
	for i := range 10 {
		ps = append(ps, store.Patch{Op: store.OpReplace, Key: fmt.Sprintf("n%04d", i), Value: "v3"})
	}
	update(ps)

	ws := &writingStore{Store: st, write: func() {
		update([]store.Patch{{Op: store.OpReplace, Key: "k0000", Value: "v4", SyncCount: 1}})
	}}
	dev := serve(t, reg, st, bulk.New(reg, ws, js, bulk.Options{}, zerolog.New(zerolog.NewTestWriter(t))))
	if status, failure := bulkPublish(t, dev); status != registry.BulkSucceeded {
		t.Fatalf("bulk publish ended %s: %s", status, failure)
	}

	stream, err := js.Stream(ctx, "BULK_ONCE")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("the stream holds %d messages, want 1 for the one dataset", info.State.Msgs)
	}
	m, err := stream.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	var snap bulk.Snapshot
	if err := json.Unmarshal(m.Data, &snap); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range snap.Records {
		seen[r.Key]++
		if r.SyncCount > snap.SyncCount {
			t.Errorf("record %s has SyncCount %d, after the dataset's %d in the same message", r.Key, r.SyncCount, snap.SyncCount)
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("record %s is published %d times", k, n)
		}
	}
	if len(seen) != 1034 || len(snap.Records) != 1034 {
		t.Errorf("the message holds %d records of %d keys, want 1034 (1,024 + 10 written, tombstones included)", len(snap.Records), len(seen))
	}
}

// serve creates the identity pool pool, starts the API with the runner and
// returns a developer's client of it.
func serve(t *testing.T, reg *registry.Registry, st *store.Store, runner *bulk.Runner) *cognitosync.CognitoSync {
	t.Helper()
	if _, err := reg.CreateIdentityPool(context.Background(), "", registry.IdentityPool{ID: pool, Name: "bulk"}); err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(reg, api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret,
		Store: st, SessionTokenKey: []byte("0123456789abcdef0123456789abcdef"), Bulk: runner}, zerolog.New(zerolog.NewTestWriter(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return cognitosync.New(session.Must(session.NewSession(&aws.Config{Endpoint: aws.String(ts.URL), Region: aws.String("us-east-1"),
		Credentials: credentials.NewStaticCredentials(devKey, devSecret, ""), MaxRetries: aws.Int(0)})))
}

// stack returns a registry and a store under a fresh key prefix of the
// test Redis, and a connection to an in-process NATS server.
func stack(t *testing.T) (*registry.Registry, *store.Store, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	nc, js := testenv.StartNATS(t).Connect(t)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	return reg, store.New(rdb, store.Options{KeyPrefix: prefix}), nc, js
}

// bulkPublish starts a bulk publish of the pool through the wire API,
// waits for it to end and returns its status and failure message.
func bulkPublish(t *testing.T, dev *cognitosync.CognitoSync) (status, failure string) {
	t.Helper()
	if _, err := dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: aws.String(pool)}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		d, err := dev.GetBulkPublishDetails(&cognitosync.GetBulkPublishDetailsInput{IdentityPoolId: aws.String(pool)})
		if err != nil {
			t.Fatal(err)
		}
		if st := aws.StringValue(d.BulkPublishStatus); st != registry.BulkInProgress {
			return st, aws.StringValue(d.FailureMessage)
		}
		if time.Now().After(deadline) {
			t.Fatal("bulk publish still in progress after 30 s")
		}
	}
}

// A bulk publish leaves alone what an operator set on an existing bulk
// stream (here its max age), and fails, saying why, rather than taking
// over a stream that does not carry bulk subjects (here the event stream,
// which a pool's StreamName may name by mistake).
func TestBulkPublishKeepsExistingStreamSettings(t *testing.T) {
	ctx := context.Background()
	reg, st, _, js := stack(t)
	if _, _, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: alice, DatasetName: "game",
		Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BULK_KEPT", Subjects: []string{bulk.SubjectPrefix("BULK_KEPT") + ".>"},
		MaxAge: 7 * 24 * time.Hour, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	events, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: "EVENTS", SubjectPrefix: "pushsync.events"})
	if err != nil {
		t.Fatal(err)
	}
	eventSubjects := events.CachedInfo().Config.Subjects

	// One run per pool and 24 hours: a minimal interval lets the test run
	// twice.
	dev := serve(t, reg, st, bulk.New(reg, st, js, bulk.Options{MinInterval: time.Nanosecond}, zerolog.New(zerolog.NewTestWriter(t))))

	if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: "BULK_KEPT", StreamingStatus: "ENABLED"}); err != nil {
		t.Fatal(err)
	}
	if status, failure := bulkPublish(t, dev); status != registry.BulkSucceeded {
		t.Fatalf("bulk publish to an existing bulk stream ended %s: %s", status, failure)
	}
	s, err := js.Stream(ctx, "BULK_KEPT")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo(); got.Config.MaxAge != 7*24*time.Hour || got.State.Msgs != 1 {
		t.Errorf("the bulk stream has max age %s and %d messages after the run, want the operator's 168h and 1", got.Config.MaxAge, got.State.Msgs)
	}

	if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: "EVENTS", StreamingStatus: "ENABLED"}); err != nil {
		t.Fatal(err)
	}
	status, failure := bulkPublish(t, dev)
	if status != registry.BulkFailed || !strings.Contains(failure, `do not include "pushsync.streams.EVENTS.>"`) {
		t.Errorf("bulk publish to the event stream ended %s (%q), want FAILED saying the stream lacks the bulk subjects", status, failure)
	}
	s, err = js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Subjects; !slices.Equal(got, eventSubjects) {
		t.Errorf("the event stream's subjects became %q, want %q as they were", got, eventSubjects)
	}
}

// A dataset whose JSON is larger than the largest message the NATS server
// (max_payload, 1 MB by default) or the stream (max message size) takes is
// published in parts that Join puts together again into the dataset as
// stored: many records near the 1 MB limit with tombstones, and one record
// whose value alone is near 1 MB. A small dataset stays one message without
// part numbers.
func TestBulkPublishSplitsDatasetsLargerThanAMessage(t *testing.T) {
	ctx := context.Background()
	reg, st, nc, js := stack(t)
	update := func(dataset string, patches []store.Patch) {
		t.Helper()
		if _, _, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: alice, DatasetName: dataset, Patches: patches}); err != nil {
			t.Fatal(err)
		}
	}
	update("small", []store.Patch{{Op: store.OpReplace, Key: "a", Value: "1"}, {Op: store.OpReplace, Key: "b", Value: "2"}})
	update("small", []store.Patch{{Op: store.OpRemove, Key: "b", SyncCount: 1}})
	// Characters JSON escapes (<, ") make the encoding larger than the
	// 1 MB the dataset limit counts.
	var ps []store.Patch
	for i := range 800 {
		ps = append(ps, store.Patch{Op: store.OpReplace, Key: fmt.Sprintf("k%04d", i), Value: strings.Repeat(`ab<"é`, 200)})
	}
	update("many", ps)
	ps = nil
	for i := range 20 {
		ps = append(ps, store.Patch{Op: store.OpRemove, Key: fmt.Sprintf("k%04d", i*40), SyncCount: 1})
	}
	update("many", ps)
	update("big", []store.Patch{{Op: store.OpReplace, Key: "blob", Value: strings.Repeat("0123456789abcdef<é", 55157)},
		{Op: store.OpReplace, Key: "z", Value: "after"}})

	dev := serve(t, reg, st, bulk.New(reg, st, js, bulk.Options{MinInterval: time.Nanosecond}, zerolog.New(zerolog.NewTestWriter(t))))
	// The server's max_payload, then a stream's smaller max message size.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BULK_SMALL_MSGS", Subjects: []string{bulk.SubjectPrefix("BULK_SMALL_MSGS") + ".>"},
		MaxMsgSize: 20000, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		stream string
		limit  int
	}{{"BULK_LARGE", int(nc.MaxPayload())}, {"BULK_SMALL_MSGS", 20000}} {
		if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: c.stream, StreamingStatus: "ENABLED"}); err != nil {
			t.Fatal(err)
		}
		if status, failure := bulkPublish(t, dev); status != registry.BulkSucceeded {
			t.Fatalf("%s: bulk publish ended %s: %s", c.stream, status, failure)
		}
		s, err := js.Stream(ctx, c.stream)
		if err != nil {
			t.Fatal(err)
		}
		parts := map[string][]bulk.Snapshot{}
		ids := map[string]bool{}
		for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if size := len(m.Data) + len(m.Header.Get(jetstream.MsgIDHeader)); size > c.limit {
				t.Errorf("%s: message %d holds %d bytes, over %d", c.stream, seq, size, c.limit)
			}
			id := m.Header.Get(jetstream.MsgIDHeader)
			if ids[id] {
				t.Errorf("%s: two messages have the deduplication id %s", c.stream, id)
			}
			ids[id] = true
			var snap bulk.Snapshot
			if err := json.Unmarshal(m.Data, &snap); err != nil {
				t.Fatal(err)
			}
			if snap.DatasetName == "small" && strings.Contains(string(m.Data), `"part`) {
				t.Errorf("%s: the small dataset's message has part numbers: %s", c.stream, m.Data)
			}
			parts[snap.DatasetName] = append(parts[snap.DatasetName], snap)
		}
		for _, ds := range []string{"small", "many", "big"} {
			got, err := bulk.Join(parts[ds])
			if err != nil {
				t.Errorf("%s: dataset %s: %v", c.stream, ds, err)
				continue
			}
			page, err := st.ListRecords(ctx, pool, alice, ds, store.ListOptions{All: true})
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(page.Records)
			if b, _ := json.Marshal(got.Records); string(b) != string(want) || got.SyncCount != page.DatasetSyncCount {
				t.Errorf("%s: dataset %s comes out of %d messages as %d records at SyncCount %d, want the %d stored at %d",
					c.stream, ds, len(parts[ds]), len(got.Records), got.SyncCount, len(page.Records), page.DatasetSyncCount)
			}
			if ds != "small" && len(parts[ds]) < 2 {
				t.Errorf("%s: dataset %s is in %d message, want it split", c.stream, ds, len(parts[ds]))
			}
		}
		t.Logf("%s: %d messages for 3 datasets", c.stream, len(ids))
	}
}

// A pool's StreamName that cannot name a JetStream stream (Cognito allows
// '.', JetStream does not) is refused by BulkPublish with
// InvalidParameterException saying why, not accepted and then failed, and
// no run is recorded.
func TestBulkPublishRefusesAStreamNameJetStreamCannotUse(t *testing.T) {
	ctx := context.Background()
	reg, st, _, js := stack(t)
	dev := serve(t, reg, st, bulk.New(reg, st, js, bulk.Options{}, zerolog.New(zerolog.NewTestWriter(t))))
	for _, name := range []string{"game.events", "game events", "game>", "game*", "game/events"} {
		if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: name, StreamingStatus: "ENABLED"}); err != nil {
			t.Fatal(err)
		}
		_, err := dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: aws.String(pool)})
		var aerr awserr.Error
		if !errors.As(err, &aerr) || aerr.Code() != "InvalidParameterException" || !strings.Contains(aerr.Message(), "StreamName "+strconv.Quote(name)) {
			t.Errorf("BulkPublish to stream %q: %v, want InvalidParameterException naming the stream", name, err)
		}
		d, err := dev.GetBulkPublishDetails(&cognitosync.GetBulkPublishDetailsInput{IdentityPoolId: aws.String(pool)})
		if err != nil {
			t.Fatal(err)
		}
		if s := aws.StringValue(d.BulkPublishStatus); s != registry.BulkNotStarted {
			t.Fatalf("after BulkPublish to stream %q the status is %s (%s), want NOT_STARTED", name, s, aws.StringValue(d.FailureMessage))
		}
	}
}
