package event

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig names the JetStream stream that carries events and says how
// it is created when it does not exist yet.
type StreamConfig struct {
	// Name of the stream. Required.
	Name string
	// SubjectPrefix is the first part of every event subject. Required.
	SubjectPrefix string
	// DeviceSubjectPrefix is the first part of DeviceRemoved subjects; the
	// stream captures them too. If not set, the stream carries none.
	DeviceSubjectPrefix string
	// Replicas is the stream's replica count. If not set, 1.
	Replicas int
	// Storage is file or memory storage. If not set, file.
	Storage jetstream.StorageType
	// MaxAge is how long an event is kept. If not set, 24 hours.
	MaxAge time.Duration
	// Duplicates is the deduplication window. If not set, 2 minutes.
	Duplicates time.Duration
}

func (c *StreamConfig) jetstreamConfig() jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:        c.Name,
		Description: "pushsync dataset-changed events",
		Subjects:    c.subjects(),
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     c.Storage,
		Replicas:    max(c.Replicas, 1),
		MaxAge:      c.MaxAge,
		Duplicates:  c.Duplicates,
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 24 * time.Hour
	}
	if cfg.Duplicates == 0 {
		cfg.Duplicates = 2 * time.Minute
	}
	return cfg
}

func (c *StreamConfig) subjects() []string {
	s := []string{c.SubjectPrefix + ".>"}
	if c.DeviceSubjectPrefix != "" {
		s = append(s, c.DeviceSubjectPrefix+".>")
	}
	return s
}

// EnsureStream creates the stream if it does not exist. If it exists, it
// checks that the stream captures the event subjects, deduplicates
// publishes and keeps its events in the configured storage, and otherwise
// returns an error saying what differs; and it gives the stream the
// configured max age and duplicate window, and more replicas if more are
// configured (it never takes replicas away: an operator may have raised
// them), all of which JetStream can change on a live stream.
func EnsureStream(ctx context.Context, js jetstream.JetStream, c StreamConfig) (jetstream.Stream, error) {
	if c.Name == "" || c.SubjectPrefix == "" {
		return nil, errors.New("event: stream name and subject prefix are required")
	}
	return Ensure(ctx, js, c.jetstreamConfig(), func(got, want jetstream.StreamConfig) error {
		if got.Retention == jetstream.WorkQueuePolicy {
			return errors.New("exists with work-queue retention; pushsync needs limits retention so that several consumers can read it")
		}
		if got.Storage != want.Storage {
			return fmt.Errorf("exists with %s storage, not %s as configured; JetStream cannot change a stream's storage (configure %s, or move the stream's events to a new stream)",
				got.Storage, want.Storage, got.Storage)
		}
		return nil
	})
}

// Ensure creates the stream want describes if it does not exist. If it
// exists, it checks that the stream captures want's subjects and
// deduplicates publishes, and what else check (if not nil) asks, and
// returns an error saying what differs; then it gives the stream want's max
// age and duplicate window where want sets them (a zero leaves the
// stream's own), and want's replicas if that is more than it has: it never
// takes replicas away, which an operator may have raised, nor lets
// processes configured differently take turns at setting them. Every
// other setting of an existing stream is left as it is.
func Ensure(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, check func(got, want jetstream.StreamConfig) error) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, want.Name) // created by another process meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("event: stream %s: %w", want.Name, err)
	}
	got := s.CachedInfo().Config
	for _, subject := range want.Subjects {
		if !slices.Contains(got.Subjects, subject) {
			return nil, fmt.Errorf("event: stream %s exists but its subjects %q do not include %q", want.Name, got.Subjects, subject)
		}
	}
	if got.Duplicates <= 0 {
		return nil, fmt.Errorf("event: stream %s exists but has no duplicate window, so retried publishes would be stored twice", want.Name)
	}
	if check != nil {
		if err := check(got, want); err != nil {
			return nil, fmt.Errorf("event: stream %s %w", want.Name, err)
		}
	}
	upd := got
	if want.MaxAge != 0 {
		upd.MaxAge = want.MaxAge
	}
	if want.Duplicates != 0 {
		upd.Duplicates = want.Duplicates
	}
	upd.Replicas = max(got.Replicas, want.Replicas)
	if upd.MaxAge != got.MaxAge || upd.Duplicates != got.Duplicates || upd.Replicas != got.Replicas {
		if s, err = js.UpdateStream(ctx, upd); err != nil {
			return nil, fmt.Errorf("event: stream %s: change max age %s → %s, duplicate window %s → %s, replicas %d → %d: %w",
				want.Name, got.MaxAge, upd.MaxAge, got.Duplicates, upd.Duplicates, got.Replicas, upd.Replicas, err)
		}
	}
	return s, nil
}

