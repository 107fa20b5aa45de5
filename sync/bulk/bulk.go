// Package bulk runs BulkPublish, the counterpart of Cognito Streams' bulk
// publish: it publishes the current state of every dataset of an identity
// pool, records included, to the JetStream stream the pool's CognitoStreams
// setting names. A pool is bulk published at most once per 24 hours.
//
// Each dataset becomes one message on subject
// pushsync.streams.<StreamName>.<pool>.<identity>.<dataset> (the three ids
// base64url-encoded as in event subjects), deduplicated by
// bulk.<pool>.<identity>.<dataset>.<syncCount>; its JSON is the Snapshot
// type. A message is the dataset as one atomic read found it: each record
// once, tombstones included, none newer than the message's SyncCount.
//
// A dataset larger than the largest message the NATS server (max_payload)
// and the stream (max message size) take is published as consecutive
// messages on its subject, its parts, deduplicated by
// bulk.<pool>.<identity>.<dataset>.<syncCount>.<part>.<parts>: each
// carries the dataset's metadata, its Part (from 1) and Parts, and the
// next run of records; a value too large for a message of its own is cut
// over several parts (see Snapshot.Continued). Join puts them together.
//
// The identities of the pool are walked with SSCAN, which may return one
// twice (Redis allows it when the set is resized during the walk). Its
// datasets are then read and published again: a message with the same
// SyncCount carries the same deduplication id and is stored once; one with
// a greater SyncCount is the newer state of the dataset, which a consumer
// keeping the snapshot of highest SyncCount takes in place of the first.
package bulk

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/store"
)

// ErrStreamsNotEnabled is returned by Start for a pool without an enabled
// CognitoStreams setting.
var ErrStreamsNotEnabled = errors.New("bulk: CognitoStreams is not enabled for the identity pool")

// ErrInvalidStreamName is returned by Start for a pool whose
// CognitoStreams StreamName cannot name a JetStream stream.
var ErrInvalidStreamName = errors.New("bulk: invalid stream name")

// checkStreamName returns an error wrapping ErrInvalidStreamName, saying
// why, for a name that JetStream refuses as a stream name or that would not
// be one token of the bulk subjects.
func checkStreamName(name string) error {
	if i := strings.IndexFunc(name, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(".*>/\\", r)
	}); i >= 0 {
		return fmt.Errorf("%w: CognitoStreams.StreamName %q cannot name a JetStream stream: it contains %q (JetStream stream names have no '.', '*', '>', '/', '\\', spaces or control characters)",
			ErrInvalidStreamName, name, []rune(name[i:])[0])
	}
	return nil
}

// Registry is what a Runner needs of the registry.
type Registry interface {
	PoolStreams(ctx context.Context, pool string) (*registry.Streams, error)
	BeginBulkPublish(ctx context.Context, pool string, lease, minInterval time.Duration) (registry.BulkPublish, error)
	RenewBulkPublish(ctx context.Context, pool string, start time.Time, lease time.Duration) error
	FinishBulkPublish(ctx context.Context, pool string, start time.Time, failure string) error
	BulkPublishState(ctx context.Context, pool string) (registry.BulkPublish, error)
}

// Store is what a Runner needs of the dataset store.
type Store interface {
	Identities(ctx context.Context, pool, cursor string, count int) ([]string, string, error)
	ListDatasets(ctx context.Context, pool, identity string, max int, nextToken string) ([]store.Dataset, string, error)
	ListRecords(ctx context.Context, pool, identity, dataset string, o store.ListOptions) (*store.Page, error)
}

// Options configures a Runner.
type Options struct {
	// MinInterval is the least time between two successful runs. If not
	// set, 24 hours.
	MinInterval time.Duration
	// Lease is how long a run counts as alive without renewing. If not
	// set, 1 minute.
	Lease time.Duration
	// Replicas of a stream the runner creates. If not set, 1.
	Replicas int
	// ProgressEvery is how often a run logs how far it got. If not set,
	// 30 seconds.
	ProgressEvery time.Duration
}

// Runner starts and runs bulk publishes.
type Runner struct {
	reg   Registry
	store Store
	js    jetstream.JetStream
	opts  Options
	log   zerolog.Logger
}

// New returns a Runner.
func New(reg Registry, s Store, js jetstream.JetStream, opts Options, log zerolog.Logger) *Runner {
	if opts.MinInterval <= 0 {
		opts.MinInterval = 24 * time.Hour
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 30 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = time.Minute
	}
	return &Runner{reg: reg, store: s, js: js, opts: opts, log: log}
}

// SubjectPrefix returns the first part of the subjects of the bulk
// messages for the stream named stream: pushsync.streams.<stream>.
func SubjectPrefix(stream string) string { return "pushsync.streams." + stream }

