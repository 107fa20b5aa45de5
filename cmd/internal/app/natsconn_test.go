package app

import (
	"errors"
	"testing"
	"time"
)

func TestErrorLogLogsEachNewErrorAndARepeatOnceAMinute(t *testing.T) {
	var e errorLog
	t0 := time.Unix(1_700_000_000, 0)
	refused, eof := errors.New("connection refused"), errors.New("EOF")
	for _, step := range []struct {
		err      error
		after    time.Duration
		log      bool
		repeated int
	}{
		{refused, 0, true, 0},
		{refused, time.Second, false, 0},
		{refused, 2 * time.Second, false, 0},
		{eof, 3 * time.Second, true, 0},
		{refused, 4 * time.Second, true, 0},
		{refused, 5 * time.Second, false, 0},
		{refused, 64 * time.Second, true, 2},
		{refused, 65 * time.Second, false, 0},
	} {
		log, repeated := e.take(step.err, t0.Add(step.after))
		if log != step.log || repeated != step.repeated {
			t.Errorf("%v at +%v: log %v, repeated %d; want %v, %d", step.err, step.after, log, repeated, step.log, step.repeated)
		}
	}
	e.reset()
	if log, _ := e.take(refused, t0.Add(66*time.Second)); !log {
		t.Error("after a reset the same error is not logged")
	}
}

func TestRedactURLs(t *testing.T) {
	got := redactURLs("nats://alice:pw@a:4222, tls://tok3n@b:4222,nats://c:4222")
	if want := "nats://redacted@a:4222,tls://redacted@b:4222,nats://c:4222"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
