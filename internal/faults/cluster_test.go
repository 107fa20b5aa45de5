//go:build faults

//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package faults

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	"github.com/aws/aws-sdk-go/service/cognitosync"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// The scale-out scenarios: a three-node NATS cluster with the event stream
// and consumer on R3, a Redis Cluster of three masters (redis-server
// processes) and three pushsyncd workers sharing the durable consumer.

// newClusterRig starts the NATS cluster and the Redis Cluster and a rig on
// both. NATS goes first: its JetStream elects a meta leader while the Redis
// Cluster forms.
func newClusterRig(t *testing.T) (*natsCluster, *redisCluster, *rig) {
	t.Helper()
	nc := startCluster(t, 3)
	rc := startRedisCluster(t, 3)
	r := newRig(t, rigOptions{natsURL: nc.URL, replicas: 3, redisAddrs: rc.addrs()})
	return nc, rc, r
}

// startWorkers starts n pushsyncd workers, worker-1 to worker-n.
func (r *rig) startWorkers(n int, c daemonConfig) []*proc {
	r.t.Helper()
	ws := make([]*proc, n)
	for i := range ws {
		ws[i] = r.startDaemon(fmt.Sprintf("worker-%d", i+1), c)
	}
	return ws
}

// sdkSession is an AWS SDK session on the api process's endpoint.
func sdkSession(api *proc, creds *credentials.Credentials) *session.Session {
	return session.Must(session.NewSession(&aws.Config{Endpoint: aws.String("http://" + api.api), Region: aws.String("us-east-1"),
		Credentials: creds, MaxRetries: aws.Int(0)}))
}

// sdkSync is a device's sync through the AWS SDK: ListRecords from
// lastSyncCount for a session token, then UpdateRecords as the device,
// replacing one record last written at lastSyncCount. It checks that the
// dataset's sync count becomes lastSyncCount+1 and returns it.
func sdkSync(t *testing.T, c *cognitosync.CognitoSync, pool, identityID, dataset, deviceID string, lastSyncCount int64) int64 {
	t.Helper()
	list, err := c.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(identityID),
		DatasetName: aws.String(dataset), LastSyncCount: aws.Int64(lastSyncCount)})
	if err != nil {
		t.Fatalf("ListRecords: %v", err)
	}
	if aws.StringValue(list.SyncSessionToken) == "" || aws.Int64Value(list.DatasetSyncCount) != lastSyncCount {
		t.Fatalf("ListRecords of %s from %d: session token %q, dataset sync count %d", dataset, lastSyncCount, aws.StringValue(list.SyncSessionToken), aws.Int64Value(list.DatasetSyncCount))
	}
	up, err := c.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(identityID),
		DatasetName: aws.String(dataset), DeviceId: aws.String(deviceID), SyncSessionToken: list.SyncSessionToken,
		RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("state"),
			Value: aws.String(fmt.Sprint(lastSyncCount + 1)), SyncCount: aws.Int64(lastSyncCount)}}})
	if err != nil {
		t.Fatalf("UpdateRecords of %s at %d: %v", dataset, lastSyncCount, err)
	}
	// The record written carries the dataset's new sync count.
	if len(up.Records) != 1 || aws.Int64Value(up.Records[0].SyncCount) != lastSyncCount+1 {
		t.Fatalf("UpdateRecords of %s at %d answered %v, want the record at sync count %d", dataset, lastSyncCount, up.Records, lastSyncCount+1)
	}
	return lastSyncCount + 1
}

// delivered is what each worker's pushsync_events_consumed_total{result=
// "delivered"} says, for the report.
func delivered(ws []*proc) (counts []float64, busy int) {
	for _, w := range ws {
		n := 0.0
		if w.alive() {
			n = w.metric("pushsync_events_consumed_total", "result", "delivered")
		}
		counts = append(counts, n)
		if n > 0 {
			busy++
		}
	}
	return counts, busy
}

