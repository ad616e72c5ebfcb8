package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/steps"
)

// Rollout is one run of a spec over a plan: live (an Applier is set) or
// dry (no Applier: applies and reverts are simulated, and the metrics come
// from a recording under a simulated clock).
type Rollout struct {
	Spec     *Spec
	Policies []*policies.Policy
	Plan     *Plan
	Metrics  steps.MetricsSource
	// Applier runs playbooks; nil makes this a dry run.
	Applier steps.Applier
	Clock   steps.Clock
	// Out receives the human timeline (nil: discarded).
	Out    io.Writer
	Logger *slog.Logger
	RunID  string
	// Alerter sends alerts (nil: none; a dry run sends none).
	Alerter steps.Alerter
	// ReportURL links alerts to the report (a CI run URL); may be empty.
	ReportURL string
	// Context records where the run ran (CI job, Nomad allocation) in
	// the report.
	Context map[string]string
	// Journal records every step before it acts (nil: no journal, as in
	// a dry run).
	Journal *Journal
	// History keeps the applied versions per host and marks known-good
	// ones (nil: none).
	History *steps.History
	// Snapshots takes and restores per-host snapshots (nil: none).
	Snapshots steps.Snapshotter
	// SnapshotSkipHost: a host whose snapshot failed is not changed
	// (revert.snapshot.on_failure: skip_host, the default).
	SnapshotSkipHost bool
	// Resume, when set, continues the unfinished run it describes (or
	// reverts everything it changed, with Abort).
	Resume *Resume
	Abort  bool

	// state of one execution
	eng       *policies.Engine
	keys      []string
	index     map[string]int
	changed   []bool
	excluded  []bool
	report    *steps.Report
	hostRep   []*steps.HostReport
	queries   []steps.Query
	buf       []float64
	errTicks  int
	lastErr   error
	maxScores [][]float64
	// worst holds each host's metric at its highest score.
	worst [][]worstValue
	// alerted marks hosts whose degradation was already alerted.
	alerted []bool
	// snapshot names the snapshot taken of each host ("" when none).
	snapshot []string
}

// Result is what a rollout ended with.
type Result struct {
	Report *steps.Report
	// ExitCode follows the command-line contract: 0 promoted, 3 rolled
	// back, 4 halted, 1 error.
	ExitCode int
}

// ExitCode maps an outcome to the contract's exit code.
func ExitCode(outcome string) int {
	switch outcome {
	case steps.OutcomePromoted:
		return 0
	case steps.OutcomeRolledBack:
		return 3
	case steps.OutcomeHalted:
		return 4
	}
	return 1
}

func (r *Rollout) dry() bool { return r.Applier == nil }

func (r *Rollout) logf(format string, args ...any) {
	if r.Out != nil {
		fmt.Fprintf(r.Out, format+"\n", args...)
	}
}

// Execute runs the rollout wave by wave and returns its report. An error
// is returned only when the rollout could not run at all; a run that
// started always yields a report, with outcome "error" if it broke.
func (r *Rollout) Execute(ctx context.Context) (*Result, error) {
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if err := r.setup(); err != nil {
		return nil, err
	}
	rep := r.report
	rep.StartedAt = r.Clock.Now()
	var outcome, reason string
	var err error
	switch {
	case r.Resume != nil && r.Abort:
		outcome, reason, err = r.abort(ctx)
	case r.Resume != nil:
		outcome, reason, err = r.resume(ctx)
	default:
		if r.Journal != nil {
			err = r.Journal.Begin(ctx, JournalDoc{RunID: r.RunID, Rollout: r.Spec.Name, Version: r.Spec.Apply.Version, StartedAt: rep.StartedAt, Plan: r.journalPlan()})
		}
		if err == nil {
			outcome, reason, err = r.waves(ctx, 0)
		}
	}
	if err != nil {
		outcome, reason = steps.OutcomeError, err.Error()
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			outcome, reason = steps.OutcomeHalted, r.interrupted(ctx)
		}
	}
	if outcome == steps.OutcomePromoted && !r.dry() {
		// A promoted rollout whose host-level revert did not recover is
		// not a success: a person must look at that host.
		for _, rb := range rep.Rollbacks {
			if !rb.Verified {
				outcome = steps.OutcomeHalted
				reason += fmt.Sprintf("; but the revert of %s was not verified (%s): a person must look", strings.Join(rb.Hosts, ", "), rb.Verification)
				break
			}
		}
	}
	rep.Outcome, rep.Reason = outcome, reason
	rep.FinishedAt = r.Clock.Now()
	switch outcome {
	case steps.OutcomePromoted:
		r.alert(ctx, steps.EventPromoted, "", nil, reason, nil)
	case steps.OutcomeHalted, steps.OutcomeError:
		r.alert(ctx, steps.EventHalted, "", nil, reason, nil)
	}
	if outcome == steps.OutcomePromoted {
		r.deleteSnapshots(ctx)
	}
	r.finishHosts()
	r.journal(ctx, JournalEntry{Step: JournalRunEnd, Detail: outcome})
	return &Result{Report: rep, ExitCode: ExitCode(outcome)}, nil
}

