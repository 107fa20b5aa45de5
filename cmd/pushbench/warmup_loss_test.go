package main

import (
	"context"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/internal/testenv"
)

// TestWarmUpThatLosesEventsStopsTheRun points the worker at services that
// are not there, with a half phase at a fixed rate, which publishes
// whether or not pushes arrive: pushbench must stop at the warm-up that
// delivered nothing, not go on to report figures.
func TestWarmUpThatLosesEventsStopsTheRun(t *testing.T) {
	nowhere := "https://" + freeAddr()
	var out strings.Builder
	err := run(context.Background(), runWorkerArgs(t,
		"-phases", "half", "-half-rate", "50", "-warmup", "300ms", "-duration", "1s", "-identities", "20",
		"-worker-env", "PUSHSYNC_APNS_PRODUCTION_HOST="+nowhere, "-worker-env", "PUSHSYNC_FCM_ENDPOINT="+nowhere+"/v1"),
		&out, &testenv.LogBuffer{})
	t.Logf("pushbench: %v\n%s", err, out.String())
	for _, want := range []string{"warm-up", "events not fully delivered", "pushsyncd worker 0's log ends"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pushbench with a worker that cannot push: want its error to say %q", want)
		}
	}
}
