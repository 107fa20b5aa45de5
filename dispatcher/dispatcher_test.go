package dispatcher_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

const (
	pool     = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	identity = "us-east-1:11111111-2222-3333-4444-555555555555"
	stranger = "us-east-1:99999999-2222-3333-4444-555555555555"
	prefix   = "pushsync.events"
	stream   = "PUSHSYNC_EVENTS"
)

func tok(i int) string { return fmt.Sprintf("%064x", i) }

// recorder is a Notifier that records pushes and answers with a scripted
// error per device token.
type recorder struct {
	mu     sync.Mutex
	pushes []*dispatcher.Push
	times  []time.Time // arrival of each push
	answer func(p *dispatcher.Push, attempt int) error
	tries  map[string]int
	block  chan struct{} // if set, Notify waits on it
}

func (r *recorder) Notify(ctx context.Context, p *dispatcher.Push) error {
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tries == nil {
		r.tries = map[string]int{}
	}
	r.tries[p.Device.Token]++
	if r.answer != nil {
		if err := r.answer(p, r.tries[p.Device.Token]); err != nil {
			return err
		}
	}
	r.pushes = append(r.pushes, p)
	r.times = append(r.times, time.Now())
	return nil
}

// firstAt returns when the first push carrying syncCount arrived.
func (r *recorder) firstAt(syncCount int64) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range r.pushes {
		if p.Event.SyncCount == syncCount {
			return r.times[i]
		}
	}
	return time.Time{}
}

func (r *recorder) all() []*dispatcher.Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*dispatcher.Push(nil), r.pushes...)
}

// attempts counts the sends to a token, accepted or not.
func (r *recorder) attempts(token string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tries[token]
}

func (r *recorder) tokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.pushes {
		out = append(out, p.Device.Token)
	}
	sort.Strings(out)
	return out
}

type env struct {
	ns       *testenv.NATS
	js       jetstream.JetStream
	reg      *registry.Registry
	pub      *event.Publisher
	apns     *recorder
	fcm      *recorder
	metrics  *prometheus.Registry
	logs     *testenv.LogBuffer // the running dispatcher's log
	origin   registry.Device
	expected []string // tokens that should get a push for "settings"
	// cancel ends the context of the dispatcher started last, as a
	// SIGTERM does, without waiting for Run to return.
	cancel context.CancelFunc
}

