//go:build faults

package faults

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/sync/bulk"
	"github.com/pushsync/pushsync/sync/event"
)

// TestStreamReplicasNeverLowered runs on a three-node cluster what
// pushsync processes configured with different nats.replicas do at start:
// each ensures the event stream and the dead-letter stream, and a bulk
// publish ensures its stream. A process
// asking for more replicas raises them; one asking for fewer, as a
// pushsyncctl with a default configuration would, leaves them as they are,
// so that a stream an operator or another process made redundant stays so.
func TestStreamReplicasNeverLowered(t *testing.T) {
	c := startCluster(t, 3)
	nc, err := nats.Connect(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	streams := []struct {
		name   string
		ensure func(ctx context.Context, replicas int) error
	}{
		{"EVENTS", func(ctx context.Context, replicas int) error {
			_, err := event.EnsureStream(ctx, js, event.StreamConfig{Name: "EVENTS", SubjectPrefix: "pushsync.events", Replicas: replicas})
			return err
		}},
		{"DEAD", func(ctx context.Context, replicas int) error {
			_, err := event.NewDeadLetters(ctx, js, event.DeadLetterConfig{
				Stream: "DEAD", SubjectPrefix: "pushsync.dead", EventSubjectPrefix: "pushsync.events", Replicas: replicas,
			})
			return err
		}},
		{"BULK", func(ctx context.Context, replicas int) error {
			_, err := bulk.EnsureStream(ctx, js, "BULK", replicas)
			return err
		}},
	}
	for _, s := range streams {
		for _, step := range []struct{ ask, want int }{{1, 1}, {3, 3}, {1, 3}, {2, 3}, {3, 3}} {
			// As pushsyncd does at start, tried again while the cluster
			// elects its leaders.
			for {
				actx, acancel := context.WithTimeout(ctx, 5*time.Second)
				err := s.ensure(actx, step.ask)
				acancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("%s: ensure with %d replicas: %v", s.name, step.ask, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			st, err := js.Stream(ctx, s.name)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.CachedInfo().Config.Replicas; got != step.want {
				t.Fatalf("%s: after a process asked for %d replicas the stream has %d, want %d", s.name, step.ask, got, step.want)
			}
		}
	}
}
