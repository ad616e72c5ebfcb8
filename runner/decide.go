package runner

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// This file turns a tick's policy outcomes into what happens next: a host
// reverted by a host policy, a fleet-level fire that reverts (or freezes)
// and ends the rollout, or nothing.

// holding is why monitoring goes on past a stage's monitoring period: a
// policy has no data ("" when none has), and the changed hosts without
// data it waits for, which a fire on it reverts beside revert.scope's
// (none for a gap in the metrics' collection, which is not the change).
type holding struct {
	why    string
	silent []string
}

// decide turns one tick's policy outcomes into actions: host-level
// reverts, and the fleet verdict (zero: go on). hold says why monitoring
// is held: an on_no_data: hold policy has no data; an on_no_data: fail
// policy has no data for fewer ticks than detection.no_data_ticks (a
// stage never passes on missing data); or it misses data the untouched
// hosts miss too (a gap in the metrics, not the change:
// policies.PolicyResult.FleetNoData), or, in the last wave, the hosts of
// the waves that passed miss too.
func (x *execution) decide(ctx context.Context, w PlannedWave, now time.Time, phase string, res *policies.TickResult) (v verdict, hold holding) {
	env := x.eng.Env()
	x.trackScores(now)
	var line []string
	var fire, fireReason string
	var fireSilent []string
	noDataLimit := x.Spec.Detection.NoDataTicks
	for i, pr := range res.Policies {
		p := x.Policies[i]
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
				silent, which := x.silent(p)
				reason = fmt.Sprintf("no data for %d ticks, holding (on_no_data: hold)%s", pr.NoDataTicks, which)
				if hold.why == "" {
					hold = holding{"on_no_data: hold" + which, silent}
				}
			default:
				if pr.FleetNoData {
					// Held as on_no_data: hold is, never promoted on.
					gap := "no data on " + x.fleetGap(p) + " either"
					if hold.why == "" {
						hold.why = gap + ": a gap in the metrics"
					}
					reason = gap + ": a gap in the metrics, not the change; holding (up to detection.hold_limit past the monitoring period)"
					break
				}
				silent, which := x.silent(p)
				reason = fmt.Sprintf("no data for %d of %d allowed ticks (on_no_data: fail)%s", pr.NoDataTicks, noDataLimit, which)
				if pr.NoDataTicks >= noDataLimit {
					fired = true
					reason = fmt.Sprintf("no data for %d consecutive ticks (on_no_data: fail)%s", pr.NoDataTicks, which)
					if fire == "" {
						fireSilent = silent
					}
				} else if hold.why == "" {
					// A stage never passes on missing data: it goes on
					// until the data comes back or the ticks run out.
					hold = holding{p.Name + ": " + reason, silent}
				}
			}
		}
		x.decided(report.Decision{
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
	// Host-level fires revert their hosts and the rollout goes on: the
	// hosts of one poll are reverted together, after the poll is
	// recorded, in one revert and one verification (revertHostFires).
	// Under revert.mode: freeze nothing is reverted: a host fire halts
	// the rollout as a fleet fire does.
	var hostFired, hostReasons []string
	for _, hf := range res.HostFires {
		if x.hosts[hf.Host].excluded || slices.Contains(x.notJournaled, x.hosts[hf.Host].Name) {
			continue
		}
		p := hf.Policy.(*policies.Policy)
		h := x.eng.Host(hf.Host)
		reason, values := p.Explain(env, h)
		x.decided(report.Decision{
			At: now, Wave: w.Name, Policy: p.Name, Scope: "host", Host: h.Name, Outcome: "fire", Fired: true, Reason: reason, Values: jsonSafeMap(values),
		})
		line = append(line, fmt.Sprintf("%s[%s]: FIRE (%s)", p.Name, h.Name, reason))
		if x.Spec.Revert.Mode == ModeFreeze {
			if fire == "" {
				fire, fireReason = p.Name, "on "+h.Name+": "+reason
			}
			continue
		}
		if slices.Contains(hostFired, h.Name) {
			continue // a second host policy fired on it: the first one's revert is its
		}
		x.firedAfter(p.Name, now, []int{hf.Host})
		hostFired = append(hostFired, h.Name)
		hostReasons = append(hostReasons, fmt.Sprintf("host policy %s: %s", p.Name, reason))
	}
	var degraded, fresh []string
	for _, h := range env.Hosts {
		if h.Degraded {
			degraded = append(degraded, h.Name)
			if hs := &x.hosts[x.index[h.Name]]; !hs.alerted {
				hs.alerted = true
				fresh = append(fresh, h.Name)
			}
		}
	}
	if len(fresh) > 0 {
		x.alert(ctx, ports.EventDegraded, w.Name, fresh, fmt.Sprintf("%d hosts degraded in wave %s: %s", len(fresh), w.Name, abbreviate(fresh, 8)), nil, x.attribution(fresh))
	}
	x.report.Timeline = append(x.report.Timeline, report.TickLine{At: now, Wave: w.Name, Phase: phase, Degraded: nonNil(degraded), Policies: line})
	x.logf("%s %-8s %-7s degraded %d/%d %s| %s", now.UTC().Format("15:04:05"), w.Name, phase, len(degraded), len(env.Hosts),
		bracket(abbreviate(degraded, 5)), strings.Join(line, " | "))

	// A fleet fire at the same poll ends the rollout: the host fires'
	// hosts are reverted in its rollback, whatever revert.scope, not
	// ahead of it in a revert of their own.
	if x.errTicks >= x.Spec.Metrics.ErrorLimit && fire == "" {
		return x.metricsError(ctx, w, now, hostFired...), holding{}
	}
	if fire != "" {
		x.firedAfter(fire, now, x.carrying())
		return x.fire(ctx, w, fire, fireReason, append(fireSilent, hostFired...)...), holding{}
	}
	x.revertHostFires(ctx, hostFired, hostReasons)
	return verdict{}, hold
}

// revertHostFires reverts the hosts whose host policy fired at one poll,
// together: one revert (one playbook run limited to them) and one
// verification, then each host keeps its own policy's reason. Reverted
// one after another, each would hold up the next, and the watch of every
// other host, for a whole verification.
func (x *execution) revertHostFires(ctx context.Context, names, reasons []string) {
	if len(names) == 0 {
		return
	}
	reason := reasons[0]
	if len(names) > 1 {
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = n + ": " + reasons[i]
		}
		reason = strings.Join(parts, "; ")
	}
	x.revertHosts(ctx, names, reason, "host-policy", true)
	for i, n := range names {
		if hs := &x.hosts[x.index[n]]; hs.reverted {
			hs.revertReason = reasons[i]
		}
	}
}

