package runner

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// scriptedMetrics answers from value(host key, time) and records the
// windows of the range queries.
type scriptedMetrics struct {
	value func(key string, at time.Time) float64

	mu     sync.Mutex
	ranges map[string][]time.Time // key -> the from of each range query
}

func (m *scriptedMetrics) Instant(_ context.Context, _ ports.Query, keys []string, at time.Time, out []float64) error {
	for i, k := range keys {
		out[i] = m.value(k, at)
	}
	return nil
}

func (m *scriptedMetrics) Range(_ context.Context, _ ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ranges == nil {
		m.ranges = map[string][]time.Time{}
	}
	out := make([]ports.Samples, len(keys))
	for i, k := range keys {
		m.ranges[k] = append(m.ranges[k], from)
		for t := from; !t.After(to); t = t.Add(step) {
			out[i].Timestamps = append(out[i].Timestamps, t.UnixMilli())
			out[i].Values = append(out[i].Values, m.value(k, t))
		}
	}
	return out, nil
}

// noisy is a latency around 0.2 with a few percent of deterministic noise.
func noisy(key string, at time.Time) float64 {
	return 0.2 * (1 + 0.03*float64((at.Unix()/15+int64(len(key))*7)%5-2)/2)
}

// A host's baseline starts after its last recorded change: web-3 got a
// version from another run 10 minutes before the canary's apply, so its
// baseline window (as a control of the canary) starts there, while the
// other hosts' windows span metrics.baseline.
func TestBaselineStartsAfterLastRecordedChange(t *testing.T) {
	ro, _, _ := execRollout(t, execSpec, changedAll)
	m := &scriptedMetrics{value: noisy}
	ro.Metrics = m
	start := ro.Clock.Now()
	if err := ro.History.Record(t.Context(), "web-3", history.VersionRecord{Version: "v1", Playbook: "site.yml",
		At: start.Add(-10 * time.Minute), RunID: "run-0", Outcome: history.VersionKnownGood}); err != nil {
		t.Fatal(err)
	}
	promoted(t, ro)
	for _, h := range []string{"web-1", "web-2", "web-4"} {
		if got, want := m.ranges[h][0], start.Add(-30*time.Minute); !got.Equal(want) {
			t.Errorf("%s: baseline from %s, want %s (metrics.baseline)", h, got.Format(time.TimeOnly), want.Format(time.TimeOnly))
		}
	}
	if got, want := m.ranges["web-3"][0], start.Add(-10*time.Minute); !got.Equal(want) {
		t.Errorf("web-3: baseline from %s, want %s (its last recorded change)", got.Format(time.TimeOnly), want.Format(time.TimeOnly))
	}
}

// Every stage ends with the window test's verdict (a "verdict" line in the
// timeline after its last tick), and a fleet policy that fires names the
// degraded hosts it fired for, whatever revert.scope reverts.
func TestVerdictEndsEveryStageAndFireNamesTheCause(t *testing.T) {
	ro, _, _ := execRollout(t, execSpec, changedAll)
	ro.Metrics = &scriptedMetrics{value: noisy}
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, l := range res.Report.Timeline {
		if l.Phase == phaseVerdict {
			verdicts = append(verdicts, l.Wave)
		}
	}
	if res.Report.Outcome != report.OutcomePromoted || !slices.Equal(verdicts, []string{"canary", "wave-1"}) {
		t.Errorf("outcome %q, verdicts in %v: want promoted, a verdict after canary and wave-1", res.Report.Outcome, verdicts)
	}

	ro, _, _ = execRollout(t, execSpec, changedAll)
	change := ro.Clock.Now()
	ro.Metrics = &scriptedMetrics{value: func(key string, at time.Time) float64 {
		v := noisy(key, at)
		if key == "web-1" && at.After(change) {
			v *= 2
		}
		return v
	}}
	res, err = ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Report; r.Outcome != report.OutcomeRolledBack || r.Rollback == nil || !strings.Contains(r.Rollback.Reason, "degraded: web-1 (latency)") {
		t.Errorf("outcome %q, rollback %+v: want rolled back, the reason naming web-1 (latency)", r.Outcome, r.Rollback)
	}
}

