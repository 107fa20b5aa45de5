package deploycheck

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// sourceMetrics returns every pushsync metric the non-test Go source
// registers, with its label names in order (none for a plain counter, gauge
// or histogram).
func sourceMetrics(t *testing.T) map[string][]string {
	t.Helper()
	name := regexp.MustCompile(`Name:\s*"(pushsync_[a-z0-9_]+)"`)
	// The end of the options literal: "}," and the label names of a vector,
	// or "})" for a single series.
	end := regexp.MustCompile(`\}(?:,\s*\[\]string\{([^}]*)\})?\)`)
	desc := regexp.MustCompile(`NewDesc\(\s*"(pushsync_[a-z0-9_]+)",\s*"(?:[^"\\]|\\.)*",\s*\[\]string\{([^}]*)\}`)
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "deploy") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllSubmatchIndex(src, -1) {
			metric := string(src[m[2]:m[3]])
			e := end.FindSubmatch(src[m[1]:])
			if e == nil {
				t.Fatalf("%s: cannot find the end of the options of %s", p, metric)
			}
			var labels []string
			for _, l := range strings.Split(string(e[1]), ",") {
				if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
					labels = append(labels, l)
				}
			}
			out[metric] = labels
		}
		// Collectors of their own describe their metrics with NewDesc.
		for _, m := range desc.FindAllSubmatch(src, -1) {
			var labels []string
			for _, l := range strings.Split(string(m[2]), ",") {
				if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
					labels = append(labels, l)
				}
			}
			out[string(m[1])] = labels
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d metrics in the source: %v", len(out), out)
	}
	return out
}

// TestDocumentedMetrics checks README.md's list of metrics against the
// metrics the code registers, both ways, with their labels, and that every
// metric another document or deploy file names exists.
func TestDocumentedMetrics(t *testing.T) {
	code := sourceMetrics(t)
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("`(pushsync_[a-z0-9_]+)(?:\\{([a-z_,]*)\\})?`").FindAllStringSubmatch(string(data), -1) {
		metric, labels := m[1], m[2]
		want, ok := code[metric]
		if !ok {
			t.Errorf("README.md lists %s, which the code does not register", metric)
			continue
		}
		listed[metric] = true
		got := []string{}
		if labels != "" {
			got = strings.Split(labels, ",")
		}
		if len(want) == 0 {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			t.Errorf("README.md lists %s with labels {%s}; the code gives it {%s}", metric, labels, strings.Join(want, ","))
		}
	}
	var missing []string
	for metric, labels := range code {
		if !listed[metric] {
			if len(labels) > 0 {
				metric += "{" + strings.Join(labels, ",") + "}"
			}
			missing = append(missing, metric)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("README.md's list of metrics does not name %s", m)
	}

	others, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	others = append(others, deployFiles(t)...)
	named := regexp.MustCompile(`pushsync_[a-z0-9_]*[a-z0-9]`)
	for _, f := range others {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range named.FindAllString(string(data), -1) {
			if _, ok := code[baseMetric(n, code)]; !ok && !strings.HasPrefix(n, "pushsync_test") {
				t.Errorf("%s names %s, which the code does not register", f, n)
			}
		}
	}
}

// baseMetric strips the suffix Prometheus adds to a histogram's series.
func baseMetric(n string, code map[string][]string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b := strings.TrimSuffix(n, suf); b != n {
			if _, ok := code[b]; ok {
				return b
			}
		}
	}
	return n
}

// TestDashboardLabels checks that every label a dashboard query groups by
// or a legend shows is a label of the metrics the query reads.
func TestDashboardLabels(t *testing.T) {
	code := sourceMetrics(t)
	data, err := os.ReadFile(filepath.Join(deployDir, "grafana", "pushsync-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr         string `json:"expr"`
				LegendFormat string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	metric := regexp.MustCompile(`pushsync_[a-z0-9_]+`)
	grouping := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	legend := regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			have := map[string]bool{}
			for _, n := range metric.FindAllString(tg.Expr, -1) {
				b := baseMetric(n, code)
				for _, l := range code[b] {
					have[l] = true
				}
				if b != n && strings.HasSuffix(n, "_bucket") {
					have["le"] = true
				}
			}
			var used []string
			for _, g := range grouping.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(g[1], ",") {
					if l = strings.TrimSpace(l); l != "" {
						used = append(used, l)
					}
				}
			}
			for _, l := range legend.FindAllStringSubmatch(tg.LegendFormat, -1) {
				used = append(used, l[1])
			}
			for _, l := range used {
				if !have[l] {
					t.Errorf("panel %q: label %q is not a label of the metrics of %q", p.Title, l, tg.Expr)
				}
			}
		}
	}
}
