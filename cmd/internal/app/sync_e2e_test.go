//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package app_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/golang-jwt/jwt/v4"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/bulk"
	"github.com/pushsync/pushsync/sync/identity"
	"github.com/pushsync/pushsync/sync/store"
)

// These tests drive pushsyncd (role all) only through the AWS SDK's Cognito
// Identity and Cognito Sync clients, as an app does: GetId and
// GetCredentialsForIdentity unsigned, then every dataset operation signed
// with the credentials those returned.

const sdkRegion = "us-east-1"

// startSyncStack starts the whole stack with the API and developer
// credentials.
func startSyncStack(t *testing.T, configure ...func(*config.Config)) *stack {
	t.Helper()
	s := newStack(t)
	s.cfg.Role = config.RoleAll
	s.cfg.API.Listen = "127.0.0.1:0"
	s.cfg.API.DeveloperAccessKeyID = devAccessKey
	s.cfg.API.DeveloperSecretAccessKey = devSecretKey
	for _, f := range configure {
		f(s.cfg)
	}
	s.start()
	return s
}

func (s *stack) awsConfig(creds *credentials.Credentials) *aws.Config {
	return &aws.Config{Endpoint: aws.String("http://" + s.apiAddr), Region: aws.String(sdkRegion),
		Credentials: creds, MaxRetries: aws.Int(0)}
}

// identityClient is an unsigned Cognito Identity client of endpoint
// (pushsyncd's API unless given).
func (s *stack) identityClient(endpoint ...string) *cognitoidentity.CognitoIdentity {
	cfg := s.awsConfig(credentials.AnonymousCredentials)
	if len(endpoint) > 0 {
		cfg.Endpoint = aws.String(endpoint[0])
	}
	return cognitoidentity.New(session.Must(session.NewSession(cfg)))
}

func (s *stack) syncClient(creds *credentials.Credentials) *cognitosync.CognitoSync {
	return cognitosync.New(session.Must(session.NewSession(s.awsConfig(creds))))
}

// developer is a Cognito Sync client with the developer credentials.
func (s *stack) developer() *cognitosync.CognitoSync {
	return s.syncClient(credentials.NewStaticCredentials(devAccessKey, devSecretKey, ""))
}

// createPool creates an identity pool allowing unauthenticated identities.
func (s *stack) createPool(id string) string {
	s.t.Helper()
	p, err := s.reg.CreateIdentityPool(context.Background(), "eu-west-1",
		registry.IdentityPool{ID: id, Name: "e2e", AllowUnauthenticated: true})
	if err != nil {
		s.t.Fatal(err)
	}
	return p.ID
}

// device is one app install: a Cognito Sync client signed with credentials
// of its identity.
type device struct {
	t        testing.TB
	c        *cognitosync.CognitoSync
	pool, id string
}

// signIn is an app's first start: GetId, then GetCredentialsForIdentity.
func (s *stack) signIn(poolID string) device {
	s.t.Helper()
	out, err := s.identityClient().GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(poolID)})
	if err != nil {
		s.t.Fatalf("GetId: %v", err)
	}
	return s.deviceOf(poolID, aws.StringValue(out.IdentityId))
}

// deviceOf is another install of an existing identity, with its own
// credentials.
func (s *stack) deviceOf(poolID, id string) device {
	s.t.Helper()
	start := time.Now()
	out, err := s.identityClient().GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(id)})
	if err != nil {
		s.t.Fatalf("GetCredentialsForIdentity: %v", err)
	}
	c := out.Credentials
	if aws.StringValue(out.IdentityId) != id || c == nil || !strings.HasPrefix(aws.StringValue(c.AccessKeyId), "ASIA") ||
		aws.StringValue(c.SecretKey) == "" || aws.StringValue(c.SessionToken) == "" {
		s.t.Fatalf("GetCredentialsForIdentity answered %v", out)
	}
	if exp := aws.TimeValue(c.Expiration); exp.Before(start.Add(59*time.Minute)) || exp.After(time.Now().Add(time.Hour)) {
		s.t.Fatalf("credentials expire at %v, want in about 1h", exp)
	}
	return device{t: s.t, pool: poolID, id: id, c: s.syncClient(credentials.NewStaticCredentials(
		aws.StringValue(c.AccessKeyId), aws.StringValue(c.SecretKey), aws.StringValue(c.SessionToken)))}
}

func (d device) listInput(dataset string, last int64) *cognitosync.ListRecordsInput {
	return &cognitosync.ListRecordsInput{IdentityPoolId: aws.String(d.pool), IdentityId: aws.String(d.id),
		DatasetName: aws.String(dataset), LastSyncCount: aws.Int64(last)}
}

func (d device) list(dataset string, last int64) *cognitosync.ListRecordsOutput {
	d.t.Helper()
	out, err := d.c.ListRecords(d.listInput(dataset, last))
	if err != nil {
		d.t.Fatalf("ListRecords %s from %d: %v", dataset, last, err)
	}
	if aws.StringValue(out.SyncSessionToken) == "" {
		d.t.Fatalf("ListRecords %s gave no SyncSessionToken", dataset)
	}
	return out
}

func (d device) update(dataset, token string, patches ...*cognitosync.RecordPatch) (*cognitosync.UpdateRecordsOutput, error) {
	return d.c.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(d.pool), IdentityId: aws.String(d.id),
		DatasetName: aws.String(dataset), SyncSessionToken: aws.String(token), RecordPatches: patches})
}

// write is a sync: ListRecords for a session, then UpdateRecords.
func (d device) write(dataset string, patches ...*cognitosync.RecordPatch) []*cognitosync.Record {
	d.t.Helper()
	out, err := d.update(dataset, aws.StringValue(d.list(dataset, 0).SyncSessionToken), patches...)
	if err != nil {
		d.t.Fatalf("UpdateRecords %s: %v", dataset, err)
	}
	return out.Records
}

func (d device) describe(dataset string) *cognitosync.Dataset {
	d.t.Helper()
	out, err := d.c.DescribeDataset(&cognitosync.DescribeDatasetInput{IdentityPoolId: aws.String(d.pool),
		IdentityId: aws.String(d.id), DatasetName: aws.String(dataset)})
	if err != nil {
		d.t.Fatalf("DescribeDataset %s: %v", dataset, err)
	}
	return out.Dataset
}

func replace(key, value string, syncCount int64) *cognitosync.RecordPatch {
	return &cognitosync.RecordPatch{Op: aws.String("replace"), Key: aws.String(key), Value: aws.String(value), SyncCount: aws.Int64(syncCount)}
}

func remove(key string, syncCount int64) *cognitosync.RecordPatch {
	return &cognitosync.RecordPatch{Op: aws.String("remove"), Key: aws.String(key), SyncCount: aws.Int64(syncCount)}
}

// rec is the comparable part of a record.
type rec struct {
	Key       string
	Value     *string
	SyncCount int64
}

func (r rec) String() string {
	if r.Value == nil {
		return fmt.Sprintf("%s=<deleted>@%d", r.Key, r.SyncCount)
	}
	return fmt.Sprintf("%s=%q@%d", r.Key, *r.Value, r.SyncCount)
}

