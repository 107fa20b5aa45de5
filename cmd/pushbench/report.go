package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// The bars pushsync is held to on a 2-core machine with the emulators on it.
const (
	barThroughputShare = 0.90 // of the ceiling's pushes per second
	barP99Ms           = 10.0 // at half the maximum rate
	barRSSMB           = 150.0
	barBytesPerDevice  = 300.0
)

func verdicts(r *Report) []Verdict {
	var v []Verdict
	if r.Ceiling != nil && r.Max != nil {
		share := r.Max.PushesPerSec / r.Ceiling.PushesPerSec
		faults := pushFaults(r.Max)
		v = append(v, Verdict{
			Bar:    fmt.Sprintf("throughput ≥ %.0f%% of the ceiling", barThroughputShare*100),
			Figure: fmt.Sprintf("%.0f%% (%.0f against %.0f pushes/s)", share*100, r.Max.PushesPerSec, r.Ceiling.PushesPerSec) + faults,
			Met:    share >= barThroughputShare && faults == "",
		}, Verdict{
			Bar:    "pushsyncd CPU per 10k pushes ≤ the ceiling program's",
			Figure: fmt.Sprintf("%.2fs against %.2fs (%.0f%%)", r.Max.CPUPer10kPush, r.Ceiling.CPUPer10kPush, r.Max.CPUPer10kPush/r.Ceiling.CPUPer10kPush*100) + faults,
			Met:    r.Max.CPUPer10kPush <= r.Ceiling.CPUPer10kPush && faults == "",
		})
	}
	if h := r.Half; h != nil {
		// The bar is set at half the maximum rate. A rate given with
		// -half-rate meets it only at or above half of what the max phase
		// of the same run delivered (as printed, to the event).
		figure, atRate := fmt.Sprintf("%.2f ms at %.0f events/s", h.Latency.P99, h.TargetEventRate), true
		switch {
		case h.HalfOfMaxRate == 0:
			figure += ", given with -half-rate; no max phase in this run to take half of"
			atRate = false
		case math.Round(h.TargetEventRate) < math.Round(h.HalfOfMaxRate):
			figure += fmt.Sprintf(", below half the maximum rate (%.0f events/s)", h.HalfOfMaxRate)
			atRate = false
		}
		faults := pushFaults(h)
		v = append(v, Verdict{
			Bar:    fmt.Sprintf("p99 publish-to-emulator ≤ %.0f ms at half the maximum rate", barP99Ms),
			Figure: figure + faults,
			Met:    h.Latency.P99 <= barP99Ms && faults == "" && atRate,
		})
	}
	if r.Max != nil {
		v = append(v, Verdict{
			Bar:    fmt.Sprintf("pushsyncd RSS ≤ %.0f MB at the maximum rate", barRSSMB),
			Figure: fmt.Sprintf("%.1f MB peak", r.Max.PeakRSSMB),
			Met:    r.Max.PeakRSSMB <= barRSSMB,
		})
	}
	if r.Memory != nil {
		v = append(v, Verdict{
			Bar:    fmt.Sprintf("Redis ≤ %.0f bytes per device with one subscription", barBytesPerDevice),
			Figure: fmt.Sprintf("%.0f bytes at %d devices", r.Memory.BytesPerDevice, r.Memory.Devices),
			Met:    r.Memory.BytesPerDevice <= barBytesPerDevice,
		})
	}
	return v
}

// pushFaults says what went wrong with a phase's pushes, if anything, for
// a verdict's figure: figures over the pushes that did arrive, once some
// were lost, repeated or misrouted, meet no bar.
func pushFaults(f *PhaseFig) string {
	var faults []string
	if f.Undelivered > 0 {
		faults = append(faults, fmt.Sprintf("%d events not fully delivered", f.Undelivered))
	}
	if f.Duplicates > 0 {
		faults = append(faults, fmt.Sprintf("%d duplicate pushes", f.Duplicates))
	}
	if f.Misrouted == 1 {
		faults = append(faults, "1 push to a device not of the event's identity")
	} else if f.Misrouted > 1 {
		faults = append(faults, fmt.Sprintf("%d pushes to a device not of the event's identity", f.Misrouted))
	}
	if len(faults) == 0 {
		return ""
	}
	return "; but " + strings.Join(faults, ", ")
}

// restOfPipeline lists the CPU of the pipeline's other processes, those
// that could be read.
func restOfPipeline(f *PhaseFig, emulatorsInProcess bool) string {
	var b strings.Builder
	for _, part := range []struct {
		name string
		v    float64
	}{{"NATS server", f.NATSCPUPer10kPush}, {"Redis", f.RedisCPUPer10kPush}, {"pushemu", f.PushemuCPUPer10kPush}} {
		if part.v > 0 {
			fmt.Fprintf(&b, " %s %.3f,", part.name, part.v)
		}
	}
	what := "publishers"
	if emulatorsInProcess {
		what = "emulators, publishers"
	}
	fmt.Fprintf(&b, " pushbench (%s) %.3f", what, f.BenchCPUPer10kPush)
	return b.String()
}

