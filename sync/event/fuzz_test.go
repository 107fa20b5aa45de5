package event_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pushsync/pushsync/sync/event"
)

// FuzzDecode checks that no input crashes the decoder and that whatever it
// accepts is a valid event that encodes back to the same event.
func FuzzDecode(f *testing.F) {
	good, _ := event.Marshal(sample())
	f.Add(event.Subject(prefix, sample()), good)
	f.Add("pushsync.events.a.b.c", []byte(`{"version":1}`))
	f.Add("x", []byte(`[]`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		e, err := event.Decode(prefix, subject, data)
		if err != nil {
			var de *event.DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted an invalid event: %v", err)
		}
		again, err := event.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := event.Decode(prefix, subject, again)
		if err != nil || !equal(e, e2) {
			t.Fatalf("re-encoding changed the event: %v", err)
		}
	})
}

func equal(a, b *event.DatasetChanged) bool {
	x, y := *a, *b
	x.ChangedAt, y.ChangedAt = time.Time{}, time.Time{}
	return x == y && a.ChangedAt.Equal(b.ChangedAt)
}