func (r *Rollout) setup() error {
	spec := r.Spec
	hosts := r.Plan.Hosts
	r.index = make(map[string]int, len(hosts))
	names := make([]string, len(hosts))
	for i, h := range hosts {
		r.index[h.Name] = i
		names[i] = h.Name
	}
	keys, err := hostKeys(spec.Metrics.HostValue, hosts)
	if err != nil {
		return err
	}
	r.keys = keys
	det, err := detectorConfig(spec)
	if err != nil {
		return err
	}
	var mcfg []policies.MetricConfig
	for _, q := range spec.Metrics.Queries {
		rel, abs := det.RelFloor, det.AbsFloor
		if q.RelFloor != nil {
			rel = *q.RelFloor
		}
		if q.AbsFloor != nil {
			abs = *q.AbsFloor
		}
		mcfg = append(mcfg, policies.MetricConfig{Name: q.Name, HigherIsWorse: q.Worse != "lower", RelFloor: rel, AbsFloor: abs})
		r.queries = append(r.queries, steps.Query{Name: q.Name, Expr: q.Query})
	}
	evals := make([]policies.Evaluator, len(r.Policies))
	for i, p := range r.Policies {
		evals[i] = p
	}
	r.eng, err = policies.NewEngine(policies.EngineConfig{
		Hosts: names, Metrics: mcfg, Detector: det, Policies: evals,
		NoDataTicks: spec.Detection.NoDataTicks,
	})
	if err != nil {
		return fmt.Errorf("rollout %q: %w", spec.Name, err)
	}
	r.changed = make([]bool, len(hosts))
	r.alerted = make([]bool, len(hosts))
	r.snapshot = make([]string, len(hosts))
	r.excluded = make([]bool, len(hosts))
	r.buf = make([]float64, len(hosts))
	r.maxScores = make([][]float64, len(hosts))
	r.worst = make([][]worstValue, len(hosts))
	for i := range r.maxScores {
		r.maxScores[i] = make([]float64, len(r.queries))
		r.worst[i] = make([]worstValue, len(r.queries))
	}
	r.report = &steps.Report{
		RunID: r.RunID, Name: spec.Name, DryRun: r.dry(), Version: spec.Apply.Version,
		Waves: []steps.WaveReport{}, Hosts: []steps.HostReport{}, Decisions: []steps.Decision{},
		Context: r.Context,
	}
	if len(hosts) <= maxSeriesHosts {
		r.report.Series = map[string]map[string][]steps.Point{}
	}
	for _, w := range r.Plan.Waves {
		r.report.Waves = append(r.report.Waves, steps.WaveReport{
			Name: w.Name, Index: w.Index, Hosts: hostNames(w.Hosts), Outcome: "not_started", Monitor: fmtDuration(w.Monitor),
		})
		for _, h := range w.Hosts {
			r.report.Hosts = append(r.report.Hosts, steps.HostReport{Name: h.Name, Wave: w.Name, ChangedTasks: []string{}, Metrics: map[string]steps.MetricReport{}})
		}
	}
	r.hostRep = make([]*steps.HostReport, len(hosts))
	for i := range r.report.Hosts {
		r.hostRep[r.index[r.report.Hosts[i].Name]] = &r.report.Hosts[i]
	}
	return nil
}

// interrupted leaves a safe state after the run was stopped from outside
// (SIGINT, SIGTERM, a lost lock): per revert.on_interrupt it reverts every
// host changed so far, or freezes them, and says which.
func (r *Rollout) interrupted(ctx context.Context) string {
	var hosts []string
	for i, h := range r.Plan.Hosts {
		if r.changed[i] && !r.excluded[i] {
			hosts = append(hosts, h.Name)
		}
	}
	cause := context.Cause(ctx)
	if cause == nil {
		cause = context.Canceled
	}
	if len(hosts) == 0 {
		return fmt.Sprintf("interrupted (%v) before any host was changed", cause)
	}
	if r.Spec.Revert.OnInterrupt == ModeFreeze {
		return fmt.Sprintf("interrupted (%v); %d hosts keep the change (on_interrupt: freeze): %s", cause, len(hosts), abbreviate(hosts, 8))
	}
	r.logf("   interrupted (%v): reverting %s", cause, abbreviate(hosts, 8))
	rb := r.revertHosts(context.WithoutCancel(ctx), hosts, fmt.Sprintf("interrupted: %v", cause), "interrupt", false)
	rb.Scope = ScopeAll
	return fmt.Sprintf("interrupted (%v); reverted %d hosts (on_interrupt: revert), verified: %v", cause, len(hosts), rb.Verified)
}

