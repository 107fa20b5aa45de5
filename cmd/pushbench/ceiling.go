package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"google.golang.org/api/option"

	"github.com/pushsync/pushsync/payload"
)

// The ceiling is what this machine can push with nothing in between: one
// apns2 token client with its default transport and one firebase messaging
// client, each driven by a fixed pool of goroutines, sending the pushes
// pushsyncd would send for the same events. It runs as a child process of
// pushbench ("pushbench ceiling"), so that its CPU time is its own, and
// trusts the emulators through SSL_CERT_FILE rather than through any
// change to the clients.

// ceilingConcurrency is the goroutines per client.
const ceilingConcurrency = 128

// ceilingPlan is what the parent tells the ceiling program.
type ceilingPlan struct {
	APNsHost           string     `json:"apnsHost"`
	AuthKeyFile        string     `json:"authKeyFile"`
	KeyID              string     `json:"keyId"`
	TeamID             string     `json:"teamId"`
	Topic              string     `json:"topic"`
	FCMEndpoint        string     `json:"fcmEndpoint"`
	ServiceAccountFile string     `json:"serviceAccountFile"`
	ProjectID          string     `json:"projectId"`
	Pool               string     `json:"pool"`
	Identities         []string   `json:"identities"`
	APNsTokens         [][]string `json:"apnsTokens"`
	FCMTokens          [][]string `json:"fcmTokens"`
	// FirstEvent is the number of the first event whose pushes it sends;
	// Pushes is how many it sends of each platform after a warm-up of
	// Warmup.
	FirstEvent int64         `json:"firstEvent"`
	Pushes     int64         `json:"pushesPerPlatform"`
	Warmup     time.Duration `json:"warmup"`
	// Duration, if Pushes is 0, sets Pushes from the rate seen in the
	// warm-up so that the measured run lasts about this long.
	Duration time.Duration `json:"duration"`
	// CPUProfile, if set, is where to write a CPU profile of the run.
	CPUProfile string `json:"cpuProfile,omitempty"`
}

// ceilingResult is what the ceiling program reports of its measured run.
type ceilingResult struct {
	APNs    int64         `json:"apns"`
	FCM     int64         `json:"fcm"`
	Errors  int64         `json:"errors"`
	Elapsed time.Duration `json:"elapsed"`
	// FirstError is the first send error, if any.
	FirstError string `json:"firstError,omitempty"`
}