// writeTable prints the figures as plain tables.
func writeTable(w io.Writer, r *Report) {
	godebug := r.Setup.GODEBUG
	if godebug == "" {
		godebug = "none"
	}
	fmt.Fprintf(w, "\npushbench on %d CPUs (%s), %s, GODEBUG %s; %d identities × %d devices, %d worker(s), %s per phase; emulators %s\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, godebug, r.Setup.Identities, r.Setup.Devices, r.Setup.Workers, r.Setup.Duration, r.Setup.Emulators)
	fmt.Fprintf(w, "%s\n", r.Setup.Command)
	if len(r.Setup.Env) > 0 {
		fmt.Fprintf(w, "with %s\n", strings.Join(r.Setup.Env, " "))
	}
	if strings.HasPrefix(r.Setup.Pushsyncd, "attached") {
		fmt.Fprintf(w, "pushsyncd %s (CPU and peak RSS from the metrics of the %d worker(s) given with -ops, RSS sampled every 250 ms; their GODEBUG is their own)\n", r.Setup.Pushsyncd, r.Setup.Workers)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if r.Ceiling == nil && r.Max == nil && r.Half == nil {
		tw = tabwriter.NewWriter(io.Discard, 0, 0, 2, ' ', 0)
	}
	fmt.Fprintln(tw, "phase\tevents/s in\tpushes/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tCPU s/10k pushes\tsyscalls/push\tpeak RSS MB\tpushes\t")
	if c := r.Ceiling; c != nil {
		fmt.Fprintf(tw, "ceiling (bare clients)\t–\t%.0f\t–\t–\t–\t–\t%.3f\t%.2f\t%.1f\t%d\t\n", c.PushesPerSec, c.CPUPer10kPush, c.SyscallsPerPush, c.PeakRSSMB, c.Pushes)
	}
	for _, p := range []struct {
		name string
		f    *PhaseFig
	}{{"pushsync, max rate", r.Max}, {"pushsync, half rate", r.Half}} {
		if f := p.f; f != nil {
			syscalls := "–" // not known for attached workers
			if f.SyscallsPerPush > 0 {
				syscalls = fmt.Sprintf("%.2f", f.SyscallsPerPush)
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t%s\t%.1f\t%d\t\n", p.name, f.EventsPerSec, f.PushesPerSec,
				f.Latency.P50, f.Latency.P90, f.Latency.P99, f.Latency.Max, f.CPUPer10kPush, syscalls, f.PeakRSSMB, f.Pushes)
		}
	}
	tw.Flush()
	if c := r.Ceiling; c != nil && c.EmulatorCPUPer10kPush > 0 {
		fmt.Fprintf(w, "ceiling: CPU s per 10k pushes of the emulators %.3f\n", c.EmulatorCPUPer10kPush)
	}
	for _, p := range []struct {
		name string
		f    *PhaseFig
	}{{"max rate", r.Max}, {"half rate", r.Half}} {
		if f := p.f; f != nil {
			fmt.Fprintf(w, "%s: CPU s per 10k pushes of the rest:%s\n", p.name, restOfPipeline(f, r.Setup.Emulators == "in-process"))
		}
	}
	for _, p := range []struct {
		name string
		f    *PhaseFig
	}{{"max rate", r.Max}, {"half rate", r.Half}} {
		if f := p.f; f != nil && f.RunsPerEvent > 0 {
			fmt.Fprintf(w, "%s: machine %.0f%% busy; threads of the pipeline's processes here waiting for a CPU: %.1f on average, %.0f µs a wait, %.1f runs per event\n",
				p.name, f.MachineBusyPct, f.ThreadsWaiting, f.WaitPerRunUs, f.RunsPerEvent)
		}
	}
	for _, p := range []*PhaseFig{r.Max, r.Half} {
		if p != nil && (p.Duplicates > 0 || p.Misrouted > 0 || p.Undelivered > 0) {
			fmt.Fprintf(w, "warning: %d duplicate pushes, %d pushes to a device not of the event's identity, %d events not fully delivered\n", p.Duplicates, p.Misrouted, p.Undelivered)
		}
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "\nRedis %s: %d devices (%d identities, one subscription each): %.0f bytes per device; %.0f after one push each (sent-state kept); seeded at %.0f registrations/s\n",
			m.RedisVersion, m.Devices, m.Identities, m.BytesPerDevice, m.BytesPerDeviceSent, m.RegistrationsPerSec)
	}
	if len(r.Verdicts) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "bar\tfigure\tmet")
		for _, v := range r.Verdicts {
			met := "yes"
			if !v.Met {
				met = "NO"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Bar, v.Figure, met)
		}
		tw.Flush()
	}
}
