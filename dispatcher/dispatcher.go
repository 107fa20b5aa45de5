// Package dispatcher turns dataset-change events into silent pushes. It
// consumes the event stream through a durable JetStream pull consumer shared
// by every worker process, looks up the identity's devices subscribed to the
// changed dataset, and fans the push out through one Notifier per kind of
// platform app, skipping the device that made the change. A message is
// acknowledged only after every send for it has settled; an event with a
// retryable failure is handed back to the broker with a delay, so no retry
// waits in memory and a crash loses none.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/loglimit"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/removals"
)

// Registry is what the dispatcher reads from the device registry. Lookups
// and sent-push records come in batches, one pipeline each, so that one
// Redis round trip serves many events under load.
type Registry interface {
	RunBatch(ctx context.Context, ids []registry.Identity, sent []registry.Sent) ([]registry.Lookup, []error)
	PoolPush(ctx context.Context, pool string) (registry.PoolPush, error)
	App(ctx context.Context, name string) (registry.App, error)
	RemoveDeadDevice(ctx context.Context, pool, identity, deviceID, token string, deadSince time.Time, reason string) (bool, error)
	ClearRemoval(ctx context.Context, pool, identity, deviceID string) error
	// NoteUnattempted and Unattempted count the deliveries of a message
	// that ended without a try, which are not counted against MaxDeliver.
	NoteUnattempted(ctx context.Context, msgID string, ttl time.Duration) error
	Unattempted(ctx context.Context, msgID string) (uint64, error)
}

// DeadLetters keeps events whose deliveries ran out; *event.DeadLetters is
// one.
type DeadLetters interface {
	// Put keeps an event message, with the reason, its deliveries and the
	// devices its last try did not push; id identifies the message, so
	// that a Put repeated after a failure that had stored it keeps it once.
	Put(ctx context.Context, id, subject string, data []byte, reason string, deliveries uint64, devices []string) error
}

// DeviceEvents announces devices the dispatcher removed; *event.Publisher
// is one.
type DeviceEvents interface {
	PublishDeviceRemoved(ctx context.Context, e *event.DeviceRemoved) error
}

