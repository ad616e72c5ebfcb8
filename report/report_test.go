package report

import (
	"fmt"
	"html"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)

func at(min float64) time.Time { return t0.Add(time.Duration(min * float64(time.Minute))) }

// rolledBack is a live run over 10 hosts (canary web-1, wave-1 web-2..5,
// wave-2 web-6..10): web-1's p95 latency rose 54% after "Write app.conf",
// fleet-threshold fired at 12:03, web-1 was reverted and verified at
// 12:04:30. Every host has a baseline window [11:00, 12:00) and values
// every minute.
func rolledBack() *Report {
	r := &Report{
		RunID: "20240101T120000Z-abc", Name: "web-tuning", Outcome: OutcomeRolledBack,
		Reason:    "fleet-threshold fired in wave canary: top_mean(hosts, 0.30) = 6.185 > 5",
		Version:   "v2",
		StartedAt: t0, FinishedAt: at(4.5),
		Queries:   []QueryReport{{"cpu", "higher"}, {"error_rate", "higher"}, {"latency_p95", "higher"}},
		Detection: &DetectionReport{Sensitivity: "medium", Threshold: 6.5, Band: 3},
		Series:    map[string]map[string][]Point{}, BaselineSeries: map[string]map[string][]Point{},
	}
	r.Waves = []WaveReport{
		{Name: "canary", Index: 0, Hosts: []string{"web-1"}, Outcome: "fired", Monitor: "10m",
			BaselineFrom: ptrTime(at(-60)), ApplyStartedAt: ptrTime(at(0)), ApplyEndedAt: ptrTime(at(0.5)), FinishedAt: ptrTime(at(3))},
		{Name: "wave-1", Index: 1, Hosts: []string{"web-2", "web-3", "web-4", "web-5"}, Outcome: "not_started", Monitor: "10m"},
		{Name: "wave-2", Index: 2, Hosts: []string{"web-6", "web-7", "web-8", "web-9", "web-10"}, Outcome: "not_started", Monitor: "10m"},
	}
	for i := 1; i <= 10; i++ {
		name := fmt.Sprintf("web-%d", i)
		wave := "wave-2"
		switch {
		case i == 1:
			wave = "canary"
		case i <= 5:
			wave = "wave-1"
		}
		h := HostReport{Name: name, Wave: wave, ChangedTasks: []string{}, Metrics: map[string]MetricReport{
			"cpu":         {Baseline: 0.35, Stddev: 0.02, Current: 0.35, Samples: 60},
			"error_rate":  {Baseline: 0, Stddev: 0.002, Current: 0, Samples: 60},
			"latency_p95": {Baseline: 0.2, Stddev: 0.013, Current: 0.2, Samples: 60},
		}}
		r.BaselineSeries[name] = map[string][]Point{}
		r.Series[name] = map[string][]Point{}
		for _, q := range r.Queries {
			base := h.Metrics[q.Name].Baseline
			for m := -60; m < 0; m++ {
				r.BaselineSeries[name][q.Name] = append(r.BaselineSeries[name][q.Name], Point{at(float64(m)), base + 0.005*math.Sin(float64(m+i))})
			}
			for m := 1; m <= 4; m++ {
				v := base + 0.004*math.Cos(float64(m+i))
				if i == 1 && q.Name == "latency_p95" && m <= 3 {
					v = 0.30 + 0.01*float64(m%2)
				}
				r.Series[name][q.Name] = append(r.Series[name][q.Name], Point{at(float64(m)), v})
			}
		}
		r.Hosts = append(r.Hosts, h)
	}
	web1 := &r.Hosts[0]
	web1.Applied, web1.Status, web1.Reverted = true, "changed", true
	web1.ChangedTasks = []string{"Write app.conf", "Restart app"}
	web1.RevertReason = "top_mean(hosts, 0.30) = 6.185 > 5"
	web1.MaxScore = 6.185
	web1.Metrics["latency_p95"] = MetricReport{Baseline: 0.2033, Stddev: 0.0136, Current: 0.205, Z: 0.1, Score: 0, MaxScore: 6.185,
		Worst: 0.3138, WorstZ: 7.8, Samples: 60}
	web1.Metrics["cpu"] = MetricReport{Baseline: 0.35, Stddev: 0.02, Current: 0.36, Z: 0.5, MaxScore: 0.4, Worst: 0.36, WorstZ: 0.5, Samples: 60}
	r.Decisions = []Decision{
		{At: at(1), Wave: "canary", Policy: "fleet-threshold", Scope: "fleet", Outcome: "pass", Reason: "top_mean(hosts, 0.30) = 1.1 <= 5"},
		{At: at(3), Wave: "canary", Policy: "fleet-threshold", Scope: "fleet", Outcome: "fire", Fired: true,
			Reason: "top_mean(hosts, 0.30) = 6.185 > 5", Values: map[string]float64{"top_mean(hosts, 0.30)": 6.185}},
	}
	rb := &Rollback{Trigger: "fleet-threshold", Reason: "top_mean(hosts, 0.30) = 6.185 > 5", Scope: "wave", Hosts: []string{"web-1"},
		Methods:   []Method{{Name: "revert-playbook", Hosts: []string{"web-1"}, OK: true}},
		StartedAt: at(3), VerifyStartedAt: ptrTime(at(3.5)), FinishedAt: at(4.5), Verified: true,
		Verification: "every metric of 1 hosts back in its baseline band after 1m0s"}
	r.Rollback, r.Rollbacks = rb, []*Rollback{rb}
	return r
}