func setup(t *testing.T) *env {
	t.Helper()
	rdb, keyPrefix := testenv.Redis(t)
	ns := testenv.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if _, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: stream, SubjectPrefix: prefix, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: stream, SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(rdb, registry.Options{KeyPrefix: keyPrefix})
	e := &env{ns: ns, js: js, reg: reg, pub: pub, apns: &recorder{}, fcm: &recorder{}}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	mustPut(t, reg, registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{
		Topic: "com.example", KeyID: "KEY1234567", TeamID: "TEAM123456",
		AuthKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}})
	mustPut(t, reg, registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{
		ProjectID: "demo", ServiceAccount: testenv.ServiceAccount("demo")}})
	if err := reg.SetPoolPush(ctx, pool, registry.PoolPush{Apps: map[registry.Platform]string{
		registry.APNS: "ios", registry.APNSSandbox: "ios", registry.GCM: "android"}}); err != nil {
		t.Fatal(err)
	}
	register := func(id string, p registry.Platform, token string, datasets ...string) registry.Device {
		d, _, err := reg.RegisterDevice(ctx, pool, id, p, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, ds := range datasets {
			if err := reg.Subscribe(ctx, pool, id, ds, d.ID); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	register(identity, registry.APNS, tok(1), "settings")
	register(identity, registry.APNSSandbox, tok(2), "settings", "other")
	register(identity, registry.GCM, "fcm-3", "settings")
	e.origin = register(identity, registry.GCM, "fcm-origin", "settings")
	register(identity, registry.GCM, "fcm-unsubscribed", "other")
	register(stranger, registry.GCM, "fcm-stranger", "settings")
	e.expected = []string{tok(1), tok(2), "fcm-3"}
	sort.Strings(e.expected)
	return e
}

func mustPut(t *testing.T, reg *registry.Registry, app registry.App) {
	t.Helper()
	if _, err := reg.PutApp(context.Background(), app); err != nil {
		t.Fatal(err)
	}
}

func (e *env) start(t *testing.T, mutate func(*dispatcher.Options)) (stop func()) {
	t.Helper()
	opts := dispatcher.Options{
		Stream: stream, SubjectPrefix: prefix, Consumer: "dispatcher",
		AckWait: 5 * time.Second, MaxDeliver: 5, RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond,
		Workers: 8, MaxConcurrentSends: 16, SendTimeout: 2 * time.Second,
	}
	if mutate != nil {
		mutate(&opts)
	}
	e.metrics = prometheus.NewRegistry()
	e.logs = &testenv.LogBuffer{}
	d, err := dispatcher.New(e.js, e.reg, map[registry.AppKind]dispatcher.Notifier{
		registry.KindAPNs: e.apns, registry.KindFCM: e.fcm,
	}, opts, zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), e.logs)), e.metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for d.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("dispatcher did not become ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *env) publish(t *testing.T, dataset string, syncCount int64, origin string) {
	t.Helper()
	_, err := e.pub.Publish(context.Background(), &event.DatasetChanged{
		IdentityPoolID: pool, IdentityID: identity, DatasetName: dataset,
		SyncCount: syncCount, OriginDeviceID: origin, ChangedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// deviceID returns the id of the identity's device with token.
func (e *env) deviceID(t *testing.T, token string) string {
	t.Helper()
	reg, err := e.reg.Registration(context.Background(), pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range reg.Devices {
		if d.Token == token {
			return d.ID
		}
	}
	t.Fatalf("no device with token %s", token)
	return ""
}

func (e *env) allTokens() []string {
	got := append(e.apns.tokens(), e.fcm.tokens()...)
	sort.Strings(got)
	return got
}

func (e *env) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return counterIn(t, e.metrics, name, labels...)
}

// counterIn sums the counters name with labels in reg.
func counterIn(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func (e *env) waitCounter(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.counter(t, name, labels...) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, e.counter(t, name, labels...), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFanOutReachesSubscribedDevicesExceptOrigin(t *testing.T) {
	e := setup(t)
	e.start(t, nil)
	e.publish(t, "settings", 3, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if got := e.allTokens(); strings.Join(got, ",") != strings.Join(e.expected, ",") {
		t.Fatalf("pushed to %v, want %v", got, e.expected)
	}
	for _, p := range append(e.apns.pushes, e.fcm.pushes...) {
		if p.Event.SyncCount != 3 || p.Event.DatasetName != "settings" {
			t.Errorf("push carries %+v", p.Event)
		}
		wantApp := map[registry.Platform]string{registry.APNS: "ios", registry.APNSSandbox: "ios", registry.GCM: "android"}[p.Device.Platform]
		if p.App.Name != wantApp {
			t.Errorf("%s device went through app %s, want %s", p.Device.Platform, p.App.Name, wantApp)
		}
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "accepted"); n != 3 {
		t.Errorf("accepted pushes metric = %v, want 3", n)
	}
	// Without an origin, the origin device is pushed too.
	e.publish(t, "settings", 4, "")
	e.waitCounter(t, 2, "pushsync_events_consumed_total", "result", "delivered")
	if got := len(e.allTokens()); got != 7 {
		t.Fatalf("%d pushes after the second event, want 7", got)
	}
}

func TestUnsubscribedDatasetAndUnconfiguredPool(t *testing.T) {
	e := setup(t)
	e.start(t, nil)
	e.publish(t, "nobody-listens", 1, "")
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "no_subscribers")
	if err := e.reg.SetPoolPush(context.Background(), pool, registry.PoolPush{}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "settings", 1, "")
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "push_disabled")
	if got := e.allTokens(); len(got) != 0 {
		t.Fatalf("pushed to %v", got)
	}
	// Subscribers whose platforms have no app: told apart from an event
	// no device subscribed to.
	if err := e.reg.SetPoolPush(context.Background(), pool, registry.PoolPush{Apps: map[registry.Platform]string{registry.APNS: "ios"}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "other", 1, "")
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "no_app")
	if got := e.allTokens(); len(got) != 0 {
		t.Fatalf("pushed to %v", got)
	}
}

func TestMalformedEventsAreTerminatedAndCounted(t *testing.T) {
	e := setup(t)
	e.start(t, nil)
	ctx := context.Background()
	good := &event.DatasetChanged{Version: 1, IdentityPoolID: pool, IdentityID: identity, DatasetName: "settings", SyncCount: 9, ChangedAt: time.Now()}
	goodSubject := event.Subject(prefix, good)
	bad := []struct{ subject, data, reason string }{
		{goodSubject, "not json", event.ReasonInvalidJSON},
		{goodSubject, `{"version":7}`, event.ReasonUnsupportedVersion},
		{goodSubject, `{"version":1,"identityPoolId":"x"}`, event.ReasonInvalidField},
		{prefix + ".a.b.c", mustMarshal(t, good), event.ReasonSubjectMismatch},
	}
	for _, b := range bad {
		if _, err := e.js.Publish(ctx, b.subject, []byte(b.data)); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bad {
		e.waitCounter(t, 1, "pushsync_events_malformed_total", "reason", b.reason)
	}
	// The worker is alive and delivers the next good event.
	e.publish(t, "settings", 10, "")
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	// Terminated messages are not redelivered: the consumer has nothing
	// pending or waiting for an ack.
	time.Sleep(200 * time.Millisecond)
	cons, err := e.js.Consumer(ctx, stream, "dispatcher")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Fatalf("consumer state pending=%d ackPending=%d redelivered=%d", info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
	if n := testutil.CollectAndCount(e.metrics, "pushsync_events_malformed_total"); n != 4 {
		t.Fatalf("malformed reasons counted: %d", n)
	}
}

func mustMarshal(t *testing.T, e *event.DatasetChanged) string {
	b, err := event.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRetryableFailureIsRedelivered(t *testing.T) {
	e := setup(t)
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		if attempt == 1 {
			return &dispatcher.Error{Class: dispatcher.Retry, Reason: "UNAVAILABLE"}
		}
		return nil
	}
	e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "retry"); n != 1 {
		t.Fatalf("retried events = %v, want 1", n)
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "retry", "reason", "UNAVAILABLE"); n != 1 {
		t.Fatalf("retry pushes = %v", n)
	}
	// The FCM device got its push on the second delivery.
	if got := e.fcm.tokens(); len(got) < 1 || !contains(got, "fcm-3") {
		t.Fatalf("fcm pushes %v", got)
	}
}

func TestPermanentAndDeadTokenFailuresAreNotRetried(t *testing.T) {
	e := setup(t)
	e.apns.answer = func(p *dispatcher.Push, _ int) error {
		if p.Device.Token == tok(1) {
			return &dispatcher.Error{Class: dispatcher.TokenDead, Reason: "Unregistered"}
		}
		return &dispatcher.Error{Class: dispatcher.Permanent, Reason: "BadTopic"}
	}
	e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	time.Sleep(300 * time.Millisecond) // longer than the retry delay
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "retry"); n != 0 {
		t.Fatalf("event was retried %v times", n)
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "token_dead", "reason", "Unregistered"); n != 1 {
		t.Fatalf("token_dead = %v", n)
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "permanent", "reason", "BadTopic"); n != 1 {
		t.Fatalf("permanent = %v", n)
	}
}

func TestRetriesEndAfterMaxDeliver(t *testing.T) {
	e := setup(t)
	e.fcm.answer = func(*dispatcher.Push, int) error {
		return &dispatcher.Error{Class: dispatcher.Retry, Reason: "INTERNAL"}
	}
	e.start(t, func(o *dispatcher.Options) { o.MaxDeliver = 3 })
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "abandoned")
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "retry"); n != 2 {
		t.Fatalf("retries = %v, want 2 before the third and last delivery", n)
	}
}

func TestEventsPublishedWhileDownAreDeliveredAfterStart(t *testing.T) {
	e := setup(t)
	stop := e.start(t, nil)
	stop() // the consumer exists, the worker is gone
	for i := int64(1); i <= 20; i++ {
		e.publish(t, "settings", i, e.origin.ID)
	}
	e.start(t, nil)
	e.waitCounter(t, 20, "pushsync_events_consumed_total", "result", "delivered")
	// Every device ends with the latest state, and never gets one state
	// twice; an older state that arrives after a newer one is not pushed.
	latest, seen := map[string]int64{}, map[string]bool{}
	for _, p := range append(e.apns.all(), e.fcm.all()...) {
		k := fmt.Sprint(p.Device.Token, "/", p.Event.SyncCount)
		if seen[k] {
			t.Fatalf("pushed %s twice", k)
		}
		seen[k] = true
		latest[p.Device.Token] = max(latest[p.Device.Token], p.Event.SyncCount)
	}
	if len(latest) != 3 {
		t.Fatalf("devices pushed: %v", latest)
	}
	for tok, n := range latest {
		if n != 20 {
			t.Fatalf("device %s last got sync count %d, want 20", tok, n)
		}
	}
}

func TestRedeliveryDoesNotPushAgain(t *testing.T) {
	e := setup(t)
	// The FCM device fails once, so the event is redelivered: the APNs
	// devices that accepted the first time are not pushed again.
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		if attempt == 1 {
			return &dispatcher.Error{Class: dispatcher.Retry, Reason: "UNAVAILABLE"}
		}
		return nil
	}
	e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if got := e.allTokens(); strings.Join(got, ",") != strings.Join(e.expected, ",") {
		t.Fatalf("pushed to %v, want each of %v once", got, e.expected)
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "skipped", "reason", "already_sent"); n != 2 {
		t.Fatalf("already_sent skips = %v, want 2 (the APNs devices on redelivery)", n)
	}
	// An older change arriving late is not pushed either.
	e.publish(t, "settings", 4, e.origin.ID)
	e.waitCounter(t, 2, "pushsync_events_consumed_total", "result", "delivered")
	if got := len(e.allTokens()); got != 3 {
		t.Fatalf("%d pushes after a stale event, want 3", got)
	}
}

func TestExpiredEventsAreDroppedNotSent(t *testing.T) {
	e := setup(t)
	e.start(t, func(o *dispatcher.Options) { o.PushTTL = time.Minute })
	_, err := e.pub.Publish(context.Background(), &event.DatasetChanged{
		IdentityPoolID: pool, IdentityID: identity, DatasetName: "settings", SyncCount: 9, ChangedAt: time.Now().Add(-2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "expired")
	if got := e.allTokens(); len(got) != 0 {
		t.Fatalf("a stale change was pushed to %v", got)
	}
	e.publish(t, "settings", 10, "")
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	for _, p := range append(e.apns.all(), e.fcm.all()...) {
		if want := p.Event.ChangedAt.Add(time.Minute); !p.Expires.Equal(want) {
			t.Fatalf("push expires %v, want the change time plus the TTL (%v)", p.Expires, want)
		}
	}
}

func TestRetryBudgetRetriesInProcess(t *testing.T) {
	e := setup(t)
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		if attempt <= 2 {
			return &dispatcher.Error{Class: dispatcher.Retry, Reason: "INTERNAL"}
		}
		return nil
	}
	e.start(t, func(o *dispatcher.Options) { o.RetryBudget = 3 * time.Second })
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "retry"); n != 0 {
		t.Fatalf("the event went back to the broker %v times; the budget should have covered two failures", n)
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "retry", "reason", "INTERNAL"); n != 2 {
		t.Fatalf("failed attempts = %v, want 2", n)
	}
}

func TestRetryAfterBeyondTheBudgetGoesToTheBroker(t *testing.T) {
	e := setup(t)
	var mu sync.Mutex
	var times []time.Time
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if attempt == 1 {
			return &dispatcher.Error{Class: dispatcher.Retry, Reason: "QUOTA_EXCEEDED", RetryAfter: 1500 * time.Millisecond}
		}
		return nil
	}
	e.start(t, func(o *dispatcher.Options) { o.RetryBudget = 500 * time.Millisecond })
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 || times[1].Sub(times[0]) < 1500*time.Millisecond {
		t.Fatalf("attempts at %v: the second must wait for Retry-After", times)
	}
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "retry"); n != 1 {
		t.Fatalf("broker retries = %v, want 1", n)
	}
}

