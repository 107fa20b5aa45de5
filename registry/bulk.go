package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/sync/cognito"
)

// Bulk publish statuses, as Cognito Sync names them.
const (
	BulkNotStarted = "NOT_STARTED"
	BulkInProgress = "IN_PROGRESS"
	BulkFailed     = "FAILED"
	BulkSucceeded  = "SUCCEEDED"
)

// Errors of bulk publish runs.
var (
	ErrBulkInProgress  = errors.New("a bulk publish of the pool is in progress")
	ErrAlreadyStreamed = errors.New("the pool's last successful bulk publish completed less than 24 hours ago")
	// ErrBulkNotCurrent is returned by RenewBulkPublish and
	// FinishBulkPublish for a run that is no longer the pool's current
	// one: it ended, its lease ran out (from then on it shows as failed,
	// and stays so), or its pool was purged.
	ErrBulkNotCurrent = errors.New("the bulk publish is no longer the current run")
)

// BulkPublish is the state of an identity pool's bulk publish.
type BulkPublish struct {
	Status         string    `json:"status"`
	StartTime      time.Time `json:"startTime,omitzero"`
	CompleteTime   time.Time `json:"completeTime,omitzero"`
	FailureMessage string    `json:"failureMessage,omitempty"`
	// LeaseUntil is when an in-progress run that stopped renewing its
	// lease counts as failed (its process died).
	LeaseUntil time.Time `json:"leaseUntil,omitzero"`
	// LastSuccess is when the last run that succeeded completed.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
}

func (r *Registry) bulkField(pool string) string { return "bulk:" + pool }

// BulkPublishState returns the pool's bulk publish state; a run whose lease
// ran out is reported as failed.
func (r *Registry) BulkPublishState(ctx context.Context, pool string) (BulkPublish, error) {
	return r.bulkState(ctx, r.rdb, pool)
}

func (r *Registry) bulkState(ctx context.Context, c redis.Cmdable, pool string) (BulkPublish, error) {
	data, err := c.HGet(ctx, r.configKey(), r.bulkField(pool)).Result()
	if err == redis.Nil {
		return BulkPublish{Status: BulkNotStarted}, nil
	}
	if err != nil {
		return BulkPublish{}, fmt.Errorf("registry: bulk publish state of %s: %w", pool, err)
	}
	var b BulkPublish
	if err := json.Unmarshal([]byte(data), &b); err != nil {
		return BulkPublish{}, fmt.Errorf("registry: bulk publish state of %s is corrupt: %w", pool, err)
	}
	if b.Status == BulkInProgress && !r.now().Before(b.LeaseUntil) {
		b.Status, b.FailureMessage, b.CompleteTime = BulkFailed, "the bulk publish was interrupted (its process stopped)", b.LeaseUntil
	}
	return b, nil
}

// BeginBulkPublish marks a bulk publish of the pool as started, holding a
// lease until now+lease. It refuses while another is in progress, and
// within minInterval of the completion of the last successful one (as
// Cognito Sync's AlreadyStreamedException does), saying when the next may
// start.
func (r *Registry) BeginBulkPublish(ctx context.Context, pool string, lease, minInterval time.Duration) (BulkPublish, error) {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return BulkPublish{}, err
	}
	var out BulkPublish
	err := r.updateConfig(ctx, func(tx *redis.Tx) error {
		cur, err := r.bulkState(ctx, tx, pool)
		if err != nil {
			return err
		}
		now := r.now().UTC()
		switch {
		case cur.Status == BulkInProgress:
			return ErrBulkInProgress
		case !cur.LastSuccess.IsZero() && now.Sub(cur.LastSuccess) < minInterval:
			return fmt.Errorf("%w (at %s); the next may start at %s", ErrAlreadyStreamed,
				cur.LastSuccess.Format(time.RFC3339), cur.LastSuccess.Add(minInterval).Format(time.RFC3339))
		}
		out = BulkPublish{Status: BulkInProgress, StartTime: now, LeaseUntil: now.Add(lease), LastSuccess: cur.LastSuccess}
		return r.putBulk(ctx, tx, pool, out)
	})
	if err != nil {
		return BulkPublish{}, err
	}
	return out, nil
}

