package deploycheck

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushsync/pushsync/internal/testenv"
)

// The tests in this file run the files under deploy/ with the real
// programs: systemd's verifier on the units, the NATS server on its
// configuration, and pushsyncd on the Kubernetes ConfigMap's.

// buildPushsyncd builds cmd/pushsyncd into dir and returns its path.
func buildPushsyncd(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "pushsyncd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pushsync/pushsync/cmd/pushsyncd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/pushsyncd: %v\n%s", err, out)
	}
	return bin
}

// TestSystemdVerify runs systemd-analyze verify on the units, installed as
// docs/deploy.md says (in /etc/systemd/system, with pushsyncd in
// /usr/local/bin) under a root of the test's own that also holds systemd's
// own units. verify reports unknown keys, values it cannot parse and a
// command that is not there; it exits 0 on some of them, so any output
// fails the test.
func TestSystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Missing(t, "systemd-analyze (Debian: apt-get install systemd)")
	}
	var sysUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "sysinit.target")); err == nil {
			sysUnits = d
			break
		}
	}
	if sysUnits == "" {
		testenv.Missing(t, "systemd's units (sysinit.target; Debian: apt-get install systemd)")
	}
	root := t.TempDir()
	copyTree(t, sysUnits, filepath.Join(root, "usr", "lib", "systemd", "system"))
	unitDir := filepath.Join(root, "etc", "systemd", "system")
	binDir := filepath.Join(root, "usr", "local", "bin")
	must(t, os.MkdirAll(unitDir, 0o755))
	must(t, os.MkdirAll(binDir, 0o755))
	buildPushsyncd(t, binDir)
	args := []string{"verify", "--root=" + root}
	for _, role := range []string{"api", "worker"} {
		name := "pushsyncd-" + role + ".service"
		data, err := os.ReadFile(filepath.Join(deployDir, "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(unitDir, name), data, 0o644))
		args = append(args, filepath.Join(unitDir, name))
	}
	out, err := exec.Command(analyze, args...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify of deploy/systemd (exit: %v):\n%s", err, strings.ReplaceAll(string(out), root, ""))
	}
}

// copyTree copies the regular files and symbolic links under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		to := filepath.Join(dst, strings.TrimPrefix(p, src))
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, data, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNATSConfigRunsPushsync starts a three-member NATS cluster from
// deploy/nats/nats-server.conf, as the NATS server reads it (SERVER_NAME
// set for each member), on loopback ports and temporary stores of the
// test's own, and runs pushsyncd api and worker processes with the
// Kubernetes ConfigMap's pushsyncd.yaml against it: both become ready, the
// event stream has three current replicas and the shared consumer the
// ConfigMap's max_ack_pending, and each process stops cleanly on SIGTERM.
func TestNATSConfigRunsPushsync(t *testing.T) {
	_, prefix := testenv.Redis(t)
	const members = 3
	clientPorts, routePorts := make([]int, members), make([]int, members)
	var routes, urls []string
	for i := range members {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	for i := range members {
		name := fmt.Sprintf("nats-%d", i+1)
		t.Setenv("SERVER_NAME", name)
		o, err := server.ProcessConfigFile(filepath.Join(deployDir, "nats", "nats-server.conf"))
		if err != nil {
			t.Fatalf("deploy/nats/nats-server.conf with SERVER_NAME=%s: %v", name, err)
		}
		if o.ServerName != name || !o.JetStream || !o.SyncAlways || o.Cluster.Name == "" || len(o.Routes) != members {
			t.Fatalf("deploy/nats/nats-server.conf: server_name %q, jetstream %v, sync always %v, cluster %q, %d routes; want %s, JetStream with sync_interval: always, a cluster of %d",
				o.ServerName, o.JetStream, o.SyncAlways, o.Cluster.Name, len(o.Routes), name, members)
		}
		// The file's ports and its store are the machine's; the test's are
		// its own.
		o.Host, o.Port, o.HTTPPort = "127.0.0.1", clientPorts[i], 0
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", routePorts[i]
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		o.StoreDir = t.TempDir()
		o.NoLog, o.NoSigs = true, true
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("nats %s: %v", name, err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats %s: not ready after 10s", name)
		}
	}

	cfg := kubernetesConfig(t)
	dir := t.TempDir()
	writeSecretFiles(t, dir)
	cfgPath := filepath.Join(dir, "pushsyncd.yaml")
	must(t, os.WriteFile(cfgPath, []byte(strings.ReplaceAll(configMapYAML(t), "/var/run/secrets/pushsync/", dir+"/")), 0o600))
	bin := buildPushsyncd(t, dir)
	// The ConfigMap names the cluster's client Service, nats:4222, which
	// leads to one member; the others the client learns from it.
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"PUSHSYNC_NATS_URL=" + urls[0],
		"PUSHSYNC_REDIS_ADDRS=" + testenv.RedisAddr(),
		"PUSHSYNC_REDIS_KEY_PREFIX=" + prefix,
	}
	type proc struct {
		role, ops, log string
		cmd            *exec.Cmd
		done           chan error
	}
	var procs []*proc
	for _, role := range []string{"api", "worker"} {
		p := &proc{role: role, ops: fmt.Sprintf("127.0.0.1:%d", freePort(t)), log: filepath.Join(dir, role+".log")}
		logFile, err := os.Create(p.log)
		if err != nil {
			t.Fatal(err)
		}
		p.cmd = exec.Command(bin, "-config", cfgPath, role)
		p.cmd.Env = append(env, "PUSHSYNC_HTTP_LISTEN="+p.ops, fmt.Sprintf("PUSHSYNC_API_LISTEN=127.0.0.1:%d", freePort(t)))
		p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logFile.Close()
		p.done = make(chan error, 1)
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		})
		procs = append(procs, p)
	}
	for _, p := range procs {
		if code, body := waitReady(p.ops, time.Minute); code != http.StatusOK {
			t.Fatalf("pushsyncd %s with the ConfigMap's pushsyncd.yaml: /readyz %d after a minute:\n%s\nlog:\n%s", p.role, code, body, readLog(p.log))
		}
	}

	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		info, err := js.Stream(ctx, cfg.NATS.Stream)
		if err == nil {
			si := info.CachedInfo()
			current := 0
			if si.Cluster != nil && si.Cluster.Leader != "" {
				current = 1
				for _, r := range si.Cluster.Replicas {
					if r.Current {
						current++
					}
				}
			}
			if si.Config.Replicas == members && current == members {
				break
			}
			err = fmt.Errorf("replicas %d, %d current", si.Config.Replicas, current)
		}
		if ctx.Err() != nil {
			t.Fatalf("stream %s: want %d current replicas (nats.replicas of the ConfigMap): %v", cfg.NATS.Stream, members, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cons, err := js.Consumer(ctx, cfg.NATS.Stream, cfg.Dispatcher.Consumer)
	if err != nil {
		t.Fatalf("consumer %s: %v", cfg.Dispatcher.Consumer, err)
	}
	if got := cons.CachedInfo().Config.MaxAckPending; got != cfg.Dispatcher.MaxAckPending {
		t.Errorf("consumer %s: max_ack_pending %d, want the ConfigMap's %d", cfg.Dispatcher.Consumer, got, cfg.Dispatcher.MaxAckPending)
	}

	for _, p := range procs {
		must(t, p.cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("pushsyncd %s after SIGTERM: %v\nlog:\n%s", p.role, err, readLog(p.log))
			}
		case <-time.After(time.Minute):
			t.Errorf("pushsyncd %s still running a minute after SIGTERM\nlog:\n%s", p.role, readLog(p.log))
		}
	}
}

// configMapYAML returns the Kubernetes ConfigMap's pushsyncd.yaml.
func configMapYAML(t *testing.T) string {
	t.Helper()
	for _, f := range deployFiles(t, ".yaml") {
		if !strings.Contains(f, "kubernetes") {
			continue
		}
		for _, doc := range yamlDocs(t, f) {
			if doc["kind"] == "ConfigMap" {
				data, _ := doc["data"].(map[string]any)
				if s, _ := data["pushsyncd.yaml"].(string); s != "" {
					return s
				}
			}
		}
	}
	t.Fatal("no ConfigMap with a pushsyncd.yaml under deploy/kubernetes")
	return ""
}

// waitReady polls http://addr/readyz until it answers 200 or timeout
// passes, and returns the last status and body.
func waitReady(addr string, timeout time.Duration) (int, string) {
	code, body := 0, ""
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			body = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		if code == http.StatusOK {
			break
		}
	}
	return code, body
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func readLog(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}
