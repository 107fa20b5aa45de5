package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
)

// jsSDKDir is the Node project of TestJavaScriptSDK: app.mjs and the AWS
// SDK for JavaScript v3 packages, pinned by its package-lock.json.
const jsSDKDir = "testdata/jssdk"

// minNodeMajor is the oldest Node.js the test runs the SDK on.
const minNodeMajor = 18

// nodeTools returns the paths of node and npm, or reports them missing.
func nodeTools(t *testing.T) (node, npm string) {
	t.Helper()
	how := fmt.Sprintf("the JavaScript SDK test needs Node.js %d or later and npm (Debian: apt-get install nodejs npm)", minNodeMajor)
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "node is not in PATH; "+how)
	}
	npm, err = exec.LookPath("npm")
	if err != nil {
		testenv.Missing(t, "npm is not in PATH; "+how)
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", node, err)
	}
	v := strings.TrimSpace(string(out))
	major, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(v, "v"), ".", 2)[0])
	if err != nil {
		t.Fatalf("%s --version printed %q", node, v)
	}
	if major < minNodeMajor {
		testenv.Missing(t, fmt.Sprintf("node %s is too old: %s", v, how))
	}
	return node, npm
}

// installJSSDK runs npm ci in dir unless its node_modules was installed
// from the same package-lock.json, which a stamp in node_modules records.
func installJSSDK(t *testing.T, npm, dir string) {
	t.Helper()
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join(dir, "node_modules", ".pushsync-lock-sha256")
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s (the npm registry must be reachable): %v\n%s", dir, err, out)
	}
	t.Logf("npm ci in %s took %v", dir, time.Since(start).Round(time.Millisecond))
	if err := os.WriteFile(stamp, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runJSApp runs app.mjs with env added to an environment without AWS_
// variables (which would change what the SDK does) and decodes its output.
func runJSApp(t *testing.T, node, dir string, env map[string]string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "app.mjs")
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		t.Fatalf("node app.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.Bytes(), stderr.Bytes())
	}
	t.Logf("app.mjs: %s", stdout.Bytes())
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("app.mjs output: %v\n%s", err, stdout.Bytes())
	}
}

// The output of app.mjs: what the SDK made of each answer.
type (
	jsRecord struct {
		Key                    string
		Value                  *string
		SyncCount              int64
		LastModifiedBy         *string
		LastModifiedDate       json.RawMessage
		DeviceLastModifiedDate json.RawMessage
	}
	jsListing struct {
		Status                                int
		RequestID                             string
		Records                               []jsRecord
		Count                                 int64
		NextToken                             *string
		DatasetSyncCount                      int64
		DatasetExists                         bool
		DatasetDeletedAfterRequestedSyncCount bool
		LastModifiedBy                        *string
		HasSyncSessionToken                   bool
	}
	jsUpdate struct {
		Records []jsRecord
	}
	jsDataset struct {
		IdentityID       string `json:"IdentityId"`
		DatasetName      string
		CreationDate     json.RawMessage
		LastModifiedDate json.RawMessage
		LastModifiedBy   *string
		DataStorage      int64
		NumRecords       int64
	}
	jsError struct {
		Name              string
		Message           string
		Status            int
		RequestID         string
		Fault             string
		ServiceException  bool
		ResourceConflict  bool
		UnexpectedSuccess json.RawMessage
	}
	jsOutput struct {
		Failed string
		Error  jsError
		Stack  string

		GetID struct {
			IdentityID string `json:"IdentityId"`
			Status     int
			RequestID  string
		}
		GetCredentialsForIdentity struct {
			IdentityID      string `json:"IdentityId"`
			AccessKeyID     string `json:"AccessKeyId"`
			HasSecretKey    bool
			HasSessionToken bool
			Expiration      json.RawMessage
		}
		ListNew, TabletList, ListSinceFirst, ListDeleted jsListing
		UpdateFirst, UpdateSecond                        jsUpdate
		Conflict                                         jsError
		Paging                                           []jsListing
		ListDatasets                                     struct {
			Count     int64
			NextToken *string
			Datasets  []jsDataset
		}
		Describe, Delete              jsDataset
		RegisterPhone, RegisterTablet struct {
			DeviceID string `json:"DeviceId"`
		}
		Subscribe                         []int
		UpdateNotes, UpdateNotesFromPhone jsUpdate
		DescribeDeleted                   jsError
		Unsubscribe                       struct {
			Status int
			Again  jsError
		}
		ClockSkew      struct{ Status, Attempts int }
		ClientContext  jsUpdate
		BadDatasetName jsError
		OtherIdentity  struct {
			IdentityID string `json:"IdentityId"`
			Error      jsError
		}
	}
)