// EnsureStream creates the JetStream stream a bulk publish to stream
// writes to if it does not exist: file storage, subjects
// SubjectPrefix(stream)+".>", a 10-minute duplicate window and the given
// replicas (1 if not set). An existing stream must capture those subjects
// and deduplicate publishes, or the error says what differs; it gets the
// 10-minute duplicate window and more replicas if more are asked for, and
// keeps everything else an operator set, its replicas included (they are
// never lowered).
func EnsureStream(ctx context.Context, js jetstream.JetStream, stream string, replicas int) (jetstream.Stream, error) {
	return event.Ensure(ctx, js, jetstream.StreamConfig{
		Name:        stream,
		Description: "pushsync bulk publishes of identity pools' datasets",
		Subjects:    []string{SubjectPrefix(stream) + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		Duplicates:  10 * time.Minute,
	}, nil)
}

// Snapshot is one dataset as a bulk publish writes it.
type Snapshot struct {
	IdentityPoolID   string    `json:"identityPoolId"`
	IdentityID       string    `json:"identityId"`
	DatasetName      string    `json:"datasetName"`
	SyncCount        int64     `json:"syncCount"`
	LastModifiedDate time.Time `json:"lastModifiedDate"`
	LastModifiedBy   string    `json:"lastModifiedBy,omitempty"`
	// Part and Parts number the messages of a dataset too large for one
	// message (the NATS server's max_payload, 1 MB by default, or the
	// stream's max message size): each carries the metadata above and a
	// run of the records, in order, and Part goes from 1 to Parts. Both
	// are 0, and absent from the JSON, for a dataset in one message.
	Part  int `json:"part,omitempty"`
	Parts int `json:"parts,omitempty"`
	// Continued is true when the value of the part's last record is cut
	// and goes on in the first record of the next part (same key), for a
	// record too large for a message of its own. Join puts the parts of a
	// dataset together again.
	Continued bool           `json:"continued,omitempty"`
	Records   []store.Record `json:"records"`
}

// Start begins a bulk publish of the pool in the background and returns
// once it has begun. It returns ErrStreamsNotEnabled, ErrInvalidStreamName,
// registry.ErrBulkInProgress or registry.ErrAlreadyStreamed when it may not.
func (r *Runner) Start(ctx context.Context, pool string) error {
	streams, err := r.reg.PoolStreams(ctx, pool)
	if err != nil {
		return err
	}
	if streams == nil || streams.StreamingStatus != "ENABLED" || streams.StreamName == "" {
		return ErrStreamsNotEnabled
	}
	if err := checkStreamName(streams.StreamName); err != nil {
		return err
	}
	state, err := r.reg.BeginBulkPublish(ctx, pool, r.opts.Lease, r.opts.MinInterval)
	if err != nil {
		return err
	}
	go r.run(context.WithoutCancel(ctx), pool, streams.StreamName, state.StartTime)
	return nil
}

// Details returns the state of the pool's bulk publish.
func (r *Runner) Details(ctx context.Context, pool string) (registry.BulkPublish, error) {
	return r.reg.BulkPublishState(ctx, pool)
}

func (r *Runner) run(ctx context.Context, pool, stream string, start time.Time) {
	log := r.log.With().Str("pool", pool).Str("stream", stream).Logger()
	leased, stop := context.WithCancelCause(ctx)
	renewing := make(chan struct{})
	go func() {
		defer close(renewing)
		r.keepLease(leased, stop, pool, start, log)
	}()
	log.Info().Msg("bulk publish started")
	n, err := r.publishAll(leased, pool, stream, log)
	lost := context.Cause(leased)
	stop(nil)
	<-renewing
	switch {
	case errors.Is(lost, registry.ErrBulkNotCurrent):
		// Not the pool's run any more: it has no outcome to record.
		log.Error().Err(lost).Int("datasets", n).Msg("bulk publish stopped")
		return
	case errors.Is(lost, registry.ErrPoolNotFound):
		// keepLease recorded the failure when it found the pool deleted.
		log.Warn().Err(lost).Int("datasets", n).Msg("bulk publish stopped")
		return
	}
	failure := ""
	if err != nil {
		failure = err.Error()
		log.Error().Err(err).Int("datasets", n).Msg("bulk publish failed")
	} else {
		log.Info().Int("datasets", n).Msg("bulk publish done")
	}
	r.finish(ctx, pool, start, failure, log)
}

// finish records the run's outcome, trying again for as long as its lease
// lasts: unrecorded, a run that succeeded would show, once its lease ran
// out, as one whose process stopped.
func (r *Runner) finish(ctx context.Context, pool string, start time.Time, failure string, log zerolog.Logger) {
	deadline := time.Now().Add(r.opts.Lease)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := r.reg.FinishBulkPublish(ctx, pool, start, failure)
		if err == nil {
			return
		}
		if errors.Is(err, registry.ErrBulkNotCurrent) || time.Now().Add(wait).After(deadline) {
			log.Error().Err(err).Msg("recording the bulk publish outcome failed")
			return
		}
		log.Warn().Err(err).Msg("recording the bulk publish outcome failed; trying again")
		time.Sleep(wait)
	}
}

