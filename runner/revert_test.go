package runner

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// windowMetrics answers a query like rate(...[window]) over a host whose
// behaviour doubles while it carries the change: the value at t is the
// baseline times 1 + the share of [t-window, t] the host spent changed.
// So a revert shows in full only a window after it.
type windowMetrics struct {
	clock  ports.Clock
	window time.Duration

	mu       sync.Mutex
	from, to map[string]time.Time // changed from, reverted at
}

func (m *windowMetrics) value(host string, t time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	from, ok := m.from[host]
	if !ok {
		return 1
	}
	to, reverted := m.to[host]
	if !reverted {
		to = t
	}
	lo, hi := from, to
	if start := t.Add(-m.window); lo.Before(start) {
		lo = start
	}
	if hi.After(t) {
		hi = t
	}
	share := max(0, hi.Sub(lo).Seconds()) / m.window.Seconds()
	return 1 + share
}

func (m *windowMetrics) Instant(_ context.Context, _ ports.Query, keys []string, at time.Time, out []float64) error {
	for i, k := range keys {
		out[i] = m.value(k, at)
	}
	return nil
}

func (m *windowMetrics) Range(_ context.Context, _ ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	out := make([]ports.Samples, len(keys))
	for i := range out {
		for t := from; !t.After(to); t = t.Add(step) {
			out[i].Timestamps = append(out[i].Timestamps, t.UnixMilli())
			out[i].Values = append(out[i].Values, 1)
		}
	}
	return out, nil
}

// The default revert.verify waits as long as the detector needs to see a
// reverted host back in its band: a query's range window, then the
// smoothing window filled twice. Two intervals (the old default) end
// before a rate over one minute has forgotten the change.
func TestDefaultVerifySeesARealRevert(t *testing.T) {
	for _, tc := range []struct {
		verify   string
		verified bool
	}{
		{"", true},     // the default: 1m + 2 x 2 x 15s = 2m
		{"30s", false}, // 2 x interval, the old default
	} {
		t.Run("verify="+tc.verify, func(t *testing.T) {
			spec := `name: verify
targets: {static: [web-1, web-2, web-3]}
canary: {hosts: 1, monitor: 5m}
apply: {playbook: playbooks/site.yml, version: v2}
revert: {playbook: playbooks/revert.yml` + map[bool]string{true: ", verify: " + tc.verify, false: ""}[tc.verify != ""] + `}
metrics:
  url: http://127.0.0.1:1
  interval: 15s
  queries:
    latency: {query: 'rate(latency_total[1m])'}
policies:
  - {name: any-degraded, rollback_when: 'fleet.degraded > 0'}
`
			s, pols, err := load("testdata/verify.yaml", []byte(spec), testEnv, os.ReadFile)
			if err != nil {
				t.Fatal(err)
			}
			if tc.verify == "" && s.Revert.Verify.D() != 2*time.Minute {
				t.Fatalf("default revert.verify %s, want 1m + 2 x 2 x 15s = 2m", s.Revert.Verify.D())
			}
			plan, err := MakePlan(s, StaticHosts(s))
			if err != nil {
				t.Fatal(err)
			}
			clock := NewSimClock(time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC))
			metrics := &windowMetrics{clock: clock, window: time.Minute, from: map[string]time.Time{}, to: map[string]time.Time{}}
			app := &scriptedApplier{result: func(req ports.ApplyRequest) ports.ApplyResult {
				metrics.mu.Lock()
				for _, h := range req.Limit {
					if strings.HasSuffix(req.Playbook, "revert.yml") {
						metrics.to[h] = clock.Now()
					} else {
						metrics.from[h] = clock.Now()
					}
				}
				metrics.mu.Unlock()
				return changedAll(req)
			}}
			store := newMemStore()
			journal, err := OpenJournal(t.Context(), store)
			if err != nil {
				t.Fatal(err)
			}
			ro := &Rollout{Spec: s, Policies: pols, Plan: plan, Metrics: metrics, Applier: app, Clock: clock, RunID: "run-1",
				Journal: journal, History: &history.History{Store: store}}
			res, err := ro.Execute(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			rb := res.Report.Rollback
			if res.Report.Outcome != report.OutcomeRolledBack || rb == nil {
				t.Fatalf("outcome %q (%s): want the canary rolled back", res.Report.Outcome, res.Report.Reason)
			}
			if rb.Verified != tc.verified {
				t.Errorf("verified %v (%s), want %v", rb.Verified, rb.Verification, tc.verified)
			}
		})
	}
}

func TestRangeWindow(t *testing.T) {
	for q, want := range map[string]time.Duration{
		`rate(x[1m])`: time.Minute,
		`histogram_quantile(0.95, sum by (le) (rate(b[90s]))) / rate(y[1h30m])`: 90 * time.Minute,
		`max_over_time(rate(x[1m])[5m:30s])`:                                    5 * time.Minute,
		`avg by (instance) (latency)`:                                           0,
		`x{le="[1m]"}`:                                                          time.Minute, // a label value that looks like one: longer, never shorter
	} {
		if got := rangeWindow(q); got != want {
			t.Errorf("rangeWindow(%q) = %s, want %s", q, got, want)
		}
	}
}
