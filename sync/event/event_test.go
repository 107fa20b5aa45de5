package event_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/event"
)

const prefix = "pushsync.events"

func sample() *event.DatasetChanged {
	return &event.DatasetChanged{
		Version:        event.Version,
		IdentityPoolID: "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		IdentityID:     "us-east-1:11111111-2222-3333-4444-555555555555",
		DatasetName:    "game.settings:v2",
		SyncCount:      7,
		OriginDeviceID: "5cd28fbe-dd83-47ab-9f83-19093a5fb014",
		ChangedAt:      time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}
}

func TestSubjectSurvivesDotsAndWildcards(t *testing.T) {
	a := sample()
	subj := event.Subject(prefix, a)
	tokens := strings.Split(subj, ".")
	if len(tokens) != 5 {
		t.Fatalf("subject %q has %d tokens, want 5 (prefix 2 + pool, identity, dataset)", subj, len(tokens))
	}
	for _, tok := range tokens {
		if tok == "" || strings.ContainsAny(tok, "*> \t") {
			t.Fatalf("subject %q has an unsafe token %q", subj, tok)
		}
	}
	// Two datasets whose names differ only by the placement of dots must
	// not share a subject.
	b := sample()
	b.DatasetName = "game:settings.v2"
	if event.Subject(prefix, b) == subj {
		t.Fatalf("different dataset names gave the same subject %q", subj)
	}
}

func TestMsgIDIdentifiesChange(t *testing.T) {
	a, b := sample(), sample()
	b.ChangedAt = b.ChangedAt.Add(300 * time.Microsecond).In(time.FixedZone("X", 3600))
	b.OriginDeviceID = ""
	if event.MsgID(a) != event.MsgID(b) {
		t.Errorf("the same change got two ids: %q, %q", event.MsgID(a), event.MsgID(b))
	}
	b.SyncCount++
	if event.MsgID(a) == event.MsgID(b) {
		t.Errorf("different sync counts share the id %q", event.MsgID(a))
	}
	// Two changes with one sync count, as after a Redis failover that lost
	// the first: both must be stored.
	b.SyncCount, b.ChangedAt = a.SyncCount, a.ChangedAt.Add(time.Millisecond)
	if event.MsgID(a) == event.MsgID(b) {
		t.Errorf("changes at different times share the id %q", event.MsgID(a))
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*event.DatasetChanged)
		want   string
	}{
		{"valid", func(*event.DatasetChanged) {}, ""},
		{"no origin is fine", func(e *event.DatasetChanged) { e.OriginDeviceID = "" }, ""},
		{"pool", func(e *event.DatasetChanged) { e.IdentityPoolID = "bad" }, "IdentityPoolId"},
		{"identity", func(e *event.DatasetChanged) { e.IdentityID = "" }, "IdentityId: must not be empty"},
		{"dataset", func(e *event.DatasetChanged) { e.DatasetName = "a/b" }, "DatasetName"},
		{"sync count", func(e *event.DatasetChanged) { e.SyncCount = 0 }, "syncCount must be from 1 to 9007199254740991, got 0"},
		{"huge sync count", func(e *event.DatasetChanged) { e.SyncCount = 1e18 }, "syncCount must be from 1 to 9007199254740991, got 1000000000000000000"},
		{"origin", func(e *event.DatasetChanged) { e.OriginDeviceID = strings.Repeat("x", 300) }, "originDeviceId: DeviceId"},
		{"time", func(e *event.DatasetChanged) { e.ChangedAt = time.Time{} }, "changedAt must be set"},
		{"version", func(e *event.DatasetChanged) { e.Version = 2 }, "version 2 is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := sample()
			tt.mutate(e)
			err := e.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	good, err := event.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	subj := event.Subject(prefix, sample())
	got, err := event.Decode(prefix, subj, good)
	if err != nil {
		t.Fatalf("decode of a valid event: %v", err)
	}
	if *got != *sample() {
		t.Fatalf("round trip changed the event: %+v", got)
	}

	withUnknown := strings.Replace(string(good), "{", `{"addedLater":true,`, 1)
	if _, err := event.Decode(prefix, subj, []byte(withUnknown)); err != nil {
		t.Fatalf("an unknown member must be ignored: %v", err)
	}

	tests := []struct {
		name, subject, data, reason string
	}{
		{"not json", subj, "hello", event.ReasonInvalidJSON},
		{"truncated", subj, string(good[:20]), event.ReasonInvalidJSON},
		{"trailing data", subj, string(good) + "{}", event.ReasonInvalidJSON},
		{"wrong type", subj, strings.Replace(string(good), `"syncCount":7`, `"syncCount":"7"`, 1), event.ReasonInvalidJSON},
		{"newer version", subj, strings.Replace(string(good), `"version":1`, `"version":9`, 1), event.ReasonUnsupportedVersion},
		{"no version", subj, strings.Replace(string(good), `"version":1,`, ``, 1), event.ReasonUnsupportedVersion},
		{"bad field", subj, strings.Replace(string(good), `"syncCount":7`, `"syncCount":-1`, 1), event.ReasonInvalidField},
		{"too large", subj, string(good) + strings.Repeat(" ", event.MaxSize), event.ReasonTooLarge},
		{"wrong subject", prefix + ".x.y.z", string(good), event.ReasonSubjectMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := event.Decode(prefix, tt.subject, []byte(tt.data))
			var de *event.DecodeError
			if !errors.As(err, &de) || de.Reason != tt.reason {
				t.Fatalf("got %v, want a DecodeError with reason %s", err, tt.reason)
			}
		})
	}
}

