package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/testenv"
)

// replayProxy starts an HTTP proxy that passes every request to the
// daemon's API unchanged, and returns its URL. Before it passes on the
// replay of a dead letter, it calls before with the letter's sequence,
// which lets a test change the world between the listing of deadletter
// replay -all and one of its replays.
func (d *daemon) replayProxy(before func(seq uint64)) string {
	d.t.Helper()
	api := &url.URL{Scheme: "http", Host: d.api}
	proxy := httputil.NewSingleHostReverseProxy(api)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // a pushsyncd stopped by the test is expected
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var seq uint64
		if _, err := fmt.Sscanf(r.URL.Path, "/admin/v1/deadletters/%d/replay", &seq); err == nil && r.Method == http.MethodPost {
			before(seq)
		}
		proxy.ServeHTTP(w, r)
	}))
	d.t.Cleanup(srv.Close)
	return srv.URL
}

// deadLetters publishes events of the dataset settings of identity with
// the sync counts given, while token's pushes fail, waits until each is a
// dead letter (dead counts those the daemon made before) and returns the
// dead letters' sequences.
func (d *daemon) deadLetters(pool, identity, token string, dead int, syncCounts ...int) []uint64 {
	d.t.Helper()
	d.fcm.FailToken(token, fcmtest.Internal())
	for i, n := range syncCounts {
		d.ctl("event", "publish", "-pool", pool, "-identity", identity, "-dataset", "settings", "-sync-count", fmt.Sprint(n))
		testenv.WaitMetric(d.t, d.http, float64(dead+i+1), "pushsync_events_consumed_total", "result", "dead_lettered")
	}
	d.fcm.ClearFailures()
	seqs := d.deadLetterSeqs()
	if len(seqs) != len(syncCounts) {
		d.t.Fatalf("dead letters %v, want %d", seqs, len(syncCounts))
	}
	return seqs
}

// decodeReplayReport decodes the output of deadletter replay -o json.
func decodeReplayReport(t *testing.T, out string) replayReport {
	t.Helper()
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("deadletter replay -o json: %v\n%s", err, out)
	}
	return rep
}

// TestDeadLetterReplayAllSkipsALetterGoneMeanwhile: a dead letter
// discarded between the listing of deadletter replay -all and its replay
// is reported as skipped, and the letters after it are still replayed; the
// run exits 0 and says how many it replayed and skipped. On a terminal,
// stderr shows the run's progress and erases it at the end; elsewhere
// stderr gets nothing.
func TestDeadLetterReplayAllSkipsALetterGoneMeanwhile(t *testing.T) {
	d := startDaemon(t)
	const pool, identity = "us-east-1:0dead000-0000-4000-8000-000000000031", "us-east-1:0dead000-0000-4000-8000-000000000032"
	const token = "fcm-dead-letter-skip-registration-token"
	d.subscribedFCMDevice("dls-android", pool, identity, token)
	seqs := d.deadLetters(pool, identity, token, 0, 1, 2, 3)

	var gone uint64
	discard := func(seq uint64) {
		if seq == gone {
			if r := ctlEnv(d.env, "deadletter", "discard", fmt.Sprint(seq)); r.code != 0 {
				t.Errorf("discarding dead letter %d: %s", seq, r)
			}
		}
	}
	env := d.with("PUSHSYNCCTL_ENDPOINT", d.replayProxy(discard))

	// Text, with stderr on a terminal.
	gone = seqs[1]
	pt, tty := openPTY(t)
	var (
		screen bytes.Buffer
		read   sync.WaitGroup
	)
	read.Add(1)
	go func() { defer read.Done(); _, _ = io.Copy(&screen, pt) }()
	var stdout bytes.Buffer
	code := run([]string{"deadletter", "replay", "-all"}, func(k string) string { return env[k] }, nil, &stdout, tty)
	tty.Close()
	read.Wait()
	out := stdout.String()
	if code != 0 || !strings.HasPrefix(out, "replayed 2 dead letter(s), skipped 1, failed 0\n") ||
		!strings.Contains(out, fmt.Sprintf("skipped %d: ", gone)) || !strings.Contains(out, fmt.Sprintf("no dead letter %d", gone)) {
		t.Errorf("replay -all with dead letter %d discarded meanwhile: exit %d\n%s", gone, code, out)
	}
	if s := screen.String(); !strings.Contains(s, "\rreplaying dead letters: 2 of 3\x1b[K") || !strings.HasSuffix(s, "\r\x1b[K") {
		t.Errorf("the terminal shows %q, want the progress, erased at the end", s)
	}
	d.waitDelivered(2)
	if left := d.deadLetterSeqs(); len(left) != 0 {
		t.Errorf("dead letters left: %v", left)
	}

	// JSON, with stderr elsewhere.
	seqs = d.deadLetters(pool, identity, token, 3, 4, 5)
	gone = seqs[0]
	r := ctlEnv(env, "-o", "json", "deadletter", "replay", "-all")
	rep := decodeReplayReport(t, r.stdout)
	if r.code != 0 || r.stderr != "" || !slices.Equal(rep.Replayed, seqs[1:]) || len(rep.Skipped) != 1 || rep.Skipped[0].Sequence != gone ||
		!strings.Contains(rep.Skipped[0].Error, "ResourceNotFoundException") || len(rep.Failed) != 0 || len(rep.NotTried) != 0 || rep.Stopped {
		t.Errorf("replay -all -o json with dead letter %d discarded meanwhile: %+v\n%s", gone, rep, r)
	}
}

