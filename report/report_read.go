package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// This file reads a report the way an on-call engineer does: which
// metric on which host decided, by how much, and when each step happened.
// report.md and report.html both tell it from here, so they never
// disagree.

// Metric classes (MetricReport.Class), after Kayenta's per-metric
// classification.
const (
	ClassPass   = "pass"
	ClassHigh   = "high"
	ClassLow    = "low"
	ClassNoData = "nodata"
)

// presetBand is the baseline band of every sensitivity preset (3
// spreads); a report written before it carried "detection" is classified
// with it.
const presetBand = 3

// Classify gives a metric's class: nodata when the last tick brought no
// value (or there was no baseline); high or low when the metric left its
// baseline band in its worse direction (its z at its worst beyond
// det.Band spreads and the tolerance, the band verification uses, or its
// score over det.Threshold), named after that direction (high when higher
// is worse); pass otherwise. An improvement is a pass: like the
// detectors, the class judges the worse direction only.
func Classify(m MetricReport, worse string, det DetectionReport) string {
	if m.NoData || m.Samples == 0 {
		return ClassNoData
	}
	band := det.Band
	if band <= 0 {
		band = presetBand
	}
	if m.Stddev > 0 {
		band += m.Tolerance / m.Stddev
	}
	out := m.WorstZ > band
	if det.Threshold > 0 && m.MaxScore > det.Threshold {
		out = true
	}
	switch {
	case !out:
		return ClassPass
	case worse == "lower":
		return ClassLow
	}
	return ClassHigh
}

// Finding is one metric on one host, read for a person.
type Finding struct {
	Host, Metric string
	// Class: pass | high | low | nodata.
	Class    string
	Baseline float64
	// Observed is the value when the score peaked for a metric that left
	// its band (Worst is then true), otherwise the last value.
	Observed float64
	Worst    bool
	Z        float64
	MaxScore float64
}

// Moved says the metric left its band (high or low).
func (f Finding) Moved() bool { return f.Class == ClassHigh || f.Class == ClassLow }

// Effect is the change from the baseline as a person says it: "+54%",
// "+0.1" from a baseline of 0, "no data".
func (f Finding) Effect() string {
	if f.Class == ClassNoData {
		return "no data"
	}
	d := f.Observed - f.Baseline
	if f.Baseline == 0 {
		if d == 0 {
			return "±0"
		}
		return fmt.Sprintf("%+.3g", d)
	}
	p := 100 * d / math.Abs(f.Baseline)
	if math.Abs(p) < 0.5 {
		return "±0%"
	}
	return fmt.Sprintf("%+.0f%%", p)
}

// Change is "0.2033 → 0.3138" (or "0.2033 → no data").
func (f Finding) Change() string {
	if f.Class == ClassNoData {
		return num(f.Baseline) + " → no data"
	}
	return num(f.Baseline) + " → " + num(f.Observed)
}

// Sentence is the finding in one line: "latency_p95 on web-1: 0.2033 →
// 0.3138 (+54%, z 7.8, high)".
func (f Finding) Sentence() string {
	if f.Class == ClassNoData {
		return fmt.Sprintf("%s on %s: no data (baseline %s)", f.Metric, f.Host, num(f.Baseline))
	}
	return fmt.Sprintf("%s on %s: %s (%s, z %.1f, %s)", f.Metric, f.Host, f.Change(), f.Effect(), f.Z, f.Class)
}

// num formats a metric value with four significant digits.
func num(v float64) string { return fmt.Sprintf("%.4g", v) }

// worse is the direction of metric name that is a regression.
func (r *Report) worse(name string) string {
	for _, q := range r.Queries {
		if q.Name == name {
			return q.Worse
		}
	}
	return "higher"
}

func (r *Report) detection() DetectionReport {
	if r.Detection != nil {
		return *r.Detection
	}
	return DetectionReport{}
}

