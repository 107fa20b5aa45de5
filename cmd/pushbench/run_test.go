package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushsync/pushsync/cmd/internal/emufeed"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func removeBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// binaries builds pushsyncd and pushemu once for the tests that run them.
func binaries(t *testing.T) (pushsyncd, pushemu string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "pushbench-test-bin-"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "github.com/pushsync/pushsync/cmd/pushsyncd", "github.com/pushsync/pushsync/cmd/pushemu")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "pushsyncd"), filepath.Join(binDir, "pushemu")
}

// runBench runs pushbench with args and returns its report.
func runBench(t *testing.T, args ...string) *Report {
	t.Helper()
	jsonPath := filepath.Join(t.TempDir(), "pushbench.json")
	var out strings.Builder
	err := run(context.Background(), append(args, "-json", jsonPath), &out, io.Discard)
	t.Logf("pushbench %s:\n%s", strings.Join(args, " "), out.String())
	if err != nil {
		t.Fatalf("pushbench: %v", err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("the JSON report: %v", err)
	}
	return &r
}

// runWorkerArgs returns the arguments that run pushbench against a
// pushsyncd worker it starts, on the test Redis and a NATS server of the
// test's own, writing no JSON, followed by args.
func runWorkerArgs(t *testing.T, args ...string) []string {
	t.Helper()
	pushsyncd, _ := binaries(t)
	testenv.Redis(t)
	ns := testenv.StartNATS(t)
	return append([]string{"-pushsyncd", pushsyncd, "-redis", testenv.RedisAddr(), "-nats", ns.URL, "-json", "", "-godebug", ""}, args...)
}

// checkPhase asserts that every event of a phase reached every device once,
// and that what pushbench measured of the workers is there.
func checkPhase(t *testing.T, name string, f *PhaseFig, devices int) {
	t.Helper()
	switch {
	case f == nil:
		t.Fatalf("%s: no figures", name)
	case f.Events == 0 || f.Pushes != f.Events*int64(devices):
		t.Errorf("%s: %d pushes for %d events, want %d each", name, f.Pushes, f.Events, devices)
	case f.Undelivered != 0 || f.Duplicates != 0:
		t.Errorf("%s: %d events undelivered, %d duplicate pushes", name, f.Undelivered, f.Duplicates)
	case int64(f.Latency.Samples) != f.Pushes || f.Latency.P50 <= 0 || f.Latency.Max < f.Latency.P99:
		t.Errorf("%s: latency %+v for %d pushes", name, f.Latency, f.Pushes)
	case f.CPUPer10kPush <= 0 || f.PeakRSSMB <= 0:
		t.Errorf("%s: pushsyncd CPU %.3f s per 10k pushes, peak RSS %.1f MB", name, f.CPUPer10kPush, f.PeakRSSMB)
	}
}

// TestEveryPhase runs every phase, small, with workers pushbench starts
// and its in-process emulators.
func TestEveryPhase(t *testing.T) {
	pushsyncd, _ := binaries(t)
	testenv.Redis(t) // fails under CI=true without Redis
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server, for the memory phase")
	}
	ns := testenv.StartNATS(t)
	r := runBench(t, "-pushsyncd", pushsyncd, "-redis", testenv.RedisAddr(), "-nats", ns.URL,
		"-identities", "300", "-window", "64", "-duration", "1s", "-warmup", "300ms", "-memory-devices", "2000", "-godebug", "")
	if c := r.Ceiling; c == nil || c.Pushes == 0 || c.EmulatorPushes < c.Pushes || c.CPUPer10kPush <= 0 || c.EmulatorCPUPer10kPush <= 0 {
		t.Errorf("ceiling: %+v", c)
	}
	checkPhase(t, "max", r.Max, 4)
	checkPhase(t, "half", r.Half, 4)
	if r.Max != nil && r.Half != nil {
		if want := r.Max.PushesPerSec / 4 / 2; r.Half.TargetEventRate != want || r.Half.HalfOfMaxRate != want {
			t.Errorf("half phase at %.0f events/s, noted as half of %.0f; want half the maximum, %.0f", r.Half.TargetEventRate, r.Half.HalfOfMaxRate, want)
		}
		if r.Max.SyscallsPerPush <= 0 || r.Max.RedisCPUPer10kPush <= 0 {
			t.Errorf("max: %.2f syscalls per push, Redis %.3f s per 10k", r.Max.SyscallsPerPush, r.Max.RedisCPUPer10kPush)
		}
	}
	if m := r.Memory; m == nil || m.Devices != 2000 || m.BytesPerDevice <= 0 {
		t.Errorf("memory: %+v", m)
	}
	if len(r.Verdicts) != 5 {
		t.Errorf("%d verdicts, want one per bar: %+v", len(r.Verdicts), r.Verdicts)
	}
}

