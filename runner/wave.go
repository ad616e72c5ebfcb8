package runner

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// This file tells one wave: baseline, snapshot, apply, and the watch that
// ticks through the apply and the monitoring period until the wave passes
// or a policy fires (decide.go).

// waves runs every wave from the given one, then the bake period, and
// says how the rollout ended.
func (x *execution) waves(ctx context.Context, from int) (verdict, error) {
	for wi := from; wi < len(x.Plan.Waves); wi++ {
		v, err := x.wave(ctx, wi, x.Plan.Waves[wi], nil)
		if err != nil || v.ends() {
			return v, err
		}
	}
	if x.Plan.Bake > 0 {
		last := x.Plan.Waves[len(x.Plan.Waves)-1]
		x.logf("bake: watching the whole fleet for %s", fmtDuration(x.Plan.Bake))
		v, err := x.watch(ctx, len(x.Plan.Waves)-1, PlannedWave{Name: "bake", Index: last.Index, Hosts: nil}, x.Clock.Now(), x.Clock.Now(), x.Plan.Bake, nil)
		if err != nil || v.ends() {
			return v, err
		}
	}
	n := 0
	for i := range x.hosts {
		if x.hosts[i].carries() {
			n++
		}
	}
	if n == 0 {
		// Host policies reverted every host during the bake.
		return verdict{report.OutcomeRolledBack, "every wave passed, but no host carries the change: every one was reverted"}, nil
	}
	return verdict{report.OutcomePromoted, fmt.Sprintf("every wave passed; %d hosts carry the change", n)}, nil
}

// resumeWave is what a resumed run knows of the wave that was under way.
type resumeWave struct {
	// start is the wave's original start: its baseline window ends there.
	start time.Time
	// hosts are the hosts the wave was applying to.
	hosts []ports.Host
	// applied says the apply had ended before the crash.
	applied bool
	// snapshotted says the snapshot step had started.
	snapshotted bool
}

