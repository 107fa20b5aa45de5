package emufeed

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
)

// TestFollowerThatFallsBehindIsCutOff publishes while a follower reads
// nothing: the emulators must not wait for it, and once it reads it must
// learn that it missed pushes rather than see a feed with holes in it.
func TestFollowerThatFallsBehindIsCutOff(t *testing.T) {
	f := &Feed{MaxBacklog: 64 << 10}
	srv := httptest.NewServer(f)
	defer srv.Close()

	following, paused := make(chan struct{}), make(chan struct{})
	var n int
	done := make(chan error, 1)
	go func() {
		done <- Follow(context.Background(), srv.URL+"/pushes", func() { close(following) }, func(l *Line) error {
			if n++; n == 1 {
				<-paused // stop reading after the first line
			}
			return nil
		})
	}()
	<-following
	payload := []byte(`{"aps":{"content-available":1},"data":{"identityId":"us-east-1:` + strings.Repeat("0", 200) + `"}}`)
	start := time.Now()
	const pushes = 100_000 // ~35 MB of lines: more than the socket buffers and the backlog hold
	for i := range pushes {
		if i%2 == 0 {
			f.APNs(apnstest.Push{Environment: apnstest.EnvironmentProduction, DeviceToken: "aa", Topic: "t", Payload: payload})
		} else {
			f.FCM(fcmtest.Push{ProjectID: "p", Token: "tok", Data: map[string]string{"identityId": strings.Repeat("1", 200)}})
		}
	}
	t.Logf("%d pushes published in %s with a stalled follower", pushes, time.Since(start))
	close(paused)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "pushes or more were not sent") {
			t.Fatalf("Follow = %v, want the feed's error that pushes were not sent", err)
		}
		if n < 2 || n >= pushes {
			t.Errorf("the follower read %d lines before the error; want some, not all %d", n, pushes)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the follower was not cut off")
	}
	f.mu.Lock()
	left := len(f.followers)
	f.mu.Unlock()
	if left != 0 {
		t.Errorf("%d followers still registered", left)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "running pushemu") {
		t.Errorf("no manifest: %v", err)
	}
	m := Manifest{APNs: "https://a", APNsSandbox: "https://b", FCM: "https://c", FCMEndpoint: "https://c/v1", Feed: "http://d/pushes",
		APNsKeyID: "K", APNsTeamID: "T", FCMProjectID: "P", PID: 42}
	if err := m.Write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(dir)
	if err != nil || *got != m {
		t.Fatalf("read %+v, %v; wrote %+v", got, err, m)
	}
	m.FCMEndpoint = ""
	if err := m.Write(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("incomplete manifest: %v", err)
	}
}
