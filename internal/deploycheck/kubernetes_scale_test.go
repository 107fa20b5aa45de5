package deploycheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/config"
)

// TestKubernetesAutoscalerFitsAckPending checks that the workers the HPA may
// run can all have events: the consumer delivers at most
// dispatcher.max_ack_pending unacknowledged events across every worker, and
// each worker handles dispatcher.workers at once, so workers beyond
// max_ack_pending / workers would stand idle while the backlog that made the
// HPA add them grows.
func TestKubernetesAutoscalerFitsAckPending(t *testing.T) {
	var cfgYAML string
	maxReplicas := 0
	for _, f := range deployFiles(t, ".yaml") {
		if !strings.Contains(f, "kubernetes") {
			continue
		}
		for _, doc := range yamlDocs(t, f) {
			switch doc["kind"] {
			case "ConfigMap":
				data, _ := doc["data"].(map[string]any)
				cfgYAML, _ = data["pushsyncd.yaml"].(string)
			case "HorizontalPodAutoscaler":
				spec, _ := doc["spec"].(map[string]any)
				target, _ := spec["scaleTargetRef"].(map[string]any)
				if target["name"] != "pushsync-worker" {
					continue
				}
				n, ok := spec["maxReplicas"].(int)
				if !ok {
					t.Fatalf("%s: maxReplicas %v", f, spec["maxReplicas"])
				}
				maxReplicas = n
			}
		}
	}
	if cfgYAML == "" || maxReplicas == 0 {
		t.Fatalf("no pushsyncd.yaml ConfigMap (%d bytes) or no HPA of pushsync-worker (maxReplicas %d)", len(cfgYAML), maxReplicas)
	}
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "master_key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "developer_secret"), []byte("0123456789abcdef0123456789\n"), 0o600))
	cfg, err := config.Parse([]byte(strings.ReplaceAll(cfgYAML, "/var/run/secrets/pushsync/", dir+"/")), []string{"PUSHSYNC_ROLE=worker"}, "")
	if err != nil {
		t.Fatal(err)
	}
	// Each worker holds up to twice dispatcher.workers: as many handled
	// and as many pulled ahead.
	if need := maxReplicas * 2 * cfg.Dispatcher.Workers; cfg.Dispatcher.MaxAckPending < need {
		t.Errorf("the ConfigMap's dispatcher.max_ack_pending is %d, below the HPA's maxReplicas (%d) x 2 x dispatcher.workers (%d) = %d",
			cfg.Dispatcher.MaxAckPending, maxReplicas, cfg.Dispatcher.Workers, need)
	}
}

// TestKubernetesAutoscaledDeploymentLeavesReplicas checks that a Deployment
// an HPA scales does not set spec.replicas. kubectl apply sets the
// Deployment to the replicas its manifest names: with them set, every apply
// of the manifests (a new image, a changed probe) would take the workers the
// HPA added for a backlog back to that number, until the HPA adds them
// again.
func TestKubernetesAutoscaledDeploymentLeavesReplicas(t *testing.T) {
	replicas := map[string]any{} // Deployment name -> its spec.replicas, nil if unset
	var scaled []string
	for _, f := range deployFiles(t, ".yaml") {
		if !strings.Contains(f, "kubernetes") {
			continue
		}
		for _, doc := range yamlDocs(t, f) {
			spec, _ := doc["spec"].(map[string]any)
			switch doc["kind"] {
			case "Deployment":
				meta, _ := doc["metadata"].(map[string]any)
				name, _ := meta["name"].(string)
				replicas[name] = spec["replicas"]
			case "HorizontalPodAutoscaler":
				target, _ := spec["scaleTargetRef"].(map[string]any)
				if target["kind"] == "Deployment" {
					name, _ := target["name"].(string)
					scaled = append(scaled, name)
				}
			}
		}
	}
	if len(scaled) == 0 {
		t.Fatal("no HorizontalPodAutoscaler of a Deployment under deploy/kubernetes")
	}
	for _, name := range scaled {
		r, ok := replicas[name]
		switch {
		case !ok:
			t.Errorf("an HPA scales Deployment %s, which is not under deploy/kubernetes", name)
		case r != nil:
			t.Errorf("Deployment %s sets spec.replicas: %v, but an HPA scales it: every kubectl apply of the manifests would set it back to %v workers; leave replicas to the HPA's minReplicas", name, r, r)
		}
	}
}