// wave runs one wave: baseline, snapshot, apply, monitor, decide. rw is
// set when a resumed run takes up the wave that was under way. The
// verdict ends the rollout when it is not zero.
func (x *execution) wave(ctx context.Context, wi int, w PlannedWave, rw *resumeWave) (verdict, error) {
	wr := &x.report.Waves[wi]
	if t, ok := x.Timing[w.Name]; ok && x.dry() && rw == nil {
		// A replayed wave starts when the live run's did: what the
		// live run spent between waves (baselines, snapshots, a pause)
		// passes here too.
		if d := t.Start.Sub(x.Clock.Now()); d > 0 {
			if err := x.Clock.Sleep(ctx, d); err != nil {
				return verdict{}, err
			}
		}
	}
	start := x.Clock.Now()
	if rw != nil {
		start = rw.start
	}
	wr.ApplyStartedAt = ptr(start)
	wr.BaselineFrom = ptr(start.Add(-x.Spec.Metrics.Baseline.D()))
	x.logf("── %s: %d hosts (%s), monitor %s", w.Name, len(w.Hosts), abbreviate(hostNames(w.Hosts), 8), fmtDuration(w.Monitor))
	broken := func(err error) (verdict, error) {
		wr.Outcome = report.WaveError
		wr.FinishedAt = ptr(x.Clock.Now())
		return verdict{}, err
	}

	// Baseline for the wave's hosts and for every untouched host, taken
	// over the same window, so the untouched ones serve as controls.
	if err := x.baseline(ctx, start, x.untouched()); err != nil {
		return broken(fmt.Errorf("baseline for wave %s: %w", w.Name, err))
	}
	if reason := x.emptyBaselines(ctx, start, x.liveHosts(w.Hosts)); reason != "" && rw == nil {
		x.logf("   %s", reason)
		wr.Outcome, wr.FinishedAt = report.WaveError, ptr(x.Clock.Now())
		return x.notStarted(w, reason), nil
	}
	// Snapshots first: a host whose snapshot failed is not changed
	// (snapshot.on_failure: skip_host, the default).
	hosts := x.liveHosts(w.Hosts)
	if rw != nil {
		hosts = rw.hosts
	}
	if x.Snapshots != nil && (rw == nil || !rw.snapshotted) && len(hosts) > 0 {
		var err error
		if hosts, err = x.takeSnapshots(ctx, w, hosts); err != nil {
			return broken(err)
		}
	}
	idx := make([]int, len(hosts))
	for i, h := range hosts {
		idx[i] = x.index[h.Name]
	}
	if err := x.journalMust(ctx, JournalEntry{Step: JournalApplyStart, Wave: w.Name, Hosts: hostNames(hosts), Start: start}); err != nil {
		return broken(err) // nothing applied: the wave's hosts are not changed
	}
	x.startWave(w, idx)

	// Apply, watched while it runs, for at most apply.timeout on the
	// run's clock (watch stops it).
	applyDone := make(chan applyOutcome, 1)
	applyCtx, cancelApply := context.WithCancelCause(ctx)
	defer cancelApply(nil)
	x.stopApply, x.applyDeadline = cancelApply, x.Clock.Now().Add(x.applyTimeout())
	defer func() { x.stopApply = nil }()
	switch {
	case len(hosts) == 0:
		applyDone <- applyOutcome{}
	case x.dry() || (rw != nil && rw.applied):
		// A dry run's apply is simulated; a resumed run whose apply
		// ended before the crash does not apply again.
		res := ports.ApplyResult{}
		for _, h := range hosts {
			res.Hosts = append(res.Hosts, ports.HostResult{Host: h.Name, Status: ports.HostChanged})
		}
		out := applyOutcome{res: res, resumed: rw != nil}
		if t, ok := x.Timing[w.Name]; ok && x.dry() && t.ApplyEnd.After(x.Clock.Now()) {
			// Replayed: the apply ends when the live run's did, and the
			// stage watches the polls until then as it did.
			x.replayedApply = &replayedApply{out: out, end: t.ApplyEnd}
		} else {
			applyDone <- out
		}
	default:
		req := x.applyRequest(ctx, hostNames(hosts))
		go func() {
			res, err := x.Applier.Apply(applyCtx, req, func(ev ports.ApplyEvent) {
				x.logf("   %s  %s: %s", ev.Host, ev.Task, ev.Status)
			})
			if err != nil && ctx.Err() == nil && applyCtx.Err() != nil {
				err = context.Cause(applyCtx) // apply.timeout
			}
			applyDone <- applyOutcome{res: res, err: err}
		}()
	}
	v, err := x.watch(ctx, wi, w, start, time.Time{}, w.Monitor, applyDone)
	x.replayedApply = nil // a stage that ended during a replayed apply
	cancelApply(nil)
	if err == nil && !v.ends() {
		if reason := x.stageEmptied(w); reason != "" {
			v = x.stageFailed(ctx, w, "host-policy", reason) // host policies reverted its hosts
		}
	}
	wr.FinishedAt = ptr(x.Clock.Now())
	switch {
	case err != nil:
		wr.Outcome = report.WaveError
	case !v.ends():
		wr.Outcome = report.WavePassed
		x.passed(ctx, w)
	case v.outcome == report.OutcomeHalted:
		wr.Outcome = report.WaveHalted
	default:
		wr.Outcome = report.WaveFired
	}
	return v, err
}

type applyOutcome struct {
	res ports.ApplyResult
	err error
	// resumed says the apply ended before a crash: it is not journaled
	// or recorded in the history again.
	resumed bool
}

func (x *execution) applyRequest(ctx context.Context, limit []string) ports.ApplyRequest {
	req := applyRequest(x.Spec, x.Plan, limit)
	req.OnStart = func(pid int) { x.journalPlaybook(ctx, pid) }
	return req
}

// applyRequest is apply.playbook over limit, with the plan's hosts as
// the inventory: the apply's and the pre-flight check's.
func applyRequest(spec *Spec, plan *Plan, limit []string) ports.ApplyRequest {
	return ports.ApplyRequest{
		Playbook:          spec.Apply.Playbook,
		Inventory:         plan.Hosts,
		Limit:             limit,
		ExtraVars:         spec.Apply.ExtraVars,
		Forks:             spec.Apply.Forks,
		VaultPasswordFile: spec.Apply.VaultPasswordFile,
	}
}