func jsRecs(rs []jsRecord) string {
	var out []string
	for _, r := range rs {
		out = append(out, rec{r.Key, r.Value, r.SyncCount}.String())
	}
	return strings.Join(out, " ")
}

// jsTime checks a timestamp as app.mjs prints it: a Date's milliseconds
// since the epoch, between from and now.
func jsTime(t *testing.T, what string, raw json.RawMessage, from time.Time) time.Time {
	t.Helper()
	var ms int64
	if err := json.Unmarshal(raw, &ms); err != nil {
		t.Errorf("%s: %s, want a Date", what, raw)
		return time.Time{}
	}
	got := time.UnixMilli(ms)
	if got.Before(from.Truncate(time.Millisecond)) || got.After(time.Now()) {
		t.Errorf("%s = %v, want between %v and now", what, got.UTC(), from.UTC())
	}
	return got
}

// checkJSError checks an error as the SDK classified it: its name (the
// error code), HTTP status, a message holding msg, and the request id.
func checkJSError(t *testing.T, what string, e jsError, name string, status int, msg string) {
	t.Helper()
	if e.UnexpectedSuccess != nil {
		t.Errorf("%s succeeded: %s", what, e.UnexpectedSuccess)
		return
	}
	if e.Name != name || e.Status != status || !strings.Contains(e.Message, msg) || e.RequestID == "" || e.Fault != "client" || !e.ServiceException {
		t.Errorf("%s: got %+v, want a CognitoSyncServiceException %s (%d) with %q and a request id", what, e, name, status, msg)
	}
}

