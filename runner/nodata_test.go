package runner

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// gapMetrics is flatMetrics with no value for the hosts in missing (every
// host when nil) from from until to (forever when to is zero), and none
// ever, baseline included, for the hosts in silent.
type gapMetrics struct {
	flatMetrics
	from, to time.Time
	missing  []string
	silent   []string
}

func (g gapMetrics) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if err := g.flatMetrics.Instant(ctx, q, keys, at, out); err != nil {
		return err
	}
	if g.silent != nil {
		blank(keys, out, g.silent)
	}
	if at.Before(g.from) || !g.to.IsZero() && !at.Before(g.to) {
		return nil
	}
	blank(keys, out, g.missing)
	return nil
}

func (g gapMetrics) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	out, err := g.flatMetrics.Range(ctx, q, keys, from, to, step)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		if slices.Contains(g.silent, k) {
			out[i] = ports.Samples{}
		}
	}
	return out, nil
}

// blank takes the value of the hosts in missing (every host when nil)
// out of out.
func blank(keys []string, out []float64, missing []string) {
	for i, k := range keys {
		if missing == nil || slices.Contains(missing, k) {
			out[i] = math.NaN()
		}
	}
}

// A gap in the metrics across the whole fleet during the canary (the
// untouched hosts have no data either) is not the change: on_no_data: fail
// does not count it, monitoring holds until the data comes back (or
// detection.hold_limit passes, and then it fires: never promoted on missing
// data). The canary's data alone stopping still fires after no_data_ticks.
func TestFleetWideGapHolds(t *testing.T) {
	start := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		to       time.Time // zero: the data never comes back
		missing  []string
		outcome  string
		reason   string   // in the report's reason
		decision string   // in some decision's reason
		silent   []string // hosts that never report latency
	}{
		{"whole fleet, 8 minutes", start.Add(9 * time.Minute), nil, report.OutcomePromoted, "",
			"no data on latency on the untouched hosts either: a gap in the metrics, not the change; holding", nil},
		{"whole fleet, never back", time.Time{}, nil, report.OutcomeRolledBack,
			"no data after holding 5m past the monitoring period (no data on latency on the untouched hosts either: a gap in the metrics)",
			"a gap in the metrics, not the change", nil},
		{"canary only, 8 minutes", start.Add(9 * time.Minute), []string{"web-1"}, report.OutcomeRolledBack,
			"no data for 4 consecutive ticks (on_no_data: fail)", "", nil},
		// The canary's data stopping in the last ticks of its monitoring
		// period: the stage does not pass on missing data, it waits for
		// no_data_ticks and fires in the canary, on the canary.
		{"canary only, from its last 2 ticks", time.Time{}, []string{"web-1"}, report.OutcomeRolledBack,
			"no data for 4 consecutive ticks (on_no_data: fail)", "no data for 2 of 4 allowed ticks", nil},
		// Untouched hosts that never reported latency (no exporter for
		// it) tell nothing about its collection: the canary's no data is
		// its own.
		{"canary, beside untouched hosts that never reported", start.Add(9 * time.Minute), []string{"web-1"}, report.OutcomeRolledBack,
			"no data for 4 consecutive ticks (on_no_data: fail)", "", []string{"web-2", "web-3", "web-4"}},
		// The untouched hosts that did report tell the gap; the next
		// wave then cannot judge web-2, and halts before changing it.
		{"whole fleet, one untouched host never reported", start.Add(9 * time.Minute), nil, report.OutcomeHalted,
			"wave-1 not started: no baseline: query latency",
			"no data on latency on the untouched hosts either: a gap in the metrics, not the change; holding", []string{"web-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro, _, _ := execRollout(t, execSpec, changedAll)
			from := start.Add(time.Minute)
			if strings.Contains(tt.name, "last 2 ticks") {
				// A dry run, whose apply ends as it starts: the monitoring
				// period ends at the tick 5m after start.
				ro.Applier = nil
				from = start.Add(5*time.Minute - 15*time.Second)
			}
			ro.Metrics = gapMetrics{from: from, to: tt.to, missing: tt.missing, silent: tt.silent}
			r := executeGap(t, ro, "canary", tt.outcome, tt.reason, tt.decision)
			if tt.outcome == report.OutcomeRolledBack && tt.missing != nil {
				if r.Rollback == nil || !slices.Equal(r.Rollback.Hosts, tt.missing) || r.Waves[0].Outcome != report.WaveFired || r.Waves[1].Outcome != report.WaveNotStarted {
					t.Errorf("rollback %+v, waves %+v: want the canary fired and reverted on %v, no later wave started", r.Rollback, r.Waves, tt.missing)
				}
			}
			if tt.outcome != report.OutcomeRolledBack {
				// Held past its 5m until the data came back (9m after the
				// apply began), then passed.
				w := r.Waves[0]
				if held := w.FinishedAt.Sub(*w.ApplyStartedAt); w.Name != "canary" || w.Outcome != report.WavePassed || held < 9*time.Minute {
					t.Errorf("canary %s %s after %s: want passed after holding past 9m", w.Name, w.Outcome, held)
				}
			}
		})
	}
}