func TestConfigErrorSuspendsTheApp(t *testing.T) {
	e := setup(t)
	var calls atomic.Int32
	e.apns.answer = func(*dispatcher.Push, int) error {
		calls.Add(1)
		return &dispatcher.Error{Class: dispatcher.Config, Reason: "InvalidProviderToken"}
	}
	e.start(t, func(o *dispatcher.Options) { o.ConfigBackoff = time.Hour; o.MaxDeliver = 3 })
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "retry")
	e.publish(t, "settings", 6, e.origin.ID)
	e.waitCounter(t, 2, "pushsync_pushes_total", "reason", "app_suspended")
	// The first refusal suspends the app: later pushes through it are not
	// attempted, and the event waits in the broker.
	if n := calls.Load(); n > 2 {
		t.Fatalf("%d requests through a refused app", n)
	}
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "delivered"); n != 0 {
		t.Fatal("an event with a refused app was acked")
	}
	if v := gaugeValue(t, e, "pushsync_app_suspended"); v != 1 {
		t.Fatalf("pushsync_app_suspended = %v", v)
	}
}

// TestReplacedCredentialsEndTheSuspension: an operator who replaces the
// credentials of a suspended app has its pushes tried with them at once,
// not after the suspension and the cached app run out.
func TestReplacedCredentialsEndTheSuspension(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.apns.answer = func(p *dispatcher.Push, _ int) error {
		if p.App.Revision < 2 {
			return &dispatcher.Error{Class: dispatcher.Config, Reason: "InvalidProviderToken"}
		}
		return nil
	}
	e.start(t, func(o *dispatcher.Options) {
		o.ConfigBackoff, o.AppCacheTTL, o.MaxDeliver = time.Hour, time.Hour, 1000
	})
	e.publish(t, "settings", 5, e.origin.ID) // refused, and retried in an hour
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "retry")
	e.publish(t, "settings", 6, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_pushes_total", "reason", "app_suspended")
	if v := gaugeValue(t, e, "pushsync_app_suspended"); v != 1 {
		t.Fatalf("pushsync_app_suspended = %v, want 1", v)
	}
	app, err := e.reg.App(ctx, "ios")
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, e.reg, app) // a rotation: revision 2
	// A suspended route reads its app at most once a second.
	time.Sleep(1100 * time.Millisecond)
	e.publish(t, "settings", 7, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if v := gaugeValue(t, e, "pushsync_app_suspended"); v != 0 {
		t.Fatalf("pushsync_app_suspended = %v after the app accepted its new credentials", v)
	}
}

