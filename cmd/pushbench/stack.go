package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/app"
	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// dataset is the dataset every bench device subscribes to.
const dataset = "bench"

// stack is everything pushsyncd runs against: the emulators, NATS, Redis
// with the seeded registry, and the files a client of the emulators needs.
type stack struct {
	dir           string
	emu           *emulators
	natsd         *exec.Cmd // the NATS server child; nil with an outside NATS
	natsIn        io.WriteCloser
	natsURL       string
	nc            *nats.Conn
	js            jetstream.JetStream
	stream        string
	subjectPrefix string

	redisAddr string
	rdb       redis.UniversalClient
	// attached is the configuration of running workers pushbench measures
	// instead of starting its own; nil when it starts them.
	attached  *config.Config
	prefix    string
	reg       *registry.Registry
	masterKey string // base64

	pool       string
	apnsApp    string // the bench's platform apps
	fcmApp     string
	identities []string
	publishErr atomic.Value // the first failed asynchronous publish
	apnsTokens [][]string   // per identity
	fcmTokens  [][]string
	tracker    *tracker
}

type stackOptions struct {
	dir         string
	pushemuDir  string // the emulators of this pushemu; empty: in-process ones
	attach      string // the configuration file of running workers to measure
	natsURL     string // empty: a server of pushbench's own
	natsProfile string // a CPU profile of that server over the whole run
	redisAddr   string
	identities  int
	devices     int
}

func newStack(ctx context.Context, o stackOptions, progress func(done, total int64)) (*stack, error) {
	s := &stack{dir: o.dir, redisAddr: o.redisAddr}
	s.plan(o.identities, o.devices)
	var err error
	if o.pushemuDir != "" {
		s.emu, err = followPushemu(o.dir, o.pushemuDir, s.tracker.push)
	} else {
		s.emu, err = startEmulators(o.dir, s.tracker.push)
	}
	if err != nil {
		return nil, err
	}
	if o.attach != "" {
		if s.attached, err = loadAttached(o.attach, s.emu); err != nil {
			s.close()
			return nil, err
		}
		err = s.joinNATS(ctx)
	} else {
		err = s.startNATS(o.natsURL, o.natsProfile)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	if err := s.openRegistry(ctx); err != nil {
		s.close()
		return nil, err
	}
	if err := s.seed(ctx, progress); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// newJetStream makes the asynchronous publisher on s.nc.
func (s *stack) newJetStream() error {
	var err error
	s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			s.publishErr.CompareAndSwap(nil, err)
		}))
	return err
}

func (s *stack) startNATS(url, profile string) error {
	if url == "" {
		// A NATS server of its own, in a child process so that its CPU
		// time can be told apart.
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(self, "natsd", "-dir", filepath.Join(s.dir, "nats"), "-cpuprofile", profile)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("NATS server: %w", err)
		}
		s.natsd, s.natsIn = cmd, in
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			return fmt.Errorf("NATS server did not start: %w", err)
		}
		url = strings.TrimSpace(line)
	}
	s.natsURL = url
	var err error
	if s.nc, err = nats.Connect(url); err != nil {
		return fmt.Errorf("NATS %s: %w", url, err)
	}
	if err := s.newJetStream(); err != nil {
		return err
	}
	c := config.Default().NATS
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := event.EnsureStream(ctx, s.js, event.StreamConfig{
		Name: c.Stream, SubjectPrefix: c.SubjectPrefix, DeviceSubjectPrefix: c.DeviceSubjectPrefix,
		Replicas: 1, Storage: jetstream.FileStorage, MaxAge: c.MaxAge.Std(), Duplicates: c.DuplicateWindow.Std(),
	}); err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	s.stream, s.subjectPrefix = c.Stream, c.SubjectPrefix
	return nil
}