// alert sends one alert; a failed delivery is logged, never fatal: the
// rollout's safety does not depend on a chat server.
func (r *Rollout) alert(ctx context.Context, event, wave string, hosts []string, reason string, values map[string]float64) {
	if r.Alerter == nil || r.dry() {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	a := steps.Alert{Event: event, Rollout: r.Spec.Name, RunID: r.RunID, Wave: wave, Hosts: hosts, Reason: reason,
		At: r.Clock.Now(), Values: values, ReportURL: r.ReportURL}
	if err := r.Alerter.Send(actx, a); err != nil {
		r.Logger.Warn("alert not delivered", "event", event, "err", err)
		r.logf("   alert %s not delivered: %v", event, err)
	}
}

// worstValue is a metric's smoothed value and z when its score peaked.
type worstValue struct{ current, z float64 }

// maxSeriesHosts bounds the fleets whose every series goes into the report
// for plotting; larger fleets keep the per-host summary only.
const maxSeriesHosts = 200

// hostKeys renders metrics.host_value for every host.
func hostKeys(tmpl string, hosts []steps.Host) ([]string, error) {
	if tmpl == "" {
		tmpl = "{{.Host.Name}}"
	}
	t, err := template.New("host_value").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("metrics.host_value: %w", err)
	}
	keys := make([]string, len(hosts))
	var b bytes.Buffer
	for i, h := range hosts {
		b.Reset()
		if err := t.Execute(&b, map[string]any{"Host": h}); err != nil {
			return nil, fmt.Errorf("metrics.host_value for host %s: %w", h.Name, err)
		}
		keys[i] = b.String()
	}
	return keys, nil
}

func detectorConfig(spec *Spec) (policies.DetectorConfig, error) {
	d := spec.Detection
	sens := d.Sensitivity
	if sens == "" {
		sens = "medium"
	}
	cfg, err := policies.Preset(sens)
	if err != nil {
		return cfg, fmt.Errorf("detection.sensitivity: %w", err)
	}
	if d.Allowance != nil {
		cfg.Allowance = *d.Allowance
	}
	if d.Threshold != nil {
		cfg.Threshold = *d.Threshold
	}
	if d.Smoothing != nil {
		cfg.Smoothing = *d.Smoothing
	}
	if d.RelFloor != nil {
		cfg.RelFloor = *d.RelFloor
	}
	if d.AbsFloor != nil {
		cfg.AbsFloor = *d.AbsFloor
	}
	if d.MinBaselineSamples > 0 {
		cfg.MinBaselineSamples = d.MinBaselineSamples
	}
	return cfg, nil
}

// waves runs every wave, then the bake period, and says how it ended.
func (r *Rollout) waves(ctx context.Context, from int) (outcome, reason string, err error) {
	for wi := from; wi < len(r.Plan.Waves); wi++ {
		w := r.Plan.Waves[wi]
		fired, why, err := r.wave(ctx, wi, w, nil)
		if err != nil {
			return "", "", err
		}
		if fired != "" {
			return fired, why, nil
		}
	}
	if r.Plan.Bake > 0 {
		last := r.Plan.Waves[len(r.Plan.Waves)-1]
		r.logf("bake: watching the whole fleet for %s", fmtDuration(r.Plan.Bake))
		fired, why, err := r.watch(ctx, len(r.Plan.Waves)-1, PlannedWave{Name: "bake", Index: last.Index, Hosts: nil}, r.Clock.Now(), r.Clock.Now(), r.Plan.Bake, nil)
		if err != nil {
			return "", "", err
		}
		if fired != "" {
			return fired, why, nil
		}
	}
	n := 0
	for i := range r.changed {
		if r.changed[i] && !r.excluded[i] {
			n++
		}
	}
	return steps.OutcomePromoted, fmt.Sprintf("every wave passed; %d hosts carry the change", n), nil
}

