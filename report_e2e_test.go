package main

import (
	"html"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDryRunReportPages reads report.html and report.md of dry runs as an
// on-call engineer would: the deciding host and metric in the first
// section, charts only of the hosts that mattered, nothing fetched.
func TestDryRunReportPages(t *testing.T) {
	cases := []struct {
		spec, metrics string
		// lead must all appear in the page's first sections and in the
		// first lines of report.md.
		lead []string
		// when must appear in report.html's first sections: when it fired.
		when string
		// drawn are the hosts with charts, in order of first chart: the
		// reverted or degraded ones, then the highest scores (on
		// noisy-host, web-3 at 1.18 and web-4 at 0.94 of the threshold's
		// 5, with the detector's defaults).
		drawn []string
	}{
		{spec: "latency-50", metrics: "latency-50.jsonl", lead: []string{"latency_p95", "web-1", "0.2033 → 0.2998", "+47%"}, when: "12:04:00 (4m0s after the first apply) · latency-regression", drawn: []string{"web-1"}},
		{spec: "nodata-fail", metrics: "nodata.jsonl", lead: []string{"no data from", "web-1", "latency_p95"}, when: "12:05:00 (5m0s after the first apply) · degraded-share", drawn: []string{"web-1"}},
		{spec: "noisy-host", metrics: "noisy-host.jsonl", lead: []string{"error_rate", "web-7", "0 → 0.1"}, when: "12:21:00 (21m0s after the first apply) · extreme-host on web-7", drawn: []string{"web-7", "web-3", "web-4"}},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			dir := t.TempDir()
			code, out, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/"+tc.spec+".yaml",
				"--metrics", "testdata/recordings/"+tc.metrics, "--change-at", "2024-01-01T12:00:00Z", "--report-dir", dir)
			if code != 0 && code != 3 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			raw, err := os.ReadFile(filepath.Join(dir, "report.html"))
			if err != nil {
				t.Fatal(err)
			}
			page := string(raw)
			first := html.UnescapeString(page[:strings.Index(page, `id="timeline"`)])
			md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
			head := strings.Join(strings.SplitN(string(md), "\n", 7)[:6], "\n")
			for _, want := range tc.lead {
				if !strings.Contains(first, want) {
					t.Errorf("report.html's first sections do not say %q", want)
				}
				if !strings.Contains(head, want) {
					t.Errorf("report.md's first lines do not say %q:\n%s", want, head)
				}
			}
			if !strings.Contains(first, tc.when) {
				t.Errorf("report.html's first sections do not say when it fired: %q", tc.when)
			}
			var drawn []string
			for _, m := range regexp.MustCompile(`<figcaption><b>([^ <]+) ·`).FindAllStringSubmatch(page, -1) {
				if !slices.Contains(drawn, m[1]) {
					drawn = append(drawn, m[1])
				}
			}
			if !slices.Equal(drawn, tc.drawn) {
				t.Errorf("charts of %v, want %v", drawn, tc.drawn)
			}
			for _, want := range []string{"time (UTC)", "controls, median of"} {
				if !strings.Contains(page, want) {
					t.Errorf("the charts lack %q", want)
				}
			}
			if m := regexp.MustCompile(`<[^>]*\s(src|href)=|url\(|@import|https?://`).FindString(page); m != "" {
				t.Errorf("the page refers to something outside it: %q", m)
			}
		})
	}
}