// Options configures a Dispatcher. Durations are wall-clock time.
type Options struct {
	// Stream is the event stream. Required.
	Stream string
	// SubjectPrefix is the prefix of event subjects. Required.
	SubjectPrefix string
	// Consumer is the durable consumer shared by all workers. Required.
	Consumer string
	// AckWait is how long the broker waits for an ack before redelivering.
	// If not set, 30s.
	AckWait time.Duration
	// MaxDeliver is how often an event that keeps failing is tried: on
	// that delivery it goes to DeadLetters (or is terminated) instead of
	// back to the broker; -1 is unlimited. Deliveries handed back untried
	// when the dispatcher stops, or deferred for the device budget with no
	// push failed, are not counted. If not set, 20. The dispatcher
	// counts, not the broker: the consumer delivers without limit, so an
	// event whose last delivery ends without a verdict (a crash, a dead
	// letter that could not be stored) comes back, and goes to
	// DeadLetters without another try, rather than being left in the
	// stream unacknowledged.
	MaxDeliver int
	// MaxAckPending bounds the messages delivered and not yet acked across
	// all workers. If not set, 4096.
	MaxAckPending int
	// Workers is how many events one process handles at once. If not set, 256.
	Workers int
	// MaxConcurrentSends bounds the pushes in flight in one process. If not
	// set, 1024.
	MaxConcurrentSends int
	// SendTimeout bounds one push. If not set, 10s.
	SendTimeout time.Duration
	// RetryDelay is the redelivery delay after the first retryable failure;
	// it doubles with every delivery up to MaxRetryDelay. If not set, 2s.
	RetryDelay time.Duration
	// MaxRetryDelay caps the redelivery delay. If not set, 5m.
	MaxRetryDelay time.Duration
	// AppCacheTTL is how long pool push settings and platform apps are
	// cached. If not set, they are read for every event.
	AppCacheTTL time.Duration
	// PushTTL is how long a change stays worth pushing: an event older
	// than that when its pushes would go out is dropped, and pushes expire
	// at the change time plus PushTTL. If not set, events never expire;
	// the stream's max age still bounds how long one can wait for a retry
	// (one that would come later is dead-lettered) or a device's budget
	// (a push deferred past it goes at once).
	PushTTL time.Duration
	// RetryBudget is how long a push failing for a passing reason is
	// retried in process before its event goes back to the broker. If not
	// set, it goes back at once.
	RetryBudget time.Duration
	// ConfigBackoff is how long a platform app whose credentials the push
	// service refused is not sent through; its events wait in the broker.
	// If not set, 30s.
	ConfigBackoff time.Duration
	// MaxDeadRun is how many devices one platform app may report dead on
	// one platform, with no push accepted between them, before the
	// dispatcher stops removing devices for it and suspends it as
	// misconfigured (a wrong topic, environment or project makes every
	// device look dead). A device reported not of the app's topic,
	// environment or project (Error.ForApp) is removed only once the
	// app's revision has accepted a push on that platform. If not set,
	// 100.
	MaxDeadRun int
	// DeviceEvents, if set, announces devices removed for dead tokens.
	DeviceEvents DeviceEvents
	// DeadLetters, if set, keeps events whose pushes still fail on their
	// last delivery; without it they are terminated.
	DeadLetters DeadLetters
	// DeviceBudget, if set, is how many pushes one device may get in an
	// hour; a push beyond it is deferred (its event waits in the broker
	// until the device's window ends), never dropped, so the newest state
	// always arrives in the end.
	DeviceBudget int
	// BudgetWindow is the span DeviceBudget counts over. If not set, 1h.
	BudgetWindow time.Duration
	// CoalesceWindow, if set, gathers the events of one dataset arriving
	// within it into one fan-out carrying the highest sync count; the
	// others are acked once it settles. It must be well below AckWait.
	CoalesceWindow time.Duration
	// CoalesceMaxHeld is how many events one process holds at once with
	// CoalesceWindow set, from their arrival until their dataset's group
	// settles: in a window, waiting for a worker or being pushed. A
	// process holding as many pulls no more until a group settles, and
	// leaves the rest of the stream to the others. If not set, 4 ×
	// Workers.
	CoalesceMaxHeld int
	// Now returns the current time. If not set, time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() error {
	if o.Stream == "" || o.SubjectPrefix == "" || o.Consumer == "" {
		return errors.New("dispatcher: stream, subject prefix and consumer are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.AckWait, 30*time.Second)
	def(&o.SendTimeout, 10*time.Second)
	def(&o.RetryDelay, 2*time.Second)
	def(&o.MaxRetryDelay, 5*time.Minute)
	def(&o.ConfigBackoff, 30*time.Second)
	def(&o.BudgetWindow, time.Hour)
	defInt(&o.MaxDeliver, 20)
	defInt(&o.MaxDeadRun, 100)
	defInt(&o.MaxAckPending, 4096)
	defInt(&o.Workers, 256)
	defInt(&o.MaxConcurrentSends, 1024)
	defInt(&o.CoalesceMaxHeld, 4*o.Workers)
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Dispatcher consumes events and fans out pushes. Create it with New and
// run it with Run.
type Dispatcher struct {
	js        jetstream.JetStream
	reg       Registry
	notifiers map[registry.AppKind]Notifier
	opts      Options
	log       zerolog.Logger
	m         *metrics
	pools     *cache[registry.PoolPush]
	apps      *cache[registry.App]
	ready     atomic.Bool

	// Run starts these and stops them when it returns.
	senders *lifoPool[*sendJob] // MaxConcurrentSends at most
	redis   *redisBatcher
	replies sync.Pool // of chan registry.Lookup

	mu         sync.Mutex
	suspended  map[route]*suspension
	nSuspended atomic.Int32 // len(suspended), read without the lock
	deadRuns   sync.Map     // route → *deadRun
	anyDead    atomic.Bool  // deadRuns has an entry
	accepted   sync.Map     // appRevision → struct{}: it accepted a push

	streamMaxAge atomic.Int64 // the event stream's max age, read when consuming starts
	// untriedUnnoted is set once noting a delivery handed back untried
	// failed; the rest of the stop does not try.
	untriedUnnoted atomic.Bool
	failureLog     *loglimit.Limiter[failureKind]
	troubleLog     *loglimit.Limiter[string]

	slots  chan struct{}  // one per coalesced group being handled (Workers)
	wg     sync.WaitGroup // coalescing groups in flight
	cmu    sync.Mutex
	groups map[string]*group // dataset → events waiting out the window
}

// New returns a Dispatcher. notifiers maps each kind of platform app to the
// Notifier that sends through it; reg may be any registry.Registry.
func New(js jetstream.JetStream, reg Registry, notifiers map[registry.AppKind]Notifier, opts Options, log zerolog.Logger, metricsReg prometheus.Registerer) (*Dispatcher, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if js == nil || reg == nil {
		return nil, errors.New("dispatcher: a JetStream context and a registry are required")
	}
	m, err := newMetrics(metricsReg)
	if err != nil {
		return nil, err
	}
	return &Dispatcher{
		js:         js,
		reg:        reg,
		notifiers:  notifiers,
		opts:       opts,
		log:        log,
		m:          m,
		pools:      newCache[registry.PoolPush](opts.AppCacheTTL, opts.Now),
		apps:       newCache[registry.App](opts.AppCacheTTL, opts.Now),
		failureLog: loglimit.New[failureKind](failureLogEvery),
		troubleLog: loglimit.New[string](failureLogEvery),
		suspended:  make(map[route]*suspension),
		slots:      make(chan struct{}, opts.Workers),
		groups:     make(map[string]*group),
	}, nil
}

// Ready reports whether the dispatcher is consuming: its consumer exists
// and messages can be pulled.
func (d *Dispatcher) Ready() error {
	if !d.ready.Load() {
		return errors.New("not consuming")
	}
	return nil
}

// ConsumerConfig returns the durable consumer configuration the dispatcher
// creates or updates.
func (d *Dispatcher) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       d.opts.Consumer,
		Description:   "pushsync dispatcher",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.opts.AckWait,
		MaxDeliver:    -1, // the dispatcher counts (Options.MaxDeliver)
		MaxAckPending: d.opts.MaxAckPending,
		FilterSubject: d.opts.SubjectPrefix + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Run consumes events until ctx is cancelled. On cancellation it stops
// pulling, finishes the sends in flight but begins no other and retries
// none, acks or naks every message it holds and returns nil. Failures to reach the broker are retried with
// backoff, with readiness false meanwhile.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.start()
	defer d.stop()
	backoff := 100 * time.Millisecond
	for {
		err := d.consume(ctx)
		d.ready.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		d.log.Error().Err(err).Stringer("retry_in", backoff).Msg("event consumption stopped; restarting")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// The Redis batcher's loops, largest batch, and how long a record of
// accepted pushes may wait for others to share its round trip (it delays
// only the ack).
const (
	batchLoops   = 2
	maxBatch     = 128
	recordLinger = 2 * time.Millisecond
)

// start starts the senders and the Redis batchers.
func (d *Dispatcher) start() {
	d.senders = newLIFOPool(d.opts.MaxConcurrentSends, d.runJob)
	d.redis = newRedisBatcher(batchLoops, maxBatch, recordLinger, d.flush)
	d.replies.New = func() any { return make(chan registry.Lookup, 1) }
}

// stop stops what start started, once no event is being handled.
func (d *Dispatcher) stop() {
	d.senders.close()
	d.redis.close()
}

func (d *Dispatcher) consume(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := d.js.Stream(cctx, d.opts.Stream)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", d.opts.Stream, err)
	}
	d.streamMaxAge.Store(int64(stream.CachedInfo().Config.MaxAge))
	cons, err := stream.CreateOrUpdateConsumer(cctx, d.ConsumerConfig())
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", d.opts.Consumer, d.opts.Stream, err)
	}
	cancel()
	d.ready.Store(true)
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	// Pulls stop when ctx ends, or when the consumer is found gone (a NATS
	// that lost its store, a stream or consumer deleted by hand): the
	// messages held are settled, and consume returns for Run to create
	// the consumer again.
	pullCtx, stopPulling := context.WithCancelCause(ctx)
	defer stopPulling(nil)
	go d.watchLag(lagCtx, cons, stopPulling)
	go d.forgetIdleSuspensions(lagCtx)
	d.log.Info().Str("stream", d.opts.Stream).Str("consumer", d.opts.Consumer).Int("workers", d.opts.Workers).Msg("consuming events")

	// A process holds at most twice Workers messages: as many handled, as
	// many waiting for a worker. Every one is kept in progress from the
	// moment it arrives, so that none is redelivered while it waits; and
	// none waits in the client's buffer, where it could not be: each pull
	// asks for no more than there is room for, and is read at once. With
	// coalescing, a message is held until its group settles, its window
	// included, and a process holds at most CoalesceMaxHeld: taken out of
	// the count when it entered a window, the messages of a burst would
	// all go to one process, up to MaxAckPending, and wait for its
	// workers while the others' sat idle.
	limit := 2 * d.opts.Workers
	if d.opts.CoalesceWindow > 0 {
		limit = d.opts.CoalesceMaxHeld
	}
	var held atomic.Int64
	freed := make(chan struct{}, 1)
	release := func() {
		held.Add(-1)
		select {
		case freed <- struct{}{}:
		default:
		}
	}
	queue := make(chan pulled, limit)
	handlers := newLIFOPool(d.opts.Workers, func(p pulled) {
		d.handle(ctx, p.msg, p.keep, release)
	})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for p := range queue {
			handlers.submit(p)
		}
	}()
	defer d.wg.Wait()
	defer handlers.close()
	defer func() { <-fed }()
	defer close(queue)
	for {
		// Pull again once there is room for a good batch: half of Workers
		// waiting still keeps every worker busy meanwhile.
		for limit-int(held.Load()) < max(1, min(d.opts.Workers, limit)/2) {
			select {
			case <-freed:
			case <-pullCtx.Done():
				return lostConsumer(ctx, pullCtx)
			}
		}
		if err := d.pullBatch(pullCtx, cons, limit-int(held.Load()), func(msg jetstream.Msg) {
			held.Add(1)
			p := pulled{msg: msg, keep: d.keepInProgress(msg)}
			// Straight to an idle worker when none waits before it: the
			// queue and its goroutine are for when all are busy.
			if len(queue) > 0 || !handlers.trySubmit(p) {
				queue <- p
			}
		}); err != nil || pullCtx.Err() != nil {
			if err == nil {
				err = lostConsumer(ctx, pullCtx)
			}
			return err
		}
	}
}

// lostConsumer returns why the pulls under pullCtx stopped: nil when ctx,
// the dispatcher's own context, ended, else the consumer is gone.
func lostConsumer(ctx, pullCtx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	return context.Cause(pullCtx)
}

// pulled is a message waiting for a worker, and what holds it in progress.
type pulled struct {
	msg  jetstream.Msg
	keep *inProgress
}

// pullBatch pulls up to n messages and passes each to take as soon as it
// arrives. When ctx ends, it stops pulling and hands the messages that
// arrive meanwhile back to the broker.
func (d *Dispatcher) pullBatch(ctx context.Context, cons jetstream.Consumer, n int, take func(jetstream.Msg)) error {
	// A short pull expiry and heartbeat notice a lost consumer leader or
	// server in seconds rather than the default 30s.
	it, err := cons.Messages(jetstream.PullMaxMessages(n), jetstream.StopAfter(n), jetstream.PullExpiry(10*time.Second),
		jetstream.PullHeartbeat(2*time.Second), jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		return fmt.Errorf("pull from consumer %s: %w", d.opts.Consumer, err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	for got := 0; ; got++ {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && (got == n || ctx.Err() != nil) {
				return nil
			}
			it.Stop()
			return err
		}
		if ctx.Err() != nil {
			d.handBack(msg, nil)
			continue
		}
		take(msg)
	}
}

// handBack hands a message that is not going to be tried back to the
// broker, when the dispatcher stops, so that another worker takes it now
// rather than after AckWait. The broker counts it as a delivery; it is
// noted as one without a try, so that restarts do not use up the event's
// tries (MaxDeliver).
func (d *Dispatcher) handBack(msg jetstream.Msg, keep *inProgress) {
	if keep != nil {
		keep.stop()
	}
	// Once a note failed, the others are not tried: a stop must not wait
	// for an unreachable Redis once per message.
	if md, err := msg.Metadata(); err == nil && !d.untriedUnnoted.Load() {
		if err := d.noteUntried(md); err != nil && !d.untriedUnnoted.Swap(true) {
			d.log.Warn().Err(err).Msg("could not note the deliveries handed back untried; they count as tries")
		}
	}
	if err := msg.Nak(); err != nil {
		d.log.Warn().Err(err).Msg("could not hand a message back to the broker; it is redelivered after AckWait")
	}
}

// noteUntried notes that a delivery of a message was not a try.
func (d *Dispatcher) noteUntried(md *jetstream.MsgMetadata) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.SendTimeout)
	defer cancel()
	return d.reg.NoteUnattempted(ctx, deliveryKey(md), d.unattemptedTTL())
}

