package store

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/sync/cognito"
)

// Patch is one record change of an UpdateRecords call.
type Patch struct {
	// Op is OpReplace or OpRemove.
	Op  string
	Key string
	// Value is the new value of a replace; a remove ignores it.
	Value string
	// SyncCount must be the record's current SyncCount: 0 for a key never
	// written, the tombstone's count for a removed key. For a key whose
	// tombstone was purged, the count a device last read of the record or
	// of its tombstone is taken too.
	SyncCount int64
	// DeviceLastModifiedDate is when the device changed the record; the
	// zero time means now.
	DeviceLastModifiedDate time.Time
}

// Update is one UpdateRecords call.
type Update struct {
	IdentityPoolID string
	IdentityID     string
	DatasetName    string
	// DeviceID is the device that made the change, if known. It goes into
	// the outbox marker so that the device gets no push for its own change.
	DeviceID string
	// ModifiedBy becomes LastModifiedBy of the records and the dataset. If
	// empty, the identity id is used.
	ModifiedBy string
	Patches    []Patch
}

// updateScript applies an update atomically.
//
// KEYS: datasetKeys.
// ARGV: dataset, now ms, modified by, origin device, max datasets, max
// records, max bytes, patch count, max tombstones, then per patch: op ('r'
// or 'd'), key, sync count, device last modified ms, value; last, the
// deadline of the sweep-index note (sweepindex.Check).
//
// A remove of a key the dataset does not hold, neither as a record nor as
// a tombstone, writes nothing for the key: no device can hold a copy of it
// from the dataset, so none needs a tombstone to drop one. A key without
// either also takes a patch with a count up to the dataset's purge mark, as
// its tombstone may have been purged since the device read the record or
// the tombstone. A remove that writes nothing raises that mark to the
// update's count, which the device takes for the key's.
//
// A dataset without an entry starts from the identity's purge mark of
// deleted datasets, and takes it as its "deleted at" mark: it may be one
// whose entry was purged, which a device may have read up to that count.
//
// Every tombstone is also in the sorted set of tombstones, scored by its
// sync count. When an update leaves more tombstones than the maximum, the
// lowest scored are purged, and the purge mark raised to the highest count
// purged. A tombstone missing from the set (written before it was kept)
// makes the script index every tombstone of the dataset first; so does a
// member that is no longer a tombstone of that count, found among those
// to purge, as the set that holds one may miss older tombstones: no member
// is purged unless it is a tombstone of its count.
//
// It returns {new sync count, change of the live data bytes, origin kept
// 1/0, tombstones purged, change time in ms of the oldest marker of another
// dataset or 0 (luaOthersSince)} or raises PSCONFLICT <patch index> <current
// count> / PSLIMIT <what>.
var updateScript = redis.NewScript(sweepindex.Check + luaHelpers + luaOthersSince + `
local name, now, by = ARGV[1], ARGV[2], ARGV[3]
local n, maxTombstones = tonumber(ARGV[8]), tonumber(ARGV[9])
local meta = redis.call('HGET', KEYS[1], name)
local sc, live, created, storage, num, deletedAt = 0, false, now, 0, 0, '0'
if meta then
  local m = parseMeta(meta)
  sc, deletedAt = tonumber(m[1]), m[7]
  if m[2] == '1' then
    live, created, storage, num = true, m[3], tonumber(m[5]), tonumber(m[6])
  end
else
  local floor = redis.call('HGET', KEYS[6], '#datasets')
  if floor then sc, deletedAt = tonumber(floor), floor end
end
local oldStorage, oldNum = storage, num
local held, mark = {}, nil
for i = 0, n - 1 do
  local b = 10 + i * 5
  local key = ARGV[b + 1]
  local given = tonumber(ARGV[b + 2])
  local st = redis.call('HGET', KEYS[2], key)
  local cur = 0
  if st then
    local p = string.find(st, '|', 1, true)
    cur = tonumber(string.sub(st, 1, p - 1))
    held[i] = string.sub(st, p + 1, p + 1)
    if held[i] == 'L' then
      storage = storage - #key - redis.call('HSTRLEN', KEYS[3], key)
      num = num - 1
    end
  elseif given ~= 0 then
    if not mark then mark = tonumber(redis.call('HGET', KEYS[6], name) or '0') end
    if given <= mark then cur = given end
  end
  if cur ~= given then
    return redis.error_reply('PSCONFLICT ' .. i .. ' ' .. fmt(cur))
  end
  if ARGV[b] == 'r' then
    storage = storage + #key + #ARGV[b + 4]
    num = num + 1
  end
end
if not live then
  local count = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    local p = string.find(v, '|', 1, true)
    if string.sub(v, p + 1, p + 1) == '1' then count = count + 1 end
  end
  if count >= tonumber(ARGV[5]) then return redis.error_reply('PSLIMIT datasets') end
end
if num > tonumber(ARGV[6]) and num > oldNum then return redis.error_reply('PSLIMIT records') end
if storage > tonumber(ARGV[7]) and storage > oldStorage then return redis.error_reply('PSLIMIT bytes') end
sc = sc + 1
local scs = fmt(sc)
local states, values, removed, tombs, revived, unheld = {}, {}, {}, {}, {}, false
for i = 0, n - 1 do
  local b = 10 + i * 5
  local key = ARGV[b + 1]
  if ARGV[b] == 'r' then
    states[#states + 1] = key
    states[#states + 1] = scs .. '|L|' .. now .. '|' .. ARGV[b + 3] .. '|' .. by
    values[#values + 1] = key
    values[#values + 1] = ARGV[b + 4]
    if held[i] == 'D' then revived[#revived + 1] = key end
  elseif held[i] then
    states[#states + 1] = key
    states[#states + 1] = scs .. '|D|' .. now .. '|' .. ARGV[b + 3] .. '|' .. by
    removed[#removed + 1] = key
    tombs[#tombs + 1] = scs
    tombs[#tombs + 1] = key
  else
    unheld = true
  end
end
if #states > 0 then redis.call('HSET', KEYS[2], unpack(states)) end
if #values > 0 then redis.call('HSET', KEYS[3], unpack(values)) end
if #removed > 0 then redis.call('HDEL', KEYS[3], unpack(removed)) end
if #revived > 0 then redis.call('ZREM', KEYS[5], unpack(revived)) end
if #tombs > 0 then redis.call('ZADD', KEYS[5], unpack(tombs)) end
-- The device takes the count a remove that stored nothing was answered for
-- the key's, as if it were a tombstone purged at once.
if unheld then redis.call('HSET', KEYS[6], name, scs) end
-- Only a new tombstone can take the dataset over the maximum.
local purged = 0
local total = 0
if #tombs > 0 then total = redis.call('HLEN', KEYS[2]) - num end
if total > maxTombstones then
  local function index()
    redis.call('DEL', KEYS[5])
    local all, batch = redis.call('HGETALL', KEYS[2]), {}
    for i = 1, #all, 2 do
      local st = all[i + 1]
      local p = string.find(st, '|', 1, true)
      if string.sub(st, p + 1, p + 1) == 'D' then
        batch[#batch + 1] = string.sub(st, 1, p - 1)
        batch[#batch + 1] = all[i]
      end
      if #batch >= 1000 then
        redis.call('ZADD', KEYS[5], unpack(batch))
        batch = {}
      end
    end
    if #batch > 0 then redis.call('ZADD', KEYS[5], unpack(batch)) end
  end
  local indexed = false
  if redis.call('ZCARD', KEYS[5]) < total then index(); indexed = true end
  local high = 0
  while total > maxTombstones do
    local popped = redis.call('ZPOPMIN', KEYS[5], total - maxTombstones)
    if #popped == 0 then
      if indexed then break end
      index(); indexed = true
    end
    -- A member that is not a tombstone of its count was left by a process
    -- that kept no index, which may also have left tombstones out of it,
    -- older than those popped: the index is built anew before any purge.
    local counts, stale = {}, false
    for i = 1, #popped, 2 do
      local st = redis.call('HGET', KEYS[2], popped[i])
      local p = st and string.find(st, '|', 1, true)
      if st and string.sub(st, p + 1, p + 1) == 'D' then
        counts[i] = tonumber(string.sub(st, 1, p - 1))
      end
      if counts[i] ~= tonumber(popped[i + 1]) then stale = true end
    end
    if stale and not indexed then
      index(); indexed = true
    else
      for i = 1, #popped, 2 do
        local key, c = popped[i], counts[i]
        if c == tonumber(popped[i + 1]) then
          redis.call('HDEL', KEYS[2], key)
          purged, total = purged + 1, total - 1
          if c > high then high = c end
        elseif c then
          redis.call('ZADD', KEYS[5], c, key)
        end
      end
    end
  end
  if high > 0 and high > tonumber(redis.call('HGET', KEYS[6], name) or '0') then
    redis.call('HSET', KEYS[6], name, fmt(high))
  end
end
redis.call('HSET', KEYS[1], name, table.concat({scs, '1', created, now, fmt(storage), fmt(num), deletedAt, by}, '|'))
-- A marker still there is a change not yet published. Its event and this
-- one become one event, which must then skip no device: neither device has
-- seen the other's change.
local origin = ARGV[4]
local pending = redis.call('HGET', KEYS[4], name)
if pending and origin ~= '' then
  local p1 = string.find(pending, '|', 1, true)
  local p2 = p1 and string.find(pending, '|', p1 + 1, true)
  if not p2 or string.sub(pending, p2 + 1) ~= origin then origin = '' end
end
redis.call('HSET', KEYS[4], name, scs .. '|' .. now .. '|' .. origin)
local kept = 0
if origin ~= '' then kept = 1 end
return {sc, storage - oldStorage, kept, purged, othersSince(KEYS[4], name)}
`)

