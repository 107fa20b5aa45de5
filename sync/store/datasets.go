package store

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/sync/cognito"
)

// DescribeDataset returns the metadata of a dataset. It returns
// ErrDatasetNotFound if the dataset was never written or has been deleted.
func (s *Store) DescribeDataset(ctx context.Context, pool, identity, dataset string) (*Dataset, error) {
	if err := validateDataset(pool, identity, dataset); err != nil {
		return nil, err
	}
	v, err := s.rdb.HGet(ctx, s.datasetsKey(pool, identity), dataset).Result()
	if err == redis.Nil {
		return nil, fmt.Errorf("store: %w: %s", ErrDatasetNotFound, dataset)
	}
	if err != nil {
		return nil, fmt.Errorf("store: describe dataset: %w", err)
	}
	m, err := decodeMeta(dataset, v)
	if err != nil {
		return nil, err
	}
	if !m.live {
		return nil, fmt.Errorf("store: %w: %s", ErrDatasetNotFound, dataset)
	}
	return m.dataset(pool, identity, dataset), nil
}

// ListDatasets returns the live datasets of an identity sorted by name, at
// most max of them (64 if max is 0 or less), and a token for the next page,
// empty on the last one. An identity without datasets has an empty list.
func (s *Store) ListDatasets(ctx context.Context, pool, identity string, max int, nextToken string) ([]Dataset, string, error) {
	if err := validateIdentity(pool, identity); err != nil {
		return nil, "", err
	}
	if max <= 0 {
		max = DefaultListDatasets
	}
	after, ok := decodeNameToken(nextToken)
	if !ok {
		return nil, "", &cognito.FieldError{Field: "NextToken", Reason: "is not a token ListDatasets returned"}
	}
	all, err := s.datasets(ctx, pool, identity)
	if err != nil {
		return nil, "", err
	}
	out := make([]Dataset, 0, len(all))
	for _, d := range all {
		if d.live && d.name > after {
			out = append(out, *d.dataset(pool, identity, d.name))
		}
	}
	sortDatasets(out)
	if len(out) > max {
		out = out[:max]
		return out, encodeNameToken(out[max-1].Name), nil
	}
	return out, "", nil
}

type namedMeta struct {
	datasetMeta
	name string
}

// datasets reads every entry of the identity's datasets hash, deleted
// datasets included.
func (s *Store) datasets(ctx context.Context, pool, identity string) ([]namedMeta, error) {
	all, err := s.rdb.HGetAll(ctx, s.datasetsKey(pool, identity)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read datasets: %w", err)
	}
	out := make([]namedMeta, 0, len(all))
	for name, v := range all {
		m, err := decodeMeta(name, v)
		if err != nil {
			return nil, err
		}
		out = append(out, namedMeta{m, name})
	}
	return out, nil
}

// deleteScript deletes a dataset.
//
// KEYS: datasetKeys.
// ARGV: dataset, now ms, modified by, max deleted datasets, the deadline of
// the sweep-index note (sweepindex.Check).
//
// The dataset's purge mark goes with its tombstones: a device that read a
// record before the deletion learns of the deletion instead. When the
// identity then has more deleted datasets than the maximum, the entries of
// the oldest deletions (last modified first, then sync count, then name)
// are purged, and the identity's purge mark of deleted datasets raised to
// the highest of their counts.
//
// It returns {the entry the dataset had before, entries purged, change time
// in ms of the oldest marker of another dataset or 0 (luaOthersSince)}, or
// raises PSNOTFOUND.
var deleteScript = redis.NewScript(sweepindex.Check + luaHelpers + luaOthersSince + `
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if not meta then return redis.error_reply('PSNOTFOUND') end
local m = parseMeta(meta)
if m[2] ~= '1' then return redis.error_reply('PSNOTFOUND') end
local sc = fmt(tonumber(m[1]) + 1)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[5])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], table.concat({sc, '0', m[3], ARGV[2], '0', '0', sc, ARGV[3]}, '|'))
redis.call('HSET', KEYS[4], ARGV[1], sc .. '|' .. ARGV[2] .. '|')
local maxDeleted, purged = tonumber(ARGV[4]), 0
if redis.call('HLEN', KEYS[1]) > maxDeleted then
  local all, deleted = redis.call('HGETALL', KEYS[1]), {}
  for i = 1, #all, 2 do
    local e = parseMeta(all[i + 1])
    if e[2] ~= '1' then deleted[#deleted + 1] = {tonumber(e[4]), tonumber(e[1]), all[i]} end
  end
  if #deleted > maxDeleted then
    table.sort(deleted, function(a, b)
      if a[1] ~= b[1] then return a[1] < b[1] end
      if a[2] ~= b[2] then return a[2] < b[2] end
      return keyLess(a[3], b[3])
    end)
    local floor = tonumber(redis.call('HGET', KEYS[6], '#datasets') or '0')
    purged = #deleted - maxDeleted
    for i = 1, purged do
      redis.call('HDEL', KEYS[1], deleted[i][3])
      if deleted[i][2] > floor then floor = deleted[i][2] end
    end
    redis.call('HSET', KEYS[6], '#datasets', fmt(floor))
  end
end
return {meta, purged, othersSince(KEYS[4], ARGV[1])}
`)

