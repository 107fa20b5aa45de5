// Command pushbench measures how fast pushsync turns dataset-change events
// into pushes, and what that costs, on the machine it runs on.
//
//	go build -o bin/ ./cmd/... && bin/pushbench [flags]
//
// It starts the APNs and FCM emulators and a NATS server in its own
// process, seeds Redis with identities that have devices (APNs and FCM
// alternately) subscribed to a dataset, and starts pushsyncd worker
// processes against them. Then, in phases:
//
//   - ceiling: the same emulators driven by a bare apns2 token client and a
//     bare firebase messaging client, 128 goroutines each, in a child
//     process: what this machine can push with nothing in between;
//   - max: events published as fast as pushsync delivers them (at most
//     -window outstanding), for -duration;
//   - half: events published at half the rate the max phase reached, for
//     the latency at a load with headroom;
//   - memory: -memory-devices devices registered in a private redis-server,
//     for Redis memory per device.
//
// For each it reports events per second in, pushes per second delivered at
// the emulators, latency from publish to emulator receipt (p50, p90, p99,
// max), CPU seconds per 10,000 pushes of pushsyncd (or of the ceiling
// program), and pushsyncd's peak RSS. It writes a plain table to standard
// output and the same figures as JSON to -json. PUSHSYNC_* variables in its
// environment reach pushsyncd, so settings can be compared without edits.
//
// With -emulators, the emulators are those of a running pushemu (as a
// process, here or on another machine): pushbench reads the directory
// pushemu wrote and follows its push feed for each push's arrival. With
// -attach, the workers are running ones too: pushbench reads their
// configuration file for Redis, NATS and the master key, measures them
// through their metrics endpoints (-ops), and at the end removes from their
// registry what it seeded, and nothing else.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "natsd" {
		if err := runNATSChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pushbench natsd:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "ceiling" {
		fs := flag.NewFlagSet("pushbench ceiling", flag.ExitOnError)
		plan := fs.String("plan", "", "the plan file pushbench wrote")
		_ = fs.Parse(os.Args[2:])
		if err := runCeilingChild(*plan); err != nil {
			fmt.Fprintln(os.Stderr, "pushbench ceiling:", err)
			os.Exit(1)
		}
		return
	}
	if err := reexecForGODEBUG(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
	// The emulators allocate for every push; collect less often, so the
	// instrument takes less of the machine it measures.
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
}

type options struct {
	identities, devices int
	duration, warmup    time.Duration
	workers             int
	pushsyncd           string
	redisAddr, natsURL  string
	window              int
	phases              []string
	memoryDevices       int
	jsonPath            string
	keep                bool
	cpuProfile          string
	ceilingProfile      string
	latencyRate         float64
	workerEnv           envList
	selfProfile         string
	natsProfile         string
	godebug             string
	emulatorsDir        string
	attach              string
	ops                 []string
}

// envList collects -worker-env flags.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q is not NAME=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