// unattemptedTTL is how long a count of untried deliveries is kept: as
// long as the event stream keeps a message, or a week if it keeps them
// for good.
func (d *Dispatcher) unattemptedTTL() time.Duration {
	if maxAge := time.Duration(d.streamMaxAge.Load()); maxAge > 0 {
		return maxAge
	}
	return 7 * 24 * time.Hour
}

// tries returns how many of a message's deliveries were tries: those not
// handed back untried. Read only for a redelivery; if it cannot be read,
// every delivery counts.
func (d *Dispatcher) tries(ctx context.Context, md *jetstream.MsgMetadata, delivered uint64, log zerolog.Logger) uint64 {
	if delivered <= 1 || md == nil {
		return delivered
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.SendTimeout)
	untried, err := d.reg.Unattempted(ctx, deliveryKey(md))
	cancel()
	if err != nil {
		log.Warn().Err(err).Msg("could not read the deliveries handed back untried; counting every delivery as a try")
		return delivered
	}
	return delivered - min(untried, delivered-1)
}

// handle decodes one message and processes it, at once or, with a
// coalescing window, together with the other events of its dataset that
// arrive within the window. runCtx ends when the dispatcher stops; work
// already begun finishes regardless, each send having its own timeout.
// done is called once msg is settled: before handle returns, or with a
// coalescing window when its group settles.
func (d *Dispatcher) handle(runCtx context.Context, msg jetstream.Msg, keep *inProgress, done func()) {
	if runCtx.Err() != nil {
		d.handBack(msg, keep)
		done()
		return
	}
	ev, err := event.Decode(d.opts.SubjectPrefix, msg.Subject(), msg.Data())
	if err != nil {
		var de *event.DecodeError
		reason := "invalid"
		if errors.As(err, &de) {
			reason = de.Reason
		}
		d.m.malformed.WithLabelValues(reason).Inc()
		d.m.events.WithLabelValues("malformed").Inc()
		d.log.Warn().Err(err).Str("subject", msg.Subject()).Str("reason", reason).Msg("terminating malformed event")
		keep.stop()
		// A bare +TERM: servers before NATS 2.10.4 ignore one that
		// carries a reason, and would deliver the event again for ever.
		// The reason is in the log line above and the metrics.
		if err := msg.Term(); err != nil {
			d.log.Warn().Err(err).Msg("term malformed event")
		}
		done()
		return
	}
	if d.opts.CoalesceWindow > 0 {
		d.coalesce(runCtx, ev, msg, keep, done)
		return
	}
	d.process(runCtx, ev, msg, keep)
	done()
}