// wave runs one wave: baseline, apply, monitor, decide. It returns a
// non-empty outcome when the rollout must stop.
func (r *Rollout) wave(ctx context.Context, wi int, w PlannedWave, rw *resumeWave) (string, string, error) {
	wr := &r.report.Waves[wi]
	start := r.Clock.Now()
	if rw != nil {
		start = rw.start
	}
	wr.ApplyStartedAt = ptr(start)
	r.logf("── %s: %d hosts (%s), monitor %s", w.Name, len(w.Hosts), abbreviate(hostNames(w.Hosts), 8), fmtDuration(w.Monitor))

	// Baseline for the wave's hosts and for every untouched host, taken
	// over the same window, so the untouched ones serve as controls.
	var baseHosts []int
	for i := range r.Plan.Hosts {
		if !r.changed[i] && !r.excluded[i] {
			baseHosts = append(baseHosts, i)
		}
	}
	if err := r.baseline(ctx, start, baseHosts); err != nil {
		wr.Outcome = "error"
		wr.FinishedAt = ptr(r.Clock.Now())
		return "", "", fmt.Errorf("baseline for wave %s: %w", w.Name, err)
	}
	// Snapshots first: a host whose snapshot failed is not changed
	// (snapshot.on_failure: skip_host, the default).
	hosts := r.liveHosts(w.Hosts)
	if rw != nil {
		hosts = rw.hosts
	}
	if r.Snapshots != nil && (rw == nil || !rw.snapshotted) && len(hosts) > 0 {
		var err error
		if hosts, err = r.takeSnapshots(ctx, w, hosts); err != nil {
			wr.Outcome = "error"
			wr.FinishedAt = ptr(r.Clock.Now())
			return "", "", err
		}
	}
	idx := make([]int, len(hosts))
	for i, h := range hosts {
		idx[i] = r.index[h.Name]
		r.changed[idx[i]] = true
	}
	r.eng.StartWave(w.Name, w.Index, idx)
	if err := r.journalMust(ctx, JournalEntry{Step: JournalApplyStart, Wave: w.Name, Hosts: hostNames(hosts), Start: start}); err != nil {
		wr.Outcome = "error"
		wr.FinishedAt = ptr(r.Clock.Now())
		return "", "", err
	}

	// Apply, watched while it runs.
	applyDone := make(chan applyOutcome, 1)
	applyCtx, cancelApply := context.WithCancel(ctx)
	defer cancelApply()
	switch {
	case len(hosts) == 0:
		applyDone <- applyOutcome{}
	case r.dry() || (rw != nil && rw.applied):
		// A dry run's apply is simulated; a resumed run whose apply
		// ended before the crash does not apply again.
		res := steps.ApplyResult{}
		for _, h := range hosts {
			res.Hosts = append(res.Hosts, steps.HostResult{Host: h.Name, Status: steps.HostChanged})
		}
		applyDone <- applyOutcome{res: res, resumed: rw != nil}
	default:
		req := r.applyRequest(ctx, hostNames(hosts))
		go func() {
			res, err := r.Applier.Apply(applyCtx, req, func(ev steps.ApplyEvent) {
				r.logf("   %s  %s: %s", ev.Host, ev.Task, ev.Status)
			})
			applyDone <- applyOutcome{res: res, err: err}
		}()
	}
	outcome, why, err := r.watch(ctx, wi, w, start, time.Time{}, w.Monitor, applyDone)
	cancelApply()
	wr.FinishedAt = ptr(r.Clock.Now())
	switch {
	case err != nil:
		wr.Outcome = "error"
	case outcome == "":
		wr.Outcome = "passed"
		r.passed(ctx, w)
	case outcome == steps.OutcomeHalted:
		wr.Outcome = "halted"
	default:
		wr.Outcome = "fired"
	}
	return outcome, why, err
}

type applyOutcome struct {
	res steps.ApplyResult
	err error
	// resumed says the apply ended before a crash: it is not journaled
	// or recorded in the history again.
	resumed bool
}

func (r *Rollout) applyRequest(ctx context.Context, limit []string) steps.ApplyRequest {
	return steps.ApplyRequest{
		Playbook:          r.Spec.Apply.Playbook,
		Inventory:         r.Plan.Hosts,
		Limit:             limit,
		ExtraVars:         r.Spec.Apply.ExtraVars,
		Forks:             r.Spec.Apply.Forks,
		VaultPasswordFile: r.Spec.Apply.VaultPasswordFile,
		OnStart:           func(pid int) { r.journalPlaybook(ctx, pid) },
	}
}

// baseline sets every given host's baseline from [at-baseline, at).
func (r *Rollout) baseline(ctx context.Context, at time.Time, hosts []int) error {
	if len(hosts) == 0 {
		return nil
	}
	keys := make([]string, len(hosts))
	for i, h := range hosts {
		keys[i] = r.keys[h]
	}
	from := at.Add(-r.Spec.Metrics.Baseline.D())
	to := at.Add(-time.Millisecond)
	for m, q := range r.queries {
		series, err := r.Metrics.Range(ctx, q, keys, from, to, r.Spec.Metrics.Interval.D())
		if err != nil {
			return err // the source names the query
		}
		for i, h := range hosts {
			var s []float64
			if i < len(series) {
				s = series[i]
			}
			r.eng.SetBaseline(m, h, s)
		}
	}
	return nil
}