// RenewBulkPublish extends the lease of the run that started at start. It
// returns ErrBulkNotCurrent for a run that is no longer the pool's current
// one, and ErrPoolNotFound once the pool is deleted: the run is to stop,
// rather than go on publishing the datasets of a deleted pool.
func (r *Registry) RenewBulkPublish(ctx context.Context, pool string, start time.Time, lease time.Duration) error {
	return r.updateBulk(ctx, pool, start, func(tx *redis.Tx, b *BulkPublish) error {
		exists, err := tx.HExists(ctx, r.configKey(), poolField(pool)).Result()
		if err != nil {
			return fmt.Errorf("registry: get identity pool %s: %w", pool, err)
		}
		if !exists {
			return fmt.Errorf("registry: %w: %s was deleted during its bulk publish", ErrPoolNotFound, pool)
		}
		b.LeaseUntil = r.now().UTC().Add(lease)
		return nil
	})
}

// FinishBulkPublish records the outcome of the run that started at start;
// failure is empty for a success.
func (r *Registry) FinishBulkPublish(ctx context.Context, pool string, start time.Time, failure string) error {
	return r.updateBulk(ctx, pool, start, func(_ *redis.Tx, b *BulkPublish) error {
		b.CompleteTime, b.LeaseUntil = r.now().UTC(), time.Time{}
		if failure == "" {
			b.Status, b.LastSuccess = BulkSucceeded, b.CompleteTime
		} else {
			b.Status, b.FailureMessage = BulkFailed, failure
		}
		return nil
	})
}

// updateBulk changes the state of the pool's run that started at start, if
// it is still the pool's current run. A run whose lease ran out is not,
// even if no other run began since: it showed as failed from then on,
// and a stalled run that wakes up must not turn that back into
// IN_PROGRESS, or into SUCCEEDED, after a client took the failure as the
// outcome.
func (r *Registry) updateBulk(ctx context.Context, pool string, start time.Time, change func(*redis.Tx, *BulkPublish) error) error {
	return r.updateConfig(ctx, func(tx *redis.Tx) error {
		notCurrent := func(why string) error {
			return fmt.Errorf("registry: %w: that of %s started at %s %s", ErrBulkNotCurrent, pool, start.Format(time.RFC3339), why)
		}
		data, err := tx.HGet(ctx, r.configKey(), r.bulkField(pool)).Result()
		if err == redis.Nil {
			return notCurrent("is gone (its pool was purged)")
		}
		if err != nil {
			return fmt.Errorf("registry: bulk publish of %s: %w", pool, err)
		}
		var b BulkPublish
		if err := json.Unmarshal([]byte(data), &b); err != nil {
			return fmt.Errorf("registry: bulk publish state of %s is corrupt: %w", pool, err)
		}
		switch {
		case !b.StartTime.Equal(start):
			return notCurrent(fmt.Sprintf("was followed by one started at %s", b.StartTime.Format(time.RFC3339)))
		case b.Status != BulkInProgress:
			return notCurrent("has ended")
		case !r.now().Before(b.LeaseUntil):
			return notCurrent(fmt.Sprintf("let its lease run out at %s", b.LeaseUntil.Format(time.RFC3339)))
		}
		if err := change(tx, &b); err != nil {
			return err
		}
		return r.putBulk(ctx, tx, pool, b)
	})
}

func (r *Registry) putBulk(ctx context.Context, tx *redis.Tx, pool string, b BulkPublish) error {
	data, err := json.Marshal(&b)
	if err != nil {
		return err
	}
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.configKey(), r.bulkField(pool), data)
		return nil
	})
	return err
}