// finding reads one metric of one host.
func (r *Report) finding(h *HostReport, name string) Finding {
	m := h.Metrics[name]
	f := Finding{Host: h.Name, Metric: name, Class: m.Class, Baseline: m.Baseline, Observed: m.Current, Z: m.Z, MaxScore: m.MaxScore}
	if f.Class == "" {
		f.Class = Classify(m, r.worse(name), r.detection())
	}
	if f.Moved() {
		f.Observed, f.Z, f.Worst = m.Worst, m.WorstZ, true
	}
	return f
}

// findings reads every metric of a host, in metric order.
func (r *Report) findings(h *HostReport, order []string) []Finding {
	var fs []Finding
	for _, n := range order {
		if _, ok := h.Metrics[n]; ok {
			fs = append(fs, r.finding(h, n))
		}
	}
	return fs
}

// host returns the named host's report (nil when unknown).
func (r *Report) host(name string) *HostReport {
	for i := range r.Hosts {
		if r.Hosts[i].Name == name {
			return &r.Hosts[i]
		}
	}
	return nil
}

// degraded says a host had a metric that left its band.
func (r *Report) degraded(h *HostReport) bool {
	for n := range h.Metrics {
		if r.finding(h, n).Moved() {
			return true
		}
	}
	return false
}

// rollbacks lists every rollback, the one that ended the run last.
func (r *Report) rollbacks() []*Rollback {
	if len(r.Rollbacks) == 0 && r.Rollback != nil {
		return []*Rollback{r.Rollback}
	}
	return r.Rollbacks
}

// firedDecision is the fleet decision that ended the run (nil when none
// fired): of the fleet decisions that fired at the last tick one fired,
// the first in policy order, as the runner takes it.
func (r *Report) firedDecision() *Decision {
	var last *Decision
	for i := len(r.Decisions) - 1; i >= 0; i-- {
		d := &r.Decisions[i]
		if !d.Fired || d.Scope == "host" {
			continue
		}
		if last != nil && !d.At.Equal(last.At) {
			break
		}
		last = d
	}
	return last
}

// Deciding returns the findings that decided the run, most telling first
// (at most 4): on the hosts the fired policies reverted (or, without a
// revert, the changed hosts), the metrics that left their band; for a
// decision on missing data, the metrics without data; when no metric left
// its band, the one with the highest score. Nil when nothing fired, and
// for reverts that no metric decided (a failed apply, an interruption:
// NotApplied and the reason tell those).
func Deciding(r *Report) []Finding {
	var hosts []string
	for _, rb := range slices.Backward(r.rollbacks()) {
		if !metricTrigger(rb.Trigger) {
			continue
		}
		for _, n := range rb.Hosts {
			if !slices.Contains(hosts, n) {
				hosts = append(hosts, n)
			}
		}
	}
	d := r.firedDecision()
	if len(hosts) == 0 {
		if d == nil {
			return nil
		}
		for _, h := range r.Hosts {
			if h.Applied {
				hosts = append(hosts, h.Name)
			}
		}
	}
	nodata := d != nil && d.Outcome == "nodata"
	order := r.MetricOrder()
	var moved, missing, all []Finding
	for _, n := range hosts {
		h := r.host(n)
		if h == nil {
			continue
		}
		for _, f := range r.findings(h, order) {
			all = append(all, f)
			switch {
			case f.Moved():
				moved = append(moved, f)
			case f.Class == ClassNoData:
				missing = append(missing, f)
			}
		}
	}
	byScore := func(a, b Finding) int {
		if c := cmp.Compare(b.MaxScore, a.MaxScore); c != 0 {
			return c
		}
		return cmp.Compare(math.Abs(b.Z), math.Abs(a.Z))
	}
	var out []Finding
	switch {
	case nodata && len(missing) > 0:
		out = missing
	case len(moved) > 0:
		slices.SortStableFunc(moved, byScore)
		out = moved
	case len(missing) > 0:
		out = missing
	default:
		slices.SortStableFunc(all, byScore)
		if len(all) > 0 && all[0].MaxScore > 0 {
			out = all[:1]
		}
	}
	return out[:min(len(out), 4)]
}

