package event_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/event"
)

// TestDeadLetterDiscardOfAnUnknownSequenceIsNotFound: discarding a
// sequence number no dead letter has, whether one discarded already or one
// past the last (an operator's typo), says there is no such dead letter,
// which the admin API answers ResourceNotFoundException, rather than
// failing as an internal error.
func TestDeadLetterDiscardOfAnUnknownSequenceIsNotFound(t *testing.T) {
	ns := testenv.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	dl, err := event.NewDeadLetters(ctx, js, event.DeadLetterConfig{Stream: "DEAD", SubjectPrefix: "pushsync.dead", EventSubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"PUSHSYNC_EVENTS.1", "PUSHSYNC_EVENTS.2"} {
		if err := dl.Put(ctx, id, prefix+".a.b.c", []byte(`{"version":1}`), "retries exhausted", 20); err != nil {
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