// UpdateRecords applies the patches of one update atomically, as one Lua
// script. Every patch must present the record's current SyncCount, else a
// *ConflictError names the first one that does not and nothing is applied.
// An update that would break a limit fails with a *LimitError and applies
// nothing; a limit is only enforced when the update makes its measure grow,
// so that removals always succeed. Otherwise the dataset, created on its
// first write (or re-created after a deletion, continuing its count; one
// without an entry continues from the identity's purge mark of deleted
// datasets, see DeleteDataset), gets
// its sync count raised by exactly one, every patched record gets that count,
// and an outbox marker for the change is written in the same script. The
// patched records are returned in patch order, with the change to publish:
// the new dataset sync count, and the update's device as its origin unless
// the marker of an earlier change, not yet published, was replaced (then
// no origin, so that its event reaches every device), and in OthersSince
// when the oldest marker of another of the identity's datasets was written.
//
// A remove of a key the dataset does not hold (no record, no tombstone)
// stores nothing: no other device can have the key from the dataset, so
// none needs its tombstone. It is answered like any remove, with the new
// sync count, and still counts as a change: an update of only such removes
// raises the sync count by one and leaves its marker, as the device takes
// the count of its answer for its own. The device also keeps the key,
// removed at that count, and presents the count when it sets the key again:
// the update raises the dataset's purge mark (below) to it, as if the key's
// tombstone had been purged at once, so that the key takes it.
//
// A dataset keeps at most Options.MaxTombstones tombstones: an update that
// leaves more purges the oldest, those of the lowest SyncCount, in the same
// script. A device that read a record before its tombstone was purged is
// never told of the removal and keeps the record; so that it can still push
// a change of it, a key with neither record nor tombstone takes, besides 0,
// any SyncCount up to the highest one purged from the dataset. That one
// included: a device that read a tombstone keeps its count for the key and
// presents it when the key is set again.
//
// An update with no patches changes nothing, not even the sync count: it
// returns no records and, in the change, the current sync count of the
// dataset (0 if it does not exist). Two patches of one key in one update are refused, as the
// underlying model does not say which should win.
//
// The identity is added to its pool's indexes, and noted in the sweep index
// of the outbox (see ClaimPending), before the script runs, and
// the pool's usage figures are adjusted after it; an error in that last step
// is ignored, as the update itself has been committed.
func (s *Store) UpdateRecords(ctx context.Context, u Update) ([]Record, Change, error) {
	if err := validateUpdate(&u); err != nil {
		return nil, Change{}, err
	}
	c := Change{IdentityPoolID: u.IdentityPoolID, IdentityID: u.IdentityID, DatasetName: u.DatasetName}
	if len(u.Patches) == 0 {
		d, err := s.DescribeDataset(ctx, u.IdentityPoolID, u.IdentityID, u.DatasetName)
		if errors.Is(err, ErrDatasetNotFound) {
			return []Record{}, c, nil
		}
		if err != nil {
			return nil, Change{}, err
		}
		c.SyncCount = d.SyncCount
		return []Record{}, c, nil
	}
	by := u.ModifiedBy
	if by == "" {
		by = u.IdentityID
	}
	pool, identity := u.IdentityPoolID, u.IdentityID
	deadline, err := s.index(ctx, pool, identity)
	if err != nil {
		return nil, Change{}, err
	}
	now := s.nowMs()
	nowS := fmtInt(now)
	args := make([]any, 0, 10+5*len(u.Patches))
	args = append(args, u.DatasetName, nowS, by, u.DeviceID, s.maxDatasets, s.maxRecords, s.maxBytes, len(u.Patches), s.maxTombstones)
	dlms := make([]int64, len(u.Patches))
	for i, p := range u.Patches {
		op := "r"
		value := p.Value
		if p.Op == OpRemove {
			op, value = "d", ""
		}
		dlms[i] = now
		if !p.DeviceLastModifiedDate.IsZero() {
			dlms[i] = p.DeviceLastModifiedDate.UnixMilli()
		}
		args = append(args, op, p.Key, p.SyncCount, dlms[i], value)
	}
	args = append(args, deadline)
	res, err := updateScript.Run(ctx, s.rdb, s.datasetKeys(pool, identity, u.DatasetName), args...).Int64Slice()
	if err != nil {
		if rest, ok := scriptError(err, "PSCONFLICT "); ok {
			var i int
			var cur int64
			if _, serr := fmt.Sscan(rest, &i, &cur); serr == nil && i >= 0 && i < len(u.Patches) {
				return nil, Change{}, &ConflictError{Key: u.Patches[i].Key, Current: cur, Given: u.Patches[i].SyncCount}
			}
		}
		if rest, ok := scriptError(err, "PSLIMIT "); ok {
			switch rest {
			case "datasets":
				return nil, Change{}, &LimitError{What: LimitDatasets, Limit: int64(s.maxDatasets)}
			case "records":
				return nil, Change{}, &LimitError{What: LimitRecords, Limit: int64(s.maxRecords)}
			case "bytes":
				return nil, Change{}, &LimitError{What: LimitDatasetSize, Limit: s.maxBytes}
			}
		}
		if sweepindex.Late(err) {
			err = sweepindex.ErrLate
		}
		return nil, Change{}, fmt.Errorf("store: update records: %w", err)
	}
	if len(res) != 5 {
		return nil, Change{}, fmt.Errorf("store: update records: unexpected reply %v", res)
	}
	if res[3] > 0 {
		s.purged.WithLabelValues(purgedTombstones).Add(float64(res[3]))
	}
	syncCount := res[0]
	c.SyncCount, c.ChangedAt = syncCount, msTime(now)
	if res[2] == 1 {
		c.OriginDeviceID = u.DeviceID
	}
	if res[4] > 0 {
		c.OthersSince = msTime(res[4])
	}
	s.addUsage(ctx, pool, res[1], now)
	records := make([]Record, len(u.Patches))
	for i := range u.Patches {
		p := &u.Patches[i]
		r := Record{Key: p.Key, SyncCount: syncCount, LastModifiedDate: msTime(now),
			LastModifiedBy: by, DeviceLastModifiedDate: msTime(dlms[i])}
		if p.Op == OpReplace {
			v := p.Value // shares the bytes, not the caller's Patch
			r.Value = &v
		}
		records[i] = r
	}
	return records, c, nil
}

