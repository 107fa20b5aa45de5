package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestTimedStepShowsABar: a phase that runs for a set time draws a bar that
// fills with the time gone, beside its count; a counted step's bar fills
// with its count.
func TestTimedStepShowsABar(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out)
	p.startTimed("max rate", "events", time.Hour)
	p.began = time.Now().Add(-30 * time.Minute)
	p.set(1200, 0)
	p.stop()
	last := lastLine(out.String())
	if !strings.Contains(last, "[============            ]  50%") || !strings.Contains(last, "1200 events") {
		t.Errorf("timed step half way:\n%q\nwant a half-filled bar at 50%% and the count", last)
	}

	out.Reset()
	p.start("seeding", "identities")
	p.set(3, 4)
	p.stop()
	if last := lastLine(out.String()); !strings.Contains(last, "[==================      ]  75%") {
		t.Errorf("counted step at 3 of 4:\n%q\nwant a bar at 75%%", last)
	}

	out.Reset()
	p.start("open-ended", "pushes")
	p.set(7, 0)
	p.stop()
	if last := lastLine(out.String()); strings.Contains(last, "[") {
		t.Errorf("open-ended step drew a bar: %q", last)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
