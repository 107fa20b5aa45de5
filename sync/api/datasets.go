package api

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/pushsync/pushsync/internal/keypurge"
	"github.com/pushsync/pushsync/sync/cognito"
	"github.com/pushsync/pushsync/sync/store"
)

// Store is what the API reads and writes in the dataset store.
type Store interface {
	UpdateRecords(ctx context.Context, u store.Update) ([]store.Record, store.Change, error)
	ListRecords(ctx context.Context, pool, identity, dataset string, o store.ListOptions) (*store.Page, error)
	DescribeDataset(ctx context.Context, pool, identity, dataset string) (*store.Dataset, error)
	ListDatasets(ctx context.Context, pool, identity string, max int, nextToken string) ([]store.Dataset, string, error)
	DeleteDataset(ctx context.Context, pool, identity, dataset, modifiedBy string) (*store.Dataset, store.Change, error)
	IdentityUsage(ctx context.Context, pool, identity string) (store.IdentityUsage, error)
	PoolUsage(ctx context.Context, pool string) (store.PoolUsage, error)
	ListPoolUsage(ctx context.Context, max int, nextToken string, pools []string) ([]store.PoolUsage, string, error)
	PurgePhases(pool string) []keypurge.Phase
}

// Relay publishes a committed change; *relay.Relay is one.
type Relay interface {
	Deliver(ctx context.Context, c store.Change) error
	// CatchUp publishes an identity's changes left behind, after a write
	// of it the store refused.
	CatchUp(ctx context.Context, pool, identity string)
}

// epoch is a time written as epoch seconds with milliseconds, the form
// every AWS SDK reads for Cognito Sync timestamps.
type epoch time.Time

func (e epoch) MarshalJSON() ([]byte, error) {
	t := time.Time(e)
	if t.IsZero() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(t.UnixMilli())/1000, 'f', -1, 64), nil
}

// UnmarshalJSON reads epoch seconds. Anything else is a
// *json.UnmarshalTypeError, which the decoder completes with the member's
// name.
func (e *epoch) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return &json.UnmarshalTypeError{Value: describeJSON(b), Type: reflect.TypeFor[epoch]()}
	}
	*e = epoch(time.UnixMilli(int64(math.Round(f * 1000))))
	return nil
}

// describeJSON names the kind of a JSON value, with the value itself when it
// is short, as in "string \"2024-01-01\"" or "number -5".
func describeJSON(b []byte) string {
	v := string(b)
	if r := []rune(v); len(r) > 40 {
		v = string(r[:40]) + "…"
	}
	switch b[0] {
	case '"':
		return "string " + v
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean " + v
	}
	return "number " + v
}

type recordOut struct {
	Key                    string
	Value                  *string
	SyncCount              int64
	LastModifiedDate       epoch
	LastModifiedBy         string
	DeviceLastModifiedDate epoch
}

func records(rs []store.Record) []recordOut {
	out := make([]recordOut, 0, len(rs))
	for _, r := range rs {
		out = append(out, recordOut{Key: r.Key, Value: r.Value, SyncCount: r.SyncCount, LastModifiedDate: epoch(r.LastModifiedDate),
			LastModifiedBy: r.LastModifiedBy, DeviceLastModifiedDate: epoch(r.DeviceLastModifiedDate)})
	}
	return out
}

type datasetOut struct {
	IdentityId       string
	DatasetName      string
	CreationDate     epoch
	LastModifiedDate epoch
	LastModifiedBy   string
	DataStorage      int64
	NumRecords       int64
}

func datasetView(d *store.Dataset) datasetOut {
	return datasetOut{IdentityId: d.IdentityID, DatasetName: d.Name, CreationDate: epoch(d.CreationDate), LastModifiedDate: epoch(d.LastModifiedDate),
		LastModifiedBy: d.LastModifiedBy, DataStorage: d.DataStorage, NumRecords: d.NumRecords}
}

