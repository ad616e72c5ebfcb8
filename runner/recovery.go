package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollguard/rollguard/steps"
)

// This file holds what makes a rollout recoverable: the journal writes,
// snapshots, the version history and known-good re-apply, the chain of
// revert methods, and resuming or aborting an unfinished run.

// resumeWave is what a resumed run knows of the wave that was under way.
type resumeWave struct {
	// start is the wave's original start: its baseline window ends there.
	start time.Time
	// hosts are the hosts the wave was applying to.
	hosts []steps.Host
	// applied says the apply had ended before the crash.
	applied bool
	// snapshotted says the snapshot step had started.
	snapshotted bool
}

func (r *Rollout) journalPlan() []JournalWave {
	out := make([]JournalWave, len(r.Plan.Waves))
	for i, w := range r.Plan.Waves {
		out[i] = JournalWave{Name: w.Name, Hosts: hostNames(w.Hosts)}
	}
	return out
}

// journalMust writes an entry before the step it announces; the step
// must not run when this fails.
func (r *Rollout) journalMust(ctx context.Context, e JournalEntry) error {
	if r.Journal == nil {
		return nil
	}
	if e.At.IsZero() {
		e.At = r.Clock.Now()
	}
	return r.Journal.Write(context.WithoutCancel(ctx), e)
}

// journal writes an entry that follows an action; a failure is reported
// but does not undo the action.
func (r *Rollout) journal(ctx context.Context, e JournalEntry) {
	if err := r.journalMust(ctx, e); err != nil {
		r.Logger.Error("journal write failed", "step", e.Step, "err", err)
		r.logf("   WARNING: journal: %v", err)
	}
}

// journalPlaybook records a started playbook (this machine and its pid).
func (r *Rollout) journalPlaybook(ctx context.Context, pid int) {
	host, _ := os.Hostname()
	r.journal(ctx, JournalEntry{Step: JournalPlaybook, Detail: fmt.Sprintf("%s:%d", host, pid)})
}