// silent returns the hosts carrying the change that have no value of a
// metric policy p reads at this tick, and ": web-1 has no latency_p95"
// naming them for a reason ("" when none has).
func (x *execution) silent(p *policies.Policy) ([]string, string) {
	var hosts, parts []string
	for _, h := range x.eng.Env().Hosts {
		if i, ok := x.index[h.Name]; !ok || !x.hosts[i].carries() {
			continue
		}
		var missing []string
		for _, q := range x.queries {
			if m := h.Metrics[q.Name]; m != nil && m.Silent && reads(p, q.Name) {
				missing = append(missing, q.Name)
			}
		}
		if len(missing) == 0 {
			continue
		}
		hosts = append(hosts, h.Name)
		part := h.Name // past the first silentShown, only counted
		if len(parts) < silentShown {
			part += " has no " + strings.Join(missing, ", ")
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return nil, ""
	}
	return hosts, ": " + abbreviate(parts, silentShown)
}

// silentShown is how many hosts without data a reason names.
const silentShown = 5

// reads reports whether policy p reads metric (every metric when it names
// none).
func reads(p *policies.Policy, metric string) bool {
	used := p.UsesMetrics()
	return used == nil || slices.Contains(used, metric)
}

// fleetGap names the metrics policy p reads that no reference host had a
// value of at the last tick, with the hosts that were the reference
// ("latency_p95, errors on the untouched hosts").
func (x *execution) fleetGap(p *policies.Policy) string {
	var untouched, passed []string
	for m, q := range x.queries {
		if !x.eng.FleetNoData(m) || !reads(p, q.Name) {
			continue
		}
		if x.eng.UntouchedReference(m) {
			untouched = append(untouched, q.Name)
		} else {
			passed = append(passed, q.Name)
		}
	}
	var parts []string
	if len(untouched) > 0 {
		parts = append(parts, strings.Join(untouched, ", ")+" on the untouched hosts")
	}
	if len(passed) > 0 {
		parts = append(parts, strings.Join(passed, ", ")+" on the hosts of the waves that passed")
	}
	return strings.Join(parts, "; ")
}

// scopeHosts are the hosts a fleet-level fire in w reverts: revert.scope's
// (the wave's hosts, the bake's being the last wave's; every changed
// host; the degraded and failed ones) and, whatever the scope, every
// degraded host that carries the change: the fire's cause, in whichever
// wave it was changed. A scope: host fire that no degraded host explains
// (a rule on z or current) reverts the wave's hosts, and note says so.
func (x *execution) scopeHosts(w PlannedWave) (hosts []string, note string) {
	wave := w.Name
	if w.Hosts == nil && w.Name == "bake" && len(x.Plan.Waves) > 0 {
		wave = x.Plan.Waves[len(x.Plan.Waves)-1].Name
	}
	var waveHosts []string
	for i := range x.hosts {
		h := &x.hosts[i]
		if !h.carries() {
			continue
		}
		if h.wave == wave {
			waveHosts = append(waveHosts, h.Name)
		}
		in := x.eng.Host(i).Degraded
		switch x.Spec.Revert.Scope {
		case ScopeAll:
			in = true
		case ScopeHost:
			in = in || h.failed
		default: // wave
			in = in || h.wave == wave
		}
		if in {
			hosts = append(hosts, h.Name)
		}
	}
	if len(hosts) == 0 && len(waveHosts) > 0 && x.Spec.Revert.Scope == ScopeHost {
		hosts, note = waveHosts, fmt.Sprintf("no host is degraded or failed, so scope host reverts %s's hosts", wave)
	}
	return hosts, note
}

// metricsError ends the rollout after error_limit ticks without metrics:
// it never promotes on missing data.
func (x *execution) metricsError(ctx context.Context, w PlannedWave, now time.Time, also ...string) verdict {
	reason := fmt.Sprintf("metrics unavailable for %d consecutive ticks (error_limit %d): %v; never promoting on missing data", x.errTicks, x.Spec.Metrics.ErrorLimit, x.lastErr)
	x.decided(report.Decision{At: now, Wave: w.Name, Policy: "metrics", Scope: "fleet", Outcome: "error", Fired: true, Reason: reason})
	return x.fire(ctx, w, "metrics-error", reason, also...)
}

// fire ends the rollout after a fleet-level fire: it reverts per
// revert.scope (or freezes) and says how the rollout ends. also are hosts
// reverted whatever the scope: the changed hosts without data that a
// no-data fire is for (a host of a wave that passed, whose data stopped
// since, is in no known state).
func (x *execution) fire(ctx context.Context, w PlannedWave, trigger, reason string, also ...string) verdict {
	scope := x.Spec.Revert.Scope
	hosts, note := x.scopeHosts(w)
	for _, h := range also {
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if x.Spec.Revert.Mode == ModeFreeze {
		if c := x.causes(); c != "" {
			reason += "; degraded: " + c
		}
		x.logf("   %s fired: %s — freezing (revert.mode: freeze), %d hosts keep the change", trigger, reason, len(hosts))
		return verdict{report.OutcomeHalted, fmt.Sprintf("%s fired: %s; frozen without revert (revert.mode: freeze), a person must decide", trigger, reason)}
	}
	if note != "" {
		reason += "; " + note
	}
	if c := x.causes(); c != "" {
		reason += "; degraded: " + c
	}
	x.logf("   %s fired: %s — reverting %s (scope %s)", trigger, reason, abbreviate(hosts, 8), scope)
	rb := x.revertHosts(ctx, hosts, reason, trigger, false)
	rb.Scope = scope
	msg := fmt.Sprintf("%s fired in wave %s: %s", trigger, w.Name, reason)
	if !x.dry() && !rb.Verified {
		return verdict{report.OutcomeRolledBack, msg + "; the rollback could NOT be verified"}
	}
	return verdict{report.OutcomeRolledBack, msg}
}

// causes names the degraded hosts that made a fleet policy fire, worst
// first, each with the metric that scored highest ("web-3 (latency_p95)"):
// with revert.scope wave the whole wave is reverted, and this says which
// hosts it was for. "" when none is degraded.
func (x *execution) causes() string {
	env := x.eng.Env()
	var hosts []*policies.Host
	for _, h := range env.Hosts {
		if h.Degraded {
			hosts = append(hosts, h)
		}
	}
	slices.SortStableFunc(hosts, func(a, b *policies.Host) int { return cmp.Compare(b.Score, a.Score) })
	names := make([]string, len(hosts))
	for i, h := range hosts {
		worst, score := "", -1.0
		for _, q := range x.queries {
			if m := h.Metrics[q.Name]; m != nil && m.Score > score {
				worst, score = q.Name, m.Score
			}
		}
		names[i] = fmt.Sprintf("%s (%s)", h.Name, worst)
	}
	return abbreviate(names, 5)
}