func recs(rs []*cognitosync.Record) string {
	var out []string
	for _, r := range rs {
		out = append(out, rec{aws.StringValue(r.Key), r.Value, aws.Int64Value(r.SyncCount)}.String())
	}
	return strings.Join(out, " ")
}

func live(key, value string, sc int64) string { return rec{key, &value, sc}.String() }
func gone(key string, sc int64) string        { return rec{Key: key, SyncCount: sc}.String() }

func checkRecords(t *testing.T, what string, got []*cognitosync.Record, want ...string) {
	t.Helper()
	if g, w := recs(got), strings.Join(want, " "); g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// wantError checks that err is the AWS error code with the HTTP status and,
// if msg is given, a message holding it.
func wantError(t *testing.T, what string, err error, code string, status int, msg string) {
	t.Helper()
	var rf awserr.RequestFailure
	if !errors.As(err, &rf) {
		t.Errorf("%s: got %v, want %s (%d)", what, err, code, status)
		return
	}
	if rf.Code() != code || rf.StatusCode() != status || !strings.Contains(rf.Message(), msg) {
		t.Errorf("%s: got %s (%d) %q, want %s (%d) with %q", what, rf.Code(), rf.StatusCode(), rf.Message(), code, status, msg)
	}
}

// checkTime checks a timestamp the server set between from and now; the
// wire carries epoch seconds with milliseconds.
func checkTime(t *testing.T, what string, got *time.Time, from time.Time) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: missing", what)
		return
	}
	if got.Before(from.Truncate(time.Millisecond)) || got.After(time.Now()) || !got.Equal(got.Truncate(time.Millisecond)) {
		t.Errorf("%s = %v, want a millisecond time between %v and now", what, got.UTC(), from.UTC())
	}
}

func TestSyncFlowBetweenTwoDevicesOfOneIdentity(t *testing.T) {
	s := startSyncStack(t)
	start := time.Now()
	poolID := s.createPool("")
	a := s.signIn(poolID)
	if !strings.HasPrefix(a.id, "eu-west-1:") {
		t.Fatalf("identity %s is not in the pool's region", a.id)
	}
	b := s.deviceOf(poolID, a.id)
	const ds = "game.state"

	// Device A: the dataset does not exist yet.
	first := a.list(ds, 0)
	if aws.BoolValue(first.DatasetExists) || aws.BoolValue(first.DatasetDeletedAfterRequestedSyncCount) ||
		aws.Int64Value(first.DatasetSyncCount) != 0 || aws.Int64Value(first.Count) != 0 || len(first.Records) != 0 ||
		first.NextToken != nil || first.LastModifiedBy != nil {
		t.Fatalf("ListRecords of a new dataset: %v", first)
	}
	deviceTime := time.UnixMilli(1_700_000_000_123)
	p := replace("name", "héllo", 0) // 6 UTF-8 bytes
	p.DeviceLastModifiedDate = &deviceTime
	up, err := a.update(ds, aws.StringValue(first.SyncSessionToken), replace("highScore", "100", 0), p)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, "A's UpdateRecords", up.Records, live("highScore", "100", 1), live("name", "héllo", 1))
	for _, r := range up.Records {
		if aws.StringValue(r.LastModifiedBy) != a.id {
			t.Errorf("record %s LastModifiedBy %q, want the identity", aws.StringValue(r.Key), aws.StringValue(r.LastModifiedBy))
		}
		checkTime(t, "LastModifiedDate", r.LastModifiedDate, start)
	}
	if got := aws.TimeValue(up.Records[1].DeviceLastModifiedDate); !got.Equal(deviceTime) {
		t.Errorf("DeviceLastModifiedDate %v, want %v", got, deviceTime)
	}
	checkTime(t, "DeviceLastModifiedDate (defaulted to now)", up.Records[0].DeviceLastModifiedDate, start)
	d := a.describe(ds)
	if aws.Int64Value(d.NumRecords) != 2 || aws.Int64Value(d.DataStorage) != int64(len("highScore100")+len("namehéllo")) {
		t.Errorf("after A's write: NumRecords %d, DataStorage %d; want 2, 22", aws.Int64Value(d.NumRecords), aws.Int64Value(d.DataStorage))
	}
	created := aws.TimeValue(d.CreationDate)

	// Device B converges from scratch.
	got := b.list(ds, 0)
	checkRecords(t, "B's ListRecords", got.Records, live("highScore", "100", 1), live("name", "héllo", 1))
	if !aws.BoolValue(got.DatasetExists) || aws.Int64Value(got.DatasetSyncCount) != 1 || aws.Int64Value(got.Count) != 2 ||
		aws.StringValue(got.LastModifiedBy) != a.id || got.NextToken != nil {
		t.Errorf("B's ListRecords: %v", got)
	}
	// B changes one record and removes the other, each with its SyncCount.
	up, err = b.update(ds, aws.StringValue(got.SyncSessionToken), replace("highScore", "200", 1), remove("name", 1))
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, "B's UpdateRecords", up.Records, live("highScore", "200", 2), gone("name", 2))

	// A syncs from its last sync count: the new value and the tombstone.
	got = a.list(ds, 1)
	checkRecords(t, "A's ListRecords from 1", got.Records, live("highScore", "200", 2), gone("name", 2))
	if aws.Int64Value(got.DatasetSyncCount) != 2 || !aws.BoolValue(got.DatasetExists) {
		t.Errorf("A's ListRecords from 1: %v", got)
	}
	if got := a.list(ds, 2); len(got.Records) != 0 || aws.Int64Value(got.DatasetSyncCount) != 2 {
		t.Errorf("ListRecords from the current count: %v", got)
	}

	// Metadata: live records only, key and value bytes.
	d = b.describe(ds)
	if aws.StringValue(d.DatasetName) != ds || aws.StringValue(d.IdentityId) != a.id || aws.Int64Value(d.NumRecords) != 1 ||
		aws.Int64Value(d.DataStorage) != int64(len("highScore200")) || aws.StringValue(d.LastModifiedBy) != a.id {
		t.Errorf("DescribeDataset: %v", d)
	}
	if !aws.TimeValue(d.CreationDate).Equal(created) || aws.TimeValue(d.LastModifiedDate).Before(created) {
		t.Errorf("CreationDate %v (was %v), LastModifiedDate %v", d.CreationDate, created, d.LastModifiedDate)
	}
	checkTime(t, "CreationDate", d.CreationDate, start)
	checkTime(t, "LastModifiedDate", d.LastModifiedDate, start)

	lds, err := a.c.ListDatasets(&cognitosync.ListDatasetsInput{IdentityPoolId: aws.String(poolID), IdentityId: aws.String(a.id)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.Int64Value(lds.Count) != 1 || len(lds.Datasets) != 1 || lds.NextToken != nil || aws.StringValue(lds.Datasets[0].DatasetName) != ds ||
		aws.Int64Value(lds.Datasets[0].NumRecords) != 1 || aws.Int64Value(lds.Datasets[0].DataStorage) != 12 {
		t.Errorf("ListDatasets: %v", lds)
	}
	usage, err := b.c.DescribeIdentityUsage(&cognitosync.DescribeIdentityUsageInput{IdentityPoolId: aws.String(poolID), IdentityId: aws.String(a.id)})
	if err != nil {
		t.Fatal(err)
	}
	u := usage.IdentityUsage
	if aws.StringValue(u.IdentityId) != a.id || aws.StringValue(u.IdentityPoolId) != poolID || aws.Int64Value(u.DatasetCount) != 1 ||
		aws.Int64Value(u.DataStorage) != 12 || !aws.TimeValue(u.LastModifiedDate).Equal(aws.TimeValue(d.LastModifiedDate)) {
		t.Errorf("DescribeIdentityUsage: %v (dataset last modified %v)", u, d.LastModifiedDate)
	}
}

func TestConcurrentWritersOfOneRecordConflictExactlyOnce(t *testing.T) {
	s := startSyncStack(t)
	poolID := s.createPool("")
	owner := s.signIn(poolID)
	const (
		ds      = "counter"
		key     = "clicks"
		writers = 8
		rounds  = 3
	)
	devices := make([]device, writers)
	for i := range devices {
		devices[i] = s.deviceOf(poolID, owner.id)
	}
	var current int64 // the record's SyncCount before the round
	for round := 1; round <= rounds; round++ {
		// Every writer opens its own session, then all write at once.
		tokens := make([]string, writers)
		for i, d := range devices {
			tokens[i] = aws.StringValue(d.list(ds, current).SyncSessionToken)
		}
		var wg sync.WaitGroup
		begin := make(chan struct{})
		results := make([]*cognitosync.UpdateRecordsOutput, writers)
		errs := make([]error, writers)
		for i, d := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-begin
				results[i], errs[i] = d.update(ds, tokens[i], replace(key, fmt.Sprintf("w%d-r%d", i, round), current))
			}()
		}
		close(begin)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			if err == nil {
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both succeeded", round, winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer succeeded: %v", round, errs)
		}
		next := current + 1 // the one update of the round raises the count by one
		checkRecords(t, fmt.Sprintf("round %d winner", round), results[winner].Records, live(key, fmt.Sprintf("w%d-r%d", winner, round), next))
		for i, err := range errs {
			if i == winner {
				continue
			}
			var rc *cognitosync.ResourceConflictException
			if !errors.As(err, &rc) {
				t.Errorf("round %d writer %d: %T %v, want *cognitosync.ResourceConflictException", round, i, err, err)
				continue
			}
			wantError(t, fmt.Sprintf("round %d writer %d", round, i), err, "ResourceConflictException", http.StatusConflict,
				fmt.Sprintf("Current SyncCount for: %s is: %d not: %d", key, next, current))
			if rc.Message() != fmt.Sprintf("Current SyncCount for: %s is: %d not: %d", key, next, current) {
				t.Errorf("round %d writer %d: message %q", round, i, rc.Message())
			}
		}
		got := owner.list(ds, 0)
		checkRecords(t, fmt.Sprintf("after round %d", round), got.Records, live(key, fmt.Sprintf("w%d-r%d", winner, round), next))
		if aws.Int64Value(got.DatasetSyncCount) != next {
			t.Fatalf("round %d: DatasetSyncCount %d, want %d", round, aws.Int64Value(got.DatasetSyncCount), next)
		}
		current = next
	}
}

