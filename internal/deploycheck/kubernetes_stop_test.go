package deploycheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/config"
)

// apiLeaveServiceSeconds is the least time an api pod must keep serving
// after Kubernetes starts to stop it: pushsyncd closes its API listener at
// SIGTERM, while the Service's endpoints (kube-proxy on every node, an
// ingress or a cloud load balancer) still send it new connections for a
// moment, which are refused.
const apiLeaveServiceSeconds = 5

// TestKubernetesPodsStopGracefully checks that the api pods wait, in a
// preStop sleep, for the Service to stop sending them connections before
// pushsyncd gets SIGTERM, and that each Deployment's
// terminationGracePeriodSeconds covers that wait and pushsyncd's own stop
// (http.shutdown_timeout and dispatcher.send_timeout of the ConfigMap), so
// that the kubelet does not kill a pod finishing its requests and sends.
func TestKubernetesPodsStopGracefully(t *testing.T) {
	cfg := kubernetesConfig(t)
	stop := cfg.HTTP.ShutdownTimeout.Std() + cfg.Dispatcher.SendTimeout.Std()
	checked := 0
	for _, f := range deployFiles(t, ".yaml") {
		if !strings.Contains(f, "kubernetes") {
			continue
		}
		for _, doc := range yamlDocs(t, f) {
			if doc["kind"] != "Deployment" {
				continue
			}
			checked++
			meta, _ := doc["metadata"].(map[string]any)
			name, _ := meta["name"].(string)
			spec, _ := doc["spec"].(map[string]any)
			tmpl, _ := spec["template"].(map[string]any)
			pspec, _ := tmpl["spec"].(map[string]any)
			ctrs, _ := pspec["containers"].([]any)
			if len(ctrs) != 1 {
				t.Fatalf("%s: %d containers", name, len(ctrs))
			}
			ctr, _ := ctrs[0].(map[string]any)
			lifecycle, _ := ctr["lifecycle"].(map[string]any)
			preStop, _ := lifecycle["preStop"].(map[string]any)
			sleep, _ := preStop["sleep"].(map[string]any)
			wait, _ := sleep["seconds"].(int)
			if name == "pushsync-api" && wait < apiLeaveServiceSeconds {
				t.Errorf("%s: preStop sleep of %ds, want at least %ds: pushsyncd stops taking connections at SIGTERM, and the Service still sends it some for a moment, which are refused", name, wait, apiLeaveServiceSeconds)
			}
			grace, ok := pspec["terminationGracePeriodSeconds"].(int)
			if !ok {
				t.Errorf("%s: no terminationGracePeriodSeconds (Kubernetes' default is 30s)", name)
				continue
			}
			if need := time.Duration(wait)*time.Second + stop; time.Duration(grace)*time.Second <= need {
				t.Errorf("%s: terminationGracePeriodSeconds %d, want more than the preStop sleep (%ds) + http.shutdown_timeout (%v) + dispatcher.send_timeout (%v) = %v",
					name, grace, wait, cfg.HTTP.ShutdownTimeout.Std(), cfg.Dispatcher.SendTimeout.Std(), need)
			}
		}
	}
	if checked != 2 {
		t.Fatalf("%d Deployments under deploy/kubernetes, want 2 (api and worker)", checked)
	}
}

// kubernetesConfig returns the Kubernetes ConfigMap's pushsyncd.yaml as
// the worker loads it, with the secret files it names stood in by
// temporary files.
func kubernetesConfig(t *testing.T) *config.Config {
	t.Helper()
	cfgYAML := configMapYAML(t)
	dir := t.TempDir()
	writeSecretFiles(t, dir)
	cfg, err := config.Parse([]byte(strings.ReplaceAll(cfgYAML, "/var/run/secrets/pushsync/", dir+"/")), []string{"PUSHSYNC_ROLE=worker"}, "")
	if err != nil {
		t.Fatalf("kubernetes ConfigMap pushsyncd.yaml: %v", err)
	}
	return cfg
}

// writeSecretFiles writes, in dir, the files of the pushsync-secrets Secret
// the pods mount: master_key and developer_secret.
func writeSecretFiles(t *testing.T, dir string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, "master_key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "developer_secret"), []byte("0123456789abcdef0123456789\n"), 0o600))
}
