//go:build faults

//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws/credentials"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/event"
)

// 6a. 10,000 malformed events published raw to the event stream.
func TestMalformedEvents(t *testing.T) {
	const n = 10000
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL})
	r.seedIdentities(2)
	w := r.startDaemon("worker", daemonConfig{})

	rng := rand.New(rand.NewPCG(6, 10000))
	good := func() *event.DatasetChanged {
		return &event.DatasetChanged{Version: 1, IdentityPoolID: r.pool, IdentityID: r.ids[0].id, DatasetName: "settings",
			SyncCount: int64(1 + rng.IntN(1000)), ChangedAt: time.Now().UTC()}
	}
	randomSubject := func() string {
		return fmt.Sprintf("%s.%x.%x.%x", subjectPrefix, rng.Uint32(), rng.Uint32(), rng.Uint32())
	}
	jsonOf := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Each kind of message with the reason the worker must give.
	kinds := []struct {
		reason string
		make   func() (subject string, data []byte)
	}{
		{event.ReasonInvalidJSON, func() (string, []byte) {
			b := jsonOf(good())
			switch rng.IntN(4) {
			case 0:
				return randomSubject(), b[:rng.IntN(len(b)-1)] // truncated, possibly empty
			case 1:
				return randomSubject(), append(b, " trailing"...)
			case 2:
				junk := make([]byte, 1+rng.IntN(200))
				for i := range junk {
					junk[i] = byte(rng.IntN(256))
				}
				return randomSubject(), append([]byte("{\x00"), junk...)
			default:
				return randomSubject(), []byte(`{"version":"1","syncCount":[]}`)
			}
		}},
		{event.ReasonTooLarge, func() (string, []byte) {
			return randomSubject(), bytes.Repeat([]byte("x"), event.MaxSize+1+rng.IntN(4096))
		}},
		{event.ReasonUnsupportedVersion, func() (string, []byte) {
			e := good()
			e.Version = []int{0, 2, -1, 99}[rng.IntN(4)]
			return event.Subject(subjectPrefix, e), jsonOf(e)
		}},
		{event.ReasonInvalidField, func() (string, []byte) {
			e := good()
			switch rng.IntN(5) {
			case 0:
				e.IdentityPoolID = "not a pool"
			case 1:
				e.IdentityID = "us-east-1:XYZ"
			case 2:
				e.DatasetName = "bad/dataset"
			case 3:
				e.SyncCount = -int64(rng.IntN(5))
			default:
				e.OriginDeviceID = "dev\x01ice"
			}
			return randomSubject(), jsonOf(e)
		}},
		{event.ReasonSubjectMismatch, func() (string, []byte) {
			e := good()
			other := *e
			other.IdentityID = r.ids[1].id
			return event.Subject(subjectPrefix, &other), jsonOf(e)
		}},
	}
	want := map[string]float64{}
	var pubErrs atomic.Int64
	for i := range n {
		k := kinds[i%len(kinds)]
		subject, data := k.make()
		want[k.reason]++
		// No Nats-Msg-Id: every message is stored, even identical ones.
		// The publisher waits as long as the broker takes to acknowledge
		// what is outstanding: a loaded machine is not a broken broker.
		f, err := r.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data}, jetstream.WithStallWait(30*time.Second))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		go func() {
			select {
			case <-f.Ok():
			case <-f.Err():
				pubErrs.Add(1)
			}
		}()
	}
	select {
	case <-r.js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("raw publishes not acknowledged")
	}
	if pubErrs.Load() != 0 {
		t.Fatalf("%d raw publishes failed", pubErrs.Load())
	}
	// Then one valid event: the worker still delivers.
	evs := r.nextEvents(1)
	r.publish(evs)

	deadline := time.Now().Add(60 * time.Second)
	for w.alive() && w.metric("pushsync_events_malformed_total") < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	v, took := r.settle(30 * time.Second)
	got := map[string]float64{}
	var reasons []string
	for reason := range want {
		got[reason] = w.metric("pushsync_events_malformed_total", "reason", reason)
		reasons = append(reasons, fmt.Sprintf("%s %.0f/%.0f", reason, got[reason], want[reason]))
	}
	sort.Strings(reasons)
	total := w.metric("pushsync_events_malformed_total")
	alive, ready := w.alive(), w.ready()
	report.add(t, row{"6a. 10,000 malformed events + 1 valid", n + len(evs), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("pushsync_events_malformed_total %.0f (%s); worker alive %v, ready %v; valid event delivered in %s; %s",
			total, strings.Join(reasons, ", "), alive, ready, took.Round(100*time.Millisecond), v.summary())})
	if !alive || !ready {
		t.Errorf("worker alive %v ready %v after the malformed events", alive, ready)
	}
	if total != n {
		t.Errorf("pushsync_events_malformed_total = %.0f, want %d", total, n)
	}
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("malformed events with reason %s: %.0f, want %.0f", reason, got[reason], n)
		}
	}
	assertLedger(t, v)
	assertNoDuplicates(t, v, w)
}

