package app_test

import (
	"testing"
	"time"

	"github.com/pushsync/pushsync/cmd/internal/app"
	"github.com/pushsync/pushsync/config"
)

// TestDeadLetterWindowOutlastsRedelivery: the dead-letter stream remembers a
// letter's id for longer than an event whose dead letter was stored without
// an answer takes to come back: after a nak of the longest retry delay, or
// after the ack wait when the ack was lost.
func TestDeadLetterWindowOutlastsRedelivery(t *testing.T) {
	for _, tc := range []struct{ maxRetry, ackWait time.Duration }{
		{5 * time.Minute, 30 * time.Second}, // the defaults
		{30 * time.Second, 5 * time.Second},
		{time.Hour, 10 * time.Minute},
	} {
		cfg := config.Default()
		cfg.Dispatcher.MaxRetryDelay = config.Duration(tc.maxRetry)
		cfg.Dispatcher.AckWait = config.Duration(tc.ackWait)
		if got, back := app.DeadLetterWindow(cfg), tc.maxRetry+tc.ackWait; got <= back {
			t.Errorf("max_retry_delay %s, ack_wait %s: window %s, not longer than %s", tc.maxRetry, tc.ackWait, got, back)
		}
	}
}
