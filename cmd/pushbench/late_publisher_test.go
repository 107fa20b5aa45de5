package main

import (
	"testing"
	"time"
)

// TestLatePublisherDoesNotHideTheWait holds the half phase's publisher up
// for a second before its first event, so that every event of the phase
// goes out late: each event's latency must start when it was due, and so
// hold the wait behind the publisher, not start when it was published.
func TestLatePublisherDoesNotHideTheWait(t *testing.T) {
	const stall = time.Second
	beforePublish = func(name string, j int64) {
		if name == "half rate" && j == 0 {
			time.Sleep(stall)
		}
	}
	defer func() { beforePublish = nil }()
	r := runBench(t, runWorkerArgs(t, "-phases", "half", "-half-rate", "50", "-warmup", "300ms", "-duration", "1s", "-identities", "20")...)
	h := r.Half
	checkPhase(t, "half", h, 4)
	if h == nil {
		return
	}
	// Event j was due j/50 s into the phase and went out after the stall:
	// the first is a second late, and more than half of them at least
	// 400 ms.
	if h.Latency.Max < ms(stall) || h.Latency.P50 < 400 {
		t.Errorf("latency %+v with the publisher %s late at the start: the wait behind it is not in it", h.Latency, stall)
	}
}