// process fans one event out and acks, naks or dead-letters its message,
// and returns the event's result, whether msg was handed back untried, and
// the least wait the services asked for before a retry (Retry-After, or
// the suspension of a refused app). keep holds msg in progress; it is
// stopped before msg is settled. When runCtx ends, the pushes under way
// finish and those not begun are not begun: an event they were left to is
// handed back to the broker untried.
func (d *Dispatcher) process(runCtx context.Context, ev *event.DatasetChanged, msg jetstream.Msg, keep *inProgress) (result string, untried bool, retryAfter time.Duration) {
	ctx := context.WithoutCancel(runCtx)
	start := d.opts.Now()
	d.m.inflightEvents.Inc()
	defer d.m.inflightEvents.Dec()
	log := d.log.With().Str("pool", ev.IdentityPoolID).Str("identity", ev.IdentityID).
		Str("dataset", ev.DatasetName).Int64("sync_count", ev.SyncCount).Logger()

	delivered := uint64(1)
	md, err := msg.Metadata()
	if err == nil {
		delivered = md.NumDelivered
	} else {
		md = nil
	}
	// delivered counts tries from here on: the deliveries handed back
	// untried when a worker stopped are not counted.
	delivered = d.tries(ctx, md, delivered, log)

	var expires time.Time
	if d.opts.PushTTL > 0 {
		expires = pushSince(ev, msg).Add(d.opts.PushTTL)
	}
	deleted := d.streamDeletes(md)
	var (
		why       string
		notPushed []string
	)
	last := d.opts.MaxDeliver > 0 && delivered >= uint64(d.opts.MaxDeliver)
	reason := ""
	switch {
	case d.opts.MaxDeliver > 0 && delivered > uint64(d.opts.MaxDeliver):
		// Its last delivery ended without a verdict: the worker stopped,
		// perhaps because of this very event, or its dead letter could not
		// be stored. It is not tried again, only kept.
		result, why = "retry", "no verdict on its last delivery (the worker stopped, or the dead letter could not be stored)"
	case delivered > 1 && !expires.IsZero() && !d.opts.Now().Before(expires):
		// Back after an earlier try failed, or ended without a verdict,
		// and too late to push now: kept, not dropped.
		result, why, last = "retry", "expired", true
		reason = "its push TTL ended while it was retried"
	default:
		result, retryAfter, why, notPushed = d.fanOut(ctx, runCtx.Done(), ev, expires, earliest(expires, deleted), log)
	}
	// Cut short by a stop with nothing failed: handed back as if never
	// taken, neither a try nor the last one.
	stopped := result == "retry" && why == stopReason
	if stopped {
		last = false
	}
	// Nothing failed, some pushes wait for their devices' budget: not a
	// try, so not the last one either. (Deferred, a push that would come
	// after the push TTL or the stream's deletion went at once.)
	deferral := result == "retry" && why == budgetDeferral
	if deferral {
		last = false
	}
	// The last try is the last delivery, or one after which the event
	// would come back too late to push: kept as a dead letter rather than
	// dropped as expired then.
	if reason == "" {
		reason = "retries exhausted: " + why
	}
	var delay time.Duration
	if result == "retry" && !last && !stopped {
		delay = d.retryDelay(delivered, retryAfter)
		if deferral {
			delay = retryAfter // a wait for the budget, not a failure
		}
		switch next := d.opts.Now().Add(delay); {
		case !expires.IsZero() && !next.Before(expires):
			last, reason = true, "the push TTL ends before the next try: "+why
		case !deleted.IsZero() && !next.Before(deleted):
			last, reason = true, "the event stream deletes it before the next try: "+why
		}
	}
	switch {
	case result != "retry":
		keep.stop()
		d.settle(msg.Ack(), log)
	case stopped:
		log.Info().Msg("event handed back: the worker stopped before all its pushes began")
		d.handBack(msg, keep)
	case last:
		result = "dead_lettered"
		if d.opts.DeadLetters == nil {
			result = "abandoned"
		} else if err := d.opts.DeadLetters.Put(ctx, messageID(md), msg.Subject(), msg.Data(), reason, delivered, notPushed); err != nil {
			// Not stored: the broker delivers it again (the consumer has
			// no delivery limit), and then it is tried once more.
			result = "retry"
			log.Error().Err(err).Msg("could not store a dead letter; the event comes back from the broker")
			keep.stop()
			d.settle(msg.NakWithDelay(d.opts.MaxRetryDelay), log)
			break
		}
		log.Error().Uint64("deliveries", delivered).Str("reason", reason).Str("result", result).Msg("giving up on event after its last delivery")
		keep.stop()
		d.settle(msg.Term(), log) // bare, as for a malformed event: the reason is logged and in the dead letter
	default:
		log.Info().Stringer("delay", delay.Round(time.Millisecond)).Uint64("deliveries", delivered).Msg("event will be retried")
		if deferral && md != nil {
			if err := d.noteUntried(md); err != nil {
				log.Warn().Err(err).Msg("could not note a deferral for the push budget; it counts as a try")
			}
		}
		keep.stop()
		d.settle(msg.NakWithDelay(delay), log)
	}
	d.m.events.WithLabelValues(result).Inc()
	d.m.fanoutSeconds.Observe(d.opts.Now().Sub(start).Seconds())
	if result == "delivered" {
		d.m.eventAge.Observe(d.opts.Now().Sub(ev.ChangedAt).Seconds())
	}
	return result, stopped, retryAfter
}

func (d *Dispatcher) settle(err error, log zerolog.Logger) {
	if err != nil {
		d.warnLimited(log, "settle").Err(err).Msg("could not settle message with the broker; it will be redelivered")
	}
}

// messageID identifies a message by its stream and sequence, "" if its
// metadata is unknown.
func messageID(md *jetstream.MsgMetadata) string {
	if md == nil {
		return ""
	}
	return md.Stream + "." + strconv.FormatUint(md.Sequence.Stream, 10)
}

// deliveryKey identifies a message by its stream, sequence and time, so
// that a stream created again, whose sequences start over, does not
// inherit the counts of the one before.
func deliveryKey(md *jetstream.MsgMetadata) string {
	return messageID(md) + "." + strconv.FormatInt(md.Timestamp.UnixNano(), 36)
}

// streamDeletes returns when the event stream may delete a message, at
// its max age whether or not it waits for a retry, less AckWait for a
// redelivery to be handled in; zero if the stream keeps it.
func (d *Dispatcher) streamDeletes(md *jetstream.MsgMetadata) time.Time {
	maxAge := time.Duration(d.streamMaxAge.Load())
	if maxAge <= 0 || md == nil {
		return time.Time{}
	}
	return md.Timestamp.Add(maxAge - d.opts.AckWait)
}

// earliest returns the earlier of two times, zero standing for never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// budgetDeferral is why an event waits for a device's push budget.
const budgetDeferral = "push budget"

// stopReason is why an event goes back when the dispatcher stopped before
// some of its pushes began.
const stopReason = "the worker stopped"

// pushSince is when the push TTL of an event starts: its change, or its
// replay from the dead letters.
func pushSince(ev *event.DatasetChanged, msg jetstream.Msg) time.Time {
	if h := msg.Headers().Get(event.HeaderReplayedAt); h != "" {
		if t, err := time.Parse(time.RFC3339Nano, h); err == nil && t.After(ev.ChangedAt) {
			return t
		}
	}
	return ev.ChangedAt
}

// retryDelay is RetryDelay doubled per earlier delivery, capped, with
// ±20% jitter, and never shorter than what the service asked for.
func (d *Dispatcher) retryDelay(delivered uint64, retryAfter time.Duration) time.Duration {
	delay := d.opts.RetryDelay
	for i := uint64(1); i < delivered && delay < d.opts.MaxRetryDelay; i++ {
		delay *= 2
	}
	delay = min(delay, d.opts.MaxRetryDelay)
	delay = time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
	return max(delay, retryAfter)
}

// target is one push of a fan-out.
type target struct {
	dev registry.Device
	app *registry.App
}

