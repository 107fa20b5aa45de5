package event_test

import (
	"cmp"
	"context"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/event"
)

// TestDeadLetterWindowIsConfigured: the dead-letter stream deduplicates Puts
// over the configured window, on a new stream and on one made earlier with
// the default, so that a letter stored without an answer is not stored again
// when its event comes back minutes later.
func TestDeadLetterWindowIsConfigured(t *testing.T) {
	ns := testenv.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	cfg := event.DeadLetterConfig{Stream: "DEAD", SubjectPrefix: "pushsync.dead", EventSubjectPrefix: prefix}
	window := func() time.Duration {
		t.Helper()
		s, err := js.Stream(ctx, cfg.Stream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.Duplicates
	}
	if _, err := event.NewDeadLetters(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if got := window(); got != 2*time.Minute {
		t.Errorf("default window %s, want 2m", got)
	}
	cfg.Duplicates = 7 * time.Minute
	if _, err := event.NewDeadLetters(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if got := window(); got != 7*time.Minute {
		t.Errorf("window %s after configuring 7m, want 7m", got)
	}
}

// TestDeadLetterMaxAgeIsConfigured: the dead-letter stream keeps letters
// for the configured age, set again on an existing stream.
func TestDeadLetterMaxAgeIsConfigured(t *testing.T) {
	ctx := context.Background()
	_, js := testenv.StartNATS(t).Connect(t)
	for _, age := range []time.Duration{0, 90 * 24 * time.Hour} {
		if _, err := event.NewDeadLetters(ctx, js, event.DeadLetterConfig{Stream: "DEAD", SubjectPrefix: "pushsync.dead", EventSubjectPrefix: prefix, MaxAge: age}); err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, "DEAD")
		if err != nil {
			t.Fatal(err)
		}
		want := cmp.Or(age, 30*24*time.Hour)
		if got := s.CachedInfo().Config.MaxAge; got != want {
			t.Fatalf("MaxAge %v: the stream keeps letters %v, want %v", age, got, want)
		}
	}
}