// watch ticks until the monitoring period after the apply has passed (or
// a policy fires). applyDone is nil when nothing is being applied (bake).
func (r *Rollout) watch(ctx context.Context, wi int, w PlannedWave, start, applyEnd time.Time, monitor time.Duration, applyDone chan applyOutcome) (string, string, error) {
	interval := r.Spec.Metrics.Interval.D()
	phase := policies.PhaseApply
	if applyDone == nil {
		phase = policies.PhaseMonitor
	}
	holdLimit := r.Spec.Detection.HoldLimit.D()
	if holdLimit == 0 {
		holdLimit = monitor
	}
	for {
		// The dry run's apply is instantaneous: take its result before
		// the first tick so the first tick already monitors.
		if applyDone != nil {
			select {
			case ao := <-applyDone:
				applyDone = nil
				applyEnd = r.Clock.Now()
				phase = policies.PhaseMonitor
				wr := &r.report.Waves[wi]
				wr.ApplyEndedAt = ptr(applyEnd)
				if out, why, stop := r.applied(ctx, w, ao); stop {
					return out, why, nil
				}
			default:
			}
		}
		if err := r.Clock.Sleep(ctx, interval); err != nil {
			return "", "", err
		}
		now := r.Clock.Now()
		r.observe(ctx, now)
		res := r.eng.Tick(phase, now.Sub(start).Seconds())
		out, why, holding := r.decide(ctx, wi, w, now, phase, res)
		if out != "" {
			return out, why, nil
		}
		if phase == policies.PhaseMonitor && !applyEnd.IsZero() {
			past := now.Sub(applyEnd)
			if past >= monitor && !holding {
				r.logf("   %s passed after %s of monitoring", w.Name, fmtDuration(past))
				return "", "", nil
			}
			if holding && past >= monitor+holdLimit {
				reason := fmt.Sprintf("no data after holding %s past the monitoring period (on_no_data: hold)", fmtDuration(holdLimit))
				r.report.Decisions = append(r.report.Decisions, steps.Decision{At: now, Wave: w.Name, Policy: "on_no_data", Scope: "fleet", Outcome: "nodata", Fired: true, Reason: reason})
				out, why := r.fire(ctx, w, "on_no_data", reason)
				return out, why, nil
			}
		}
	}
}

// applied records a finished apply. A host that failed or was unreachable
// is reverted by name; an apply that could not run at all reverts the wave.
func (r *Rollout) applied(ctx context.Context, w PlannedWave, ao applyOutcome) (string, string, bool) {
	var failed, unchanged []string
	for _, hr := range ao.res.Hosts {
		i, ok := r.index[hr.Host]
		if !ok {
			continue
		}
		rep := r.hostRep[i]
		rep.Status = hr.Status
		rep.Message = hr.Message
		rep.ChangedTasks = append(rep.ChangedTasks, hr.ChangedTasks...)
		switch {
		case hr.Status == steps.HostFailed && len(hr.ChangedTasks) == 0:
			// The play failed before it changed anything: there is
			// nothing to revert (a revert playbook would go back further
			// than this run), but the host does not carry the change.
			r.eng.MarkFailed(i)
			r.excluded[i] = true
			r.eng.Exclude(i)
			rep.RevertReason = "apply failed before changing anything; left as it was"
			unchanged = append(unchanged, hr.Host)
		case hr.Status == steps.HostFailed || hr.Status == steps.HostUnreachable:
			// A failed play may have changed something; an unreachable
			// host is in an unknown state: revert both by name.
			rep.Applied = hr.Status == steps.HostFailed
			failed = append(failed, hr.Host)
			r.eng.MarkFailed(i)
		default:
			rep.Applied = true
		}
	}
	for _, n := range unchanged {
		r.logf("   %s: apply failed before changing anything (%s); left as it was", n, r.hostRep[r.index[n]].Message)
	}
	if ao.err != nil {
		if ctx.Err() != nil {
			return "", "", false
		}
		r.logf("   apply failed: %v", ao.err)
		out, why := r.fire(ctx, w, "apply-error", "the playbook could not run: "+ao.err.Error())
		return out, why, true
	}
	r.logf("   applied: %d hosts, %d failed", len(ao.res.Hosts)-len(failed)-len(unchanged), len(failed)+len(unchanged))
	if !ao.resumed {
		r.journal(ctx, JournalEntry{Step: JournalApplyEnd, Wave: w.Name, Hosts: hostResultNames(ao.res.Hosts), Detail: failedDetail(failed, unchanged)})
		r.recordApplied(ctx, ao.res.Hosts)
	}
	if len(failed) > 0 {
		r.revertHosts(ctx, failed, "apply failed on the host", "apply-failed", true)
	}
	return "", "", false
}

