package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/redisx"
)

// Identity names one identity of an identity pool.
type Identity struct{ Pool, ID string }

// Lookup is the registration of one identity of a batch, or why it could
// not be read.
type Lookup struct {
	Registration *Registration
	Err          error
}

// Registrations reads the registrations of many identities in one
// pipeline: one round trip per Redis node, however many identities. The
// result has one entry per identity, in order.
func (r *Registry) Registrations(ctx context.Context, ids []Identity) []Lookup {
	lookups, _ := r.RunBatch(ctx, ids, nil)
	return lookups
}

// Sent is one RecordSent of a RunBatch: pushes carrying SyncCount for Dataset
// accepted for DeviceIDs; with a non-zero CountAt they also count in the
// devices' budget windows of Window.
type Sent struct {
	Pool, Identity, Dataset string
	SyncCount               int64
	DeviceIDs               []string
	CountAt                 time.Time
	Window                  time.Duration
}

// RunBatch reads registrations and records sent pushes in one pipeline,
// the dispatcher's whole use of Redis for a batch of events. It returns
// one Lookup per identity and one error (nil when recorded) per Sent.
func (r *Registry) RunBatch(ctx context.Context, ids []Identity, sent []Sent) ([]Lookup, []error) {
	lookups := make([]Lookup, len(ids))
	errs := make([]error, len(sent))
	gets := make([]*redis.MapStringStringCmd, len(ids))
	evals := make([]*redis.Cmd, len(sent))
	run := func(ids []Identity, idx []int) {
		_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				gets[i] = p.HGetAll(ctx, r.identityKey(id.Pool, id.ID))
			}
			for _, i := range idx {
				s := &sent[i]
				evals[i] = recordSentScript.EvalSha(ctx, p, []string{r.identityKey(s.Pool, s.Identity)}, sentArgs(s)...)
			}
			return nil
		})
		for _, i := range idx {
			errs[i] = evals[i].Err()
		}
	}
	idx := make([]int, 0, len(sent))
	for i := range sent {
		if len(sent[i].DeviceIDs) > 0 {
			idx = append(idx, i)
		}
	}
	run(ids, idx)
	for i, c := range gets {
		all, err := c.Result()
		if err != nil {
			lookups[i].Err = fmt.Errorf("registry: read registration: %w", err)
			continue
		}
		lookups[i].Registration, lookups[i].Err = decodeRegistration(all)
	}
	// A Redis that restarted or failed over has forgotten the script:
	// load it and run those entries again.
	var again []int
	for _, i := range idx {
		if redisx.IsNoScript(errs[i]) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		if err := redisx.Load(ctx, r.rdb, recordSentScript); err != nil {
			for _, i := range again {
				errs[i] = err
			}
		} else {
			run(nil, again)
		}
	}
	for _, i := range idx {
		if errs[i] != nil && !errors.Is(errs[i], redis.Nil) {
			errs[i] = fmt.Errorf("registry: record sent pushes: %w", errs[i])
		} else {
			errs[i] = nil
		}
	}
	return lookups, errs
}

func sentArgs(s *Sent) []any {
	var now int64
	if !s.CountAt.IsZero() {
		now = s.CountAt.UnixMilli()
	}
	args := make([]any, 0, len(s.DeviceIDs)+4)
	args = append(args, s.Dataset, s.SyncCount, now, s.Window.Milliseconds())
	for _, id := range s.DeviceIDs {
		args = append(args, id)
	}
	return args
}