// fanOut sends the event to every subscribed device but its origin and
// returns the event's result: "delivered" when every push settled for good
// (accepted, or dropped as permanent), "retry" when some must be tried
// again, or why nothing was sent; for "retry", also the devices not pushed
// (their push failed, or waits for their budget), sorted. A push is
// deferred for a device's budget only if its event comes back before
// deferBy (zero: any time). Once stop is closed, no push begins and none
// is retried in process: the event is tried again later, stopReason alone
// when no push failed (whether or not some wait for their budget).
func (d *Dispatcher) fanOut(ctx context.Context, stop <-chan struct{}, ev *event.DatasetChanged, expires, deferBy time.Time, log zerolog.Logger) (result string, retryAfter time.Duration, why string, notPushed []string) {
	if !expires.IsZero() && !d.opts.Now().Before(expires) {
		log.Info().Time("changed_at", ev.ChangedAt).Msg("dropping an event older than the push TTL")
		return "expired", 0, "", nil
	}
	reg, err := d.registration(ev.IdentityPoolID, ev.IdentityID)
	if err != nil {
		d.warnLimited(log, "registry lookup").Err(err).Msg("registry lookup failed")
		return "retry", 0, "registry: " + err.Error(), nil
	}
	subs := reg.Subscribers(ev.DatasetName)
	targets := make([]target, 0, len(subs))
	alreadySent, noApp := 0, 0
	var deferFor time.Duration // until the first device over its budget may get a push
	var deferred []string
	var pp *registry.PoolPush
	for _, dev := range subs {
		if dev.ID == ev.OriginDeviceID {
			continue
		}
		if reg.Sent[registry.SentKey(dev.ID, ev.DatasetName)] >= ev.SyncCount {
			// A redelivery, or an older change after a newer one: the
			// device already has this state.
			d.m.pushes.WithLabelValues(string(dev.Platform), "skipped", "already_sent").Inc()
			alreadySent++
			continue
		}
		if d.opts.DeviceBudget > 0 {
			w, now := reg.Budget[dev.ID], d.opts.Now()
			if now.Sub(w.Start) < d.opts.BudgetWindow && w.Pushes >= d.opts.DeviceBudget {
				wait := w.Start.Add(d.opts.BudgetWindow).Sub(now)
				if deferBy.IsZero() || now.Add(wait).Before(deferBy) {
					d.m.pushes.WithLabelValues(string(dev.Platform), "deferred", "budget").Inc()
					if deferFor == 0 || wait < deferFor {
						deferFor = wait
					}
					deferred = append(deferred, dev.ID)
					continue
				}
				// Deferred, the change would be older than the push TTL
				// when it came back, and dropped, or deleted by the stream
				// meanwhile: the device would never learn of it. It goes
				// now, over the budget.
				log.Info().Str("device", dev.ID).Msg("pushing over the device's budget: deferred, the change would outlive the push TTL or the event stream")
			}
		}
		if pp == nil {
			p, err := d.poolPush(ctx, ev.IdentityPoolID)
			if errors.Is(err, registry.ErrPushNotEnabled) {
				log.Debug().Msg("push sync is not configured for the pool")
				return "push_disabled", 0, "", nil
			}
			if err != nil {
				d.warnLimited(log, "pool push configuration").Err(err).Msg("reading the pool's push configuration failed")
				return "retry", 0, "registry: " + err.Error(), nil
			}
			pp = &p
		}
		name, ok := pp.Apps[dev.Platform]
		if !ok {
			d.m.pushes.WithLabelValues(string(dev.Platform), "skipped", "no_app_for_platform").Inc()
			noApp++
			continue
		}
		app, err := d.app(ctx, name)
		if errors.Is(err, registry.ErrAppNotFound) {
			d.m.pushes.WithLabelValues(string(dev.Platform), "skipped", "app_not_found").Inc()
			d.warnLimited(log, "no app "+name).Str("app", name).Msg("the pool names a platform app that does not exist")
			noApp++
			continue
		}
		if err != nil {
			d.warnLimited(log, "platform app").Err(err).Msg("reading a platform app failed")
			return "retry", 0, "registry: " + err.Error(), nil
		}
		targets = append(targets, target{dev: dev, app: app})
	}
	if len(targets) == 0 {
		if deferFor > 0 {
			slices.Sort(deferred)
			return "retry", deferFor, budgetDeferral, deferred
		}
		if alreadySent > 0 {
			return "delivered", 0, "", nil // every subscriber has it already
		}
		if noApp > 0 {
			// Subscribers, but no platform app to reach them: not an
			// event no device wanted.
			return "no_app", 0, "", nil
		}
		return "no_subscribers", 0, "", nil
	}

	f := &fan{ctx: ctx, stop: stop, log: log}
	jobs := make([]sendJob, len(targets))
	f.wg.Add(len(targets))
	for i, t := range targets {
		jobs[i] = sendJob{ev: ev, t: t, expires: expires, fan: f}
		d.senders.submit(&jobs[i])
	}
	f.wg.Wait()
	if deferFor > 0 {
		f.retry = true
		f.retryAfter = max(f.retryAfter, deferFor)
		f.reason(budgetDeferral)
	}
	if f.retry {
		notPushed := append(deferred, f.failed...)
		slices.Sort(notPushed)
		// Cut short by the stop with no push failed, some perhaps
		// waiting for their budget: handed back untried (see process),
		// and the next worker defers those again.
		others := len(f.reasons) - 1
		if f.reasons[budgetDeferral] {
			others--
		}
		if f.reasons[stopReason] && others == 0 {
			return "retry", 0, stopReason, notPushed
		}
		list := make([]string, 0, len(f.reasons))
		for r := range f.reasons {
			list = append(list, r)
		}
		slices.Sort(list)
		return "retry", f.retryAfter, strings.Join(list, ", "), notPushed
	}
	return "delivered", 0, "", nil
}

// fan is the state of one event's fan-out, shared by its sends.
type fan struct {
	ctx context.Context
	// stop is closed when the dispatcher stops: no push begins after.
	stop <-chan struct{}
	log  zerolog.Logger
	// wg counts the sends not yet settled and the accepted pushes not yet
	// recorded.
	wg         sync.WaitGroup
	mu         sync.Mutex
	retry      bool
	retryAfter time.Duration
	reasons    map[string]bool
	failed     []string // the devices whose push failed for a retry
}

// stopped reports whether the dispatcher has stopped.
func (f *fan) stopped() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

func (f *fan) reason(r string) {
	if f.reasons == nil {
		f.reasons = make(map[string]bool)
	}
	f.reasons[r] = true
}

// sendJob is one push of a fan-out, for a sender.
type sendJob struct {
	ev      *event.DatasetChanged
	t       target
	expires time.Time
	fan     *fan
}

// runJob makes one push of a fan-out and settles it: an accepted push is
// recorded as soon as the service accepted it (so a crash repeats only
// pushes accepted and not yet recorded), a dead token is removed, and a
// passing failure marks the event for retry.
func (d *Dispatcher) runJob(j *sendJob) {
	f := j.fan
	defer f.wg.Done()
	if f.stopped() {
		// Begun now, the drain of a stop would last as long as the
		// fan-outs queued behind the sends in flight.
		d.m.pushes.WithLabelValues(string(j.t.dev.Platform), "skipped", "stopping").Inc()
		f.mu.Lock()
		f.retry = true
		f.reason(stopReason)
		f.failed = append(f.failed, j.t.dev.ID)
		f.mu.Unlock()
		return
	}
	perr := d.send(f, j.ev, j.t, j.expires)
	if perr == nil {
		var countAt time.Time
		if d.opts.DeviceBudget > 0 {
			countAt = d.opts.Now()
		}
		f.wg.Add(1)
		d.redis.record(sentReq{ev: j.ev, deviceID: j.t.dev.ID, countAt: countAt, fan: f})
		return
	}
	switch perr.Class {
	case Retry, Config:
		f.mu.Lock()
		f.retry = true
		f.retryAfter = max(f.retryAfter, perr.RetryAfter)
		f.reason(string(j.t.dev.Platform) + " " + perr.Reason)
		f.failed = append(f.failed, j.t.dev.ID)
		f.mu.Unlock()
	case TokenDead:
		d.removeDead(f.ctx, j.ev, j.t.dev, perr, f.log)
	}
}

// lookupReq asks the lookup batcher for one identity's registration.
type lookupReq struct {
	id    registry.Identity
	reply chan registry.Lookup
}

