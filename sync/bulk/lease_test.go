//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package bulk_test

import (
	"context"
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
