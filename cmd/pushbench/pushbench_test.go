package main

import (
	"context"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushsync/pushsync/payload"
	"github.com/pushsync/pushsync/registry"
)

func TestTrackerFollowsEventsToTheirLastPush(t *testing.T) {
	ids := []string{"us-east-1:" + uuidish(1, 1), "us-east-1:" + uuidish(2, 1), "us-east-1:" + uuidish(3, 1)}
	tr := newTracker(ids, 2)
	window := tr.setWindow(8)
	tr.measuring.Store(true)
	t0 := time.Unix(1000, 0)
	for k := range int64(4) { // events 0..3: identities 0,1,2,0 with counts 1,1,1,2
		window <- struct{}{}
		tr.published(k, t0)
	}
	i, c := tr.event(3)
	if i != 0 || c != 2 {
		t.Fatalf("event 3 is identity %d count %d, want 0 and 2", i, c)
	}
	// Identity i's devices are 2i (APNs) and 2i+1 (FCM).
	tr.push(ids[0], apnsToken(0), 2, t0.Add(3*time.Millisecond))
	tr.push(ids[0], fcmToken(1), 2, t0.Add(5*time.Millisecond)) // event 3 complete
	tr.push(ids[1], apnsToken(2), 1, t0.Add(1*time.Millisecond))
	tr.push(ids[1], fcmToken(3), 1, t0.Add(2*time.Millisecond)) // event 1 complete
	tr.push(ids[1], fcmToken(3), 1, t0.Add(2*time.Millisecond)) // one too many
	tr.push("us-east-1:"+uuidish(9, 9), apnsToken(18), 1, t0)   // nobody's
	if got := tr.events.Load(); got != 2 {
		t.Errorf("events complete = %d, want 2", got)
	}
	if got := len(window); got != 2 {
		t.Errorf("window holds %d events, want 2 (two given back)", got)
	}
	if d, s := tr.duplicates.Load(), tr.strays.Load(); d != 1 || s != 1 {
		t.Errorf("duplicates %d, strays %d; want 1 and 1", d, s)
	}
	if got := tr.pushes.Load(); got != 5 {
		t.Errorf("pushes = %d, want 5 (the stray is not one of the run's)", got)
	}
	p := percentiles(tr.takeLatencies())
	if p.Samples != 4 || p.P50 != 2 || p.Max != 5 {
		t.Errorf("latencies %+v, want 4 samples, p50 2 ms, max 5 ms", p)
	}
}