// TestDeadLetterReplayAllStopsAtAFailureTheOthersWouldShare: when the API
// cannot serve a replay (here pushsyncd is down behind a proxy, which
// answers 502), deadletter replay -all sends no further replay, says what
// it replayed before, which letter failed and why, and how many it did not
// try, and exits 1; the letters not tried are still dead letters. A
// failure at the last letter leaves none not tried, and says which failed.
func TestDeadLetterReplayAllStopsAtAFailureTheOthersWouldShare(t *testing.T) {
	d := startDaemon(t)
	const pool, identity = "us-east-1:0dead000-0000-4000-8000-000000000041", "us-east-1:0dead000-0000-4000-8000-000000000042"
	const token = "fcm-dead-letter-stop-registration-token"
	d.subscribedFCMDevice("dlx-android", pool, identity, token)
	seqs := d.deadLetters(pool, identity, token, 0, 1, 2, 3, 4)

	var (
		mu    sync.Mutex
		tried []uint64
		down  uint64
	)
	env := d.with("PUSHSYNCCTL_ENDPOINT", d.replayProxy(func(seq uint64) {
		mu.Lock()
		defer mu.Unlock()
		tried = append(tried, seq)
		if seq == down {
			d.stop()
		}
	}))
	attempts := func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(tried)
	}

	// Text.
	down = seqs[1]
	r := ctlEnv(env, "deadletter", "replay", "-all")
	want := []string{
		"replayed 1 dead letter(s), skipped 0, failed 1, not tried 2\n",
		fmt.Sprintf("\nfailed %d: HTTP 502 Bad Gateway\n", down), // the proxy's answer has no body
	}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("replay -all stopped at dead letter %d: stdout lacks %q:\n%s", down, w, r)
		}
	}
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("replay stopped at dead letter %d with 2 not tried: ", down)) ||
		!strings.Contains(r.stderr, "HTTP 502 Bad Gateway would fail them too") {
		t.Errorf("replay -all stopped at dead letter %d: %s\nwant exit 1 and why it stopped", down, r)
	}
	if got := attempts(); !slices.Equal(got, seqs[:2]) {
		t.Errorf("replays sent: %v, want %v and none after the failure", got, seqs[:2])
	}

	d.restart(fmt.Sprintf("{master_key: %q}", masterKey))
	if left := d.deadLetterSeqs(); !slices.Equal(left, seqs[1:]) {
		t.Fatalf("dead letters after the stopped run: %v, want %v", left, seqs[1:])
	}

	// JSON.
	down = seqs[2]
	r = ctlEnv(env, "-o", "json", "deadletter", "replay", "-all")
	rep := decodeReplayReport(t, r.stdout)
	if r.code != 1 || !slices.Equal(rep.Replayed, seqs[1:2]) || len(rep.Skipped) != 0 || len(rep.Failed) != 1 || rep.Failed[0].Sequence != down ||
		!strings.Contains(rep.Failed[0].Error, "502") || !slices.Equal(rep.NotTried, seqs[3:]) || !rep.Stopped {
		t.Errorf("replay -all -o json stopped at dead letter %d: %+v\n%s", down, rep, r)
	}
	if got := attempts(); !slices.Equal(got, append(seqs[:2:2], seqs[1:3]...)) {
		t.Errorf("replays sent: %v", got)
	}

	// A failure at the last letter leaves none not tried.
	d.restart(fmt.Sprintf("{master_key: %q}", masterKey))
	down = seqs[3]
	r = ctlEnv(env, "deadletter", "replay", "-all")
	if r.code != 1 || !strings.HasPrefix(r.stdout, "replayed 1 dead letter(s), skipped 0, failed 1\n") ||
		!strings.Contains(r.stderr, fmt.Sprintf("1 dead letter(s) failed to replay: %d\n", down)) || strings.Contains(r.stderr, "not tried") {
		t.Errorf("replay -all that failed at its last dead letter %d: %s", down, r)
	}
}