func TestLimitExceededAppliesNothing(t *testing.T) {
	s := startSyncStack(t)
	poolID := s.createPool("")
	d := s.signIn(poolID)
	limit := func(what string, err error) {
		t.Helper()
		wantError(t, what, err, "LimitExceededException", http.StatusBadRequest, "limit exceeded")
	}

	t.Run("datasets", func(t *testing.T) {
		for i := range 20 {
			d.write(fmt.Sprintf("ds-%02d", i), replace("k", "v", 0))
		}
		tok := d.list("ds-20", 0).SyncSessionToken
		_, err := d.update("ds-20", aws.StringValue(tok), replace("k", "v", 0))
		limit("21st dataset", err)
		if got := d.list("ds-20", 0); aws.BoolValue(got.DatasetExists) || len(got.Records) != 0 {
			t.Errorf("the refused dataset exists: %v", got)
		}
		lds, err := d.c.ListDatasets(&cognitosync.ListDatasetsInput{IdentityPoolId: aws.String(poolID), IdentityId: aws.String(d.id)})
		if err != nil || aws.Int64Value(lds.Count) != 20 {
			t.Errorf("ListDatasets: %v %v, want 20 datasets", lds, err)
		}
		// A write to an existing dataset still works at the limit.
		checkRecords(t, "write at the dataset limit", d.write("ds-00", replace("k", "w", 1)), live("k", "w", 2))
	})

	t.Run("records", func(t *testing.T) {
		const ds = "many"
		batch := func(from, to int) []*cognitosync.RecordPatch {
			var ps []*cognitosync.RecordPatch
			for i := from; i < to; i++ {
				ps = append(ps, replace(fmt.Sprintf("r%04d", i), "x", 0))
			}
			return ps
		}
		if err := deleteDataset(d, "ds-01"); err != nil { // frees a slot
			t.Fatal(err)
		}
		d.write(ds, batch(0, 1000)...)
		d.write(ds, batch(1000, 1024)...)
		tok := aws.StringValue(d.list(ds, 0).SyncSessionToken)
		_, err := d.update(ds, tok, batch(1024, 1025)...)
		limit("1025th record", err)
		if got := d.list(ds, 2); aws.Int64Value(got.DatasetSyncCount) != 2 || len(got.Records) != 0 {
			t.Errorf("after the refused record: %v", got)
		}
		if got := d.describe(ds); aws.Int64Value(got.NumRecords) != 1024 {
			t.Errorf("NumRecords %d, want 1024", aws.Int64Value(got.NumRecords))
		}
		// Replacing a record and removing one for a new one keep the count.
		checkRecords(t, "at the record limit", d.write(ds, replace("r0000", "y", 1), remove("r0001", 1), replace("new", "z", 0)),
			live("r0000", "y", 3), gone("r0001", 3), live("new", "z", 3))
	})

	t.Run("bytes", func(t *testing.T) {
		const ds = "big"
		if err := deleteDataset(d, "ds-02"); err != nil { // frees a slot
			t.Fatal(err)
		}
		first := strings.Repeat("a", 600_000)
		d.write(ds, replace("a", first, 0))
		// Exactly 1 MiB of keys and values is allowed ...
		rest := strings.Repeat("b", 1<<20-len("a")-len(first)-len("b"))
		d.write(ds, replace("b", rest, 0))
		if got := d.describe(ds); aws.Int64Value(got.DataStorage) != 1<<20 {
			t.Fatalf("DataStorage %d, want %d", aws.Int64Value(got.DataStorage), 1<<20)
		}
		// ... one more byte is not, counted in UTF-8 bytes.
		tok := aws.StringValue(d.list(ds, 0).SyncSessionToken)
		_, err := d.update(ds, tok, replace("c", "", 0))
		limit("one byte over 1 MiB", err)
		_, err = d.update(ds, tok, replace("b", rest[1:]+"é", 2)) // one byte more than rest
		limit("a multi-byte value over 1 MiB", err)
		got := d.list(ds, 0)
		if aws.Int64Value(got.DatasetSyncCount) != 2 || len(got.Records) != 2 || aws.StringValue(got.Records[1].Value) != rest {
			t.Errorf("after the refused writes: DatasetSyncCount %d, %d records", aws.Int64Value(got.DatasetSyncCount), len(got.Records))
		}
		if got := d.describe(ds); aws.Int64Value(got.DataStorage) != 1<<20 || aws.Int64Value(got.NumRecords) != 2 {
			t.Errorf("DataStorage %d NumRecords %d after the refused writes", aws.Int64Value(got.DataStorage), aws.Int64Value(got.NumRecords))
		}
		// Shrinking is allowed.
		checkRecords(t, "shrinking", d.write(ds, replace("b", "small", 2)), live("b", "small", 3))
	})
}

