package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/redisx"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/sync/cognito"
)

// SecretsReport says under which master key the sealed records are: the
// platform apps and the identity credentials.
type SecretsReport struct {
	// SecondaryKey says whether the registry has a secondary master key;
	// without one, records under any other key count as unreadable.
	SecondaryKey bool          `json:"secondaryKey"`
	Apps         SealedRecords `json:"apps"`
	Credentials  SealedRecords `json:"credentials"`
}

// SealedRecords counts the records of one kind.
type SealedRecords struct {
	Total int `json:"total"`
	// Current are sealed under the current master key.
	Current int `json:"current"`
	// Secondary are sealed under the secondary master key: ResealSecrets
	// moves them to the current one.
	Secondary int `json:"secondary"`
	// Resealed were moved from the secondary key to the current one by
	// this call; they are counted under Current too.
	Resealed int `json:"resealed"`
	// Unreadable open under neither key, or are stored in plain text.
	Unreadable int `json:"unreadable"`
	// UnreadableNames names the unreadable platform apps (register them
	// again); credentials are only counted, as they expire on their own.
	UnreadableNames []string `json:"unreadableNames,omitempty"`
}

// ErrNoMasterKey is returned by SecretsStatus and ResealSecrets on a
// registry that keeps its records in plain text.
var ErrNoMasterKey = errors.New("registry: no master key is configured; records are not encrypted")

// SecretsStatus counts the sealed records under each master key.
func (r *Registry) SecretsStatus(ctx context.Context) (SecretsReport, error) {
	return r.secrets(ctx, false, nil)
}

// ResealSecrets seals again under the current master key every record
// sealed under the secondary one, and reports what it found and moved. A
// record changed meanwhile is left as the change wrote it, under the key of
// the process that wrote it: run it once every process has the new current
// key.
// progress, if not nil, is called after each batch of records.
func (r *Registry) ResealSecrets(ctx context.Context, progress func(SecretsReport)) (SecretsReport, error) {
	return r.secrets(ctx, true, progress)
}

// casHashField sets a hash field only if it still holds the value read.
// Both go as EVAL: a reseal is rare, and a pipeline cannot fall back from
// EVALSHA.
const casHashField = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0`

// casString replaces a string key, keeping its expiry, only if it still
// holds the value read.
const casString = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0`

func (r *Registry) secrets(ctx context.Context, reseal bool, progress func(SecretsReport)) (SecretsReport, error) {
	var rep SecretsReport
	if r.box == nil {
		return rep, ErrNoMasterKey
	}
	rep.SecondaryKey = r.box.Others() > 0
	apps, err := r.rdb.HGetAll(ctx, r.configKey()).Result()
	if err != nil {
		return rep, fmt.Errorf("registry: read apps: %w", err)
	}
	var recs []sealed
	for f, v := range apps {
		if name, ok := strings.CutPrefix(f, "app:"); ok {
			recs = append(recs, sealed{key: r.configKey(), field: f, context: f, name: name, value: v})
		}
	}
	slices.SortFunc(recs, func(a, b sealed) int { return strings.Compare(a.name, b.name) })
	if err := r.sortOut(ctx, recs, reseal, &rep.Apps, 1); err != nil {
		return rep, err
	}
	report := func() {
		if progress != nil {
			progress(rep)
		}
	}
	report()

	prefix := r.prefix + ":cred:{"
	err = scanKeys(ctx, r.rdb, cognito.EscapeGlob(prefix)+"*}", func(keys []string) error {
		batch := make([]sealed, 0, len(keys))
		for _, k := range keys {
			id := strings.TrimSuffix(strings.TrimPrefix(k, prefix), "}")
			batch = append(batch, sealed{key: k, context: "cred:" + id})
		}
		batch, err := r.read(ctx, batch)
		if err != nil {
			return err
		}
		if err := r.sortOut(ctx, batch, reseal, &rep.Credentials, 1); err != nil {
			return err
		}
		report()
		return nil
	})
	return rep, err
}

// sealed is one stored secret: a field of a hash or a whole string key.
type sealed struct {
	key, field, context, name, value string
}