// joinNATS connects to the NATS of the attached workers and checks that
// their event stream is there.
func (s *stack) joinNATS(ctx context.Context) error {
	c := s.attached.NATS
	var err error
	if s.nc, err = app.ConnectNATS(c, zerolog.Nop()); err != nil {
		return err
	}
	s.natsURL = c.URL
	if err := s.newJetStream(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.js.Stream(ctx, c.Stream); err != nil {
		return fmt.Errorf("the workers' event stream %s on %s: %w", c.Stream, c.URL, err)
	}
	s.stream, s.subjectPrefix = c.Stream, c.SubjectPrefix
	return nil
}

// openRegistry opens the registry the workers use (a fresh key prefix in
// pushbench's Redis, or the attached workers' own) and sets up the bench's
// platform apps and identity pool in it.
func (s *stack) openRegistry(ctx context.Context) error {
	var box *secretbox.Box
	var err error
	if c := s.attached; c != nil {
		if s.rdb, err = app.NewRedis(c.Redis); err != nil {
			return err
		}
		s.prefix = c.Redis.KeyPrefix
		if key := c.Secrets.MasterKeyBytes(); key != nil {
			if box, err = secretbox.New(key); err != nil {
				return err
			}
		}
	} else {
		s.rdb = redis.NewClient(&redis.Options{Addr: s.redisAddr, PoolSize: 64})
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		if box, err = secretbox.New(key); err != nil {
			return err
		}
		s.masterKey = base64.StdEncoding.EncodeToString(key)
		s.prefix = "pushbench-" + randomHex(4)
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		if s.attached != nil {
			return fmt.Errorf("no Redis at %s (the workers' redis.addrs): %w", strings.Join(s.attached.Redis.Addrs, ","), err)
		}
		return fmt.Errorf("no Redis at %s: %w (start one with: make redis)", s.redisAddr, err)
	}
	s.reg = registry.New(s.rdb, registry.Options{KeyPrefix: s.prefix, Secrets: box})
	return s.setUpPool(ctx)
}

// setUpPool registers the bench's platform apps and routes its pool's
// pushes to them.
func (s *stack) setUpPool(ctx context.Context) error {
	authKey, err := os.ReadFile(s.emu.authKeyFile)
	if err != nil {
		return err
	}
	sa, err := os.ReadFile(s.emu.serviceAccountFile)
	if err != nil {
		return err
	}
	for _, app := range []registry.App{
		{Name: s.apnsApp, Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: apnsTopic, KeyID: s.emu.keyID, TeamID: s.emu.teamID, AuthKey: string(authKey)}},
		{Name: s.fcmApp, Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: s.emu.projectID, ServiceAccount: string(sa)}},
	} {
		if _, err := s.reg.CreateApp(ctx, app); err != nil {
			return fmt.Errorf("platform app %s: %w", app.Name, err)
		}
	}
	return s.reg.SetPoolPush(ctx, s.pool, registry.PoolPush{Apps: map[registry.Platform]string{
		registry.APNS: s.apnsApp, registry.APNSSandbox: s.apnsApp, registry.GCM: s.fcmApp,
	}})
}

// plan names n identities with m devices each, alternately APNs and FCM,
// and makes the tracker that follows their events.
// The identities, the pool and the apps are new in every run, so that
// pushes for a run cut short (still in an attached deployment's stream)
// count as strays, not as this run's, and two runs against one deployment
// do not share anything.
func (s *stack) plan(n, m int) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	run := int(b[0])<<40 | int(b[1])<<32 | int(b[2])<<24 | int(b[3])<<16 | int(b[4])<<8 | int(b[5])
	s.pool = "us-east-1:" + uuidish(0xbe7c, run)
	s.apnsApp, s.fcmApp = fmt.Sprintf("pushbench-apns-%012x", run), fmt.Sprintf("pushbench-fcm-%012x", run)
	s.identities = make([]string, n)
	s.apnsTokens = make([][]string, n)
	s.fcmTokens = make([][]string, n)
	for i := range n {
		s.identities[i] = "us-east-1:" + uuidish(i+1, run)
		s.apnsTokens[i], s.fcmTokens[i] = deviceTokens(i, m)
	}
	s.tracker = newTracker(s.identities, m)
}

// seed registers the planned identities' devices, every one subscribed to
// the bench dataset.
func (s *stack) seed(ctx context.Context, progress func(done, total int64)) error {
	return parallel(ctx, len(s.identities), 32, progress, func(ctx context.Context, i int) error {
		return registerIdentity(ctx, s.reg, s.pool, s.identities[i], s.apnsTokens[i], s.fcmTokens[i])
	})
}

// unseed removes what seed and setUpPool put into the attached workers'
// registry, and nothing else: the run's devices, its pool's push
// configuration and its apps. Each step runs whatever an earlier one did,
// so that a run that failed halfway leaves as little as it can.
func (s *stack) unseed() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error
	err := parallel(ctx, len(s.identities), 32, nil, func(ctx context.Context, i int) error {
		reg, err := s.reg.Registration(ctx, s.pool, s.identities[i])
		if err != nil {
			return err
		}
		for id := range reg.Devices {
			if _, err := s.reg.RemoveDevice(ctx, s.pool, s.identities[i], id, ""); err != nil && !errors.Is(err, registry.ErrDeviceNotFound) {
				return err
			}
		}
		return nil
	})
	errs = append(errs, err, s.reg.SetPoolPush(ctx, s.pool, registry.PoolPush{}))
	for _, name := range []string{s.apnsApp, s.fcmApp} {
		if err := s.reg.DeleteApp(ctx, name); !errors.Is(err, registry.ErrAppNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "pushbench: removing the run's devices, pool %s and apps %s and %s from the workers' registry: %v\n", s.pool, s.apnsApp, s.fcmApp, err)
	}
}