// registration reads an identity's registration through the lookup
// batcher.
func (d *Dispatcher) registration(pool, identity string) (*registry.Registration, error) {
	reply := d.replies.Get().(chan registry.Lookup)
	d.redis.lookups <- &lookupReq{id: registry.Identity{Pool: pool, ID: identity}, reply: reply}
	res := <-reply
	d.replies.Put(reply)
	return res.Registration, res.Err
}

// sentReq asks the record batcher to note one accepted push.
type sentReq struct {
	ev       *event.DatasetChanged
	deviceID string
	countAt  time.Time
	fan      *fan
}

// flush runs one batch of lookups and records in one pipeline. Records
// are merged per event: one script call notes all of an event's accepted
// pushes, so that a redelivered or older event does not push those
// devices again.
func (d *Dispatcher) flush(lookups []*lookupReq, records []sentReq) {
	ids := make([]registry.Identity, len(lookups))
	for i, r := range lookups {
		ids[i] = r.id
	}
	sent := make([]registry.Sent, 0, len(records))
	entry := make([]int, len(records))
	byEvent := make(map[*event.DatasetChanged]int, len(records))
	for i, r := range records {
		j, ok := byEvent[r.ev]
		if !ok {
			j = len(sent)
			byEvent[r.ev] = j
			sent = append(sent, registry.Sent{
				Pool: r.ev.IdentityPoolID, Identity: r.ev.IdentityID, Dataset: r.ev.DatasetName,
				SyncCount: r.ev.SyncCount, CountAt: r.countAt, Window: d.opts.BudgetWindow,
			})
		}
		sent[j].DeviceIDs = append(sent[j].DeviceIDs, r.deviceID)
		entry[i] = j
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.SendTimeout)
	res, errs := d.reg.RunBatch(ctx, ids, sent)
	cancel()
	d.m.batch.Observe(float64(len(lookups) + len(sent)))
	for i, r := range lookups {
		r.reply <- res[i]
	}
	for i, r := range records {
		if err := errs[entry[i]]; err != nil {
			r.fan.log.Warn().Err(err).Str("device", r.deviceID).Msg("could not record a sent push; a redelivery may push it again")
		}
		r.fan.wg.Done()
	}
}

// removeDead removes a device whose token the push service declared dead
// and announces it.
func (d *Dispatcher) removeDead(ctx context.Context, ev *event.DatasetChanged, dev registry.Device, perr *Error, log zerolog.Logger) {
	deadSince := perr.DeadSince
	if deadSince.IsZero() {
		deadSince = d.opts.Now()
	}
	removed, err := d.reg.RemoveDeadDevice(ctx, ev.IdentityPoolID, ev.IdentityID, dev.ID, dev.Token, deadSince, perr.Reason)
	if err != nil {
		log.Warn().Err(err).Str("device", dev.ID).Msg("could not remove a device with a dead token")
		return
	}
	if !removed {
		log.Info().Str("device", dev.ID).Msg("token reported dead, but the device registered again since; kept")
		return
	}
	d.m.removed.WithLabelValues(string(dev.Platform), perr.Reason).Inc()
	log.Info().Str("device", dev.ID).Str("platform", string(dev.Platform)).Str("reason", perr.Reason).Msg("removed a device with a dead token")
	if d.opts.DeviceEvents != nil {
		if err := removals.Announce(ctx, d.reg, d.opts.DeviceEvents, registry.Removal{
			IdentityPoolID: ev.IdentityPoolID, IdentityID: ev.IdentityID, DeviceID: dev.ID,
			Platform: dev.Platform, Reason: perr.Reason, RemovedAt: d.opts.Now(),
		}); err != nil {
			log.Warn().Err(err).Str("device", dev.ID).Msg("could not publish the device-removed event now; the sweep for unannounced removals publishes it")
		}
	}
}

// send makes one push of f, retrying a passing failure within RetryBudget
// unless the dispatcher stops, and records each attempt's outcome; it
// returns the final classified failure, or nil.
func (d *Dispatcher) send(f *fan, ev *event.DatasetChanged, t target, expires time.Time) *Error {
	ctx := f.ctx
	platform := string(t.dev.Platform)
	n, ok := d.notifiers[t.app.Kind]
	if !ok {
		d.m.pushes.WithLabelValues(platform, Config.String(), "no_notifier").Inc()
		return &Error{Class: Config, Reason: "no_notifier", Err: fmt.Errorf("no notifier for %s apps", t.app.Kind)}
	}
	if until, ok := d.suspendedUntil(routeOf(t)); ok {
		app := d.rotated(ctx, t)
		if app == nil {
			d.m.pushes.WithLabelValues(platform, "skipped", "app_suspended").Inc()
			return &Error{Class: Config, Reason: "app_suspended", RetryAfter: time.Until(until)}
		}
		t.app = app // credentials replaced since the suspension: tried at once
	}
	budget := time.Now().Add(d.opts.RetryBudget)
	for attempt := 0; ; attempt++ {
		perr := d.attempt(ctx, n, &Push{Event: ev, Device: t.dev, App: t.app, Expires: expires}, f.log)
		switch {
		case perr == nil:
			d.resume(routeOf(t))
			d.confirm(t)
			return nil
		case perr.Class == Config:
			d.suspend(t, perr)
			return perr
		case perr.Class == TokenDead:
			if run := d.deadRun(routeOf(t), t.dev.ID); run > d.opts.MaxDeadRun {
				// An app that refuses every device is more likely wrong
				// than every device dead: its topic, environment or
				// project. The devices are kept until it accepts one.
				perr = &Error{Class: Config, Reason: "refuses_every_device", Err: fmt.Errorf(
					"%s refused the last %d devices (%s) and accepted none: check the app's topic, environment or project; devices are no longer removed until it accepts a push",
					t.app.Name, run, perr.Reason)}
				d.suspend(t, perr)
			} else if perr.ForApp && !d.confirmed(t) {
				// The token may be alive and the app's topic,
				// environment or project wrong: not a verdict on the
				// device until the app has accepted a push.
				perr = &Error{Class: Retry, Reason: perr.Reason, Err: fmt.Errorf(
					"%s has accepted no push on %s since its revision %d was read, so its topic, environment or project may be wrong; the device is kept and tried again: %w",
					t.app.Name, t.dev.Platform, t.app.Revision, perr)}
			}
			return perr
		case perr.Class != Retry:
			return perr
		}
		wait := max(perr.RetryAfter, time.Duration(float64(100*time.Millisecond<<min(attempt, 6))*(0.8+0.4*rand.Float64())))
		if time.Now().Add(wait).After(budget) {
			return perr // the broker holds the rest of the wait
		}
		select {
		case <-ctx.Done():
			return perr
		case <-f.stop:
			return perr // the broker holds the retry
		case <-time.After(wait):
		}
	}
}

// attempt makes one push request and records its outcome. A failure is
// logged on log, the event's, which names the pool and identity: with the
// device id they find the device.
func (d *Dispatcher) attempt(ctx context.Context, n Notifier, p *Push, log zerolog.Logger) *Error {
	platform := string(p.Device.Platform)
	d.m.inflightPushes.Inc()
	sctx, cancel := context.WithTimeout(ctx, d.opts.SendTimeout)
	start := time.Now()
	err := n.Notify(sctx, p)
	cancel()
	d.m.inflightPushes.Dec()
	pm := d.m.platform(p.Device.Platform)
	pm.sendSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		pm.accepted.Inc()
		return nil
	}
	perr := Classify(err)
	d.m.pushes.WithLabelValues(platform, perr.Class.String(), perr.Reason).Inc()
	ok, suppressed := d.failureLog.Allow(failureKind{p.App.Name, platform, perr.Class, perr.Reason}, start)
	if !ok {
		return perr
	}
	le := log.Warn()
	if perr.Class == Config {
		le = log.Error()
	}
	if suppressed > 0 {
		le = le.Int("similar_not_logged", suppressed)
	}
	le.Err(perr.Err).Str("platform", platform).Str("app", p.App.Name).Str("device", p.Device.ID).
		Str("class", perr.Class.String()).Str("reason", perr.Reason).
		Msg("push not accepted")
	return perr
}