// TestSandboxConfigErrorLeavesProductionAlone: one app serves APNS and
// APNS_SANDBOX devices through two hosts, and credentials the sandbox
// refuses (a key scoped to production, say) must not stop production.
func TestSandboxConfigErrorLeavesProductionAlone(t *testing.T) {
	e := setup(t)
	e.apns.answer = func(p *dispatcher.Push, _ int) error {
		if p.Device.Platform == registry.APNSSandbox {
			return &dispatcher.Error{Class: dispatcher.Config, Reason: "BadEnvironmentKeyIdInToken"}
		}
		return nil
	}
	e.start(t, func(o *dispatcher.Options) { o.ConfigBackoff = time.Hour })
	e.publish(t, "other", 1, "") // the sandbox device and an FCM one
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "retry")
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_pushes_total", "platform", "APNS_SANDBOX", "reason", "app_suspended")
	e.waitCounter(t, 2, "pushsync_events_consumed_total", "result", "retry")
	if n := e.counter(t, "pushsync_pushes_total", "platform", "APNS", "reason", "app_suspended"); n != 0 {
		t.Fatalf("%v production pushes skipped for a sandbox refusal", n)
	}
	var prod bool
	for _, p := range e.apns.all() {
		prod = prod || (p.Device.Token == tok(1) && p.Event.DatasetName == "settings")
	}
	if !prod {
		t.Fatal("the production device got no push while only the sandbox refused the app")
	}
	if v := gaugeValue(t, e, "pushsync_app_suspended"); v != 1 {
		t.Fatalf("pushsync_app_suspended = %v, want 1 while the sandbox route is suspended", v)
	}
}

