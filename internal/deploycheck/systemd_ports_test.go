package deploycheck

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/config"
)

// unitEnv returns the Environment= assignments of a systemd unit, with %d
// (the unit's credentials directory) replaced by credDir.
func unitEnv(t *testing.T, path, credDir string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, m := range regexp.MustCompile(`(?m)^Environment=(.+)$`).FindAllStringSubmatch(string(data), -1) {
		env = append(env, strings.ReplaceAll(m[1], "%d", credDir))
	}
	return env
}

// TestSystemdUnitsShareAMachine checks that the api and worker units, both
// enabled on one machine with one pushsyncd.yaml (docs/deploy.md, "systemd"),
// listen on different ports: otherwise the second to start exits with
// "address already in use" and systemd restarts it forever.
func TestSystemdUnitsShareAMachine(t *testing.T) {
	credDir := t.TempDir()
	// The files the units' LoadCredential= lines hand over.
	must(t, os.WriteFile(filepath.Join(credDir, "master_key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(credDir, "developer_secret"), []byte("0123456789abcdef0123456789\n"), 0o600))
	used := map[string]string{} // port -> what listens on it
	listen := func(what, addr string) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%s: %q: %v", what, addr, err)
		}
		if other, ok := used[port]; ok {
			t.Errorf("%s and %s both listen on port %s", other, what, port)
		}
		used[port] = what
	}
	for _, role := range []string{"api", "worker"} {
		unit := "pushsyncd-" + role + ".service"
		env := append(unitEnv(t, filepath.Join(deployDir, "systemd", unit), credDir), "PUSHSYNC_ROLE="+role)
		// The one pushsyncd.yaml of docs/deploy.md names the developer key
		// id; its secret comes from the api unit.
		cfg, err := config.Parse([]byte("api: {developer_access_key_id: AKIAPUSHSYNCDEPLOY01}\n"), env, "")
		if err != nil {
			t.Fatalf("%s: %v", unit, err)
		}
		listen(unit+" http.listen", cfg.HTTP.Listen)
		if role == "api" {
			listen(unit+" api.listen", cfg.API.Listen)
		}
	}
}