// stopOrphans stops the playbooks a killed run left running on this
// machine before a resumed run acts: two playbooks writing the same
// hosts at once could leave either's result. A playbook's pid is its
// process group; it is signalled only while /proc shows that pid still
// running ansible-playbook, so a recycled pid is left alone.
func (r *Rollout) stopOrphans(doc *JournalDoc) {
	host, _ := os.Hostname()
	for _, e := range doc.Entries {
		if e.Step != JournalPlaybook {
			continue
		}
		h, p, ok := strings.Cut(e.Detail, ":")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || h != host || !isPlaybook(pid) {
			continue
		}
		r.logf("   stopping playbook process group %d left running by the killed run", pid)
		syscall.Kill(-pid, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for isPlaybook(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond) // polling a process we do not own; not a test
		}
		if isPlaybook(pid) {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// isPlaybook reports whether pid is a running ansible-playbook.
func isPlaybook(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil && strings.Contains(string(stat), ") Z ") {
		return false // a zombie waits for its parent; it changes nothing
	}
	return strings.Contains(string(cmdline), "ansible-playbook")
}

// liveHosts drops the hosts already taken out of the rollout.
func (r *Rollout) liveHosts(hosts []steps.Host) []steps.Host {
	var out []steps.Host
	for _, h := range hosts {
		if !r.excluded[r.index[h.Name]] {
			out = append(out, h)
		}
	}
	return out
}

// takeSnapshots snapshots the wave's hosts and returns those the apply
// may change.
func (r *Rollout) takeSnapshots(ctx context.Context, w PlannedWave, hosts []steps.Host) ([]steps.Host, error) {
	if err := r.journalMust(ctx, JournalEntry{Step: JournalSnapshot, Wave: w.Name, Hosts: hostNames(hosts)}); err != nil {
		return nil, err
	}
	r.logf("   snapshot of %d hosts", len(hosts))
	var keep []steps.Host
	for i, res := range r.Snapshots.Create(ctx, hosts, r.RunID) {
		h := hosts[i]
		hi := r.index[h.Name]
		if res.OK {
			r.snapshot[hi] = res.Snapshot
			r.hostRep[hi].Snapshot = res.Snapshot
			keep = append(keep, h)
			continue
		}
		r.logf("   snapshot of %s FAILED: %v", h.Name, res.Err)
		if !r.SnapshotSkipHost {
			keep = append(keep, h)
			continue
		}
		r.excluded[hi] = true
		r.eng.Exclude(hi)
		r.hostRep[hi].RevertReason = fmt.Sprintf("snapshot failed (%v): not changed (snapshot.on_failure: skip_host)", res.Err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return keep, nil
}

// deleteSnapshots removes the run's snapshots once the change is final.
func (r *Rollout) deleteSnapshots(ctx context.Context) {
	if r.Snapshots == nil || r.dry() {
		return
	}
	var hosts []steps.Host
	for i, h := range r.Plan.Hosts {
		if r.snapshot[i] != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return
	}
	for _, res := range r.Snapshots.Delete(context.WithoutCancel(ctx), hosts, r.RunID) {
		if !res.OK {
			r.logf("   snapshot delete on %s failed: %v", res.Host, res.Err)
		}
	}
}

// passed records a wave that passed: its version becomes known-good on
// its hosts.
func (r *Rollout) passed(ctx context.Context, w PlannedWave) {
	var names []string
	for _, h := range w.Hosts {
		i := r.index[h.Name]
		if r.changed[i] && !r.excluded[i] {
			names = append(names, h.Name)
		}
	}
	r.journal(ctx, JournalEntry{Step: JournalWavePassed, Wave: w.Name, Hosts: names})
	if r.History != nil && len(names) > 0 && !r.dry() {
		if err := r.History.MarkKnownGood(context.WithoutCancel(ctx), names, r.Spec.Apply.Version, r.RunID); err != nil {
			r.logf("   WARNING: history: %v", err)
		}
	}
}

func hostResultNames(res []steps.HostResult) []string {
	out := make([]string, len(res))
	for i, h := range res {
		out[i] = h.Host
	}
	return out
}

func failedDetail(failed, unchanged []string) string {
	var parts []string
	if len(failed) > 0 {
		parts = append(parts, "failed: "+strings.Join(failed, ","))
	}
	if len(unchanged) > 0 {
		parts = append(parts, "failed unchanged: "+strings.Join(unchanged, ","))
	}
	return strings.Join(parts, "; ")
}

// recordApplied writes each applied host's new version into the history.
func (r *Rollout) recordApplied(ctx context.Context, res []steps.HostResult) {
	if r.History == nil || r.dry() {
		return
	}
	for _, hr := range res {
		outcome := steps.VersionApplied
		if hr.Status == steps.HostFailed || hr.Status == steps.HostUnreachable {
			outcome = steps.VersionFailed
		}
		rec := steps.VersionRecord{Version: r.Spec.Apply.Version, Playbook: r.Spec.Apply.Playbook, ExtraVars: r.Spec.Apply.ExtraVars,
			At: r.Clock.Now(), RunID: r.RunID, Outcome: outcome}
		if err := r.History.Record(context.WithoutCancel(ctx), hr.Host, rec); err != nil {
			r.logf("   WARNING: history of %s: %v", hr.Host, err)
		}
	}
}

// recordOutcome marks this run's version on hosts (reverted).
func (r *Rollout) recordOutcome(ctx context.Context, names []string, outcome string) {
	if r.History == nil || r.dry() {
		return
	}
	if err := r.History.SetOutcome(context.WithoutCancel(ctx), names, r.Spec.Apply.Version, r.RunID, outcome); err != nil {
		r.logf("   WARNING: history: %v", err)
	}
}

// revertMethod reverts some hosts and says which it could not.
type revertMethod struct {
	name string
	run  func(ctx context.Context, hosts []string) (ok, failed []string, detail string)
}

// revertMethods are the configured methods, in the order they are tried.
func (r *Rollout) revertMethods() []revertMethod {
	var ms []revertMethod
	if r.Spec.Revert.Playbook != "" {
		ms = append(ms, revertMethod{"revert-playbook", func(ctx context.Context, hosts []string) ([]string, []string, string) {
			req := r.applyRequest(ctx, hosts)
			req.Playbook = r.Spec.Revert.Playbook
			return r.applyFor(ctx, req, hosts)
		}})
	}
	if r.Spec.Revert.KnownGood {
		ms = append(ms, revertMethod{"known-good", r.revertKnownGood})
	}
	if r.Snapshots != nil {
		ms = append(ms, revertMethod{"snapshot", r.revertSnapshot})
	}
	return ms
}

// applyFor runs one playbook and splits hosts by outcome.
func (r *Rollout) applyFor(ctx context.Context, req steps.ApplyRequest, hosts []string) (ok, failed []string, detail string) {
	res, err := r.Applier.Apply(ctx, req, nil)
	if err != nil {
		return nil, hosts, err.Error()
	}
	status := map[string]steps.HostResult{}
	for _, hr := range res.Hosts {
		status[hr.Host] = hr
	}
	var notes []string
	for _, h := range hosts {
		hr, seen := status[h]
		switch {
		case !seen:
			failed = append(failed, h)
			notes = append(notes, h+": no result")
		case hr.Status == steps.HostFailed || hr.Status == steps.HostUnreachable:
			failed = append(failed, h)
			notes = append(notes, fmt.Sprintf("%s %s: %s", h, hr.Status, hr.Message))
		default:
			ok = append(ok, h)
		}
	}
	return ok, failed, strings.Join(notes, "; ")
}

// revertKnownGood re-runs the apply playbook with each host's last
// known-good version (from an earlier run), one playbook run per distinct
// version.
func (r *Rollout) revertKnownGood(ctx context.Context, hosts []string) (ok, failed []string, detail string) {
	if r.History == nil {
		return nil, hosts, "no history store"
	}
	type group struct {
		rec   steps.VersionRecord
		hosts []string
	}
	groups := map[string]*group{}
	var notes []string
	for _, h := range hosts {
		rec, found, err := r.lastKnownGood(ctx, h)
		switch {
		case err != nil:
			failed = append(failed, h)
			notes = append(notes, fmt.Sprintf("%s: history: %v", h, err))
			continue
		case !found:
			failed = append(failed, h)
			notes = append(notes, h+": no known-good version in the history")
			continue
		}
		key, _ := json.Marshal([]any{rec.Version, rec.Playbook, rec.ExtraVars})
		g := groups[string(key)]
		if g == nil {
			g = &group{rec: rec}
			groups[string(key)] = g
		}
		g.hosts = append(g.hosts, h)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := groups[k]
		req := r.applyRequest(ctx, g.hosts)
		if g.rec.Playbook != "" {
			req.Playbook = g.rec.Playbook
		}
		req.ExtraVars = g.rec.ExtraVars
		o, f, d := r.applyFor(ctx, req, g.hosts)
		ok, failed = append(ok, o...), append(failed, f...)
		notes = append(notes, fmt.Sprintf("version %s on %s", g.rec.Version, strings.Join(g.hosts, ",")))
		if d != "" {
			notes = append(notes, d)
		}
	}
	return ok, failed, strings.Join(notes, "; ")
}

// lastKnownGood is the newest known-good version of an earlier run: this
// run's own version may already be marked known-good on earlier waves.
func (r *Rollout) lastKnownGood(ctx context.Context, host string) (steps.VersionRecord, bool, error) {
	recs, err := r.History.For(ctx, host)
	if err != nil {
		return steps.VersionRecord{}, false, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Outcome == steps.VersionKnownGood && recs[i].RunID != r.RunID {
			return recs[i], true, nil
		}
	}
	return steps.VersionRecord{}, false, nil
}

// revertSnapshot restores the snapshots this run took.
func (r *Rollout) revertSnapshot(ctx context.Context, hosts []string) (ok, failed []string, detail string) {
	var with []steps.Host
	var notes []string
	for _, h := range hosts {
		i := r.index[h]
		if r.snapshot[i] == "" {
			failed = append(failed, h)
			notes = append(notes, h+": no snapshot taken")
			continue
		}
		with = append(with, r.Plan.Hosts[i])
	}
	for _, res := range r.Snapshots.Restore(ctx, with, r.RunID) {
		if res.OK {
			ok = append(ok, res.Host)
			continue
		}
		failed = append(failed, res.Host)
		notes = append(notes, fmt.Sprintf("%s: %v", res.Host, res.Err))
	}
	return ok, failed, strings.Join(notes, "; ")
}

// PlanFromJournal rebuilds the plan an unfinished run followed, with the
// hosts as discovered now (addresses may have changed, names may not).
func PlanFromJournal(spec *Spec, doc *JournalDoc, hosts []steps.Host) (*Plan, error) {
	byName := make(map[string]steps.Host, len(hosts))
	for _, h := range hosts {
		byName[h.Name] = h
	}
	p := &Plan{Bake: spec.Bake.D()}
	for i, jw := range doc.Plan {
		w := PlannedWave{Name: jw.Name, Index: i, Monitor: spec.Canary.Monitor.D()}
		if i > 0 && i-1 < len(spec.Waves) && spec.Waves[i-1].Monitor > 0 {
			w.Monitor = spec.Waves[i-1].Monitor.D()
		}
		for _, n := range jw.Hosts {
			h, ok := byName[n]
			if !ok {
				h = steps.Host{Name: n, Address: n}
			}
			w.Hosts = append(w.Hosts, h)
			p.Hosts = append(p.Hosts, h)
		}
		p.Waves = append(p.Waves, w)
	}
	return p, nil
}

// restoreWave puts a wave that was applied before the crash back into the
// engine: baselines from its original window, then its hosts as changed.
func (r *Rollout) restoreWave(ctx context.Context, wi int, start time.Time, hosts []string) error {
	var base []int
	for i := range r.Plan.Hosts {
		if !r.changed[i] && !r.excluded[i] {
			base = append(base, i)
		}
	}
	if err := r.baseline(ctx, start, base); err != nil {
		return fmt.Errorf("baseline for wave %s: %w", r.Plan.Waves[wi].Name, err)
	}
	idx := make([]int, 0, len(hosts))
	for _, n := range hosts {
		i, ok := r.index[n]
		if !ok || r.excluded[i] {
			continue
		}
		idx = append(idx, i)
		r.changed[i] = true
		r.hostRep[i].Applied = true
	}
	r.eng.StartWave(r.Plan.Waves[wi].Name, r.Plan.Waves[wi].Index, idx)
	wr := &r.report.Waves[wi]
	wr.ApplyStartedAt = ptr(start)
	return nil
}

// resume continues an unfinished run from its journal: it finishes a
// revert that was under way, keeps monitoring a wave that was applied
// but not yet judged (re-applying it when its apply had not ended:
// playbooks are idempotent), and otherwise goes on with the next wave.
func (r *Rollout) resume(ctx context.Context) (string, string, error) {
	rs := r.Resume
	doc := rs.Doc
	r.logf("resuming run %s of %q (started %s, %d journal entries)", doc.RunID, doc.Rollout, doc.StartedAt.UTC().Format(time.RFC3339), len(doc.Entries))
	r.stopOrphans(doc)
	for n := range rs.Reverted {
		if i, ok := r.index[n]; ok {
			r.excluded[i] = true
			r.hostRep[i].Reverted = true
			r.hostRep[i].RevertReason = "reverted before the crash"
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
				if i, ok := r.index[n]; ok {
					r.snapshot[i] = "rollguard-" + doc.RunID
				}
			}
		}
	}
	// A fleet-level revert (the run was ending) that started: finish it,
	// whether or not it ended, since its verification may not have.
	if e, ok := lastRevert(doc); ok && e.Scope != ScopeHost {
		for wi, w := range r.Plan.Waves {
			if st, ok := starts[w.Name]; ok {
				if err := r.restoreWave(ctx, wi, st.Start, st.Hosts); err != nil {
					return "", "", err
				}
			}
		}
		r.logf("   the run was reverting %s: finishing the revert", strings.Join(e.Hosts, ", "))
		for _, n := range e.Hosts {
			r.excluded[r.index[n]] = false
		}
		rb := r.revertHosts(ctx, e.Hosts, "resumed: "+e.Detail, "resume-revert", false)
		rb.Scope = r.Spec.Revert.Scope
		return steps.OutcomeRolledBack, fmt.Sprintf("resumed run %s and finished its revert (%s); verified: %v", doc.RunID, e.Detail, rb.Verified), nil
	}
	for wi, w := range r.Plan.Waves {
		st, started := starts[w.Name]
		if _, ok := rs.Passed[w.Name]; ok {
			if err := r.restoreWave(ctx, wi, st.Start, st.Hosts); err != nil {
				return "", "", err
			}
			r.report.Waves[wi].Outcome = "passed"
			continue
		}
		// A host-level revert that did not end: finish it first.
		if rs.Reverting != nil {
			r.revertHosts(ctx, rs.Reverting.Hosts, "resumed: "+rs.Reverting.Detail, "resume-revert", true)
			rs.Reverting = nil
		}
		if !started {
			r.logf("   continuing with wave %s", w.Name)
			return r.waves(ctx, wi)
		}
		var hosts []steps.Host
		for _, n := range st.Hosts {
			if i, ok := r.index[n]; ok && !r.excluded[i] {
				hosts = append(hosts, r.Plan.Hosts[i])
			}
		}
		r.logf("   wave %s was under way (apply ended: %v): %s", w.Name, rs.Applied && rs.Current == w.Name, abbreviate(hostNames(hosts), 8))
		rw := &resumeWave{start: st.Start, hosts: hosts, applied: rs.Applied && rs.Current == w.Name, snapshotted: snaps[w.Name]}
		out, why, err := r.wave(ctx, wi, w, rw)
		if err != nil || out != "" {
			return out, why, err
		}
		return r.waves(ctx, wi+1)
	}
	return r.waves(ctx, len(r.Plan.Waves))
}

// abort reverts everything the unfinished run changed.
func (r *Rollout) abort(ctx context.Context) (string, string, error) {
	rs := r.Resume
	doc := rs.Doc
	r.logf("aborting run %s of %q: reverting every host it changed", doc.RunID, doc.Rollout)
	r.stopOrphans(doc)
	for wi, w := range r.Plan.Waves {
		for _, e := range doc.Entries {
			if e.Step == JournalApplyStart && e.Wave == w.Name {
				if err := r.restoreWave(ctx, wi, e.Start, e.Hosts); err != nil {
					return "", "", err
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
		return steps.OutcomeRolledBack, fmt.Sprintf("aborted run %s: it had changed no host that is not reverted", doc.RunID), nil
	}
	rb := r.revertHosts(ctx, hosts, "aborted by the operator (--abort)", "abort", false)
	rb.Scope = ScopeAll
	return steps.OutcomeRolledBack, fmt.Sprintf("aborted run %s: reverted %d hosts (%s); verified: %v", doc.RunID, len(hosts), abbreviate(hosts, 8), rb.Verified), nil
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