func deleteDataset(d device, ds string) error {
	_, err := d.c.DeleteDataset(&cognitosync.DeleteDatasetInput{IdentityPoolId: aws.String(d.pool), IdentityId: aws.String(d.id), DatasetName: aws.String(ds)})
	return err
}

func TestDeleteDatasetThenWriteAgain(t *testing.T) {
	s := startSyncStack(t)
	start := time.Now()
	poolID := s.createPool("")
	d := s.signIn(poolID)
	const ds = "profile"
	d.write(ds, replace("a", "1", 0), replace("b", "22", 0))
	d.write(ds, replace("a", "333", 1))
	before := d.describe(ds)

	out, err := d.c.DeleteDataset(&cognitosync.DeleteDatasetInput{IdentityPoolId: aws.String(poolID), IdentityId: aws.String(d.id), DatasetName: aws.String(ds)})
	if err != nil {
		t.Fatal(err)
	}
	del := out.Dataset
	if aws.StringValue(del.DatasetName) != ds || aws.StringValue(del.IdentityId) != d.id || aws.Int64Value(del.NumRecords) != 2 ||
		aws.Int64Value(del.DataStorage) != int64(len("a333b22")) || !aws.TimeValue(del.CreationDate).Equal(aws.TimeValue(before.CreationDate)) ||
		aws.StringValue(del.LastModifiedBy) != d.id {
		t.Errorf("DeleteDataset returned %v", del)
	}
	checkTime(t, "deleted dataset's LastModifiedDate", del.LastModifiedDate, start)

	_, err = d.c.DescribeDataset(&cognitosync.DescribeDatasetInput{IdentityPoolId: aws.String(poolID), IdentityId: aws.String(d.id), DatasetName: aws.String(ds)})
	wantError(t, "DescribeDataset after delete", err, "ResourceNotFoundException", http.StatusNotFound, ds)
	wantError(t, "DeleteDataset again", deleteDataset(d, ds), "ResourceNotFoundException", http.StatusNotFound, ds)

	got := d.list(ds, 2) // a device that synced before the deletion
	if !aws.BoolValue(got.DatasetDeletedAfterRequestedSyncCount) || aws.BoolValue(got.DatasetExists) || len(got.Records) != 0 {
		t.Errorf("ListRecords from 2 after the deletion: %v", got)
	}
	if got := d.list(ds, 0); aws.BoolValue(got.DatasetDeletedAfterRequestedSyncCount) || aws.BoolValue(got.DatasetExists) {
		t.Errorf("ListRecords from 0 after the deletion: %v", got)
	}

	// Written again in a new session: re-created, its count above the old
	// one (2, deleted at 3), the old records gone.
	checkRecords(t, "re-creating write", d.write(ds, replace("a", "new", 0)), live("a", "new", 4))
	got = d.list(ds, 0)
	checkRecords(t, "after re-creation", got.Records, live("a", "new", 4))
	if aws.Int64Value(got.DatasetSyncCount) != 4 || !aws.BoolValue(got.DatasetExists) {
		t.Errorf("ListRecords after re-creation: %v", got)
	}
	if got := d.list(ds, 2); !aws.BoolValue(got.DatasetDeletedAfterRequestedSyncCount) || !aws.BoolValue(got.DatasetExists) {
		t.Errorf("ListRecords from before the deletion, after re-creation: %v", got)
	}
	if got := d.describe(ds); aws.Int64Value(got.NumRecords) != 1 || aws.Int64Value(got.DataStorage) != 4 ||
		aws.TimeValue(got.CreationDate).Before(aws.TimeValue(del.LastModifiedDate)) {
		t.Errorf("DescribeDataset after re-creation: %v", got)
	}
}

// TestStoreBoundsFromConfig: api.max_tombstones bounds a dataset's
// tombstones and api.max_deleted_datasets an identity's deleted datasets;
// /metrics counts what they purge.
func TestStoreBoundsFromConfig(t *testing.T) {
	s := startSyncStack(t, func(c *config.Config) {
		c.API.MaxTombstones = 1024
		c.API.MaxDeletedDatasets = 20
	})
	poolID := s.createPool("")
	d := s.signIn(poolID)
	const ds = "items"
	written := make([]*cognitosync.RecordPatch, 1024)
	removed := make([]*cognitosync.RecordPatch, 1024)
	for i := range removed {
		written[i] = replace(fmt.Sprintf("item-%04d", i), "x", 0)
		removed[i] = remove(fmt.Sprintf("item-%04d", i), 1)
	}
	d.write(ds, written...)
	d.write(ds, removed...) // 2: 1024 tombstones
	d.write(ds, replace("last", "x", 0))
	checkRecords(t, "one removal more", d.write(ds, remove("last", 3)), gone("last", 4))
	out := d.list(ds, 0)
	if n := len(out.Records); n != 1024 || recs(out.Records[:1]) != gone("item-0001", 2) || recs(out.Records[n-1:]) != gone("last", 4) {
		t.Errorf("ListRecords: %d records from %s to %s; want 1024, item-0000 purged", n, recs(out.Records[:1]), recs(out.Records[n-1:]))
	}
	if got := s.metric("pushsync_store_purged_total", "what", "tombstones"); got != 1 {
		t.Errorf("pushsync_store_purged_total{what=tombstones} = %v, want 1", got)
	}

	// 21 datasets deleted at sync count 2: one is purged, and a dataset
	// written afresh continues from its count.
	for i := range 21 {
		name := fmt.Sprint("gone-", i)
		d.write(name, replace("k", "v", 0))
		if err := deleteDataset(d, name); err != nil {
			t.Fatal(err)
		}
	}
	checkRecords(t, "a new dataset's first write", d.write("fresh", replace("k", "v", 0)), live("k", "v", 3))
	if got := s.metric("pushsync_store_purged_total", "what", "deleted_datasets"); got != 1 {
		t.Errorf("pushsync_store_purged_total{what=deleted_datasets} = %v, want 1", got)
	}
}