// A canary whose data stops after it passed, in the last wave: there are
// no untouched hosts left, and the canary is one of the hosts of the
// waves that passed that would tell a gap in the collection; but the last
// wave's hosts report, so the collection works and the silence is the
// canary's own. The no-data fire names it and reverts it beside the last
// wave (revert.scope wave): it is in no known state.
func TestPassedHostGoesSilentInTheLastWave(t *testing.T) {
	start := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	ro, _, _ := execRollout(t, execSpec, changedAll)
	ro.Applier = nil // a dry run: the canary's monitoring ends at 12:05
	ro.Metrics = gapMetrics{from: start.Add(6 * time.Minute), missing: []string{"web-1"}}
	r := executeGap(t, ro, "wave-1", report.OutcomeRolledBack,
		"no data for 4 consecutive ticks (on_no_data: fail): web-1 has no latency", "no data for 1 of 4 allowed ticks (on_no_data: fail): web-1 has no latency")
	if r.Waves[0].Outcome != report.WavePassed || r.Waves[1].Outcome != report.WaveFired {
		t.Errorf("waves %+v: want the canary passed, wave-1 fired", r.Waves)
	}
	got := slices.Sorted(slices.Values(r.Rollback.Hosts))
	if want := []string{"web-1", "web-2", "web-3", "web-4"}; !slices.Equal(got, want) {
		t.Errorf("reverted %v, want %v (wave-1, and the silent canary)", got, want)
	}
}

// lastWaveGap is flatMetrics with no value for the hosts in missing
// (every host when nil) during the ticks queries after the last wave's
// apply began (forever when ticks is 0), so that the gap falls in the last
// wave whatever the simulated apply took.
type lastWaveGap struct {
	flatMetrics
	applied *atomic.Bool
	queries *atomic.Int64
	ticks   int64
	missing []string
}

func (g lastWaveGap) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if err := g.flatMetrics.Instant(ctx, q, keys, at, out); err != nil {
		return err
	}
	if !g.applied.Load() {
		return nil
	}
	if n := g.queries.Add(1); g.ticks > 0 && n > g.ticks {
		return nil
	}
	blank(keys, out, g.missing)
	return nil
}

