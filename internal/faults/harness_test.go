//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// Names pushsyncd uses by default; the suite keeps them.
var (
	streamName    = config.Default().NATS.Stream
	subjectPrefix = config.Default().NATS.SubjectPrefix
	consumerName  = config.Default().Dispatcher.Consumer
)

const (
	masterKeyB64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	devAccessKey = "AKIAPUSHSYNCFAULTS01"
	devSecretKey = "faults-suite-developer-secret"
	apnsTopic    = "com.example.pushsync.faults"
	apnsTeam     = "FAULTSTEAM"
	apnsKeyID    = "FAULTSKEY1"
	fcmProject   = "pushsync-faults"
)

// Dispatcher timing shared by every scenario (see daemonConfig.yaml).
const (
	ackWait       = 2 * time.Second
	retryDelay    = 200 * time.Millisecond
	maxRetryDelay = 2 * time.Second
	retryBudget   = 500 * time.Millisecond // in-process retries of one push; less than ackWait
)

var daemonBin string // the pushsyncd binary TestMain builds

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedis{}) // the suite kills Redis on purpose
	dir, err := os.MkdirTemp("", "pushsync-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	daemonBin = filepath.Join(dir, "pushsyncd")
	args := []string{"build", "-o", daemonBin}
	if os.Getenv("FAULTS_RACE_DAEMON") == "1" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/pushsync/pushsync/cmd/pushsyncd")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: go build ./cmd/pushsyncd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Printf("faults: built pushsyncd in %s\n", time.Since(start).Round(100*time.Millisecond))
	code := m.Run()
	if err := report.write(os.Stdout, os.Getenv("FAULTS_REPORT")); err != nil {
		fmt.Fprintln(os.Stderr, "faults: report:", err)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// ---------------------------------------------------------------------
// The report table.

type row struct {
	scenario                              string
	events, expected, received, lost, dup int
	notes                                 string
}

type reportTable struct {
	mu   sync.Mutex
	rows []row
}

var report reportTable

func (r *reportTable) add(t *testing.T, x row) {
	t.Helper()
	r.mu.Lock()
	r.rows = append(r.rows, x)
	r.mu.Unlock()
	t.Logf("REPORT | %s | events %d | expected %d | received %d | lost %d | duplicated %d | %s",
		x.scenario, x.events, x.expected, x.received, x.lost, x.dup, x.notes)
}

func (r *reportTable) markdown() string {
	var b strings.Builder
	b.WriteString("| scenario | events published | pushes expected | received | lost | duplicated | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|\n")
	for _, x := range r.rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s |\n", x.scenario, x.events, x.expected, x.received, x.lost, x.dup, x.notes)
	}
	return b.String()
}

func (r *reportTable) write(w io.Writer, path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rows) == 0 {
		return nil
	}
	md := r.markdown()
	fmt.Fprintf(w, "\nfault suite report:\n%s", md)
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(md), 0o644)
}

// ---------------------------------------------------------------------
// The ledger: Jepsen's total-queue checker for pushes.

// push identifies one push: the device it went to and the change it
// announced.
type push struct {
	token, dataset string
	syncCount      int64
}

type ledger struct {
	mu       sync.Mutex
	events   int
	expected map[push]bool
}

func newLedger() *ledger { return &ledger{expected: make(map[push]bool)} }

// expect records a published event and the pushes it must cause.
func (l *ledger) expect(ev *event.DatasetChanged, tokens []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events++
	for _, tok := range tokens {
		l.expected[push{tok, ev.DatasetName, ev.SyncCount}] = true
	}
}

type verdict struct {
	expected, received, lost, duplicated, unexpected int
	// superseded counts expected pushes not received as such while the
	// device got a later sync count of the dataset: pushsync skips a change
	// older than one a device already has, by design.
	superseded                   int
	lostSample, unexpectedSample []push
}

// check compares the received multiset with the expected set, Jepsen
// total-queue style: duplicated = received − distinct received, unexpected
// = received ∖ expected, lost = expected pushes for which the device got
// neither this sync count nor a later one of the dataset (those it got
// only a later one for are superseded, not lost).
func (l *ledger) check(received []push) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := verdict{expected: len(l.expected), received: len(received)}
	type stream struct{ token, dataset string }
	seen := make(map[push]int, len(received))
	latest := make(map[stream]int64)
	for _, p := range received {
		seen[p]++
		k := stream{p.token, p.dataset}
		latest[k] = max(latest[k], p.syncCount)
		if !l.expected[p] {
			v.unexpected++
			if len(v.unexpectedSample) < 5 {
				v.unexpectedSample = append(v.unexpectedSample, p)
			}
		}
	}
	v.duplicated = len(received) - len(seen)
	for p := range l.expected {
		switch {
		case seen[p] > 0:
		case latest[stream{p.token, p.dataset}] > p.syncCount:
			v.superseded++
		default:
			v.lost++
			if len(v.lostSample) < 5 {
				v.lostSample = append(v.lostSample, p)
			}
		}
	}
	return v
}

// summary is the verdict's counts that have no column of their own.
func (v verdict) summary() string {
	return fmt.Sprintf("superseded %d, unexpected %d", v.superseded, v.unexpected)
}

// delivered counts the expected pushes received, or superseded by a later
// sync count received by the same device.
func (l *ledger) delivered(received []push) int {
	v := l.check(received)
	return v.expected - v.lost
}

func (l *ledger) size() (events, pushes int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.events, len(l.expected)
}

// ---------------------------------------------------------------------
// Fronts: a TLS HTTP/2 server in front of an emulator that adds latency
// and records every push request (arrival, answer, status).

type hit struct {
	token      string
	start, end time.Time
	status     int
}

