//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/store"
)

// TestChangeCommittedBeforeACrashIsPublished kills pushsyncd with SIGKILL
// after UpdateRecords commits to Redis and before it publishes the event,
// then starts it again and checks that the change still becomes an event
// and a push.
func TestChangeCommittedBeforeACrashIsPublished(t *testing.T) {
	ns := testenv.StartNATS(t)
	rdb, prefix := testenv.Redis(t)
	_, js := ns.Connect(t)
	emu := fcmtest.NewServer()
	defer emu.Close()
	sa, err := emu.AddServiceAccount("crash-project")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fcm-ca.pem"), emu.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, apiAddr := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "pushsyncd.yaml")
	cfgText := fmt.Sprintf(`role: all
redis: {addrs: [%q], key_prefix: %q}
nats: {url: %q}
http: {listen: %q}
api: {listen: %q, developer_access_key_id: AKIAPUSHSYNCCRASH01, developer_secret_access_key: crash-test-developer-secret}
fcm: {endpoint: %q, root_ca_file: fcm-ca.pem}
secrets: {master_key: %q}
`, testenv.RedisAddr(), prefix, ns.URL, httpAddr, apiAddr, emu.Endpoint(), masterKey)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	const pool, identity = "us-east-1:0f1e2d3c", "us-east-1:a11ce0"
	box, _ := secretbox.New(mustDecode(t, masterKey))
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: box})
	if _, err := reg.PutApp(ctx, registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "crash-project", ServiceAccount: string(sa)}}); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetPoolPush(ctx, pool, registry.PoolPush{Apps: map[registry.Platform]string{registry.GCM: "android"}}); err != nil {
		t.Fatal(err)
	}
	device := func(token string) string {
		d, _, err := reg.RegisterDevice(ctx, pool, identity, registry.GCM, token)
		if err != nil {
			t.Fatal(err)
		}
		if err := reg.Subscribe(ctx, pool, identity, "settings", d.ID); err != nil {
			t.Fatal(err)
		}
		return d.ID
	}
	writer := device("fcm-writer-registration-token")
	device("fcm-reader-registration-token")
	creds, err := reg.IssueCredential(ctx, pool, identity, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// First run: dies right after the commit.
	first := startDaemon(t, cfgPath, httpAddr, "PUSHSYNC_TEST_KILL_AFTER_COMMIT=1")
	sync := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + apiAddr), Region: aws.String("us-east-1"), MaxRetries: aws.Int(0),
		Credentials: credentials.NewStaticCredentials(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
	})))
	list, err := sync.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(identity), DatasetName: aws.String("settings")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sync.UpdateRecords(&cognitosync.UpdateRecordsInput{
		IdentityPoolId: aws.String(pool), IdentityId: aws.String(identity), DatasetName: aws.String("settings"),
		DeviceId: aws.String(writer), SyncSessionToken: list.SyncSessionToken,
		RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("theme"), Value: aws.String("dark"), SyncCount: aws.Int64(0)}},
	})
	if err == nil {
		t.Fatal("UpdateRecords answered; the process should have died before answering")
	}
	if state := first.wait(t); state.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("first run ended with %v, want SIGKILL", state)
	}

	// The change is committed and marked, and no event exists yet.
	st := store.New(rdb, store.Options{KeyPrefix: prefix})
	page, err := st.ListRecords(ctx, pool, identity, "settings", store.ListOptions{})
	if err != nil || page.DatasetSyncCount != 1 || len(page.Records) != 1 || *page.Records[0].Value != "dark" {
		t.Fatalf("after the crash the store holds %+v (%v)", page, err)
	}
	pending, err := st.PendingChanges(ctx, pool, identity)
	if err != nil || len(pending) != 1 || pending[0].SyncCount != 1 || pending[0].OriginDeviceID != writer {
		t.Fatalf("pending changes after the crash: %+v %v", pending, err)
	}
	stream, err := js.Stream(ctx, config.Default().NATS.Stream)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatal(err)
	}
	if err == nil {
		if info, _ := stream.Info(ctx); info.State.Msgs != 0 {
			t.Fatalf("an event was published before the crash (%d messages)", info.State.Msgs)
		}
	}

	// Second run: the relay finds the marker and publishes; the push goes
	// to the reader, not the writer.
	second := startDaemon(t, cfgPath, httpAddr)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	pushes, err := emu.WaitForPushes(wctx, 1)
	if err != nil {
		t.Fatalf("no push after the restart: %v", err)
	}
	if pushes[0].Token != "fcm-reader-registration-token" || pushes[0].Data["syncCount"] != "1" || pushes[0].Data["datasetName"] != "settings" {
		t.Fatalf("push %+v", pushes[0])
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, _ := st.PendingChanges(ctx, pool, identity)
		if len(p) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("marker not cleared: %+v", p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	second.stop(t)
	if n := len(emu.Pushes()); n != 1 {
		t.Fatalf("%d pushes, want exactly 1 (none to the writer)", n)
	}
}

type daemon struct {
	cmd  *exec.Cmd
	done chan *os.ProcessState
	log  *testenv.LogBuffer
}

func startDaemon(t *testing.T, cfgPath, httpAddr string, env ...string) *daemon {
	t.Helper()
	d := &daemon{log: &testenv.LogBuffer{}, done: make(chan *os.ProcessState, 1)}
	d.cmd = exec.Command(os.Args[0], "-config", cfgPath)
	d.cmd.Env = append(append(os.Environ(), "PUSHSYNC_TEST_RUN_MAIN=1"), env...)
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); d.done <- d.cmd.ProcessState }()
	t.Cleanup(func() { _ = d.cmd.Process.Kill() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushsyncd never became ready; its log:\n%s", d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case s := <-d.done:
		return s
	case <-time.After(15 * time.Second):
		t.Fatalf("pushsyncd did not exit; log:\n%s", d.log.String())
	}
	return nil
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if s := d.wait(t); !s.Success() {
		t.Fatalf("pushsyncd exited with %v; log:\n%s", s, d.log.String())
	}
}
