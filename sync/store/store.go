// Package store keeps the datasets and records of Cognito Sync in Redis:
// the sync counts that order every change, tombstones of removed records,
// the per-identity limits of the real service, usage figures, and an outbox
// of changes still to be published as push events.
//
// Key schema, under a configurable prefix P. T is the hash tag of one
// identity, cognito.HashTag(pool, identity) = "{<pool>/<identity>}":
//
//	P:T:datasets        hash, one per identity
//	    <dataset> -> "<syncCount>|<live 1/0>|<created ms>|<last modified ms>|<data bytes>|<live records>|<deleted at count>|<last modified by>"
//	P:T:rs:<dataset>    hash, record states (tombstones included)
//	    <key>     -> "<syncCount>|<L live / D deleted>|<last modified ms>|<device last modified ms>|<last modified by>"
//	P:T:rv:<dataset>    hash, values of the live records
//	    <key>     -> the value, as given
//	P:T:rt:<dataset>    sorted set, the tombstones
//	    <key>     scored by its sync count
//	P:T:purged          hash, what purges leave to remember
//	    <dataset> -> the highest sync count of a tombstone purged from it,
//	                 or of a remove that stored nothing
//	    #datasets -> the highest sync count of a deleted dataset whose entry
//	                 was purged ('#' is in no dataset name)
//	P:T:outbox          hash, changes not yet published
//	    <dataset> -> "<syncCount>|<changed at ms>|<origin device id>"
//	P:{sweep:outbox:<n>}  sorted sets, n from 0 to 31: the identities whose
//	                       outbox a write is about to change or changed in
//	                       the last seconds, "<pool>/<identity>", scored by
//	                       the time of the write's note (internal/sweepindex)
//	P:{sweep:adopted:outbox}  string: when the outboxes of a version
//	                       without the sweep index were last adopted into
//	                       it (AdoptUnindexed), RFC 3339
//	P:{<pool>}:identities  set, every identity of the pool that ever wrote
//	P:{<pool>}:usage       hash, bytes -> data storage, lm -> last modified ms
//	P:{pools}              sorted set (all scores 0) of the pools that wrote,
//	                       kept by earlier versions; no longer written, and
//	                       a pool's purge removes it
//
// Every key of one identity shares the identity's hash tag, so each
// UpdateRecords, ListRecords and DeleteDataset is one Lua script that runs
// atomically on one Redis and on Redis Cluster alike. States and values are
// kept apart so that conflict and size checks never read a value (HSTRLEN is
// enough) and ListRecords returns only the values of the records it pages.
//
// A deleted dataset keeps its entry in P:T:datasets with live = 0 and its
// sync count raised by one; that count is also its "deleted at" mark. Its
// records are gone. Writing to it again re-creates it, continuing from that
// count.
//
// Tombstones are bounded per dataset (Options.MaxTombstones): the write that
// takes a dataset over the bound purges its oldest tombstones, the lowest in
// P:T:rt, and keeps the highest count purged in P:T:purged. Entries of
// deleted datasets are bounded per identity (Options.MaxDeletedDatasets):
// the deletion that takes an identity over the bound purges the entries of
// its oldest deletions and keeps the highest of their counts in
// P:T:purged, #datasets. A dataset without an entry counts from there, so
// that a dataset whose entry was purged never restarts a count a device
// has seen, and ListRecords reports it deleted after any lower count.
package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/sync/cognito"
)

// Default limits, those of Amazon Cognito Sync.
const (
	DefaultMaxDatasets     = 20
	DefaultMaxRecords      = 1024
	DefaultMaxDatasetBytes = 1 << 20
)

// DefaultMaxTombstones bounds the tombstones of one dataset unless
// Options.MaxTombstones says otherwise: four times the records a dataset may
// hold, so that an app removes every record of a full dataset four times
// over, or cycles through 4096 keys, before a tombstone is purged. Only a
// device that has not synced the dataset since then misses a removal.
const DefaultMaxTombstones = 4 * DefaultMaxRecords

// DefaultMaxDeletedDatasets bounds the entries deleted datasets leave for
// one identity unless Options.MaxDeletedDatasets says otherwise: 50 times
// the live datasets an identity may have, so that an app deletes a dataset
// of a new name every day for nearly three years before an entry is purged.
// Those entries are read with the live ones by ListDatasets, IdentityUsage
// and every dataset creation.
const DefaultMaxDeletedDatasets = 50 * DefaultMaxDatasets