// runCeilingChild is the ceiling program: it sets up, warms up, says
// "ready", waits for "go" on stdin, sends, prints its result as JSON and
// waits for stdin to close (so the parent can read its CPU time first).
func runCeilingChild(planPath string) error {
	b, err := os.ReadFile(planPath)
	if err != nil {
		return err
	}
	var plan ceilingPlan
	if err := json.Unmarshal(b, &plan); err != nil {
		return fmt.Errorf("plan %s: %w", planPath, err)
	}
	ctx := context.Background()
	c, err := newCeiling(ctx, &plan)
	if err != nil {
		return err
	}
	// Warm up: connections, provider token, access token; and the rate.
	w := c.run(ctx, plan.FirstEvent, 0, plan.Warmup)
	if w.Errors > 0 {
		return fmt.Errorf("warm-up: %d of %d pushes failed, the first: %s", w.Errors, w.APNs+w.FCM+w.Errors, w.FirstError)
	}
	n := plan.Pushes
	if n == 0 {
		rate := float64(min(w.APNs, w.FCM)) / w.Elapsed.Seconds()
		n = max(int64(rate*plan.Duration.Seconds()), 1000)
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "go" {
		return errors.New("no go from the parent")
	}
	if plan.CPUProfile != "" {
		f, err := os.Create(plan.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	res := c.run(ctx, plan.FirstEvent, n, 0)
	pprof.StopCPUProfile()
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

type ceiling struct {
	plan *ceilingPlan
	apns *apns2.Client
	fcm  *messaging.Client
}

func newCeiling(ctx context.Context, plan *ceilingPlan) (*ceiling, error) {
	key, err := token.AuthKeyFromFile(plan.AuthKeyFile)
	if err != nil {
		return nil, fmt.Errorf("APNs key: %w", err)
	}
	ac := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: plan.KeyID, TeamID: plan.TeamID})
	ac.Host = plan.APNsHost
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: plan.ProjectID},
		option.WithCredentialsFile(plan.ServiceAccountFile), option.WithEndpoint(plan.FCMEndpoint))
	if err != nil {
		return nil, fmt.Errorf("firebase app: %w", err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("firebase messaging: %w", err)
	}
	return &ceiling{plan: plan, apns: ac, fcm: mc}, nil
}

// run sends n pushes per platform (or, with n 0, for d) starting with the
// pushes of event first, and returns what was sent.
func (c *ceiling) run(ctx context.Context, first, n int64, d time.Duration) ceilingResult {
	var (
		apnsN, fcmN, errs atomic.Int64
		firstErr          atomic.Value
		wg                sync.WaitGroup
		deadline          = time.Now().Add(d)
	)
	ids := int64(len(c.plan.Identities))
	perA, perF := int64(len(c.plan.APNsTokens[0])), int64(len(c.plan.FCMTokens[0]))
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	// The m-th push of a platform goes to device m mod per of event
	// first + m/per, as pushsyncd's fan-out of those events would.
	pool := func(per int64, send func(identity int, device int, syncCount int64) error, count *atomic.Int64) {
		var next atomic.Int64
		for range ceilingConcurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					m := next.Add(1) - 1
					if (n > 0 && m >= n) || (n == 0 && time.Now().After(deadline)) {
						return
					}
					k := first + m/per
					if err := send(int(k%ids), int(m%per), k/ids+1); err != nil {
						fail(err)
						continue
					}
					count.Add(1)
				}
			}()
		}
	}
	start := time.Now()
	pool(perA, func(i, j int, sc int64) error {
		note, err := payload.APNs(c.change(i, sc), c.plan.Topic, time.Now().Add(time.Hour))
		if err != nil {
			return err
		}
		res, err := c.apns.PushWithContext(ctx, &apns2.Notification{
			DeviceToken: c.plan.APNsTokens[i][j], Topic: note.Topic, PushType: apns2.EPushType(note.PushType),
			Priority: note.Priority, CollapseID: note.CollapseID, Expiration: note.Expiration, Payload: note.Payload,
		})
		if err != nil {
			return err
		}
		if !res.Sent() {
			return fmt.Errorf("APNs %d %s", res.StatusCode, res.Reason)
		}
		return nil
	}, &apnsN)
	pool(perF, func(i, j int, sc int64) error {
		msg, err := payload.FCM(c.change(i, sc), c.plan.FCMTokens[i][j], payload.FCMPriorityNormal, time.Hour)
		if err != nil {
			return err
		}
		_, err = c.fcm.Send(ctx, msg)
		return err
	}, &fcmN)
	wg.Wait()
	r := ceilingResult{APNs: apnsN.Load(), FCM: fcmN.Load(), Errors: errs.Load(), Elapsed: time.Since(start)}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	return r
}

func (c *ceiling) change(identity int, syncCount int64) payload.Change {
	return payload.Change{IdentityPoolID: c.plan.Pool, IdentityID: c.plan.Identities[identity], DatasetName: dataset, SyncCount: syncCount}
}

// ceilingRun is the ceiling program's result with its CPU time for the
// measured run and its peak RSS.
type ceilingRun struct {
	Result   ceilingResult
	CPU      time.Duration
	Syscalls int64
	PeakRSS  int64
	// EmulatorCPU is the CPU time of the emulators' process meanwhile, or
	// -1 if it cannot be read.
	EmulatorCPU time.Duration
}

// runCeiling runs the ceiling program as a child and measures it, and the
// emulators' process emuPID (0: not readable). It calls atGo when the
// program has warmed up, just before its measured run.
func runCeiling(self string, plan *ceilingPlan, dir, caFile string, emuPID int, atGo func()) (*ceilingRun, error) {
	planPath := dir + "/ceiling-plan.json"
	b, err := json.Marshal(plan)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(planPath, b, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "ceiling", "-plan", planPath)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		return nil, fmt.Errorf("ceiling program did not get ready: %q", out.Text())
	}
	atGo()
	before, err := usageOf(cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	emu0 := cpuTimeOrNone(emuPID)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return nil, err
	}
	if !out.Scan() {
		return nil, fmt.Errorf("ceiling program gave no result: %v", out.Err())
	}
	after, err := usageOf(cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	run := &ceilingRun{CPU: after.cpu - before.cpu, Syscalls: after.syscalls - before.syscalls, PeakRSS: after.peakRSS, EmulatorCPU: -1}
	if emu1 := cpuTimeOrNone(emuPID); emu0 >= 0 && emu1 >= 0 {
		run.EmulatorCPU = emu1 - emu0
	}
	if err := json.Unmarshal(out.Bytes(), &run.Result); err != nil {
		return nil, fmt.Errorf("ceiling result %q: %w", out.Text(), err)
	}
	return run, nil
}
