package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pushsync/pushsync/config"
)

// loadAttached reads the configuration of the running pushsyncd workers
// that -attach names, with the PUSHSYNC_* variables of pushbench's
// environment applied as pushsyncd applies its own, and checks that
// pushbench can measure them: they dispatch, push every event (no
// coalescing) and push to emu.
func loadAttached(path string, emu *emulators) (*config.Config, error) {
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return nil, fmt.Errorf("-attach: %w", err)
	}
	var problems []string
	if cfg.Role != config.RoleWorker && cfg.Role != config.RoleAll {
		problems = append(problems, fmt.Sprintf("its role is %s; the workers measured must have role worker or all", cfg.Role))
	}
	if w := cfg.Dispatcher.CoalesceWindow.Std(); w > 0 {
		problems = append(problems, fmt.Sprintf("dispatcher.coalesce_window is %s; pushbench counts a push for every event, so it must be 0s", w))
	}
	if b := cfg.Dispatcher.DeviceBudget; b > 0 {
		problems = append(problems, fmt.Sprintf("dispatcher.device_budget is %d; pushes beyond it wait in the broker, so it must be 0 (no budget)", b))
	}
	if !sameEndpoint(cfg.APNs.ProductionHost, emu.apnsURL) {
		problems = append(problems, fmt.Sprintf("apns.production_host is %q, not the emulator's %q", cfg.APNs.ProductionHost, emu.apnsURL))
	}
	if !sameEndpoint(cfg.FCM.Endpoint, emu.fcmEndpoint) {
		problems = append(problems, fmt.Sprintf("fcm.endpoint is %q, not the emulator's %q", cfg.FCM.Endpoint, emu.fcmEndpoint))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("-attach %s: %s", path, strings.Join(problems, "; "))
	}
	return cfg, nil
}

// sameEndpoint reports whether the workers' URL a reaches the emulator at
// b: the same scheme, port and path; the host may differ, since the workers
// may know pushemu by another name than pushbench does.
func sameEndpoint(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && ua.Scheme == ub.Scheme && ua.Port() == ub.Port() &&
		strings.TrimSuffix(ua.Path, "/") == strings.TrimSuffix(ub.Path, "/")
}

// defaultOps is where a worker with cfg serves its health and metrics
// endpoints, seen from this machine.
func defaultOps(cfg *config.Config) string {
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil {
		return cfg.HTTP.Listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// remoteWorkers measures pushsyncd workers that pushbench did not start,
// through their metrics endpoints: CPU time from process_cpu_seconds_total
// and memory from process_resident_memory_bytes, sampled four times a
// second for its peak. System calls cannot be read that way.
type remoteWorkers struct {
	ops    []string
	client *http.Client
	peak   atomic.Int64
	stop   context.CancelFunc
}

// watchWorkers checks that every worker at ops is ready and starts
// sampling their memory.
func watchWorkers(ops []string) (*remoteWorkers, error) {
	r := &remoteWorkers{ops: ops, client: &http.Client{Timeout: 5 * time.Second}}
	for _, addr := range ops {
		res, err := r.client.Get("http://" + addr + "/readyz")
		if err != nil {
			return nil, fmt.Errorf("-ops %s: %w", addr, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("-ops %s: /readyz answers %s", addr, res.Status)
		}
	}
	if _, err := r.usage(); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_, _, _ = r.sample()
			}
		}
	}()
	return r, nil
}

// usage is the workers' CPU time, summed, and the largest resident set
// seen of any of them since the previous usage (or watchWorkers);
// syscalls is -1, unknown.
func (r *remoteWorkers) usage() (usage, error) {
	cpu, rss, err := r.sample()
	if err != nil {
		return usage{}, err
	}
	return usage{cpu: cpu, syscalls: -1, peakRSS: r.peak.Swap(rss)}, nil
}

// sample reads the workers' CPU time, summed, and the largest of their
// resident sets now, which it adds to the peak.
func (r *remoteWorkers) sample() (cpu time.Duration, largest int64, err error) {
	for _, addr := range r.ops {
		m, err := r.scrape(addr, "process_cpu_seconds_total", "process_resident_memory_bytes")
		if err != nil {
			return 0, 0, err
		}
		cpu += time.Duration(m["process_cpu_seconds_total"] * float64(time.Second))
		largest = max(largest, int64(m["process_resident_memory_bytes"]))
	}
	for {
		p := r.peak.Load()
		if largest <= p || r.peak.CompareAndSwap(p, largest) {
			return cpu, largest, nil
		}
	}
}

// scrape reads unlabelled samples from a worker's /metrics.
func (r *remoteWorkers) scrape(addr string, names ...string) (map[string]float64, error) {
	res, err := r.client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", addr, res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	got := make(map[string]float64, len(names))
	for _, n := range names {
		m := families[n].GetMetric()
		if len(m) == 0 {
			return nil, fmt.Errorf("metrics of %s: no %s (is it pushsyncd's ops address?)", addr, n)
		}
		got[n] = m[0].GetCounter().GetValue() + m[0].GetGauge().GetValue()
	}
	return got, nil
}

func (r *remoteWorkers) close() { r.stop() }

var errAttachNeedsEmulators = errors.New("-attach needs -emulators: the running workers must already push to the emulators, so these must be pushemu's (start pushemu, then the workers with its pushsyncd.yaml merged into their configuration)")