// ListOptions selects the records ListRecords returns.
type ListOptions struct {
	// LastSyncCount: only records with a greater SyncCount are returned;
	// 0 returns all.
	LastSyncCount int64
	// MaxResults is the page size; 0 or more than 1024 means 1024.
	MaxResults int
	// All returns every record changed after LastSyncCount in one page,
	// whatever MaxResults says: for clients that read one page and then
	// store its DatasetSyncCount as their last sync count, as the iOS SDK
	// does when it lists without maxResults.
	All bool
	// NextToken continues from the page that returned it.
	NextToken string
	// NewSession says the call starts a sync session, the first page of a
	// listing without a valid SyncSessionToken: it is counted in the
	// pool's SyncSessions.
	NewSession bool
}

// Page is one page of ListRecords.
type Page struct {
	// Records are ordered by SyncCount, then key; tombstones have a nil
	// Value.
	Records []Record
	// NextToken is empty on the last page.
	NextToken string
	// DatasetSyncCount is the dataset's sync count, 0 if it does not exist.
	DatasetSyncCount int64
	// DatasetExists is false for a dataset never written or deleted.
	DatasetExists bool
	// DatasetDeletedAfterRequestedSyncCount is true when LastSyncCount > 0
	// and the dataset was deleted at a greater sync count; for a dataset
	// without an entry (see DeleteDataset), when the identity's purge mark
	// of deleted datasets is greater. On a page asked for with a NextToken
	// it is also true when the dataset was deleted since the listing's
	// first page, whatever LastSyncCount: the records of the earlier pages
	// are gone.
	DatasetDeletedAfterRequestedSyncCount bool
	// LastModifiedBy is who last changed the dataset, "" if it does not
	// exist.
	LastModifiedBy string
	// LastModifiedDate is when the dataset last changed, the zero time if
	// it does not exist.
	LastModifiedDate time.Time
}