// observe queries every metric once for all hosts and feeds the engine.
// A failed query is no data for every host; consecutive failures are
// counted for the error limit.
func (r *Rollout) observe(ctx context.Context, now time.Time) {
	failed := false
	for m, q := range r.queries {
		if err := r.Metrics.Instant(ctx, q, r.keys, now, r.buf); err != nil {
			failed = true
			r.lastErr = err // the source names the query
			for i := range r.buf {
				r.buf[i] = math.NaN()
			}
		}
		r.eng.Observe(m, r.buf)
		if r.report.Series != nil {
			for h, v := range r.buf {
				if math.IsNaN(v) {
					continue // a gap in the plot, not a zero
				}
				name := r.Plan.Hosts[h].Name
				if r.report.Series[name] == nil {
					r.report.Series[name] = map[string][]steps.Point{}
				}
				r.report.Series[name][q.Name] = append(r.report.Series[name][q.Name], steps.Point{T: now, V: v})
			}
		}
	}
	if failed {
		r.errTicks++
	} else {
		r.errTicks = 0
	}
}

// decide turns one tick's policy outcomes into actions: host-level
// reverts, and the fleet verdict. holding is true while an on_no_data:
// hold policy has no data.
func (r *Rollout) decide(ctx context.Context, wi int, w PlannedWave, now time.Time, phase string, res *policies.TickResult) (string, string, bool) {
	env := r.eng.Env()
	var line []string
	var fire, fireReason string
	holding := false
	noDataLimit := r.Spec.Detection.NoDataTicks
	for i, pr := range res.Policies {
		p := r.Policies[i]
		if !p.HasFleet() && pr.Outcome != policies.OutcomeError {
			continue
		}
		reason, values := p.Explain(env, nil)
		outcome := pr.Outcome.String()
		fired := false
		switch pr.Outcome {
		case policies.OutcomeFire:
			fired = true
		case policies.OutcomeError:
			fired = true
			reason = fmt.Sprintf("policy error (fail closed): %v", pr.Err)
		case policies.OutcomeNoData:
			switch p.OnNoData {
			case policies.NoDataIgnore:
				outcome = "pass"
				reason = "no data, ignored (on_no_data: ignore)"
			case policies.NoDataHold:
				holding = true
				reason = fmt.Sprintf("no data for %d ticks, holding (on_no_data: hold)", pr.NoDataTicks)
			default:
				reason = fmt.Sprintf("no data for %d of %d allowed ticks (on_no_data: fail)", pr.NoDataTicks, noDataLimit)
				if pr.NoDataTicks >= noDataLimit {
					fired = true
					reason = fmt.Sprintf("no data for %d consecutive ticks (on_no_data: fail)", pr.NoDataTicks)
				}
			}
		}
		r.report.Decisions = append(r.report.Decisions, steps.Decision{
			At: now, Wave: w.Name, Policy: p.Name, Scope: "fleet", Outcome: outcome, Fired: fired, Reason: reason, Values: jsonSafeMap(values),
		})
		mark := outcome
		if fired {
			mark = "FIRE"
		}
		line = append(line, fmt.Sprintf("%s: %s (%s)", p.Name, mark, reason))
		if fired && fire == "" {
			fire, fireReason = p.Name, reason
		}
	}
	// Host-level fires revert one host each; the rollout goes on.
	for _, hf := range res.HostFires {
		if r.excluded[hf.Host] {
			continue
		}
		p := hf.Policy.(*policies.Policy)
		h := r.eng.Host(hf.Host)
		reason, values := p.Explain(env, h)
		r.report.Decisions = append(r.report.Decisions, steps.Decision{
			At: now, Wave: w.Name, Policy: p.Name, Scope: "host", Host: h.Name, Outcome: "fire", Fired: true, Reason: reason, Values: jsonSafeMap(values),
		})
		line = append(line, fmt.Sprintf("%s[%s]: FIRE (%s)", p.Name, h.Name, reason))
		r.revertHosts(ctx, []string{h.Name}, fmt.Sprintf("host policy %s: %s", p.Name, reason), "host-policy", true)
	}
	var degraded, fresh []string
	for _, h := range env.Hosts {
		if h.Degraded {
			degraded = append(degraded, h.Name)
			if i := r.index[h.Name]; !r.alerted[i] {
				r.alerted[i] = true
				fresh = append(fresh, h.Name)
			}
		}
	}
	if len(fresh) > 0 {
		r.alert(ctx, steps.EventDegraded, w.Name, fresh, fmt.Sprintf("%d hosts degraded in wave %s: %s", len(fresh), w.Name, abbreviate(fresh, 8)), nil)
	}
	r.report.Timeline = append(r.report.Timeline, steps.TickLine{At: now, Wave: w.Name, Phase: phase, Degraded: nonNil(degraded), Policies: line})
	r.logf("%s %-8s %-7s degraded %d/%d %s| %s", now.UTC().Format("15:04:05"), w.Name, phase, len(degraded), len(env.Hosts),
		bracket(abbreviate(degraded, 5)), strings.Join(line, " | "))
	r.trackScores()

	if r.errTicks >= r.Spec.Metrics.ErrorLimit && fire == "" {
		return r.metricsError(ctx, w, now)
	}
	if fire != "" {
		out, why := r.fire(ctx, w, fire, fireReason)
		return out, why, false
	}
	return "", "", holding
}