// baseline sets every given host's baseline from [at-baseline, at), or
// from the host's last recorded change when that is later: a window that
// holds an earlier run's change describes neither version. Hosts whose
// windows start together are queried together.
func (x *execution) baseline(ctx context.Context, at time.Time, hosts []int) error {
	if len(hosts) == 0 {
		return nil
	}
	from := at.Add(-x.Spec.Metrics.Baseline.D())
	to := at.Add(-time.Millisecond)
	step := x.Spec.Metrics.Interval.D()
	var starts []time.Time
	groups := map[time.Time][]int{}
	for _, h := range hosts {
		f := from
		if c := x.lastChange(ctx, h); c.After(f) && c.Before(to) {
			f = c
		}
		if groups[f] == nil {
			starts = append(starts, f)
		}
		groups[f] = append(groups[f], h)
	}
	for _, f := range starts {
		group := groups[f]
		keys := make([]string, len(group))
		for i, h := range group {
			keys[i] = x.keys[h]
		}
		all := make([][]ports.Samples, len(x.queries))
		errs := x.askAll(func(m int, q ports.Query) (err error) {
			all[m], err = x.Metrics.Range(ctx, q, keys, f, to, step)
			return err
		})
		for _, err := range errs {
			if err != nil {
				return err // the source names the query
			}
		}
		for m, q := range x.queries {
			series := all[m]
			for i, h := range group {
				var s ports.Samples
				if i < len(series) {
					s = series[i]
				}
				x.eng.SetBaseline(m, h, onGrid(s, f, step))
				x.recordBaseline(h, q.Name, s)
				x.warnCounter(m, h, s.Values)
			}
		}
	}
	return nil
}

// onGrid is s's values in time order with a NaN for every poll missing
// between two samples (a gap of n steps, to the nearest, holds n-1), so
// that the detector's consecutive polls (the burst's pairs, the recent
// level, self-calibration's smoothing) are consecutive in time, as they
// are when it judges live: two polls on either side of a gap in the
// baseline are no pair. The polls of the window from from before the
// first sample are NaN too (whole steps missed): a series that begins late
// in the window was born there, and the detector leaves its first polls,
// a cold start, out of the baseline (see policies' pastBirth). A live
// range query and a replay both answer from the first step where the
// series has a value, so both read the same.
func onGrid(s ports.Samples, from time.Time, step time.Duration) []float64 {
	if step <= 0 || len(s.Timestamps) != len(s.Values) {
		return s.Values
	}
	lead := 0
	if len(s.Timestamps) > 0 {
		lead = max(0, int(time.UnixMilli(s.Timestamps[0]).Sub(from)/step))
	}
	out := make([]float64, lead, lead+len(s.Values))
	for i := range lead {
		out[i] = math.NaN()
	}
	for i, v := range s.Values {
		if i > 0 {
			gap := time.Duration(s.Timestamps[i]-s.Timestamps[i-1]) * time.Millisecond
			for range int(math.Round(float64(gap)/float64(step))) - 1 {
				out = append(out, math.NaN())
			}
		}
		out = append(out, v)
	}
	return out
}

// counterPolls is the fewest polls a baseline must hold for warnCounter
// to call it a counter's.
const counterPolls = 10