func ptrTime(t time.Time) *time.Time { return &t }

// section returns the text between the element with id and the next
// <section (the whole rest when it is the last), entities unescaped.
func section(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no section %q in the page", id)
	}
	rest := page[i:]
	if j := strings.Index(rest[1:], "<section"); j >= 0 {
		rest = rest[:j+1]
	}
	return html.UnescapeString(rest)
}

func TestHTMLLeadsWithTheDecision(t *testing.T) {
	page := HTML(rolledBack())
	top := section(t, page, "verdict") + section(t, page, "deciding")
	for _, want := range []string{"Rolled back", "fleet-threshold fired in wave canary", "latency_p95", "web-1",
		"0.2033 → 0.3138", "+54%", "12:03:00", "verified"} {
		if !strings.Contains(top, want) {
			t.Errorf("the first sections do not say %q", want)
		}
	}
	if strings.Index(page, `id="deciding"`) > strings.Index(page, `id="timeline"`) {
		t.Errorf("the deciding metric comes after the timeline")
	}
	tl := section(t, page, "timeline")
	for _, want := range []string{"baseline window of canary", "11:00:00 → 12:00:00", "apply canary (web-1)", "12:00:00 → 12:00:30",
		"fleet-threshold fired", "revert web-1 (revert-playbook)", "12:03:00 → 12:03:30", "back in its baseline band", "12:03:30 → 12:04:30"} {
		if !strings.Contains(tl, want) {
			t.Errorf("the timeline lacks %q", want)
		}
	}
}