// In the last wave no host is left untouched: the hosts of the waves that
// passed tell a gap in the metrics from the change instead. A gap on every
// host holds, as in the canary; the last wave's data alone stopping still
// fires after no_data_ticks.
func TestLastWaveGapHolds(t *testing.T) {
	tests := []struct {
		name     string
		ticks    int64 // 0: the data never comes back
		missing  []string
		outcome  string
		reason   string // in the report's reason
		decision string // in some last-wave decision's reason
	}{
		{"whole fleet, 8 ticks", 8, nil, report.OutcomePromoted, "",
			"no data on latency on the hosts of the waves that passed either: a gap in the metrics, not the change; holding"},
		{"whole fleet, never back", 0, nil, report.OutcomeRolledBack,
			"no data after holding 5m past the monitoring period (no data on latency on the hosts of the waves that passed either: a gap in the metrics)",
			"a gap in the metrics, not the change"},
		{"last wave only, 8 ticks", 8, []string{"web-2", "web-3", "web-4"}, report.OutcomeRolledBack,
			"no data for 4 consecutive ticks (on_no_data: fail)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var applied atomic.Bool
			ro, _, _ := execRollout(t, execSpec, func(req ports.ApplyRequest) ports.ApplyResult {
				if !slices.Contains(req.Limit, "web-1") {
					applied.Store(true)
				}
				return changedAll(req)
			})
			if n := len(ro.Plan.Waves); n != 2 || ro.Plan.Waves[1].Name != "wave-1" {
				t.Fatalf("plan %+v: want the canary and wave-1", ro.Plan.Waves)
			}
			ro.Metrics = lastWaveGap{applied: &applied, queries: new(atomic.Int64), ticks: tt.ticks, missing: tt.missing}
			r := executeGap(t, ro, "wave-1", tt.outcome, tt.reason, tt.decision)
			if w := r.Waves[1]; tt.outcome == report.OutcomePromoted && (w.Name != "wave-1" || w.Outcome != report.WavePassed) {
				t.Errorf("last wave %s %s: want passed", w.Name, w.Outcome)
			}
		})
	}
}

// executeGap runs ro and checks its outcome, that the report's reason holds
// reason, and that some decision of wave's any-degraded policy holds
// decision.
func executeGap(t *testing.T, ro *Rollout, wave, outcome, reason, decision string) *report.Report {
	t.Helper()
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if r.Outcome != outcome || !strings.Contains(r.Reason, reason) {
		t.Fatalf("outcome %q (%s), want %q with %q", r.Outcome, r.Reason, outcome, reason)
	}
	var reasons []string
	for _, d := range r.Decisions {
		if d.Wave == wave && d.Policy == "any-degraded" {
			reasons = append(reasons, d.Reason)
		}
	}
	if !slices.ContainsFunc(reasons, func(s string) bool { return strings.Contains(s, decision) }) {
		t.Errorf("%s decisions %q: none says %q", wave, reasons, decision)
	}
	return r
}

// rotatingGap is flatMetrics in which one host misses each poll, in turn:
// a failed scrape here and there, never the same host twice in a row.
type rotatingGap struct{ flatMetrics }

func (g rotatingGap) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if err := g.flatMetrics.Instant(ctx, q, keys, at, out); err != nil {
		return err
	}
	out[int(at.Unix()/15)%len(keys)] = math.NaN()
	return nil
}

// In a fleet, some host misses a scrape at nearly every poll. That is no
// host without data: on_no_data: fail counts one host's consecutive
// silence, and a stage waits at its end only for the hosts that were
// silent when its monitoring period ended. (It counted every tick at
// which any host missed a poll: 200 hosts with 1% of scrapes failing
// rolled back 12 of 12 no-change dry runs, "no data for 4 consecutive
// ticks", and a stage never passed while some host missed the last poll.)
func TestScatteredMissedScrapesAreNoSilence(t *testing.T) {
	spec := strings.Replace(execSpec, "static: [web-1, web-2, web-3, web-4]", "static: [web-1, web-2, web-3, web-4, web-5, web-6, web-7]", 1)
	ro, _, _ := execRollout(t, spec, changedAll)
	ro.Metrics = rotatingGap{}
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if r.Outcome != report.OutcomePromoted {
		t.Fatalf("outcome %s (%s), want promoted", r.Outcome, r.Reason)
	}
	nodata := 0
	for _, d := range r.Decisions {
		if d.Outcome == "nodata" {
			nodata++
			if !strings.Contains(d.Reason, "no data for 1 of 4 allowed ticks") {
				t.Errorf("%s %s: %s, want no host silent for more than 1 tick", d.At.Format("15:04:05"), d.Wave, d.Reason)
			}
		}
	}
	if nodata == 0 {
		t.Error("no tick saw a missed scrape: the test tests nothing")
	}
	for _, w := range r.Waves {
		if held := w.FinishedAt.Sub(*w.ApplyEndedAt); w.Outcome != report.WavePassed || held > 5*time.Minute+15*time.Second {
			t.Errorf("%s %s %s after its apply: want passed within a poll of its 5m", w.Name, w.Outcome, held)
		}
	}
}