// warnCounter warns, once per query, when host h's baseline of query m
// reads as a counter (http_requests_total without rate()): at least
// counterPolls values, none below the one before it, and more than half
// above it. A counter is judged as a level, as every query is: the
// restart an apply brings resets it (a drop), and a halved rate still
// rises. A flat series (never rising) and a gauge (falling now and then)
// draw nothing. Decisions are not changed.
func (x *execution) warnCounter(m, h int, values []float64) {
	if x.counterWarned[m] {
		return
	}
	n, rises := 0, 0
	prev := math.NaN()
	for _, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		n++
		if !math.IsNaN(prev) {
			if v < prev {
				return
			}
			if v > prev {
				rises++
			}
		}
		prev = v
	}
	if n < counterPolls || 2*rises <= n-1 {
		return
	}
	if x.counterWarned == nil {
		x.counterWarned = map[int]bool{}
	}
	x.counterWarned[m] = true
	q := x.queries[m]
	fix := "rate(...[5m]) or increase(...[5m]) around the counter's selector"
	if !strings.ContainsAny(q.Expr, "()[]") {
		fix = fmt.Sprintf("rate(%s[5m]) or increase(%s[5m])", q.Expr, q.Expr)
	}
	x.warn(fmt.Sprintf("query %s (%s) reads as a counter: its baseline on %s never fell over %d polls and rose in %d of them. A query is judged as a level: a restart that resets the counter reads as a drop, and a halved rate still rises. Query its rate: %s",
		q.Name, q.Expr, x.hosts[h].Name, n, rises, fix))
}

// warn records a warning drawn from the run's data in the report and
// prints it on Warnings.
func (x *execution) warn(msg string) {
	x.report.Warnings = append(x.report.Warnings, msg)
	if x.Warnings != nil {
		fmt.Fprintf(x.Warnings, "rollguard: warning: %s\n", msg)
	}
}

// lastChange is when an earlier run last applied a version to host h,
// from the history (read once per run; zero without a history, in a dry
// run, or when it cannot be read: the full window then serves, and the
// failure is logged).
func (x *execution) lastChange(ctx context.Context, h int) time.Time {
	hs := &x.hosts[h]
	if x.History == nil || x.dry() || hs.historyRead {
		return hs.lastChange
	}
	hs.historyRead = true
	recs, err := x.History.For(ctx, hs.Name)
	if err != nil {
		x.log.Warn("history unreadable: baseline over the full window", "host", hs.Name, "err", err)
		return time.Time{}
	}
	for _, r := range recs {
		if r.RunID != x.RunID && r.At.After(hs.lastChange) {
			hs.lastChange = r.At
		}
	}
	return hs.lastChange
}

// phaseVerdict marks the end-of-stage verdict in the timeline.
const phaseVerdict = "verdict"