// charts returns every chart's title (host · metric) in page order.
func charts(page string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<figcaption><b>([^<]*)</b>`).FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestHTMLDrawsTheHostsThatMattered(t *testing.T) {
	r := rolledBack()
	page := HTML(r)
	got := charts(page)
	// The deciding chart first, then web-1's three metrics, deciding one
	// first; no untouched host has a chart of its own.
	want := []string{"web-1 · latency_p95", "web-1 · latency_p95", "web-1 · cpu", "web-1 · error_rate"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("charts %q, want %q", got, want)
	}
	if n := strings.Count(page, "controls, median of 9 untouched hosts"); n != len(want) {
		t.Errorf("%d charts label the controls' median, want %d", n, len(want))
	}
	if n := strings.Count(page, `class="control"`); n < len(want) {
		t.Errorf("%d control lines, want one per chart", n)
	}

	// A reverted host with a small score ranks above a healthy host with
	// a larger one; healthy changed hosts fill in after.
	r.Hosts[2].Applied, r.Hosts[2].MaxScore = true, 4.2 // web-3, healthy
	r.Hosts[2].Metrics["latency_p95"] = MetricReport{Baseline: 0.2, Stddev: 0.013, Current: 0.22, Z: 1.5, MaxScore: 4.2, Worst: 0.22, WorstZ: 1.5, Samples: 60}
	r.Waves[1].ApplyStartedAt = ptrTime(at(2))
	r.Hosts[0].MaxScore = 1.5
	got = charts(HTML(r))
	if len(got) < 5 || got[1] != "web-1 · latency_p95" || !strings.HasPrefix(got[4], "web-3 ·") {
		t.Errorf("charts %q: want web-1's before web-3's", got)
	}
	for _, c := range got {
		if !strings.HasPrefix(c, "web-1 ") && !strings.HasPrefix(c, "web-3 ") {
			t.Errorf("chart %q of a host that did not matter", c)
		}
	}
}

func TestHTMLChartHasAxesBandAndMarks(t *testing.T) {
	page := HTML(rolledBack())
	fig := page[strings.Index(page, "<figure"):strings.Index(page, "</figure>")]
	// The baseline window is an hour, the run 4m30s: the chart draws the
	// window's last 12 minutes (twice the run, at least 12 samples) and
	// says so.
	for _, want := range []string{"time (UTC)", ">11:50<", ">12:00<", "baseline window 11:00–12:00, drawn from 11:48:00", ">latency_p95<", ">0.30<", ">0.20<",
		"apply canary", "fire: fleet-threshold", ">revert<", ">verified<", `class="bwin"`, `class="band"`} {
		if !strings.Contains(fig, want) {
			t.Errorf("the deciding chart lacks %q", want)
		}
	}
	// The band covers the baseline window and the run: it starts at the
	// plot's left edge (the window's start) and ends at its right edge.
	band := regexp.MustCompile(`<rect class="band" x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)"`).FindStringSubmatch(fig)
	if band == nil {
		t.Fatalf("no band in %s", fig)
	}
	if band[1] != fmt.Sprint(bigChart.left) || band[2] != fmt.Sprint(bigChart.w-bigChart.right-bigChart.left) {
		t.Errorf("band x=%s width=%s, want the whole plot width", band[1], band[2])
	}
}

func TestHTMLFetchesNothingAndEscapes(t *testing.T) {
	r := rolledBack()
	r.Hosts[0].Name = `web-1<script>alert(1)</script>`
	r.Rollback.Hosts = []string{r.Hosts[0].Name}
	r.Reason = `<img src=x onerror=alert(1)>`
	page := HTML(r)
	for _, bad := range []string{"<script", "<img", "<link", "<iframe", "http://", "https://", "url(", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	if m := regexp.MustCompile(`<[^>]*\s(src|href|xlink:href)=`).FindString(page); m != "" {
		t.Errorf("the page refers to a resource: %s", m)
	}
	if !strings.Contains(page, "web-1&lt;script&gt;") {
		t.Errorf("the host name is not escaped")
	}
}

func TestHTMLNoDataChartShowsWhereDataStopped(t *testing.T) {
	r := rolledBack()
	for _, q := range r.Queries {
		m := r.Hosts[0].Metrics[q.Name]
		m.NoData, m.MaxScore, m.Worst, m.WorstZ = true, 0, 0, 0
		r.Hosts[0].Metrics[q.Name] = m
		r.Series["web-1"][q.Name] = r.Series["web-1"][q.Name][:1]
	}
	r.Decisions[1].Outcome, r.Decisions[1].Reason = "nodata", "no data for 4 consecutive ticks (on_no_data: fail)"
	page := HTML(r)
	top := section(t, page, "deciding")
	for _, want := range []string{"no data from web-1 for", "cpu", "error_rate", "latency_p95", "since 12:01:00", `class="nodata"`} {
		if !strings.Contains(top, want) {
			t.Errorf("the deciding section lacks %q", want)
		}
	}
}

func TestMarkdownLeadsWithTheDecision(t *testing.T) {
	r := rolledBack()
	md := Markdown(r)
	lines := strings.Split(md, "\n")
	head := strings.Join(lines[:6], "\n")
	for _, want := range []string{"**Rolled back**", "**Deciding:** `latency_p95` on **web-1**: 0.2033 → 0.3138 (+54%, z 7.8, high)"} {
		if !strings.Contains(head, want) {
			t.Errorf("the first lines do not say %q:\n%s", want, head)
		}
	}
	for _, want := range []string{"| 11:00:00 → 12:00:00 | baseline window of canary |", "| 12:00:00 → 12:00:30 | apply canary (web-1) |",
		"| 12:03:00 | **fleet-threshold fired: top_mean(hosts, 0.30) = 6.185 > 5** |", "| 12:03:00 → 12:03:30 | revert web-1 (revert-playbook) |",
		"| 12:03:30 → 12:04:30 | every metric of 1 hosts back in its baseline band after 1m0s |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks the row %q", want)
		}
	}
	// The per-metric table of the reverted host: deciding metric first.
	i := strings.Index(md, "## Reverted and degraded hosts")
	if i < 0 {
		t.Fatalf("no table of reverted and degraded hosts:\n%s", md)
	}
	table := md[i:]
	lat, cpu := strings.Index(table, "| latency_p95 |"), strings.Index(table, "| cpu |")
	if lat < 0 || cpu < 0 || lat > cpu {
		t.Errorf("latency_p95 (deciding) must come before cpu:\n%s", table)
	}
	if !strings.Contains(table, "after `Write app.conf`, `Restart app` changed on web-1, latency_p95 0.2033 → 0.3138 (+54%)") {
		t.Errorf("no attribution of the regression to the changed tasks:\n%s", table)
	}
	// The all-hosts header lists the deciding metric first too.
	if !strings.Contains(md, "| max score | latency_p95 (baseline → observed, z) | cpu") {
		t.Errorf("the hosts table does not start with the deciding metric")
	}
}