func TestListRecordsPaging(t *testing.T) {
	s := startSyncStack(t)
	poolID := s.createPool("")
	d := s.signIn(poolID)
	const ds = "paged"
	d.write(ds, replace("k3", "3", 0), replace("k1", "1", 0), replace("k0", "0", 0), replace("k2", "2", 0))
	d.write(ds, replace("k6", "6", 0), replace("k4", "4", 0), replace("k5", "5", 0))

	var all []*cognitosync.Record
	var counts []int64
	var token string
	in := d.listInput(ds, 0)
	in.MaxResults = aws.Int64(2)
	for page := 1; ; page++ {
		if page > 5 {
			t.Fatal("more than 4 pages")
		}
		out, err := d.c.ListRecords(in)
		if err != nil {
			t.Fatal(err)
		}
		token = aws.StringValue(out.SyncSessionToken)
		if token == "" || aws.Int64Value(out.DatasetSyncCount) != 2 || !aws.BoolValue(out.DatasetExists) {
			t.Errorf("page %d: %v", page, out)
		}
		all = append(all, out.Records...)
		counts = append(counts, aws.Int64Value(out.Count))
		if out.NextToken == nil {
			break
		}
		in.NextToken = out.NextToken
	}
	if fmt.Sprint(counts) != "[2 2 2 1]" {
		t.Errorf("page sizes %v, want [2 2 2 1]", counts)
	}
	checkRecords(t, "all pages", all, live("k0", "0", 1), live("k1", "1", 1), live("k2", "2", 1), live("k3", "3", 1),
		live("k4", "4", 2), live("k5", "5", 2), live("k6", "6", 2))
	// The last page's session token opens the write.
	if out, err := d.update(ds, token, replace("k0", "00", 1)); err != nil || recs(out.Records) != live("k0", "00", 3) {
		t.Errorf("UpdateRecords with the last page's token: %v %v", out, err)
	}
}

