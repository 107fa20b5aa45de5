package main

import (
	"testing"

	"github.com/pushsync/pushsync/internal/testenv"
)

// TestCeilingEmulatorCountIsTheMeasuredRun runs the ceiling alone with the
// in-process emulators, which see every push the moment they accept it:
// their count must be exactly the pushes of the measured run, the
// warm-up's left out, or it cannot show a push the clients counted and the
// emulators did not see.
func TestCeilingEmulatorCountIsTheMeasuredRun(t *testing.T) {
	testenv.Redis(t)
	ns := testenv.StartNATS(t)
	r := runBench(t, "-phases", "ceiling", "-redis", testenv.RedisAddr(), "-nats", ns.URL,
		"-identities", "50", "-duration", "1s", "-warmup", "500ms", "-godebug", "")
	c := r.Ceiling
	if c == nil || c.Pushes == 0 {
		t.Fatalf("ceiling: %+v", c)
	}
	if c.EmulatorPushes != c.Pushes {
		t.Errorf("the emulators counted %d pushes in a measured run of %d", c.EmulatorPushes, c.Pushes)
	}
}