// TestJavaScriptSDK runs an app written with the AWS SDK for JavaScript v3
// (testdata/jssdk/app.mjs, under Node.js) against pushsyncd: Cognito
// Identity's GetId and GetCredentialsForIdentity and its credential
// providers, then Cognito Sync's dataset, device and subscription calls and
// the errors the SDK has to recognize. What the SDK made of each answer
// comes back as JSON; the pushes its changes caused are read at the
// emulators.
func TestJavaScriptSDK(t *testing.T) {
	node, npm := nodeTools(t)
	dir, err := filepath.Abs(jsSDKDir)
	if err != nil {
		t.Fatal(err)
	}
	installJSSDK(t, npm, dir)

	s := startSyncStack(t)
	s.createPool(pool) // the stack configured push for this pool
	apnsToken, gcmToken := strings.ToUpper(tok(52)), "fcm-jssdk-tablet-registration-token"
	start := time.Now()
	var out jsOutput
	runJSApp(t, node, dir, map[string]string{
		"PUSHSYNC_ENDPOINT": "http://" + s.apiAddr,
		"POOL_ID":           pool,
		"APNS_TOKEN":        apnsToken,
		"GCM_TOKEN":         gcmToken,
	}, &out)
	if out.Failed != "" {
		t.Fatalf("app.mjs failed at %s: %+v\n%s", out.Failed, out.Error, out.Stack)
	}

	// Cognito Identity.
	id := out.GetID.IdentityID
	if !strings.HasPrefix(id, "us-east-1:") || out.GetID.Status != 200 || out.GetID.RequestID == "" {
		t.Fatalf("GetId: %+v", out.GetID)
	}
	cr := out.GetCredentialsForIdentity
	if cr.IdentityID != id || !strings.HasPrefix(cr.AccessKeyID, "ASIA") || !cr.HasSecretKey || !cr.HasSessionToken {
		t.Errorf("GetCredentialsForIdentity: %+v", cr)
	}
	var expMS int64
	if err := json.Unmarshal(cr.Expiration, &expMS); err != nil {
		t.Errorf("Credentials.Expiration: %s, want a Date", cr.Expiration)
	} else if exp := time.UnixMilli(expMS); exp.Before(start.Add(59*time.Minute)) || exp.After(time.Now().Add(time.Hour)) {
		t.Errorf("credentials expire at %v, want in about 1h", exp)
	}

	// Datasets and records.
	l := out.ListNew
	if l.Status != 200 || l.RequestID == "" || !l.HasSyncSessionToken || l.DatasetExists || l.DatasetDeletedAfterRequestedSyncCount ||
		l.DatasetSyncCount != 0 || l.Count != 0 || len(l.Records) != 0 || l.NextToken != nil || l.LastModifiedBy != nil {
		t.Errorf("ListRecords of a new dataset: %+v", l)
	}
	if g, w := jsRecs(out.UpdateFirst.Records), live("highScore", "100", 1)+" "+live("name", "héllo", 1)+" "+live("level", "3", 1); g != w {
		t.Errorf("first UpdateRecords:\n got %s\nwant %s", g, w)
	}
	for _, r := range out.UpdateFirst.Records {
		if r.LastModifiedBy == nil || *r.LastModifiedBy != id {
			t.Errorf("record %s LastModifiedBy %v, want the identity", r.Key, r.LastModifiedBy)
		}
		jsTime(t, r.Key+" LastModifiedDate", r.LastModifiedDate, start)
		if r.Key != "name" {
			jsTime(t, r.Key+" DeviceLastModifiedDate", r.DeviceLastModifiedDate, start)
		} else if string(r.DeviceLastModifiedDate) != "1700000000123" {
			t.Errorf("DeviceLastModifiedDate sent as a Date came back as %s, want 1700000000123", r.DeviceLastModifiedDate)
		}
	}
	l = out.TabletList
	if g, w := jsRecs(l.Records), live("highScore", "100", 1)+" "+live("level", "3", 1)+" "+live("name", "héllo", 1); g != w ||
		!l.DatasetExists || l.DatasetSyncCount != 1 || l.Count != 3 || l.LastModifiedBy == nil || *l.LastModifiedBy != id || !l.HasSyncSessionToken {
		t.Errorf("the tablet's ListRecords: %+v\n got %s\nwant %s", l, g, w)
	}
	if g, w := jsRecs(out.UpdateSecond.Records), live("highScore", "200", 2)+" "+gone("name", 2); g != w {
		t.Errorf("the tablet's UpdateRecords (replace and remove):\n got %s\nwant %s", g, w)
	}
	checkJSError(t, "UpdateRecords with a stale SyncCount", out.Conflict, "ResourceConflictException", 409, "Current SyncCount for: highScore is: 2 not: 1")
	if !out.Conflict.ResourceConflict {
		t.Errorf("the stale write's error is not an instance of ResourceConflictException: %+v", out.Conflict)
	}
	l = out.ListSinceFirst
	if g, w := jsRecs(l.Records), live("highScore", "200", 2)+" "+gone("name", 2); g != w || l.DatasetSyncCount != 2 || l.Count != 2 {
		t.Errorf("ListRecords from 1: %+v\n got %s\nwant %s", l, g, w)
	}

	var pages []string
	for i, p := range out.Paging {
		last := i == len(out.Paging)-1
		if (p.NextToken == nil) != last || p.DatasetSyncCount != 1 || !p.DatasetExists || !p.HasSyncSessionToken || p.Count != int64(len(p.Records)) {
			t.Errorf("page %d: %+v", i+1, p)
		}
		pages = append(pages, jsRecs(p.Records))
	}
	if g, w := strings.Join(pages, " | "), live("a", "A", 1)+" "+live("b", "B", 1)+" | "+live("c", "C", 1)+" "+live("d", "D", 1)+" | "+live("e", "E", 1); g != w {
		t.Errorf("5 records 2 at a time:\n got %s\nwant %s", g, w)
	}

	ld := out.ListDatasets
	var names []string
	for _, d := range ld.Datasets {
		names = append(names, fmt.Sprintf("%s:%d/%d", d.DatasetName, d.NumRecords, d.DataStorage))
		if d.IdentityID != id {
			t.Errorf("ListDatasets: dataset %s of %s", d.DatasetName, d.IdentityID)
		}
	}
	// game.state holds highScore=200 and level=3; paged a=A … e=E.
	if g, w := strings.Join(names, " "), "game.state:2/18 paged:5/10"; g != w || ld.Count != 2 || ld.NextToken != nil {
		t.Errorf("ListDatasets: %s (Count %d, NextToken %v), want %s", g, ld.Count, ld.NextToken, w)
	}
	d := out.Describe
	if d.DatasetName != "game.state" || d.IdentityID != id || d.NumRecords != 2 || d.DataStorage != 18 || d.LastModifiedBy == nil || *d.LastModifiedBy != id {
		t.Errorf("DescribeDataset: %+v", d)
	}
	created := jsTime(t, "CreationDate", d.CreationDate, start)
	if modified := jsTime(t, "LastModifiedDate", d.LastModifiedDate, start); modified.Before(created) {
		t.Errorf("LastModifiedDate %v before CreationDate %v", modified, created)
	}

	// Deleting.
	if g := out.Delete; g.DatasetName != "game.state" || g.NumRecords != 2 || g.DataStorage != 18 {
		t.Errorf("DeleteDataset answered %+v", g)
	}
	checkJSError(t, "DescribeDataset of the deleted dataset", out.DescribeDeleted, "ResourceNotFoundException", 404, "game.state")
	if l := out.ListDeleted; l.DatasetExists || !l.DatasetDeletedAfterRequestedSyncCount || len(l.Records) != 0 {
		t.Errorf("ListRecords from 2 of the deleted dataset: %+v", l)
	}

	// The SDK's own mechanisms: clock correction and the signed
	// x-amz-client-context header.
	if c := out.ClockSkew; c.Status != 200 || c.Attempts != 2 {
		t.Errorf("a client 30 minutes behind: %+v, want 200 on the second attempt", c)
	}
	if g, w := jsRecs(out.ClientContext.Records), live("theme", "dark", 1); g != w {
		t.Errorf("UpdateRecords with a ClientContext: got %s, want %s", g, w)
	}

	// Errors.
	checkJSError(t, "ListRecords of a bad dataset name", out.BadDatasetName, "InvalidParameterException", 400, `DatasetName: "bad name!"`)
	if o := out.OtherIdentity; o.IdentityID == "" || o.IdentityID == id || !strings.HasPrefix(o.IdentityID, "us-east-1:") {
		t.Errorf("fromCognitoIdentityPool's identity: %q, want a new one", o.IdentityID)
	}
	checkJSError(t, "another identity's ListRecords", out.OtherIdentity.Error, "NotAuthorizedException", 403, "may act only for that identity")

	// Push sync: the tablet's change went to the phone, the phone's to the
	// tablet, each with the five keys of Cognito's push sync.
	if out.RegisterPhone.DeviceID == "" || out.RegisterTablet.DeviceID == "" || out.RegisterPhone.DeviceID == out.RegisterTablet.DeviceID ||
		fmt.Sprint(out.Subscribe) != "[200 200]" {
		t.Fatalf("RegisterDevice %+v %+v, SubscribeToDataset %v", out.RegisterPhone, out.RegisterTablet, out.Subscribe)
	}
	if g, w := jsRecs(out.UpdateNotes.Records), live("todo", "milk", 1); g != w {
		t.Errorf("the tablet's notes: got %s, want %s", g, w)
	}
	if g, w := jsRecs(out.UpdateNotesFromPhone.Records), live("todo", "milk, eggs", 2); g != w {
		t.Errorf("the phone's notes: got %s, want %s", g, w)
	}
	if u := out.Unsubscribe; u.Status != 200 {
		t.Errorf("UnsubscribeFromDataset: %+v", u)
	}
	checkJSError(t, "UnsubscribeFromDataset again", out.Unsubscribe.Again, "ResourceNotFoundException", 404, "")
	// Seven changes: the two to notes pushed, and five to datasets without
	// subscribers (three to game.state, its deletion included, paged and
	// prefs).
	s.waitMetric(2, "pushsync_events_consumed_total", "result", "delivered")
	s.waitMetric(5, "pushsync_events_consumed_total", "result", "no_subscribers")
	prod, fcm := s.prod.Pushes(), s.fcm.Pushes()
	wantAPNs := fmt.Sprintf(`{"aps":{"content-available":1},"data":{"source":"cognito-sync","identityPoolId":%q,"identityId":%q,"datasetName":"notes","syncCount":1}}`, pool, id)
	if len(prod) != 1 || prod[0].DeviceToken != tok(52) || string(prod[0].Payload) != wantAPNs {
		t.Errorf("APNs pushes: %d %+v, want one to the phone: %s", len(prod), prod, wantAPNs)
	}
	wantFCM := map[string]string{"source": "cognito-sync", "identityPoolId": pool, "identityId": id, "datasetName": "notes", "syncCount": "2"}
	if len(fcm) != 1 || fcm[0].Token != gcmToken || fmt.Sprint(fcm[0].Data) != fmt.Sprint(wantFCM) {
		t.Errorf("FCM pushes: %d %+v, want one to the tablet with %v", len(fcm), fcm, wantFCM)
	}
	if n := len(s.sandbox.Pushes()); n != 0 {
		t.Errorf("%d APNs sandbox pushes, want none", n)
	}
}
