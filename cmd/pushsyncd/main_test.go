package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
	"github.com/pushsync/pushsync/sync/store"
)

// TestMain lets the tests run this binary as pushsyncd itself.
func TestMain(m *testing.M) {
	if os.Getenv("PUSHSYNC_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestProcessDeliversThenStopsCleanlyOnSIGTERM(t *testing.T) {
	ns := testenv.StartNATS(t)
	rdb, prefix := testenv.Redis(t)
	_, js := ns.Connect(t)
	emu := fcmtest.NewServer()
	defer emu.Close()
	sa, err := emu.AddServiceAccount("proc-project")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fcm-ca.pem"), emu.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	cfgText := fmt.Sprintf("redis: {addrs: [%q], key_prefix: %q}\nnats: {url: %q}\nhttp: {listen: %q}\nfcm: {endpoint: %q, root_ca_file: fcm-ca.pem}\nsecrets: {master_key_file: master.key}\n",
		testenv.RedisAddr(), prefix, ns.URL, httpAddr, emu.Endpoint())
	if err := os.WriteFile(filepath.Join(dir, "master.key"), []byte(masterKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "pushsyncd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	const pool, identity = "us-east-1:0f1e2d3c", "us-east-1:a11ce0"
	box, err := secretbox.New(mustDecode(t, masterKey))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: box})
	if _, err := reg.PutApp(ctx, registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "proc-project", ServiceAccount: string(sa)}}); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetPoolPush(ctx, pool, registry.PoolPush{Apps: map[registry.Platform]string{registry.GCM: "android"}}); err != nil {
		t.Fatal(err)
	}
	dev, _, err := reg.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-proc-registration-token")
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Subscribe(ctx, pool, identity, "settings", dev.ID); err != nil {
		t.Fatal(err)
	}

	var stderr testenv.LogBuffer
	cmd := exec.Command(os.Args[0], "-config", cfgPath)
	cmd.Env = append(os.Environ(), "PUSHSYNC_TEST_RUN_MAIN=1")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushsyncd never became ready; its log:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	pub, err := event.NewPublisher(js, event.PublisherOptions{Stream: config.Default().NATS.Stream, SubjectPrefix: config.Default().NATS.SubjectPrefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, &event.DatasetChanged{IdentityPoolID: pool, IdentityID: identity, DatasetName: "settings", SyncCount: 3, ChangedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := emu.WaitForPushes(wctx, 1); err != nil {
		t.Fatalf("no push arrived: %v\n%s", err, stderr.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("pushsyncd exited with %v after SIGTERM; log:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("pushsyncd did not exit after SIGTERM; log:\n%s", stderr.String())
	}
	log := stderr.String()
	for _, want := range []string{`"message":"consuming events"`, `"message":"stopping: finishing in-flight work"`, `"message":"stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	// The message was acked before exit.
	cons, err := js.Consumer(ctx, config.Default().NATS.Stream, config.Default().Dispatcher.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream != 1 {
		t.Fatalf("consumer after exit: ackPending=%d pending=%d ackFloor=%d", info.NumAckPending, info.NumPending, info.AckFloor.Stream)
	}
}

const masterKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func mustDecode(t *testing.T, b64 string) []byte {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUsageAndConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("dispatcher:\n  ack_wiat: 30s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	typo := "pushsyncd: config: " + bad + ":2: dispatcher.ack_wiat: unknown key; did you mean dispatcher.ack_wait?\n"
	tests := []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"-config", bad}, nil, 1, typo},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, nil, 1, "missing.yaml"},
		{nil, []string{"PUSHSYNC_DISPATCHER_ACKWAIT=1s"}, 1, "PUSHSYNC_DISPATCHER_ACKWAIT"},
		{nil, []string{"PUSHSYNC_CONFIG=" + bad}, 1, typo},
		{[]string{"worker", "extra"}, nil, 2, "usage: pushsyncd"},
		{[]string{"-nope"}, nil, 2, "flag provided but not defined"},
		{[]string{"-h"}, nil, 0, "usage: pushsyncd"},
		{[]string{"both"}, nil, 1, "role"},
		{[]string{"api"}, nil, 1, "secrets.master_key is required for role api"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		code := run(tt.args, tt.env, &stderr)
		if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("pushsyncd %v (env %v): exit %d, stderr %q; want exit %d mentioning %q", tt.args, tt.env, code, stderr.String(), tt.code, tt.want)
		}
	}
}

// A second SIGTERM during a long drain ends the process at once, as an
// operator who sends it means.
func TestSecondSignalEndsTheDrainAtOnce(t *testing.T) {
	ns := testenv.StartNATS(t)
	_, prefix := testenv.Redis(t)
	dir := t.TempDir()
	httpAddr, apiAddr := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "pushsyncd.yaml")
	cfgText := fmt.Sprintf("role: api\nredis: {addrs: [%q], key_prefix: %q}\nnats: {url: %q}\nhttp: {listen: %q, shutdown_timeout: 60s}\napi: {listen: %q}\nsecrets: {master_key: %q}\n",
		testenv.RedisAddr(), prefix, ns.URL, httpAddr, apiAddr, masterKey)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfgPath, httpAddr)
	// A request still arriving holds the drain open for a minute.
	testenv.HoldRequest(t, apiAddr)
	time.Sleep(100 * time.Millisecond)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), "stopping: finishing in-flight work") {
		if time.Now().After(deadline) {
			t.Fatalf("no drain began; log:\n%s", d.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case s := <-d.done:
		t.Fatalf("pushsyncd exited (%v) during the drain; log:\n%s", s, d.log.String())
	default:
	}
	// Sent again until it lands: on a loaded machine the graceful stop may
	// take a moment to give the signal back to its default action.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		select {
		case s := <-d.done:
			if ws, ok := s.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
				t.Errorf("pushsyncd ended with %v, want killed by SIGTERM", s)
			}
			return
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushsyncd still draining 5s after a second SIGTERM; log:\n%s", d.log.String())
		}
	}
}

// TestAdoptScansAgain: once a process has adopted into the sweep indexes
// what a version without them left, and recorded that, a restart does not
// scan again; the outbox marker and the device-removal note that a process
// of that version went on writing, with no note in the indexes, are
// adopted by pushsyncd adopt, which scans although that was recorded.
func TestAdoptScansAgain(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	const pool, identity = "us-east-1:0f1e2d3c", "us-east-1:a11ce0"
	st := store.New(rdb, store.Options{KeyPrefix: prefix})
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix})
	if _, err := st.AdoptUnindexed(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AdoptUnindexedRemovals(ctx, false); err != nil {
		t.Fatal(err)
	}

	// A process of the earlier version changes a dataset and removes a
	// device, noting neither.
	if _, _, err := st.UpdateRecords(ctx, store.Update{IdentityPoolID: pool, IdentityID: identity, DatasetName: "settings", DeviceID: "dev", ModifiedBy: "dev",
		Patches: []store.Patch{{Op: store.OpReplace, Key: "k", Value: "v"}}}); err != nil {
		t.Fatal(err)
	}
	dev, _, err := reg.RegisterDevice(ctx, pool, identity, registry.GCM, "fcm-adopt-registration-token")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.RemoveDevice(ctx, pool, identity, dev.ID, event.ReasonRemovedByOperator); err != nil {
		t.Fatal(err)
	}
	indexed := func(kind string) []string {
		t.Helper()
		keys, err := rdb.Keys(ctx, prefix+":{sweep:"+kind+":*}").Result()
		if err != nil {
			t.Fatal(err)
		}
		var in []string
		for _, k := range keys {
			in = append(in, rdb.ZRange(ctx, k, 0, -1).Val()...)
		}
		return in
	}
	for _, kind := range []string{"outbox", "removed"} {
		keys, err := rdb.Keys(ctx, prefix+":{sweep:"+kind+":*}").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("%s sweep index keys %q (%v), want the identity's one", kind, keys, err)
		}
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if a, err := st.AdoptUnindexed(ctx, false); err != nil || !a.Skipped {
		t.Fatalf("the outbox adoption of a restart: %+v, %v; want it skipped", a, err)
	}
	if a, err := reg.AdoptUnindexedRemovals(ctx, false); err != nil || !a.Skipped {
		t.Fatalf("the removals adoption of a restart: %+v, %v; want it skipped", a, err)
	}

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pushsyncd.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("redis: {addrs: [%q], key_prefix: %q}\n", testenv.RedisAddr(), prefix)), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr testenv.LogBuffer
	if code := run([]string{"-config", cfgPath, "adopt"}, nil, &stderr); code != 0 {
		t.Fatalf("pushsyncd adopt exited %d; its log:\n%s", code, stderr.String())
	}
	for _, kind := range []string{"outbox", "removed"} {
		if in, want := indexed(kind), pool+"/"+identity; len(in) != 1 || in[0] != want {
			t.Errorf("the %s sweep index holds %q after pushsyncd adopt, want %q", kind, in, want)
		}
	}
	if l := stderr.Lines(`"adopted":1,`); len(l) != 2 {
		t.Errorf("pushsyncd adopt logged %d adoptions of one identity, want 2 (outbox, removals):\n%s", len(l), stderr.String())
	}
}