// deviceTokens returns the tokens of identity i's m devices: APNs and FCM
// alternately, distinct across identities.
func deviceTokens(i, m int) (apns, fcm []string) {
	for j := range m {
		if j%2 == 0 {
			apns = append(apns, apnsToken(i*m+j))
		} else {
			fcm = append(fcm, fcmToken(i*m+j))
		}
	}
	return apns, fcm
}

// registerIdentity registers an identity's devices and subscribes each to
// the bench dataset, as the sync API does.
func registerIdentity(ctx context.Context, reg *registry.Registry, pool, identity string, apns, fcm []string) error {
	add := func(p registry.Platform, token string) error {
		d, _, err := reg.RegisterDevice(ctx, pool, identity, p, token)
		if err != nil {
			return fmt.Errorf("register device: %w", err)
		}
		if err := reg.Subscribe(ctx, pool, identity, dataset, d.ID); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		return nil
	}
	for j := range max(len(apns), len(fcm)) {
		if j < len(apns) {
			if err := add(registry.APNS, apns[j]); err != nil {
				return err
			}
		}
		if j < len(fcm) {
			if err := add(registry.GCM, fcm[j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// parallel runs fn for 0..n-1 on workers goroutines, reporting progress,
// and returns the first error.
func parallel(ctx context.Context, n, workers int, progress func(done, total int64), fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := fn(ctx, int(i)); err != nil {
					cancel(err)
					return
				}
				if d := done.Add(1); progress != nil && d%256 == 0 {
					progress(d, int64(n))
				}
			}
		}()
	}
	wg.Wait()
	if progress != nil {
		progress(done.Load(), int64(n))
	}
	return context.Cause(ctx)
}

// publish publishes event k: the next change of identity k mod n.
//
// It publishes the message event.Publisher would, asynchronously: one
// goroutine keeps thousands of events a second going without a round
// trip each, so the instrument takes little of the machine it measures.
// Failures surface at waitPublished. Its latency starts at due, when the
// event was due on a schedule, or now when due is zero or later.
func (s *stack) publish(k int64, due time.Time) error {
	i, count := s.tracker.event(k)
	now := time.Now()
	from := now
	if !due.IsZero() && due.Before(now) {
		from = due
	}
	e := &event.DatasetChanged{
		Version: event.Version, IdentityPoolID: s.pool, IdentityID: s.identities[i], DatasetName: dataset,
		SyncCount: count, ChangedAt: now,
	}
	data, err := event.Marshal(e)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: event.Subject(s.subjectPrefix, e), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, event.MsgID(e))
	s.tracker.published(k, from)
	_, err = s.js.PublishMsgAsync(msg, jetstream.WithExpectStream(s.stream))
	return err
}

// waitPublished waits until the server has acknowledged every event
// published, and returns the first failure.
func (s *stack) waitPublished(ctx context.Context) error {
	select {
	case <-s.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%d events not acknowledged by the stream after 30s", s.js.PublishAsyncPending())
	}
	if err, ok := s.publishErr.Load().(error); ok {
		return err
	}
	return nil
}

func (s *stack) close() {
	if s.rdb != nil {
		switch {
		case s.attached != nil && s.reg != nil:
			s.unseed()
		case s.attached == nil && s.prefix != "":
			deletePrefix(context.Background(), s.rdb, s.prefix)
		}
		s.rdb.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.natsd != nil {
		s.natsIn.Close()
		_ = s.natsd.Wait()
	}
	if s.emu != nil {
		s.emu.close()
	}
}

// natsCPU is the CPU time of the NATS server child so far, or -1.
func (s *stack) natsCPU() time.Duration {
	if s.natsd == nil {
		return -1
	}
	c, err := cpuTime(s.natsd.Process.Pid)
	if err != nil {
		return -1
	}
	return c
}

// redisCPU is the CPU time Redis reports having used, or -1 (also for a
// Redis Cluster, whose nodes it does not add up).
func (s *stack) redisCPU(ctx context.Context) time.Duration {
	if _, ok := s.rdb.(*redis.ClusterClient); ok {
		return -1
	}
	info, err := s.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return -1
	}
	var sum float64
	n := 0
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			sum += f
			n++
		}
	}
	if n != 2 {
		return -1
	}
	return time.Duration(sum * float64(time.Second))
}

// runNATSChild is "pushbench natsd": a JetStream server with its store in
// -dir, which prints its client URL and runs until standard input closes.
func runNATSChild(args []string) error {
	fs := flag.NewFlagSet("pushbench natsd", flag.ContinueOnError)
	dir := fs.String("dir", "", "store directory")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the server's run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: *dir, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("not ready after 10s")
	}
	stop, err := startCPUProfile(*profile)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Println(ns.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// deletePrefix removes the bench's keys from a shared Redis.
func deletePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
}