// storeError maps the store's errors onto API errors.
func storeError(err error) error {
	var (
		fe *cognito.FieldError
		ce *store.ConflictError
		le *store.LimitError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return resourceConflict("%s", ce.Error())
	case errors.As(err, &le):
		return limitExceeded("%s", le.Error())
	case errors.As(err, &fe):
		return invalidParameter("%v", fe)
	case errors.Is(err, store.ErrDatasetNotFound):
		return resourceNotFound("%s", strings.TrimPrefix(err.Error(), "store: "))
	case errors.Is(err, store.ErrPoolNotFound):
		return resourceNotFound("%s", strings.TrimPrefix(err.Error(), "store: "))
	}
	return err
}

// query reads an optional integer query parameter.
func queryInt(q url.Values, name string, min, max int64) (int64, bool, error) {
	v := q.Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < min || n > max {
		return 0, false, invalidParameter("%s: must be an integer from %d to %d, got %q", name, min, max, v)
	}
	return n, true, nil
}

func (s *Server) listRecords(r *request) (any, error) {
	pool, identity, dataset, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.actFor(pool, identity); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	last, _, err := queryInt(q, "lastSyncCount", 0, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	// Without maxResults every record comes in one page: the iOS SDK lists
	// once, without maxResults and without following NextToken, and then
	// continues from the page's DatasetSyncCount.
	max, paged, err := queryInt(q, "maxResults", 1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	// A call without a valid session token is given one; the
	// UpdateRecords of the session carry it. Only a first page starts a
	// session: the JavaScript and Android SDKs ask for the later pages,
	// with a nextToken, without sending the token back.
	token := q.Get("syncSessionToken")
	newSession := token == "" || s.sessions.check(token, pool, identity, dataset) != nil
	next := q.Get("nextToken")
	page, err := s.store.ListRecords(r.Context(), pool, identity, dataset, store.ListOptions{LastSyncCount: last, MaxResults: int(max), All: !paged, NextToken: next, NewSession: newSession && next == ""})
	if err != nil {
		return nil, storeError(err)
	}
	if newSession {
		token = s.sessions.issue(pool, identity, dataset)
	}
	var nextOut *string
	if page.NextToken != "" {
		nextOut = &page.NextToken
	}
	var by *string
	if page.LastModifiedBy != "" {
		by = &page.LastModifiedBy
	}
	return struct {
		Records                               []recordOut
		NextToken                             *string
		Count                                 int
		DatasetSyncCount                      int64
		LastModifiedBy                        *string
		MergedDatasetNames                    []string
		DatasetExists                         bool
		DatasetDeletedAfterRequestedSyncCount bool
		SyncSessionToken                      string
	}{records(page.Records), nextOut, len(page.Records), page.DatasetSyncCount, by, nil, page.DatasetExists, page.DatasetDeletedAfterRequestedSyncCount, token}, nil
}

func (s *Server) updateRecords(r *request) (any, error) {
	pool, identity, dataset, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.actFor(pool, identity); err != nil {
		return nil, err
	}
	var in struct {
		DeviceId      *string
		RecordPatches []struct {
			Op                     *string
			Key                    *string
			Value                  *string
			SyncCount              *int64
			DeviceLastModifiedDate *epoch
		}
		SyncSessionToken *string
	}
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	if in.SyncSessionToken == nil || *in.SyncSessionToken == "" {
		return nil, invalidParameter("SyncSessionToken: is required")
	}
	if err := s.sessions.check(*in.SyncSessionToken, pool, identity, dataset); err != nil {
		return nil, invalidParameter("%v", err)
	}
	u := store.Update{IdentityPoolID: pool, IdentityID: identity, DatasetName: dataset, ModifiedBy: identity}
	if in.DeviceId != nil {
		if err := cognito.ValidateDeviceID(*in.DeviceId); err != nil {
			return nil, invalidParameter("%v", err)
		}
		u.DeviceID = *in.DeviceId
	}
	for i, p := range in.RecordPatches {
		switch {
		case p.Op == nil:
			return nil, invalidParameter("RecordPatches[%d].Op: is required", i)
		case p.Key == nil:
			return nil, invalidParameter("RecordPatches[%d].Key: is required", i)
		case p.SyncCount == nil:
			return nil, invalidParameter("RecordPatches[%d].SyncCount: is required", i)
		}
		patch := store.Patch{Op: *p.Op, Key: *p.Key, SyncCount: *p.SyncCount}
		if p.Value != nil {
			patch.Value = *p.Value
		}
		if p.DeviceLastModifiedDate != nil {
			patch.DeviceLastModifiedDate = time.Time(*p.DeviceLastModifiedDate)
		}
		u.Patches = append(u.Patches, patch)
	}
	recs, change, err := s.store.UpdateRecords(r.Context(), u)
	if err != nil {
		s.refused(r, pool, identity, err)
		return nil, storeError(err)
	}
	if len(recs) > 0 {
		s.deliver(r, change)
	}
	return struct{ Records []recordOut }{records(recs)}, nil
}

// deliver publishes a committed change. A failure is logged, not
// returned: the change is committed and marked, and the relay's sweep
// publishes it later. The publish goes on when the client hangs up (an
// app sent to the background, an SDK timeout): the change is committed
// whether the client hears of it or not, and its event is due now, not at
// a sweep; the relay's publish timeout bounds it.
func (s *Server) deliver(r *request, c store.Change) {
	if s.opts.AfterCommit != nil {
		s.opts.AfterCommit()
	}
	if s.opts.Relay == nil {
		return
	}
	if err := s.opts.Relay.Deliver(context.WithoutCancel(r.Context()), c); err != nil {
		s.log.Warn().Err(err).Str("dataset", c.DatasetName).Int64("sync_count", c.SyncCount).
			Msg("change committed but not yet published; the relay will publish it")
	}
}

// refused has the relay publish the identity's changes left behind after
// the store refused a write of it (err), which published nothing: a client
// that retries a refused write keeps the identity out of the sweep's reach.
func (s *Server) refused(r *request, pool, identity string, err error) {
	if s.opts.Relay == nil || !(errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrLimitExceeded) || errors.Is(err, store.ErrDatasetNotFound)) {
		return
	}
	s.opts.Relay.CatchUp(context.WithoutCancel(r.Context()), pool, identity)
}

func (s *Server) describeDataset(r *request) (any, error) {
	pool, identity, dataset, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.actFor(pool, identity); err != nil {
		return nil, err
	}
	d, err := s.store.DescribeDataset(r.Context(), pool, identity, dataset)
	if err != nil {
		return nil, storeError(err)
	}
	return struct{ Dataset datasetOut }{datasetView(d)}, nil
}

func (s *Server) deleteDataset(r *request) (any, error) {
	pool, identity, dataset, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.actFor(pool, identity); err != nil {
		return nil, err
	}
	d, change, err := s.store.DeleteDataset(r.Context(), pool, identity, dataset, identity)
	if err != nil {
		s.refused(r, pool, identity, err)
		return nil, storeError(err)
	}
	s.deliver(r, change)
	return struct{ Dataset datasetOut }{datasetView(d)}, nil
}

func (s *Server) listDatasets(r *request) (any, error) {
	pool, identity, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.actFor(pool, identity); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	max, _, err := queryInt(q, "maxResults", 1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	ds, next, err := s.store.ListDatasets(r.Context(), pool, identity, int(max), q.Get("nextToken"))
	if err != nil {
		return nil, storeError(err)
	}
	out := make([]datasetOut, 0, len(ds))
	for i := range ds {
		out = append(out, datasetView(&ds[i]))
	}
	var nt *string
	if next != "" {
		nt = &next
	}
	return struct {
		Datasets  []datasetOut
		Count     int
		NextToken *string
	}{out, len(out), nt}, nil
}

func (s *Server) describeIdentityUsage(r *request) (any, error) {
	pool, identity, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.actFor(pool, identity); err != nil {
		return nil, err
	}
	u, err := s.store.IdentityUsage(r.Context(), pool, identity)
	if err != nil {
		return nil, storeError(err)
	}
	type usage struct {
		IdentityId       string
		IdentityPoolId   string
		LastModifiedDate epoch
		DatasetCount     int
		DataStorage      int64
	}
	return struct{ IdentityUsage usage }{usage{identity, pool, epoch(u.LastModifiedDate), u.DatasetCount, u.DataStorage}}, nil
}

type poolUsageOut struct {
	IdentityPoolId    string
	SyncSessionsCount *int64
	DataStorage       int64
	LastModifiedDate  epoch
}

func poolUsageView(u store.PoolUsage) poolUsageOut {
	return poolUsageOut{IdentityPoolId: u.IdentityPoolID, SyncSessionsCount: &u.SyncSessions, DataStorage: u.DataStorage, LastModifiedDate: epoch(u.LastModifiedDate)}
}

func (s *Server) describePoolUsage(r *request) (any, error) {
	pool, _, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.developerOnly("DescribeIdentityPoolUsage"); err != nil {
		return nil, err
	}
	u, err := s.store.PoolUsage(r.Context(), pool)
	if errors.Is(err, store.ErrPoolNotFound) {
		// The pool exists (developer requests are refused for a pool
		// that does not) and stores nothing yet.
		u, err = store.PoolUsage{IdentityPoolID: pool}, nil
	}
	if err != nil {
		return nil, storeError(err)
	}
	return struct{ IdentityPoolUsage poolUsageOut }{poolUsageView(u)}, nil
}

// maxPoolUsages is the most pools one ListIdentityPoolUsage page holds.
const maxPoolUsages = 60

func (s *Server) listPoolUsage(r *request) (any, error) {
	if err := r.developerOnly("ListIdentityPoolUsage"); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	// Pages hold at most maxPoolUsages pools; a larger maxResults is
	// answered with a full page and a NextToken (the model sets no limit,
	// so a caller's larger value is not an error), and the answer's
	// MaxResults says what was used.
	max, given, err := queryInt(q, "maxResults", 1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	if !given || max > maxPoolUsages {
		max = maxPoolUsages
	}
	// The pools that exist, as DescribeIdentityPoolUsage describes them:
	// a created pool before it stores anything, and not what a deleted
	// one stored.
	created, err := s.reg.IdentityPools(r.Context())
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(created))
	for i, p := range created {
		ids[i] = p.ID
	}
	us, next, err := s.store.ListPoolUsage(r.Context(), int(max), q.Get("nextToken"), ids)
	if err != nil {
		return nil, storeError(err)
	}
	out := make([]poolUsageOut, 0, len(us))
	for _, u := range us {
		out = append(out, poolUsageView(u))
	}
	var nt *string
	if next != "" {
		nt = &next
	}
	return struct {
		IdentityPoolUsages []poolUsageOut
		MaxResults         int
		Count              int
		NextToken          *string
	}{out, int(max), len(out), nt}, nil
}

// cognitoEvents answers GetCognitoEvents and SetCognitoEvents: pushsync
// runs no sync triggers, so there are none to read, and only an empty
// value, which removes a trigger, can be set.
func (s *Server) cognitoEvents(r *request) (any, error) {
	if _, _, _, _, err := labels(r); err != nil {
		return nil, err
	}
	if err := r.developerOnly("Cognito events"); err != nil {
		return nil, err
	}
	if r.Method == http.MethodGet {
		return struct{ Events map[string]string }{map[string]string{}}, nil
	}
	var in struct{ Events map[string]*string }
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	if in.Events == nil {
		return nil, invalidParameter("Events is required")
	}
	for name, v := range in.Events {
		if name != "SyncTrigger" {
			return nil, invalidParameter("Events: %q is not an event type; the only one is SyncTrigger", name)
		}
		if v != nil && *v != "" {
			return nil, invalidParameter("Events: sync triggers (SyncTrigger Lambda functions) are not supported by pushsync; consume the PUSHSYNC_EVENTS stream instead")
		}
	}
	return struct{}{}, nil
}