func TestDeadTokensRemoveTheDevice(t *testing.T) {
	e := setup(t)
	e.fcm.answer = func(p *dispatcher.Push, _ int) error {
		if p.Device.Token == "fcm-3" {
			return &dispatcher.Error{Class: dispatcher.TokenDead, Reason: "UNREGISTERED"}
		}
		return nil
	}
	e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_devices_removed_total", "reason", "UNREGISTERED")
	reg, err := e.reg.Registration(context.Background(), pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range reg.Devices {
		if d.Token == "fcm-3" {
			t.Fatal("the dead device is still registered")
		}
	}
}

// TestAppRefusingEveryDeviceKeepsThem: a platform app that reports one
// device after another not of its project, accepting none, may be
// misconfigured (a wrong project, topic or environment makes every token
// look dead): no device is removed, after MaxDeadRun such devices the app
// is suspended, and once it accepts a push again, a dead token removes
// its device.
func TestAppRefusingEveryDeviceKeepsThem(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for i := range 5 {
		d, _, err := e.reg.RegisterDevice(ctx, pool, identity, registry.GCM, fmt.Sprintf("fcm-extra-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.reg.Subscribe(ctx, pool, identity, "settings", d.ID); err != nil {
			t.Fatal(err)
		}
	}
	var wrongProject atomic.Bool
	wrongProject.Store(true)
	e.fcm.answer = func(p *dispatcher.Push, _ int) error {
		if wrongProject.Load() || p.Device.Token == "fcm-extra-0" {
			return &dispatcher.Error{Class: dispatcher.TokenDead, Reason: "SENDER_ID_MISMATCH", ForApp: true}
		}
		return nil
	}
	e.start(t, func(o *dispatcher.Options) { o.MaxDeadRun = 2; o.ConfigBackoff = 300 * time.Millisecond })
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "retry")
	fcmDevices := func() int {
		reg, err := e.reg.Registration(ctx, pool, identity)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range reg.Devices {
			if d.Platform == registry.GCM {
				n++
			}
		}
		return n
	}
	// fcm-3, the five extra, the origin and the unsubscribed one: none of
	// the six pushed to is removed.
	if n := fcmDevices(); n != 8 {
		t.Fatalf("%d FCM devices left, want 8: an app that never accepted a push had devices removed", n)
	}
	if v := gaugeValue(t, e, "pushsync_app_suspended"); v != 1 {
		t.Fatalf("pushsync_app_suspended = %v, want 1", v)
	}

	// Fixed, the app accepts the others, and the one dead token among
	// them removes its device.
	wrongProject.Store(false)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	reg, err := e.reg.Registration(ctx, pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range reg.Devices {
		if d.Token == "fcm-extra-0" {
			t.Fatalf("after the app accepted pushes again, a dead token kept its device")
		}
	}
}

// TestTokenOfAnotherEnvironmentKeepsTheDeviceUntilTheAppIsConfirmed: APNs
// answers BadDeviceToken for a token of the other environment, and
// DeviceTokenNotForTopic for one of another app, so with a wrong
// environment or topic every device looks dead. As long as the app has
// accepted no push on a platform, such an answer removes no device, even
// for an app with fewer devices than MaxDeadRun; once it has accepted one
// there, the answer is taken as final.
func TestTokenOfAnotherEnvironmentKeepsTheDeviceUntilTheAppIsConfirmed(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	d, _, err := e.reg.RegisterDevice(ctx, pool, identity, registry.APNS, tok(9))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Subscribe(ctx, pool, identity, "settings", d.ID); err != nil {
		t.Fatal(err)
	}
	var wrongEnvironment atomic.Bool
	wrongEnvironment.Store(true)
	e.apns.answer = func(p *dispatcher.Push, _ int) error {
		if wrongEnvironment.Load() || p.Device.Token == tok(1) {
			return &dispatcher.Error{Class: dispatcher.TokenDead, Reason: "BadDeviceToken", ForApp: true}
		}
		return nil
	}
	e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 2, "pushsync_events_consumed_total", "result", "retry")
	apnsTokens := func() []string {
		reg, err := e.reg.Registration(ctx, pool, identity)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range reg.Devices {
			if d.Platform != registry.GCM {
				out = append(out, d.Token)
			}
		}
		sort.Strings(out)
		return out
	}
	if got, want := strings.Join(apnsTokens(), ","), strings.Join([]string{tok(1), tok(2), tok(9)}, ","); got != want {
		t.Fatalf("APNs devices left %s, want all three: an app that never accepted a push had devices removed", got)
	}
	if n := e.counter(t, "pushsync_devices_removed_total"); n != 0 {
		t.Fatalf("pushsync_devices_removed_total = %v, want 0", n)
	}

	// Fixed, the app accepts tok(9) in production: tok(1), still refused
	// there, is removed. The sandbox has accepted tok(2) by then.
	wrongEnvironment.Store(false)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if got, want := strings.Join(apnsTokens(), ","), strings.Join([]string{tok(2), tok(9)}, ","); got != want {
		t.Fatalf("APNs devices left %s, want %s", got, want)
	}
}

func gaugeValue(t *testing.T, e *env, name string) float64 {
	return gaugeIn(t, e.metrics, name)
}

// waitCoalescing waits until the dispatcher holds n events for coalescing
// (pushsync_events_coalescing).
func (e *env) waitCoalescing(t *testing.T, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gaugeValue(t, e, "pushsync_events_coalescing") != n {
		if time.Now().After(deadline) {
			t.Fatalf("pushsync_events_coalescing = %v, want %v events in the window", gaugeValue(t, e, "pushsync_events_coalescing"), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gaugeIn returns the value of the gauge name in reg, -1 if there is none.
func gaugeIn(t *testing.T, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

func TestShutdownFinishesInFlightSends(t *testing.T) {
	e := setup(t)
	e.apns.block = make(chan struct{})
	e.fcm.block = e.apns.block
	stop := e.start(t, nil)
	e.publish(t, "settings", 5, e.origin.ID)
	// Wait until the sends are in flight, then shut down while they block.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(gauge(t, e.metrics, "pushsync_pushes_in_flight")) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("sends never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Run returned with sends in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(e.apns.block)
	<-stopped
	if got := e.allTokens(); len(got) != 3 {
		t.Fatalf("in-flight sends did not finish: %v", got)
	}
	// The message was acked: nothing waits for redelivery.
	info, err := mustConsumer(t, e).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("after shutdown: ackPending=%d pending=%d", info.NumAckPending, info.NumPending)
	}
}

// TestShutdownBeginsNoNewSends: a stop lets the sends in flight finish
// but begins none of those still queued behind them, so that the drain
// lasts one send, not every fan-out in flight; their event goes back to the
// broker untried (not counted against MaxDeliver) and the next worker
// pushes the devices left, not the one already pushed.
func TestShutdownBeginsNoNewSends(t *testing.T) {
	e := setup(t)
	e.apns.block = make(chan struct{})
	e.fcm.block = e.apns.block
	opts := func(o *dispatcher.Options) { o.MaxConcurrentSends = 1; o.MaxDeliver = 1 }
	stop := e.start(t, opts)
	e.publish(t, "settings", 5, e.origin.ID)
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(gauge(t, e.metrics, "pushsync_pushes_in_flight")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no send started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.cancel() // SIGTERM, with one send in flight and two queued
	close(e.apns.block)
	stop()
	first := e.allTokens()
	if len(first) != 1 {
		t.Fatalf("pushed to %v during the stop, want only the send in flight", first)
	}
	if n := e.counter(t, "pushsync_pushes_total", "result", "skipped", "reason", "stopping"); n != 2 {
		t.Errorf("pushes skipped for the stop = %v, want 2", n)
	}
	// The next worker takes the event at once, as a first try (MaxDeliver
	// 1), and pushes the two devices left.
	e.start(t, opts)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if got := e.allTokens(); strings.Join(got, ",") != strings.Join(e.expected, ",") {
		t.Fatalf("pushed to %v in all, want %v once each", got, e.expected)
	}
}

// TestShutdownEndsRetriesInProcess: a push retried in the worker within
// its retry budget is not retried any more once the dispatcher stops; its
// event goes back to the broker, and the stop does not wait out the budget.
func TestShutdownEndsRetriesInProcess(t *testing.T) {
	e := setup(t)
	down := e.fcmDown()
	stop := e.start(t, func(o *dispatcher.Options) { o.RetryBudget = time.Hour })
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 2, "pushsync_pushes_total", "platform", "GCM", "result", "retry")
	e.cancel()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		down.Store(false) // for the retry to end and Run to return
		t.Fatal("Run did not return after the stop: it waits out the retry budget of a failing push")
	}
	info, err := mustConsumer(t, e).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 0 {
		t.Fatalf("the event was acked (ack floor %d), not handed back", info.AckFloor.Stream)
	}
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "retry"); n != 1 {
		t.Errorf("events consumed as retry = %v, want 1", n)
	}
}

// TestShutdownHandsBackCoalescedEvents: events waiting out their
// coalescing window when the dispatcher stops go back to the broker
// untried, rather than each beginning a fan-out after the stop; the next
// worker pushes them.
func TestShutdownHandsBackCoalescedEvents(t *testing.T) {
	e := setup(t)
	// A window the stop surely comes within, on a busy machine too: the
	// stop, not the window, ends it.
	stop := e.start(t, func(o *dispatcher.Options) { o.CoalesceWindow = time.Minute; o.MaxDeliver = 1 })
	e.publish(t, "settings", 5, e.origin.ID)
	e.publish(t, "settings", 6, e.origin.ID)
	// Both events wait in the window, not one of them on its way to the
	// worker when it stops.
	e.waitCoalescing(t, 2)
	stop()
	if got := e.allTokens(); len(got) != 0 {
		t.Fatalf("pushed to %v after the stop", got)
	}
	if g := gaugeValue(t, e, "pushsync_events_coalescing"); g != 0 {
		t.Fatalf("pushsync_events_coalescing = %v after the stop, want 0", g)
	}
	e.start(t, func(o *dispatcher.Options) { o.MaxDeliver = 1 })
	// The newest change reaches every device; the older one, superseded,
	// may have been acked in the stop.
	newest := func() string {
		var got []string
		for _, p := range append(e.apns.all(), e.fcm.all()...) {
			if p.Event.SyncCount == 6 {
				got = append(got, p.Device.Token)
			}
		}
		sort.Strings(got)
		return strings.Join(got, ",")
	}
	for deadline := time.Now().Add(10 * time.Second); newest() != strings.Join(e.expected, ","); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sync count 6 pushed to %v after the restart, want %v once each", newest(), e.expected)
		}
	}
}

func mustConsumer(t *testing.T, e *env) jetstream.Consumer {
	cons, err := e.js.Consumer(context.Background(), stream, "dispatcher")
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	return prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name {
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.GaugeValue, mf.GetMetric()[0].GetGauge().GetValue())
			}
		}
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// fcmDown makes FCM answer UNAVAILABLE until the flag it returns is
// cleared.
func (e *env) fcmDown() *atomic.Bool {
	broken := new(atomic.Bool)
	broken.Store(true)
	e.fcm.answer = func(*dispatcher.Push, int) error {
		if broken.Load() {
			return &dispatcher.Error{Class: dispatcher.Retry, Reason: "UNAVAILABLE"}
		}
		return nil
	}
	return broken
}