// Publisher puts DatasetChanged events on the event stream. It is safe for
// concurrent use.
type Publisher struct {
	js           jetstream.JetStream
	prefix       string
	devicePrefix string
	stream       string
	tries        int
	wait         time.Duration
}

// PublisherOptions configures a Publisher.
type PublisherOptions struct {
	// Stream is the stream to publish to; the publisher checks the server
	// stored the event there. Required.
	Stream string
	// SubjectPrefix is the prefix of event subjects. Required.
	SubjectPrefix string
	// DeviceSubjectPrefix is the prefix of DeviceRemoved subjects. If not
	// set, PublishDeviceRemoved fails.
	DeviceSubjectPrefix string
	// Attempts is how often a publish is tried when the server does not
	// answer; retries are safe because of the deduplication id. If not set, 3.
	Attempts int
	// RetryWait is the pause between attempts. If not set, 250ms.
	RetryWait time.Duration
}

// NewPublisher returns a Publisher. It does not create the stream: call
// EnsureStream once at start-up.
func NewPublisher(js jetstream.JetStream, opts PublisherOptions) (*Publisher, error) {
	if js == nil || opts.Stream == "" || opts.SubjectPrefix == "" {
		return nil, errors.New("event: a JetStream context, a stream and a subject prefix are required")
	}
	p := &Publisher{js: js, prefix: opts.SubjectPrefix, devicePrefix: opts.DeviceSubjectPrefix, stream: opts.Stream, tries: opts.Attempts, wait: opts.RetryWait}
	if p.tries <= 0 {
		p.tries = 3
	}
	if p.wait <= 0 {
		p.wait = 250 * time.Millisecond
	}
	return p, nil
}

// Publish validates the event and publishes it with its deduplication id.
// It returns once the stream has stored the event (or recognised it as a
// duplicate of one it stored). An invalid event is rejected with an error
// wrapping ErrInvalid and nothing is published.
func (p *Publisher) Publish(ctx context.Context, e *DatasetChanged) (*jetstream.PubAck, error) {
	if e.Version == 0 {
		c := *e
		c.Version = Version
		e = &c
	}
	data, err := Marshal(e)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: Subject(p.prefix, e), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, MsgID(e))
	return p.publish(ctx, msg)
}

// Stored tells whether the stream's last message on the event's subject is
// the event itself, by its deduplication id. JetStream recognises a
// repeated publish only within the stream's duplicate window: a publisher
// that may repeat one later, such as a sweep for changes whose publish was
// never confirmed, asks here first.
func (p *Publisher) Stored(ctx context.Context, e *DatasetChanged) (bool, error) {
	s, err := p.js.Stream(ctx, p.stream)
	if err != nil {
		return false, fmt.Errorf("event: stream %s: %w", p.stream, err)
	}
	subject := Subject(p.prefix, e)
	msg, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("event: read the last event on %s: %w", subject, err)
	}
	return msg.Header.Get(jetstream.MsgIDHeader) == MsgID(e), nil
}

// publish publishes msg, which carries its deduplication id, to the
// publisher's stream, trying again while the server does not answer.
func (p *Publisher) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	for attempt := 1; ; attempt++ {
		ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(p.stream))
		if err == nil {
			return ack, nil
		}
		if attempt >= p.tries || !retryable(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("event: publish %s: %w", msg.Subject, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("event: publish %s: %w", msg.Subject, ctx.Err())
		case <-time.After(p.wait):
		}
	}
}

func retryable(err error) bool {
	// A deadline here is the per-attempt timeout: the caller's own context
	// is checked before retrying.
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded)
}