var allPhases = []string{"ceiling", "max", "half", "memory"}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pushbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.identities, "identities", 10000, "identities to seed")
	fs.IntVar(&o.devices, "devices", 4, "devices per identity, APNs and FCM alternately; every event pushes to all of them")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of each measured phase")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up at the rate of each measured phase, before it (and once at 200 events/s before the first)")
	fs.IntVar(&o.workers, "workers", 1, "pushsyncd worker processes")
	fs.StringVar(&o.pushsyncd, "pushsyncd", "", "the pushsyncd binary (default: next to pushbench, else on PATH)")
	fs.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis for the registry (keys under a fresh prefix, removed at the end)")
	fs.StringVar(&o.natsURL, "nats", "", "NATS server URL (default: one embedded in pushbench)")
	fs.IntVar(&o.window, "window", 2048, "events outstanding at most in the max phase")
	fs.StringVar(&o.natsProfile, "nats-cpuprofile", "", "write a CPU profile of pushbench's NATS server over the whole run to this file")
	fs.StringVar(&o.selfProfile, "self-cpuprofile", "", "write a CPU profile of pushbench itself (the emulators, the publishers) to this file")
	fs.Var(&o.workerEnv, "worker-env", "NAME=VALUE to set in pushsyncd's environment only (repeatable), e.g. GOGC=100")
	fs.StringVar(&o.godebug, "godebug", sysmonAwake, "GODEBUG settings for every Go process of the run (pushbench and its NATS server, pushsyncd, the ceiling program), "+
		"added to $GODEBUG unless it names the same setting; empty: the runtime's defaults. The default keeps the Go scheduler's monitor from sleeping between bursts of work, as deploy/ does for pushsyncd")
	fs.Float64Var(&o.latencyRate, "half-rate", 0, "events per second of the half phase (default: half of what the max phase delivered; the p99 bar is met only at or above that)")
	fs.StringVar(&o.emulatorsDir, "emulators", "", "use the emulators of a running pushemu, from the directory it writes (its -dir), and follow its push feed; default: emulators in pushbench's own process")
	fs.StringVar(&o.attach, "attach", "", "measure running pushsyncd workers, started with this configuration file, instead of starting workers; needs -emulators. Redis, NATS, the key prefix and the master key come from the file")
	ops := fs.String("ops", "", "with -attach: the health and metrics addresses of every worker consuming the stream, host:port,... (default: the file's http.listen); CPU per push counts the workers listed only")
	phases := fs.String("phases", strings.Join(allPhases, ","), "phases to run, of "+strings.Join(allPhases, ","))
	fs.IntVar(&o.memoryDevices, "memory-devices", 1_000_000, "devices to register in the memory phase")
	fs.StringVar(&o.jsonPath, "json", "pushbench.json", "where to write the figures as JSON (empty: nowhere)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (pushsyncd logs and configuration)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the first pushsyncd worker during the first measured phase to this file")
	fs.StringVar(&o.ceilingProfile, "ceiling-cpuprofile", "", "write a CPU profile of the ceiling program's measured run to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *ops != "" {
		o.ops = strings.Split(*ops, ",")
	}
	if err := checkAttachFlags(o, fs); err != nil {
		return nil, err
	}
	for _, p := range strings.Split(*phases, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(allPhases, p) {
			return nil, fmt.Errorf("-phases: unknown phase %q (phases: %s)", p, strings.Join(allPhases, ","))
		}
		o.phases = append(o.phases, p)
	}
	switch {
	case o.identities < 1:
		return nil, errors.New("-identities must be at least 1")
	case o.devices < 2:
		return nil, errors.New("-devices must be at least 2 (one APNs and one FCM device per identity)")
	case o.devices > maxDevices:
		return nil, fmt.Errorf("-devices must be at most %d", maxDevices)
	case o.duration < time.Second:
		return nil, errors.New("-duration must be at least 1s")
	case o.workers < 1:
		return nil, errors.New("-workers must be at least 1")
	case o.window < 1 || o.window > ringSize/2:
		return nil, fmt.Errorf("-window must be between 1 and %d", ringSize/2)
	case o.memoryDevices < o.devices:
		return nil, fmt.Errorf("-memory-devices must be at least -devices (%d)", o.devices)
	}
	if _, err := mergeGODEBUG("", o.godebug); err != nil {
		return nil, fmt.Errorf("-godebug: %w", err)
	}
	return o, nil
}

func (o *options) has(phase string) bool { return slices.Contains(o.phases, phase) }

// checkAttachFlags refuses -attach without -emulators, and the flags about
// workers pushbench starts along with it.
func checkAttachFlags(o *options, fs *flag.FlagSet) error {
	if o.attach == "" {
		if len(o.ops) > 0 {
			return errors.New("-ops goes with -attach")
		}
		return nil
	}
	if o.emulatorsDir == "" {
		return errAttachNeedsEmulators
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "workers", "worker-env", "pushsyncd", "nats", "redis", "nats-cpuprofile":
			if err == nil {
				err = fmt.Errorf("-%s does not go with -attach: the running workers' configuration says where Redis and NATS are", f.Name)
			}
		}
	})
	return err
}