// TestAttachToRunningWorkers measures a pushsyncd that pushbench did not
// start, pushing to a pushemu it did not start either, and checks that
// pushbench leaves that deployment's registry as it found it.
func TestAttachToRunningWorkers(t *testing.T) {
	pushsyncd, pushemu := binaries(t)
	rdb, prefix := testenv.Redis(t)
	ns := testenv.StartNATS(t)

	emuDir := t.TempDir()
	start(t, exec.Command(pushemu, "-dir", emuDir, "-apns-addr", "127.0.0.1:0", "-apns-sandbox-addr", "127.0.0.1:0",
		"-fcm-addr", "127.0.0.1:0", "-feed-addr", "127.0.0.1:0", "-quiet", "-record=false"))
	var m *emufeed.Manifest
	waitFor(t, "pushemu's emulators.json", func() bool {
		var err error
		m, err = emufeed.ReadManifest(emuDir)
		return err == nil
	})

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ops := freeAddr()
	cfgPath := filepath.Join(emuDir, "worker.yaml")
	cfg := fmt.Sprintf(`role: worker
http: {listen: %q}
redis: {addrs: [%q], key_prefix: %q}
nats: {url: %q}
dispatcher: {coalesce_window: 0s}
secrets: {master_key: %q}
apns: {production_host: %q, sandbox_host: %q, root_ca_file: apns-ca.pem}
fcm: {endpoint: %q, root_ca_file: fcm-ca.pem}
`, ops, testenv.RedisAddr(), prefix, ns.URL, base64.StdEncoding.EncodeToString(key), m.APNs, m.APNsSandbox, m.FCMEndpoint)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, exec.Command(pushsyncd, "-config", cfgPath))
	waitFor(t, "the worker's /readyz", func() bool {
		res, err := http.Get("http://" + ops + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	// The deployment has registrations of its own, which pushbench must
	// leave alone.
	ctx := context.Background()
	box, _ := secretbox.New(key)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: box})
	authKey, err := os.ReadFile(filepath.Join(emuDir, "apns-authkey.p8"))
	if err != nil {
		t.Fatal(err)
	}
	ownPool, ownIdentity := "us-east-1:"+uuidish(7, 7), "us-east-1:"+uuidish(8, 8)
	if _, err := reg.CreateApp(ctx, registry.App{Name: "operators-app", Kind: registry.KindAPNs,
		APNs: &registry.APNsCredentials{Topic: "com.example.app", KeyID: m.APNsKeyID, TeamID: m.APNsTeamID, AuthKey: string(authKey)}}); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetPoolPush(ctx, ownPool, registry.PoolPush{Apps: map[registry.Platform]string{registry.APNS: "operators-app"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.RegisterDevice(ctx, ownPool, ownIdentity, registry.APNS, apnsToken(999_999)); err != nil {
		t.Fatal(err)
	}

	r := runBench(t, "-emulators", emuDir, "-attach", cfgPath, "-phases", "max,half",
		"-identities", "300", "-window", "64", "-duration", "1s", "-warmup", "300ms", "-godebug", "")
	checkPhase(t, "max", r.Max, 4)
	checkPhase(t, "half", r.Half, 4)
	if r.Max != nil && (r.Max.PushemuCPUPer10kPush <= 0 || r.Max.SyscallsPerPush != 0) {
		t.Errorf("max: pushemu CPU %.3f s per 10k pushes (want it read), %.2f syscalls per push (want unknown)", r.Max.PushemuCPUPer10kPush, r.Max.SyscallsPerPush)
	}
	if r.Setup.Workers != 1 || !strings.Contains(r.Setup.Pushsyncd, cfgPath) || !strings.Contains(r.Setup.Emulators, emuDir) {
		t.Errorf("setup %+v", r.Setup)
	}

	// Nothing of the bench is left in the deployment's registry, and all
	// of the deployment's own is.
	keys, err := rdb.Keys(ctx, prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(slices.DeleteFunc(keys, func(k string) bool { return !strings.HasSuffix(k, ":push") })); n != 1 {
		t.Errorf("%d identities with devices, want the deployment's own one: %v", n, keys)
	}
	if own, err := reg.Registration(ctx, ownPool, ownIdentity); err != nil || len(own.Devices) != 1 {
		t.Errorf("the deployment's identity: %+v, %v", own, err)
	}
	if apps, err := reg.Apps(ctx); err != nil || len(apps) != 1 || apps[0].Name != "operators-app" {
		t.Errorf("apps after the run: %+v, %v; want the deployment's own only", apps, err)
	}
	if pp, err := reg.PoolPush(ctx, ownPool); err != nil || pp.Apps[registry.APNS] != "operators-app" {
		t.Errorf("the deployment's pool: %+v, %v", pp, err)
	}
}

func TestAttachNeedsMatchingWorkers(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-attach w.yaml", "-attach needs -emulators"},
		{"-attach w.yaml -emulators d -workers 2", "-workers does not go with -attach"},
		{"-attach w.yaml -emulators d -redis 127.0.0.1:1", "-redis does not go with -attach"},
		{"-ops 127.0.0.1:8080", "-ops goes with -attach"},
	} {
		if _, err := parseFlags(strings.Fields(c.args), io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.args, err, c.want)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "w.yaml")
	if err := os.WriteFile(path, []byte("dispatcher: {coalesce_window: 2s, device_budget: 5}\napns: {production_host: \"https://elsewhere:443\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadAttached(path, &emulators{apnsURL: "https://127.0.0.1:2197", fcmEndpoint: "https://127.0.0.1:4443/v1"})
	for _, want := range []string{"coalesce_window is 2s", "device_budget is 5", `apns.production_host is "https://elsewhere:443"`, "fcm.endpoint is"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("loadAttached = %v, want it to say %q", err, want)
		}
	}
	// The workers may know pushemu by another name.
	if !sameEndpoint("https://pushemu:2197", "https://127.0.0.1:2197") || !sameEndpoint("https://pushemu:4443/v1/", "https://127.0.0.1:4443/v1") ||
		sameEndpoint("https://pushemu:2198", "https://127.0.0.1:2197") || sameEndpoint("http://pushemu:2197", "https://127.0.0.1:2197") {
		t.Error("sameEndpoint compares more or less than scheme, port and path")
	}
}

// start starts cmd and stops it when the test ends.
func start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	log := filepath.Join(t.TempDir(), filepath.Base(cmd.Path)+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("%s:\n%s", cmd.Path, b)
		}
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
