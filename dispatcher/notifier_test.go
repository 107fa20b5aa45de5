package dispatcher_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher"
)

func TestParseRetryAfter(t *testing.T) {
	if got := dispatcher.ParseRetryAfter("7"); got != 7*time.Second {
		t.Errorf("seconds: %v", got)
	}
	at := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	if got := dispatcher.ParseRetryAfter(at); got < 85*time.Second || got > 90*time.Second {
		t.Errorf("HTTP date: %v", got)
	}
	for _, v := range []string{"", "-3", "soon", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)} {
		if got := dispatcher.ParseRetryAfter(v); got != 0 {
			t.Errorf("%q: %v, want 0", v, got)
		}
	}
}
