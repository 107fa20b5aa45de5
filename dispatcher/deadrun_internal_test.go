package dispatcher

import (
	"testing"

	"github.com/pushsync/pushsync/registry"
)

// TestDeadRunCountsDistinctDevices: a run counts devices, not verdicts (a
// device registered again and reported dead again is one), ends when the
// route accepts a push, and is the route's own.
func TestDeadRunCountsDistinctDevices(t *testing.T) {
	d := &Dispatcher{opts: Options{MaxDeadRun: 3}}
	ios, android := route{"app", registry.APNS}, route{"app", registry.GCM}
	for range 5 {
		if n := d.deadRun(ios, "same"); n != 1 {
			t.Fatalf("one device reported dead again and again counts %d", n)
		}
	}
	for i, dev := range []string{"a", "b", "c", "d", "e"} {
		if n, want := d.deadRun(ios, dev), min(i+2, 4); n != want {
			t.Fatalf("after %d more devices the run is %d, want %d (capped one past MaxDeadRun)", i+1, n, want)
		}
	}
	if n := d.deadRun(android, "x"); n != 1 {
		t.Fatalf("another route's run is %d, want 1", n)
	}
	d.resume(ios)
	if n := d.deadRun(ios, "a"); n != 1 {
		t.Fatalf("after an accepted push the run is %d, want 1", n)
	}
}
