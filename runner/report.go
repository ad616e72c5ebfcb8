package runner

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// This file keeps what a run tells people: the report, whose hosts are
// written from the hosts' state when the run ends, and the alerts.

// maxSeriesHosts bounds the fleets whose every series goes into the report
// for plotting; larger fleets keep the per-host summary only.
const maxSeriesHosts = 200

// newReport is the report's skeleton: the metrics in the spec's order,
// the detection parameters that classify them, every wave not started
// yet.
func newReport(r *Rollout, det policies.DetectorConfig) *report.Report {
	rep := &report.Report{
		RunID: r.RunID, Name: r.Spec.Name, DryRun: r.Applier == nil, Version: r.Spec.Apply.Version,
		Waves: []report.WaveReport{}, Hosts: []report.HostReport{}, Decisions: []report.Decision{},
		Context: r.Context,
	}
	for _, q := range r.Spec.Metrics.Queries {
		worse := q.Worse
		if worse == "" {
			worse = "higher"
		}
		rep.Queries = append(rep.Queries, report.QueryReport{Name: q.Name, Worse: worse})
	}
	sens := r.Spec.Detection.Sensitivity
	if sens == "" {
		sens = "medium"
	}
	rep.Detection = &report.DetectionReport{Sensitivity: sens, Threshold: det.Threshold, Band: det.Band}
	if len(r.Plan.Hosts) <= maxSeriesHosts {
		rep.Series = map[string]map[string][]report.Point{}
		rep.BaselineSeries = map[string]map[string][]report.Point{}
	}
	for _, w := range r.Plan.Waves {
		rep.Waves = append(rep.Waves, report.WaveReport{
			Name: w.Name, Index: w.Index, Hosts: hostNames(w.Hosts), Outcome: report.WaveNotStarted, Monitor: fmtDuration(w.Monitor),
		})
	}
	return rep
}

// recordSeries keeps one query's values at now for the plots.
func (x *execution) recordSeries(query string, now time.Time, values []float64) {
	if x.report.Series == nil {
		return
	}
	for h, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue // a gap in the plot, not a zero (JSON has no infinity)
		}
		name := x.hosts[h].Name
		if x.report.Series[name] == nil {
			x.report.Series[name] = map[string][]report.Point{}
		}
		x.report.Series[name][query] = append(x.report.Series[name][query], report.Point{T: now, V: v})
	}
}

// recordBaseline keeps the baseline samples a host was read with, for
// the plots. A host untouched by earlier waves has its baseline read
// again before each wave; the windows overlap, so only samples after the
// ones kept are added.
func (x *execution) recordBaseline(host int, query string, s ports.Samples) {
	if x.report.BaselineSeries == nil || len(s.Values) == 0 {
		return
	}
	name := x.hosts[host].Name
	if x.report.BaselineSeries[name] == nil {
		x.report.BaselineSeries[name] = map[string][]report.Point{}
	}
	pts := x.report.BaselineSeries[name][query]
	for j, ms := range s.Timestamps {
		t := time.UnixMilli(ms).UTC()
		if n := len(pts); (n > 0 && !t.After(pts[n-1].T)) || math.IsNaN(s.Values[j]) || math.IsInf(s.Values[j], 0) {
			continue
		}
		pts = append(pts, report.Point{T: t, V: s.Values[j]})
	}
	x.report.BaselineSeries[name][query] = pts
}

// trackScores keeps, while a host carries the change, its worst score per
// metric for the report, and when its regression became visible (a metric
// out of its band in its worse direction) for the decision delay.
func (x *execution) trackScores(now time.Time) {
	for i := range x.hosts {
		hs := &x.hosts[i]
		if !hs.carries() {
			continue // a reverted host's detectors restart: not its regression
		}
		h := x.eng.Host(i)
		for m, q := range x.queries {
			mt := h.Metrics[q.Name]
			if mt == nil {
				continue
			}
			// The worst moment is the highest score; while the score
			// has not risen (a warm-up, a host policy firing on z
			// first), the highest z.
			if mt.Score > hs.maxScores[m] || (hs.maxScores[m] == 0 && mt.Z > hs.worst[m].z) {
				hs.maxScores[m] = mt.Score
				hs.worst[m] = worstValue{mt.Current, mt.Z}
			}
			if hs.visibleAt.IsZero() && !mt.NoData && outside(mt, x.det.Band) {
				hs.visibleAt = now
			}
		}
	}
}

