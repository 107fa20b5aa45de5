package event_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/event"
)

// TestDeadLetterDiscardOfAnUnknownSequenceIsNotFound: discarding a
// sequence number no dead letter has, whether one discarded already or one
// past the last (an operator's typo), says there is no such dead letter,
// which the admin API answers ResourceNotFoundException, rather than
// failing as an internal error.
func TestDeadLetterDiscardOfAnUnknownSequenceIsNotFound(t *testing.T) {
	ctx := context.Background()
	_, _, dl := deadLetters(t)
	for _, id := range []string{"PUSHSYNC_EVENTS.1", "PUSHSYNC_EVENTS.2"} {
		if err := dl.Put(ctx, id, prefix+".a.b.c", []byte(`{"version":1}`), "retries exhausted", 20, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := dl.Discard(ctx, 1); err != nil {
		t.Fatalf("discard 1: %v", err)
	}
	for _, seq := range []uint64{1, 3, 999} {
		if err := dl.Discard(ctx, seq); !errors.Is(err, event.ErrNoDeadLetter) {
			t.Errorf("discard %d: %v, want %v", seq, err, event.ErrNoDeadLetter)
		}
		if err := dl.Replay(ctx, seq); !errors.Is(err, event.ErrNoDeadLetter) {
			t.Errorf("replay %d: %v, want %v", seq, err, event.ErrNoDeadLetter)
		}
	}
	if letters, err := dl.List(ctx, 0, 10); err != nil || len(letters) != 1 || letters[0].Sequence != 2 {
		t.Fatalf("listed %+v (%v), want the letter 2 alone", letters, err)
	}
}

// TestDeadLetterReplayWithoutAStreamForItsSubject: a letter whose original
// subject no stream takes any more fails to replay with
// ErrNoStreamForSubject, which the admin API answers as that letter's
// fault, rather than as JetStream out of reach, and stays a dead letter.
func TestDeadLetterReplayWithoutAStreamForItsSubject(t *testing.T) {
	ctx := context.Background()
	_, js, dl := deadLetters(t)
	// No event stream takes the subject: as after the stream's subjects
	// changed.
	if err := dl.Put(ctx, "PUSHSYNC_EVENTS.1", prefix+".a.b.c", []byte(`{"version":1}`), "retries exhausted", 20, nil); err != nil {
		t.Fatal(err)
	}
	if err := dl.Replay(ctx, 1); !errors.Is(err, event.ErrNoStreamForSubject) {
		t.Fatalf("replay: %v, want %v", err, event.ErrNoStreamForSubject)
	}
	if letters, err := dl.List(ctx, 0, 10); err != nil || len(letters) != 1 {
		t.Fatalf("listed %+v (%v), want the letter kept", letters, err)
	}
	if _, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: "EVENTS", SubjectPrefix: prefix}); err != nil {
		t.Fatal(err)
	}
	if err := dl.Replay(ctx, 1); err != nil {
		t.Fatalf("replay once a stream takes the subject: %v", err)
	}
}

// deadLetters starts a NATS server and returns a connection to it and its
// dead-letter stream DEAD, for events under prefix.
func deadLetters(t *testing.T) (*nats.Conn, jetstream.JetStream, *event.DeadLetters) {
	t.Helper()
	nc, js := testenv.StartNATS(t).Connect(t)
	dl, err := event.NewDeadLetters(context.Background(), js, event.DeadLetterConfig{Stream: "DEAD", SubjectPrefix: "pushsync.dead", EventSubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, dl
}

// TestDeadLetterReplayAfterTheStreamIsMadeAgain: a dead-letter stream made
// again (as after NATS lost its store) numbers its letters from 1 anew; the
// replay of such a letter within the event stream's duplicate window of
// the replay of the old letter 1 is published, not taken for that one and
// dropped while the letter is removed.
func TestDeadLetterReplayAfterTheStreamIsMadeAgain(t *testing.T) {
	ctx := context.Background()
	_, js, dl := deadLetters(t)
	events, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: "EVENTS", SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Put(ctx, "PUSHSYNC_EVENTS.1", prefix+".a.b.c", []byte(`{"version":1,"n":1}`), "retries exhausted", 20, nil); err != nil {
		t.Fatal(err)
	}
	if err := dl.Replay(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "DEAD"); err != nil {
		t.Fatal(err)
	}
	dl, err = event.NewDeadLetters(ctx, js, event.DeadLetterConfig{Stream: "DEAD", SubjectPrefix: "pushsync.dead", EventSubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Put(ctx, "PUSHSYNC_EVENTS.2", prefix+".a.b.c", []byte(`{"version":1,"n":2}`), "retries exhausted", 20, nil); err != nil {
		t.Fatal(err)
	}
	if err := dl.Replay(ctx, 1); err != nil {
		t.Fatal(err)
	}
	info, err := events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("the event stream holds %d messages, want both replays", info.State.Msgs)
	}
}

// TestDeadLetterReplayedWhileDiscarded: a letter discarded (or replayed by
// another request) after a replay read it and published its event is a
// replay done, not "no dead letter": the event is on the event stream,
// and an operator told otherwise would replay it again from elsewhere.
func TestDeadLetterReplayedWhileDiscarded(t *testing.T) {
	ctx := context.Background()
	_, js, dl := deadLetters(t)
	s, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: "EVENTS", SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Put(ctx, "PUSHSYNC_EVENTS.1", prefix+".a.b.c", []byte(`{"version":1}`), "retries exhausted", 20, nil); err != nil {
		t.Fatal(err)
	}
	var discardErr error
	defer event.SetReplayed(func(seq uint64) { discardErr = dl.Discard(ctx, seq) })()
	if err := dl.Replay(ctx, 1); err != nil {
		t.Errorf("replay of a letter discarded meanwhile: %v, want success", err)
	}
	if discardErr != nil {
		t.Fatalf("the discard meanwhile: %v", discardErr)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("the event stream holds %d messages after the replay, want 1", info.State.Msgs)
	}
}
