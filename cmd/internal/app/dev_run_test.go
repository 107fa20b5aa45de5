package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/internal/testenv"
)

// TestDevStackDeliversTheSampleChanges runs `pushsyncd dev`, the README's
// first command: its sample changes reach the emulators, one push per
// device but the one that made the change, on each of APNs production,
// APNs development and FCM, and it stops cleanly.
func TestDevStackDeliversTheSampleChanges(t *testing.T) {
	_, prefix := testenv.Redis(t)
	cfg := config.Default()
	cfg.Role = config.RoleDev
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.ShutdownTimeout = config.Duration(time.Second)
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Redis.KeyPrefix = prefix
	cfg.Dev.RedisAddr = testenv.RedisAddr()
	cfg.Dev.SampleInterval = config.Duration(200 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs, _, done := runApp(ctx, cfg)

	// The pushes of one sample change, by syncCount: the services that got
	// one.
	services := func() map[string]map[string]bool {
		got := map[string]map[string]bool{}
		for _, line := range logs.Lines(`"push received"`) {
			var e struct {
				Service   string `json:"service"`
				SyncCount any    `json:"syncCount"`
			}
			if json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			n := strings.Trim(strings.TrimSpace(jsonString(e.SyncCount)), `"`)
			if got[n] == nil {
				got[n] = map[string]bool{}
			}
			got[n][e.Service] = true
		}
		return got
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s := services()["1"]; len(s) == 3 && s["APNs production"] && s["APNs development"] && s["FCM"] {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("pushsyncd dev stopped: %v; log:\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first sample change reached %v, want APNs production, APNs development and FCM", services()["1"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := logs.Lines(`"expected_pushes":3`); len(got) == 0 {
		t.Errorf("no sample change announced with expected_pushes 3; log:\n%s", logs)
	}
	// It makes developer credentials of its own, so has none to warn of.
	if got := logs.Lines("no developer credentials"); len(got) != 0 {
		t.Errorf("the dev stack warns of missing developer credentials:\n%s", strings.Join(got, "\n"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pushsyncd dev stopped with %v", err)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