// keepLease renews the run's lease every third of it, whatever the run is
// doing (one identity may take longer than a lease to publish), until ctx
// is done. If the run is no longer the pool's current one (its lease ran
// out while it stalled, or its pool was purged), or its pool was deleted,
// it cancels ctx with that error: the run stops where it is. A deleted
// pool's run fails, and keepLease records that at once, while the lease
// still holds: the run may be in a read that outlasts it.
func (r *Runner) keepLease(ctx context.Context, lost context.CancelCauseFunc, pool string, start time.Time, log zerolog.Logger) {
	tick := time.NewTicker(r.opts.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := r.reg.RenewBulkPublish(ctx, pool, start, r.opts.Lease)
		switch {
		case err == nil, ctx.Err() != nil:
		case errors.Is(err, registry.ErrBulkNotCurrent):
			lost(err)
			return
		case errors.Is(err, registry.ErrPoolNotFound):
			lost(err)
			r.finish(context.WithoutCancel(ctx), pool, start, err.Error(), log)
			return
		default:
			log.Warn().Err(err).Msg("renewing the bulk publish's lease failed; trying again")
		}
	}
}

// publishAll publishes every dataset of the pool and returns how many it
// published; it logs how far it got every Options.ProgressEvery.
func (r *Runner) publishAll(ctx context.Context, pool, stream string, log zerolog.Logger) (int, error) {
	prefix := SubjectPrefix(stream)
	s, err := EnsureStream(ctx, r.js, stream, r.opts.Replicas)
	if err != nil {
		return 0, err
	}
	// The largest message the server and the stream take, headers included.
	limit := r.js.Conn().MaxPayload()
	if m := int64(s.CachedInfo().Config.MaxMsgSize); m > 0 && m < limit {
		limit = m
	}
	published, identities := 0, 0
	cursor := ""
	logged := time.Now()
	for {
		ids, next, err := r.store.Identities(ctx, pool, cursor, 200)
		if err != nil {
			return published, err
		}
		for _, identity := range ids {
			n, err := r.publishIdentity(ctx, prefix, pool, identity, limit)
			published += n
			if err != nil {
				return published, err
			}
			identities++
			if time.Since(logged) >= r.opts.ProgressEvery {
				logged = time.Now()
				log.Info().Int("identities", identities).Int("datasets", published).Msg("bulk publish in progress")
			}
		}
		if next == "" {
			return published, nil
		}
		cursor = next
	}
}

func (r *Runner) publishIdentity(ctx context.Context, prefix, pool, identity string, limit int64) (int, error) {
	n := 0
	token := ""
	for {
		datasets, next, err := r.store.ListDatasets(ctx, pool, identity, 64, token)
		if err != nil {
			return n, err
		}
		for _, d := range datasets {
			// One atomic read of the whole dataset: read in pages, a
			// record written between two pages would come again in a
			// later one, and the message would hold it twice, with its
			// old and its new value, beside records of different moments.
			page, err := r.store.ListRecords(ctx, pool, identity, d.Name, store.ListOptions{All: true})
			if err != nil {
				return n, err
			}
			if !page.DatasetExists {
				continue // deleted since it was listed
			}
			snap := Snapshot{IdentityPoolID: pool, IdentityID: identity, DatasetName: d.Name, SyncCount: page.DatasetSyncCount,
				LastModifiedDate: page.LastModifiedDate, LastModifiedBy: page.LastModifiedBy, Records: page.Records}
			enc := base64.RawURLEncoding
			subject := prefix + "." + enc.EncodeToString([]byte(pool)) + "." + enc.EncodeToString([]byte(identity)) + "." + enc.EncodeToString([]byte(d.Name))
			id := "bulk" + subject[len(prefix):] + "." + strconv.FormatInt(snap.SyncCount, 10)
			// Room for the headers, with the longest id a part can have.
			msgs, err := encode(&snap, int(limit)-headerSize(id+".2147483647.2147483647"))
			if err != nil {
				return n, fmt.Errorf("publish %s/%s: %w", identity, d.Name, err)
			}
			for i, data := range msgs {
				msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
				if len(msgs) == 1 {
					msg.Header.Set(jetstream.MsgIDHeader, id)
				} else {
					msg.Header.Set(jetstream.MsgIDHeader, id+"."+strconv.Itoa(i+1)+"."+strconv.Itoa(len(msgs)))
				}
				if _, err := r.js.PublishMsg(ctx, msg); err != nil {
					return n, fmt.Errorf("publish %s/%s: %w", identity, d.Name, err)
				}
			}
			n++
		}
		if next == "" {
			return n, nil
		}
		token = next
	}
}

// headerSize is the size of the headers of a message whose only header is
// the deduplication id id, as the NATS protocol sends them.
func headerSize(id string) int {
	return len("NATS/1.0\r\n") + len(jetstream.MsgIDHeader) + len(": ") + len(id) + len("\r\n\r\n")
}
