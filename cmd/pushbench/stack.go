package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
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

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// Identifiers of the bench's platform apps.
const (
	apnsTeam   = "BENCHTEAM1"
	apnsKeyID  = "BENCHKEY01"
	apnsTopic  = "com.example.pushbench"
	fcmProject = "pushbench"
	dataset    = "bench"
)

// stack is everything pushsyncd runs against: the emulators, NATS, Redis
// with the seeded registry, and the files a client of the emulators needs.
type stack struct {
	dir           string
	apns          *apnstest.Server
	fcm           *fcmtest.Server
	natsd         *exec.Cmd // the NATS server child; nil with an outside NATS
	natsIn        io.WriteCloser
	natsURL       string
	nc            *nats.Conn
	js            jetstream.JetStream
	stream        string
	subjectPrefix string

	redisAddr string
	rdb       *redis.Client
	prefix    string
	reg       *registry.Registry
	masterKey string // base64

	caFile, authKeyFile, serviceAccountFile string

	pool       string
	identities []string
	publishErr atomic.Value // the first failed asynchronous publish
	apnsTokens [][]string   // per identity
	fcmTokens  [][]string
	tracker    *tracker
}

type stackOptions struct {
	dir         string
	natsURL     string // empty: a server of pushbench's own
	natsProfile string // a CPU profile of that server over the whole run
	redisAddr   string
	identities  int
	devices     int
}

func newStack(ctx context.Context, o stackOptions, progress func(done, total int64)) (*stack, error) {
	s := &stack{dir: o.dir, redisAddr: o.redisAddr}
	var err error
	// Emulators keep nothing in memory; every push goes to the tracker.
	s.apns, err = apnstest.Start(apnstest.WithRecord(false), apnstest.WithOnPush(func(p apnstest.Push) {
		id, count := apnsChange(p.Payload)
		s.tracker.push(id, count, time.Now())
	}))
	if err != nil {
		return nil, fmt.Errorf("APNs emulator: %w", err)
	}
	s.fcm, err = fcmtest.Start(fcmtest.WithRecord(false), fcmtest.WithOnPush(func(p fcmtest.Push) {
		count, _ := strconv.ParseInt(p.Data["syncCount"], 10, 64)
		s.tracker.push(p.Data["identityId"], count, time.Now())
	}))
	if err != nil {
		s.close()
		return nil, fmt.Errorf("FCM emulator: %w", err)
	}
	if err := s.writeCredentials(); err != nil {
		s.close()
		return nil, err
	}
	if err := s.startNATS(o.natsURL, o.natsProfile); err != nil {
		s.close()
		return nil, err
	}
	if err := s.openRegistry(ctx); err != nil {
		s.close()
		return nil, err
	}
	if err := s.seed(ctx, o.identities, o.devices, progress); err != nil {
		s.close()
		return nil, err
	}
	s.tracker = newTracker(s.identities, o.devices)
	return s, nil
}