func TestMarkdownWorstFirst(t *testing.T) {
	r := rolledBack()
	r.Outcome, r.Reason = OutcomePromoted, "every wave passed; 9 hosts carry the change"
	// web-7 was reverted by a host policy for errors 0 -> 0.1 with a small
	// score; web-3 is healthy with a larger one.
	for i := range r.Hosts {
		r.Hosts[i].Applied = true
	}
	r.Hosts[0].Reverted, r.Hosts[0].MaxScore = false, 0.6
	r.Hosts[0].Metrics["latency_p95"] = MetricReport{Baseline: 0.2, Stddev: 0.013, Current: 0.2, MaxScore: 0.6, Worst: 0.21, WorstZ: 0.8, Samples: 60}
	r.Hosts[2].MaxScore = 3.2
	r.Hosts[2].Metrics["latency_p95"] = MetricReport{Baseline: 0.2, Stddev: 0.01, Current: 0.22, Z: 2.2, MaxScore: 3.2, Worst: 0.22, WorstZ: 2.2, Samples: 60}
	web7 := &r.Hosts[6]
	web7.Reverted, web7.MaxScore, web7.RevertReason = true, 1.5, "host policy extreme-host: host.metrics.error_rate.z = 50 > 12"
	web7.Metrics["error_rate"] = MetricReport{Baseline: 0, Stddev: 0.002, Current: 0.1, Z: 50, MaxScore: 1.5, Worst: 0.1, WorstZ: 50, Samples: 60}
	rb := &Rollback{Trigger: "host-policy", Reason: web7.RevertReason, Scope: "host", Hosts: []string{"web-7"}, HostLevel: true,
		StartedAt: at(21), FinishedAt: at(21)}
	r.Rollback, r.Rollbacks = rb, []*Rollback{rb}
	r.Decisions = []Decision{{At: at(21), Wave: "wave-2", Policy: "extreme-host", Scope: "host", Host: "web-7", Outcome: "fire", Fired: true, Reason: "host.metrics.error_rate.z = 50 > 12"}}

	md := Markdown(r)
	if want := "**Promoted** — every wave passed; 9 hosts carry the change; web-7 reverted (host policy extreme-host: host.metrics.error_rate.z = 50 > 12)"; !strings.Contains(md, want) {
		t.Errorf("the verdict line does not name the host-level revert:\n%s", strings.Join(strings.Split(md, "\n")[:4], "\n"))
	}
	if !strings.Contains(md, "**Host revert:** `error_rate` on **web-7**: 0 → 0.1 (+0.1, z 50.0, high)") {
		t.Errorf("the host revert's metric is not in the first lines")
	}
	hosts := md[strings.Index(md, "## Hosts (worst first)"):]
	if i7, i3 := strings.Index(hosts, "| web-7 |"), strings.Index(hosts, "| web-3 |"); i7 < 0 || i3 < 0 || i7 > i3 {
		t.Errorf("web-7 (reverted, score 1.5) must rank above web-3 (healthy, score 3.2):\n%s", hosts)
	}
}

