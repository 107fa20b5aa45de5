package event

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a dead letter.
const (
	HeaderOriginalSubject = "Pushsync-Original-Subject"
	HeaderReason          = "Pushsync-Reason"
	HeaderDeliveries      = "Pushsync-Deliveries"
	HeaderFailedAt        = "Pushsync-Failed-At"
	// HeaderDevices lists, comma-separated, the devices the event's last
	// try did not push (their push failed, or waited for their budget);
	// absent when that try did not get as far as the devices (the
	// registry unreachable, say) or was not made.
	HeaderDevices = "Pushsync-Devices"
)

// HeaderReplayedAt marks an event published again from the dead letters,
// with the time (RFC 3339): the dispatcher counts the push TTL from then,
// for a replay comes once the cause is fixed, often long after the change.
const HeaderReplayedAt = "Pushsync-Replayed-At"

// ErrNoDeadLetter is returned for a dead-letter sequence that is not in the
// stream.
var ErrNoDeadLetter = errors.New("event: no such dead letter")

// ErrNoStreamForSubject is returned by Replay for a dead letter whose
// original subject no stream takes any more (the event stream's subjects
// changed since it was dead-lettered): replaying it cannot succeed until
// one does, while the other letters may.
var ErrNoStreamForSubject = errors.New("event: no stream takes the dead letter's subject")

// DeadLetterConfig names the dead-letter stream.
type DeadLetterConfig struct {
	// Stream is the dead-letter stream's name. Required.
	Stream string
	// SubjectPrefix starts dead-letter subjects; it must not overlap the
	// event subjects. Required.
	SubjectPrefix string
	// EventSubjectPrefix is the prefix of event subjects, so that a dead
	// letter's subject mirrors its event's. Required.
	EventSubjectPrefix string
	// Replicas of the stream. If not set, 1.
	Replicas int
	// MaxAge is how long the stream keeps a letter. If not set, 30 days.
	MaxAge time.Duration
	// Duplicates is the stream's deduplication window: a Put repeated
	// within it stores the letter once. Make it longer than the time
	// before a message whose Put failed comes back (the dispatcher's
	// longest retry delay and its ack wait). If not set, 2 minutes.
	Duplicates time.Duration
}

// DeadLetters keeps the events whose pushes kept failing until their
// deliveries ran out, with the reason, so that an operator can replay them
// once the cause is fixed.
type DeadLetters struct {
	js     jetstream.JetStream
	cfg    DeadLetterConfig
	stream jetstream.Stream
}

// NewDeadLetters creates the dead-letter stream if it does not exist and
// returns a handle on it. An existing one is checked and changed as
// EnsureStream does the event stream: its replicas are raised to the
// configured count, never lowered.
func NewDeadLetters(ctx context.Context, js jetstream.JetStream, cfg DeadLetterConfig) (*DeadLetters, error) {
	if cfg.Stream == "" || cfg.SubjectPrefix == "" || cfg.EventSubjectPrefix == "" {
		return nil, errors.New("event: a dead-letter stream, its subject prefix and the event subject prefix are required")
	}
	s, err := Ensure(ctx, js, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "pushsync events whose pushes failed until their deliveries ran out",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
		MaxAge:      cmp.Or(cfg.MaxAge, 30*24*time.Hour),
		Duplicates:  cmp.Or(cfg.Duplicates, 2*time.Minute),
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return &DeadLetters{js: js, cfg: cfg, stream: s}, nil
}

// Put stores an event message as a dead letter with the reason it failed
// and the devices its last try did not push. id, if set, identifies the
// message (its stream and sequence, say): a Put repeated within the
// stream's duplicate window, after a failure that had stored it, stores it
// once.
func (d *DeadLetters) Put(ctx context.Context, id, subject string, data []byte, reason string, deliveries uint64, devices []string) error {
	suffix := strings.TrimPrefix(subject, d.cfg.EventSubjectPrefix)
	msg := &nats.Msg{Subject: d.cfg.SubjectPrefix + suffix, Data: data, Header: nats.Header{}}
	if id != "" {
		msg.Header.Set(jetstream.MsgIDHeader, "deadletter."+id)
	}
	msg.Header.Set(HeaderOriginalSubject, subject)
	msg.Header.Set(HeaderReason, reason)
	msg.Header.Set(HeaderDeliveries, strconv.FormatUint(deliveries, 10))
	msg.Header.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	if len(devices) > 0 {
		msg.Header.Set(HeaderDevices, strings.Join(devices, ","))
	}
	if _, err := d.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(d.cfg.Stream)); err != nil {
		return fmt.Errorf("event: store dead letter: %w", err)
	}
	return nil
}

