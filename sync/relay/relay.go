// Package relay makes sure every committed dataset change becomes an event.
//
// sync/store writes, in the same atomic step as each change, a marker that
// the change is still to be published. The relay publishes the change's
// DatasetChanged event and then clears the marker: at once, on the request
// path (Deliver), and again in a background sweep (Run) for every marker
// left behind, whether the process died between commit and publish or NATS
// was unreachable. The sweep reads only what is pending: every write notes
// its identity in the store's sweep index before it commits, and the sweep
// claims the identities noted a few seconds ago (see store.ClaimPending),
// never scanning the keyspace but once per deployment, for the markers of
// a version without the index (Store.AdoptUnindexed). As the sweep claims an
// identity only once it has not been written for twice the store's sweep
// window, the changes left behind by an identity that keeps writing are
// published by its writes instead: once Deliver has published its own
// change, it publishes those its commit found (Change.OthersSince), in the
// same way, and CatchUp does so after a write the store refused. While NATS is unreachable, neither waits for it: a sweep stops
// publishing at the first publish that finds it so, and for a sweep
// interval after one, the request path leaves its changes to the sweep.
// Changes left behind are those committed at least Grace ago: a change
// committed moments ago is left to the request that is publishing it. A
// change published twice is stored once by JetStream, since its
// deduplication id is fixed by (pool, identity, dataset, syncCount, change
// time), but only within the stream's duplicate window: a change left
// behind older than that is published only if the stream's last event on
// its subject is not that change already.
package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/store"
)

// Store is what the relay needs of the dataset store.
type Store interface {
	ClaimPending(ctx context.Context, limit int) ([]store.Pending, error)
	PendingChanges(ctx context.Context, pool, identity string) ([]store.Change, error)
	SettlePending(ctx context.Context, done, left []store.Pending) error
	AdoptUnindexed(ctx context.Context, again bool) (sweepindex.Adoption, error)
	ClearChange(ctx context.Context, c store.Change) error
}

// Publisher publishes events; *event.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, e *event.DatasetChanged) (*jetstream.PubAck, error)
	// Stored tells whether the stream's last event on e's subject is e.
	Stored(ctx context.Context, e *event.DatasetChanged) (bool, error)
}

// Options configures a Relay.
type Options struct {
	// Interval is the time between two sweeps. If not set, 5s.
	Interval time.Duration
	// PublishTimeout bounds one publish. If not set, 2s.
	PublishTimeout time.Duration
	// Grace is how long a sweep leaves a committed change to the request
	// path, which may still be publishing it: a sweep publishes only
	// changes committed at least Grace ago. If not set, PublishTimeout
	// and a second more, for clearing the marker and for clocks that
	// differ between hosts.
	Grace time.Duration
	// DuplicateWindow is the event stream's duplicate window, within which
	// JetStream stores a repeated publish once. A change found committed
	// longer ago than that, less Grace (for clocks that differ between
	// hosts), may have been stored already by a publish whose marker was
	// not cleared (the process killed in between, or the acknowledgement
	// lost): a sweep publishes it only if the stream's last event on its
	// subject is not that change. If not set, 2 minutes, JetStream's
	// default.
	DuplicateWindow time.Duration
}

// Relay publishes committed changes. It is safe for concurrent use.
type Relay struct {
	store Store
	pub   Publisher
	opts  Options
	log   zerolog.Logger

	published *prometheus.CounterVec
	failures  prometheus.Counter
	pending   prometheus.Gauge
	corrupt   prometheus.Gauge

	// unreachableAt is when a publish last found NATS unreachable (Unix
	// nanoseconds), 0 since one succeeded.
	unreachableAt atomic.Int64
	// catchingUp holds "<pool>/<identity>" while a Deliver publishes the
	// changes the identity left behind, so that its other writes meanwhile
	// leave them to it.
	catchingUp sync.Map
}