// watch ticks until the monitoring period after the apply has passed (or
// a policy fires), then runs the end-of-stage verdict. applyDone is nil when nothing is being applied (bake).
func (x *execution) watch(ctx context.Context, wi int, w PlannedWave, start, applyEnd time.Time, monitor time.Duration, applyDone chan applyOutcome) (verdict, error) {
	interval := x.Spec.Metrics.Interval.D()
	phase := policies.PhaseApply
	if applyDone == nil {
		phase = policies.PhaseMonitor
	}
	holdLimit := x.Spec.Detection.HoldFor(monitor)
	// waitFor holds the hosts that had no data when the monitoring period
	// ended and have not reported since: the stage waits for them, not
	// for hosts that miss a poll after it (in a large fleet some host
	// misses nearly every poll, and the stage would never pass).
	var waitFor []string
	periodEnded := false
	// heldFor holds the hosts the stage held for, short of polls with
	// data (fewPolls).
	var heldFor []string
	tick := newTicker(x.Clock, interval)
	for {
		// The dry run's apply is instantaneous: take its result before
		// the first tick so the first tick already monitors. A replayed
		// one ends when the live run's did, unless this spec's
		// apply.timeout passes first: a run under it would have stopped
		// that playbook, and the apply is then broken as it would be.
		if ra := x.replayedApply; ra != nil && applyDone != nil {
			switch now := x.Clock.Now(); {
			case !now.Before(ra.end):
				x.replayedApply = nil
				applyDone <- ra.out
			case !now.Before(x.applyDeadline):
				x.replayedApply = nil
				ra.out.err = fmt.Errorf("apply.timeout (%s) passed: %w", fmtDuration(x.applyTimeout()), context.DeadlineExceeded)
				applyDone <- ra.out
			}
		}
		if applyDone != nil {
			// Past apply.timeout the playbook is stopped, and the Applier
			// returns once it is.
			if x.stopApply != nil && !x.Clock.Now().Before(x.applyDeadline) {
				x.logf("   apply.timeout (%s) passed: stopping the playbook", fmtDuration(x.applyTimeout()))
				// DeadlineExceeded: applyBroken names it a timeout, as the
				// Applier's own bound does.
				x.stopApply(fmt.Errorf("apply.timeout (%s) passed: %w", fmtDuration(x.applyTimeout()), context.DeadlineExceeded))
				x.stopApply = nil
				ao := <-applyDone // the Applier returns once it stopped the playbook
				applyDone <- ao   // taken just below
			}
			select {
			case ao := <-applyDone:
				applyDone = nil
				applyEnd = x.Clock.Now()
				phase = policies.PhaseMonitor
				x.report.Waves[wi].ApplyEndedAt = ptr(applyEnd)
				if v := x.applied(ctx, w, ao); v.ends() {
					return v, nil
				}
			default:
			}
		}
		if err := tick.wait(ctx); err != nil {
			return verdict{}, err
		}
		now := x.Clock.Now()
		began := time.Now() // the tick's own duration, for the telemetry
		x.observe(ctx, now)
		res := x.eng.Tick(phase, now.Sub(start).Seconds())
		x.tel.Tick(time.Since(began)) // not the reverts decide may run
		if took := x.Clock.Now().Sub(now); took >= interval && !x.slowWarned {
			x.slowWarned = true
			x.warn(fmt.Sprintf("a poll at %s took %s, not less than metrics.interval (%s): the polls it overran are skipped, and a stage gets fewer polls than its monitor holds. A poll runs its metrics.queries (%d) at once, each bounded by metrics.timeout (%s) and retried once on a transient error: make the source answer faster or raise metrics.interval",
				now.UTC().Format(time.TimeOnly), fmtDuration(took), fmtDuration(interval), len(x.queries), fmtDuration(x.Spec.Metrics.Timeout.D())))
		}
		v, hold := x.decide(ctx, w, now, phase, res)
		x.verifyingPoll(ctx, now) // after the poll's line: what it verifies is said below it
		if v.ends() {
			return v, nil
		}
		if phase == policies.PhaseMonitor && !applyEnd.IsZero() {
			past := now.Sub(applyEnd)
			if past >= monitor {
				if !periodEnded {
					periodEnded, waitFor = true, slices.Clone(hold.silent)
				}
				waitFor = slices.DeleteFunc(waitFor, func(h string) bool { return !slices.Contains(hold.silent, h) })
				if hold.why != "" && hold.silent != nil && len(waitFor) == 0 {
					// Only hosts that went silent after the period: they
					// are watched in the next stage.
					hold = holding{}
				}
			}
			if past >= monitor && hold.why == "" {
				// A host silent for most of the period has had fewer
				// polls with data than a decision needs: the stage waits
				// for them as for a silent host, up to the hold limit.
				if short, few := x.fewPolls(w); few != "" {
					if past < monitor+holdLimit {
						reason := "too few polls with data to decide: " + few + "; holding (up to detection.hold_limit past the monitoring period)"
						x.decided(report.Decision{At: now, Wave: w.Name, Policy: "on_no_data", Scope: "fleet", Outcome: "nodata", Reason: reason})
						x.logf("   %s: %s", w.Name, reason)
						for _, h := range short {
							if !slices.Contains(heldFor, h) {
								heldFor = append(heldFor, h)
							}
						}
						continue
					}
					x.logf("   %s: %s after holding %s past the monitoring period: judged on them", w.Name, few, fmtDuration(holdLimit))
					heldFor = nil // said just above: they never had them
				}
				// The end of the stage: the window test over every poll
				// since each host's apply (policies.Engine.Verdict).
				res := x.eng.Verdict(phase, now.Sub(start).Seconds())
				if v, _ := x.decide(ctx, w, now, phaseVerdict, res); v.ends() {
					return v, nil
				}
				if len(w.Hosts) > 0 && x.stageEmptied(w) != "" {
					// wave() ends the rollout on it: not a pass.
					x.logf("   %s ended its monitoring after %s with no host carrying the change", w.Name, fmtDuration(past))
				} else {
					held := ""
					if heldFor != nil {
						held = fmt.Sprintf(" (held %s past it until %s had the polls a decision needs)", fmtDuration(past-monitor), abbreviate(heldFor, 8))
					}
					x.logf("   %s passed after %s of monitoring%s", w.Name, fmtDuration(past), held)
				}
				return verdict{}, nil
			}
			if hold.why != "" && past >= monitor+holdLimit {
				reason := fmt.Sprintf("no data after holding %s past the monitoring period (%s)", fmtDuration(holdLimit), hold.why)
				x.decided(report.Decision{At: now, Wave: w.Name, Policy: "on_no_data", Scope: "fleet", Outcome: "nodata", Fired: true, Reason: reason})
				return x.fire(ctx, w, "on_no_data", reason, hold.silent...), nil
			}
		}
	}
}