// Bounds on a single request.
const (
	// MaxKeyLen is the longest record key, in characters.
	MaxKeyLen = 1024
	// MaxValueLen is the longest record value, in characters.
	MaxValueLen = 1<<20 - 1
	// MaxPatches is the most record patches one UpdateRecords may carry:
	// twice as many as a dataset may hold records, so that a device can
	// always push all of its local changes in one call (the mobile SDKs
	// push them all at once), even every record of a full dataset removed
	// and as many new ones written.
	MaxPatches = 2048
	// MaxListResults is the default and largest page size of ListRecords.
	MaxListResults = 1024
	// DefaultListDatasets is the page size of ListDatasets and
	// ListPoolUsage when the caller gives none.
	DefaultListDatasets = 64
)

// The two record patch operations.
const (
	OpReplace = "replace"
	OpRemove  = "remove"
)

// Errors returned by the store; match them with errors.Is. ConflictError
// matches ErrConflict and LimitError matches ErrLimitExceeded.
var (
	ErrConflict        = errors.New("record sync count conflict")
	ErrLimitExceeded   = errors.New("limit exceeded")
	ErrDatasetNotFound = errors.New("dataset not found")
	ErrPoolNotFound    = errors.New("identity pool not found")
)

// ConflictError reports a record patch whose SyncCount is not the record's
// current one. Nothing of the update was applied.
type ConflictError struct {
	// Key is the first record key, in patch order, whose count differs.
	Key string
	// Current is the stored SyncCount of the record (0 if never written).
	Current int64
	// Given is the SyncCount the patch presented.
	Given int64
}

// Error returns the message of the real service, e.g.
// "Current SyncCount for: highScore is: 5 not: 4".
func (e *ConflictError) Error() string {
	return "Current SyncCount for: " + e.Key + " is: " + strconv.FormatInt(e.Current, 10) + " not: " + strconv.FormatInt(e.Given, 10)
}

// Is makes errors.Is(err, ErrConflict) true for a ConflictError.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// The limits a LimitError can name.
const (
	LimitDatasets    = "datasets per identity"
	LimitRecords     = "records per dataset"
	LimitDatasetSize = "dataset size in bytes"
)

// LimitError reports an update that would break one of the limits. Nothing
// of the update was applied.
type LimitError struct {
	// What is the limit: LimitDatasets, LimitRecords or LimitDatasetSize.
	What string
	// Limit is its value.
	Limit int64
}

// Error says which limit was exceeded, e.g. "limit exceeded: at most 20
// datasets per identity".
func (e *LimitError) Error() string {
	if e.What == LimitDatasetSize {
		return fmt.Sprintf("limit exceeded: a dataset may hold at most %d bytes (UTF-8 keys and values of its records)", e.Limit)
	}
	return fmt.Sprintf("limit exceeded: at most %d %s", e.Limit, e.What)
}

// Is makes errors.Is(err, ErrLimitExceeded) true for a LimitError.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }

// Options configures a Store.
type Options struct {
	// KeyPrefix is the first part of every key. If not set, "pushsync".
	// It must not hold '{' or '}', which would break the hash tags.
	KeyPrefix string
	// MaxDatasets bounds the live datasets of one identity. If not set, 20.
	MaxDatasets int
	// MaxRecords bounds the live records of one dataset. If not set, 1024.
	MaxRecords int
	// MaxDatasetBytes bounds the UTF-8 bytes of keys and values of the live
	// records of one dataset. If not set, 1 MiB.
	MaxDatasetBytes int64
	// MaxTombstones bounds the tombstones of one dataset: beyond it the
	// oldest are purged. If not set, DefaultMaxTombstones (4096).
	MaxTombstones int
	// MaxDeletedDatasets bounds the entries deleted datasets leave for one
	// identity: beyond it those of the oldest deletions are purged. If not
	// set, DefaultMaxDeletedDatasets (1000).
	MaxDeletedDatasets int
	// Now returns the current time. If not set, time.Now.
	Now func() time.Time
	// Metrics registers the store's metrics, and must not hold them
	// already. If not set, they are not registered.
	Metrics prometheus.Registerer
	// SweepWindow is how long after its note in the sweep index a change
	// may still be committed (see ClaimPending). If not set,
	// sweepindex.DefaultWindow (5s).
	SweepWindow time.Duration
}

// The kinds of data a purge removes, the values of the label "what" of
// pushsync_store_purged_total.
const (
	purgedTombstones      = "tombstones"
	purgedDeletedDatasets = "deleted_datasets"
)

