package runner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// This file takes up an unfinished run from its journal: resume finishes
// what it was doing, abort reverts everything it changed. Either first
// stops a playbook the killed run left running.

// PlanFromJournal rebuilds the plan an unfinished run followed, with the
// hosts as discovered now (addresses may have changed, names may not).
func PlanFromJournal(spec *Spec, doc *JournalDoc, hosts []ports.Host) (*Plan, error) {
	byName := make(map[string]ports.Host, len(hosts))
	for _, h := range hosts {
		byName[h.Name] = h
	}
	p := &Plan{Bake: spec.Bake.D()}
	for i, jw := range doc.Plan {
		w := PlannedWave{Name: jw.Name, Index: i, Monitor: spec.Canary.Monitor.D()}
		if m, err := time.ParseDuration(jw.Monitor); err == nil {
			w.Monitor = m
		} else if i > 0 && i-1 < len(spec.Waves) && spec.Waves[i-1].Monitor > 0 {
			w.Monitor = spec.Waves[i-1].Monitor.D()
		}
		for _, n := range jw.Hosts {
			h, ok := byName[n]
			if !ok {
				h = ports.Host{Name: n, Address: n}
			}
			w.Hosts = append(w.Hosts, h)
			p.Hosts = append(p.Hosts, h)
		}
		p.Waves = append(p.Waves, w)
	}
	return p, nil
}

// resume continues an unfinished run from its journal: it finishes a
// revert that was under way, keeps monitoring a wave that was applied
// but not yet judged (re-applying it when its apply had not ended:
// playbooks are idempotent), and otherwise goes on with the next wave.
func (x *execution) resume(ctx context.Context) (verdict, error) {
	rs := x.Resume
	doc := rs.Doc
	x.logf("resuming run %s of %q (started %s, %d journal entries)", doc.RunID, doc.Rollout, doc.StartedAt.UTC().Format(time.RFC3339), len(doc.Entries))
	x.stopOrphans(ctx, doc)
	for n := range rs.Reverted {
		if i, ok := x.index[n]; ok {
			// Out of the rollout, in the engine too: never judged, never
			// a control, like any host revertHosts takes out.
			x.exclude(i)
			x.hosts[i].reverted = true
			x.hosts[i].revertReason = "reverted before the crash"
		}
	}
	starts := map[string]JournalEntry{}
	snaps := map[string]bool{}
	for _, e := range doc.Entries {
		switch e.Step {
		case JournalApplyStart:
			starts[e.Wave] = e
		case JournalSnapshot:
			snaps[e.Wave] = true
			for _, n := range e.Hosts {
				if i, ok := x.index[n]; ok {
					x.hosts[i].snapshot = "rollguard-" + doc.RunID
				}
			}
		}
	}
	// A fleet-level revert (the run was ending) that started: finish it,
	// whether or not it ended, since its verification may not have.
	if e, ok := lastRevert(doc); ok && e.Scope != ScopeHost {
		for wi, w := range x.Plan.Waves {
			if st, ok := starts[w.Name]; ok {
				if err := x.restoreWave(ctx, wi, st.Start, st.Hosts); err != nil {
					return verdict{}, err
				}
			}
		}
		x.logf("   the run was reverting %s: finishing the revert", strings.Join(e.Hosts, ", "))
		for _, n := range e.Hosts {
			x.hosts[x.index[n]].excluded = false
		}
		rb := x.revertHosts(ctx, e.Hosts, "resumed: "+e.Detail, report.TriggerResume, false)
		rb.Scope = x.Spec.Revert.Scope
		if len(x.notJournaled) > 0 {
			return verdict{report.OutcomeError, fmt.Sprintf("resumed run %s, which was reverting (%s)", doc.RunID, e.Detail)}, nil
		}
		return verdict{report.OutcomeRolledBack, fmt.Sprintf("resumed run %s and finished its revert (%s); verified: %v", doc.RunID, e.Detail, rb.Verified)}, nil
	}
	for wi, w := range x.Plan.Waves {
		st, started := starts[w.Name]
		if _, ok := rs.Passed[w.Name]; ok {
			if err := x.restoreWave(ctx, wi, st.Start, st.Hosts); err != nil {
				return verdict{}, err
			}
			x.report.Waves[wi].Outcome = report.WavePassed
			continue
		}
		// A host-level revert that did not end: finish it first.
		if rs.Reverting != nil {
			x.revertHosts(ctx, rs.Reverting.Hosts, "resumed: "+rs.Reverting.Detail, report.TriggerResume, true)
			rs.Reverting = nil
		}
		if !started {
			x.logf("   continuing with wave %s", w.Name)
			return x.waves(ctx, wi)
		}
		var hosts []ports.Host
		for _, n := range st.Hosts {
			if i, ok := x.index[n]; ok && !x.hosts[i].excluded {
				hosts = append(hosts, x.Plan.Hosts[i])
			}
		}
		applied := rs.Applied && rs.Current == w.Name
		x.logf("   wave %s was under way (apply ended: %v): %s", w.Name, applied, abbreviate(hostNames(hosts), 8))
		rw := &resumeWave{start: st.Start, hosts: hosts, applied: applied, snapshotted: snaps[w.Name]}
		v, err := x.wave(ctx, wi, w, rw)
		if err != nil || v.ends() {
			return v, err
		}
		return x.waves(ctx, wi+1)
	}
	return x.waves(ctx, len(x.Plan.Waves))
}