// deadLetters is a dead-letter stream on the test's NATS.
func (e *env) deadLetters(t *testing.T) *event.DeadLetters {
	t.Helper()
	dl, err := event.NewDeadLetters(context.Background(), e.js, event.DeadLetterConfig{Stream: "DEAD", SubjectPrefix: "pushsync.dead", EventSubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return dl
}

func TestExhaustedEventsAreDeadLetteredAndReplayable(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dl := e.deadLetters(t)
	broken := e.fcmDown()
	e.start(t, func(o *dispatcher.Options) { o.MaxDeliver = 2; o.DeadLetters = dl })
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "dead_lettered")
	letters, err := dl.List(ctx, 0, 10)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters %+v %v", letters, err)
	}
	l := letters[0]
	if l.Reason != "retries exhausted: GCM UNAVAILABLE" || l.Deliveries != 2 || !strings.Contains(string(l.Event), `"syncCount":5`) {
		t.Fatalf("dead letter %+v", l)
	}
	// The APNs devices got their pushes the first time; FCM is fixed, and
	// the replay reaches only the FCM device.
	broken.Store(false)
	if err := dl.Replay(ctx, l.Sequence); err != nil {
		t.Fatal(err)
	}
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if got := e.allTokens(); strings.Join(got, ",") != strings.Join(e.expected, ",") {
		t.Fatalf("after the replay pushed to %v, want each of %v once", got, e.expected)
	}
	if left, _ := dl.List(ctx, 0, 10); len(left) != 0 {
		t.Fatalf("a replayed dead letter is still listed: %+v", left)
	}
	if err := dl.Replay(ctx, l.Sequence); !errors.Is(err, event.ErrNoDeadLetter) {
		t.Fatalf("second replay: %v", err)
	}
}

// TestEventsThatWouldOutliveTheirTTLAreDeadLettered: a failing event whose
// next try would come after its push TTL is kept as a dead letter, not
// dropped as expired when it comes back; and its replay, long after the
// change, is pushed, the TTL counted from the replay.
func TestEventsThatWouldOutliveTheirTTLAreDeadLettered(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	dl := e.deadLetters(t)
	broken := e.fcmDown()
	const ttl = 3 * time.Second
	e.start(t, func(o *dispatcher.Options) {
		o.DeadLetters, o.PushTTL, o.RetryDelay, o.MaxRetryDelay = dl, ttl, 5*time.Second, 5*time.Second
	})
	changed := time.Now()
	e.publish(t, "settings", 5, e.origin.ID)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "dead_lettered")
	letters, err := dl.List(ctx, 0, 10)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters %+v %v", letters, err)
	}
	if l := letters[0]; l.Reason != "the push TTL ends before the next try: GCM UNAVAILABLE" || l.Deliveries != 1 {
		t.Fatalf("dead letter %+v", l)
	}

	broken.Store(false)
	time.Sleep(time.Until(changed.Add(ttl + 100*time.Millisecond)))
	if err := dl.Replay(ctx, letters[0].Sequence); err != nil {
		t.Fatal(err)
	}
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "expired"); n != 0 {
		t.Fatalf("the replay was dropped as expired")
	}
	if got := e.fcm.tokens(); !slices.Contains(got, "fcm-3") {
		t.Fatalf("the replay pushed to %v, want fcm-3 among them", got)
	}
}