// Report is what pushbench writes as JSON.
type Report struct {
	Machine  Machine       `json:"machine"`
	Setup    Setup         `json:"setup"`
	Ceiling  *CeilingFig   `json:"ceiling,omitempty"`
	Max      *PhaseFig     `json:"max,omitempty"`
	Half     *PhaseFig     `json:"half,omitempty"`
	Memory   *MemoryFig    `json:"memory,omitempty"`
	Verdicts []Verdict     `json:"verdicts,omitempty"`
	Started  time.Time     `json:"started"`
	Took     time.Duration `json:"tookNs"`
}

// Machine says where the figures come from.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	GoVersion string `json:"goVersion"`
	OS        string `json:"os"`
}

// Setup is the workload.
type Setup struct {
	// Command is pushbench's command line, and Env the variables of its
	// environment that reach pushsyncd and the Go runtimes of the run
	// (PUSHSYNC_*, GOGC, GOMEMLIMIT, GOMAXPROCS).
	Command    string   `json:"command"`
	Env        []string `json:"env,omitempty"`
	Identities int      `json:"identities"`
	Devices    int      `json:"devicesPerIdentity"`
	Workers    int      `json:"workers"`
	Duration   string   `json:"duration"`
	Window     int      `json:"window"`
	Pushsyncd  string   `json:"pushsyncd"`
	// Emulators says where the emulators ran: "in-process" or the
	// directory of the pushemu followed.
	Emulators string `json:"emulators"`
	// GODEBUG is the runtime settings every Go process of the run had.
	GODEBUG string `json:"godebug"`
}

// CeilingFig is the ceiling program's run.
type CeilingFig struct {
	Pushes          int64   `json:"pushes"`
	Seconds         float64 `json:"seconds"`
	PushesPerSec    float64 `json:"pushesPerSec"`
	CPUPer10kPush   float64 `json:"cpuSecondsPer10kPushes"`
	SyscallsPerPush float64 `json:"syscallsPerPush"`
	PeakRSSMB       float64 `json:"peakRssMB"`
	// EmulatorPushes is the pushes the emulators accepted during the
	// measured run, as Pushes is the ones the clients saw accepted.
	EmulatorPushes int64 `json:"emulatorPushes"`
	// EmulatorCPUPer10kPush is the emulators' CPU meanwhile (pushbench's
	// own, or pushemu's on this machine); 0 when it cannot be read.
	EmulatorCPUPer10kPush float64 `json:"emulatorCpuSecondsPer10kPushes,omitempty"`
}

// PhaseFig is one pushsync phase.
type PhaseFig struct {
	TargetEventRate float64     `json:"targetEventsPerSec,omitempty"`
	Events          int64       `json:"events"`
	EventsPerSec    float64     `json:"eventsPerSec"`
	Pushes          int64       `json:"pushes"`
	PushesPerSec    float64     `json:"pushesPerSec"`
	Seconds         float64     `json:"seconds"`
	Latency         Percentiles `json:"latency"`
	CPUPer10kPush   float64     `json:"cpuSecondsPer10kPushes"`
	// SyscallsPerPush is 0 (and left out) when it cannot be read: for
	// attached workers.
	SyscallsPerPush float64 `json:"syscallsPerPush,omitempty"`
	// PeakRSSMB is the largest worker's peak resident set over the phase.
	PeakRSSMB float64 `json:"peakRssMB"`
	// The CPU of the rest of the pipeline on this machine, when it can be
	// read: the NATS server (a child process of pushbench unless -nats is
	// given) and Redis (from INFO, so only if nothing else uses it).
	NATSCPUPer10kPush float64 `json:"natsServerCpuSecondsPer10kPushes,omitempty"`
	// BenchCPUPer10kPush is pushbench's own: the publishers and the
	// bookkeeping, and the emulators when they run in it.
	BenchCPUPer10kPush float64 `json:"pushbenchCpuSecondsPer10kPushes"`
	// PushemuCPUPer10kPush is pushemu's, when the emulators run there on
	// this machine.
	PushemuCPUPer10kPush float64 `json:"pushemuCpuSecondsPer10kPushes,omitempty"`
	RedisCPUPer10kPush   float64 `json:"redisCpuSecondsPer10kPushes,omitempty"`
	// Duplicates are pushes to a device that had the event's push
	// already; Misrouted, pushes to a device not of the event's identity;
	// Undelivered, events some device of which had no push.
	Duplicates  int64 `json:"duplicates"`
	Misrouted   int64 `json:"misroutedPushes"`
	Undelivered int64 `json:"undeliveredEvents"`
	// How crowded the CPUs were: the machine's busy share, and for the
	// threads of pushsyncd, the NATS server child and pushbench, how many
	// were waiting for a CPU on average, how long one wait was, and how
	// often per event one of them was put on a CPU.
	MachineBusyPct float64 `json:"machineBusyPercent"`
	ThreadsWaiting float64 `json:"threadsWaitingForCpu"`
	WaitPerRunUs   float64 `json:"cpuWaitPerRunMicros"`
	RunsPerEvent   float64 `json:"threadRunsPerEvent"`
	// HalfOfMaxRate, in the half phase, is half the events per second the
	// max phase of the same run delivered: the rate the p99 bar is set at.
	// 0 when the run had no max phase (-half-rate alone).
	HalfOfMaxRate float64 `json:"halfOfMaxEventsPerSec,omitempty"`
}