// abort reverts everything the unfinished run changed.
func (x *execution) abort(ctx context.Context) (verdict, error) {
	rs := x.Resume
	doc := rs.Doc
	x.logf("aborting run %s of %q: reverting every host it changed", doc.RunID, doc.Rollout)
	x.stopOrphans(ctx, doc)
	for wi, w := range x.Plan.Waves {
		for _, e := range doc.Entries {
			if e.Step == JournalApplyStart && e.Wave == w.Name {
				if err := x.restoreWave(ctx, wi, e.Start, e.Hosts); err != nil {
					return verdict{}, err
				}
				break
			}
		}
	}
	var hosts []string
	for _, n := range rs.Changed {
		if !rs.Reverted[n] {
			hosts = append(hosts, n)
		}
	}
	if len(hosts) == 0 {
		return verdict{report.OutcomeRolledBack, fmt.Sprintf("aborted run %s: it had changed no host that is not reverted", doc.RunID)}, nil
	}
	rb := x.revertHosts(ctx, hosts, "aborted by the operator (--abort)", report.TriggerAbort, false)
	rb.Scope = ScopeAll
	if len(x.notJournaled) > 0 {
		return verdict{report.OutcomeError, fmt.Sprintf("aborting run %s", doc.RunID)}, nil
	}
	return verdict{report.OutcomeRolledBack, fmt.Sprintf("aborted run %s: reverted %d hosts (%s); verified: %v", doc.RunID, len(hosts), abbreviate(hosts, 8), rb.Verified)}, nil
}

// restoreWave puts a wave that was applied before the crash back into the
// engine: baselines from its original window, then its hosts as changed.
func (x *execution) restoreWave(ctx context.Context, wi int, start time.Time, hosts []string) error {
	if err := x.baseline(ctx, start, x.untouched()); err != nil {
		return fmt.Errorf("baseline for wave %s: %w", x.Plan.Waves[wi].Name, err)
	}
	idx := make([]int, 0, len(hosts))
	for _, n := range hosts {
		i, ok := x.index[n]
		if !ok || x.hosts[i].excluded {
			continue
		}
		idx = append(idx, i)
		x.hosts[i].applied = true
	}
	x.startWave(x.Plan.Waves[wi], idx)
	x.report.Waves[wi].ApplyStartedAt = ptr(start)
	return nil
}

// stopOrphans has the Applier stop the playbooks that the killed run
// left running on this machine before a resumed run acts: two playbooks
// writing the same hosts at once could leave either's result.
func (x *execution) stopOrphans(ctx context.Context, doc *JournalDoc) {
	pids := doc.playbooksHere()
	if len(pids) == 0 || x.dry() {
		return
	}
	for _, pid := range x.Applier.StopOrphans(ctx, pids) {
		x.logf("   stopped playbook process group %d left running by the killed run", pid)
	}
}

// lastRevert is the last revert entry (start or end).
func lastRevert(doc *JournalDoc) (JournalEntry, bool) {
	for i := len(doc.Entries) - 1; i >= 0; i-- {
		e := doc.Entries[i]
		if e.Step == JournalRevertStart || e.Step == JournalRevertEnd {
			return e, true
		}
	}
	return JournalEntry{}, false
}
