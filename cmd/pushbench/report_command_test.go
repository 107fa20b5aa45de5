package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/internal/testenv"
)

// TestReportSaysWhatProducedIt runs a small memory phase and reads its
// JSON: the report must carry the command line and the environment that
// reaches pushsyncd, or two reports cannot be told apart.
func TestReportSaysWhatProducedIt(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server, for the memory phase")
	}
	t.Setenv("PUSHSYNC_DISPATCHER_WORKERS", "64")
	t.Setenv("GOGC", "150")
	t.Setenv("PUSHSYNC_REDIS_PASSWORD", "redis-secret")
	jsonPath := filepath.Join(t.TempDir(), "figures.json")
	args := []string{"-phases", "memory", "-memory-devices", "400", "-worker-env", "GOMAXPROCS=1", "-worker-env", "PUSHSYNC_SECRETS_MASTER_KEY=master-secret", "-godebug", "", "-json", jsonPath}
	var out strings.Builder
	if err := run(t.Context(), args, &out, &testenv.LogBuffer{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Setup struct {
			Command string   `json:"command"`
			Env     []string `json:"env"`
		} `json:"setup"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if want := `pushbench -phases memory -memory-devices 400 -worker-env GOMAXPROCS=1 -worker-env "PUSHSYNC_SECRETS_MASTER_KEY=(hidden)" -godebug "" -json ` + jsonPath; r.Setup.Command != want {
		t.Errorf("command %q, want %q", r.Setup.Command, want)
	}
	for _, kv := range []string{"PUSHSYNC_DISPATCHER_WORKERS=64", "GOGC=150", "PUSHSYNC_REDIS_PASSWORD=(hidden)"} {
		if !slices.Contains(r.Setup.Env, kv) {
			t.Errorf("environment %q, want it to have %s", r.Setup.Env, kv)
		}
	}
	if strings.Contains(string(b)+out.String(), "-secret") {
		t.Error("a secret is in the report")
	}
	if !strings.Contains(out.String(), r.Setup.Command) {
		t.Errorf("the table does not name the command:\n%s", out.String())
	}
}