// DeadLetter is one stored dead letter.
type DeadLetter struct {
	Sequence        uint64    `json:"sequence"`
	OriginalSubject string    `json:"originalSubject"`
	Reason          string    `json:"reason"`
	Deliveries      uint64    `json:"deliveries"`
	FailedAt        time.Time `json:"failedAt"`
	// Devices are the devices the event's last try did not push, empty
	// if it did not get as far as the devices or was not made.
	Devices []string `json:"devices"`
	// Event is the event's JSON as it was published.
	Event []byte `json:"event"`
	// stored is when the stream stored the letter: with its sequence, it
	// tells it from a letter of the same sequence in a stream made again.
	stored time.Time
}

// List returns up to limit dead letters with sequences above after, oldest
// first. Each letter is one read, however many were replayed or discarded
// between them.
func (d *DeadLetters) List(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	for seq := after + 1; seq != 0 && len(out) < limit; {
		// The first letter at or after seq: replayed and discarded ones
		// are skipped by the server.
		raw, err := d.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(d.cfg.SubjectPrefix+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("event: read dead letters after %d: %w", seq-1, err)
		}
		out = append(out, *deadLetter(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

func (d *DeadLetters) get(ctx context.Context, seq uint64) (*DeadLetter, error) {
	raw, err := d.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: %d", ErrNoDeadLetter, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("event: read dead letter %d: %w", seq, err)
	}
	return deadLetter(raw), nil
}

func deadLetter(raw *jetstream.RawStreamMsg) *DeadLetter {
	deliveries, _ := strconv.ParseUint(raw.Header.Get(HeaderDeliveries), 10, 64)
	failedAt, _ := time.Parse(time.RFC3339Nano, raw.Header.Get(HeaderFailedAt))
	devices := []string{}
	if h := raw.Header.Get(HeaderDevices); h != "" {
		devices = strings.Split(h, ",")
	}
	return &DeadLetter{Sequence: raw.Sequence, OriginalSubject: raw.Header.Get(HeaderOriginalSubject), Reason: raw.Header.Get(HeaderReason),
		Deliveries: deliveries, FailedAt: failedAt, Devices: devices, Event: raw.Data, stored: raw.Time}
}

// Replay publishes a dead letter's event again on its original subject,
// for the dispatcher to deliver afresh (its push TTL counted from the
// replay), and removes the dead letter.
// Devices that already received its state are not pushed again.
func (d *DeadLetters) Replay(ctx context.Context, seq uint64) error {
	dl, err := d.get(ctx, seq)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: dl.OriginalSubject, Data: dl.Event, Header: nats.Header{}}
	// The same letter replayed twice is stored once; a letter of the same
	// sequence in a dead-letter stream made again (sequences start over)
	// is another.
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("replay.%s.%d.%s", d.cfg.Stream, seq, strconv.FormatInt(dl.stored.UnixNano(), 36)))
	msg.Header.Set(HeaderReplayedAt, time.Now().UTC().Format(time.RFC3339Nano))
	if _, err := d.js.PublishMsg(ctx, msg); err != nil {
		// No stream answering looks the same whether none takes the
		// subject or JetStream is out of reach; the stream lookup tells.
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			if _, lerr := d.js.StreamNameBySubject(ctx, dl.OriginalSubject); errors.Is(lerr, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("%w: dead letter %d, subject %s", ErrNoStreamForSubject, seq, dl.OriginalSubject)
			}
		}
		return fmt.Errorf("event: replay dead letter %d: %w", seq, err)
	}
	if replayed != nil {
		replayed(seq)
	}
	// A letter gone now was discarded, or replayed by another request,
	// since it was read: either way this replay happened, and a second
	// replay of the letter was stored once (same Nats-Msg-Id).
	if err := d.Discard(ctx, seq); err != nil && !errors.Is(err, ErrNoDeadLetter) {
		return err
	}
	return nil
}

// replayed, when set (by tests), is called between a replay's publication
// and its letter's removal.
var replayed func(seq uint64)

// Discard removes a dead letter.
func (d *DeadLetters) Discard(ctx context.Context, seq uint64) error {
	if err := d.stream.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) || strings.Contains(err.Error(), "no message found") {
			return fmt.Errorf("%w: %d", ErrNoDeadLetter, seq)
		}
		// The server refuses a sequence past the stream's last as a
		// failed deletion ("stream store EOF"), not as a missing message.
		if _, gerr := d.stream.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("%w: %d", ErrNoDeadLetter, seq)
		}
		return fmt.Errorf("event: discard dead letter %d: %w", seq, err)
	}
	return nil
}
