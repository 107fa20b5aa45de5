package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushsync/pushsync/internal/testenv"
)

// TestWorkerThatCannotStartSaysWhy starts pushsyncd with a setting it
// refuses: pushbench's error must carry pushsyncd's own reason, since the
// log it wrote goes away with pushbench's working directory.
func TestWorkerThatCannotStartSaysWhy(t *testing.T) {
	err := run(context.Background(), runWorkerArgs(t, "-phases", "max", "-identities", "20", "-worker-env", "PUSHSYNC_NO_SUCH_SETTING=1"),
		&strings.Builder{}, &testenv.LogBuffer{})
	t.Logf("pushbench: %v", err)
	if err == nil || !strings.Contains(err.Error(), "PUSHSYNC_NO_SUCH_SETTING") {
		t.Fatalf("pushbench with a worker that cannot start: %v; want pushsyncd's reason, naming PUSHSYNC_NO_SUCH_SETTING", err)
	}
}

// TestWorkerThatDiesMidRunIsReported kills the worker while pushbench
// publishes to it: pushbench must stop and say that the worker exited,
// with the end of its log, rather than fail on something else or report
// figures.
func TestWorkerThatDiesMidRunIsReported(t *testing.T) {
	pushsyncd, _ := binaries(t)
	args := runWorkerArgs(t, "-phases", "half", "-half-rate", "100", "-warmup", "20s", "-duration", "1s", "-identities", "20")
	stderr := &testenv.LogBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), args, &strings.Builder{}, stderr)
	}()
	// The first warm-up starts once the worker is ready.
	for !strings.Contains(stderr.String(), "warm-up") {
		select {
		case err := <-done:
			t.Fatalf("pushbench ended before its warm-up: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	pid := childProcess(t, pushsyncd)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-done
	t.Logf("pushbench: %v", err)
	for _, want := range []string{"pushsyncd worker 0 exited", "signal: killed", "its log ends"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pushbench after its worker died: %v; want it to say %q", err, want)
		}
	}
}

// childProcess returns the pid of the one child of this process that runs
// the binary bin.
func childProcess(t *testing.T, bin string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Clean(exe) != filepath.Clean(bin) {
			continue
		}
		if v, err := procValues(pid, "status", "PPid"); err == nil && int(v[0]) == os.Getpid() {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d children running %s, want 1", len(found), bin)
	}
	return found[0]
}

// TestStalledWorkerShowsItsLog has the max phase wait for room in a full
// window while no push arrives: when it gives up, the error must carry the
// end of the worker's log, which goes away with pushbench's working
// directory.
func TestStalledWorkerShowsItsLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "pushsyncd-0.log")
	if err := os.WriteFile(logPath, []byte("{\"level\":\"warn\",\"message\":\"push not accepted\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids := []string{"us-east-1:" + uuidish(1, 1)}
	b := &bench{
		s:       &stack{emu: &emulators{}, tracker: newTracker(ids, 2)},
		workers: []*worker{{n: 0, logPath: logPath, exited: make(chan struct{})}},
	}
	window := b.s.tracker.setWindow(1)
	window <- struct{}{} // full, and no push will give it back
	err := b.takeRoom(context.Background(), window, time.Now())
	t.Logf("takeRoom: %v", err)
	for _, want := range []string{"no push for 30s", "pushsyncd worker 0's log ends", "push not accepted"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a stalled max phase: want its error to say %q", want)
		}
	}
}