// warnLimited returns a warning of kind, which stands for one kind of
// trouble with the registry or the broker, once every failureLogEvery,
// with how many like it were not logged; the others are debug lines. An
// outage fails every event for a while, and one line per event would bury
// everything else.
func (d *Dispatcher) warnLimited(log zerolog.Logger, kind string) *zerolog.Event {
	return d.troubleLog.Event(log, zerolog.WarnLevel, kind, d.opts.Now())
}

// failureKind is what a "push not accepted" line is logged once for in
// failureLogEvery; the line says how many like it were not logged.
type failureKind struct {
	app, platform string
	class         Class
	reason        string
}

// route is what a suspension covers: a platform app on one platform, so
// that credentials refused by the APNs sandbox (an environment-scoped key,
// say) stop sandbox pushes only, and production goes on.
type route struct {
	app      string
	platform registry.Platform
}

func routeOf(t target) route { return route{t.app.Name, t.dev.Platform} }

// suspension is a route not used until a time, unless its app has been
// given a revision after the one refused.
type suspension struct {
	until    time.Time
	revision int64     // of the app, refused
	checked  time.Time // when the registry was last read for a newer one
}

// suspend stops sending through t's route, whose credentials were refused,
// for ConfigBackoff or until its app is replaced; its events wait in the
// broker meanwhile.
func (d *Dispatcher) suspend(t target, perr *Error) {
	r := routeOf(t)
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.suspended[r]
	if !ok {
		s = &suspension{}
		d.suspended[r] = s
		d.nSuspended.Add(1)
		d.log.Error().Str("app", r.app).Str("platform", string(r.platform)).Int64("revision", t.app.Revision).Str("reason", perr.Reason).Stringer("for", d.opts.ConfigBackoff).
			Msg("platform app refused by its push service; not sending through it until it is fixed")
	}
	s.until = time.Now().Add(d.opts.ConfigBackoff)
	s.revision = max(s.revision, t.app.Revision)
	d.m.misconfigured.WithLabelValues(r.app).Set(1)
	perr.RetryAfter = max(perr.RetryAfter, d.opts.ConfigBackoff)
}

// rotated returns t's app if a revision of it newer than the one its
// route's suspension refused is known, reading the registry at most once a
// second per suspended route past the app cache; else nil. An operator who
// replaces refused credentials has pushes tried with them at once, not
// after the suspension and the cached app run out.
func (d *Dispatcher) rotated(ctx context.Context, t target) *registry.App {
	r := routeOf(t)
	now := time.Now()
	d.mu.Lock()
	s, ok := d.suspended[r]
	if !ok {
		d.mu.Unlock()
		return t.app
	}
	refused := s.revision
	read := now.Sub(s.checked) >= time.Second
	if read && t.app.Revision <= refused {
		s.checked = now
	}
	d.mu.Unlock()
	if t.app.Revision > refused {
		return t.app
	}
	if !read {
		return nil
	}
	app, err := d.reg.App(ctx, t.app.Name)
	if err != nil || app.Revision <= refused {
		return nil
	}
	d.apps.put(app.Name, app)
	d.log.Info().Str("app", app.Name).Str("platform", string(r.platform)).Int64("revision", app.Revision).
		Msg("suspended platform app has new credentials; trying them")
	return &app
}

// forgetIdleSuspensions ends, every half ConfigBackoff until ctx ends, the
// suspensions of routes that nothing was sent through for a whole
// ConfigBackoff after theirs ran out: a route still in use is suspended
// again or accepted at its next push, but one no longer used (its app
// deleted, or its pool moved to another) would show as suspended for good.
func (d *Dispatcher) forgetIdleSuspensions(ctx context.Context) {
	t := time.NewTicker(max(d.opts.ConfigBackoff/2, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.forgetSuspensionsIdleSince(now.Add(-d.opts.ConfigBackoff))
		}
	}
}

// forgetSuspensionsIdleSince ends the suspensions that ran out before
// idle and were not renewed since.
func (d *Dispatcher) forgetSuspensionsIdleSince(idle time.Time) {
	if d.nSuspended.Load() == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	apps := map[string]bool{} // app → still suspended on some platform
	for r, s := range d.suspended {
		if s.until.Before(idle) {
			delete(d.suspended, r)
			d.nSuspended.Add(-1)
			d.log.Info().Str("app", r.app).Str("platform", string(r.platform)).
				Msg("platform app not used since its suspension ended; no longer shown as suspended")
			apps[r.app] = apps[r.app] || false
		} else {
			apps[r.app] = true
		}
	}
	for app, suspended := range apps {
		if !suspended {
			d.m.misconfigured.WithLabelValues(app).Set(0)
		}
	}
}

