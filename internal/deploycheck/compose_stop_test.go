package deploycheck

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushsync/pushsync/config"
)

// composeStopGracePeriod is how long docker compose waits after SIGTERM
// before it kills a container whose service sets no stop_grace_period.
const composeStopGracePeriod = 10 * time.Second

// TestComposeStopGracePeriod checks that docker compose (stop, down, or up
// recreating a container after a build) gives the api and worker
// containers longer than pushsyncd's own stop takes, as the systemd units
// and Kubernetes pods do: killed earlier, the api cuts off its in-flight
// requests and the worker its sends, whose events come back after
// dispatcher.ack_wait and are pushed twice.
func TestComposeStopGracePeriod(t *testing.T) {
	def := config.Default()
	need := def.HTTP.ShutdownTimeout.Std() + def.Dispatcher.SendTimeout.Std()
	docs := yamlDocs(t, filepath.Join(deployDir, "compose", "compose.yaml"))
	services, _ := docs[0]["services"].(map[string]any)
	for _, role := range []string{"api", "worker"} {
		svc, _ := services[role].(map[string]any)
		if svc == nil {
			t.Fatalf("compose: no service %s", role)
		}
		grace := composeStopGracePeriod
		if v, ok := svc["stop_grace_period"]; ok {
			d, err := time.ParseDuration(fmt.Sprint(v))
			if err != nil {
				t.Fatalf("compose: service %s: stop_grace_period %v: %v", role, v, err)
			}
			grace = d
		}
		if grace <= need {
			t.Errorf("compose: service %s stops within %v (stop_grace_period), want more than http.shutdown_timeout + dispatcher.send_timeout = %v", role, grace, need)
		}
	}
}