// 9a. The end-to-end flow on the clusters: devices registered and
// subscribed through the AWS SDK's Cognito Sync client, a change written
// with UpdateRecords through a pushsyncd api process, pushes fanned out by
// three workers.
func TestClusterEndToEnd(t *testing.T) {
	const (
		sdkIdentities = 6
		dataset       = "profile.v1" // a dot, to cover the subject encoding
		rounds        = 2
	)
	start := time.Now()
	_, rc, r := newClusterRig(t)
	// Identities seeded through the registry, each with its own hash slot,
	// so that every master holds some.
	r.seedIdentities(60)
	sizes := rc.assertSpread()
	r.setLatency(5 * time.Millisecond)
	ws := r.startWorkers(3, daemonConfig{})
	api := r.startDaemon("api", daemonConfig{role: "api"})
	setup := time.Since(start)
	ctx := context.Background()

	// One event for each seeded identity, published as a sync server would,
	// so that the workers read registrations on every master.
	direct := r.nextEvents(len(r.ids))
	r.publish(direct)

	cognitoIdentity := cognitoidentity.New(sdkSession(api, credentials.AnonymousCredentials))
	developer := cognitosync.New(sdkSession(api, credentials.NewStaticCredentials(devAccessKey, devSecretKey, "")))

	// An install is one app install: a device of an identity with its own
	// Cognito Sync client.
	type install struct {
		platform   registry.Platform
		token      string // as the ledger and the emulators see it
		subscribed bool
		deviceID   string
		c          *cognitosync.CognitoSync
	}
	type sdkIdentity struct {
		id       string
		installs []*install
	}
	// The last install registers but does not subscribe.
	platforms := []registry.Platform{registry.GCM, registry.APNS, registry.APNSSandbox, registry.GCM, registry.APNS}
	var ids []*sdkIdentity
	for i := range sdkIdentities {
		out, err := cognitoIdentity.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(r.pool)})
		if err != nil {
			t.Fatalf("GetId: %v", err)
		}
		id := &sdkIdentity{id: aws.StringValue(out.IdentityId)}
		for j, p := range platforms {
			in := &install{platform: p, token: r.token(p), subscribed: j < len(platforms)-1, c: developer}
			if i%2 == 0 {
				// Even identities sign as the app does, with credentials
				// of the identity; odd ones with the developer credentials.
				cr, err := cognitoIdentity.GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(id.id)})
				if err != nil {
					t.Fatalf("GetCredentialsForIdentity: %v", err)
				}
				c := cr.Credentials
				in.c = cognitosync.New(sdkSession(api, credentials.NewStaticCredentials(
					aws.StringValue(c.AccessKeyId), aws.StringValue(c.SecretKey), aws.StringValue(c.SessionToken))))
			}
			token := in.token
			if p != registry.GCM {
				token = strings.ToUpper(token) // iOS SDKs send upper-case hex
			}
			reg, err := in.c.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(r.pool), IdentityId: aws.String(id.id),
				Platform: aws.String(string(p)), Token: aws.String(token)})
			if err != nil {
				t.Fatalf("RegisterDevice %s: %v", p, err)
			}
			in.deviceID = aws.StringValue(reg.DeviceId)
			if in.subscribed {
				if _, err := in.c.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{IdentityPoolId: aws.String(r.pool), IdentityId: aws.String(id.id),
					DatasetName: aws.String(dataset), DeviceId: reg.DeviceId}); err != nil {
					t.Fatalf("SubscribeToDataset: %v", err)
				}
			}
			id.installs = append(id.installs, in)
		}
		ids = append(ids, id)
	}

	// In round k, install k of every identity syncs: ListRecords for a
	// session token, then UpdateRecords as that device. Each round waits
	// for its pushes, so that the next does not supersede them.
	for round := 1; round <= rounds; round++ {
		for _, id := range ids {
			w := id.installs[round-1]
			sc := sdkSync(t, w.c, r.pool, id.id, dataset, w.deviceID, int64(round-1))
			var tokens []string
			for _, in := range id.installs {
				if in != w && in.subscribed {
					tokens = append(tokens, in.token)
				}
			}
			r.ledger.expect(&event.DatasetChanged{IdentityPoolID: r.pool, IdentityID: id.id, DatasetName: dataset, SyncCount: sc}, tokens)
		}
		r.waitFraction(1, 60*time.Second)
	}
	v, took := r.settle(60 * time.Second)

	// Every push names the pool and identity of the device it went to.
	owner := map[string]string{}
	for _, id := range r.ids {
		for _, d := range id.others {
			owner[d.Token] = id.id
		}
	}
	origin := map[push]bool{} // a writer's own change
	unsubscribed := map[string]bool{}
	for _, id := range ids {
		for k, in := range id.installs {
			owner[in.token] = id.id
			if !in.subscribed {
				unsubscribed[in.token] = true
			}
			if k < rounds {
				origin[push{in.token, dataset, int64(k + 1)}] = true
			}
		}
	}
	var wrong []string
	toOrigin, toUnsubscribed, sdkPushes := 0, 0, 0
	for _, x := range r.receipts() {
		if x.dataset == dataset {
			sdkPushes++
		}
		if origin[x.push] {
			toOrigin++
		}
		if unsubscribed[x.token] {
			toUnsubscribed++
		}
		if x.source != "cognito-sync" || x.pool != r.pool || x.identityID != owner[x.token] {
			wrong = append(wrong, fmt.Sprintf("%s got source %q pool %q identity %q, want cognito-sync %s %s", x.token, x.source, x.pool, x.identityID, r.pool, owner[x.token]))
		}
	}
	counts, busy := delivered(ws)
	relayed := api.metric("pushsync_relay_events_published_total")
	report.add(t, row{"9a. 3 workers + api, Redis Cluster (3 masters), NATS R3: end to end through the AWS SDK", len(direct) + sdkIdentities*rounds, v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("clusters and 4 pushsyncd up in %s; keys per master %v; %d identities through GetId, %d SDK UpdateRecords (relayed by the api: %.0f), %d pushes of theirs; %d events published directly; pushes to the writing device %d, to the unsubscribed one %d; events delivered per worker %v; settled in %s; %s",
			setup.Round(100*time.Millisecond), sizes, sdkIdentities, sdkIdentities*rounds, relayed, sdkPushes, len(direct), toOrigin, toUnsubscribed, counts, took.Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
	if toOrigin != 0 || toUnsubscribed != 0 {
		t.Errorf("%d pushes to the device that made the change, %d to a device not subscribed", toOrigin, toUnsubscribed)
	}
	if len(wrong) > 0 {
		t.Errorf("%d pushes with a wrong source, pool or identity, e.g. %s", len(wrong), strings.Join(wrong[:min(3, len(wrong))], "; "))
	}
	if sdkPushes < sdkIdentities*rounds*(len(platforms)-2) {
		t.Errorf("%d pushes for the SDK's changes, want at least %d", sdkPushes, sdkIdentities*rounds*(len(platforms)-2))
	}
	if relayed < sdkIdentities*rounds {
		t.Errorf("pushsync_relay_events_published_total of the api = %.0f, want at least %d", relayed, sdkIdentities*rounds)
	}
	if busy < 2 {
		t.Errorf("events delivered per worker %v: the workers do not share the consumer", counts)
	}
	// The sweep of a master key rotation (pushsyncctl secrets status and
	// reseal) finds the identity credentials on every master.
	sec, err := r.reg.SecretsStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (sdkIdentities + 1) / 2 * len(platforms); sec.Credentials.Total != want || sec.Credentials.Current != want {
		t.Errorf("secrets status on the Redis Cluster: credentials %+v, want %d, all under the current key", sec.Credentials, want)
	}
}

// 9b. kill -9 of one of three workers and the loss of the NATS server
// leading the stream and the consumer, together, while events are
// published, on the clusters.
func TestClusterKillWorkerAndNATSNodeUnderLoad(t *testing.T) {
	const (
		sends  = 16 // dispatcher.max_concurrent_sends per worker
		events = 1200
	)
	start := time.Now()
	nc, rc, r := newClusterRig(t)
	// 1,200 events, each the only change of its (identity, dataset), so
	// that no redelivery is skipped as superseded by a later change.
	r.seedIdentities(events/4, "settings", "game", "profile", "prefs")
	sizes := rc.assertSpread()
	r.setLatency(25 * time.Millisecond) // APNs/FCM answer in ~25 ms
	ws := r.startWorkers(3, daemonConfig{workers: 8, sends: sends})
	// The worst case: one server leads both the stream and the consumer.
	colocated := r.colocateLeaders(20 * time.Second)
	setup := time.Since(start)

	// A trickle of events until every worker delivers: a pull request a
	// worker parked on a server during the stepdown above may be lost, and
	// is re-issued only after two missed heartbeats (4 s).
	evs := r.nextEvents(events)
	warm := 0
	for deadline := time.Now().Add(60 * time.Second); ; {
		counts, busy := delivered(ws)
		if busy == len(ws) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events delivered per worker %v 60s after the start: not every worker consumes", counts)
		}
		if warm < len(evs)/4 {
			r.publish(evs[warm : warm+4])
			warm += 4
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Then publish continuously through the faults, 20 events every 50 ms:
	// faster than three workers deliver on this machine, so that they are
	// busy when the faults strike.
	var published atomic.Int64
	published.Store(int64(warm))
	pubDone := make(chan error, 1)
	go func() {
		for i := warm; i < len(evs); i += 20 {
			if err := r.tryPublish(evs[i:min(i+20, len(evs))]); err != nil {
				pubDone <- err
				return
			}
			published.Store(int64(min(i+20, len(evs))))
			time.Sleep(50 * time.Millisecond)
		}
		pubDone <- nil
	}()
	// The faults once a third is published and pushes flow.
	r.waitFraction(0.1, 90*time.Second)
	for deadline := time.Now().Add(90 * time.Second); published.Load() < events/3; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events published after 90s", published.Load(), events)
		}
		time.Sleep(10 * time.Millisecond)
	}
	k := r.killWorker(ws[0])
	leader, consumerLeader := r.leaders()
	if leader == "" {
		leader = colocated // no answer in time: the last one known
	}
	i := nc.index(leader)
	if i < 0 {
		t.Fatalf("stream leader %q is not one of the cluster's servers", leader)
	}
	stoppedAt := time.Now()
	nc.stop(i)
	publishedBefore, receivedBefore := published.Load(), len(r.received())
	newLeader, election := r.newStreamLeader(leader, stoppedAt)
	if err := <-pubDone; err != nil {
		t.Fatalf("publish: %v", err)
	}

	v, took := r.settle(120 * time.Second)
	for _, w := range ws[1:] {
		if !w.alive() || !w.ready() {
			t.Errorf("%s is not up and ready after the faults", w.name)
		}
	}
	counts, _ := delivered(ws[1:])
	report.add(t, row{"9b. 3 workers, Redis Cluster (3 masters), NATS R3: kill -9 one worker and stop one NATS node under load", len(evs), v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("set up in %s, keys per master %v; %d events published until every worker delivered; faults at %d/%d published, %d/%d received: killed worker-1 and stopped NATS server %s (stream leader; consumer leader %s); new stream leader %s after %s; %d events published after the faults; %s; events delivered by the surviving workers %v; longest pause in deliveries %s; all delivered %s after the last publish; %s",
			setup.Round(100*time.Millisecond), sizes, warm, publishedBefore, events, receivedBefore, v.expected, leader, consumerLeader,
			newLeader, election.Round(10*time.Millisecond), int64(events)-publishedBefore, r.checkKillDuplicates(k, v), counts,
			r.longestGap(k.at).Round(100*time.Millisecond), took.Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
	if k.accepted == 0 {
		t.Errorf("worker-1 had accepted no push before the kill: the kill tested nothing")
	}
	if publishedBefore == events {
		t.Errorf("every event was published before the faults: nothing was published under them")
	}
}

// 9c. Redis through a Sentinel (redis.master_name): a worker and an api
// find the master through it, and keep working after the master crashes
// (SIGKILL) and the Sentinel fails over to its replica.
func TestSentinelFailover(t *testing.T) {
	const dataset = "notes" // written through the API; the direct events use the rig's datasets
	start := time.Now()
	s := startRedisSentinel(t)
	ns := testenv.StartNATS(t)
	r := newRig(t, rigOptions{natsURL: ns.URL, redisAddrs: []string{s.sentinel.Addr}, redisMasterName: sentinelMaster})
	r.seedIdentities(20, "settings", "game")
	r.setLatency(5 * time.Millisecond)
	w := r.startDaemon("worker", daemonConfig{})
	api := r.startDaemon("api", daemonConfig{role: "api"})
	setup := time.Since(start)
	evs := r.nextEvents(40)
	r.publish(evs)
	r.waitFraction(1, 60*time.Second)

	crashedAt := time.Now()
	tookOver := s.crashMaster()
	// Registrations written to the new master, events for them and for
	// the identities registered before.
	r.seedIdentities(10, "settings", "game")
	more := r.nextEvents(60)
	r.publish(more)
	// A change through the API, from the first identity's first device,
	// to a dataset its devices subscribe to through the API.
	developer := cognitosync.New(sdkSession(api, credentials.NewStaticCredentials(devAccessKey, devSecretKey, "")))
	id := r.ids[0]
	var tokens []string
	for _, d := range append([]registry.Device{id.origin}, id.others...) {
		if _, err := developer.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{IdentityPoolId: aws.String(id.pool), IdentityId: aws.String(id.id),
			DatasetName: aws.String(dataset), DeviceId: aws.String(d.ID)}); err != nil {
			t.Fatalf("SubscribeToDataset after the failover: %v", err)
		}
		if d.ID != id.origin.ID {
			tokens = append(tokens, d.Token)
		}
	}
	sc := sdkSync(t, developer, id.pool, id.id, dataset, id.origin.ID, 0)
	r.ledger.expect(&event.DatasetChanged{IdentityPoolID: id.pool, IdentityID: id.id, DatasetName: dataset, SyncCount: sc}, tokens)

	v, took := r.settle(60 * time.Second)
	for _, p := range []*proc{w, api} {
		if !p.alive() || !p.ready() {
			t.Errorf("%s is not up and ready after the failover", p.name)
		}
	}
	report.add(t, row{"9c. Redis master + replica + Sentinel (redis.master_name): master SIGKILL and failover under a worker and an api", len(evs) + len(more) + 1, v.expected, v.received, v.lost, v.duplicated,
		fmt.Sprintf("set up in %s; %d events delivered, then master %s killed; the Sentinel promoted %s %s after the kill; then 10 identities registered, %d events published, devices subscribed and 1 UpdateRecords through the AWS SDK; all delivered %s after; longest pause in deliveries %s; %s",
			setup.Round(100*time.Millisecond), len(evs), s.initialMaster, s.masterAddr(), tookOver.Round(10*time.Millisecond), len(more),
			took.Round(100*time.Millisecond), r.longestGap(crashedAt).Round(100*time.Millisecond), v.summary())})
	assertLedger(t, v)
}
