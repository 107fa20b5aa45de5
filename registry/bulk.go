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
	// one: it ended, or its lease ran out and another run began.
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

// RenewBulkPublish extends the lease of the run that started at start.
func (r *Registry) RenewBulkPublish(ctx context.Context, pool string, start time.Time, lease time.Duration) error {
	return r.updateBulk(ctx, pool, start, func(b *BulkPublish) { b.LeaseUntil = r.now().UTC().Add(lease) })
}

// FinishBulkPublish records the outcome of the run that started at start;
// failure is empty for a success.
func (r *Registry) FinishBulkPublish(ctx context.Context, pool string, start time.Time, failure string) error {
	return r.updateBulk(ctx, pool, start, func(b *BulkPublish) {
		b.CompleteTime, b.LeaseUntil = r.now().UTC(), time.Time{}
		if failure == "" {
			b.Status, b.LastSuccess = BulkSucceeded, b.CompleteTime
		} else {
			b.Status, b.FailureMessage = BulkFailed, failure
		}
	})
}

func (r *Registry) updateBulk(ctx context.Context, pool string, start time.Time, change func(*BulkPublish)) error {
	return r.updateConfig(ctx, func(tx *redis.Tx) error {
		data, err := tx.HGet(ctx, r.configKey(), r.bulkField(pool)).Result()
		if err != nil {
			return fmt.Errorf("registry: bulk publish of %s: %w", pool, err)
		}
		var b BulkPublish
		if err := json.Unmarshal([]byte(data), &b); err != nil {
			return err
		}
		if !b.StartTime.Equal(start) || b.Status != BulkInProgress {
			return fmt.Errorf("registry: %w: that of %s started at %s", ErrBulkNotCurrent, pool, start.Format(time.RFC3339))
		}
		change(&b)
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