// 6b. 10,000 malformed requests to the API process.
func TestMalformedAPIRequests(t *testing.T) {
	const n = 10000
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL})
	r.seedIdentities(2)
	api := r.startDaemon("api", daemonConfig{role: "api"})
	base := "http://" + api.api

	ctx := context.Background()
	alice, bob := r.ids[0], r.ids[1]
	aliceCred, err := r.reg.IssueCredential(ctx, r.pool, alice.id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	aliceCreds := credentials.NewStaticCredentials(aliceCred.AccessKeyID, aliceCred.SecretAccessKey, aliceCred.SessionToken)
	devCreds := credentials.NewStaticCredentials(devAccessKey, devSecretKey, "")
	esc := func(s string) string { return url.PathEscape(s) }
	devicePath := func(id string) string {
		return "/identitypools/" + esc(r.pool) + "/identity/" + esc(id) + "/device"
	}
	datasetPath := "/identitypools/" + esc(r.pool) + "/identities/" + esc(alice.id) + "/datasets/settings"
	goodBody := `{"Platform":"GCM","Token":"fcm-hostile-registration-token"}`

	type request struct {
		method, path string
		body         []byte
		header       map[string]string
		creds        *credentials.Credentials // nil: unsigned
		service      string                   // default cognito-sync
		signedAt     time.Time                // default now
		tamper       func(*http.Request)
	}
	randBytes := func(rng *rand.Rand, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	// printable is random visible ASCII with spaces, which a client can
	// send in a header.
	printable := func(rng *rand.Rand, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(' ' + rng.IntN(95))
		}
		return string(b)
	}
	kinds := []struct {
		name string
		make func(rng *rand.Rand) request
	}{
		{"unsigned", func(*rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(goodBody)}
		}},
		{"wrong secret", func(*rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(goodBody),
				creds: credentials.NewStaticCredentials(devAccessKey, "not-the-secret", "")}
		}},
		{"unknown access key", func(rng *rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(goodBody),
				creds: credentials.NewStaticCredentials(fmt.Sprintf("AKIAUNKNOWN%09d", rng.IntN(1e9)), "x", "")}
		}},
		{"signature expired", func(rng *rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(goodBody), creds: aliceCreds,
				signedAt: time.Now().Add(-time.Duration(6+rng.IntN(600)) * time.Minute)}
		}},
		{"body changed after signing", func(rng *rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(goodBody), creds: aliceCreds,
				tamper: func(req *http.Request) {
					b := []byte(goodBody)
					b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
					req.Body, req.GetBody = io.NopCloser(bytes.NewReader(b)), nil
				}}
		}},
		{"garbage Authorization", func(rng *rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(goodBody),
				header: map[string]string{"Authorization": "AWS4-HMAC-SHA256 " + printable(rng, 1+rng.IntN(100)),
					"X-Amz-Date": time.Now().UTC().Format("20060102T150405Z")}}
		}},
		{"truncated JSON", func(rng *rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(goodBody[:1+rng.IntN(len(goodBody)-2)]), creds: aliceCreds}
		}},
		{"binary body", func(rng *rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: append([]byte{'{', 0xff}, randBytes(rng, rng.IntN(300))...), creds: aliceCreds}
		}},
		{"wrong JSON type", func(*rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(`{"Platform":5,"Token":["x"]}`), creds: aliceCreds}
		}},
		{"unknown platform", func(*rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), body: []byte(`{"Platform":"WNS","Token":"x"}`), creds: aliceCreds}
		}},
		{"oversized body", func(rng *rand.Rand) request {
			return request{method: "POST", path: devicePath(alice.id), creds: aliceCreds,
				body: []byte(`{"Platform":"GCM","Token":"` + strings.Repeat("a", 17000+rng.IntN(4000)) + `"}`)}
		}},
		{"another identity", func(*rand.Rand) request {
			return request{method: "POST", path: devicePath(bob.id), body: []byte(goodBody), creds: aliceCreds}
		}},
		{"bad pool label", func(rng *rand.Rand) request {
			labels := []string{"..%2F..%2Fadmin%2Fv1", "%2E%2E", "no-colon", "us-east-1:ZZZ", "%00%01", strings.Repeat("a", 300)}
			return request{method: "POST", path: "/identitypools/" + labels[rng.IntN(len(labels))] + "/identity/" + esc(alice.id) + "/device",
				body: []byte(goodBody), creds: devCreds}
		}},
		{"bad dataset label", func(rng *rand.Rand) request {
			return request{method: "POST", path: "/identitypools/" + esc(r.pool) + "/identities/" + esc(alice.id) + "/datasets/" +
				[]string{"..%2Fx", "a%20b", strings.Repeat("d", 200)}[rng.IntN(3)] + "/subscriptions/" + alice.origin.ID, creds: devCreds}
		}},
		{"unknown path", func(rng *rand.Rand) request {
			return request{method: []string{"GET", "POST", "PUT", "DELETE", "PATCH"}[rng.IntN(5)],
				path: "/" + url.PathEscape(string(randBytes(rng, 1+rng.IntN(40)))), creds: devCreds}
		}},
		{"unknown operation", func(*rand.Rand) request {
			return request{method: "PUT", path: "/identitypools/" + esc(r.pool) + "/configuration", creds: devCreds}
		}},
		{"identity on the admin API", func(*rand.Rand) request {
			return request{method: "POST", path: "/admin/v1/apps", body: []byte(`{}`), creds: aliceCreds, service: "pushsync"}
		}},
		{"admin API bad app", func(rng *rand.Rand) request {
			bodies := []string{`{"name":"../x","kind":"apns"}`, `{"name":"a","kind":"smtp"}`, `{"name":"a","kind":"fcm","fcm":{"projectId":"p","serviceAccount":"{}"}}`, `[]`}
			return request{method: "POST", path: "/admin/v1/apps", body: []byte(bodies[rng.IntN(len(bodies))]), creds: devCreds, service: "pushsync"}
		}},
		{"bad sync session token", func(rng *rand.Rand) request {
			return request{method: "POST", path: datasetPath, creds: aliceCreds,
				body: fmt.Appendf(nil, `{"SyncSessionToken":%q,"RecordPatches":[{"Op":"replace","Key":"k","Value":"v","SyncCount":0}]}`, randBytes(rng, 20))}
		}},
		{"bad identity request", func(rng *rand.Rand) request {
			return request{method: "POST", path: "/", body: randBytes(rng, rng.IntN(200)),
				header: map[string]string{"X-Amz-Target": []string{"AWSCognitoIdentityService.GetId", "AWSCognitoIdentityService.GetCredentialsForIdentity", "AWSCognitoIdentityService.Nope"}[rng.IntN(3)],
					"Content-Type": "application/x-amz-json-1.1"}}
		}},
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	type outcome struct {
		status  int
		errType string
	}
	var (
		mu      sync.Mutex
		byKind  = make(map[string]map[outcome]int)
		bad     = make(map[string][]string)
		badN    int
		next    atomic.Int64
		wg      sync.WaitGroup
		started = time.Now()
	)
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 66))
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				k := kinds[i%len(kinds)]
				rq := k.make(rng)
				req, err := http.NewRequest(rq.method, base+rq.path, bytes.NewReader(rq.body))
				if err != nil {
					t.Errorf("%s: %v", k.name, err)
					return
				}
				for h, v := range rq.header {
					req.Header.Set(h, v)
				}
				if rq.creds != nil {
					service := rq.service
					if service == "" {
						service = "cognito-sync"
					}
					at := rq.signedAt
					if at.IsZero() {
						at = time.Now()
					}
					if len(rq.body) > 0 {
						req.Header.Set("Content-Type", "application/json")
					}
					if _, err := v4.NewSigner(rq.creds).Sign(req, bytes.NewReader(rq.body), service, "us-east-1", at); err != nil {
						t.Errorf("%s: sign: %v", k.name, err)
						return
					}
				}
				if rq.tamper != nil {
					rq.tamper(req)
				}
				res, err := client.Do(req)
				var o outcome
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(res.Body)
					res.Body.Close()
					o = outcome{res.StatusCode, res.Header.Get("X-Amzn-ErrorType")}
				}
				mu.Lock()
				if byKind[k.name] == nil {
					byKind[k.name] = make(map[outcome]int)
				}
				byKind[k.name][o]++
				if err != nil || o.status < 400 || o.status > 499 || o.errType == "" {
					badN++
					if len(bad[k.name]) < 2 {
						bad[k.name] = append(bad[k.name], fmt.Sprintf("%s %q → %d %q %v %.120s", rq.method, rq.path, o.status, o.errType, err, body))
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(started)

	alive, ready := api.alive(), api.ready()
	// One valid call still works.
	req, _ := http.NewRequest("GET", base+"/identitypools/"+esc(r.pool)+"/configuration", nil)
	if _, err := v4.NewSigner(devCreds).Sign(req, nil, "cognito-sync", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	validStatus := 0
	if res, err := client.Do(req); err == nil {
		validStatus = res.StatusCode
		res.Body.Close()
	}
	types := map[string]int{}
	for _, outs := range byKind {
		for o, c := range outs {
			types[fmt.Sprintf("%d %s", o.status, o.errType)] += c
		}
	}
	var typeList []string
	for k, c := range types {
		typeList = append(typeList, fmt.Sprintf("%s ×%d", k, c))
	}
	sort.Strings(typeList)
	report.add(t, row{"6b. 10,000 malformed API requests", 0, 0, 0, 0, 0,
		fmt.Sprintf("%d kinds, %d requests in %s: %d answered 4xx with X-Amzn-ErrorType, %d not; api alive %v, ready %v, valid call %d; answers: %s",
			len(kinds), n, elapsed.Round(100*time.Millisecond), n-badN, badN, alive, ready, validStatus, strings.Join(typeList, ", "))})
	if !alive || !ready || validStatus != http.StatusOK {
		t.Errorf("api after the malformed requests: alive %v ready %v, valid call answered %d", alive, ready, validStatus)
	}
	if badN != 0 {
		var kindsBad []string
		for k := range bad {
			kindsBad = append(kindsBad, k)
		}
		sort.Strings(kindsBad)
		for _, k := range kindsBad {
			t.Errorf("%s: answers not 4xx with X-Amzn-ErrorType (%v), e.g. %s", k, byKind[k], strings.Join(bad[k], " | "))
		}
	}
}
