package registry

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// unattemptedKey holds how many deliveries of one event message ended
// without a try.
func (r *Registry) unattemptedKey(msgID string) string {
	return r.prefix + ":{msg:" + msgID + "}:unattempted"
}

// NoteUnattempted counts one delivery of the message msgID that ended
// without a try (handed back to the broker when its worker stopped), so
// that it is not counted against the message's tries; the count is kept
// for ttl.
func (r *Registry) NoteUnattempted(ctx context.Context, msgID string, ttl time.Duration) error {
	if msgID == "" {
		return errors.New("registry: no message id")
	}
	key := r.unattemptedKey(msgID)
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, key)
		p.PExpire(ctx, key, ttl)
		return nil
	})
	return err
}

// Unattempted returns how many deliveries of the message msgID ended
// without a try.
func (r *Registry) Unattempted(ctx context.Context, msgID string) (uint64, error) {
	n, err := r.rdb.Get(ctx, r.unattemptedKey(msgID)).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}