// MemoryFig is the Redis memory phase.
type MemoryFig struct {
	Devices             int     `json:"devices"`
	Identities          int     `json:"identities"`
	BytesPerDevice      float64 `json:"bytesPerDevice"`
	BytesPerDeviceSent  float64 `json:"bytesPerDeviceAfterOnePush"`
	RedisVersion        string  `json:"redisVersion"`
	SeedSeconds         float64 `json:"seedSeconds"`
	RegistrationsPerSec float64 `json:"registrationsPerSec"`
}

// Verdict compares a figure with its bar.
type Verdict struct {
	Bar    string `json:"bar"`
	Figure string `json:"figure"`
	Met    bool   `json:"met"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // asked for the usage, and given it
	}
	if err != nil {
		return err
	}
	rep := &Report{Machine: machine(), Started: time.Now(), Setup: Setup{
		Command: commandLine(args), Env: runEnv(os.Environ()), Identities: o.identities, Devices: o.devices, Workers: o.workers, Duration: o.duration.String(), Window: o.window,
		GODEBUG: os.Getenv("GODEBUG"),
	}}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rep.Setup.Emulators = "in-process"
	if o.emulatorsDir != "" {
		rep.Setup.Emulators = "pushemu (" + o.emulatorsDir + ")"
	}
	needStack := o.has("ceiling") || o.has("max") || o.has("half")
	if needStack && (o.has("max") || o.has("half")) && o.attach == "" {
		if o.pushsyncd, err = findPushsyncd(o.pushsyncd, self); err != nil {
			return err
		}
		rep.Setup.Pushsyncd = o.pushsyncd
	}
	dir, err := os.MkdirTemp("", "pushbench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stderr, "working directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	pr := newProgress(stderr)
	stopProfile, err := startCPUProfile(o.selfProfile)
	if err != nil {
		return err
	}
	defer stopProfile()

	if needStack {
		pr.start(fmt.Sprintf("seeding %d identities × %d devices", o.identities, o.devices), "identities")
		s, err := newStack(ctx, stackOptions{dir: dir, pushemuDir: o.emulatorsDir, attach: o.attach,
			natsURL: o.natsURL, natsProfile: o.natsProfile, redisAddr: o.redisAddr, identities: o.identities, devices: o.devices},
			func(done, total int64) { pr.set(done, total) })
		pr.stop()
		if err != nil {
			return err
		}
		defer s.close()
		if err := runPushPhases(ctx, o, s, self, rep, pr); err != nil {
			return err
		}
	}
	if o.has("memory") {
		m, err := measureMemory(ctx, o, dir, pr)
		if err != nil {
			return fmt.Errorf("memory phase: %w", err)
		}
		rep.Memory = m
	}
	rep.Verdicts = verdicts(rep)
	rep.Took = time.Since(rep.Started)
	writeTable(stdout, rep)
	if o.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("figures for %s: %w", o.jsonPath, err)
		}
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "figures written to", o.jsonPath)
	}
	return nil
}

func runPushPhases(ctx context.Context, o *options, s *stack, self string, rep *Report, pr *progress) error {
	if o.has("ceiling") {
		fig, err := ceilingPhase(s, o, self, pr)
		if err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
		rep.Ceiling = fig
	}
	if !o.has("max") && !o.has("half") {
		return nil
	}
	b := &bench{s: s, o: o, pr: pr}
	if s.attached != nil {
		ops := o.ops
		if len(ops) == 0 {
			ops = []string{defaultOps(s.attached)}
		}
		remote, err := watchWorkers(ops)
		if err != nil {
			return err
		}
		defer remote.close()
		b.remote, b.ops = remote, ops[0]
		rep.Setup.Workers, rep.Setup.Pushsyncd = len(ops), "attached: "+o.attach
	} else {
		var workers []*worker
		defer func() {
			for _, w := range workers {
				w.stop()
			}
		}()
		for i := range o.workers {
			w, err := s.startWorker(o.pushsyncd, i, o.workerEnv)
			if err != nil {
				return err
			}
			workers = append(workers, w)
			b.pids = append(b.pids, w.pid())
			b.workers = append(b.workers, w)
		}
		b.ops = workers[0].ops
	}
	// Warm up gently first: connections, provider and access tokens,
	// caches. Each measured phase then warms up at its own rate.
	if _, err := b.phase(ctx, "warm-up", o.warmup, 200, false); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	rate, halfOfMax := 0.0, 0.0
	if o.has("max") {
		fig, err := b.measure(ctx, "max rate", 0)
		if err != nil {
			return fmt.Errorf("max phase: %w", err)
		}
		// Half of what was delivered (not of what went in, which counts
		// the window filling at the start).
		rep.Max, rate = fig, fig.PushesPerSec/float64(o.devices)
		halfOfMax = rate / 2
	}
	if o.latencyRate > 0 {
		rate = 2 * o.latencyRate
	}
	if o.has("half") {
		if rate == 0 {
			return errors.New("the half phase needs the max phase or -half-rate")
		}
		fig, err := b.measure(ctx, "half rate", rate/2)
		if err != nil {
			return fmt.Errorf("half phase: %w", err)
		}
		fig.HalfOfMaxRate = halfOfMax
		rep.Half = fig
	}
	return nil
}

func ceilingPhase(s *stack, o *options, self string, pr *progress) (*CeilingFig, error) {
	s.tracker.countOnly.Store(true)
	defer s.tracker.countOnly.Store(false)
	plan := &ceilingPlan{
		APNsHost: s.emu.apnsURL, AuthKeyFile: s.emu.authKeyFile, KeyID: s.emu.keyID, TeamID: s.emu.teamID, Topic: apnsTopic,
		FCMEndpoint: s.emu.fcmEndpoint, ServiceAccountFile: s.emu.serviceAccountFile, ProjectID: s.emu.projectID,
		Pool: s.pool, Identities: s.identities, APNsTokens: s.apnsTokens, FCMTokens: s.fcmTokens,
		Warmup: o.warmup, Duration: o.duration, CPUProfile: o.ceilingProfile,
	}
	var before atomic.Int64
	before.Store(s.tracker.pushes.Load())
	pr.startTimed("ceiling: bare apns2 and firebase clients", "pushes", o.warmup+o.duration)
	stopTick := pr.tick(func() (int64, int64) { return s.tracker.pushes.Load() - before.Load(), 0 })
	// The emulators' count is of the measured run: the warm-up's pushes
	// are in before it starts (through a feed, once it has settled).
	r, err := runCeiling(self, plan, s.dir, s.emu.caFile, s.emu.pid, func() {
		if s.emu.feed {
			s.tracker.settle()
		}
		before.Store(s.tracker.pushes.Load())
	})
	if s.emu.feed {
		s.tracker.settle()
	}
	stopTick()
	pr.stop()
	if err != nil {
		return nil, err
	}
	if r.Result.Errors > 0 {
		return nil, fmt.Errorf("%d pushes failed, the first: %s", r.Result.Errors, r.Result.FirstError)
	}
	n := r.Result.APNs + r.Result.FCM
	fig := &CeilingFig{
		Pushes: n, Seconds: r.Result.Elapsed.Seconds(), PushesPerSec: float64(n) / r.Result.Elapsed.Seconds(),
		CPUPer10kPush: r.CPU.Seconds() / float64(n) * 1e4, PeakRSSMB: mb(r.PeakRSS),
		SyscallsPerPush: float64(r.Syscalls) / float64(n),
		EmulatorPushes:  s.tracker.pushes.Load() - before.Load(),
	}
	if r.EmulatorCPU >= 0 {
		fig.EmulatorCPUPer10kPush = r.EmulatorCPU.Seconds() / float64(n) * 1e4
	}
	return fig, nil
}

// bench runs the phases that go through pushsyncd.
type bench struct {
	s        *stack
	o        *options
	pids     []int          // the workers pushbench started
	workers  []*worker      // the same
	remote   *remoteWorkers // or the workers it attached to
	pr       *progress
	ops      string       // the first worker's ops address
	profiled bool         // a CPU profile was taken
	next     atomic.Int64 // the next event number
}

// measure runs the phase name at rate for -duration, after a warm-up of
// -warmup at the same rate, so that it measures the steady state at that
// rate (heap size, goroutine stacks, batch sizes, the broker's buffers)
// rather than the change from another one.
func (b *bench) measure(ctx context.Context, name string, rate float64) (*PhaseFig, error) {
	if _, err := b.phase(ctx, name+": warm-up", b.o.warmup, rate, false); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	return b.phase(ctx, name, b.o.duration, rate, true)
}

// phase publishes events for d, at rate events per second or, with rate 0,
// as fast as they are delivered with at most -window outstanding, waits
// for every push, and measures.
func (b *bench) phase(ctx context.Context, name string, d time.Duration, rate float64, measure bool) (*PhaseFig, error) {
	t := b.s.tracker
	var window chan struct{}
	if rate == 0 {
		window = t.setWindow(b.o.window)
	} else {
		t.setWindow(0)
	}
	t.takeLatencies()
	t.measuring.Store(measure)
	defer t.measuring.Store(false)
	pushes0, events0, dup0, mis0 := t.pushes.Load(), t.events.Load(), t.duplicates.Load(), t.misrouted.Load()
	first := b.next.Load()
	use0, err := b.usage()
	if err != nil {
		return nil, err
	}
	nats0, redis0 := b.s.natsCPU(), b.s.redisCPU(ctx)
	self0, _ := cpuTime(os.Getpid())
	emu0 := b.pushemuCPU()
	sched := append([]int{os.Getpid()}, b.pids...)
	if b.s.natsd != nil {
		sched = append(sched, b.s.natsd.Process.Pid)
	}
	if emu0 >= 0 {
		sched = append(sched, b.s.emu.pid)
	}
	con0, err := contentionOf(sched...)
	if err != nil {
		return nil, err
	}
	b.pr.startTimed(name, "events", d)
	stopTick := b.pr.tick(func() (int64, int64) { return t.events.Load() - events0, 0 })
	defer func() { stopTick(); b.pr.stop() }()

	start := time.Now()
	end := start.Add(d)
	if measure && b.o.cpuProfile != "" && !b.profiled {
		b.profiled = true
		go b.profile(d)
	}
	// One goroutine publishes: on a schedule (every event due by now, then
	// a sleep until the next), or whenever the window has room.
	// On a schedule, an event's latency starts when it was due, not when
	// a late publisher got to it: the wait behind the publisher is part of
	// what a user would see, and leaving it out would hide queueing.
	for j := int64(0); ctx.Err() == nil && err == nil; j++ {
		var due time.Time
		if rate > 0 {
			due = start.Add(time.Duration(float64(j) / rate * float64(time.Second)))
			if due.After(end) {
				break
			}
			if wait := time.Until(due); wait > 0 {
				time.Sleep(wait)
			}
		} else {
			if err = b.takeRoom(ctx, window, start); err != nil {
				break
			}
			if time.Now().After(end) {
				<-window
				break
			}
		}
		if gone := b.workersGone(); gone != nil {
			return nil, gone
		}
		if beforePublish != nil {
			beforePublish(name, j)
		}
		err = b.s.publish(b.next.Add(1)-1, due)
	}
	published := b.next.Load() - first
	publishSecs := time.Since(start).Seconds()
	if err == nil {
		err = b.s.waitPublished(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	// Wait for the last pushes: until every event is delivered or nothing
	// arrived for 10s.
	for t.events.Load()-events0 < published && ctx.Err() == nil {
		if err := b.s.emu.err(); err != nil {
			return nil, err
		}
		if err := b.workersGone(); err != nil {
			return nil, err
		}
		if last := time.Unix(0, t.lastPush.Load()); time.Since(last) > 10*time.Second && time.Since(start) > d+10*time.Second {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := b.workersGone(); err != nil {
		return nil, err
	}
	use1, err := b.usage()
	if err != nil {
		return nil, err
	}
	nats1, redis1 := b.s.natsCPU(), b.s.redisCPU(ctx)
	self1, _ := cpuTime(os.Getpid())
	emu1 := b.pushemuCPU()
	con1, err := contentionOf(sched...)
	if err != nil {
		return nil, err
	}
	wall := time.Since(start).Seconds()
	elapsed := time.Unix(0, t.lastPush.Load()).Sub(start).Seconds()
	pushes := t.pushes.Load() - pushes0
	per10k := func(a, b time.Duration) float64 {
		if a < 0 || b < 0 {
			return 0
		}
		return (b - a).Seconds() / float64(max(pushes, 1)) * 1e4
	}
	fig := &PhaseFig{
		TargetEventRate:    rate,
		Events:             published,
		EventsPerSec:       float64(published) / publishSecs,
		Pushes:             pushes,
		PushesPerSec:       float64(pushes) / elapsed,
		Seconds:            elapsed,
		Latency:            percentiles(t.takeLatencies()),
		CPUPer10kPush:      per10k(use0.cpu, use1.cpu),
		SyscallsPerPush:    float64(use1.syscalls-use0.syscalls) / float64(max(pushes, 1)),
		NATSCPUPer10kPush:  per10k(nats0, nats1),
		RedisCPUPer10kPush: per10k(redis0, redis1),
		BenchCPUPer10kPush: per10k(self0, self1),
		PeakRSSMB:          mb(use1.peakRSS),
		Duplicates:         t.duplicates.Load() - dup0,
		Misrouted:          t.misrouted.Load() - mis0,
		Undelivered:        published - (t.events.Load() - events0),
		MachineBusyPct:     100 * (con1.busy - con0.busy).Seconds() / max((con1.total-con0.total).Seconds(), 1e-9),
		ThreadsWaiting:     (con1.wait - con0.wait).Seconds() / wall,
		WaitPerRunUs:       float64((con1.wait - con0.wait).Microseconds()) / float64(max(con1.runs-con0.runs, 1)),
		RunsPerEvent:       float64(con1.runs-con0.runs) / float64(max(published, 1)),
	}
	if use0.syscalls < 0 {
		fig.SyscallsPerPush = 0 // not known
	}
	if emu0 >= 0 && emu1 >= 0 {
		fig.PushemuCPUPer10kPush = per10k(emu0, emu1)
	}
	if !measure && fig.Undelivered > 0 {
		// No figure shows it, and the pushes still to come would be
		// counted in the next phase's.
		return nil, fmt.Errorf("%d of %d events not fully delivered, no push for 10s; %s", fig.Undelivered, published, b.workerLogs())
	}
	return fig, nil
}

// beforePublish, when set (by tests), is called before the j-th event of
// the phase name is published.
var beforePublish func(name string, j int64)

// stallLimit is how long the max phase waits for a push while its window
// is full before it gives up.
const stallLimit = 30 * time.Second

// takeRoom waits until the window has room for another event. It gives up
// when ctx ends, when the emulators can no longer be followed, or when no
// push has arrived for stallLimit (since the phase started) with the
// window full.
func (b *bench) takeRoom(ctx context.Context, window chan struct{}, start time.Time) error {
	select {
	case window <- struct{}{}:
		return nil
	default:
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case window <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := b.s.emu.err(); err != nil {
				return err
			}
			if err := b.workersGone(); err != nil {
				return err
			}
			last := time.Unix(0, max(b.s.tracker.lastPush.Load(), start.UnixNano()))
			if time.Since(last) > stallLimit {
				return fmt.Errorf("no push for %s with %d events outstanding; %s", stallLimit, len(window), b.workerLogs())
			}
		}
	}
}

// workersGone returns an error if one of the workers pushbench started has
// exited: its pushes stop, and its figures can no longer be read.
func (b *bench) workersGone() error {
	for _, w := range b.workers {
		if err := w.gone(); err != nil {
			return err
		}
	}
	return nil
}

// workerLogs returns the end of each started worker's log, which goes away
// with the working directory, or where to look for attached ones'.
func (b *bench) workerLogs() string {
	if len(b.workers) == 0 {
		return "see the workers' logs"
	}
	var s strings.Builder
	for i, w := range b.workers {
		if i > 0 {
			s.WriteString("\n")
		}
		fmt.Fprintf(&s, "pushsyncd worker %d's log ends:\n%s", w.n, logTail(w.logPath))
	}
	return s.String()
}

// usage reads the workers' usage so far.
func (b *bench) usage() (usage, error) {
	if b.remote != nil {
		return b.remote.usage()
	}
	return usageOf(b.pids...)
}

// pushemuCPU is the CPU time of the pushemu the emulators run in, or -1
// when they run in pushbench or pushemu's time cannot be read.
func (b *bench) pushemuCPU() time.Duration {
	if b.s.emu.pid == os.Getpid() {
		return -1
	}
	return cpuTimeOrNone(b.s.emu.pid)
}

// profile saves a CPU profile of the first worker for d.
func (b *bench) profile(d time.Duration) {
	get := func(path, file string) {
		res, err := http.Get("http://" + b.ops + path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pushbench: profile:", err)
			return
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err == nil && res.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", res.Status, data)
		}
		if err == nil {
			err = os.WriteFile(file, data, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "pushbench: profile:", err)
		}
	}
	get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), b.o.cpuProfile)
	// Allocations since the worker started, which the max phase dominates.
	get("/debug/pprof/allocs", strings.TrimSuffix(b.o.cpuProfile, filepath.Ext(b.o.cpuProfile))+".allocs"+filepath.Ext(b.o.cpuProfile))
}

// findPushsyncd returns the pushsyncd binary to run.
// startCPUProfile profiles this process into path, if set, until stop.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func findPushsyncd(flagValue, self string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	sibling := filepath.Join(filepath.Dir(self), "pushsyncd")
	if _, err := os.Stat(sibling); err == nil {
		return sibling, nil
	}
	if p, err := exec.LookPath("pushsyncd"); err == nil {
		return p, nil
	}
	return "", errors.New("no pushsyncd binary next to pushbench or on PATH; build both with: go build -o bin/ ./cmd/...  (or pass -pushsyncd)")
}

// commandLine is pushbench's command line with args, quoted where a shell
// would need it, with the values of secret settings given to -worker-env
// hidden.
func commandLine(args []string) string {
	var b strings.Builder
	b.WriteString("pushbench")
	for i, a := range args {
		if i > 0 && (args[i-1] == "-worker-env" || args[i-1] == "--worker-env") {
			a = hideSecret(a)
		} else if name, v, ok := strings.Cut(a, "="); ok && (name == "-worker-env" || name == "--worker-env") {
			a = name + "=" + hideSecret(v)
		}
		b.WriteByte(' ')
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`;&|<>()*?[]#~") {
			a = strconv.Quote(a)
		}
		b.WriteString(a)
	}
	return b.String()
}

// runEnv returns the variables of env that change how pushsyncd and the
// Go runtimes of the run work (GODEBUG has a field of its own).
func runEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PUSHSYNC_") || name == "GOGC" || name == "GOMEMLIMIT" || name == "GOMAXPROCS" {
			out = append(out, hideSecret(kv))
		}
	}
	slices.Sort(out)
	return out
}

// hideSecret hides the value of NAME=VALUE if NAME is a secret setting's
// (a password, a token, a key), which a report must not carry.
func hideSecret(kv string) string {
	name, _, ok := strings.Cut(kv, "=")
	for _, s := range []string{"PASSWORD", "TOKEN", "MASTER_KEY", "SECRET_ACCESS_KEY"} {
		if ok && strings.HasSuffix(name, s) {
			return name + "=(hidden)"
		}
	}
	return kv
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func mb(b int64) float64 { return float64(b*10/(1<<20)) / 10 }
