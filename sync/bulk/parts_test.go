package bulk

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/sync/store"
)

// Every limit from the smallest that holds the metadata and a key up splits
// a dataset into parts within the limit that Join puts together again,
// values cut only between characters; a limit too small for that is an
// error saying so.
func TestEncodeAndJoin(t *testing.T) {
	str := func(s string) *string { return &s }
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	snap := Snapshot{IdentityPoolID: "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", IdentityID: "us-east-1:a11ce000-2222-3333-4444-555555555555",
		DatasetName: "game", SyncCount: 9, LastModifiedDate: now, Records: []store.Record{
			{Key: "a", Value: str("short"), SyncCount: 1, LastModifiedDate: now},
			{Key: "gone", SyncCount: 2, LastModifiedDate: now},
			{Key: "long", Value: str(strings.Repeat("é<\"\n𝄞x", 300)), SyncCount: 3, LastModifiedDate: now},
			{Key: "b", Value: str(""), SyncCount: 4, LastModifiedDate: now},
			{Key: "c", Value: str(strings.Repeat("y", 700)), SyncCount: 5, LastModifiedDate: now},
		}}
	want, _ := json.Marshal(snap.Records)
	for limit := 550; limit <= 8000; limit += 37 {
		msgs, err := encode(&snap, limit)
		if err != nil {
			t.Fatalf("limit %d: %v", limit, err)
		}
		parts := make([]Snapshot, len(msgs))
		for i, m := range msgs {
			if len(m) > limit {
				t.Fatalf("limit %d: part %d is %d bytes", limit, i+1, len(m))
			}
			if err := json.Unmarshal(m, &parts[i]); err != nil {
				t.Fatal(err)
			}
		}
		got, err := Join(parts)
		if err != nil {
			t.Fatalf("limit %d: %v", limit, err)
		}
		if b, _ := json.Marshal(got.Records); string(b) != string(want) {
			t.Fatalf("limit %d: %d parts join into\n%s\nwant\n%s", limit, len(parts), b, want)
		}
		if len(parts) > 1 {
			if _, err := Join(parts[1:]); !errors.Is(err, ErrParts) {
				t.Fatalf("limit %d: Join without the first part: %v, want ErrParts", limit, err)
			}
		}
	}
	if _, err := encode(&snap, 300); err == nil || !strings.Contains(err.Error(), "cannot hold the metadata of dataset game") {
		t.Errorf("a 300-byte limit: %v, want an error saying it cannot hold the metadata", err)
	}
}