func TestJSONShape(t *testing.T) {
	data, err := event.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"identityPoolId":"us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","identityId":"us-east-1:11111111-2222-3333-4444-555555555555","datasetName":"game.settings:v2","syncCount":7,"originDeviceId":"5cd28fbe-dd83-47ab-9f83-19093a5fb014","changedAt":"2026-11-22T10:00:00Z"}`
	if string(data) != want {
		t.Fatalf("JSON form changed (docs/events.md documents it):\n got %s\nwant %s", data, want)
	}
}

func streamConfig() event.StreamConfig {
	return event.StreamConfig{Name: "PUSHSYNC_EVENTS", SubjectPrefix: prefix, Storage: jetstream.MemoryStorage}
}

func TestPublisherDeduplicatesRetries(t *testing.T) {
	ns := testenv.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	stream, err := event.EnsureStream(ctx, js, streamConfig())
	if err != nil {
		t.Fatal(err)
	}
	// A second EnsureStream finds and accepts the stream.
	if _, err := event.EnsureStream(ctx, js, streamConfig()); err != nil {
		t.Fatalf("second EnsureStream: %v", err)
	}
	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: "PUSHSYNC_EVENTS", SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	e := sample()
	first, err := pub.Publish(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	again, err := pub.Publish(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("retry was not deduplicated: first %+v, again %+v", first, again)
	}
	e2 := sample()
	e2.SyncCount = 8
	if _, err := pub.Publish(ctx, e2); err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2", info.State.Msgs)
	}
	msg, err := stream.GetMsg(ctx, first.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != event.Subject(prefix, e) || msg.Header.Get("Nats-Msg-Id") != event.MsgID(e) {
		t.Fatalf("stored subject %q id %q", msg.Subject, msg.Header.Get("Nats-Msg-Id"))
	}
	var stored map[string]any
	if err := json.Unmarshal(msg.Data, &stored); err != nil || stored["datasetName"] != e.DatasetName {
		t.Fatalf("stored body %s (%v)", msg.Data, err)
	}
}

func TestPublisherRejectsInvalidEvent(t *testing.T) {
	ns := testenv.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	stream, err := event.EnsureStream(ctx, js, streamConfig())
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := event.NewPublisher(js, event.PublisherOptions{Stream: "PUSHSYNC_EVENTS", SubjectPrefix: prefix})
	bad := sample()
	bad.DatasetName = "no spaces allowed"
	if _, err := pub.Publish(ctx, bad); !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "DatasetName") {
		t.Fatalf("got %v, want ErrInvalid naming DatasetName", err)
	}
	info, _ := stream.Info(ctx)
	if info.State.Msgs != 0 {
		t.Fatalf("an invalid event reached the stream (%d messages)", info.State.Msgs)
	}
}

func TestEnsureStreamRefusesForeignStream(t *testing.T) {
	ns := testenv.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PUSHSYNC_EVENTS", Subjects: []string{"other.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	_, err := event.EnsureStream(ctx, js, streamConfig())
	if err == nil || !strings.Contains(err.Error(), `do not include "pushsync.events.>"`) {
		t.Fatalf("got %v, want an error about the subjects", err)
	}
}

// TestEnsureStreamAppliesLimits: a stream made with other limits gets the
// configured ones, and one with other storage is refused with what to do.
func TestEnsureStreamAppliesLimits(t *testing.T) {
	ns := testenv.StartNATS(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if _, err := event.EnsureStream(ctx, js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	sc := streamConfig()
	sc.MaxAge, sc.Duplicates = 2*time.Hour, 10*time.Minute
	s, err := event.EnsureStream(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Config; got.MaxAge != 2*time.Hour || got.Duplicates != 10*time.Minute || got.Replicas != 1 {
		t.Errorf("stream kept max age %s, duplicate window %s, replicas %d; want 2h, 10m, 1", got.MaxAge, got.Duplicates, got.Replicas)
	}

	sc.Storage = jetstream.FileStorage
	if _, err := event.EnsureStream(ctx, js, sc); err == nil || !strings.Contains(err.Error(), "exists with Memory storage, not File as configured") {
		t.Errorf("got %v, want an error about the storage", err)
	}
}

// TestDeadLetterPutRepeatedIsKeptOnce: a Put repeated with the same id (its
// first answer lost after the letter was stored) keeps one dead letter;
// another message's letter is kept beside it.
func TestDeadLetterPutRepeatedIsKeptOnce(t *testing.T) {
	ctx := context.Background()
	_, _, dl := deadLetters(t)
	subject, data := prefix+".a.b.c", []byte(`{"version":1}`)
	for _, id := range []string{"PUSHSYNC_EVENTS.7", "PUSHSYNC_EVENTS.7", "PUSHSYNC_EVENTS.8"} {
		if err := dl.Put(ctx, id, subject, data, "retries exhausted", 20, nil); err != nil {
			t.Fatal(err)
		}
	}
	letters, err := dl.List(ctx, 0, 10)
	if err != nil || len(letters) != 2 {
		t.Fatalf("%d dead letters (%v), want 2: one per message", len(letters), err)
	}
}
