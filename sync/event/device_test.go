package event_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/sync/event"
)

// streamAfterFirstTry is a JetStream context whose first publish goes to a
// server without the event stream, which is created right after it failed,
// as a stream that was moments away (its leader being elected) comes back.
type streamAfterFirstTry struct {
	jetstream.JetStream
	cfg   event.StreamConfig
	tries atomic.Int32
}

func (s *streamAfterFirstTry) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := s.JetStream.PublishMsg(ctx, msg, opts...)
	if s.tries.Add(1) == 1 && err != nil {
		if _, serr := event.EnsureStream(ctx, s.JetStream, s.cfg); serr != nil {
			return nil, serr
		}
	}
	return ack, err
}

// TestPublishDeviceRemovedRetriesWhileNoStreamAnswers: a DeviceRemoved
// event whose first publish finds no stream answering is published again,
// as a DatasetChanged event is, instead of being lost: the device is
// removed already, and nothing else would publish its event.
func TestPublishDeviceRemovedRetriesWhileNoStreamAnswers(t *testing.T) {
	ctx := context.Background()
	_, js := testenv.StartNATS(t).Connect(t)
	cfg := event.StreamConfig{Name: "PUSHSYNC_EVENTS", SubjectPrefix: prefix, DeviceSubjectPrefix: "pushsync.devices", Storage: jetstream.MemoryStorage}
	flaky := &streamAfterFirstTry{JetStream: js, cfg: cfg}
	pub, err := event.NewPublisher(flaky, event.PublisherOptions{Stream: cfg.Name, SubjectPrefix: prefix, DeviceSubjectPrefix: cfg.DeviceSubjectPrefix})
	if err != nil {
		t.Fatal(err)
	}
	e := &event.DeviceRemoved{
		IdentityPoolID: "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		IdentityID:     "us-east-1:11111111-2222-3333-4444-555555555555",
		DeviceID:       "5cd28fbe-dd83-47ab-9f83-19093a5fb014",
		Platform:       "GCM",
		Reason:         "UNREGISTERED",
		RemovedAt:      time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}
	if err := pub.PublishDeviceRemoved(ctx, e); err != nil {
		t.Fatalf("publish after a first try that found no stream: %v (tries: %d)", err, flaky.tries.Load())
	}
	if n := flaky.tries.Load(); n != 2 {
		t.Errorf("%d tries, want 2: the first finding no stream, the second storing the event", n)
	}
	stream, err := js.Stream(ctx, cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, event.DeviceRemovedSubject(cfg.DeviceSubjectPrefix, e))
	if err != nil {
		t.Fatalf("the event is not on its subject: %v", err)
	}
	if msg.Header.Get(jetstream.MsgIDHeader) == "" {
		t.Errorf("the event was stored without a deduplication id")
	}
}