// worker is one pushsyncd process.
type worker struct {
	n       int // its number, from 0
	cmd     *exec.Cmd
	ops     string // host:port of its health and metrics endpoints
	logPath string
	exited  chan struct{}
}

// startWorker starts a pushsyncd worker against the stack, with the
// default settings but for the addresses (and coalescing off), and waits
// until it is ready. Settings may also come from PUSHSYNC_* variables in
// the environment, which pushsyncd reads, or from env.
func (s *stack) startWorker(bin string, n int, env []string) (*worker, error) {
	w := &worker{n: n, ops: freeAddr(), logPath: filepath.Join(s.dir, fmt.Sprintf("pushsyncd-%d.log", n)), exited: make(chan struct{})}
	cfg := fmt.Sprintf(`role: worker
log: {level: info, format: json}
http: {listen: %q, shutdown_timeout: 10s}
redis: {addrs: [%q], key_prefix: %q}
nats: {url: %q}
dispatcher: {coalesce_window: 0s}
apns: {production_host: %q, sandbox_host: %q, root_ca_file: %q}
fcm: {endpoint: %q, root_ca_file: %q}
secrets: {master_key: %q}
`, w.ops, s.redisAddr, s.prefix, s.natsURL, s.emu.apnsURL, s.emu.apnsURL, s.emu.caFile, s.emu.fcmEndpoint, s.emu.caFile, s.masterKey)
	path := filepath.Join(s.dir, fmt.Sprintf("pushsyncd-%d.yaml", n))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(w.logPath)
	if err != nil {
		return nil, err
	}
	w.cmd = exec.Command(bin, "-config", path)
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	w.cmd.Env = append(os.Environ(), env...)
	if err := w.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = w.cmd.Wait(); logf.Close(); close(w.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + w.ops + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return w, nil
			}
		}
		select {
		case <-w.exited:
			return nil, fmt.Errorf("pushsyncd exited (%v) before it was ready; its log ends:\n%s", w.cmd.ProcessState, logTail(w.logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.stop()
			return nil, fmt.Errorf("pushsyncd not ready after 30s; its log ends:\n%s", logTail(w.logPath))
		}
	}
}

func (w *worker) pid() int { return w.cmd.Process.Pid }

// gone returns an error, with the end of its log, if the worker has exited.
func (w *worker) gone() error {
	select {
	case <-w.exited:
		return fmt.Errorf("pushsyncd worker %d exited (%v) during the run; its log ends:\n%s", w.n, w.cmd.ProcessState, logTail(w.logPath))
	default:
		return nil
	}
}

// logTail returns the last lines of the log at path, which goes away with
// the working directory unless -keep is given, for an error to carry.
func logTail(path string) string {
	const most = 4 << 10
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(b) > most {
		b = b[len(b)-most:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(it is empty)"
	}
	return strings.TrimRight(string(b), "\n")
}

// stop asks the worker to shut down and waits for it.
func (w *worker) stop() {
	_ = w.cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.exited:
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
	}
}

// apnsChange finds identityId and syncCount in an APNs payload as
// payload.APNs writes it, without a full JSON decode.
func apnsChange(p []byte) (identity string, syncCount int64) {
	const idKey, countKey = `"identityId":"`, `"syncCount":`
	if i := bytes.Index(p, []byte(idKey)); i >= 0 {
		rest := p[i+len(idKey):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			identity = string(rest[:j])
		}
	}
	if i := bytes.Index(p, []byte(countKey)); i >= 0 {
		rest := p[i+len(countKey):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		syncCount, _ = strconv.ParseInt(string(rest[:j]), 10, 64)
	}
	return identity, syncCount
}

func uuidish(a, b int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", a, b) }

// apnsToken is a 32-byte APNs device token in hex, distinct per n.
func apnsToken(n int) string {
	return fmt.Sprintf("%08x%056x", n, uint64(n)*0x9e3779b97f4a7c15)
}

// deviceNumber returns the n of an apnsToken(n) or an fcmToken(n): device
// n mod m of identity n/m, for m devices per identity.
func deviceNumber(token string) (int, bool) {
	var digits string
	switch {
	case len(token) == 64: // APNs
		digits = token[:8]
	case len(token) > 12 && token[11] == ':': // FCM
		digits = token[:11]
	default:
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 16, 63)
	return int(n), err == nil
}

// fcmToken is an FCM registration token of the usual length (163
// characters: an instance id, a colon, and an APA91b-prefixed body).
func fcmToken(n int) string {
	id := fmt.Sprintf("%011x", n)
	body := fmt.Sprintf("APA91b%0145x", uint64(n)*0x9e3779b97f4a7c15)
	return id[:11] + ":" + body[:151]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