// TestExpiredWhileRetriedIsDeadLettered: an event that failed and comes
// back after its push TTL (its dead letter could not be stored in time, or
// it waited in a backlog) is kept as a dead letter, not dropped as expired.
func TestExpiredWhileRetriedIsDeadLettered(t *testing.T) {
	e := setup(t)
	e.fcmDown()
	dl := &unstoredDeadLetters{}
	e.start(t, func(o *dispatcher.Options) {
		o.DeadLetters, o.PushTTL = dl, 2*time.Second
		o.RetryDelay, o.MaxRetryDelay = 3*time.Second, 3*time.Second
	})
	e.publish(t, "settings", 5, e.origin.ID)
	deadline := time.Now().Add(10 * time.Second)
	for dl.puts.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter tried: the next try would come after the push TTL")
		}
		time.Sleep(10 * time.Millisecond)
	}
	dl.fixed.Store(true) // the event comes back after its TTL
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "dead_lettered")
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "expired"); n != 0 {
		t.Fatalf("a failing event was dropped as expired")
	}
}

// unstoredDeadLetters fails to store dead letters until it is fixed.
type unstoredDeadLetters struct {
	fixed atomic.Bool
	puts  atomic.Int32
}

func (u *unstoredDeadLetters) Put(context.Context, string, string, []byte, string, uint64, []string) error {
	u.puts.Add(1)
	if !u.fixed.Load() {
		return errors.New("dead-letter stream unavailable")
	}
	return nil
}

// TestLastDeliveryWithoutVerdictComesBack: when an event's last delivery
// ends without a verdict (its dead letter could not be stored), the broker
// must deliver it again, and then it is kept as a dead letter without
// another try (a worker that died on its last delivery may have died of
// it); the consumer's own delivery limit would leave it in the stream
// unacknowledged and never delivered.
func TestLastDeliveryWithoutVerdictComesBack(t *testing.T) {
	e := setup(t)
	e.fcmDown()
	dl := &unstoredDeadLetters{}
	e.start(t, func(o *dispatcher.Options) {
		o.MaxDeliver = 2
		o.DeadLetters = dl
		o.MaxRetryDelay = 200 * time.Millisecond
	})
	e.publish(t, "settings", 5, e.origin.ID)
	deadline := time.Now().Add(10 * time.Second)
	for dl.puts.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dead letter tried %d times; want the event back after the first failed try", dl.puts.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "dead_lettered"); n != 0 {
		t.Fatalf("%v events counted dead-lettered while no dead letter was stored", n)
	}
	sends := e.fcm.attempts("fcm-3")
	if sends != 2 {
		t.Errorf("%d sends to the FCM device, want one per delivery, 2", sends)
	}
	dl.fixed.Store(true)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "dead_lettered")
	if n := e.fcm.attempts("fcm-3"); n != sends {
		t.Errorf("%d sends after the last delivery, want none: the event is only kept", n-sends)
	}
}

// TestCoalescingKeepsEveryOriginsPush: change 5 comes from one device and
// change 6 from another. Coalesced into one push of 6, that push must go to
// both devices, since each lacks the other's change.
func TestCoalescingKeepsEveryOriginsPush(t *testing.T) {
	e := setup(t)
	second := e.deviceID(t, tok(1))
	e.start(t, func(o *dispatcher.Options) { o.CoalesceWindow = 300 * time.Millisecond })
	e.publish(t, "settings", 5, e.origin.ID)
	e.publish(t, "settings", 6, second)
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "coalesced")
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	got := e.allTokens()
	for _, want := range []string{tok(1), "fcm-origin"} {
		if !contains(got, want) {
			t.Errorf("pushed to %v: %s, the origin of one of the two changes, got nothing", got, want)
		}
	}
}