// Largest is the changed hosts' metric with the highest score, for a run
// where nothing decided (ok false when no changed host scored at all).
func Largest(r *Report) (Finding, bool) {
	var best Finding
	ok := false
	for i := range r.Hosts {
		h := &r.Hosts[i]
		if !h.Applied {
			continue
		}
		for _, f := range r.findings(h, r.MetricOrder()) {
			if f.MaxScore > best.MaxScore {
				best, ok = f, true
			}
		}
	}
	return best, ok
}

// MetricOrder lists the metrics as a reader wants them: the deciding ones
// first, then the spec's order (alphabetical for reports without it).
func (r *Report) MetricOrder() []string {
	var names []string
	for _, q := range r.Queries {
		names = append(names, q.Name)
	}
	if len(names) == 0 {
		for _, h := range r.Hosts {
			for n := range h.Metrics {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
		slices.Sort(names)
	}
	return names
}

// metricOrder is MetricOrder with the deciding metrics moved to the
// front.
func (r *Report) metricOrder(deciding []Finding) []string {
	var out []string
	for _, f := range deciding {
		if !slices.Contains(out, f.Metric) {
			out = append(out, f.Metric)
		}
	}
	for _, n := range r.MetricOrder() {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// metricTrigger says a revert was a policy's judgement of the metrics,
// not the apply's failure or an interruption.
func metricTrigger(trigger string) bool {
	switch trigger {
	case TriggerApplyFailed, TriggerApplyError, TriggerApplyTimeout, TriggerInterrupt, TriggerError, TriggerAbort, TriggerResume:
		return false
	}
	return true
}

// statusesNotApplied are the apply results of a play that did not run to
// its end on a host (the applier's words: ports.HostFailed, ...).
var statusesNotApplied = []string{"failed", "unreachable", "skipped", "unmatched"}

// DidNotApply says the host's play did not run to its end: a task
// failed, the host was unreachable, no task ran on it (skipped) or no
// play matched it (unmatched).
func (h *HostReport) DidNotApply() bool { return slices.Contains(statusesNotApplied, h.Status) }

// Fate says what became of a host that did not apply: "reverted: apply
// failed on the host", or why it was left as it was ("no play matched
// it; left as it was").
func (h *HostReport) Fate() string {
	switch {
	case h.Reverted && h.RevertReason != "":
		return "reverted: " + h.RevertReason
	case h.Reverted:
		return "reverted"
	case h.RevertReason != "":
		return h.RevertReason
	}
	return "left as it was"
}

// NotApplied lists the hosts whose play did not run to its end, in the
// report's order.
func NotApplied(r *Report) []*HostReport {
	var out []*HostReport
	for i := range r.Hosts {
		if r.Hosts[i].DidNotApply() {
			out = append(out, &r.Hosts[i])
		}
	}
	return out
}

// NotAppliedLine names the hosts that did not apply with their status,
// up to n of them: "web-1 unmatched, web-3 failed (reverted)".
func NotAppliedLine(hosts []*HostReport, n int) string {
	var parts []string
	for _, h := range hosts {
		s := h.Name + " " + h.Status
		if h.Reverted {
			s += " (reverted)"
		}
		parts = append(parts, s)
	}
	return listNames(parts, n)
}

// RankedHosts orders the hosts worst first: reverted, then degraded (a
// metric left its band), then those that did not apply, then by highest
// score; hosts never changed last.
func RankedHosts(r *Report) []*HostReport {
	type ranked struct {
		h    *HostReport
		rank int
	}
	rs := make([]ranked, len(r.Hosts))
	for i := range r.Hosts {
		h := &r.Hosts[i]
		rank := 4
		switch {
		case h.Reverted:
			rank = 0
		case r.degraded(h):
			rank = 1
		case h.DidNotApply():
			rank = 2
		case h.Applied:
			rank = 3
		}
		rs[i] = ranked{h, rank}
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return cmp.Compare(b.h.MaxScore, a.h.MaxScore)
	})
	out := make([]*HostReport, len(rs))
	for i, x := range rs {
		out[i] = x.h
	}
	return out
}

// Mattered lists the hosts worth a person's look, worst first: the
// reverted and degraded hosts (at most maxBad; more counts those left
// out), then the changed hosts with the highest scores until fill hosts
// are listed.
func Mattered(r *Report, maxBad, fill int) (hosts []*HostReport, more int) {
	for _, h := range RankedHosts(r) {
		switch {
		case h.Reverted || r.degraded(h):
			if len(hosts) < maxBad {
				hosts = append(hosts, h)
			} else {
				more++
			}
		case h.Applied && h.MaxScore > 0 && len(hosts) < fill:
			hosts = append(hosts, h)
		}
	}
	return hosts, more
}

// Summary is the run's reason with the host-level reverts named, e.g.
// "every wave passed; 9 hosts carry the change; web-7 reverted (host
// policy extreme-host: host.metrics.error_rate.z = 50 > 12)".
func Summary(r *Report) string {
	parts := []string{}
	if r.Reason != "" {
		parts = append(parts, r.Reason)
	}
	for _, rb := range r.rollbacks() {
		if rb.HostLevel && len(rb.Hosts) > 0 {
			parts = append(parts, fmt.Sprintf("%s reverted (%s)", listNames(rb.Hosts, 5), rb.Reason))
		}
	}
	return strings.Join(parts, "; ")
}

// listNames joins up to n names and counts the rest.
func listNames(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// Moment kinds, in the order a run goes through them.
const (
	MomentBaseline = "baseline"
	MomentApply    = "apply"
	MomentPassed   = "passed"
	MomentFire     = "fire"
	MomentRevert   = "revert"
	MomentVerify   = "verify"
)

// Moment is one step of the run in time: a window (End set) or an
// instant.
type Moment struct {
	Kind string
	At   time.Time
	End  *time.Time
	// Wave is the wave the moment belongs to ("" for none).
	Wave string
	Text string
	// Bad marks what went wrong (a fire, a failed revert or verification).
	Bad bool
}

// maxFireMoments bounds the host-level fires listed in a timeline.
const maxFireMoments = 10

// Moments lists the run's steps in time order: each started wave's
// baseline window and apply, the waves that passed, the fired decisions,
// each revert and its verification.
func Moments(r *Report) []Moment {
	var ms []Moment
	for _, w := range r.Waves {
		if w.ApplyStartedAt == nil {
			continue
		}
		if w.BaselineFrom != nil {
			ms = append(ms, Moment{Kind: MomentBaseline, At: *w.BaselineFrom, End: w.ApplyStartedAt, Wave: w.Name,
				Text: fmt.Sprintf("baseline window of %s", w.Name)})
		}
		apply := Moment{Kind: MomentApply, At: *w.ApplyStartedAt, End: w.ApplyEndedAt, Wave: w.Name,
			Text: fmt.Sprintf("apply %s (%s)", w.Name, listNames(w.Hosts, 5))}
		var not []*HostReport
		for _, n := range w.Hosts {
			if h := r.host(n); h != nil && h.DidNotApply() {
				not = append(not, h)
			}
		}
		if len(not) > 0 {
			apply.Text += fmt.Sprintf(": did not apply on %d of %d: %s", len(not), len(w.Hosts), NotAppliedLine(not, 5))
			apply.Bad = true
		}
		ms = append(ms, apply)
		if w.Outcome == "passed" && w.FinishedAt != nil {
			ms = append(ms, Moment{Kind: MomentPassed, At: *w.FinishedAt, Wave: w.Name, Text: fmt.Sprintf("%s passed its %s of monitoring", w.Name, w.Monitor)})
		}
	}
	hostFires := 0
	for _, d := range r.Decisions {
		if !d.Fired {
			continue
		}
		who := d.Policy + " fired"
		if d.Host != "" {
			if hostFires++; hostFires > maxFireMoments {
				continue
			}
			who = fmt.Sprintf("%s fired on %s", d.Policy, d.Host)
		}
		ms = append(ms, Moment{Kind: MomentFire, At: d.At, Wave: d.Wave, Text: who + ": " + d.Reason, Bad: true})
	}
	if hostFires > maxFireMoments {
		ms = append(ms, Moment{Kind: MomentFire, At: r.FinishedAt, Text: fmt.Sprintf("…and %d more host-level fires in report.json", hostFires-maxFireMoments), Bad: true})
	}
	for _, rb := range r.rollbacks() {
		if len(rb.Hosts) == 0 {
			continue
		}
		end := rb.FinishedAt
		if rb.VerifyStartedAt != nil {
			end = *rb.VerifyStartedAt
		}
		ok := len(rb.Methods) > 0
		var how []string
		for _, m := range rb.Methods {
			ok = ok && m.OK
			how = append(how, m.Name)
		}
		ms = append(ms, Moment{Kind: MomentRevert, At: rb.StartedAt, End: &end,
			Text: fmt.Sprintf("revert %s (%s)", listNames(rb.Hosts, 5), strings.Join(how, ", ")), Bad: !ok})
		v := Moment{Kind: MomentVerify, At: rb.FinishedAt, Text: rb.Verification, Bad: !rb.Verified && !r.DryRun}
		if rb.VerifyStartedAt != nil {
			v.At, v.End = *rb.VerifyStartedAt, &rb.FinishedAt
		}
		if v.Text == "" {
			v.Text = map[bool]string{true: "verified", false: "not verified"}[rb.Verified]
		}
		ms = append(ms, v)
	}
	slices.SortStableFunc(ms, func(a, b Moment) int { return a.At.Compare(b.At) })
	return ms
}

// firstApply is when the first wave's apply started (zero when none did).
func (r *Report) firstApply() time.Time {
	for _, w := range r.Waves {
		if w.ApplyStartedAt != nil {
			return *w.ApplyStartedAt
		}
	}
	return time.Time{}
}

// Attributed is what changed on a host next to what degraded on it.
type Attributed struct {
	Host string
	// Tasks are the tasks that changed something on the host, in order.
	Tasks []string
	// Moved are the host's metrics that left their band.
	Moved []Finding
}

// Attribution reads, for a host whose metrics left their band, what
// changed on it next to what degraded (Moved is nil for a host with no
// moved metric).
func Attribution(r *Report, h *HostReport) Attributed {
	a := Attributed{Host: h.Name, Tasks: slices.Compact(slices.Clone(h.ChangedTasks))}
	for _, f := range r.findings(h, r.MetricOrder()) {
		if f.Moved() {
			a.Moved = append(a.Moved, f)
		}
	}
	return a
}

// String says it in one line: "after `Write app.conf` changed on web-1,
// latency_p95 0.2033 → 0.3138 (+54%)".
func (a Attributed) String() string {
	var moved []string
	for _, f := range a.Moved {
		moved = append(moved, fmt.Sprintf("%s %s (%s)", f.Metric, f.Change(), f.Effect()))
	}
	if len(a.Tasks) == 0 {
		return fmt.Sprintf("on %s, %s", a.Host, strings.Join(moved, ", "))
	}
	tasks := make([]string, len(a.Tasks))
	for i, t := range a.Tasks {
		tasks[i] = "`" + strings.ReplaceAll(t, "`", "'") + "`"
	}
	return fmt.Sprintf("after %s changed on %s, %s", listNames(tasks, 4), a.Host, strings.Join(moved, ", "))
}

// NoDataGroup is one host's metrics that stopped reporting.
type NoDataGroup struct {
	Host    string
	Metrics []string
	// Since is when the host last had a value, or its wave's apply
	// started (zero when unknown).
	Since time.Time
}

// groupNoData splits findings into the ones with values and one group per
// host for those without: "no data from web-1 for cpu, latency_p95 since
// 12:00:00" reads better than one line per metric.
func groupNoData(r *Report, fs []Finding) (valued []Finding, groups []NoDataGroup) {
	for _, f := range fs {
		if f.Class != ClassNoData {
			valued = append(valued, f)
			continue
		}
		i := slices.IndexFunc(groups, func(g NoDataGroup) bool { return g.Host == f.Host })
		if i < 0 {
			groups = append(groups, NoDataGroup{Host: f.Host})
			i = len(groups) - 1
		}
		g := &groups[i]
		g.Metrics = append(g.Metrics, f.Metric)
		if h := r.host(f.Host); h != nil {
			if s := noDataSince(r, h, f.Metric); s.After(g.Since) {
				g.Since = s
			}
		}
	}
	return valued, groups
}