// writeCredentials makes the APNs signing key and the FCM service account
// and writes them, with the emulators' authorities, for pushsyncd and the
// ceiling program.
func (s *stack) writeCredentials() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	s.apns.AddTokenKey(apnsTeam, apnsKeyID, &key.PublicKey, apnsTopic)
	sa, err := s.fcm.AddServiceAccount(fcmProject)
	if err != nil {
		return err
	}
	s.caFile = filepath.Join(s.dir, "ca.pem")
	s.authKeyFile = filepath.Join(s.dir, "apns-authkey.p8")
	s.serviceAccountFile = filepath.Join(s.dir, "fcm-service-account.json")
	for path, data := range map[string][]byte{
		s.caFile:             append(append([]byte{}, s.apns.CACertPEM()...), s.fcm.CACertPEM()...),
		s.authKeyFile:        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		s.serviceAccountFile: sa,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
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
	if s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			s.publishErr.CompareAndSwap(nil, err)
		})); err != nil {
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

func (s *stack) openRegistry(ctx context.Context) error {
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redisAddr, PoolSize: 64})
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("no Redis at %s: %w (start one with: make redis)", s.redisAddr, err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	box, err := secretbox.New(key)
	if err != nil {
		return err
	}
	s.masterKey = base64.StdEncoding.EncodeToString(key)
	s.prefix = "pushbench-" + randomHex(4)
	s.reg = registry.New(s.rdb, registry.Options{KeyPrefix: s.prefix, Secrets: box})
	authKey, err := os.ReadFile(s.authKeyFile)
	if err != nil {
		return err
	}
	sa, err := os.ReadFile(s.serviceAccountFile)
	if err != nil {
		return err
	}
	for _, app := range []registry.App{
		{Name: "bench-ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: apnsTopic, KeyID: apnsKeyID, TeamID: apnsTeam, AuthKey: string(authKey)}},
		{Name: "bench-android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: fcmProject, ServiceAccount: string(sa)}},
	} {
		if _, err := s.reg.PutApp(ctx, app); err != nil {
			return fmt.Errorf("platform app %s: %w", app.Name, err)
		}
	}
	s.pool = "us-east-1:" + uuidish(0xbe7c, 1)
	return s.reg.SetPoolPush(ctx, s.pool, registry.PoolPush{Apps: map[registry.Platform]string{
		registry.APNS: "bench-ios", registry.APNSSandbox: "bench-ios", registry.GCM: "bench-android",
	}})
}

// seed registers n identities with m devices each, alternately APNs and
// FCM, every device subscribed to the bench dataset.
func (s *stack) seed(ctx context.Context, n, m int, progress func(done, total int64)) error {
	s.identities = make([]string, n)
	s.apnsTokens = make([][]string, n)
	s.fcmTokens = make([][]string, n)
	for i := range n {
		s.identities[i] = "us-east-1:" + uuidish(i+1, 0xbe7c)
		s.apnsTokens[i], s.fcmTokens[i] = deviceTokens(i, m)
	}
	return parallel(ctx, n, 32, progress, func(ctx context.Context, i int) error {
		return registerIdentity(ctx, s.reg, s.pool, s.identities[i], s.apnsTokens[i], s.fcmTokens[i])
	})
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
// Failures surface at waitPublished.
func (s *stack) publish(k int64) error {
	i, count := s.tracker.event(k)
	now := time.Now()
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
	s.tracker.published(k, now)
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
	if s.rdb != nil && s.prefix != "" {
		deletePrefix(context.Background(), s.rdb, s.prefix)
		s.rdb.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.natsd != nil {
		s.natsIn.Close()
		_ = s.natsd.Wait()
	}
	if s.apns != nil {
		s.apns.Close()
	}
	if s.fcm != nil {
		s.fcm.Close()
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

// redisCPU is the CPU time Redis reports having used, or -1.
func (s *stack) redisCPU(ctx context.Context) time.Duration {
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
func deletePrefix(ctx context.Context, rdb *redis.Client, prefix string) {
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
	w := &worker{ops: freeAddr(), logPath: filepath.Join(s.dir, fmt.Sprintf("pushsyncd-%d.log", n)), exited: make(chan struct{})}
	cfg := fmt.Sprintf(`role: worker
log: {level: info, format: json}
http: {listen: %q, shutdown_timeout: 10s}
redis: {addrs: [%q], key_prefix: %q}
nats: {url: %q}
dispatcher: {coalesce_window: 0s}
apns: {production_host: %q, sandbox_host: %q, root_ca_file: %q}
fcm: {endpoint: %q, root_ca_file: %q}
secrets: {master_key: %q}
`, w.ops, s.redisAddr, s.prefix, s.natsURL, s.apns.URL, s.apns.URL, s.caFile, s.fcm.Endpoint(), s.caFile, s.masterKey)
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
			return nil, fmt.Errorf("pushsyncd exited (%v); see %s", w.cmd.ProcessState, w.logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.stop()
			return nil, fmt.Errorf("pushsyncd not ready after 30s; see %s", w.logPath)
		}
	}
}

func (w *worker) pid() int { return w.cmd.Process.Pid }

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