// New returns a Relay.
func New(s Store, pub Publisher, opts Options, log zerolog.Logger, metrics prometheus.Registerer) (*Relay, error) {
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 2 * time.Second
	}
	if opts.Grace <= 0 {
		opts.Grace = opts.PublishTimeout + time.Second
	}
	if opts.DuplicateWindow <= 0 {
		opts.DuplicateWindow = 2 * time.Minute
	}
	r := &Relay{store: s, pub: pub, opts: opts, log: log,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsync_relay_events_published_total",
			Help: "Dataset changes published as events, by path: direct (right after the commit) or sweep (found left behind).",
		}, []string{"path"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushsync_relay_publish_failures_total",
			Help: "Publishes of committed changes that failed; the change stays marked and is tried again.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushsync_relay_pending_changes",
			Help: "Committed changes this process's last sweep found unpublished among the identities it claimed from the sweep index, other than those committed within the grace period the request path has to publish them; sum over processes for the deployment.",
		}),
		corrupt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushsync_relay_corrupt_markers",
			Help: "Outbox markers the last sweep could not read and skipped; each is logged with its identity and dataset.",
		}),
	}
	if metrics != nil {
		for _, c := range []prometheus.Collector{r.published, r.failures, r.pending, r.corrupt} {
			if err := metrics.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// ErrUnreachable is returned by Deliver while NATS is unreachable.
var ErrUnreachable = errors.New("relay: NATS was unreachable at a publish moments ago; the sweep publishes the change once it answers again")

// Deliver publishes a committed change and clears its marker. On error the
// marker stays, and a later sweep publishes the change. For an Interval
// after a publish found NATS unreachable, unless one succeeds meanwhile,
// Deliver does not wait for it: it returns ErrUnreachable at once.
//
// Once c is published, Deliver also publishes the changes of c's identity
// left behind, when c says there are some (Change.OthersSince) committed
// at least Grace ago, as a sweep would (see Sweep), within the same
// PublishTimeout as c's own publish: so that an identity written without
// a pause of twice the store's sweep window, which no sweep claims
// meanwhile, does not keep a change whose publish failed waiting for one.
// Their errors are logged, not returned: c is published, and they stay for
// the identity's next write or a sweep.
func (r *Relay) Deliver(ctx context.Context, c store.Change) error {
	if r.unreachableLately() {
		return fmt.Errorf("publish %s/%s/%s@%d: %w", c.IdentityPoolID, c.IdentityID, c.DatasetName, c.SyncCount, ErrUnreachable)
	}
	deadline := time.Now().Add(r.opts.PublishTimeout)
	if _, err := r.deliver(ctx, c, "direct"); err != nil {
		return err
	}
	if now := time.Now(); !c.OthersSince.IsZero() && !c.OthersSince.After(now.Add(-r.opts.Grace)) && now.Before(deadline) {
		cctx, cancel := context.WithDeadline(ctx, deadline)
		r.catchUp(cctx, c.IdentityPoolID, c.IdentityID)
		cancel()
	}
	return nil
}

// unreachableLately reports whether a publish found NATS unreachable within
// the last Interval, none having succeeded since.
func (r *Relay) unreachableLately() bool {
	at := r.unreachableAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < r.opts.Interval
}

// CatchUp publishes the changes of pool's identity left behind, those
// committed at least Grace ago, as Deliver does after a change of its own:
// for a write the store refused (a conflict, a limit, a dataset not
// found). Such a write noted the identity in the sweep index, which keeps
// a sweep from claiming it for twice the store's sweep window, and
// published nothing; a client retrying a refused write without pause
// would hold back the identity's changes left behind for as long as it
// retried. Within PublishTimeout; for an Interval after a publish found
// NATS unreachable, it does nothing, and errors are logged.
func (r *Relay) CatchUp(ctx context.Context, pool, identity string) {
	if r.unreachableLately() {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
	defer cancel()
	r.catchUp(cctx, pool, identity)
}

// catchUp publishes the changes of one identity left behind, those
// committed at least Grace ago, unless another Deliver is doing so.
func (r *Relay) catchUp(ctx context.Context, pool, identity string) {
	key := pool + "/" + identity
	if _, busy := r.catchingUp.LoadOrStore(key, struct{}{}); busy {
		return
	}
	defer r.catchingUp.Delete(key)
	changes, err := r.store.PendingChanges(ctx, pool, identity)
	if err != nil && len(store.CorruptMarkers(err)) == 0 {
		// Not even read: the next write or a sweep tries again.
		r.log.Warn().Err(err).Str("pool", pool).Str("identity", identity).Msg("could not read the changes an identity left unpublished; its next write or a sweep publishes them")
		return
	}
	// Markers that cannot be read are the sweep's to log.
	var p pass
	r.publishLeft(ctx, changes, time.Now().Add(-r.opts.Grace), &p)
	if p.firstErr != nil {
		r.log.Warn().Err(p.firstErr).Str("pool", pool).Str("identity", identity).Int("published", p.published).Int("left", p.found-p.published-p.already).
			Msg("publishing the changes an identity left unpublished did not finish; its next write or a sweep publishes them")
	} else if p.published > 0 {
		r.log.Info().Str("pool", pool).Str("identity", identity).Int("published", p.published).Msg("published changes an identity left behind, at its next write")
	}
}

// deliver publishes c and clears its marker. It returns false, with no
// error, for a change left behind (path "sweep") that it found on the
// stream already and did not publish again.
func (r *Relay) deliver(ctx context.Context, c store.Change, path string) (bool, error) {
	e := &event.DatasetChanged{
		Version:        event.Version,
		IdentityPoolID: c.IdentityPoolID,
		IdentityID:     c.IdentityID,
		DatasetName:    c.DatasetName,
		SyncCount:      c.SyncCount,
		OriginDeviceID: c.OriginDeviceID,
		ChangedAt:      c.ChangedAt,
	}
	pctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
	var (
		stored bool
		err    error
	)
	if path != "direct" && time.Since(c.ChangedAt) > r.opts.DuplicateWindow-r.opts.Grace {
		// JetStream may no longer know the id of a publish of this change
		// that was stored while its marker stayed.
		stored, err = r.pub.Stored(pctx, e)
	}
	if err == nil && !stored {
		_, err = r.pub.Publish(pctx, e)
	}
	cancel()
	if err != nil {
		r.failures.Inc()
		if unreachable(err) && ctx.Err() == nil {
			r.unreachableAt.Store(time.Now().UnixNano())
		}
		return false, fmt.Errorf("relay: publish %s/%s/%s@%d: %w", c.IdentityPoolID, c.IdentityID, c.DatasetName, c.SyncCount, err)
	}
	r.unreachableAt.Store(0)
	if stored {
		r.log.Info().Str("pool", c.IdentityPoolID).Str("identity", c.IdentityID).Str("dataset", c.DatasetName).Int64("sync_count", c.SyncCount).
			Msg("a change left behind is on the event stream already; clearing its marker without publishing it again")
	} else {
		r.published.WithLabelValues(path).Inc()
	}
	if err := r.store.ClearChange(ctx, c); err != nil {
		// Published; a sweep will find the marker again and publish the
		// change once more, or find it on the stream.
		return false, fmt.Errorf("relay: clear published change: %w", err)
	}
	return !stored, nil
}

// Run sweeps for unpublished changes every Interval until ctx ends. It
// first adopts into the sweep index the markers a version without it left
// (Store.AdoptUnindexed: one SCAN of the keyspace, unless one has
// completed already), and tries again at every sweep until that is done.
func (r *Relay) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	adopted := false
	for {
		if !adopted {
			if a, err := r.store.AdoptUnindexed(ctx, false); err != nil {
				if ctx.Err() == nil {
					r.log.Warn().Err(err).Msg("looking for outbox markers of an earlier version did not finish; trying again at the next sweep")
				}
			} else {
				adopted = true
				a.Log(r.log, "outbox markers", false)
			}
		}
		if n, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn().Err(err).Int("published", n).Msg("sweep for unpublished changes did not finish")
		} else if n > 0 {
			r.log.Info().Int("published", n).Msg("published changes left behind")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// maxCorruptLogged is how many unreadable markers a sweep logs one by one.
const maxCorruptLogged = 10

// Sweep publishes the changes still marked that it claims from the sweep
// index (Store.ClaimPending): those written at least twice the store's
// sweep window ago, whose writers did not publish them; claims run until
// one finds nothing. It returns how many it published. Changes committed
// less than Grace ago are left to the request path, which may be
// publishing them still; were they published here too, JetStream would
// drop the copy, but they would be counted and logged as left behind. A
// change committed longer ago than DuplicateWindow (less Grace) whose
// event is the stream's last on its subject already is not published
// again, nor counted: only its marker is cleared. Markers that cannot be
// read are logged and skipped. A publish that fails because NATS cannot be
// reached (no answer in time, no JetStream responder, no connection) ends
// the publishing: the sweep still counts the remaining markers of its
// claim and leaves them, all of them, for a later sweep, rather than
// waiting out the publish timeout for each. An identity whose changes were
// not all published stays in the index and is claimed again twice the
// sweep window later.
func (r *Relay) Sweep(ctx context.Context) (int, error) {
	var (
		p       pass
		corrupt int
	)
	for !p.down && ctx.Err() == nil {
		batch, err := r.store.ClaimPending(ctx, claimLimit)
		if err != nil {
			if p.firstErr == nil {
				p.firstErr = err
			}
			break
		}
		if len(batch) == 0 {
			break
		}
		fresh := time.Now().Add(-r.opts.Grace)
		var done, left []store.Pending
		for _, pe := range batch {
			// Skipped, so that one unreadable marker does not hold back
			// every change after it; the dataset's next change replaces it.
			for _, c := range store.CorruptMarkers(pe.Err) {
				if corrupt < maxCorruptLogged {
					r.log.Error().Str("pool", c.IdentityPoolID).Str("identity", c.IdentityID).Str("dataset", c.DatasetName).
						Str("marker", c.Value).Msg("skipping an outbox marker that cannot be read; the dataset's next change replaces it")
				}
				corrupt++
			}
			if r.publishLeft(ctx, pe.Changes, fresh, &p) && pe.Err == nil {
				done = append(done, pe)
			} else {
				left = append(left, pe)
			}
		}
		if err := r.store.SettlePending(context.WithoutCancel(ctx), done, left); err != nil && p.firstErr == nil {
			p.firstErr = err
		}
	}
	r.pending.Set(float64(p.found - p.published - p.already))
	r.corrupt.Set(float64(corrupt))
	if corrupt > maxCorruptLogged {
		r.log.Error().Int("corrupt", corrupt).Int("logged", maxCorruptLogged).Msg("skipped outbox markers that cannot be read")
	}
	return p.published, p.firstErr
}

// pass is what publishing changes left behind did so far, over the
// identities of one sweep or the one identity of a catch-up.
type pass struct {
	// found counts the changes committed before the grace period;
	// published those published, already those found on the stream.
	found, published, already int
	firstErr                  error
	// down: a publish found NATS unreachable, and no other was tried since.
	down bool
}

// publishLeft publishes the changes of one identity's outbox, as read,
// that were committed no later than fresh, and clears their markers (see
// Sweep); it tells whether that left none of the changes. Once p is down
// (a publish found NATS unreachable) it publishes nothing, but still counts
// the changes in p.found.
func (r *Relay) publishLeft(ctx context.Context, changes []store.Change, fresh time.Time, p *pass) bool {
	finished := true
	for _, c := range changes {
		if c.ChangedAt.After(fresh) {
			finished = false
			continue // its request may be publishing it still
		}
		p.found++
		if p.down {
			finished = false
			continue // counted, for the pending gauge, not tried
		}
		ok, err := r.deliver(ctx, c, "sweep")
		if err != nil {
			if p.firstErr == nil {
				p.firstErr = err
			}
			finished = false
			// NATS unreachable: every other publish would wait out its
			// timeout too. The markers stay for later.
			p.down = unreachable(err) || ctx.Err() != nil
			continue
		}
		if ok {
			p.published++
		} else {
			p.already++
		}
	}
	return finished
}

// claimLimit is how many identities a sweep claims from each shard of the
// sweep index at a time.
const claimLimit = 100

// unreachable tells whether a failed publish says NATS or its JetStream
// cannot be reached, so that the publishes after it would fail too, as
// opposed to a failure of that one change.
func unreachable(err error) bool {
	for _, e := range []error{context.DeadlineExceeded, nats.ErrTimeout, jetstream.ErrNoStreamResponse, nats.ErrNoResponders,
		nats.ErrConnectionClosed, nats.ErrConnectionDraining, nats.ErrConnectionReconnecting, nats.ErrDisconnected, nats.ErrNoServers,
		jetstream.ErrJetStreamNotEnabled} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