func (r *Rollout) metricsError(ctx context.Context, w PlannedWave, now time.Time) (string, string, bool) {
	reason := fmt.Sprintf("metrics unavailable for %d consecutive ticks (error_limit %d): %v; never promoting on missing data", r.errTicks, r.Spec.Metrics.ErrorLimit, r.lastErr)
	r.report.Decisions = append(r.report.Decisions, steps.Decision{At: now, Wave: w.Name, Policy: "metrics", Scope: "fleet", Outcome: "error", Fired: true, Reason: reason})
	out, why := r.fire(ctx, w, "metrics-error", reason)
	return out, why, false
}

// fire ends the rollout after a fleet-level fire: it reverts per
// revert.scope (or freezes) and says how the rollout ends.
func (r *Rollout) fire(ctx context.Context, w PlannedWave, trigger, reason string) (string, string) {
	scope := r.Spec.Revert.Scope
	var hosts []string
	for i := range r.Plan.Hosts {
		if !r.changed[i] || r.excluded[i] {
			continue
		}
		h := r.eng.Host(i)
		switch scope {
		case ScopeAll:
		case ScopeHost:
			if !h.Degraded && !h.Failed {
				continue
			}
		default: // wave
			if h.Wave != w.Name {
				continue
			}
		}
		hosts = append(hosts, h.Name)
	}
	if r.Spec.Revert.Mode == ModeFreeze {
		r.logf("   %s fired: %s — freezing (revert.mode: freeze), %d hosts keep the change", trigger, reason, len(hosts))
		return steps.OutcomeHalted, fmt.Sprintf("%s fired: %s; frozen without revert (revert.mode: freeze), a person must decide", trigger, reason)
	}
	r.logf("   %s fired: %s — reverting %s (scope %s)", trigger, reason, abbreviate(hosts, 8), scope)
	rb := r.revertHosts(ctx, hosts, reason, trigger, false)
	rb.Scope = scope
	msg := fmt.Sprintf("%s fired in wave %s: %s", trigger, w.Name, reason)
	if !r.dry() && !rb.Verified {
		return steps.OutcomeRolledBack, msg + "; the rollback could NOT be verified"
	}
	return steps.OutcomeRolledBack, msg
}

// revertHosts reverts hosts by name with the configured methods, verifies
// the revert in a live run, and records it in the report. The last
// rollback in the report is the one that ended the run.
// hostLevel says the rollout goes on after it (a host policy, a failed
// host); the journal keeps that, so a resumed run knows whether the run
// was ending.
func (r *Rollout) revertHosts(ctx context.Context, names []string, reason, trigger string, hostLevel bool) *steps.Rollback {
	rb := &steps.Rollback{Trigger: trigger, Reason: reason, Scope: ScopeHost, Hosts: nonNil(names), Methods: []steps.Method{}, StartedAt: r.Clock.Now()}
	scope := "fleet"
	if hostLevel {
		scope = ScopeHost
	}
	if len(names) > 0 {
		r.journal(ctx, JournalEntry{Step: JournalRevertStart, Hosts: names, Scope: scope, Detail: trigger + ": " + reason})
	}
	for _, n := range names {
		i := r.index[n]
		r.excluded[i] = true
		r.eng.Exclude(i)
		r.hostRep[i].Reverted = true
		r.hostRep[i].RevertReason = reason
	}
	switch {
	case len(names) == 0:
		rb.Verified = true
		rb.Verification = "nothing to revert"
	case r.dry():
		m := "revert-playbook"
		if r.Spec.Revert.Playbook == "" {
			m = "none configured"
		}
		rb.Methods = append(rb.Methods, steps.Method{Name: m, Hosts: names, OK: true, Detail: "dry run: not executed"})
		rb.Verification = "dry run: a recording cannot show the effect of a revert"
	default:
		r.revertLive(ctx, names, rb)
	}
	rb.FinishedAt = r.Clock.Now()
	r.report.Rollback = rb
	r.report.Rollbacks = append(r.report.Rollbacks, rb)
	if len(names) > 0 {
		r.journal(ctx, JournalEntry{Step: JournalRevertEnd, Hosts: names, Scope: scope, Detail: rb.Verification})
		r.recordOutcome(ctx, names, steps.VersionReverted)
		r.alert(ctx, steps.EventRollback, r.hostRep[r.index[names[0]]].Wave, names, fmt.Sprintf("%s: %s; reverted %s", trigger, reason, abbreviate(names, 8)), nil)
		if !r.dry() && !rb.Verified {
			r.alert(ctx, steps.EventVerifyFailed, r.hostRep[r.index[names[0]]].Wave, names, rb.Verification, nil)
		}
	}
	return rb
}

