package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// This file says what a stage needs. To start: every host of it has a
// baseline, or it could not be judged. To pass: its hosts really carry
// the change, judged per host from the play's recap. The canary passes
// only if every canary host applied; a later wave only if no more of its
// hosts failed to apply than revert.max_failed allows; no stage passes
// with no host carrying the change.

// emptyBaselines says which hosts have no baseline sample for some query
// over the window that ends at start ("" when every host has one): such
// a host could not be judged, so its wave must not change it.
func (x *execution) emptyBaselines(ctx context.Context, start time.Time, hosts []ports.Host) string {
	window := x.Spec.Metrics.Baseline.D()
	var parts []string
	for _, q := range x.queries {
		var empty []string
		for _, h := range hosts {
			i := x.index[h.Name]
			mt := x.eng.Host(i).Metrics[q.Name]
			if mt == nil || mt.Samples > 0 {
				continue
			}
			label := fmt.Sprintf("%s (%s=%q)", h.Name, x.Spec.Metrics.HostLabel, x.keys[i])
			if c := x.lastChange(ctx, i); c.After(start.Add(-window)) && c.Before(start) {
				// baseline() shortened this host's window.
				label = fmt.Sprintf("%s (%s=%q, window from its last change at %s)", h.Name, x.Spec.Metrics.HostLabel, x.keys[i], c.UTC().Format(time.RFC3339))
			}
			empty = append(empty, label)
		}
		if len(empty) > 0 {
			parts = append(parts, fmt.Sprintf("query %s (%s) returned no sample for %s", q.Name, q.Expr, abbreviate(empty, 5)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("no baseline: %s, over [%s, %s) (metrics.baseline %s, every %s); a host without a baseline cannot be judged, so it is not changed "+
		"(a range shorter than two scrape intervals, such as rate(x[1s]) on a 1 s scrape, or a host label or metrics.host_value that does not match, gives none)",
		strings.Join(parts, "; "), start.Add(-window).UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339), fmtDuration(window), fmtDuration(x.Spec.Metrics.Interval.D()))
}

// notStarted ends the rollout before a wave changed anything: an error
// (exit 1) when no host carries the change yet, otherwise a halt (exit
// 4): the earlier waves keep the change, and a person decides.
func (x *execution) notStarted(w PlannedWave, reason string) verdict {
	var keep []string
	for i := range x.hosts {
		if x.hosts[i].carries() {
			keep = append(keep, x.hosts[i].Name)
		}
	}
	if len(keep) == 0 {
		return verdict{report.OutcomeError, fmt.Sprintf("%s not started: %s; no host was changed", w.Name, reason)}
	}
	return verdict{report.OutcomeHalted, fmt.Sprintf("%s not started: %s; %d hosts of earlier waves keep the change (%s): a person must decide",
		w.Name, reason, len(keep), abbreviate(keep, 8))}
}

// applied records a finished apply and judges it. A host whose play ran
// to its end (ok, changed) carries the change. One whose play failed
// after changing something is reverted by name. One whose play failed
// before changing anything, that was unreachable (a revert could not
// reach it either) or on which no task ran (skipped, unmatched) is left
// as it is, out of the rollout, never reported reverted. Then the stage
// is judged (judgeStage); an apply that did not finish ends the rollout
// (applyBroken).
func (x *execution) applied(ctx context.Context, w PlannedWave, ao applyOutcome) verdict {
	for _, hr := range ao.res.Hosts {
		if i, ok := x.index[hr.Host]; ok {
			h := &x.hosts[i]
			h.status, h.message = hr.Status, hr.Message
			h.changedTasks = append(h.changedTasks, hr.ChangedTasks...)
		}
	}
	if ao.err != nil {
		return x.applyBroken(ctx, w, ao.err)
	}
	var revert []string
	left := 0
	for _, hr := range ao.res.Hosts {
		i, ok := x.index[hr.Host]
		if !ok {
			continue
		}
		h := &x.hosts[i]
		switch {
		case hr.Applied():
			h.applied = true
		case hr.Status == ports.HostFailed && len(hr.ChangedTasks) > 0:
			// A failed play may have changed something: revert it.
			h.applied = true
			x.markFailed(i)
			revert = append(revert, hr.Host)
			x.logf("   %s failed after changing something (%s)", hr.Host, hr.Message)
		default:
			if hr.Status == ports.HostFailed || hr.Status == ports.HostUnreachable {
				x.markFailed(i)
			}
			x.exclude(i)
			h.revertReason = leftAlone(hr)
			left++
			x.logf("   %s %s (%s): %s", hr.Host, hr.Status, hr.Message, h.revertReason)
		}
	}
	x.logf("   applied: %d of %d hosts", len(ao.res.Hosts)-len(revert)-left, len(ao.res.Hosts))
	if !ao.resumed {
		x.tel.HostsApplied(w.Name, len(ao.res.Hosts)-left)
		x.journal(ctx, JournalEntry{Step: JournalApplyEnd, Wave: w.Name, Hosts: hostResultNames(ao.res.Hosts), Detail: applyDetail(ao.res.Hosts)})
		x.recordApplied(ctx, ao.res.Hosts)
	}
	if reason := x.judgeStage(w); reason != "" {
		return x.stageFailed(ctx, w, report.TriggerApplyFailed, reason)
	}
	if len(revert) > 0 {
		x.revertHosts(ctx, revert, "apply failed on the host", report.TriggerApplyFailed, true)
	}
	return verdict{}
}

// leftAlone says why a host that did not apply is not reverted.
func leftAlone(hr ports.HostResult) string {
	switch hr.Status {
	case ports.HostFailed:
		return "apply failed before changing anything; left as it was"
	case ports.HostUnreachable:
		if len(hr.ChangedTasks) > 0 {
			return "unreachable after changing something: not reverted (a revert cannot reach it either); its state is unknown: check it by hand"
		}
		return "unreachable: not reverted (a revert cannot reach it either); no task changed it"
	case ports.HostUnmatched:
		return "no play matched it; left as it was"
	}
	return "no task ran on it; left as it was"
}

// judgeStage says why the wave's apply does not pass ("" when it does):
// a canary host that did not apply, more hosts of a later wave than
// revert.max_failed allows, or no host carrying the change.
func (x *execution) judgeStage(w PlannedWave) string {
	var ran int
	var bad, none []string
	carriers := 0
	for _, wh := range w.Hosts {
		h := &x.hosts[x.index[wh.Name]]
		if h.status != "" {
			ran++
		}
		switch {
		case h.carries() && h.appliedStatus():
			carriers++
			continue
		case h.status != "" && !h.appliedStatus():
			bad = append(bad, h.Name)
		}
		none = append(none, h.Name)
	}
	allowed, rule := 0, "the canary tolerates none"
	if w.Index > 0 {
		mf := x.Spec.Revert.MaxFailed
		allowed = mf.Of(ran)
		rule = fmt.Sprintf("revert.max_failed: %d", allowed)
		if mf.Percent > 0 {
			rule = fmt.Sprintf("revert.max_failed: %s of %d hosts is %d", mf.String(), ran, allowed)
		}
	}
	switch {
	case len(bad) > allowed:
		return fmt.Sprintf("%s did not apply on %d of %d hosts (%s): %s", w.Name, len(bad), ran, rule, x.why(bad))
	case carriers == 0:
		return fmt.Sprintf("no host of %s carries the change: %s", w.Name, x.why(none))
	}
	return ""
}

// why says, for hosts that do not carry the change, why: the apply's
// status and message, or why the run left them out. Hosts with the same
// story are named together, so a play that matched no host reads once.
func (x *execution) why(names []string) string {
	var order []string
	hostsOf := map[string][]string{}
	for _, n := range names {
		h := &x.hosts[x.index[n]]
		story := h.revertReason
		switch {
		case h.status != "" && !h.appliedStatus() && h.message != "":
			story = h.status + ": " + h.message
		case h.status != "" && !h.appliedStatus():
			story = h.status
		case story == "":
			story = "not changed"
		}
		if hostsOf[story] == nil {
			order = append(order, story)
		}
		hostsOf[story] = append(hostsOf[story], n)
	}
	const most = 5
	parts := make([]string, 0, most+1)
	told := 0
	for i, story := range order {
		if i == most {
			parts = append(parts, fmt.Sprintf("and %d more hosts", len(names)-told))
			break
		}
		parts = append(parts, abbreviate(hostsOf[story], 8)+" "+story)
		told += len(hostsOf[story])
	}
	return strings.Join(parts, "; ")
}

// appliedStatus reports whether the host's play ran to its end (ok or
// changed).
func (h *hostState) appliedStatus() bool {
	return h.status == ports.HostOK || h.status == ports.HostChanged
}

// stageFailed ends the rollout after a stage whose hosts do not carry the
// change: what the stage changed is reverted per revert.scope (exit 3),
// the rollback's trigger says why (apply-failed, host-policy).
// With nothing left to revert the run halts (exit 4), unless the stage's
// hosts were reverted already (exit 3): what is wrong (the play's hosts:
// pattern, the inventory, SSH) needs a person.
func (x *execution) stageFailed(ctx context.Context, w PlannedWave, trigger, reason string) verdict {
	if hosts, _ := x.scopeHosts(w); len(hosts) > 0 {
		return x.fire(ctx, w, trigger, reason)
	}
	for _, wh := range w.Hosts {
		if x.hosts[x.index[wh.Name]].reverted {
			return verdict{report.OutcomeRolledBack, reason + "; its hosts were reverted already"}
		}
	}
	x.logf("   %s: nothing to revert; halting", reason)
	return verdict{report.OutcomeHalted, reason + "; nothing this stage changed is left to revert: a person must decide"}
}

// applyBroken ends the rollout after an apply that did not finish: the
// playbook could not run, or ran past apply.timeout and was stopped. No
// host's result can be trusted to be final then, so every host of the
// wave counts as failed and the wave is reverted per revert.scope. An
// interrupted run gets the zero verdict: Execute reverts (or freezes)
// what changed.
func (x *execution) applyBroken(ctx context.Context, w PlannedWave, err error) verdict {
	if ctx.Err() != nil {
		return verdict{}
	}
	for _, h := range w.Hosts {
		if i := x.index[h.Name]; x.hosts[i].carries() {
			x.markFailed(i)
		}
	}
	x.logf("   apply failed: %v", err)
	if errors.Is(err, context.DeadlineExceeded) {
		return x.fire(ctx, w, report.TriggerApplyTimeout, fmt.Sprintf("the playbook timed out: it ran past apply.timeout (%s) and was stopped", fmtDuration(x.applyTimeout())))
	}
	return x.fire(ctx, w, report.TriggerApplyError, "the playbook could not run: "+err.Error())
}

// stageEmptied says why a wave does not pass when no host of it carries
// the change at the end of its monitoring (host policies reverted every
// one); "" when some host does. The rollout then ends as a stage that
// does not pass (stageFailed): what else revert.scope takes is reverted
// with it.
func (x *execution) stageEmptied(w PlannedWave) string {
	var none []string
	for _, wh := range w.Hosts {
		h := &x.hosts[x.index[wh.Name]]
		if h.carries() {
			return ""
		}
		none = append(none, h.Name)
	}
	return fmt.Sprintf("no host of %s carries the change at the end of its monitoring: %s", w.Name, x.why(none))
}

// unknownHosts turns an ending that is not already a halt into one when
// a host was unreachable after its play changed something: its state is
// unknown, and a person must look.
func (x *execution) unknownHosts(v verdict) verdict {
	var unknown []string
	for i := range x.hosts {
		h := &x.hosts[i]
		if h.status == ports.HostUnreachable && len(h.changedTasks) > 0 {
			unknown = append(unknown, h.Name)
		}
	}
	if len(unknown) == 0 || v.outcome == report.OutcomeError {
		return v
	}
	v.outcome = report.OutcomeHalted
	v.reason += fmt.Sprintf("; %s became unreachable after the play changed something: not reverted, state unknown, a person must look", abbreviate(unknown, 8))
	return v
}

// applyDetail is the apply-end journal entry's detail: the hosts that did
// not apply, by status.
func applyDetail(res []ports.HostResult) string {
	var parts []string
	for _, status := range []string{ports.HostFailed, ports.HostUnreachable, ports.HostSkipped, ports.HostUnmatched} {
		var changed, unchanged []string
		for _, hr := range res {
			switch {
			case hr.Status != status:
			case len(hr.ChangedTasks) > 0:
				changed = append(changed, hr.Host)
			default:
				unchanged = append(unchanged, hr.Host)
			}
		}
		if len(changed) > 0 {
			parts = append(parts, status+": "+strings.Join(changed, ","))
		}
		if len(unchanged) > 0 {
			parts = append(parts, status+" unchanged: "+strings.Join(unchanged, ","))
		}
	}
	return strings.Join(parts, "; ")
}