// TestLateEventGivesBackItsOwnWindow completes an event of one phase
// after the next phase made its window: the token must go back to the old
// window, or the next phase's last event would wait for ever.
func TestLateEventGivesBackItsOwnWindow(t *testing.T) {
	ids := []string{"us-east-1:" + uuidish(1, 1), "us-east-1:" + uuidish(2, 1)}
	tr := newTracker(ids, 1)
	first := tr.setWindow(2)
	first <- struct{}{}
	tr.published(0, time.Now()) // late: still outstanding when the phase ends
	second := tr.setWindow(2)
	second <- struct{}{}
	tr.published(1, time.Now())
	tr.push(ids[0], apnsToken(0), 1, time.Now()) // event 0 completes during the second phase
	if len(first) != 0 || len(second) != 1 {
		t.Fatalf("after the late event: first window holds %d, second %d; want 0 and 1", len(first), len(second))
	}
	done := make(chan struct{})
	go func() { tr.push(ids[1], apnsToken(1), 1, time.Now()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the second phase's event could not give its token back")
	}
	if len(second) != 0 || tr.events.Load() != 2 {
		t.Errorf("second window holds %d, %d events complete; want 0 and 2", len(second), tr.events.Load())
	}
}

func TestPercentiles(t *testing.T) {
	var l []time.Duration
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(l)
	if p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 || p.Samples != 100 {
		t.Fatalf("%+v", p)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Fatal("no samples should give zeros")
	}
}

func TestAPNsChangeReadsTheBuiltPayload(t *testing.T) {
	id := "us-east-1:" + uuidish(7, 7)
	note, err := payload.APNs(payload.Change{IdentityPoolID: "us-east-1:" + uuidish(1, 2), IdentityID: id, DatasetName: "bench", SyncCount: 123456}, "topic", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	gotID, gotCount := apnsChange(note.Payload)
	if gotID != id || gotCount != 123456 {
		t.Fatalf("apnsChange = %q, %d", gotID, gotCount)
	}
}

func TestTokensAreValidAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for n := range 1000 {
		a, err := registry.NormalizeToken(registry.APNS, apnsToken(n))
		if err != nil || a != apnsToken(n) || len(a) != 64 {
			t.Fatalf("APNs token %d: %q %v", n, a, err)
		}
		f := fcmToken(n)
		if _, err := registry.NormalizeToken(registry.GCM, f); err != nil || len(f) != 163 {
			t.Fatalf("FCM token %d (%d characters): %v", n, len(f), err)
		}
		if seen[a] || seen[f] {
			t.Fatalf("token %d repeats", n)
		}
		seen[a], seen[f] = true, true
	}
}

func TestProcessFigures(t *testing.T) {
	pid := os.Getpid()
	// The process's CPU time as the kernel reports it to the process
	// itself, to compare /proc's figure with. Burn a second of it, however
	// long that takes on a busy machine.
	rusage := func() time.Duration {
		var u syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
			t.Fatal(err)
		}
		return time.Duration(u.Utime.Nano() + u.Stime.Nano())
	}
	c0, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	u0 := rusage()
	for x, deadline := 0, time.Now().Add(time.Minute); rusage()-u0 < time.Second && time.Now().Before(deadline); x++ {
		_ = strings.Repeat("x", x%64)
	}
	u1 := rusage()
	c1, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c1-c0, u1-u0; want < time.Second || got < want*8/10 || got > want*12/10+50*time.Millisecond {
		t.Errorf("%s of CPU (getrusage) counted as %s", want, got)
	}
	rss, peak, err := memory(pid)
	if err != nil || rss <= 0 || peak < rss {
		t.Errorf("memory: rss %d, peak %d, %v", rss, peak, err)
	}
	r0, w0, err := syscalls(pid)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		f.Write([]byte("x"))
	}
	f.Close()
	if _, w1, _ := syscalls(pid); w1-w0 < 10 || r0 < 0 {
		t.Errorf("10 writes counted as %d", w1-w0)
	}
}

// TestContention runs three threads a CPU for a second: the machine's busy
// time must grow by about that much, and this process's threads must have
// waited for a CPU about two seconds per CPU between them.
func TestContention(t *testing.T) {
	n := runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3 * n))
	c0, err := contentionOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for range 3 * n {
		wg.Go(func() {
			for x := 0; time.Now().Before(deadline); x++ {
				_ = strings.Repeat("x", x%64)
			}
		})
	}
	wg.Wait()
	c1, err := contentionOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	busy, total := c1.busy-c0.busy, c1.total-c0.total
	if busy < time.Duration(n)*700*time.Millisecond || busy > total {
		t.Errorf("%d CPUs saturated for 1s: machine busy %s of %s", n, busy, total)
	}
	if wait := c1.wait - c0.wait; wait < time.Duration(n)*time.Second {
		t.Errorf("%d threads on %d CPUs for 1s waited %s in all, want about %s", 3*n, n, wait, time.Duration(2*n)*time.Second)
	}
	if c1.runs <= c0.runs {
		t.Errorf("runs went from %d to %d", c0.runs, c1.runs)
	}
}

func TestFlags(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-phases max,bogus", `unknown phase "bogus"`},
		{"-devices 1", "-devices must be at least 2"},
		{"-identities 0", "-identities must be at least 1"},
		{"-duration 10ms", "-duration must be at least 1s"},
		{"-memory-devices 3", "-memory-devices must be at least -devices"},
		{"extra", `unexpected argument "extra"`},
		{"-godebug schedtrace", `-godebug: "schedtrace" is not name=value`},
	} {
		_, err := parseFlags(strings.Fields(c.args), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.args, err, c.want)
		}
	}
	o, err := parseFlags(nil, io.Discard)
	if err != nil || !o.has("ceiling") || !o.has("memory") || o.memoryDevices != 1_000_000 || o.godebug != sysmonAwake {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

// TestHelp: -h prints the usage and is no error, so pushbench exits 0, as
// pushsyncd and pushsyncctl do.
func TestHelp(t *testing.T) {
	var stderr strings.Builder
	if err := run(context.Background(), []string{"-h"}, io.Discard, &stderr); err != nil {
		t.Errorf("run -h: %v, want no error", err)
	}
	if !strings.Contains(stderr.String(), "-phases") {
		t.Errorf("run -h printed %q, want the usage", stderr.String())
	}
}