func TestClassify(t *testing.T) {
	det := DetectionReport{Threshold: 6.5, Band: 3}
	cases := []struct {
		name  string
		m     MetricReport
		worse string
		want  string
	}{
		{"steady", MetricReport{Samples: 60, MaxScore: 0.5, WorstZ: 1}, "higher", ClassPass},
		{"out of band", MetricReport{Samples: 60, MaxScore: 1.5, WorstZ: 50}, "higher", ClassHigh},
		{"throughput fell", MetricReport{Samples: 60, MaxScore: 1.5, WorstZ: 4}, "lower", ClassLow},
		{"score over threshold", MetricReport{Samples: 60, MaxScore: 7, WorstZ: 2.5}, "higher", ClassHigh},
		{"no data", MetricReport{Samples: 60, NoData: true, MaxScore: 9, WorstZ: 9}, "higher", ClassNoData},
		{"no baseline", MetricReport{}, "higher", ClassNoData},
		{"improved", MetricReport{Samples: 60, Z: -8}, "higher", ClassPass},
	}
	for _, tc := range cases {
		if got := Classify(tc.m, tc.worse, det); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestAxisTicks(t *testing.T) {
	ts, lo, hi := valueTicks(0.163, 0.331, 0, 100, 5)
	var labels []string
	for _, x := range ts {
		labels = append(labels, x.Label)
	}
	if math.Abs(lo-0.15) > 1e-9 || math.Abs(hi-0.35) > 1e-9 || strings.Join(labels, " ") != "0.15 0.20 0.25 0.30 0.35" {
		t.Errorf("value ticks %v over [%v, %v]", labels, lo, hi)
	}
	if ts[0].Pos != 100 || ts[len(ts)-1].Pos != 0 {
		t.Errorf("ticks from %v to %v, want the plot's bottom (100) to its top (0)", ts[0].Pos, ts[len(ts)-1].Pos)
	}
	tt := timeTicks(at(-60), at(4.5), 0, 1000, 10)
	labels = labels[:0]
	for _, x := range tt {
		labels = append(labels, x.Label)
	}
	if got := strings.Join(labels, " "); got != "11:00 11:10 11:20 11:30 11:40 11:50 12:00" {
		t.Errorf("time ticks %q", got)
	}
}

// Two fleet policies firing at the same tick: the page names the one the
// runner took, the first in policy order, as the verdict does.
func TestFiredDecisionIsTheRunnersTrigger(t *testing.T) {
	r := rolledBack()
	fire := r.Decisions[len(r.Decisions)-1]
	second := fire
	second.Policy, second.Reason = "latency-regression", "fraction(hosts, .degraded) = 1 >= 0.3"
	r.Decisions = append(r.Decisions, second)
	if d := r.firedDecision(); d == nil || d.Policy != fire.Policy {
		t.Fatalf("fired decision %+v, want %s (the first to fire at %s)", d, fire.Policy, fire.At)
	}
	if page := HTML(r); !strings.Contains(page, "after the first apply) · "+fire.Policy) {
		t.Errorf("the fired card does not name %s", fire.Policy)
	}
}

// A host whose play did not run to its end is named with its status and
// what became of it, in the header, a table of its own and the timeline;
// one left as it was is never called reverted, and a revert the apply
// caused is not read as a metric's decision.
func TestPagesNameHostsThatDidNotApply(t *testing.T) {
	r := rolledBack()
	r.Outcome = OutcomePromoted
	r.Reason = "every wave passed; 7 hosts carry the change"
	r.Decisions = nil
	r.Waves[0].Outcome, r.Waves[1].Outcome, r.Waves[2].Outcome = "passed", "passed", "passed"
	r.Waves[1].ApplyStartedAt, r.Waves[1].ApplyEndedAt = ptrTime(at(10)), ptrTime(at(11))
	for i := range r.Hosts {
		h := &r.Hosts[i]
		h.Applied, h.Status, h.Reverted, h.RevertReason = true, "changed", false, ""
	}
	// web-3 failed after changing something: reverted by name. web-4: no
	// task ran on it. web-5: no play matched it. Both left as they were.
	web3, web4, web5 := &r.Hosts[2], &r.Hosts[3], &r.Hosts[4]
	web3.Status, web3.Message, web3.ChangedTasks = "failed", `task "Check": boom`, []string{"Write app.conf"}
	web3.Reverted, web3.RevertReason = true, "apply failed on the host"
	web3.MaxScore = 2 // a score, but no metric decided its revert
	web3.Metrics["latency_p95"] = MetricReport{Baseline: 0.2, Stddev: 0.013, Current: 0.21, MaxScore: 2, Worst: 0.21, WorstZ: 0.8, Samples: 60}
	web4.Applied, web4.Status, web4.Message, web4.RevertReason = false, "skipped", "every task was skipped on the host", "no task ran on it; left as it was"
	web5.Applied, web5.Status, web5.Message, web5.RevertReason = false, "unmatched", "the play matched no host: `hosts: db`, but the limit was web-2,web-3,web-4,web-5", "no play matched it; left as it was"
	rb := &Rollback{Trigger: TriggerApplyFailed, Reason: "apply failed on the host", Scope: "host", Hosts: []string{"web-3"}, HostLevel: true,
		StartedAt: at(11), FinishedAt: at(12), Verified: true, Methods: []Method{{Name: "revert-playbook", Hosts: []string{"web-3"}, OK: true}}}
	r.Rollback, r.Rollbacks = rb, []*Rollback{rb}

	md := Markdown(r)
	head := strings.Join(strings.Split(md, "\n")[:8], "\n")
	if want := "**Did not apply:** web-3 failed (reverted), web-4 skipped, web-5 unmatched."; !strings.Contains(head, want) {
		t.Errorf("the first lines do not say %q:\n%s", want, head)
	}
	if strings.Contains(md, "**Host revert:**") || strings.Contains(md, "**Deciding:**") {
		t.Errorf("a revert the apply caused is read as a metric's decision:\n%s", head)
	}
	for _, want := range []string{
		"| web-3 | wave-1 | **failed** | task \"Check\": boom | reverted: apply failed on the host |",
		"| web-4 | wave-1 | **skipped** | every task was skipped on the host | no task ran on it; left as it was |",
		"| web-5 | wave-1 | **unmatched** | the play matched no host: `hosts: db`, but the limit was web-2,web-3,web-4,web-5 | no play matched it; left as it was |",
		"| web-5 | wave-1 | unmatched | no: no play matched it; left as it was |",
		"| web-4 | wave-1 | skipped | no: no task ran on it; left as it was |",
		"| web-3 | wave-1 | failed | yes: apply failed on the host |",
		"| **apply wave-1 (web-2, web-3, web-4, web-5): did not apply on 3 of 4: web-3 failed (reverted), web-4 skipped, web-5 unmatched** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, bad := range []string{"web-4 reverted", "web-5 reverted", "| web-5 | wave-1 | unmatched | yes"} {
		if strings.Contains(md, bad) {
			t.Errorf("report.md says %q of a host left as it was", bad)
		}
	}

	page := HTML(r)
	top := section(t, page, "deciding")
	for _, want := range []string{"Did not apply: web-3", ">failed</span> (reverted)", "web-5 <span class=\"cls unmatched\">unmatched</span>"} {
		if !strings.Contains(top, want) {
			t.Errorf("the page's header lacks %q", want)
		}
	}
	if strings.Contains(top, "Host revert:") {
		t.Errorf("the page reads the apply's revert as a metric's decision:\n%s", top)
	}
	na := section(t, page, "notapplied")
	for _, want := range []string{"<td>web-5</td><td>wave-1</td><td><span class=\"cls unmatched\">unmatched</span></td>",
		"the play matched no host: `hosts: db`", "<td>no play matched it; left as it was</td>", "<td>reverted: apply failed on the host</td>"} {
		if !strings.Contains(na, want) {
			t.Errorf("the page's did-not-apply table lacks %q", want)
		}
	}
	if i, j := strings.Index(page, `id="notapplied"`), strings.Index(page, `id="all"`); i > j {
		t.Errorf("the did-not-apply table comes after every host")
	}
	all := section(t, page, "all")
	if !strings.Contains(all, "<td>web-5</td><td>wave-1</td><td><span class=\"cls unmatched\">unmatched</span></td><td>no: no play matched it; left as it was</td>") {
		t.Errorf("the every-host table does not say web-5 was unmatched and left as it was:\n%s", all)
	}
	if strings.Contains(page, "Reverted: no play matched") || strings.Contains(page, "Reverted: no task ran") {
		t.Errorf("the page calls a host left as it was reverted")
	}
}