// TestListRecordsWithoutMaxResultsIsOnePage lists as the iOS SDK does:
// once, without maxResults, and then only what changed after the page's
// DatasetSyncCount. A dataset with more changes than a page holds must not
// lose its newest ones.
func TestListRecordsWithoutMaxResultsIsOnePage(t *testing.T) {
	s := startSyncStack(t)
	poolID := s.createPool("")
	d := s.signIn(poolID)
	const ds = "items"
	written := make([]*cognitosync.RecordPatch, store.MaxListResults)
	removed := make([]*cognitosync.RecordPatch, store.MaxListResults)
	for i := range removed {
		written[i] = replace(fmt.Sprintf("item-%04d", i), "x", 0)
		removed[i] = remove(fmt.Sprintf("item-%04d", i), 1)
	}
	d.write(ds, written...)
	d.write(ds, removed...)
	d.write(ds, replace("highScore", "9000", 0))

	out := d.list(ds, 0)
	if n := len(out.Records); n != store.MaxListResults+1 || aws.Int64Value(out.Count) != int64(n) || out.NextToken != nil || aws.Int64Value(out.DatasetSyncCount) != 3 {
		t.Fatalf("without maxResults: %d records, Count %d, NextToken %v, DatasetSyncCount %d; want all %d in one page, sync count 3",
			n, aws.Int64Value(out.Count), aws.StringValue(out.NextToken), aws.Int64Value(out.DatasetSyncCount), store.MaxListResults+1)
	}
	if last := out.Records[len(out.Records)-1]; recs([]*cognitosync.Record{last}) != live("highScore", "9000", 3) {
		t.Errorf("last record %s, want the newest change", recs([]*cognitosync.Record{last}))
	}
	in := d.listInput(ds, 0)
	in.MaxResults = aws.Int64(store.MaxListResults)
	paged, err := d.c.ListRecords(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(paged.Records) != store.MaxListResults || paged.NextToken == nil {
		t.Errorf("with maxResults %d: %d records, NextToken %v; want a full page and a token", store.MaxListResults, len(paged.Records), paged.NextToken)
	}
}

func TestSyncSessionTokenIsBoundToItsDataset(t *testing.T) {
	s := startSyncStack(t)
	poolID := s.createPool("")
	d := s.signIn(poolID)
	other := s.signIn(poolID)
	valid := aws.StringValue(d.list("mine", 0).SyncSessionToken)
	for _, c := range []struct{ name, token string }{
		{"another dataset's", aws.StringValue(d.list("other", 0).SyncSessionToken)},
		{"another identity's", aws.StringValue(other.list("mine", 0).SyncSessionToken)},
		{"garbage", "not-a-token"},
		{"tampered", tamper(valid)},
		{"well-formed forgery", "s1.AAAAAAAAAAAAAAAAAAAAAA.AAAA"},
	} {
		_, err := d.update("mine", c.token, replace("k", "v", 0))
		wantError(t, c.name+" token", err, "InvalidParameterException", http.StatusBadRequest, "SyncSessionToken not valid for these inputs")
	}
	if got := d.list("mine", 0); aws.BoolValue(got.DatasetExists) {
		t.Fatalf("a refused update created the dataset: %v", got)
	}
	// The right token works, and again for a second update.
	for i, want := range []string{live("k", "v", 1), live("k", "w", 2)} {
		out, err := d.update("mine", valid, replace("k", []string{"v", "w"}[i], int64(i)))
		if err != nil || recs(out.Records) != want {
			t.Errorf("update %d with a valid token: %v %v", i, out, err)
		}
	}
}

// tamper changes the last character of a token.
func tamper(token string) string {
	last := "A"
	if strings.HasSuffix(token, "A") {
		last = "B"
	}
	return token[:len(token)-1] + last
}

func TestAuthorizationConfinesIdentityCredentials(t *testing.T) {
	s := startSyncStack(t)
	poolID := s.createPool("")
	x, y := s.signIn(poolID), s.signIn(poolID)
	const ds = "secret"
	y.write(ds, replace("k", "y's", 0))
	yToken := aws.StringValue(y.list(ds, 0).SyncSessionToken)

	pool, id, name := aws.String(poolID), aws.String(y.id), aws.String(ds)
	for _, c := range []struct {
		op   string
		call func() error
	}{
		{"ListRecords", func() error {
			_, err := x.c.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: pool, IdentityId: id, DatasetName: name})
			return err
		}},
		{"ListDatasets", func() error {
			_, err := x.c.ListDatasets(&cognitosync.ListDatasetsInput{IdentityPoolId: pool, IdentityId: id})
			return err
		}},
		{"DescribeDataset", func() error {
			_, err := x.c.DescribeDataset(&cognitosync.DescribeDatasetInput{IdentityPoolId: pool, IdentityId: id, DatasetName: name})
			return err
		}},
		{"DescribeIdentityUsage", func() error {
			_, err := x.c.DescribeIdentityUsage(&cognitosync.DescribeIdentityUsageInput{IdentityPoolId: pool, IdentityId: id})
			return err
		}},
		{"UpdateRecords", func() error {
			_, err := x.c.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: pool, IdentityId: id, DatasetName: name,
				SyncSessionToken: aws.String(yToken), RecordPatches: []*cognitosync.RecordPatch{replace("k", "x's", 1)}})
			return err
		}},
		{"DeleteDataset", func() error {
			_, err := x.c.DeleteDataset(&cognitosync.DeleteDatasetInput{IdentityPoolId: pool, IdentityId: id, DatasetName: name})
			return err
		}},
		{"DescribeIdentityPoolUsage", func() error {
			_, err := x.c.DescribeIdentityPoolUsage(&cognitosync.DescribeIdentityPoolUsageInput{IdentityPoolId: pool})
			return err
		}},
		{"BulkPublish", func() error {
			_, err := x.c.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: pool})
			return err
		}},
	} {
		wantError(t, "X's credentials: "+c.op, c.call(), "NotAuthorizedException", http.StatusForbidden, "")
	}
	got := y.list(ds, 0)
	checkRecords(t, "Y's records after X's attempts", got.Records, live("k", "y's", 1))
	if aws.Int64Value(got.DatasetSyncCount) != 1 {
		t.Errorf("Y's DatasetSyncCount %d, want 1", aws.Int64Value(got.DatasetSyncCount))
	}

	// Expired credentials are refused.
	ctx := context.Background()
	short, err := s.reg.IssueCredential(ctx, poolID, y.id, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	brief := device{t: t, pool: poolID, id: y.id, c: s.syncClient(credentials.NewStaticCredentials(short.AccessKeyID, short.SecretAccessKey, short.SessionToken))}
	brief.list(ds, 0) // valid now
	time.Sleep(time.Until(short.Expiration) + 100*time.Millisecond)
	_, err = brief.c.ListRecords(brief.listInput(ds, 0))
	wantError(t, "expired credentials", err, "ExpiredTokenException", http.StatusForbidden, "")
	// A wrong session token with a valid key is refused too.
	valid, err := s.reg.IssueCredential(ctx, poolID, y.id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	forged := s.syncClient(credentials.NewStaticCredentials(valid.AccessKeyID, valid.SecretAccessKey, "forged"))
	_, err = forged.ListRecords(brief.listInput(ds, 0))
	wantError(t, "wrong session token", err, "UnrecognizedClientException", http.StatusForbidden, "")
}

// oidcProvider is an OpenID Connect provider: a JWKS endpoint and a key
// that signs its ID tokens.
type oidcProvider struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

func newOIDCProvider(t *testing.T, key *rsa.PrivateKey, tlsServer bool) *oidcProvider {
	jwks := func(w http.ResponseWriter, _ *http.Request) {
		b64 := base64.RawURLEncoding.EncodeToString
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", jwks)
	p := &oidcProvider{key: key}
	if tlsServer {
		p.srv = httptest.NewTLSServer(mux)
	} else {
		p.srv = httptest.NewServer(mux)
	}
	t.Cleanup(p.srv.Close)
	return p
}

func (p *oidcProvider) issuer() string { return p.srv.URL }

func (p *oidcProvider) name() string {
	return strings.TrimPrefix(strings.TrimPrefix(p.srv.URL, "https://"), "http://")
}

func (p *oidcProvider) token(t *testing.T, sub, aud string, exp time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": p.issuer(), "sub": sub, "aud": aud, "iat": time.Now().Unix(), "exp": exp.Unix(),
	})
	tok.Header["kid"] = "k1"
	signed, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestOpenIDConnectLogins covers authenticated identities: an https
// provider whose certificate comes from a private CA, trusted by pushsyncd
// through api.oidc_root_ca_file (every httptest TLS server has the same
// self-signed certificate, so the file can be written before the provider
// starts); the same provider served by sync/identity's Handler with a
// client trusting it; and an http provider on loopback, which the registry
// allows for tests. Credentials from each work on the daemon's Cognito Sync
// API.
func TestOpenIDConnectLogins(t *testing.T) {
	probe := httptest.NewTLSServer(http.NotFoundHandler())
	caFile := filepath.Join(t.TempDir(), "oidc-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: probe.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	probe.Close()
	s := startSyncStack(t, func(c *config.Config) { c.API.OIDCRootCAFile = caFile })
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		tls      bool
		endpoint func(p *oidcProvider) string
	}{
		{name: "https provider with a private CA, pushsyncd", tls: true, endpoint: func(*oidcProvider) string { return "http://" + s.apiAddr }},
		{name: "https provider, sync/identity handler", tls: true, endpoint: func(p *oidcProvider) string {
			h := identity.New(s.reg, identity.Options{HTTPClient: p.srv.Client()}, zerolog.Nop())
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			return srv.URL
		}},
		{name: "loopback http provider, pushsyncd", endpoint: func(*oidcProvider) string { return "http://" + s.apiAddr }},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newOIDCProvider(t, key, c.tls)
			created, err := s.reg.CreateIdentityPool(context.Background(), "eu-central-1", registry.IdentityPool{Name: "oidc",
				OpenIDProviders: []registry.OpenIDProvider{{Issuer: p.issuer(), ClientIDs: []string{"app-client"}}}})
			if err != nil {
				t.Fatal(err)
			}
			poolID := created.ID
			ci := s.identityClient(c.endpoint(p))
			logins := func(tok string) map[string]*string { return map[string]*string{p.name(): aws.String(tok)} }
			getID := func(tok string) (string, error) {
				out, err := ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(poolID), Logins: logins(tok)})
				return aws.StringValue(out.IdentityId), err
			}
			good := p.token(t, "user-1", "app-client", time.Now().Add(time.Hour))
			id1, err := getID(good)
			if err != nil {
				t.Fatalf("GetId with a login: %v", err)
			}
			id2, err := getID(p.token(t, "user-1", "app-client", time.Now().Add(2*time.Hour)))
			if err != nil || id2 != id1 || !strings.HasPrefix(id1, "eu-central-1:") {
				t.Fatalf("second GetId of the same user: %q %v, want %q", id2, err, id1)
			}
			if other, err := getID(p.token(t, "user-2", "app-client", time.Now().Add(time.Hour))); err != nil || other == id1 {
				t.Errorf("another user's GetId: %q %v", other, err)
			}
			for _, bad := range []struct{ what, token string }{
				{"wrong audience", p.token(t, "user-1", "other-client", time.Now().Add(time.Hour))},
				{"expired", p.token(t, "user-1", "app-client", time.Now().Add(-time.Minute))},
				{"not a JWT", "garbage"},
			} {
				_, err := getID(bad.token)
				wantError(t, "GetId with a token "+bad.what, err, "NotAuthorizedException", http.StatusBadRequest, "Invalid login token")
			}
			_, err = ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(poolID)})
			wantError(t, "unauthenticated GetId", err, "NotAuthorizedException", http.StatusBadRequest, "Unauthenticated access is not supported")

			_, err = ci.GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(id1)})
			wantError(t, "GetCredentialsForIdentity without Logins", err, "NotAuthorizedException", http.StatusBadRequest, "Logins don't match")
			other := p.token(t, "user-2", "app-client", time.Now().Add(time.Hour))
			_, err = ci.GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(id1), Logins: logins(other)})
			wantError(t, "GetCredentialsForIdentity with another user's login", err, "NotAuthorizedException", http.StatusBadRequest, "Logins don't match")

			out, err := ci.GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(id1), Logins: logins(good)})
			if err != nil {
				t.Fatal(err)
			}
			cr := out.Credentials
			d := device{t: t, pool: poolID, id: id1, c: s.syncClient(credentials.NewStaticCredentials(
				aws.StringValue(cr.AccessKeyId), aws.StringValue(cr.SecretKey), aws.StringValue(cr.SessionToken)))}
			checkRecords(t, "authenticated write", d.write("prefs", replace("theme", "dark", 0)), live("theme", "dark", 1))
		})
	}
}

