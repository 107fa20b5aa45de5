//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package bulk_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/bulk"
	"github.com/pushsync/pushsync/sync/store"
)

// slowStore is the real store, whose first read of a dataset's records
// takes as long as slow lets it: an identity that takes longer than the
// run's lease to publish.
type slowStore struct {
	*store.Store
	listed atomic.Int32
	slow   func()
}

func (s *slowStore) ListRecords(ctx context.Context, pool, identity, dataset string, o store.ListOptions) (*store.Page, error) {
	if s.listed.Add(1) == 1 {
		s.slow()
	}
	return s.Store.ListRecords(ctx, pool, identity, dataset, o)
}

// A run keeps its lease while one identity takes longer than the lease to
// publish: it stays IN_PROGRESS, and a second BulkPublish meanwhile is
// refused rather than starting a second run beside it.
func TestBulkPublishKeepsItsLeaseWhileOneIdentityTakesLongerThanIt(t *testing.T) {
	ctx := context.Background()
	reg, st, _, js := stack(t)
	if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: "BULK_LEASE", StreamingStatus: "ENABLED"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: alice, DatasetName: "game",
		Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}); err != nil {
		t.Fatal(err)
	}
	const lease = time.Second
	var (
		dev              *cognitosync.CognitoSync
		statusMidway     string
		secondStartError error
	)
	ss := &slowStore{Store: st, slow: func() {
		time.Sleep(3 * lease)
		d, err := dev.GetBulkPublishDetails(&cognitosync.GetBulkPublishDetailsInput{IdentityPoolId: aws.String(pool)})
		if err != nil {
			t.Error(err)
			return
		}
		statusMidway = aws.StringValue(d.BulkPublishStatus)
		_, secondStartError = dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: aws.String(pool)})
	}}
	dev = serve(t, reg, st, bulk.New(reg, ss, js, bulk.Options{Lease: lease, MinInterval: time.Nanosecond}, zerolog.New(zerolog.NewTestWriter(t))))
	if status, failure := bulkPublish(t, dev); status != registry.BulkSucceeded {
		t.Fatalf("bulk publish ended %s: %s", status, failure)
	}
	if statusMidway != registry.BulkInProgress {
		t.Errorf("three leases into publishing one identity, the run's status is %s, want %s", statusMidway, registry.BulkInProgress)
	}
	if ae, ok := secondStartError.(awserr.Error); !ok || ae.Code() != "DuplicateRequestException" {
		t.Errorf("a BulkPublish while the run publishes one identity answered %v, want DuplicateRequestException: a second run began beside the first", secondStartError)
	}
}

// A run whose pool is deleted meanwhile stops at its next lease renewal,
// rather than go on publishing the deleted pool's datasets, and fails
// saying why.
func TestBulkPublishStopsWhenItsPoolIsDeleted(t *testing.T) {
	ctx := context.Background()
	reg, st, _, js := stack(t)
	if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: "BULK_DELETED", StreamingStatus: "ENABLED"}); err != nil {
		t.Fatal(err)
	}
	for _, identity := range []string{alice, "us-east-1:b0b00000-2222-3333-4444-555555555555"} {
		if _, _, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: identity, DatasetName: "game",
			Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}); err != nil {
			t.Fatal(err)
		}
	}
	const lease = time.Second
	ss := &slowStore{Store: st, slow: func() {
		if err := reg.DeleteIdentityPool(ctx, pool); err != nil {
			t.Error(err)
		}
		time.Sleep(2 * lease)
	}}
	dev := serve(t, reg, st, bulk.New(reg, ss, js, bulk.Options{Lease: lease}, zerolog.New(zerolog.NewTestWriter(t))))
	if _, err := dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: aws.String(pool)}); err != nil {
		t.Fatal(err)
	}
	var state registry.BulkPublish
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if state, err = reg.BulkPublishState(ctx, pool); err != nil {
			t.Fatal(err)
		}
		if state.Status != registry.BulkInProgress {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bulk publish still in progress 30 s after its pool was deleted")
		}
	}
	if state.Status != registry.BulkFailed || !strings.Contains(state.FailureMessage, "deleted") {
		t.Errorf("bulk publish of a pool deleted during it ended %s (%q), want FAILED saying the pool was deleted", state.Status, state.FailureMessage)
	}
	s, err := js.Stream(ctx, "BULK_DELETED")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("the run published %d datasets after its pool was deleted", n)
	}
}
