package main

import (
	"strings"
	"testing"
)

// TestBarsAreNotMetWithPushesLostOrRepeated gives verdicts figures that
// would meet every bar, from phases that lost, repeated or misrouted
// pushes: a throughput or a p99 over the pushes that did arrive must not
// count as meeting a bar.
func TestBarsAreNotMetWithPushesLostOrRepeated(t *testing.T) {
	good := func() *PhaseFig {
		return &PhaseFig{Events: 1000, Pushes: 4000, PushesPerSec: 20000, CPUPer10kPush: 0.3, PeakRSSMB: 100,
			Latency: Percentiles{Samples: 4000, P50: 1, P90: 2, P99: 5, Max: 8}, TargetEventRate: 2500, HalfOfMaxRate: 2500}
	}
	for _, c := range []struct {
		name  string
		spoil func(f *PhaseFig)
		want  string
	}{
		{"lost", func(f *PhaseFig) { f.Undelivered = 3 }, "3 events not fully delivered"},
		{"repeated", func(f *PhaseFig) { f.Duplicates = 2 }, "2 duplicate pushes"},
		{"misrouted", func(f *PhaseFig) { f.Misrouted = 1 }, "1 push to a device not of the event's identity"},
	} {
		r := &Report{Ceiling: &CeilingFig{PushesPerSec: 20000, CPUPer10kPush: 0.5}, Max: good(), Half: good()}
		if v := verdicts(r); !allMet(v) {
			t.Fatalf("%s: a clean run misses a bar: %+v", c.name, v)
		}
		c.spoil(r.Max)
		c.spoil(r.Half)
		for _, v := range verdicts(r) {
			pushFigure := strings.Contains(v.Bar, "throughput") || strings.Contains(v.Bar, "CPU") || strings.Contains(v.Bar, "p99")
			if !pushFigure {
				continue
			}
			if v.Met || !strings.Contains(v.Figure, c.want) {
				t.Errorf("%s: %q: figure %q, met %v; want it not met, saying %q", c.name, v.Bar, v.Figure, v.Met, c.want)
			}
		}
	}
}

func allMet(v []Verdict) bool {
	for _, x := range v {
		if !x.Met {
			return false
		}
	}
	return len(v) > 0
}

// TestP99BarIsAtHalfTheMaximumRate gives the half phase a p99 within the
// bar at a rate chosen with -half-rate: below half of what the max phase
// of the run delivered, or with no max phase at all, it cannot meet a bar
// set at half the maximum rate, and the figure says why; at or above that
// rate it can.
func TestP99BarIsAtHalfTheMaximumRate(t *testing.T) {
	for _, c := range []struct {
		name            string
		rate, halfOfMax float64
		met             bool
		want            string
	}{
		{"half of the max phase", 2500, 2500, true, "5.00 ms at 2500 events/s"},
		{"above it", 3000, 2500, true, "5.00 ms at 3000 events/s"},
		{"the printed half rate", 2500, 2500.4, true, "5.00 ms at 2500 events/s"},
		{"a fifth of the maximum", 1000, 2500, false, "below half the maximum rate (2500 events/s)"},
		{"no max phase", 500, 0, false, "no max phase in this run"},
	} {
		half := &PhaseFig{Events: 1000, Pushes: 4000, Latency: Percentiles{Samples: 4000, P50: 1, P90: 2, P99: 5, Max: 8},
			TargetEventRate: c.rate, HalfOfMaxRate: c.halfOfMax}
		var p99 *Verdict
		for _, v := range verdicts(&Report{Half: half}) {
			if strings.Contains(v.Bar, "p99") {
				p99 = &v
			}
		}
		if p99 == nil {
			t.Fatalf("%s: no p99 verdict", c.name)
		}
		if p99.Met != c.met || !strings.Contains(p99.Figure, c.want) {
			t.Errorf("%s: figure %q, met %v; want met %v, saying %q", c.name, p99.Figure, p99.Met, c.met, c.want)
		}
	}
}
