// Package deploycheck checks the files under deploy/ for syntax and for
// agreement with the code: YAML parses, the dashboard's queries name real
// metrics, every PUSHSYNC_* variable is a setting, the Go runtime settings
// are kept (the scheduler monitor's GODEBUG), and the Kubernetes
// configuration loads. It runs what this machine can: systemd-analyze
// verify on the units, and a NATS cluster from the NATS configuration with
// pushsyncd on the Kubernetes ConfigMap's (run_test.go); no container, unit
// under systemd or manifest.
package deploycheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pushsync/pushsync/config"
)

const root = "../.."

var deployDir = filepath.Join(root, "deploy")

// deployFiles returns the files under deploy/ whose names end in one of exts
// (all files when exts is empty).
func deployFiles(t *testing.T, exts ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if len(exts) == 0 {
			out = append(out, p)
			return nil
		}
		for _, e := range exts {
			if strings.HasSuffix(p, e) {
				out = append(out, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

func TestYAMLParses(t *testing.T) {
	files := deployFiles(t, ".yaml", ".yml")
	if len(files) < 5 {
		t.Fatalf("only %d YAML files under deploy/: %v", len(files), files)
	}
	for _, f := range files {
		if len(yamlDocs(t, f)) == 0 {
			t.Errorf("%s: no YAML documents", f)
		}
	}
}

func TestComposeServices(t *testing.T) {
	docs := yamlDocs(t, filepath.Join(deployDir, "compose", "compose.yaml"))
	services, _ := docs[0]["services"].(map[string]any)
	for _, name := range []string{"nats-1", "nats-2", "nats-3", "redis", "pushemu"} {
		if services[name] == nil {
			t.Errorf("compose: no service %s", name)
		}
	}
	for _, role := range []string{"api", "worker"} {
		svc, _ := services[role].(map[string]any)
		if svc == nil {
			t.Errorf("compose: no service %s", role)
			continue
		}
		cmd, _ := svc["command"].([]any)
		if len(cmd) == 0 || cmd[len(cmd)-1] != role {
			t.Errorf("compose: service %s: command %v does not end with role %q", role, cmd, role)
		}
		env, _ := svc["environment"].(map[string]any)
		for _, k := range []string{"PUSHSYNC_NATS_URL", "PUSHSYNC_REDIS_ADDRS", "PUSHSYNC_SECRETS_MASTER_KEY_FILE"} {
			if env[k] == nil {
				t.Errorf("compose: service %s: %s not set", role, k)
			}
		}
	}
}

// TestKubernetes checks each Deployment's role argument and that the
// ConfigMap's pushsyncd.yaml loads with config.Parse, with the secret files
// it names stood in by temporary files.
func TestKubernetes(t *testing.T) {
	kinds := map[string]int{}
	var cfgYAML string
	for _, f := range deployFiles(t, ".yaml") {
		if !strings.Contains(f, "kubernetes") {
			continue
		}
		for _, doc := range yamlDocs(t, f) {
			kind, _ := doc["kind"].(string)
			kinds[kind]++
			meta, _ := doc["metadata"].(map[string]any)
			name, _ := meta["name"].(string)
			switch kind {
			case "ConfigMap":
				data, _ := doc["data"].(map[string]any)
				cfgYAML, _ = data["pushsyncd.yaml"].(string)
			case "Deployment":
				spec, _ := doc["spec"].(map[string]any)
				tmpl, _ := spec["template"].(map[string]any)
				pspec, _ := tmpl["spec"].(map[string]any)
				ctrs, _ := pspec["containers"].([]any)
				if len(ctrs) != 1 {
					t.Fatalf("%s: %d containers", name, len(ctrs))
				}
				if v, ok := pspec["enableServiceLinks"].(bool); !ok || v {
					t.Errorf("%s: the pod spec does not set enableServiceLinks: false", name)
				}
				// /readyz gives its checks 2 s (cmd/internal/app); a
				// shorter probe timeout hides why a pod is not ready.
				probe, _ := ctrs[0].(map[string]any)["readinessProbe"].(map[string]any)
				if timeout, _ := probe["timeoutSeconds"].(int); timeout <= 2 {
					t.Errorf("%s: readinessProbe timeoutSeconds %v, want more than the 2s /readyz gives its checks", name, probe["timeoutSeconds"])
				}
				args, _ := ctrs[0].(map[string]any)["args"].([]any)
				role := strings.TrimPrefix(name, "pushsync-")
				if len(args) == 0 || args[len(args)-1] != role {
					t.Errorf("%s: args %v do not end with role %q", name, args, role)
				}
			}
		}
	}
	for kind, n := range map[string]int{"Deployment": 2, "Service": 1, "PodDisruptionBudget": 2, "HorizontalPodAutoscaler": 1, "ConfigMap": 1} {
		if kinds[kind] != n {
			t.Errorf("kubernetes: %d %s, want %d", kinds[kind], kind, n)
		}
	}
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "master_key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "developer_secret"), []byte("0123456789abcdef0123456789\n"), 0o600))
	data := strings.ReplaceAll(cfgYAML, "/var/run/secrets/pushsync/", dir+"/")
	for _, role := range []string{"api", "worker"} {
		cfg, err := config.Parse([]byte(data), []string{"PUSHSYNC_ROLE=" + role}, "")
		if err != nil {
			t.Errorf("kubernetes ConfigMap pushsyncd.yaml, role %s: %v", role, err)
			continue
		}
		if cfg.NATS.Replicas != 3 {
			t.Errorf("kubernetes ConfigMap: nats.replicas = %d, want 3", cfg.NATS.Replicas)
		}
	}
}

// TestKubernetesServiceLinks checks that the variables Kubernetes gives a
// pod for each Service under deploy/ (when a pod spec leaves service links
// on) do not stop pushsyncd from starting.
func TestKubernetesServiceLinks(t *testing.T) {
	services := 0
	for _, f := range deployFiles(t, ".yaml") {
		if !strings.Contains(f, "kubernetes") {
			continue
		}
		for _, doc := range yamlDocs(t, f) {
			if doc["kind"] != "Service" {
				continue
			}
			services++
			meta, _ := doc["metadata"].(map[string]any)
			name, _ := meta["name"].(string)
			spec, _ := doc["spec"].(map[string]any)
			ports, _ := spec["ports"].([]any)
			env := serviceLinks(name, "10.0.0.12", ports)
			if len(env) < 5 {
				t.Fatalf("%s: service links %q", name, env)
			}
			if _, err := config.Parse(nil, env, ""); err != nil {
				t.Errorf("Service %s: its service-link variables stop pushsyncd:\n%v", name, err)
			}
		}
	}
	if services == 0 {
		t.Fatal("no Service under deploy/kubernetes")
	}
}

// serviceLinks returns the variables the kubelet gives a pod for a Service
// with the given cluster IP and ports, as its envvars.FromServices does.
func serviceLinks(service, ip string, ports []any) []string {
	prefix := strings.ToUpper(strings.ReplaceAll(service, "-", "_"))
	env := []string{prefix + "_SERVICE_HOST=" + ip}
	for i, p := range ports {
		port, _ := p.(map[string]any)
		num := fmt.Sprint(port["port"])
		proto, _ := port["protocol"].(string)
		if proto == "" {
			proto = "TCP"
		}
		url := strings.ToLower(proto) + "://" + net.JoinHostPort(ip, num)
		if i == 0 {
			env = append(env, prefix+"_SERVICE_PORT="+num, prefix+"_PORT="+url)
		}
		if n, _ := port["name"].(string); n != "" {
			env = append(env, prefix+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(n, "-", "_"))+"="+num)
		}
		pp := prefix + "_PORT_" + num + "_" + strings.ToUpper(proto)
		env = append(env, pp+"="+url, pp+"_PROTO="+strings.ToLower(proto), pp+"_PORT="+num, pp+"_ADDR="+ip)
	}
	return env
}

// TestSystemdUnits checks the role argument and that systemd waits longer
// than the daemon's own shutdown takes.
func TestSystemdUnits(t *testing.T) {
	def := config.Default()
	need := def.HTTP.ShutdownTimeout.Std() + def.Dispatcher.SendTimeout.Std()
	for _, role := range []string{"api", "worker"} {
		p := filepath.Join(deployDir, "systemd", "pushsyncd-"+role+".service")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(data)
		want := "ExecStart=/usr/local/bin/pushsyncd -config /etc/pushsync/pushsyncd.yaml " + role + "\n"
		if !strings.Contains(unit, want) {
			t.Errorf("%s: no %q", p, want)
		}
		m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Errorf("%s: no TimeoutStopSec", p)
			continue
		}
		if d, err := time.ParseDuration(m[1]); err != nil || d <= need {
			t.Errorf("%s: TimeoutStopSec=%s, want a duration above %v", p, m[1], need)
		}
		for _, k := range []string{"User=", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "LoadCredential=master_key:", "Environment=GODEBUG=" + sysmonAwake + "\n"} {
			if !strings.Contains(unit, k) {
				t.Errorf("%s: no %s", p, k)
			}
		}
	}
}

// sysmonAwake is the GODEBUG setting that keeps the Go scheduler's
// monitor out of its deep sleep (docs/deploy.md, "Runtime settings").
const sysmonAwake = "schedtrace=2147483647"

// The image sets the monitor setting for every container of it, and no
// file under deploy/ that sets GODEBUG itself drops it.
// TestDockerignore: the image's build context is the repository root, and
// what git does not track (master keys, the compose secrets, binaries)
// must stay out of it and out of the builder's cache.
func TestDockerignore(t *testing.T) {
	read := func(name string) []string {
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	ignored := read(".dockerignore")
	for _, l := range append(read(".gitignore"), ".git") {
		// .gitignore's "dir/" matches at any depth; .dockerignore's only
		// at the root, unless it starts with "**/".
		if !slices.Contains(ignored, l) && !slices.Contains(ignored, "**/"+l) {
			t.Errorf(".dockerignore leaves %q, which git does not track, in the image's build context", l)
		}
	}
}

func TestRuntimeSettings(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "container", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^ENV GODEBUG=` + sysmonAwake + `$`).Match(data) {
		t.Errorf("the Dockerfile does not set GODEBUG=%s", sysmonAwake)
	}
	// GODEBUG=v (Dockerfile, unit, .env), GODEBUG: v (compose) or
	// {name: GODEBUG, value: v} (Kubernetes).
	re := regexp.MustCompile(`GODEBUG["']?\s*(?:=|:|,\s*value:)\s*["']?([^\s"'}]*)`)
	for _, f := range deployFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(data, -1) {
			if !slices.Contains(strings.Split(string(m[1]), ","), sysmonAwake) {
				t.Errorf("%s sets GODEBUG to %q, without %s", f, m[1], sysmonAwake)
			}
		}
	}
}

// knownMetrics returns the metric names README.md mentions, and separately
// those registered in the non-test Go source but absent from README.md.
func knownMetrics(t *testing.T) (readme, sourceOnly map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme = map[string]bool{}
	for _, m := range regexp.MustCompile("`(pushsync_[a-z0-9_]+)").FindAllStringSubmatch(string(data), -1) {
		readme[m[1]] = true
	}
	sourceOnly = map[string]bool{}
	for m := range sourceMetrics(t) {
		if !readme[m] {
			sourceOnly[m] = true
		}
	}
	return readme, sourceOnly
}