type front struct {
	name    string
	srv     *httptest.Server
	next    http.Handler
	fcm     bool
	latency atomic.Int64 // nanoseconds added before each push request
	mu      sync.Mutex
	hits    []hit
}

func newFront(t *testing.T, name string, next http.Handler, fcm bool) *front {
	f := &front{name: name, next: next, fcm: fcm}
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.EnableHTTP2 = true
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *front) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var token string
	switch {
	case !f.fcm && strings.HasPrefix(r.URL.Path, "/3/device/"):
		token = strings.TrimPrefix(r.URL.Path, "/3/device/")
	case f.fcm && strings.HasPrefix(r.URL.Path, "/v1/"):
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			Message struct {
				Token string `json:"token"`
			} `json:"message"`
		}
		_ = json.Unmarshal(body, &req)
		token = req.Message.Token
	default:
		f.next.ServeHTTP(w, r) // control API, token endpoint
		return
	}
	h := hit{token: token, start: time.Now()}
	if d := time.Duration(f.latency.Load()); d > 0 {
		time.Sleep(d) // the request is answered even if the client is gone, as a real service would
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	f.next.ServeHTTP(sw, r)
	h.end, h.status = time.Now(), sw.status
	f.mu.Lock()
	f.hits = append(f.hits, h)
	f.mu.Unlock()
}

func (f *front) snapshot() []hit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hit(nil), f.hits...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// ---------------------------------------------------------------------
// The rig: emulators, Redis, NATS connection, registry and ledger of one
// scenario.

type identity struct {
	pool, id string
	origin   registry.Device   // makes the changes
	others   []registry.Device // receive the pushes
	sync     map[string]int64  // last sync count published, by dataset
}

type rig struct {
	t          *testing.T
	dir        string
	rdb        redis.UniversalClient // a *redis.ClusterClient on a Redis Cluster
	redisAddrs []string              // redis.addrs of pushsyncd
	redisName  string                // redis.master_name of pushsyncd: Sentinel
	prefix     string
	reg        *registry.Registry
	natsURL    string
	replicas   int
	nc         *nats.Conn
	js         jetstream.JetStream
	pub        *event.Publisher

	prod, sandbox *apnstest.Server
	fcm           *fcmtest.Server
	fronts        []*front // prod, sandbox, fcm
	apnsCA, fcmCA string   // root CA files for pushsyncd

	ledger   *ledger
	pool     string
	ids      []*identity
	datasets []string // every device subscribes to each
	tokenN   int
	eventN   int
}