// listScript returns one page of records.
//
// KEYS: datasetKeys (the outbox and the tombstones unused).
// ARGV: dataset, last sync count, token sync count (-1 for none), token key,
// page size.
//
// It returns {meta or false, more 0/1, then per record key, state, value or
// false}; for a dataset without an entry, {false, 0, the identity's purge
// mark of deleted datasets or false}. The records are sorted only when they
// do not all fit in the page (the caller sorts them anyway); keys are then
// compared byte by byte, as Go does, never with the locale dependent Lua '<'.
var listScript = redis.NewScript(luaHelpers + `
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if not meta then return {false, 0, redis.call('HGET', KEYS[6], '#datasets')} end
local m = parseMeta(meta)
if m[2] ~= '1' then return {meta, 0} end
local last, asc, akey, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local all = redis.call('HGETALL', KEYS[2])
local sel = {}
for i = 1, #all, 2 do
  local k, st = all[i], all[i + 1]
  local sc = tonumber(string.sub(st, 1, string.find(st, '|', 1, true) - 1))
  if sc > last and (sc > asc or (sc == asc and keyLess(akey, k))) then
    sel[#sel + 1] = {sc, k, st}
  end
end
local more = 0
local count = #sel
if count > limit then
  table.sort(sel, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return keyLess(a[2], b[2])
  end)
  count, more = limit, 1
end
local out = {meta, more}
local liveKeys, livePos = {}, {}
for i = 1, count do
  local r = sel[i]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
  out[#out + 1] = false
  local p = string.find(r[3], '|', 1, true)
  if string.sub(r[3], p + 1, p + 1) == 'L' then
    liveKeys[#liveKeys + 1] = r[2]
    livePos[#livePos + 1] = #out
  end
end
if #liveKeys > 0 then
  local vals = redis.call('HMGET', KEYS[3], unpack(liveKeys))
  for i = 1, #liveKeys do out[livePos[i]] = vals[i] end
end
return out
`)

