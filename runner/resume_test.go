package runner

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// levelMetrics is a fleet whose hosts sit at fixed levels that change at
// given moments, whatever is applied: a good change on a fleet whose
// hosts drift apart, each on its own.
type levelMetrics struct {
	// level(host, t) is host's value at t.
	level func(host string, t time.Time) float64
}

func (m levelMetrics) Instant(_ context.Context, _ ports.Query, keys []string, at time.Time, out []float64) error {
	for i, k := range keys {
		out[i] = m.level(k, at)
	}
	return nil
}

func (m levelMetrics) Range(_ context.Context, _ ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	out := make([]ports.Samples, len(keys))
	for i, k := range keys {
		for t := from; !t.After(to); t = t.Add(step) {
			out[i].Timestamps = append(out[i].Timestamps, t.UnixMilli())
			out[i].Values = append(out[i].Values, m.level(k, t))
		}
	}
	return out, nil
}

// Two hosts of the last wave settle 10% lower between the canary's
// baseline window (the reference every host gets first) and wave-1's, and
// stay there; nothing else ever moves, and the change changes nothing. The
// rollout promotes. Before the detector of issue 8, the wave level L_w was
// the median over every re-baselined host while the fleet level F(t) was
// measured over the controls alone: here F/L_w was 0.9 from wave-1's
// start, wave-1's hosts were expected 10% below their baselines, read 2
// spreads high and rolled back (issue 11's good changes rolled back after
// a resume, whose longer runs leave more time to drift).
func TestDiDWaveLevelOverTheSameHosts(t *testing.T) {
	spec := `name: did
targets: {static: [web-1, web-2, web-3, web-4, web-5, web-6]}
canary: {hosts: 1, monitor: 4m}
waves: [{size: 3, monitor: 4m}, {size: 100%, monitor: 4m}]
apply: {playbook: playbooks/site.yml, version: v2}
revert: {playbook: playbooks/revert.yml}
metrics:
  url: http://127.0.0.1:1
  interval: 15s
  baseline: 10m
  queries:
    latency: {query: latency}
policies:
  - {name: fleet-threshold, rollback_when: 'top_mean(hosts, 0.30) > 5'}
`
	s, pols, err := load("testdata/did.yaml", []byte(spec), testEnv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := MakePlan(s, StaticHosts(s))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	// web-5 and web-6 (the last wave) settle 10% lower one minute into
	// the canary's monitoring, long before wave-1's baseline window ends.
	metrics := levelMetrics{level: func(h string, at time.Time) float64 {
		if (h == "web-5" || h == "web-6") && at.After(t0.Add(time.Minute)) {
			return 0.9
		}
		return 1
	}}
	store := newMemStore()
	journal, err := OpenJournal(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	ro := &Rollout{Spec: s, Policies: pols, Plan: plan, Metrics: metrics, Applier: &scriptedApplier{result: changedAll},
		Clock: NewSimClock(t0), RunID: "run-1", Journal: journal, History: &history.History{Store: store}}
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Report; r.Outcome != report.OutcomePromoted {
		t.Errorf("a change that moved nothing, on a fleet where two hosts settled 10%% lower before wave-1: %s (%s)", r.Outcome, r.Reason)
	}
}

// A host reverted before the crash is out of the resumed run in the
// engine too (not a host the policies judge, nor a control), like every
// host revertHosts takes out: one state, one truth.
func TestResumeExcludesRevertedHostsInTheEngine(t *testing.T) {
	ro, _, store := execRollout(t, execSpec, changedAll)
	t0 := ro.Clock.Now()
	crashed(t, ro, store,
		JournalEntry{Step: JournalApplyStart, Wave: "canary", Hosts: []string{"web-1"}, Start: t0},
		JournalEntry{Step: JournalApplyEnd, Wave: "canary", Hosts: []string{"web-1"}},
		JournalEntry{Step: JournalWavePassed, Wave: "canary", Hosts: []string{"web-1"}},
		JournalEntry{Step: JournalApplyStart, Wave: "wave-1", Hosts: []string{"web-2", "web-3", "web-4"}, Start: t0.Add(6 * time.Minute)},
		JournalEntry{Step: JournalApplyEnd, Wave: "wave-1", Hosts: []string{"web-2", "web-3", "web-4"}},
		JournalEntry{Step: JournalRevertStart, Hosts: []string{"web-3"}, Scope: ScopeHost},
		JournalEntry{Step: JournalRevertEnd, Hosts: []string{"web-3"}, Scope: ScopeHost},
	)
	x, err := newExecution(ro)
	if err != nil {
		t.Fatal(err)
	}
	x.Clock.Sleep(t.Context(), 7*time.Minute)
	v, err := x.resume(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var judged []string
	for _, h := range x.eng.Env().Hosts {
		judged = append(judged, h.Name)
	}
	if slices.Contains(judged, "web-3") || v.outcome != report.OutcomePromoted {
		t.Errorf("outcome %q; the policies judged %v: want web-3, reverted before the crash, out of them", v.outcome, judged)
	}
	if h := x.hosts[x.index["web-3"]]; !h.excluded || !h.reverted {
		t.Errorf("web-3: excluded %v, reverted %v", h.excluded, h.reverted)
	}
}