// DeleteDataset deletes a dataset and all its records. It returns the
// dataset as the deletion left it: CreationDate, DataStorage and NumRecords
// as they were just before, and SyncCount, LastModifiedDate and
// LastModifiedBy of the deletion itself, which are also those of the outbox
// marker; and the change to publish, that marker's, with OthersSince as
// UpdateRecords returns it. It returns ErrDatasetNotFound if the dataset was never
// written or is already deleted. The dataset's sync count is kept and raised
// by one as its deletion mark, so that ListRecords can report the deletion to
// devices that synced before it and a later UpdateRecords continues the
// count. The deletion frees the dataset's slot in the datasets-per-identity
// limit and leaves an outbox marker (with no origin device) like any change,
// noted in the sweep index first, as UpdateRecords does.
// modifiedBy is recorded as who last modified the dataset; if empty, the
// identity id is used.
//
// An identity keeps the entries of at most Options.MaxDeletedDatasets
// deleted datasets: the deletion that leaves more purges those of the
// oldest deletions in the same script, and raises the identity's purge mark
// to the highest of their counts. A dataset without an entry then counts
// from that mark when it is written, and ListRecords reports it deleted to
// a LastSyncCount below the mark, so that the guarantees above hold for
// the purged datasets too.
func (s *Store) DeleteDataset(ctx context.Context, pool, identity, dataset, modifiedBy string) (*Dataset, Change, error) {
	if err := validateDataset(pool, identity, dataset); err != nil {
		return nil, Change{}, err
	}
	if modifiedBy == "" {
		modifiedBy = identity
	}
	deadline, err := s.sweep.Note(ctx, pool+"/"+identity, nil)
	if err != nil {
		return nil, Change{}, fmt.Errorf("store: delete dataset: %w", err)
	}
	now := s.nowMs()
	res, err := deleteScript.Run(ctx, s.rdb, s.datasetKeys(pool, identity, dataset), dataset, now, modifiedBy, s.maxDeleted, deadline).Slice()
	if err != nil {
		if _, ok := scriptError(err, "PSNOTFOUND"); ok {
			return nil, Change{}, fmt.Errorf("store: %w: %s", ErrDatasetNotFound, dataset)
		}
		if sweepindex.Late(err) {
			err = sweepindex.ErrLate
		}
		return nil, Change{}, fmt.Errorf("store: delete dataset: %w", err)
	}
	if len(res) != 3 {
		return nil, Change{}, fmt.Errorf("store: delete dataset: unexpected reply %v", res)
	}
	v, _ := res[0].(string)
	if purged, _ := res[1].(int64); purged > 0 {
		s.purged.WithLabelValues(purgedDeletedDatasets).Add(float64(purged))
	}
	m, err := decodeMeta(dataset, v)
	if err != nil {
		return nil, Change{}, err
	}
	s.addUsage(ctx, pool, -m.storage, now)
	m.syncCount, m.modified, m.modifiedBy = m.syncCount+1, now, modifiedBy
	c := Change{IdentityPoolID: pool, IdentityID: identity, DatasetName: dataset, SyncCount: m.syncCount, ChangedAt: msTime(now)}
	if others, _ := res[2].(int64); others > 0 {
		c.OthersSince = msTime(others)
	}
	return m.dataset(pool, identity, dataset), c, nil
}

// Name tokens (ListDatasets, ListPoolUsage) are base64url of "n<name>".
func encodeNameToken(name string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("n" + name))
}

// decodeNameToken returns the name a token continues after; "" for no
// token.
func decodeNameToken(tok string) (string, bool) {
	if tok == "" {
		return "", true
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 2 || b[0] != 'n' {
		return "", false
	}
	return string(b[1:]), true
}