// outside says a metric is out of its baseline band in its worse
// direction: beyond the tolerance and band spreads (the band verification
// uses).
func outside(mt *policies.Metric, band float64) bool {
	limit := band
	if mt.Stddev > 0 {
		limit += mt.Tolerance / mt.Stddev
	}
	return mt.Z > limit
}

// finishHosts writes the report's hosts, wave by wave, from each host's
// state and its final detector state.
func (x *execution) finishHosts() {
	for _, w := range x.Plan.Waves {
		for _, wh := range w.Hosts {
			x.report.Hosts = append(x.report.Hosts, x.hostReport(x.index[wh.Name]))
		}
	}
}

// hostReport is host i as the report tells it, from its state and its
// detectors' state now; every metric classified.
func (x *execution) hostReport(i int) report.HostReport {
	hs := &x.hosts[i]
	rep := report.HostReport{
		Name: hs.Name, Wave: hs.wave, Applied: hs.applied, Status: hs.status, Message: hs.message,
		ChangedTasks: append([]string{}, hs.changedTasks...), Reverted: hs.reverted, RevertReason: hs.revertReason,
		Snapshot: hs.snapshot, Metrics: map[string]report.MetricReport{},
	}
	h := x.eng.Host(i)
	for m, q := range x.queries {
		mt := h.Metrics[q.Name]
		if mt == nil {
			continue
		}
		mr := report.MetricReport{
			Baseline: jsonSafe(mt.Baseline), Stddev: jsonSafe(mt.Stddev), Current: jsonSafe(mt.Current), Z: jsonSafe(mt.Z),
			Score: jsonSafe(mt.Score), MaxScore: hs.maxScores[m], Samples: mt.Samples, NoData: mt.NoData, LowConfidence: mt.LowConfidence,
			Worst: jsonSafe(hs.worst[m].current), WorstZ: jsonSafe(hs.worst[m].z), Tolerance: jsonSafe(mt.Tolerance),
		}
		mr.Class = report.Classify(mr, x.report.Queries[m].Worse, *x.report.Detection)
		rep.Metrics[q.Name] = mr
		rep.MaxScore = math.Max(rep.MaxScore, hs.maxScores[m])
	}
	return rep
}

// attribution says, for each named host that degraded, what changed on
// it next to what degraded: "after `Write app.conf` changed on web-1,
// latency_p95 0.2033 → 0.3138 (+54%)". Read before a revert restarts the
// hosts' detectors.
func (x *execution) attribution(names []string) []string {
	var out []string
	for _, n := range names {
		hr := x.hostReport(x.index[n])
		if a := report.Attribution(x.report, &hr); a.Moved != nil {
			out = append(out, a.String())
		}
	}
	return out
}

// decided records one policy outcome in the report and the telemetry.
func (x *execution) decided(d report.Decision) {
	x.report.Decisions = append(x.report.Decisions, d)
	x.tel.Decision(d.Policy, d.Scope, d.Outcome)
}

// firedAfter tells the telemetry how long after the regression became
// visible on the given hosts (the earliest of them) policy fired; nothing
// when none of them was out of its band (a fire on missing data).
func (x *execution) firedAfter(policy string, now time.Time, hosts []int) {
	var first time.Time
	for _, i := range hosts {
		if v := x.hosts[i].visibleAt; !v.IsZero() && (first.IsZero() || v.Before(first)) {
			first = v
		}
	}
	if !first.IsZero() {
		x.tel.Decided(policy, now.Sub(first))
	}
}

// alert sends one alert; a failed delivery is logged, never fatal: the
// rollout's safety does not depend on a chat server. attribution lines
// say what changed next to what degraded.
func (x *execution) alert(ctx context.Context, event, wave string, hosts []string, reason string, values map[string]float64, attribution []string) {
	if x.Alerter == nil || x.dry() {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	a := ports.Alert{Event: event, Rollout: x.Spec.Name, RunID: x.RunID, Wave: wave, Hosts: hosts, Reason: reason,
		At: x.Clock.Now(), Values: values, ReportURL: x.ReportURL, Attribution: attribution}
	if err := x.Alerter.Send(actx, a); err != nil {
		x.log.Warn("alert not delivered", "event", event, "err", err)
		x.logf("   alert %s not delivered: %v", event, err)
	}
}

func jsonSafe(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func jsonSafeMap(m map[string]float64) map[string]float64 {
	for k, v := range m {
		m[k] = jsonSafe(v)
	}
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

func bracket(s string) string {
	if s == "" {
		return ""
	}
	return "[" + s + "] "
}

func ptr[T any](v T) *T { return &v }