// restartMetrics is gapMetrics whose hosts in missing report times their
// level once their gap is over: a process restarted by the apply, whose
// exporter answers again with the change's effect.
type restartMetrics struct {
	gapMetrics
	times float64
}

func (g restartMetrics) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if err := g.gapMetrics.Instant(ctx, q, keys, at, out); err != nil {
		return err
	}
	for i, k := range keys {
		if !at.Before(g.to) && slices.Contains(g.missing, k) {
			out[i] *= g.times
		}
	}
	return nil
}

// A canary silent for all but the last poll of its monitoring period
// (its exporter restarted with the apply) has had one poll with data when
// the period ends, and one poll never decides: the stage holds until it
// has had the polls a decision needs (the warm-up and two in a row, the
// second after it), and only then passes, or fails on them. It passed on
// that one poll: at 5-minute polls and a 10-minute canary, x1.5 on the
// canary was rolled back 43 of 72 times with no missed poll and 0 of 72
// with one missed poll after the apply.
func TestStageWaitsForThePollsADecisionNeeds(t *testing.T) {
	start := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	spec := strings.Replace(execSpec, "  url: http://127.0.0.1:1\n", "  url: http://127.0.0.1:1\n  interval: 1m\n", 1)
	spec = strings.Replace(spec, "    rollback_when: 'fleet.degraded > 0'\n", "    rollback_when: 'fleet.degraded > 0'\n    on_no_data: hold\n", 1)
	tests := []struct {
		name    string
		times   float64
		outcome string
		canary  report.WaveOutcome
		ended   time.Duration // the canary's end, after the apply
	}{
		// At 1m polls the 2m warm-up is 2 polls: web-1 reports at 12:05,
		// 12:06 and 12:07, and 12:07 is the first that can decide.
		{"no change", 1, report.OutcomePromoted, report.WavePassed, 7 * time.Minute},
		{"x2 once it reports", 2, report.OutcomeRolledBack, report.WaveFired, 7 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro, _, _ := execRollout(t, spec, changedAll)
			ro.Applier = nil // a dry run: the apply ends as it starts, the period at 12:05
			ro.Metrics = restartMetrics{gapMetrics{from: start.Add(time.Minute), to: start.Add(5 * time.Minute), missing: []string{"web-1"}}, tt.times}
			res, err := ro.Execute(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			r := res.Report
			w := r.Waves[0]
			if r.Outcome != tt.outcome || w.Name != "canary" || w.Outcome != tt.canary {
				t.Fatalf("outcome %s (%s), canary %s: want %s, canary %s", r.Outcome, r.Reason, w.Outcome, tt.outcome, tt.canary)
			}
			if ended := w.FinishedAt.Sub(*w.ApplyStartedAt); ended != tt.ended {
				t.Errorf("canary %s after %s, want %s: judged on the polls a decision needs, no sooner", w.Outcome, ended, tt.ended)
			}
			var held []string
			for _, d := range r.Decisions {
				if d.Wave == "canary" && d.Policy == "on_no_data" && !d.Fired {
					held = append(held, d.At.Format("15:04")+" "+d.Reason)
				}
			}
			want := []string{
				"12:05 too few polls with data to decide: web-1 had 1 of 3 polls with data since its apply; holding (up to detection.hold_limit past the monitoring period)",
				"12:06 too few polls with data to decide: web-1 had 2 of 3 polls with data since its apply; holding (up to detection.hold_limit past the monitoring period)",
			}
			if !slices.Equal(held, want) {
				t.Errorf("the canary's holds:\n%s\nwant:\n%s", strings.Join(held, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