// ListRecords returns the records of a dataset changed after
// o.LastSyncCount, tombstones included, ordered by (SyncCount, key), one page
// at a time. The NextToken names the (SyncCount, key) of the last record
// returned, so a record changed or removed between pages moves behind it and
// is returned later, never skipped. A dataset never written or deleted is no
// error: its page has DatasetExists false and no records. A deletion between
// pages (and a re-creation after it) is reported on every later page of the
// listing with DatasetDeletedAfterRequestedSyncCount, so that a device
// drops the records the earlier pages gave it.
func (s *Store) ListRecords(ctx context.Context, pool, identity, dataset string, o ListOptions) (*Page, error) {
	if err := validateDataset(pool, identity, dataset); err != nil {
		return nil, err
	}
	if o.LastSyncCount < 0 {
		return nil, &cognito.FieldError{Field: "LastSyncCount", Reason: fmt.Sprintf("must not be negative, got %d", o.LastSyncCount)}
	}
	if o.MaxResults < 0 {
		return nil, &cognito.FieldError{Field: "MaxResults", Reason: fmt.Sprintf("must not be negative, got %d", o.MaxResults)}
	}
	limit := o.MaxResults
	switch {
	case o.All:
		limit = math.MaxInt32
	case limit == 0 || limit > MaxListResults:
		limit = MaxListResults
	}
	afterSc, afterKey, since := int64(-1), "", int64(-1)
	if o.NextToken != "" {
		var ok bool
		if since, afterSc, afterKey, ok = decodeRecordToken(o.NextToken); !ok {
			return nil, &cognito.FieldError{Field: "NextToken", Reason: "is not a token ListRecords returned"}
		}
	}
	res, err := listScript.Run(ctx, s.rdb, s.datasetKeys(pool, identity, dataset), dataset, o.LastSyncCount, afterSc, afterKey, limit).Slice()
	if err != nil {
		return nil, fmt.Errorf("store: list records: %w", err)
	}
	if o.NewSession {
		s.countSession(ctx, pool)
	}
	page := &Page{Records: []Record{}}
	if len(res) < 2 {
		return nil, fmt.Errorf("store: list records: unexpected reply of %d elements", len(res))
	}
	metaS, _ := res[0].(string)
	// deletedAfter tells whether the dataset was deleted after the
	// requested count, or, on a later page, after the listing's first
	// page: the records of the earlier pages are gone then, whatever
	// count the listing asked from.
	deletedAfter := func(mark int64) bool {
		return (o.LastSyncCount > 0 && mark > o.LastSyncCount) || (since >= 0 && mark > since)
	}
	if metaS == "" {
		// No entry: never written, or deleted and purged at a count no
		// greater than the identity's purge mark.
		if len(res) == 3 {
			mark, _ := res[2].(string)
			if n, err := strconv.ParseInt(mark, 10, 64); err == nil {
				page.DatasetDeletedAfterRequestedSyncCount = deletedAfter(n)
			}
		}
		return page, nil
	}
	meta, err := decodeMeta(dataset, metaS)
	if err != nil {
		return nil, err
	}
	page.DatasetDeletedAfterRequestedSyncCount = deletedAfter(meta.deletedAt)
	if since < 0 {
		since = meta.deletedAt
	}
	if !meta.live {
		return page, nil
	}
	page.DatasetExists = true
	page.DatasetSyncCount = meta.syncCount
	page.LastModifiedBy = meta.modifiedBy
	page.LastModifiedDate = msTime(meta.modified)
	rest := res[2:]
	page.Records = make([]Record, 0, len(rest)/3)
	values := make([]string, 0, len(rest)/3) // one allocation for every Value
	for i := 0; i+2 < len(rest); i += 3 {
		k, _ := rest[i].(string)
		st, _ := rest[i+1].(string)
		r, err := decodeState(k, st)
		if err != nil {
			return nil, err
		}
		if v, ok := rest[i+2].(string); ok {
			values = append(values, v)
			r.Value = &values[len(values)-1]
		}
		page.Records = append(page.Records, r)
	}
	slices.SortFunc(page.Records, func(a, b Record) int {
		if c := cmp.Compare(a.SyncCount, b.SyncCount); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	if more, _ := res[1].(int64); more == 1 && len(page.Records) > 0 {
		last := page.Records[len(page.Records)-1]
		if meta.deletedAt <= since && last.SyncCount >= since {
			// No deletion since the listing's first page: the token of
			// the earlier form tells a later one just as well (see
			// encodeRecordToken), and the processes of the previous
			// version read it, during a rolling upgrade.
			page.NextToken = encodeLegacyRecordToken(last.SyncCount, last.Key)
		} else {
			page.NextToken = encodeRecordToken(since, last.SyncCount, last.Key)
		}
	}
	return page, nil
}

// decodeState decodes a record state "<sc>|<L/D>|<lm>|<dlm>|<by>"; the
// value is filled in by the caller.
func decodeState(key, st string) (Record, error) {
	var f [4]string
	rest := st
	ok := true
	for i := range f {
		var found bool
		f[i], rest, found = strings.Cut(rest, "|")
		ok = ok && found
	}
	sc, err1 := strconv.ParseInt(f[0], 10, 64)
	lm, err2 := strconv.ParseInt(f[2], 10, 64)
	dlm, err3 := strconv.ParseInt(f[3], 10, 64)
	if !ok || err1 != nil || err2 != nil || err3 != nil || (f[1] != "L" && f[1] != "D") {
		return Record{}, fmt.Errorf("store: record %q has a corrupt state %q", key, st)
	}
	return Record{Key: key, SyncCount: sc, LastModifiedDate: msTime(lm), LastModifiedBy: rest, DeviceLastModifiedDate: msTime(dlm)}, nil
}

// Record tokens are base64url of "s<mark>|<syncCount>|<key>": the
// deletion mark of the dataset when the listing's first page was read, then
// the (SyncCount, key) of the last record returned. A later page compares
// the mark with the dataset's, so that a deletion between pages is reported
// on every page after it. Tokens of the earlier form, "r<syncCount>|<key>",
// are read too; the mark they lack is taken as their SyncCount, which tells
// a deletion after the page that returned them just as well, since a
// deletion's mark is greater than every count the dataset had before it.
// So a page with no deletion since the listing's first page returns a
// token of the earlier form, which versions without the mark read (a
// listing whose pages go to processes of both versions during a rolling
// upgrade); only a page after such a deletion needs the mark, to go on
// reporting it once later pages return records written after it.
func encodeRecordToken(mark, sc int64, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s" + fmtInt(mark) + "|" + fmtInt(sc) + "|" + key))
}

// encodeLegacyRecordToken returns a token of the earlier form,
// "r<syncCount>|<key>".
func encodeLegacyRecordToken(sc int64, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("r" + fmtInt(sc) + "|" + key))
}

func decodeRecordToken(tok string) (mark, sc int64, key string, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 4 || (b[0] != 'r' && b[0] != 's') {
		return 0, 0, "", false
	}
	rest := string(b[1:])
	mark = -1
	if b[0] == 's' {
		markS, r, found := strings.Cut(rest, "|")
		if mark, err = strconv.ParseInt(markS, 10, 64); !found || err != nil || mark < 0 {
			return 0, 0, "", false
		}
		rest = r
	}
	scS, key, found := strings.Cut(rest, "|")
	sc, err = strconv.ParseInt(scS, 10, 64)
	if !found || err != nil || sc < 1 || key == "" || checkText("", key, MaxKeyLen) != nil {
		return 0, 0, "", false
	}
	if mark < 0 {
		mark = sc
	}
	return mark, sc, key, true
}

// sortDatasets orders datasets by name.
func sortDatasets(ds []Dataset) {
	slices.SortFunc(ds, func(a, b Dataset) int { return strings.Compare(a.Name, b.Name) })
}