// TestCoalescedRetryKeepsEveryOriginsPush: when the push to one of the two
// origins of a coalesced pair fails and the newest event goes back to the
// broker, it comes back with its own origin, which skips that device; the
// older change comes back too, so that the device still learns of it.
func TestCoalescedRetryKeepsEveryOriginsPush(t *testing.T) {
	e := setup(t)
	second := e.deviceID(t, "fcm-3")
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		if p.Device.Token == "fcm-3" && attempt == 1 {
			return &dispatcher.Error{Class: dispatcher.Retry, Reason: "UNAVAILABLE"}
		}
		return nil
	}
	e.start(t, func(o *dispatcher.Options) { o.CoalesceWindow = 300 * time.Millisecond })
	e.publish(t, "settings", 5, e.origin.ID)
	e.publish(t, "settings", 6, second)
	deadline := time.Now().Add(10 * time.Second)
	for !contains(e.fcm.tokens(), "fcm-3") {
		if time.Now().After(deadline) {
			t.Fatalf("fcm-3, origin of the newer change, never got the older one (tried %d times); pushed to %v", e.fcm.attempts("fcm-3"), e.allTokens())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCoalescedRetryWaitsForRetryAfter: when the push of a coalesced pair
// is refused with a Retry-After, the older event goes back to the broker
// for as long as the newest: the service would refuse it as well, and
// each early try uses up one of its deliveries.
func TestCoalescedRetryWaitsForRetryAfter(t *testing.T) {
	e := setup(t)
	second := e.deviceID(t, tok(1))
	e.fcm.answer = func(p *dispatcher.Push, attempt int) error {
		if p.Device.Token == "fcm-3" {
			return &dispatcher.Error{Class: dispatcher.Retry, Reason: "QUOTA_EXCEEDED", RetryAfter: time.Minute}
		}
		return nil
	}
	e.start(t, func(o *dispatcher.Options) { o.CoalesceWindow = 300 * time.Millisecond })
	e.publish(t, "settings", 5, e.origin.ID)
	e.publish(t, "settings", 6, second)
	e.waitCounter(t, 2, "pushsync_events_consumed_total", "result", "retry")
	// Ten times the longest backoff the test's options allow
	// (MaxRetryDelay): an event that ignored the Retry-After is back.
	time.Sleep(2 * time.Second)
	if n := e.fcm.attempts("fcm-3"); n != 1 {
		t.Errorf("fcm-3 was tried %d times within 2 s of FCM asking for a minute's wait, want once", n)
	}
}

// TestBudgetNeverOutlivesPushTTL: a device over its budget on two datasets
// has one change deferred twice; deferred again, it would come back older
// than the push TTL and be dropped, so the device would never learn of it.
func TestBudgetNeverOutlivesPushTTL(t *testing.T) {
	e := setup(t)
	e.start(t, func(o *dispatcher.Options) {
		o.DeviceBudget = 1
		o.BudgetWindow = time.Second
		o.PushTTL = 1500 * time.Millisecond
		o.Workers = 1
		o.RetryDelay = 50 * time.Millisecond
	})
	e.publish(t, "settings", 1, e.origin.ID) // spends the sandbox device's budget
	e.waitCounter(t, 1, "pushsync_events_consumed_total", "result", "delivered")
	e.publish(t, "other", 1, "")
	e.publish(t, "settings", 2, e.origin.ID)
	e.waitCounter(t, 3, "pushsync_events_consumed_total", "result", "delivered")
	if n := e.counter(t, "pushsync_events_consumed_total", "result", "expired"); n != 0 {
		t.Fatalf("%v events expired while deferred by the budget", n)
	}
	newest := map[string]int64{}
	for _, p := range e.apns.all() {
		if p.Device.Token == tok(2) {
			newest[p.Event.DatasetName] = max(newest[p.Event.DatasetName], p.Event.SyncCount)
		}
	}
	if newest["other"] != 1 || newest["settings"] != 2 {
		t.Fatalf("the sandbox device's newest pushes %v, want other 1 and settings 2", newest)
	}
}

func TestBurstIsCoalesced(t *testing.T) {
	e := setup(t)
	e.start(t, func(o *dispatcher.Options) { o.CoalesceWindow = 300 * time.Millisecond })
	for i := int64(1); i <= 100; i++ {
		e.publish(t, "settings", i, e.origin.ID)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		delivered := e.counter(t, "pushsync_events_consumed_total", "result", "delivered")
		coalesced := e.counter(t, "pushsync_events_consumed_total", "result", "coalesced")
		if delivered+coalesced == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v + coalesced %v, want 100", delivered, coalesced)
		}
		time.Sleep(20 * time.Millisecond)
	}
	perDevice := map[string][]int64{}
	for _, p := range append(e.apns.all(), e.fcm.all()...) {
		perDevice[p.Device.Token] = append(perDevice[p.Device.Token], p.Event.SyncCount)
	}
	if len(perDevice) != 3 {
		t.Fatalf("devices pushed: %v", perDevice)
	}
	for tok, counts := range perDevice {
		if len(counts) > 5 || slices.Max(counts) != 100 {
			t.Fatalf("device %s got sync counts %v: want a few pushes, the last state 100 among them", tok, counts)
		}
	}
	info, err := mustConsumer(t, e).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("after the burst: ackPending=%d pending=%d", info.NumAckPending, info.NumPending)
	}
}

func TestDeviceBudgetDefersButDeliversTheLatest(t *testing.T) {
	e := setup(t)
	const window = 2500 * time.Millisecond
	e.start(t, func(o *dispatcher.Options) { o.DeviceBudget = 2; o.BudgetWindow = window })
	for i := int64(1); i <= 2; i++ {
		e.publish(t, "settings", i, e.origin.ID)
		e.waitCounter(t, float64(i), "pushsync_events_consumed_total", "result", "delivered")
	}
	// The budget is spent: the third change is deferred, not dropped.
	e.publish(t, "settings", 3, e.origin.ID)
	e.waitCounter(t, 3, "pushsync_pushes_total", "result", "deferred", "reason", "budget")
	if got := len(e.allTokens()); got != 6 {
		t.Fatalf("%d pushes while over budget, want the 6 of the first two changes", got)
	}
	// Once the window has passed, the devices get the newest state.
	e.waitCounter(t, 3, "pushsync_events_consumed_total", "result", "delivered")
	last := map[string]int64{}
	for _, p := range append(e.apns.all(), e.fcm.all()...) {
		last[p.Device.Token] = max(last[p.Device.Token], p.Event.SyncCount)
	}
	for tok, n := range last {
		if n != 3 {
			t.Fatalf("device %s ended at sync count %d, want 3", tok, n)
		}
	}
	first, third := e.fcm.firstAt(1), e.fcm.firstAt(3)
	if third.Sub(first) < window {
		t.Fatalf("the deferred push came %v after the first, inside the %v window", third.Sub(first), window)
	}
}

func TestConsumerLagIsExported(t *testing.T) {
	e := setup(t)
	stop := e.start(t, nil)
	stop()
	for i := int64(1); i <= 7; i++ {
		e.publish(t, "settings", i, e.origin.ID)
	}
	// A worker that starts with a backlog reports it before it drains it:
	// hold the sends so the backlog stays.
	e.apns.block = make(chan struct{})
	e.fcm.block = e.apns.block
	e.start(t, func(o *dispatcher.Options) { o.Workers = 1 })
	deadline := time.Now().Add(10 * time.Second)
	for gaugeValue(t, e, "pushsync_consumer_pending_messages") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("pending gauge = %v, want the backlog (at least 5)", gaugeValue(t, e, "pushsync_consumer_pending_messages"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(e.apns.block)
}
