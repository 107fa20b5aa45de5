package bulk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/bulk"
	"github.com/pushsync/pushsync/sync/store"
)

// A bulk publish, long work on a large pool, logs how many identities and
// datasets it has published as it goes, not only when it ends.
func TestBulkPublishLogsItsProgress(t *testing.T) {
	ctx := context.Background()
	reg, st, _, js := stack(t)
	if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: "BULK_PROGRESS", StreamingStatus: "ENABLED"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := fmt.Sprintf("us-east-1:a11ce000-2222-3333-4444-55555555555%d", i)
		if _, _, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: id, DatasetName: "game",
			Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}); err != nil {
			t.Fatal(err)
		}
	}
	var logs testenv.LogBuffer
	dev := serve(t, reg, st, bulk.New(reg, st, js, bulk.Options{ProgressEvery: time.Nanosecond}, zerolog.New(&logs)))
	if status, failure := bulkPublish(t, dev); status != registry.BulkSucceeded {
		t.Fatalf("bulk publish ended %s: %s", status, failure)
	}
	var seen []int
	for _, line := range logs.Lines("bulk publish in progress") {
		var l struct {
			Message    string `json:"message"`
			Identities int    `json:"identities"`
			Datasets   int    `json:"datasets"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Message != "bulk publish in progress" {
			t.Fatalf("progress line %q: %v", line, err)
		}
		if l.Datasets != l.Identities {
			t.Errorf("progress line %s: one dataset per identity here", line)
		}
		seen = append(seen, l.Identities)
	}
	if fmt.Sprint(seen) != "[1 2 3]" {
		t.Fatalf("progress lines counted identities %v, want [1 2 3]; log:\n%s", seen, logs.String())
	}
}

// failingFinish is the real registry, whose first recording of a run's
// outcome fails, as in a Redis blip.
type failingFinish struct {
	*registry.Registry
	calls atomic.Int32
}

func (f *failingFinish) FinishBulkPublish(ctx context.Context, pool string, start time.Time, failure string) error {
	if f.calls.Add(1) == 1 {
		return errors.New("connection reset by peer")
	}
	return f.Registry.FinishBulkPublish(ctx, pool, start, failure)
}

// A run whose outcome could not be recorded at the first try records it at
// a later one, rather than showing, once its lease ran out, as a run whose
// process stopped.
func TestBulkPublishRecordsItsOutcomeAfterAFailure(t *testing.T) {
	ctx := context.Background()
	reg, st, _, js := stack(t)
	if err := reg.SetPoolStreams(ctx, pool, &registry.Streams{StreamName: "BULK_FINISH", StreamingStatus: "ENABLED"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: alice, DatasetName: "game",
		Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}); err != nil {
		t.Fatal(err)
	}
	ff := &failingFinish{Registry: reg}
	dev := serve(t, reg, st, bulk.New(ff, st, js, bulk.Options{}, zerolog.New(zerolog.NewTestWriter(t))))
	if status, failure := bulkPublish(t, dev); status != registry.BulkSucceeded {
		t.Fatalf("bulk publish ended %s: %s", status, failure)
	}
	if n := ff.calls.Load(); n != 2 {
		t.Fatalf("the outcome was recorded in %d tries, want 2", n)
	}
}