// Store keeps datasets and records in Redis. It is safe for concurrent use.
type Store struct {
	rdb           redis.UniversalClient
	prefix        string
	maxDatasets   int
	maxRecords    int
	maxBytes      int64
	maxTombstones int
	maxDeleted    int
	now           func() time.Time
	purged        *prometheus.CounterVec
	sweep         *sweepindex.Index
}

// New returns a Store on the given Redis client.
func New(rdb redis.UniversalClient, opts Options) *Store {
	s := &Store{rdb: rdb, prefix: opts.KeyPrefix, maxDatasets: opts.MaxDatasets,
		maxRecords: opts.MaxRecords, maxBytes: opts.MaxDatasetBytes, maxTombstones: opts.MaxTombstones, maxDeleted: opts.MaxDeletedDatasets, now: opts.Now,
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_store_purged_total",
			Help: "What the store purged to stay within its bounds, by what: tombstones (the oldest of a dataset beyond its bound), deleted_datasets (the entries of an identity's oldest deleted datasets beyond its bound).",
		}, []string{"what"}),
	}
	if s.prefix == "" {
		s.prefix = "pushsync"
	}
	s.sweep = sweepindex.New(rdb, s.prefix, "outbox", opts.SweepWindow)
	if s.maxDatasets <= 0 {
		s.maxDatasets = DefaultMaxDatasets
	}
	if s.maxRecords <= 0 {
		s.maxRecords = DefaultMaxRecords
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxDatasetBytes
	}
	if s.maxTombstones <= 0 {
		s.maxTombstones = DefaultMaxTombstones
	}
	if s.maxDeleted <= 0 {
		s.maxDeleted = DefaultMaxDeletedDatasets
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.Metrics != nil {
		opts.Metrics.MustRegister(s.purged)
	}
	return s
}

// Record is one record of a dataset.
type Record struct {
	Key string
	// Value is nil for a removed record (a tombstone).
	Value *string
	// SyncCount is the dataset sync count of the update that last wrote
	// the record.
	SyncCount              int64
	LastModifiedDate       time.Time
	LastModifiedBy         string
	DeviceLastModifiedDate time.Time
}

// Dataset is the metadata of one dataset.
type Dataset struct {
	IdentityPoolID   string
	IdentityID       string
	Name             string
	CreationDate     time.Time
	LastModifiedDate time.Time
	LastModifiedBy   string
	// DataStorage is the sum of the UTF-8 bytes of key and value over the
	// live records.
	DataStorage int64
	// NumRecords counts the live records (tombstones excluded).
	NumRecords int64
	// SyncCount is the dataset sync count.
	SyncCount int64
}

func (s *Store) tag(pool, identity string) string {
	return s.prefix + ":" + cognito.HashTag(pool, identity)
}

func (s *Store) datasetsKey(pool, identity string) string {
	return s.tag(pool, identity) + ":datasets"
}

func (s *Store) outboxKey(pool, identity string) string {
	return s.tag(pool, identity) + ":outbox"
}

// datasetKeys are the KEYS of the scripts that write or list a dataset, in
// this order: datasets hash, record states, record values, outbox,
// tombstones by sync count, purge marks. The identity's tag is built once.
func (s *Store) datasetKeys(pool, identity, dataset string) []string {
	t := s.tag(pool, identity)
	return []string{t + ":datasets", t + ":rs:" + dataset, t + ":rv:" + dataset, t + ":outbox",
		t + ":rt:" + dataset, t + ":purged"}
}

// Pool ids always hold a ':' and never '/', so "{<pool>}" and "{pools}"
// cannot be mistaken for an identity tag or for each other.
func (s *Store) poolIdentitiesKey(pool string) string {
	return s.prefix + ":{" + pool + "}:identities"
}

func (s *Store) poolUsageKey(pool string) string { return s.prefix + ":{" + pool + "}:usage" }

// poolsKey is the list of pools earlier versions kept; see the layout.
func (s *Store) poolsKey() string { return s.prefix + ":{pools}" }

func (s *Store) nowMs() int64 { return s.now().UnixMilli() }

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }

func validateIdentity(pool, identity string) error {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return err
	}
	return cognito.ValidateIdentityID(identity)
}

func validateDataset(pool, identity, dataset string) error {
	if err := validateIdentity(pool, identity); err != nil {
		return err
	}
	return cognito.ValidateDatasetName(dataset)
}