// fewPolls returns the hosts of stage w that carry the change and have
// had fewer polls with data since their apply than a decision needs
// (policies.Engine.DataPolls), and a reason naming them ("h01 had 1 of 2
// polls with data since its apply"; "" when none has): a host whose
// exporter restarted with the apply and missed the polls after it would
// otherwise pass on the first poll it reports, which no detector can
// decide on.
func (x *execution) fewPolls(w PlannedWave) ([]string, string) {
	var hosts, parts []string
	for _, h := range w.Hosts {
		i, ok := x.index[h.Name]
		if !ok || !x.hosts[i].carries() {
			continue
		}
		if have, need := x.eng.DataPolls(i); have < need {
			hosts = append(hosts, h.Name)
			parts = append(parts, fmt.Sprintf("%s had %d of %d polls with data since its apply", h.Name, have, need))
		}
	}
	return hosts, abbreviate(parts, silentShown)
}

// observe queries every metric once for all hosts and feeds the engine.
// A failed query is no data for every host; consecutive failures are
// counted for the error limit.
func (x *execution) observe(ctx context.Context, now time.Time) {
	errs := x.askAll(func(m int, q ports.Query) error {
		return x.Metrics.Instant(ctx, q, x.keys, now, x.bufs[m])
	})
	failed := false
	for m, q := range x.queries {
		buf := x.bufs[m]
		if err := errs[m]; err != nil {
			if !failed {
				x.lastErr = err // the source names the query
			}
			failed = true
			for i := range buf {
				buf[i] = math.NaN()
			}
		}
		x.eng.Observe(m, buf)
		x.recordSeries(q.Name, now, buf)
	}
	if failed {
		x.errTicks++
	} else {
		x.errTicks = 0
	}
}

// askAll asks every query at once (ask(m, q) for query m) and returns
// when all have answered, with their errors in the spec's order: a poll,
// or a wave's baseline, takes its slowest query's time, not the sum of
// them all.
func (x *execution) askAll(ask func(m int, q ports.Query) error) []error {
	errs := make([]error, len(x.queries))
	var wg sync.WaitGroup
	for m, q := range x.queries {
		wg.Go(func() { errs[m] = ask(m, q) })
	}
	wg.Wait()
	return errs
}

// passed records a wave that passed: its version becomes known-good on
// its hosts.
func (x *execution) passed(ctx context.Context, w PlannedWave) {
	var names []string
	for _, h := range w.Hosts {
		if x.hosts[x.index[h.Name]].carries() {
			names = append(names, h.Name)
		}
	}
	x.journal(ctx, JournalEntry{Step: JournalWavePassed, Wave: w.Name, Hosts: names})
	if x.History != nil && len(names) > 0 && !x.dry() {
		sctx, cancel := storeCtx(ctx)
		defer cancel()
		if err := x.History.MarkKnownGood(sctx, names, x.Spec.Apply.Version, x.RunID); err != nil {
			x.logf("   WARNING: history: %v", err)
		}
	}
}

func hostResultNames(res []ports.HostResult) []string {
	out := make([]string, len(res))
	for i, h := range res {
		out[i] = h.Host
	}
	return out
}