func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "grafana", "pushsync-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		SchemaVersion int `json:"schemaVersion"`
		Panels        []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.SchemaVersion < 36 || len(dash.Panels) == 0 {
		t.Fatalf("schemaVersion %d, %d panels", dash.SchemaVersion, len(dash.Panels))
	}
	readme, sourceOnly := knownMetrics(t)
	metric := regexp.MustCompile(`pushsync_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no targets", p.Title)
		}
		for _, tg := range p.Targets {
			names := metric.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: expr %q names no pushsync metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b := strings.TrimSuffix(n, suf); b != n && readme[b] {
						base = b
					}
				}
				switch {
				case readme[base]:
				case sourceOnly[base]:
					// Registered by the code but missing from README.md's list.
					t.Logf("panel %q: %s is registered in the code but not listed in README.md", p.Title, base)
				default:
					t.Errorf("panel %q: %s is not a pushsync metric", p.Title, n)
				}
			}
		}
	}
}

// plausibleValue returns a value of the right shape for the setting the
// variable names, so that only an unknown name can fail.
func plausibleValue(name string) string {
	has := func(sufs ...string) bool {
		for _, s := range sufs {
			if strings.HasSuffix(name, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("_TIMEOUT", "_WAIT", "_TTL", "_AGE", "_WINDOW", "_DELAY", "_INTERVAL", "_SKEW", "_RETRY_BUDGET"):
		return "30s"
	case has("_ADDRS", "_REGIONS", "_ORIGINS"):
		return "a:6379,b:6379"
	case has("_REPLICAS", "_DB", "_SIZE", "_DELIVER", "_PENDING", "_WORKERS", "_SENDS", "_BYTES", "_DEVICES", "_DEVICE_BUDGET"):
		return "1"
	case has("_ENABLED"):
		return "true"
	case has("_LEVEL"):
		return "info"
	}
	return "x"
}

func TestEnvVariablesAreSettings(t *testing.T) {
	def := config.Default()
	notVars := map[string]bool{def.NATS.Stream: true, def.NATS.DeadLetterStream: true} // stream names
	re := regexp.MustCompile(`PUSHSYNC_[A-Z0-9_]*[A-Z0-9]`)
	seen := map[string][]string{}
	for _, f := range deployFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range re.FindAllString(string(data), -1) {
			if !notVars[n] {
				seen[n] = append(seen[n], f)
			}
		}
	}
	if len(seen) < 5 {
		t.Fatalf("only %d PUSHSYNC_* variables under deploy/", len(seen))
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		_, err := config.Parse(nil, []string{n + "=" + plausibleValue(n)}, "")
		if err != nil && strings.Contains(err.Error(), "unknown variable") {
			t.Errorf("%s (in %v): %v", n, seen[n], err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