func TestChangesBecomePushesToOtherDevices(t *testing.T) {
	s := startSyncStack(t)
	s.createPool(pool) // the stack configured push for this pool
	phone := s.signIn(pool)
	tablet := s.deviceOf(pool, phone.id)
	const ds = "notes"
	register := func(d device, platform, token string) string {
		out, err := d.c.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(d.id),
			Platform: aws.String(platform), Token: aws.String(token)})
		if err != nil {
			t.Fatalf("RegisterDevice %s: %v", platform, err)
		}
		if _, err := d.c.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(d.id),
			DatasetName: aws.String(ds), DeviceId: out.DeviceId}); err != nil {
			t.Fatalf("SubscribeToDataset: %v", err)
		}
		return aws.StringValue(out.DeviceId)
	}
	register(phone, "APNS", strings.ToUpper(tok(51)))
	writer := register(tablet, "GCM", "fcm-e2e-tablet-registration-token")

	// The tablet writes: the phone is told, the tablet is not.
	up, err := tablet.c.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(tablet.id),
		DatasetName: aws.String(ds), DeviceId: aws.String(writer), SyncSessionToken: tablet.list(ds, 0).SyncSessionToken,
		RecordPatches: []*cognitosync.RecordPatch{replace("todo", "milk", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, "tablet's write", up.Records, live("todo", "milk", 1))
	s.waitMetric(1, "pushsync_events_consumed_total", "result", "delivered")
	apnsPayload := func(syncCount int) string {
		return fmt.Sprintf(`{"aps":{"content-available":1},"data":{"source":"cognito-sync","identityPoolId":%q,"identityId":%q,"datasetName":%q,"syncCount":%d}}`,
			pool, phone.id, ds, syncCount)
	}
	prod, fcm := s.prod.Pushes(), s.fcm.Pushes()
	if len(prod) != 1 || prod[0].DeviceToken != tok(51) || string(prod[0].Payload) != apnsPayload(1) || len(fcm) != 0 || len(s.sandbox.Pushes()) != 0 {
		t.Fatalf("pushes after the tablet's write: APNs %d %+v, FCM %d (the writer), sandbox %d", len(prod), prod, len(fcm), len(s.sandbox.Pushes()))
	}

	// Deleting the dataset is a change too, pushed to both devices.
	if err := deleteDataset(phone, ds); err != nil {
		t.Fatal(err)
	}
	s.waitMetric(2, "pushsync_events_consumed_total", "result", "delivered")
	prod, fcm = s.prod.Pushes(), s.fcm.Pushes()
	if len(prod) != 2 || string(prod[1].Payload) != apnsPayload(2) {
		t.Errorf("APNs pushes after the deletion: %d, last %s", len(prod), prod[len(prod)-1].Payload)
	}
	if len(fcm) != 1 || fcm[0].Token != "fcm-e2e-tablet-registration-token" || fcm[0].Data["syncCount"] != "2" || fcm[0].Data["datasetName"] != ds ||
		fcm[0].Data["identityId"] != phone.id || fcm[0].Data["source"] != "cognito-sync" {
		t.Errorf("FCM pushes after the deletion: %+v", fcm)
	}
	if n := s.metric("pushsync_pushes_total", "result", "accepted"); n != 3 {
		t.Errorf("accepted pushes = %v, want 3", n)
	}
}