// revertLive runs the revert methods in order: the revert playbook, the
// last known-good version, the snapshot. Each later method only gets the
// hosts the earlier ones could not revert; every attempt is in the
// report. Then it verifies that the hosts' metrics came back into their
// baseline band.
func (r *Rollout) revertLive(ctx context.Context, names []string, rb *steps.Rollback) {
	// A revert must run even when the run was interrupted: it gets its
	// own context, bounded by the apply timeout.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.applyTimeout())
	defer cancel()
	left := names
	for _, m := range r.revertMethods() {
		if len(left) == 0 {
			break
		}
		r.logf("   revert by %s: %s", m.name, abbreviate(left, 8))
		ok, failed, detail := m.run(rctx, left)
		rb.Methods = append(rb.Methods, steps.Method{Name: m.name, Hosts: slices.Clone(left), OK: len(failed) == 0 && len(ok) > 0, Detail: detail})
		left = failed
	}
	if len(left) > 0 {
		rb.Methods = append(rb.Methods, steps.Method{Name: "none left", Hosts: left, OK: false, Detail: "no revert method succeeded on these hosts: they may keep the change"})
		rb.Verification = fmt.Sprintf("not verified: %s could not be reverted", strings.Join(left, ", "))
		r.logf("   revert FAILED on %s", strings.Join(left, ", "))
		return
	}
	r.logf("   reverted %s; verifying", abbreviate(names, 8))
	r.verify(ctx, names, rb)
}

func (r *Rollout) applyTimeout() time.Duration {
	if t := r.Spec.Apply.Timeout.D(); t > 0 {
		return t
	}
	return 30 * time.Minute
}

// verify watches reverted hosts until every metric is back in its
// baseline band, for at most revert.verify.
func (r *Rollout) verify(ctx context.Context, names []string, rb *steps.Rollback) {
	limit := r.Spec.Revert.Verify.D()
	if limit == 0 {
		limit = 2 * r.Spec.Metrics.Interval.D()
	}
	vctx := context.WithoutCancel(ctx)
	start := r.Clock.Now()
	for {
		if err := r.Clock.Sleep(vctx, r.Spec.Metrics.Interval.D()); err != nil {
			rb.Verification = "not verified: " + err.Error()
			return
		}
		r.observe(vctx, r.Clock.Now())
		r.eng.Tick(policies.PhaseMonitor, 0)
		var out []string
		for _, n := range names {
			if !r.eng.InBand(r.index[n]) {
				out = append(out, n)
			}
		}
		elapsed := r.Clock.Now().Sub(start)
		if len(out) == 0 {
			rb.Verified = true
			rb.Verification = fmt.Sprintf("every metric of %d hosts back in its baseline band after %s", len(names), fmtDuration(elapsed))
			r.logf("   verified after %s", fmtDuration(elapsed))
			return
		}
		if elapsed >= limit {
			rb.Verification = fmt.Sprintf("not verified: after %s still outside the baseline band: %s", fmtDuration(elapsed), abbreviate(out, 8))
			r.logf("   NOT verified: %s", rb.Verification)
			return
		}
	}
}

// trackScores keeps each host's worst score per metric for the report.
func (r *Rollout) trackScores() {
	for i := range r.Plan.Hosts {
		if !r.changed[i] {
			continue
		}
		h := r.eng.Host(i)
		for m, q := range r.queries {
			if mt := h.Metrics[q.Name]; mt != nil && mt.Score > r.maxScores[i][m] {
				r.maxScores[i][m] = mt.Score
				r.worst[i][m] = worstValue{mt.Current, mt.Z}
			}
		}
	}
}

// finishHosts copies each host's final detector state into the report.
func (r *Rollout) finishHosts() {
	for i := range r.Plan.Hosts {
		rep := r.hostRep[i]
		if rep == nil {
			continue
		}
		h := r.eng.Host(i)
		rep.MaxScore = 0
		for m, q := range r.queries {
			mt := h.Metrics[q.Name]
			if mt == nil {
				continue
			}
			rep.Metrics[q.Name] = steps.MetricReport{
				Baseline: jsonSafe(mt.Baseline), Stddev: jsonSafe(mt.Stddev), Current: jsonSafe(mt.Current), Z: jsonSafe(mt.Z),
				Score: jsonSafe(mt.Score), MaxScore: r.maxScores[i][m], Samples: mt.Samples, NoData: mt.NoData, LowConfidence: mt.LowConfidence,
				Worst: jsonSafe(r.worst[i][m].current), WorstZ: jsonSafe(r.worst[i][m].z),
			}
			rep.MaxScore = math.Max(rep.MaxScore, r.maxScores[i][m])
		}
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