// validateUpdate checks everything of an update before Redis is touched.
func validateUpdate(u *Update) error {
	if err := validateDataset(u.IdentityPoolID, u.IdentityID, u.DatasetName); err != nil {
		return err
	}
	if u.DeviceID != "" {
		if err := cognito.ValidateDeviceID(u.DeviceID); err != nil {
			return err
		}
	}
	if len(u.Patches) > MaxPatches {
		return &cognito.FieldError{Field: "RecordPatches", Reason: fmt.Sprintf("at most %d patches per call, got %d", MaxPatches, len(u.Patches))}
	}
	seen := make(map[string]int, len(u.Patches))
	for i, p := range u.Patches {
		field := func(name string) string { return "RecordPatches[" + strconv.Itoa(i) + "]." + name }
		if p.Op != OpReplace && p.Op != OpRemove {
			return &cognito.FieldError{Field: field("Op"), Reason: fmt.Sprintf("%q is not one of replace, remove", p.Op)}
		}
		if err := checkText(field("Key"), p.Key, MaxKeyLen); err != nil {
			return err
		}
		if p.Key == "" {
			return &cognito.FieldError{Field: field("Key"), Reason: "must not be empty"}
		}
		if j, dup := seen[p.Key]; dup {
			return &cognito.FieldError{Field: field("Key"), Reason: fmt.Sprintf("%q is also patched by RecordPatches[%d]", p.Key, j)}
		}
		seen[p.Key] = i
		if p.Op == OpReplace {
			if err := checkText(field("Value"), p.Value, MaxValueLen); err != nil {
				return err
			}
		}
		if p.SyncCount < 0 {
			return &cognito.FieldError{Field: field("SyncCount"), Reason: fmt.Sprintf("must not be negative, got %d", p.SyncCount)}
		}
	}
	return nil
}

// checkText checks that s is UTF-8 of at most max characters.
func checkText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return &cognito.FieldError{Field: field, Reason: "must be valid UTF-8"}
	}
	if len(s) > max {
		if n := utf8.RuneCountInString(s); n > max {
			return &cognito.FieldError{Field: field, Reason: fmt.Sprintf("must be at most %d characters, got %d", max, n)}
		}
	}
	return nil
}

// scriptError returns the text after code if err is the error reply a
// script raised with that code.
func scriptError(err error, code string) (string, bool) {
	msg := err.Error()
	i := strings.Index(msg, code)
	if i < 0 {
		return "", false
	}
	return strings.TrimSpace(msg[i+len(code):]), true
}

// datasetMeta is a decoded entry of the datasets hash.
type datasetMeta struct {
	syncCount  int64
	live       bool
	created    int64
	modified   int64
	storage    int64
	numRecords int64
	deletedAt  int64
	modifiedBy string
}

func decodeMeta(name, v string) (datasetMeta, error) {
	var m datasetMeta
	var nums [7]int64
	rest := v
	for i := range nums {
		f, r, ok := strings.Cut(rest, "|")
		if !ok {
			return m, fmt.Errorf("store: dataset %s has a corrupt entry %q", name, v)
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return m, fmt.Errorf("store: dataset %s has a corrupt entry %q", name, v)
		}
		nums[i], rest = n, r
	}
	m.syncCount, m.live, m.created, m.modified = nums[0], nums[1] == 1, nums[2], nums[3]
	m.storage, m.numRecords, m.deletedAt, m.modifiedBy = nums[4], nums[5], nums[6], rest
	return m, nil
}

func (m *datasetMeta) dataset(pool, identity, name string) *Dataset {
	return &Dataset{IdentityPoolID: pool, IdentityID: identity, Name: name,
		CreationDate: msTime(m.created), LastModifiedDate: msTime(m.modified), LastModifiedBy: m.modifiedBy,
		DataStorage: m.storage, NumRecords: m.numRecords, SyncCount: m.syncCount}
}

// luaHelpers are shared by the scripts: parseMeta splits a datasets hash
// entry into its eight fields (the last, last modified by, may hold '|');
// fmt formats an integer without an exponent; keyLess compares two strings
// byte by byte, as Go does, never with the locale dependent Lua '<'.
const luaHelpers = `
local function parseMeta(m)
  local t, pos = {}, 1
  for i = 1, 7 do
    local e = string.find(m, '|', pos, true)
    t[i] = string.sub(m, pos, e - 1)
    pos = e + 1
  end
  t[8] = string.sub(m, pos)
  return t
end
local function fmt(n) return string.format('%d', n) end
local function keyLess(a, b)
  if a == b then return false end
  local n = #a
  if #b < n then n = #b end
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
`