// describe names the record for an error message.
func (s sealed) describe() string {
	if s.field != "" {
		return s.key + " field " + s.field
	}
	return s.key
}

// sortOut counts recs by the key they open under and, if reseal, moves
// those under the secondary key to the current one, each only if it has not
// changed since it was read; one that has is read and sorted again, up to
// the third attempt.
func (r *Registry) sortOut(ctx context.Context, recs []sealed, reseal bool, count *SealedRecords, attempt int) error {
	type move struct {
		rec   sealed
		value string
		cmd   *redis.Cmd
	}
	var moves []move
	for _, rec := range recs {
		count.Total++
		if !secretbox.IsSealed(rec.value) {
			count.unreadable(rec.name)
			continue
		}
		resealed, moved, err := r.box.Reseal(rec.value, rec.context)
		switch {
		case err != nil:
			count.unreadable(rec.name)
		case !moved:
			count.Current++
		case !reseal:
			count.Secondary++
		default:
			moves = append(moves, move{rec: rec, value: resealed})
		}
	}
	if len(moves) == 0 {
		return nil
	}
	_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range moves {
			if m.rec.field != "" {
				moves[i].cmd = p.Eval(ctx, casHashField, []string{m.rec.key}, m.rec.field, m.rec.value, m.value)
			} else {
				moves[i].cmd = p.Eval(ctx, casString, []string{m.rec.key}, m.rec.value, m.value)
			}
		}
		return nil
	})
	var changed []sealed
	for _, m := range moves {
		n, err := m.cmd.Int()
		if err != nil {
			return fmt.Errorf("registry: reseal %s: %w", m.rec.describe(), err)
		}
		if n == 1 {
			count.Resealed++
			count.Current++
			continue
		}
		// Changed since it was read: rewritten, deleted or, for a
		// credential, expired. Read it again and count what is there now.
		count.Total--
		changed = append(changed, m.rec)
	}
	if len(changed) == 0 {
		return nil
	}
	if attempt == 3 {
		return fmt.Errorf("registry: reseal: %d records changed under each of 3 attempts, e.g. %s; try again", len(changed), changed[0].describe())
	}
	again, err := r.read(ctx, changed)
	if err != nil {
		return err
	}
	return r.sortOut(ctx, again, reseal, count, attempt+1)
}

// read fills in the stored value of each record, in one pipeline, and
// drops those deleted or expired since they were found.
func (r *Registry) read(ctx context.Context, recs []sealed) ([]sealed, error) {
	cmds := make([]*redis.StringCmd, len(recs))
	_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rec := range recs {
			if rec.field != "" {
				cmds[i] = p.HGet(ctx, rec.key, rec.field)
			} else {
				cmds[i] = p.Get(ctx, rec.key)
			}
		}
		return nil
	})
	found := recs[:0]
	for i, rec := range recs {
		v, err := cmds[i].Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("registry: read %s: %w", rec.describe(), err)
		}
		rec.value = v
		found = append(found, rec)
	}
	return found, nil
}

func (c *SealedRecords) unreadable(name string) {
	c.Unreadable++
	if name != "" {
		c.UnreadableNames = append(c.UnreadableNames, name)
	}
}

// scanKeys calls fn with the keys matching match, a batch at a time, on
// every master of a Redis Cluster or on the one server; fn never runs twice
// at once. A key may come more than once, as with SCAN.
func scanKeys(ctx context.Context, rdb redis.UniversalClient, match string, fn func(keys []string) error) error {
	var mu sync.Mutex
	err := redisx.Scan(ctx, rdb, match, func(_ context.Context, keys []string) error {
		mu.Lock()
		defer mu.Unlock()
		if err := fn(keys); err != nil {
			return fnError{err}
		}
		return nil
	})
	var fe fnError
	if errors.As(err, &fe) {
		return fe.error
	}
	if err != nil {
		return fmt.Errorf("registry: scan %s: %w", match, err)
	}
	return nil
}

// fnError is an error of scanKeys' fn, told apart from the scan's own.
type fnError struct{ error }