func TestBulkPublishStreamsEveryDataset(t *testing.T) {
	s := startSyncStack(t)
	start := time.Now()
	poolID := s.createPool("")
	dev := s.developer()
	id := aws.String(poolID)

	// A pool that stores nothing yet has zero usage, not ResourceNotFound.
	if pu, err := dev.DescribeIdentityPoolUsage(&cognitosync.DescribeIdentityPoolUsageInput{IdentityPoolId: id}); err != nil ||
		aws.StringValue(pu.IdentityPoolUsage.IdentityPoolId) != poolID || aws.Int64Value(pu.IdentityPoolUsage.DataStorage) != 0 {
		t.Errorf("DescribeIdentityPoolUsage of a new pool: %v %v", pu, err)
	}
	if lpu, err := dev.ListIdentityPoolUsage(&cognitosync.ListIdentityPoolUsageInput{}); err != nil || aws.Int64Value(lpu.Count) != 1 ||
		aws.StringValue(lpu.IdentityPoolUsages[0].IdentityPoolId) != poolID || aws.Int64Value(lpu.IdentityPoolUsages[0].DataStorage) != 0 {
		t.Errorf("ListIdentityPoolUsage with a new pool: %v %v", lpu, err)
	}
	details, err := dev.GetBulkPublishDetails(&cognitosync.GetBulkPublishDetailsInput{IdentityPoolId: id})
	if err != nil || aws.StringValue(details.BulkPublishStatus) != "NOT_STARTED" || details.BulkPublishStartTime != nil {
		t.Fatalf("GetBulkPublishDetails before any: %v %v", details, err)
	}
	_, err = dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: id})
	wantError(t, "BulkPublish without CognitoStreams", err, "InvalidParameterException", http.StatusBadRequest, "CognitoStreams")

	streams := &cognitosync.CognitoStreams{StreamName: aws.String("BULK_TEST"), StreamingStatus: aws.String("ENABLED"),
		RoleArn: aws.String("arn:aws:iam::123456789012:role/x")}
	conf, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: id, CognitoStreams: streams})
	if err != nil {
		t.Fatal(err)
	}
	if aws.StringValue(conf.IdentityPoolId) != poolID || conf.CognitoStreams.String() != streams.String() || conf.PushSync != nil {
		t.Errorf("SetIdentityPoolConfiguration answered %v", conf)
	}

	u1, u2 := s.signIn(poolID), s.signIn(poolID)
	u1.write("settings", replace("lang", "fr", 0), replace("tz", "CET", 0))
	u1.write("scores", replace("best", "42", 0))
	u1.write("scores", replace("best", "43", 1), replace("gone", "x", 0))
	u1.write("scores", remove("gone", 2))
	u2.write("settings", replace("lang", "de", 0))

	// A listing that carries its session's token continues that session.
	in := u1.listInput("scores", 0)
	in.SyncSessionToken = u1.list("scores", 0).SyncSessionToken
	if _, err := u1.c.ListRecords(in); err != nil {
		t.Fatal(err)
	}

	// The pool's usage: key and value bytes of every live record, and a
	// sync session for each write and for the listing that started one.
	const poolBytes = int64(len("langfr" + "tzCET" + "best43" + "langde"))
	const sessions = 5 + 1
	pu, err := dev.DescribeIdentityPoolUsage(&cognitosync.DescribeIdentityPoolUsageInput{IdentityPoolId: id})
	if err != nil || aws.StringValue(pu.IdentityPoolUsage.IdentityPoolId) != poolID || aws.Int64Value(pu.IdentityPoolUsage.DataStorage) != poolBytes ||
		aws.Int64Value(pu.IdentityPoolUsage.SyncSessionsCount) != sessions {
		t.Errorf("DescribeIdentityPoolUsage: %v %v, want DataStorage %d, SyncSessionsCount %d", pu, err, poolBytes, sessions)
	}
	lpu, err := dev.ListIdentityPoolUsage(&cognitosync.ListIdentityPoolUsageInput{})
	if err != nil || aws.Int64Value(lpu.Count) != 1 || aws.Int64Value(lpu.IdentityPoolUsages[0].DataStorage) != poolBytes ||
		aws.Int64Value(lpu.IdentityPoolUsages[0].SyncSessionsCount) != sessions {
		t.Errorf("ListIdentityPoolUsage: %v %v", lpu, err)
	}
	// The model sets no limit on maxResults: a large one is served with
	// pages of at most 60, which the answer's MaxResults reports.
	lpu, err = dev.ListIdentityPoolUsage(&cognitosync.ListIdentityPoolUsageInput{MaxResults: aws.Int64(1000)})
	if err != nil || aws.Int64Value(lpu.Count) != 1 || aws.Int64Value(lpu.MaxResults) != 60 {
		t.Errorf("ListIdentityPoolUsage with maxResults 1000: %v %v", lpu, err)
	}
	// What a deleted pool stored is not listed, as it is not described.
	deleted := s.createPool("")
	s.signIn(deleted).write("settings", replace("lang", "it", 0))
	if err := s.reg.DeleteIdentityPool(context.Background(), deleted); err != nil {
		t.Fatal(err)
	}
	lpu, err = dev.ListIdentityPoolUsage(&cognitosync.ListIdentityPoolUsageInput{})
	if err != nil || aws.Int64Value(lpu.Count) != 1 || aws.StringValue(lpu.IdentityPoolUsages[0].IdentityPoolId) != poolID {
		t.Errorf("ListIdentityPoolUsage after a pool that stored data was deleted: %v %v, want only %s", lpu, err, poolID)
	}

	if _, err := dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: id}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		details, err = dev.GetBulkPublishDetails(&cognitosync.GetBulkPublishDetailsInput{IdentityPoolId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st := aws.StringValue(details.BulkPublishStatus); st != "IN_PROGRESS" {
			if st != "SUCCEEDED" || details.FailureMessage != nil {
				t.Fatalf("bulk publish ended %s: %s", st, aws.StringValue(details.FailureMessage))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bulk publish still in progress after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkTime(t, "BulkPublishStartTime", details.BulkPublishStartTime, start)
	checkTime(t, "BulkPublishCompleteTime", details.BulkPublishCompleteTime, aws.TimeValue(details.BulkPublishStartTime))

	// One message per dataset, with its records, tombstones included.
	ctx := context.Background()
	stream, err := s.js.Stream(ctx, "BULK_TEST")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	var got []string
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var snap bulk.Snapshot
		if err := json.Unmarshal(m.Data, &snap); err != nil {
			t.Fatal(err)
		}
		wantSubject := "pushsync.streams.BULK_TEST." + enc([]byte(poolID)) + "." + enc([]byte(snap.IdentityID)) + "." + enc([]byte(snap.DatasetName))
		if m.Subject != wantSubject || snap.IdentityPoolID != poolID {
			t.Errorf("message %d on %s for pool %s, want %s", seq, m.Subject, snap.IdentityPoolID, wantSubject)
		}
		who := map[string]string{u1.id: "u1", u2.id: "u2"}[snap.IdentityID]
		var rs []string
		for _, r := range snap.Records {
			rs = append(rs, rec{r.Key, r.Value, r.SyncCount}.String())
		}
		got = append(got, fmt.Sprintf("%s/%s@%d: %s", who, snap.DatasetName, snap.SyncCount, strings.Join(rs, " ")))
	}
	sort.Strings(got)
	want := []string{
		"u1/scores@3: " + live("best", "43", 2) + " " + gone("gone", 3),
		"u1/settings@1: " + live("lang", "fr", 1) + " " + live("tz", "CET", 1),
		"u2/settings@1: " + live("lang", "de", 1),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("BULK_TEST holds %d messages:\n%s\nwant:\n%s", info.State.Msgs, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	_, err = dev.BulkPublish(&cognitosync.BulkPublishInput{IdentityPoolId: id})
	wantError(t, "second BulkPublish", err, "AlreadyStreamedException", http.StatusBadRequest, "")
	var already *cognitosync.AlreadyStreamedException
	if !errors.As(err, &already) {
		t.Errorf("second BulkPublish: %T, want *cognitosync.AlreadyStreamedException", err)
	}

	// No sync triggers: none to read, and only removing one can be set.
	events, err := dev.GetCognitoEvents(&cognitosync.GetCognitoEventsInput{IdentityPoolId: id})
	if err != nil || events.Events == nil || len(events.Events) != 0 {
		t.Errorf("GetCognitoEvents: %v, %v; want an empty Events map", events, err)
	}
	if _, err := dev.SetCognitoEvents(&cognitosync.SetCognitoEventsInput{IdentityPoolId: id,
		Events: map[string]*string{"SyncTrigger": aws.String("")}}); err != nil {
		t.Errorf("SetCognitoEvents removing the sync trigger: %v", err)
	}
	_, err = dev.SetCognitoEvents(&cognitosync.SetCognitoEventsInput{IdentityPoolId: id,
		Events: map[string]*string{"SyncTrigger": aws.String("arn:aws:lambda:us-east-1:123456789012:function:f")}})
	wantError(t, "SetCognitoEvents", err, "InvalidParameterException", http.StatusBadRequest, "sync triggers")
	_, err = dev.SetCognitoEvents(&cognitosync.SetCognitoEventsInput{IdentityPoolId: id,
		Events: map[string]*string{"OnSync": aws.String("")}})
	wantError(t, "SetCognitoEvents of an unknown event", err, "InvalidParameterException", http.StatusBadRequest, "OnSync")
	_, err = dev.GetCognitoEvents(&cognitosync.GetCognitoEventsInput{IdentityPoolId: aws.String("us-east-1:00000000-0000-0000-0000-000000000000")})
	wantError(t, "GetCognitoEvents of a pool that does not exist", err, "ResourceNotFoundException", http.StatusNotFound, "")
}

// pushsyncd takes an identity pool as it read it for
// api.identity_pool_cache_ttl: a pool deleted through another process (here
// the test's registry) is still served within that time, and with 0s it is
// refused at once.
func TestIdentityPoolCacheTTL(t *testing.T) {
	for _, c := range []struct {
		ttl    time.Duration
		served bool
	}{{time.Minute, true}, {0, false}} {
		t.Run(c.ttl.String(), func(t *testing.T) {
			s := startSyncStack(t, func(cfg *config.Config) { cfg.API.IdentityPoolCacheTTL = config.Duration(c.ttl) })
			id := aws.String(s.createPool(""))
			dev := s.developer()
			if _, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: id}); err != nil {
				t.Fatal(err)
			}
			if err := s.reg.DeleteIdentityPool(context.Background(), *id); err != nil {
				t.Fatal(err)
			}
			_, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: id})
			if c.served {
				if err != nil {
					t.Errorf("within %s of the deletion elsewhere: %v", c.ttl, err)
				}
				return
			}
			wantError(t, "right after the deletion elsewhere", err, "ResourceNotFoundException", http.StatusNotFound, *id)
		})
	}
}