// A baseline's samples reach the detector on the poll grid: a gap holds
// a NaN per missing poll (scrape jitter rounds to the nearest poll), so
// that two polls either side of it are not consecutive.
func TestBaselineOnGrid(t *testing.T) {
	const min = int64(time.Minute / time.Millisecond)
	nan := math.NaN()
	tests := []struct {
		name string
		ts   []int64
		want []float64
	}{
		{"no gap", []int64{0, min, 2 * min}, []float64{1, 2, 3}},
		{"one poll missing", []int64{0, 2 * min, 3 * min}, []float64{1, nan, 2, 3}},
		{"three missing, jitter", []int64{0, 4*min + 20_000, 5*min - 10_000}, []float64{1, nan, nan, nan, 2, 3}},
		{"denser than the polls", []int64{0, min / 4, min / 2}, []float64{1, 2, 3}},
		// The window starts at 0: a series whose first sample is later
		// missed the whole polls before it (born in the window).
		{"born three polls in", []int64{3*min + 20_000, 4 * min, 5 * min}, []float64{nan, nan, nan, 1, 2, 3}},
		{"first sample within a poll of the start", []int64{min - 1, 2 * min, 3 * min}, []float64{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := onGrid(ports.Samples{Timestamps: tt.ts, Values: []float64{1, 2, 3}}, time.UnixMilli(0), time.Minute)
			if len(got) != len(tt.want) {
				t.Fatalf("onGrid = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] && !(math.IsNaN(got[i]) && math.IsNaN(tt.want[i])) {
					t.Fatalf("onGrid = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// A baseline reads as a counter's when it never falls over at least 10
// polls and rises in most of them; a flat series, a noisy gauge, a gauge
// rising with noise, a counter reset inside the window, or a counter
// seen for fewer polls draw nothing. The warning is given once per query.
func TestWarnCounter(t *testing.T) {
	ramp := func(n int, f func(i int) float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	nan := math.NaN()
	counter := ramp(48, func(i int) float64 { return 1e6 + 37*float64(i) + float64(i%3) })
	counter[5], counter[6] = counter[4], nan // a quiet poll, a missed one
	reset := ramp(48, func(i int) float64 { return float64((i + 30) % 48) })
	tests := []struct {
		name   string
		values []float64
		want   bool
	}{
		{"counter", counter, true},
		{"flat", ramp(48, func(int) float64 { return 3 }), false},
		{"noisy gauge", ramp(48, func(i int) float64 { return 100 + 5*math.Sin(float64(i)) }), false},
		{"rising gauge", ramp(48, func(i int) float64 { return float64(i) + 3*math.Sin(float64(i)) }), false},
		{"reset in the window", reset, false},
		{"too few polls", counter[:9], false},
		{"rises in half its polls", ramp(48, func(i int) float64 { return float64(i / 2) }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w strings.Builder
			x := &execution{Rollout: &Rollout{Warnings: &w}, report: &report.Report{},
				queries: []ports.Query{{Name: "requests", Expr: "requests_total"}}, hosts: []hostState{{Host: ports.Host{Name: "web-1"}}}}
			x.warnCounter(0, 0, tt.values)
			x.warnCounter(0, 0, tt.values)
			if got := len(x.report.Warnings); got != map[bool]int{true: 1}[tt.want] {
				t.Fatalf("%d warnings %q, want %v", got, x.report.Warnings, tt.want)
			}
			if tt.want && !strings.Contains(w.String(), "rollguard: warning: query requests (requests_total) reads as a counter: its baseline on web-1 ") {
				t.Errorf("printed %q", w.String())
			}
		})
	}
}
