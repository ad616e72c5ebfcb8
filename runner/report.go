package runner

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// This file keeps what a run tells people: the report, whose hosts are
// written from the hosts' state when the run ends, and the alerts.

// maxSeriesHosts bounds the fleets whose every series goes into the report
// for plotting; larger fleets keep the per-host summary only.
const maxSeriesHosts = 200

// newReport is the report's skeleton: every wave not started yet.
func newReport(r *Rollout) *report.Report {
	rep := &report.Report{
		RunID: r.RunID, Name: r.Spec.Name, DryRun: r.Applier == nil, Version: r.Spec.Apply.Version,
		Waves: []report.WaveReport{}, Hosts: []report.HostReport{}, Decisions: []report.Decision{},
		Context: r.Context,
	}
	if len(r.Plan.Hosts) <= maxSeriesHosts {
		rep.Series = map[string]map[string][]report.Point{}
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
		if math.IsNaN(v) {
			continue // a gap in the plot, not a zero
		}
		name := x.hosts[h].Name
		if x.report.Series[name] == nil {
			x.report.Series[name] = map[string][]report.Point{}
		}
		x.report.Series[name][query] = append(x.report.Series[name][query], report.Point{T: now, V: v})
	}
}

// trackScores keeps each host's worst score per metric for the report.
func (x *execution) trackScores() {
	for i := range x.hosts {
		hs := &x.hosts[i]
		if !hs.changed {
			continue
		}
		h := x.eng.Host(i)
		for m, q := range x.queries {
			if mt := h.Metrics[q.Name]; mt != nil && mt.Score > hs.maxScores[m] {
				hs.maxScores[m] = mt.Score
				hs.worst[m] = worstValue{mt.Current, mt.Z}
			}
		}
	}
}

// finishHosts writes the report's hosts, wave by wave, from each host's
// state and its final detector state.
func (x *execution) finishHosts() {
	for _, w := range x.Plan.Waves {
		for _, wh := range w.Hosts {
			i := x.index[wh.Name]
			hs := &x.hosts[i]
			rep := report.HostReport{
				Name: wh.Name, Wave: w.Name, Applied: hs.applied, Status: hs.status, Message: hs.message,
				ChangedTasks: append([]string{}, hs.changedTasks...), Reverted: hs.reverted, RevertReason: hs.revertReason,
				Snapshot: hs.snapshot, Metrics: map[string]report.MetricReport{},
			}
			h := x.eng.Host(i)
			for m, q := range x.queries {
				mt := h.Metrics[q.Name]
				if mt == nil {
					continue
				}
				rep.Metrics[q.Name] = report.MetricReport{
					Baseline: jsonSafe(mt.Baseline), Stddev: jsonSafe(mt.Stddev), Current: jsonSafe(mt.Current), Z: jsonSafe(mt.Z),
					Score: jsonSafe(mt.Score), MaxScore: hs.maxScores[m], Samples: mt.Samples, NoData: mt.NoData, LowConfidence: mt.LowConfidence,
					Worst: jsonSafe(hs.worst[m].current), WorstZ: jsonSafe(hs.worst[m].z),
				}
				rep.MaxScore = math.Max(rep.MaxScore, hs.maxScores[m])
			}
			x.report.Hosts = append(x.report.Hosts, rep)
		}
	}
}

// alert sends one alert; a failed delivery is logged, never fatal: the
// rollout's safety does not depend on a chat server.
func (x *execution) alert(ctx context.Context, event, wave string, hosts []string, reason string, values map[string]float64) {
	if x.Alerter == nil || x.dry() {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	a := ports.Alert{Event: event, Rollout: x.Spec.Name, RunID: x.RunID, Wave: wave, Hosts: hosts, Reason: reason,
		At: x.Clock.Now(), Values: values, ReportURL: x.ReportURL}
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