func (d *Dispatcher) suspendedUntil(r route) (time.Time, bool) {
	if d.nSuspended.Load() == 0 {
		return time.Time{}, false // the common case, without the lock
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.suspended[r]
	if !ok || time.Now().After(s.until) {
		return time.Time{}, false // time to try it again
	}
	return s.until, true
}

// appRevision is a route under one revision of its app: a new revision
// may have another topic or project.
type appRevision struct {
	route
	revision int64
}

// confirm notes that the revision of t's app accepted a push on t's
// platform: its topic, environment and project are right.
func (d *Dispatcher) confirm(t target) {
	k := appRevision{routeOf(t), t.app.Revision}
	if _, ok := d.accepted.Load(k); !ok {
		d.accepted.Store(k, struct{}{})
	}
}

// confirmed reports whether the revision of t's app has accepted a push on
// t's platform.
func (d *Dispatcher) confirmed(t target) bool {
	_, ok := d.accepted.Load(appRevision{routeOf(t), t.app.Revision})
	return ok
}

// deadRun is the devices a route reported dead since it last accepted a
// push, up to one more than MaxDeadRun.
type deadRun struct {
	n       atomic.Int32 // len(devices), read without the lock
	mu      sync.Mutex
	devices map[string]struct{}
}

// deadRun notes that route r reported device dead and returns how many
// devices it has reported dead since its last accepted push.
func (d *Dispatcher) deadRun(r route, device string) int {
	d.anyDead.Store(true)
	v, _ := d.deadRuns.LoadOrStore(r, &deadRun{devices: make(map[string]struct{})})
	run := v.(*deadRun)
	run.mu.Lock()
	defer run.mu.Unlock()
	if len(run.devices) <= d.opts.MaxDeadRun {
		run.devices[device] = struct{}{}
	}
	run.n.Store(int32(len(run.devices)))
	return len(run.devices)
}

// resume notes that route r accepted a push: its run of dead devices ends,
// and it is no longer suspended.
func (d *Dispatcher) resume(r route) {
	if d.anyDead.Load() { // not in the common case, no dead device ever
		if v, ok := d.deadRuns.Load(r); ok {
			if run := v.(*deadRun); run.n.Load() != 0 {
				run.mu.Lock()
				clear(run.devices)
				run.n.Store(0)
				run.mu.Unlock()
			}
		}
	}
	if d.nSuspended.Load() == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.suspended[r]; !ok {
		return
	}
	delete(d.suspended, r)
	d.nSuspended.Add(-1)
	d.log.Info().Str("app", r.app).Str("platform", string(r.platform)).Msg("platform app accepted again")
	for other := range d.suspended {
		if other.app == r.app {
			return // still suspended for another platform
		}
	}
	d.m.misconfigured.WithLabelValues(r.app).Set(0)
}

func (d *Dispatcher) poolPush(ctx context.Context, pool string) (registry.PoolPush, error) {
	return d.pools.get(pool, func() (registry.PoolPush, error) { return d.reg.PoolPush(ctx, pool) },
		func(err error) bool { return errors.Is(err, registry.ErrPushNotEnabled) })
}

func (d *Dispatcher) app(ctx context.Context, name string) (*registry.App, error) {
	app, err := d.apps.get(name, func() (registry.App, error) { return d.reg.App(ctx, name) },
		func(err error) bool { return errors.Is(err, registry.ErrAppNotFound) })
	if err != nil {
		return nil, err
	}
	return &app, nil
}

// group is the events of one dataset gathered in a coalescing window.
type group struct {
	ev         *event.DatasetChanged
	msg        jetstream.Msg
	superseded []jetstream.Msg
	// keep holds every message of the group in progress, through the
	// window, the wait for a worker and the fan-out: the first one's, with
	// the others' adopted.
	keep *inProgress
	// mixed is set when the events came from more than one device: then
	// no device is left out as the origin, since each origin lacks the
	// others' changes.
	mixed bool
	// done is called for each message of the group once all are settled.
	// The messages were pulled by one consume, which waits for its groups,
	// so it is the same for all.
	done func()
}

// coalesce adds an event to its dataset's group, opening the group and its
// window if there is none. When the window closes (or the dispatcher
// stops), the event with the highest sync count is processed and the rest
// are acked: the pushes carry the newer state. Until then every message
// stays unacked, so a crash loses none. Processed after a stop, the event
// begins no push and goes back to the broker (see process). done is called
// for every message of the group once all are settled.
func (d *Dispatcher) coalesce(runCtx context.Context, ev *event.DatasetChanged, msg jetstream.Msg, keep *inProgress, done func()) {
	key := ev.IdentityPoolID + "\x00" + ev.IdentityID + "\x00" + ev.DatasetName
	d.m.coalescing.Inc()
	d.cmu.Lock()
	if g, ok := d.groups[key]; ok {
		g.mixed = g.mixed || ev.OriginDeviceID != g.ev.OriginDeviceID
		if ev.SyncCount > g.ev.SyncCount {
			g.superseded = append(g.superseded, g.msg)
			g.ev, g.msg = ev, msg
		} else {
			g.superseded = append(g.superseded, msg)
		}
		g.keep.adopt(keep)
		d.cmu.Unlock()
		return
	}
	g := &group{ev: ev, msg: msg, keep: keep, done: done}
	d.groups[key] = g
	d.cmu.Unlock()
	d.log.Debug().Str("pool", ev.IdentityPoolID).Str("identity", ev.IdentityID).Str("dataset", ev.DatasetName).
		Int64("sync_count", ev.SyncCount).Msg("coalescing window opened")

	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTimer(d.opts.CoalesceWindow)
		select {
		case <-t.C:
		case <-runCtx.Done():
			t.Stop()
		}
		d.cmu.Lock()
		delete(d.groups, key)
		d.cmu.Unlock()
		d.slots <- struct{}{}
		defer func() { <-d.slots }()
		ev := g.ev
		if g.mixed {
			e := *ev
			e.OriginDeviceID = ""
			ev = &e
		}
		// process stops g.keep to settle the newest message; the others,
		// settled right after, were held in progress until then.
		result, untried, retryAfter := d.process(runCtx, ev, g.msg, g.keep)
		// The newest event stands for the others only once its pushes are
		// done: if it comes back, it comes back with its own origin, which
		// has not seen the others' changes; they come back too.
		again := g.mixed && (result == "retry" || result == "dead_lettered" || result == "abandoned")
		for _, m := range g.superseded {
			if again && untried {
				// Handed back by a stop: untried like the newest, not a
				// try of theirs.
				d.handBack(m, nil)
				d.m.events.WithLabelValues("retry").Inc()
				continue
			}
			if again {
				delivered := uint64(1)
				if md, err := m.Metadata(); err == nil {
					delivered = md.NumDelivered
				}
				// Not before the newest: the service refuses them
				// as it refused it (Retry-After, a suspended app).
				d.settle(m.NakWithDelay(d.retryDelay(delivered, retryAfter)), d.log)
				d.m.events.WithLabelValues("retry").Inc()
				continue
			}
			d.settle(m.Ack(), d.log)
			d.m.events.WithLabelValues("coalesced").Inc()
		}
		n := 1 + len(g.superseded)
		d.m.coalescing.Sub(float64(n))
		for range n {
			g.done()
		}
	}()
}

// inProgress tells the broker, every half AckWait from its arrival until
// it is stopped, that a message is being worked on, so that none is
// redelivered while its event waits for a worker, for its registry lookups
// or for its pushes. It stops with it those it adopted.
type inProgress struct {
	every   time.Duration
	mu      sync.Mutex
	msg     jetstream.Msg
	timer   *time.Timer
	done    bool
	adopted []*inProgress
}

func (d *Dispatcher) keepInProgress(msg jetstream.Msg) *inProgress {
	p := &inProgress{every: d.opts.AckWait / 2, msg: msg}
	p.mu.Lock()
	p.timer = time.AfterFunc(p.every, p.tick)
	p.mu.Unlock()
	return p
}

func (p *inProgress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done { // a tick racing stop must not re-arm the timer
		return
	}
	_ = p.msg.InProgress()
	p.timer.Reset(p.every)
}

// adopt makes stop stop q too; q goes on holding its own message in
// progress until then.
func (p *inProgress) adopt(q *inProgress) {
	p.mu.Lock()
	p.adopted = append(p.adopted, q)
	p.mu.Unlock()
}

// stop ends the progress notes; once it returns none is sent, so that a
// message can be settled (a note after a delayed nak would move the
// redelivery).
func (p *inProgress) stop() {
	p.mu.Lock()
	p.done = true
	p.timer.Stop()
	adopted := p.adopted
	p.mu.Unlock()
	for _, q := range adopted {
		q.stop()
	}
}

// watchLag exports the consumer's backlog every few seconds, for
// autoscaling workers on it. When the server answers that the consumer or
// its stream does not exist any more, it calls gone with that error and
// returns.
func (d *Dispatcher) watchLag(ctx context.Context, cons jetstream.Consumer, gone func(error)) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		switch {
		case err == nil:
			d.m.pending.Set(float64(info.NumPending))
			d.m.ackPending.Set(float64(info.NumAckPending))
		case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
			gone(fmt.Errorf("consumer %s on stream %s is gone: %w", d.opts.Consumer, d.opts.Stream, err))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
