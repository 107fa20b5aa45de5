//go:build faults

package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// 1. kill -9 of one of two workers in the middle of a large fan-out.
func TestKillWorkerMidFanOut(t *testing.T) {
	const sends = 16 // dispatcher.max_concurrent_sends per worker
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL})
	// 2,000 events, each the only change of its (identity, dataset), so
	// that no redelivery is skipped as superseded by a later change.
	start := time.Now()
	r.seedIdentities(500, "settings", "game", "profile", "prefs")
	seeded := time.Since(start)
	r.setLatency(25 * time.Millisecond) // APNs/FCM answer in ~25 ms
	evs := r.nextEvents(2000)
	r.publish(evs)

	a := r.startDaemon("worker-a", daemonConfig{workers: 8, sends: sends})
	b := r.startDaemon("worker-b", daemonConfig{workers: 8, sends: sends})
	r.waitFraction(0.4, 60*time.Second)
	k := r.killWorker(a)
	before := len(r.received())

	v, took := r.settle(90 * time.Second)
	if !b.alive() || !b.ready() {
		t.Errorf("worker-b is not up and ready after the kill")
	}
	report.add(t, row{"1. kill -9 worker mid fan-out (2 workers)", len(evs), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("seeded 500 identities in %s; killed at %d/%d received; %s; rest delivered in %s; %s",
			seeded.Round(100*time.Millisecond), before, v.expected, r.checkKillDuplicates(k, v), took.Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
}

// 2a. A restart of the (single) NATS server while a worker consumes.
func TestNATSServerRestart(t *testing.T) {
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL})
	r.seedIdentities(50)
	r.setLatency(25 * time.Millisecond)
	evs := r.nextEvents(1000)
	r.publish(evs)
	w := r.startDaemon("worker", daemonConfig{})
	r.waitFraction(0.3, 60*time.Second)

	start := time.Now()
	ns.Restart()
	down := time.Since(start)
	w.waitReady(30 * time.Second)
	readyAfter := time.Since(start)
	more := r.nextEvents(200) // published after the restart
	r.publish(more)

	v, took := r.settle(90 * time.Second)
	report.add(t, row{"2a. NATS server restart (R1, file store)", len(evs) + len(more), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("restart at 30%% (server down %s); worker ready again after %s; longest pause in deliveries %s; all delivered %s after; %s",
			down.Round(time.Millisecond), readyAfter.Round(100*time.Millisecond), r.longestGap(start).Round(100*time.Millisecond), took.Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
}

// 2b. Loss of the stream leader of an R3 stream on a three-node cluster.
func TestNATSClusterStreamLeaderLoss(t *testing.T) {
	c := startCluster(t, 3)
	r := newRig(t, rigOptions{natsURL: c.URL, replicas: 3})
	r.seedIdentities(50)
	r.setLatency(25 * time.Millisecond)
	evs := r.nextEvents(1000)
	r.publish(evs)
	r.startDaemon("worker-1", daemonConfig{})
	r.startDaemon("worker-2", daemonConfig{})
	r.waitFraction(0.3, 60*time.Second)

	// The worst case: the stream leader is also the consumer leader.
	leader := r.colocateLeaders(20 * time.Second)
	consumerLeader := leader
	i := c.index(leader)
	if i < 0 {
		t.Fatalf("stream leader %q is not one of the cluster's servers", leader)
	}
	stoppedAt := time.Now()
	c.stop(i)
	newLeader, election := r.newStreamLeader(leader, stoppedAt)
	more := r.nextEvents(200) // published to the two survivors
	r.publish(more)

	v, took := r.settle(90 * time.Second)
	report.add(t, row{"2b. stream leader lost (3-node cluster, R3)", len(evs) + len(more), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("stopped stream leader %s at 30%% (also the consumer leader, %s); new stream leader %s after %s; longest pause in deliveries %s; all delivered %s after; %s",
			leader, consumerLeader, newLeader, election.Round(10*time.Millisecond), r.longestGap(stoppedAt).Round(100*time.Millisecond), took.Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
}

// 3. SIGKILL of redis-server (AOF everysec) while devices register and
// events flow, then a restart on the same port and directory.
func TestRedisCrashUnderLoad(t *testing.T) {
	ns := testenv.StartNATS(t)
	rs := startRedisServer(t)
	r := newRig(t, rigOptions{natsURL: ns.URL, redisAddrs: []string{rs.Addr}})
	r.seedIdentities(50)
	r.setLatency(10 * time.Millisecond)
	evs := r.nextEvents(800)
	w := r.startDaemon("worker", daemonConfig{})

	type registration struct {
		identity string
		dev      registry.Device
	}
	var (
		mu       sync.Mutex
		acked    []registration
		attempts int
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for g := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := "us-east-1:" + uuidish(0x5e9000+g, n+1)
				token := fmt.Sprintf("fcm-registration-%d-%d", g, n)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				d, _, err := r.reg.RegisterDevice(ctx, r.pool, id, registry.GCM, token)
				if err == nil {
					err = r.reg.Subscribe(ctx, r.pool, id, "settings", d.ID)
				}
				cancel()
				mu.Lock()
				attempts++
				if err == nil {
					acked = append(acked, registration{id, d})
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	pubErr := make(chan error, 1)
	go func() { // 800 events at ~200 per second
		for i := 0; i < len(evs); i += 20 {
			if err := r.tryPublish(evs[i : i+20]); err != nil {
				pubErr <- err
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		pubErr <- nil
	}()

	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	ackedBeforeKill := len(acked)
	mu.Unlock()
	rs.kill()
	killedAt := time.Now()
	time.Sleep(2 * time.Second)
	rs.start()
	downFor := time.Since(killedAt)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := <-pubErr; err != nil {
		t.Fatalf("publish: %v", err)
	}

	// Every acknowledged registration is in Redis after the crash.
	ctx := context.Background()
	lostRegs := 0
	for _, a := range acked {
		subs, err := r.reg.Subscribers(ctx, r.pool, a.identity, "settings")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, d := range subs {
			found = found || d.ID == a.dev.ID && d.Token == a.dev.Token
		}
		if !found {
			lostRegs++
		}
	}
	v, took := r.settle(90 * time.Second)
	retried := w.metric("pushsync_events_consumed_total", "result", "retry")
	report.add(t, row{"3. redis-server SIGKILL + restart (AOF everysec)", len(evs), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("registrations acknowledged %d (%d before the kill, %d attempts), lost %d; Redis down %s; worker handed %.0f events back to the broker meanwhile; all delivered %s after the last publish; %s",
			len(acked), ackedBeforeKill, attempts, lostRegs, downFor.Round(10*time.Millisecond), retried, took.Round(100*time.Millisecond), v.summary())})
	if lostRegs != 0 {
		t.Errorf("%d of %d acknowledged registrations lost in the Redis crash", lostRegs, len(acked))
	}
	if len(acked) == ackedBeforeKill {
		t.Errorf("no registration succeeded after the Redis restart")
	}
	assertLedger(t, v)
}

// 4. Every push service answers 503 for 30 s, then recovers.
func TestPushServiceOutage(t *testing.T) {
	const outage = 30 * time.Second
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL})
	r.seedIdentities(25, "settings", "game", "profile", "prefs") // 100 distinct (identity, dataset)
	r.setLatency(10 * time.Millisecond)
	w := r.startDaemon("worker", daemonConfig{})

	apnsDown := apnstest.ServiceUnavailable()
	fcmDown := fcmtest.Unavailable()
	r.prod.FailAll(&apnsDown)
	r.sandbox.FailAll(&apnsDown)
	r.fcm.FailAll(&fcmDown)
	start := time.Now()
	evs := r.nextEvents(100)
	r.publish(evs)
	time.Sleep(time.Until(start.Add(outage)))
	acceptedDuringOutage := len(r.received())
	r.prod.FailAll(nil)
	r.sandbox.FailAll(nil)
	r.fcm.FailAll(nil)
	recovered := time.Now()

	v, took := r.settle(90 * time.Second)
	// Request rate at the emulators, per second of the outage.
	perSecond := make([]int, int(outage/time.Second))
	for _, h := range r.allHits() {
		if h.start.Before(recovered) {
			if s := int(h.start.Sub(start) / time.Second); s >= 0 && s < len(perSecond) {
				perSecond[s]++
			}
		}
	}
	steady := perSecond[5:]
	peak, sum := 0, 0
	for _, n := range steady {
		peak = max(peak, n)
		sum += n
	}
	avg := float64(sum) / float64(len(steady))
	// The bound: once its backoff has grown, each event is tried at most
	// once per 0.8 × max_retry_delay, and each try makes at most three
	// requests per push: in-process retries after ~100 and ~200 ms fit in
	// retry_budget 500ms for APNs, and the Firebase SDK retries a 503 at
	// once and after 1 s within send_timeout 1.5s.
	const attemptsPerTry = 3
	bound := float64(attemptsPerTry*v.expected) / (0.8 * maxRetryDelay.Seconds())
	report.add(t, row{"4. APNs+FCM answer 503 for 30 s", len(evs), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("requests/s at the emulators during the outage: first 5 s %v, then avg %.1f, peak %d (bound %.0f); accepted during outage %d; all delivered %s after recovery; %s",
			perSecond[:5], avg, peak, bound, acceptedDuringOutage, took.Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
	assertNoDuplicates(t, v, w)
	if acceptedDuringOutage != 0 {
		t.Errorf("%d pushes accepted during the outage", acceptedDuringOutage)
	}
	if avg > bound || float64(peak) > 2*bound {
		t.Errorf("request rate during the outage not bounded: avg %.1f/s, peak %d/s, bound %.0f/s (per second: %v)", avg, peak, bound, perSecond)
	}
	if took > 2*maxRetryDelay+10*time.Second {
		t.Errorf("delivery took %s after recovery", took)
	}
}

// 5. 429 with Retry-After: the next attempt for the device waits for it.
func TestRetryAfterHonoured(t *testing.T) {
	const apnsRetryAfter, fcmRetryAfter = 2 * time.Second, 3 * time.Second
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL})
	r.seedIdentities(2)
	r.setLatency(5 * time.Millisecond)
	w := r.startDaemon("worker", daemonConfig{})

	id := r.ids[0]
	var apnsDev, fcmDev registry.Device
	for _, d := range id.others {
		switch {
		case d.Platform == registry.APNS && apnsDev.ID == "":
			apnsDev = d
		case d.Platform == registry.GCM && fcmDev.ID == "":
			fcmDev = d
		}
	}
	r.prod.FailToken(apnsDev.Token, apnstest.Failure{Status: 429, RetryAfter: apnsRetryAfter, Times: 2})
	quota := fcmtest.QuotaExceeded(fcmRetryAfter)
	quota.Times = 1
	r.fcm.FailToken(fcmDev.Token, quota)
	evs := r.nextEvents(2) // one event per identity; the second is not throttled
	r.publish(evs)

	v, took := r.settle(60 * time.Second)
	var notes []string
	check := func(name, token string, retryAfter time.Duration, wantThrottled int) {
		var hs []hit
		for _, h := range r.allHits() {
			if h.token == token {
				hs = append(hs, h)
			}
		}
		var desc []string
		throttled := 0
		for k, h := range hs {
			desc = append(desc, fmt.Sprintf("+%.2fs %d", h.start.Sub(hs[0].start).Seconds(), h.status))
			if h.status == 429 {
				throttled++
				if k+1 < len(hs) {
					if gap := hs[k+1].start.Sub(h.end); gap < retryAfter {
						t.Errorf("%s: next attempt %s after a 429 with Retry-After %s", name, gap, retryAfter)
					}
				}
			}
		}
		if throttled != wantThrottled || len(hs) == 0 || hs[len(hs)-1].status != 200 {
			t.Errorf("%s: attempts %v, want %d answered 429 and then 200", name, desc, wantThrottled)
		}
		notes = append(notes, fmt.Sprintf("%s (Retry-After %s): %s", name, retryAfter, strings.Join(desc, ", ")))
	}
	check("APNs device", apnsDev.Token, apnsRetryAfter, 2)
	check("FCM device", fcmDev.Token, fcmRetryAfter, 1)
	report.add(t, row{"5. 429 + Retry-After", len(evs), v.expected, v.received, v.lost, v.duplicated,
		strings.Join(notes, "; ") + fmt.Sprintf("; delivered in %s; %s", took.Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
	assertNoDuplicates(t, v, w)
}