type rigOptions struct {
	natsURL  string // one URL or several, comma-separated
	replicas int
	// redisAddrs, as pushsyncd's redis.addrs: none for the machine's Redis
	// through testenv, one for a single node, several for the seed nodes of
	// a Redis Cluster (see startRedisCluster), or the sentinels if
	// redisMasterName is set.
	redisAddrs []string
	// redisMasterName is the master the sentinels watch (see
	// startRedisSentinel): pushsyncd's redis.master_name.
	redisMasterName string
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), natsURL: o.natsURL, replicas: max(o.replicas, 1), ledger: newLedger()}
	switch n := len(o.redisAddrs); {
	case o.redisMasterName != "":
		// As pushsyncd makes it: a Sentinel-backed failover client.
		r.redisAddrs, r.redisName = o.redisAddrs, o.redisMasterName
		r.prefix = "faults-" + testenv.RandomHex(4)
		r.rdb = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: o.redisAddrs, MasterName: o.redisMasterName, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
		t.Cleanup(func() { r.rdb.Close() })
	case n == 0:
		r.rdb, r.prefix = testenv.Redis(t)
		r.redisAddrs = []string{testenv.RedisAddr()}
	case n == 1:
		r.redisAddrs = o.redisAddrs
		r.prefix = "faults-" + testenv.RandomHex(4)
		// No retries: the scenario kills this Redis and counts what fails.
		r.rdb = redis.NewClient(&redis.Options{Addr: o.redisAddrs[0], DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1})
		t.Cleanup(func() { r.rdb.Close() })
	default:
		// As pushsyncd makes it (app.NewRedis): several addresses give a
		// cluster client.
		r.redisAddrs = o.redisAddrs
		r.prefix = "faults-" + testenv.RandomHex(4)
		r.rdb = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: o.redisAddrs, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
		t.Cleanup(func() { r.rdb.Close() })
		if _, ok := r.rdb.(*redis.ClusterClient); !ok {
			t.Fatalf("Redis client for %v is a %T, want a *redis.ClusterClient", o.redisAddrs, r.rdb)
		}
	}
	key, _ := base64.StdEncoding.DecodeString(masterKeyB64)
	box, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	r.reg = registry.New(r.rdb, registry.Options{KeyPrefix: r.prefix, Secrets: box})

	// Emulators, each behind a front.
	r.prod = apnstest.NewServer()
	r.sandbox = apnstest.NewServer(apnstest.WithEnvironment(apnstest.EnvironmentDevelopment))
	r.fcm = fcmtest.NewServer()
	t.Cleanup(r.prod.Close)
	t.Cleanup(r.sandbox.Close)
	t.Cleanup(r.fcm.Close)
	r.fronts = []*front{
		newFront(t, "apns", r.prod.Handler(), false),
		newFront(t, "apns-sandbox", r.sandbox.Handler(), false),
		newFront(t, "fcm", r.fcm, true),
	}
	r.apnsCA = filepath.Join(r.dir, "apns-ca.pem")
	r.fcmCA = filepath.Join(r.dir, "fcm-ca.pem")
	writeFile(t, r.apnsCA, r.fronts[0].caPEM())
	// The FCM client reaches the token endpoint of the emulator directly.
	writeFile(t, r.fcmCA, append(r.fronts[2].caPEM(), r.fcm.CACertPEM()...))

	// NATS: the test's own connection, and the stream as pushsyncd makes it.
	r.nc, err = nats.Connect(o.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.nc.Close)
	r.js, err = jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = event.EnsureStream(ctx, r.js, streamConfig(r.replicas))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event stream: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.pub, err = event.NewPublisher(r.js, event.PublisherOptions{Stream: streamName, SubjectPrefix: subjectPrefix, Attempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	r.seedApps()
	return r
}

// streamConfig is the event stream as pushsyncd makes it with the default
// configuration (cmd/internal/app.StreamConfig).
func streamConfig(replicas int) event.StreamConfig {
	c := config.Default().NATS
	return event.StreamConfig{
		Name:                c.Stream,
		SubjectPrefix:       c.SubjectPrefix,
		DeviceSubjectPrefix: c.DeviceSubjectPrefix,
		Replicas:            replicas,
		Storage:             jetstream.FileStorage,
		MaxAge:              c.MaxAge.Std(),
		Duplicates:          c.DuplicateWindow.Std(),
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// setLatency makes every push request wait d at the emulators.
func (r *rig) setLatency(d time.Duration) {
	for _, f := range r.fronts {
		f.latency.Store(int64(d))
	}
}

func (r *rig) seedApps() {
	t := r.t
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	r.prod.AddTokenKey(apnsTeam, apnsKeyID, &key.PublicKey, apnsTopic)
	r.sandbox.AddTokenKey(apnsTeam, apnsKeyID, &key.PublicKey, apnsTopic)
	sa, err := r.fcm.AddServiceAccount(fcmProject)
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []registry.App{
		{Name: "faults-ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{
			Topic: apnsTopic, KeyID: apnsKeyID, TeamID: apnsTeam,
			AuthKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		}},
		{Name: "faults-android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: fcmProject, ServiceAccount: string(sa)}},
	} {
		if _, err := r.reg.PutApp(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	r.pool = "us-east-1:" + uuidish(0xfa17, 1)
	if _, err := r.reg.CreateIdentityPool(ctx, "", registry.IdentityPool{ID: r.pool, Name: "faults", AllowUnauthenticated: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.reg.SetPoolPush(ctx, r.pool, registry.PoolPush{Apps: map[registry.Platform]string{
		registry.APNS: "faults-ios", registry.APNSSandbox: "faults-ios", registry.GCM: "faults-android",
	}}); err != nil {
		t.Fatal(err)
	}
}

func uuidish(a, b int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", a, b) }

// devicePlatforms is the mix of each seeded identity: the first device
// makes the changes, the other four get a push for each.
var devicePlatforms = []registry.Platform{registry.GCM, registry.APNS, registry.APNSSandbox, registry.GCM, registry.APNS}

// token returns a fresh token for platform.
func (r *rig) token(p registry.Platform) string {
	r.tokenN++
	if p == registry.GCM {
		return fmt.Sprintf("fcm-faults-%s-%06d", r.prefix, r.tokenN)
	}
	return fmt.Sprintf("%056x%08x", r.tokenN, r.tokenN*2654435761&0xffffffff)
}

// seedIdentities registers n identities with five devices each, all
// subscribed to the given datasets ("settings" if none).
func (r *rig) seedIdentities(n int, datasets ...string) {
	t := r.t
	if len(datasets) == 0 {
		datasets = []string{"settings"}
	}
	r.datasets = datasets
	ctx := context.Background()
	for i := range n {
		id := &identity{pool: r.pool, id: "us-east-1:" + uuidish(len(r.ids)+1, i+1), sync: make(map[string]int64)}
		for j, p := range devicePlatforms {
			d, _, err := r.reg.RegisterDevice(ctx, id.pool, id.id, p, r.token(p))
			if err != nil {
				t.Fatal(err)
			}
			for _, ds := range datasets {
				if err := r.reg.Subscribe(ctx, id.pool, id.id, ds, d.ID); err != nil {
					t.Fatal(err)
				}
			}
			if j == 0 {
				id.origin = d
			} else {
				id.others = append(id.others, d)
			}
		}
		r.ids = append(r.ids, id)
	}
}

// nextEvents makes n changes, round-robin over the identities and then
// the datasets, and puts their pushes in the ledger.
func (r *rig) nextEvents(n int) []*event.DatasetChanged {
	evs := make([]*event.DatasetChanged, 0, n)
	for range n {
		k := r.eventN
		r.eventN++
		id := r.ids[k%len(r.ids)]
		ds := r.datasets[k/len(r.ids)%len(r.datasets)]
		id.sync[ds]++
		ev := &event.DatasetChanged{
			IdentityPoolID: id.pool, IdentityID: id.id, DatasetName: ds,
			SyncCount: id.sync[ds], OriginDeviceID: id.origin.ID, ChangedAt: time.Now(),
		}
		tokens := make([]string, len(id.others))
		for k, d := range id.others {
			tokens[k] = d.Token
		}
		r.ledger.expect(ev, tokens)
		evs = append(evs, ev)
	}
	return evs
}

// publish publishes the events with 8 publishers, each event retried
// (same Nats-Msg-Id, so stored once) until the stream acknowledges it.
func (r *rig) publish(evs []*event.DatasetChanged) {
	r.t.Helper()
	if err := r.tryPublish(evs); err != nil {
		r.t.Fatalf("publish: %v", err)
	}
}

// tryPublish is publish for goroutines other than the test's.
func (r *rig) tryPublish(evs []*event.DatasetChanged) error {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(evs) {
					return
				}
				deadline := time.Now().Add(60 * time.Second)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := r.pub.Publish(ctx, evs[i])
					cancel()
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						errs <- err
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// receipt is a push the emulators accepted, and when, with the rest of
// what its payload says.
type receipt struct {
	push
	at                       time.Time
	source, pool, identityID string
}

// receipts is every push the emulators accepted.
func (r *rig) receipts() []receipt {
	var out []receipt
	for _, s := range []*apnstest.Server{r.prod, r.sandbox} {
		for _, p := range s.Pushes() {
			var body struct {
				Data struct {
					Source         string `json:"source"`
					IdentityPoolID string `json:"identityPoolId"`
					IdentityID     string `json:"identityId"`
					DatasetName    string `json:"datasetName"`
					SyncCount      int64  `json:"syncCount"`
				} `json:"data"`
			}
			if err := json.Unmarshal(p.Payload, &body); err != nil {
				r.t.Errorf("APNs payload %q: %v", p.Payload, err)
			}
			d := body.Data
			out = append(out, receipt{push{p.DeviceToken, d.DatasetName, d.SyncCount}, p.ReceivedAt, d.Source, d.IdentityPoolID, d.IdentityID})
		}
	}
	for _, p := range r.fcm.Pushes() {
		var n int64
		if _, err := fmt.Sscan(p.Data["syncCount"], &n); err != nil {
			r.t.Errorf("FCM syncCount %q: %v", p.Data["syncCount"], err)
		}
		out = append(out, receipt{push{p.Token, p.Data["datasetName"], n}, p.ReceivedAt, p.Data["source"], p.Data["identityPoolId"], p.Data["identityId"]})
	}
	return out
}

// longestGap is the longest time after since without any push accepted,
// until the last push.
func (r *rig) longestGap(since time.Time) time.Duration {
	var ts []time.Time
	for _, x := range r.receipts() {
		if x.at.After(since) {
			ts = append(ts, x.at)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	gap, prev := time.Duration(0), since
	for _, t := range ts {
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return gap
}

// received is every push the emulators accepted, without times.
func (r *rig) received() []push {
	rs := r.receipts()
	out := make([]push, len(rs))
	for i, x := range rs {
		out[i] = x.push
	}
	return out
}

// dupEvents counts the events (identity, dataset, sync count) with at least one
// duplicated push.
func (r *rig) dupEvents(received []push) int {
	owner := make(map[string]*identity)
	for _, id := range r.ids {
		for _, d := range id.others {
			owner[d.Token] = id
		}
	}
	type evKey struct {
		id      *identity
		dataset string
		sync    int64
	}
	seen := make(map[push]bool)
	dup := make(map[evKey]bool)
	for _, p := range received {
		if seen[p] {
			dup[evKey{owner[p.token], p.dataset, p.syncCount}] = true
		}
		seen[p] = true
	}
	return len(dup)
}

// kill9 is a worker killed with SIGKILL under load, and what its metrics
// said right before.
type kill9 struct {
	p  *proc
	at time.Time
	// The worker's own gauges and counter, read right before the kill.
	pushesInFlight, eventsInFlight, accepted float64
}

// killWorker reads the worker's in-flight gauges, then kills it with
// SIGKILL at once.
func (r *rig) killWorker(p *proc) kill9 {
	r.t.Helper()
	k := kill9{p: p}
	k.accepted = p.metric("pushsync_pushes_total", "result", "accepted")
	k.eventsInFlight = p.metric("pushsync_events_in_flight")
	k.pushesInFlight = p.metric("pushsync_pushes_in_flight")
	k.at = time.Now()
	p.kill()
	return k
}

// checkKillDuplicates checks the duplicates one kill -9 may cause, and
// describes them for the report. A redelivered event skips every device
// whose push was recorded, so a kill repeats only pushes accepted and not
// yet recorded. Those all belong to events the worker was handling: it
// acks an event only once its accepted pushes are recorded, and handles at
// most dispatcher.workers events at a time (without coalescing). So the
// bound is dispatcher.workers × the largest fan-out of one event. The
// worker's gauges (pushsync_pushes_in_flight, pushsync_events_in_flight)
// are read a moment before the kill, and the first counts push requests
// only, not accepted pushes waiting to be recorded: reported, no bound.
func (r *rig) checkKillDuplicates(k kill9, v verdict) string {
	t := r.t
	t.Helper()
	fan := 0
	for _, id := range r.ids {
		fan = max(fan, len(id.others))
	}
	bound := k.p.cfg.workers * fan
	dupEvents := r.dupEvents(r.received())
	// Duplicates whose first copy the service accepted before the kill
	// (with 5 ms to spare for the answer to reach the worker).
	first := map[push]time.Time{}
	copies := map[push]int{}
	for _, x := range r.receipts() {
		copies[x.push]++
		if f, ok := first[x.push]; !ok || x.at.Before(f) {
			first[x.push] = x.at
		}
	}
	acceptedBefore := 0
	for p, n := range copies {
		if n > 1 && first[p].Before(k.at.Add(-5*time.Millisecond)) {
			acceptedBefore += n - 1
		}
	}
	if v.duplicated > bound {
		t.Errorf("%d duplicated pushes, more than the %d pushes of the %d events %s could hold at the kill (dispatcher.workers %d × %d devices; its gauges right before: %.0f pushes, %.0f events in flight; %d events with a duplicate; %d duplicates of pushes the service had accepted over 5 ms before the kill)",
			v.duplicated, bound, k.p.cfg.workers, k.p.name, k.p.cfg.workers, fan, k.pushesInFlight, k.eventsInFlight, dupEvents, acceptedBefore)
	}
	return fmt.Sprintf("%s had %.0f accepted; in flight right before the kill (pushsync_pushes_in_flight, pushsync_events_in_flight): %.0f pushes, %.0f events; duplicates bounded by dispatcher.workers %d × %d devices = %d; events with a duplicate: %d, duplicates of pushes accepted over 5 ms before the kill: %d",
		k.p.name, k.accepted, k.pushesInFlight, k.eventsInFlight, k.p.cfg.workers, fan, bound, dupEvents, acceptedBefore)
}

// waitFraction waits until frac of the expected pushes have arrived.
func (r *rig) waitFraction(frac float64, timeout time.Duration) {
	r.t.Helper()
	_, want := r.ledger.size()
	deadline := time.Now().Add(timeout)
	for float64(r.ledger.delivered(r.received())) < frac*float64(want) {
		if time.Now().After(deadline) {
			r.t.Fatalf("only %d of %d pushes after %s", r.ledger.delivered(r.received()), want, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until every expected push has arrived (or timeout), then
// until the consumer has nothing pending or unacknowledged, then for a
// quiet period longer than AckWait so that late duplicates are counted,
// and returns the ledger's verdict.
func (r *rig) settle(timeout time.Duration) (verdict, time.Duration) {
	t := r.t
	t.Helper()
	start := time.Now()
	_, want := r.ledger.size()
	for r.ledger.delivered(r.received()) < want && time.Since(start) < timeout {
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		info, err := consumerInfo(ctx, r.js)
		cancel()
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Errorf("consumer info: %v", err)
			} else {
				t.Errorf("consumer not drained: pending %d, ack pending %d", info.NumPending, info.NumAckPending)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(ackWait + 500*time.Millisecond)
	return r.ledger.check(r.received()), took
}

func consumerInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, streamName, consumerName)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// assertLedger checks the invariants: nothing lost, nothing
// unexpected.
func assertLedger(t *testing.T, v verdict) {
	t.Helper()
	if v.lost != 0 {
		t.Errorf("%d of %d expected pushes lost, e.g. %+v", v.lost, v.expected, v.lostSample)
	}
	if v.unexpected != 0 {
		t.Errorf("%d unexpected pushes, e.g. %+v", v.unexpected, v.unexpectedSample)
	}
}

// assertNoDuplicates fails the test if pushes arrived twice beyond what
// the workers could not know. A pushsyncd that does not crash and a Redis
// that does not lose writes record every accepted push before the ack, so
// a retry or a redelivery skips the devices that have it: only a crash
// between acceptance and the record, or a send whose answer never came (a
// timeout or a broken connection after the request went out, which the
// service may have accepted), repeats a push (README, "At least once,
// duplicates bounded").
func assertNoDuplicates(t *testing.T, v verdict, workers ...*proc) {
	t.Helper()
	unknown := 0.0
	for _, w := range workers {
		for _, reason := range []string{"timeout", "transport"} {
			unknown += w.metric("pushsync_pushes_total", "result", "retry", "reason", reason)
		}
	}
	if float64(v.duplicated) > unknown {
		t.Errorf("%d pushes arrived twice without a crash, and only %.0f sends ended without an answer", v.duplicated, unknown)
	}
}

// allHits merges the push requests recorded by every front, by arrival.
func (r *rig) allHits() []hit {
	var hs []hit
	for _, f := range r.fronts {
		hs = append(hs, f.snapshot()...)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].start.Before(hs[j].start) })
	return hs
}

// ---------------------------------------------------------------------
// pushsyncd processes.

type daemonConfig struct {
	role        string // worker (default), api or all
	workers     int    // dispatcher.workers; 0: 8
	sends       int    // dispatcher.max_concurrent_sends; 0: 16
	maxBodySize int    // api.max_body_bytes; 0: 16384
	coalesce    string // dispatcher.coalesce_window; "": 0s
}

type proc struct {
	t       *testing.T
	name    string
	cfg     daemonConfig // with the defaults filled in
	cmd     *exec.Cmd
	http    string
	api     string
	logPath string
	exited  chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDaemon writes the configuration of one pushsyncd process and starts
// it, waiting until /readyz answers 200.
func (r *rig) startDaemon(name string, c daemonConfig) *proc {
	t := r.t
	t.Helper()
	if c.role == "" {
		c.role = "worker"
	}
	if c.workers == 0 {
		c.workers = 8
	}
	if c.sends == 0 {
		c.sends = 16
	}
	if c.maxBodySize == 0 {
		c.maxBodySize = 16384
	}
	if c.coalesce == "" {
		c.coalesce = "0s"
	}
	p := &proc{t: t, name: name, cfg: c, http: freeAddr(t), api: freeAddr(t), logPath: filepath.Join(r.dir, name+".log"), exited: make(chan struct{})}
	cfg := fmt.Sprintf(`role: %s
log: {level: info}
http: {listen: %q, shutdown_timeout: 5s}
redis: {addrs: [%s], master_name: %q, key_prefix: %q, dial_timeout: 500ms, read_timeout: 1s, write_timeout: 1s}
nats: {url: %q, replicas: %d, connect_timeout: 2s}
dispatcher: {ack_wait: %s, max_deliver: 100, workers: %d, max_concurrent_sends: %d, send_timeout: 1500ms, retry_delay: %s, max_retry_delay: %s, retry_budget: %s, coalesce_window: %s}
apns: {production_host: %q, sandbox_host: %q, root_ca_file: %q}
fcm: {endpoint: %q, root_ca_file: %q}
api: {listen: %q, developer_access_key_id: %s, developer_secret_access_key: %s, max_body_bytes: %d}
secrets: {master_key: %q}
`, c.role, p.http, quoteList(r.redisAddrs), r.redisName, r.prefix, r.natsURL, r.replicas,
		ackWait, c.workers, c.sends, retryDelay, maxRetryDelay, retryBudget, c.coalesce,
		r.fronts[0].srv.URL, r.fronts[1].srv.URL, r.apnsCA,
		r.fronts[2].srv.URL+"/v1", r.fcmCA,
		p.api, devAccessKey, devSecretKey, c.maxBodySize, masterKeyB64)
	cfgPath := filepath.Join(r.dir, name+".yaml")
	writeFile(t, cfgPath, []byte(cfg))
	p.start(cfgPath)
	return p
}

// quoteList is ss as the items of a YAML flow sequence.
func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func (p *proc) start(cfgPath string) {
	t := p.t
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(daemonBin, "-config", cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.Env = os.Environ()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("last lines of %s's log:\n%s", p.name, tail(p.logPath, 25))
		}
	})
	p.waitReady(20 * time.Second)
}

func (p *proc) ready() bool {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get("http://" + p.http + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !p.ready() {
		select {
		case <-p.exited:
			p.t.Fatalf("%s exited (%v); log:\n%s", p.name, p.cmd.ProcessState, tail(p.logPath, 40))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready after %s; log:\n%s", p.name, timeout, tail(p.logPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.exited
}

// metric sums the samples (counters or gauges) of one metric family on the
// process's /metrics page whose labels include the given pairs.
func (p *proc) metric(name string, labels ...string) float64 {
	p.t.Helper()
	return testenv.Metric(p.t, p.http, name, labels...)
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------
// A three-node NATS cluster with JetStream, in the test process.

type natsCluster struct {
	t    *testing.T
	opts []server.Options
	srv  []*server.Server
	URL  string // every client URL, comma-separated
	// dir holds the servers' stores. It is made before the servers are
	// started, so that it is removed after they are stopped: removed
	// under running servers, it could be written again meanwhile and
	// fail to go.
	dir string
}

func startCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, srv: make([]*server.Server, n), dir: t.TempDir()}
	t.Cleanup(func() {
		for i := range c.srv {
			c.stop(i)
		}
	})
	// A port freePort found free may be taken by another process before the
	// server listens on it: then start over on fresh ports.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		c.configure(n)
		for i := range n {
			if err = c.tryStart(i); err != nil {
				break
			}
		}
		if err == nil {
			return c
		}
		for i := range n {
			c.stop(i)
		}
	}
	t.Fatal(err)
	return nil
}

// configure picks the ports of an n-node cluster and the options of each
// server.
func (c *natsCluster) configure(n int) {
	t := c.t
	clientPorts, routePorts := make([]int, n), make([]int, n)
	for i := range n {
		clientPorts[i] = freePort(t)
		routePorts[i] = freePort(t)
	}
	var urls []string
	c.opts = nil
	for i := range n {
		store, err := os.MkdirTemp(c.dir, "n")
		if err != nil {
			t.Fatal(err)
		}
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[j]))
			}
		}
		c.opts = append(c.opts, server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   store,
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "faults", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		})
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	c.URL = strings.Join(urls, ",")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tryStart starts server i and waits until it takes connections, or
// until it fails (as when one of its ports is taken).
func (c *natsCluster) tryStart(i int) error {
	o := c.opts[i] // a copy: the server keeps a pointer and changes it
	s, err := server.NewServer(&o)
	if err != nil {
		return err
	}
	fatal := &natsFatal{}
	s.SetLogger(fatal, false, false)
	go s.Start()
	for deadline := time.Now().Add(10 * time.Second); !s.ReadyForConnections(100 * time.Millisecond); {
		if msg := fatal.get(); msg != "" || time.Now().After(deadline) {
			s.Shutdown()
			s.WaitForShutdown()
			if msg == "" {
				msg = "not ready after 10s"
			}
			return fmt.Errorf("nats %s did not start: %s", o.ServerName, msg)
		}
	}
	c.srv[i] = s
	return nil
}

// natsFatal is a NATS server logger that keeps the first fatal error,
// such as a port it cannot listen on, and drops the rest.
type natsFatal struct {
	mu  sync.Mutex
	msg string
}

func (l *natsFatal) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msg == "" {
		l.msg = fmt.Sprintf(format, v...)
	}
}

func (l *natsFatal) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

func (*natsFatal) Noticef(string, ...any) {}
func (*natsFatal) Warnf(string, ...any)   {}
func (*natsFatal) Errorf(string, ...any)  {}
func (*natsFatal) Debugf(string, ...any)  {}
func (*natsFatal) Tracef(string, ...any)  {}

func (c *natsCluster) stop(i int) {
	if s := c.srv[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.srv[i] = nil
	}
}

// leaders returns the servers leading the event stream and the dispatcher's
// consumer, "" where not known (no leader, or no answer within 2 s).
func (r *rig) leaders() (stream, consumer string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s, err := r.js.Stream(ctx, streamName); err == nil {
		if si, err := s.Info(ctx); err == nil && si.Cluster != nil {
			stream = si.Cluster.Leader
		}
	}
	if ci, err := consumerInfo(ctx, r.js); err == nil && ci.Cluster != nil {
		consumer = ci.Cluster.Leader
	}
	return stream, consumer
}

// colocateLeaders makes one server lead both the stream and the consumer,
// the worst case for losing it, by moving the stream leadership to the
// consumer leader (a stepdown with a preferred server), and returns that
// server. The consumer must exist: call it once a worker is ready.
func (r *rig) colocateLeaders(timeout time.Duration) string {
	r.t.Helper()
	leader, consumerLeader := r.leaders()
	for deadline := time.Now().Add(timeout); leader == "" || leader != consumerLeader; leader, consumerLeader = r.leaders() {
		if time.Now().After(deadline) {
			r.t.Fatalf("stream leader %q, consumer leader %q: could not make them one", leader, consumerLeader)
		}
		if leader != "" && consumerLeader != "" {
			req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, consumerLeader)
			_, _ = r.nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+streamName, []byte(req), 2*time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return leader
}

// newStreamLeader waits up to 30 s for the stream to have a leader other
// than old, stopped at since, and returns it and how long the election
// took.
func (r *rig) newStreamLeader(old string, since time.Time) (string, time.Duration) {
	r.t.Helper()
	for time.Since(since) < 30*time.Second {
		if leader, _ := r.leaders(); leader != "" && leader != old {
			return leader, time.Since(since)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("no new stream leader 30s after stopping %s", old)
	return "", 0
}

func (c *natsCluster) index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// ---------------------------------------------------------------------
// A redis-server child process with AOF persistence.

type redisServer struct {
	t    *testing.T
	port int
	dir  string
	Addr string
	args []string // more redis-server options
	// sentinelConf, if set, makes this a Sentinel with that configuration
	// file (which it rewrites), rather than a data node.
	sentinelConf string
	// cluster makes this a Redis Cluster node, with its bus on clusterPort.
	cluster     bool
	clusterPort int
	cmd         *exec.Cmd
	done        chan struct{}
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	requireRedisBinaries(t, "redis-server")
	return newRedisServer(t)
}

// requireRedisBinaries fails under CI=true, and skips elsewhere, when one
// of the named Redis programs is not on PATH.
func requireRedisBinaries(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			testenv.Missing(t, name+" on PATH (Debian: apt-get install redis-server, which brings redis-cli too)")
		}
	}
}

// newRedisServer starts redis-server on a free port in its own directory,
// with the extra options args, and kills it when the test ends.
func newRedisServer(t *testing.T, args ...string) *redisServer {
	t.Helper()
	return launchRedis(t, &redisServer{args: args})
}

// launchRedis starts rs in its own directory on a free port (and a free
// cluster bus port for a cluster node), and kills it when the test ends.
// A port freePort found free may be taken by another process before
// redis-server listens on it: then it tries again on fresh ports.
func launchRedis(t *testing.T, rs *redisServer) *redisServer {
	t.Helper()
	rs.t, rs.dir = t, t.TempDir()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		rs.port = freePort(t)
		rs.Addr = fmt.Sprintf("127.0.0.1:%d", rs.port)
		if rs.cluster {
			rs.clusterPort = freePort(t)
		}
		var exited bool
		if exited, err = rs.tryStart(); err == nil {
			t.Cleanup(rs.kill)
			return rs
		}
		rs.kill()
		if !exited {
			break // not a port taken: it would fail again
		}
	}
	t.Fatal(err)
	return nil
}

// start starts redis-server again, on the same ports and directory.
func (rs *redisServer) start() {
	rs.t.Helper()
	if _, err := rs.tryStart(); err != nil {
		rs.t.Fatal(err)
	}
}

// tryStart starts redis-server and waits until it answers PING. It
// reports whether the process exited before answering.
func (rs *redisServer) tryStart() (exited bool, err error) {
	logFile := filepath.Join(rs.dir, "redis.log")
	args := []string{"--bind", "127.0.0.1", "--port", fmt.Sprint(rs.port),
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--dir", rs.dir, "--logfile", logFile}
	switch {
	case rs.sentinelConf != "":
		args = []string{rs.sentinelConf, "--sentinel", "--bind", "127.0.0.1", "--port", fmt.Sprint(rs.port),
			"--dir", rs.dir, "--logfile", logFile}
	case rs.cluster:
		// The bus port is set: port+10000 is past 65535 for ports above
		// 55535, which freePort gives too.
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", fmt.Sprint(rs.clusterPort), "--cluster-node-timeout", "5000")
	}
	args = append(args, rs.args...)
	rs.cmd = exec.Command("redis-server", args...)
	if err := rs.cmd.Start(); err != nil {
		rs.cmd = nil
		return false, err
	}
	rs.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(rs.cmd, rs.done)
	c := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return false, nil
		}
		select {
		case <-rs.done:
			return true, fmt.Errorf("redis-server on %s exited:\n%s", rs.Addr, rs.log())
		default:
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("redis-server on %s: %v\n%s", rs.Addr, err, rs.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (rs *redisServer) log() string { return tail(filepath.Join(rs.dir, "redis.log"), 20) }

// client is a plain connection to this one server.
func (rs *redisServer) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: rs.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	rs.t.Cleanup(func() { c.Close() })
	return c
}

// kill sends SIGKILL to redis-server and waits for it to exit.
func (rs *redisServer) kill() {
	if rs.cmd == nil {
		return
	}
	_ = rs.cmd.Process.Signal(syscall.SIGKILL)
	<-rs.done
	rs.cmd = nil
}

// ---------------------------------------------------------------------
// A Redis Cluster of redis-server child processes, all masters.

type redisCluster struct {
	t     *testing.T
	nodes []*redisServer
}

// startRedisCluster starts n redis-server processes with cluster-enabled
// yes (each with its own port, directory and AOF everysec), joins them
// with redis-cli --cluster create as n masters without replicas, and waits
// until every node reports cluster_state:ok with all slots assigned.
func startRedisCluster(t *testing.T, n int) *redisCluster {
	t.Helper()
	requireRedisBinaries(t, "redis-server", "redis-cli")
	rc := &redisCluster{t: t}
	for range n {
		rc.nodes = append(rc.nodes, launchRedis(t, &redisServer{cluster: true}))
	}
	args := append([]string{"--cluster", "create"}, rc.addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, rs := range rc.nodes {
		c := rs.client()
		waitFor(t, 30*time.Second, "Redis Cluster node "+rs.Addr+" to be ok", func() (bool, string) {
			info, err := c.ClusterInfo(context.Background()).Result()
			ok := err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_assigned:16384") &&
				strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n))
			return ok, fmt.Sprintf("%v\n%s\nredis-cli --cluster create said:\n%s\nlog:\n%s", err, info, out, rs.log())
		})
	}
	return rc
}

// addrs is every node's address, for redis.addrs.
func (rc *redisCluster) addrs() []string {
	out := make([]string, len(rc.nodes))
	for i, rs := range rc.nodes {
		out[i] = rs.Addr
	}
	return out
}

// dbSizes is the number of keys each node (each a master) holds, asked of
// the node itself rather than through a cluster client.
func (rc *redisCluster) dbSizes() []int64 {
	rc.t.Helper()
	out := make([]int64, len(rc.nodes))
	for i, rs := range rc.nodes {
		c := rs.client()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		role, err := c.Do(ctx, "ROLE").Slice()
		if err == nil && (len(role) == 0 || role[0] != "master") {
			err = fmt.Errorf("ROLE answered %v, want a master", role)
		}
		if err == nil {
			out[i], err = c.DBSize(ctx).Result()
		}
		cancel()
		if err != nil {
			rc.t.Fatalf("Redis Cluster node %s: %v", rs.Addr, err)
		}
	}
	return out
}

// assertSpread fails the test unless every master holds keys: the data
// must really be spread over the cluster, not on one node by accident.
func (rc *redisCluster) assertSpread() []int64 {
	rc.t.Helper()
	sizes := rc.dbSizes()
	for i, n := range sizes {
		if n == 0 {
			rc.t.Errorf("Redis Cluster master %s holds no key (DBSIZE per master %v): the data is not spread over the cluster", rc.nodes[i].Addr, sizes)
		}
	}
	return sizes
}

// ---------------------------------------------------------------------
// A Redis master with one replica, watched by one Sentinel (quorum 1,
// down-after-milliseconds 1000).

const sentinelMaster = "faults"

type redisSentinel struct {
	t               *testing.T
	master, replica *redisServer
	sentinel        *redisServer
	sentinelClient  *redis.SentinelClient
	initialMaster   string
}

// startRedisSentinel starts a master, a replica of it and a Sentinel
// monitoring the master as sentinelMaster, and waits until the replica is
// in sync and the Sentinel knows it.
func startRedisSentinel(t *testing.T) *redisSentinel {
	t.Helper()
	requireRedisBinaries(t, "redis-server")
	s := &redisSentinel{t: t}
	s.master = newRedisServer(t, "--repl-diskless-sync-delay", "0") // the replica syncs at once, not after 5 s
	s.replica = newRedisServer(t, "--replicaof", "127.0.0.1", fmt.Sprint(s.master.port))
	s.initialMaster = s.master.Addr
	ctx := context.Background()
	mc := s.master.client()
	waitFor(t, 30*time.Second, "the replica to be in sync", func() (bool, string) {
		info, err := mc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online"), info
	})
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	writeFile(t, conf, fmt.Appendf(nil, `sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
`, sentinelMaster, s.master.port, sentinelMaster, sentinelMaster))
	s.sentinel = launchRedis(t, &redisServer{sentinelConf: conf})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of the Sentinel's log:\n%s", s.sentinel.log())
		}
	})
	s.sentinelClient = redis.NewSentinelClient(&redis.Options{Addr: s.sentinel.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	t.Cleanup(func() { s.sentinelClient.Close() })
	waitFor(t, 30*time.Second, "the Sentinel to know the replica", func() (bool, string) {
		rs, err := s.sentinelClient.Replicas(ctx, sentinelMaster).Result()
		return err == nil && len(rs) == 1 && !strings.Contains(rs[0]["flags"], "down") && !strings.Contains(rs[0]["flags"], "disconnected"), fmt.Sprint(rs, err)
	})
	return s
}

// masterAddr is the master's address as the Sentinel gives it.
func (s *redisSentinel) masterAddr() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a, err := s.sentinelClient.GetMasterAddrByName(ctx, sentinelMaster).Result()
	if err != nil || len(a) != 2 {
		return ""
	}
	return net.JoinHostPort(a[0], a[1])
}

// crashMaster waits until the replica has caught up with the master,
// kills the master with SIGKILL and waits until the Sentinel has failed
// over: it names the replica as master and the replica says it is. It
// returns how long the failover took.
//
// Replication is asynchronous: writes the master acknowledged but had not
// yet streamed are lost with it. Right after a full sync the master
// streams nothing until the replica's first REPLCONF ACK, up to a second
// later, so without the wait everything written meanwhile would be lost.
// The scenario is about pushsync riding out a failover, not about that.
func (s *redisSentinel) crashMaster() time.Duration {
	t := s.t
	t.Helper()
	ctx := context.Background()
	mc, rc := s.master.client(), s.replica.client()
	info, err := mc.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatalf("INFO replication of the master: %v", err)
	}
	want := infoInt(info, "master_repl_offset")
	waitFor(t, 30*time.Second, "the replica to catch up with the master", func() (bool, string) {
		info, err := rc.Info(ctx, "replication").Result()
		return err == nil && infoInt(info, "slave_repl_offset") >= want, fmt.Sprintf("master at offset %d; replica: %v\n%s", want, err, info)
	})
	start := time.Now()
	s.master.kill()
	waitFor(t, 30*time.Second, "the Sentinel to promote the replica", func() (bool, string) {
		role, err := rc.Do(ctx, "ROLE").Slice()
		ok := err == nil && s.masterAddr() == s.replica.Addr && len(role) > 0 && role[0] == "master"
		return ok, fmt.Sprintf("the Sentinel names %s; ROLE of the replica %v (%v)", s.masterAddr(), role, err)
	})
	return time.Since(start)
}

// infoInt is the integer field name of an INFO answer, -1 if absent.
func infoInt(info, name string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			var n int64
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n
			}
		}
	}
	return -1
}

// waitFor polls cond every 50 ms until it holds, failing the test with
// what it last said after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %s", timeout, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
