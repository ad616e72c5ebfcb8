package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/ports"
)

// Journal steps: each is written to the store BEFORE the step acts, so a
// run that is killed at any point leaves a journal that says what it may
// have done.
const (
	JournalRunStart   = "run-start"
	JournalSnapshot   = "snapshot"
	JournalApplyStart = "apply-start"
	JournalApplyEnd   = "apply-end"
	// JournalPlaybook records a started playbook's host and pid (its
	// process group), so a resumed run can stop one its killed
	// predecessor left running.
	JournalPlaybook    = "playbook"
	JournalWavePassed  = "wave-passed"
	JournalRevertStart = "revert-start"
	JournalRevertEnd   = "revert-end"
	JournalRunEnd      = "run-end"
)

// journalKey is the journal's key in the rollout's state store.
const journalKey = "journal.json"

// JournalDoc is the journal of one run.
type JournalDoc struct {
	RunID     string    `json:"run_id"`
	Rollout   string    `json:"rollout"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	// Plan is the wave plan the run follows: a resumed run follows the
	// same one even if discovery would now give other hosts.
	Plan []JournalWave `json:"plan"`
	// Entries are the steps, in order.
	Entries []JournalEntry `json:"entries"`
	// Finished is set by the run-end entry.
	Finished bool   `json:"finished"`
	Outcome  string `json:"outcome,omitempty"`
}

// JournalWave is one wave of the journaled plan.
type JournalWave struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
	// Monitor is the wave's monitoring period ("10m"): a by wave becomes
	// several waves, so the spec's waves no longer say it by index.
	// Journals written before it was kept have none.
	Monitor string `json:"monitor,omitempty"`
}

// JournalEntry is one step.
type JournalEntry struct {
	Seq  int       `json:"seq"`
	At   time.Time `json:"at"`
	Step string    `json:"step"`
	Wave string    `json:"wave,omitempty"`
	// Hosts the step acts on.
	Hosts []string `json:"hosts,omitempty"`
	// Start is the wave's start: its baseline window ends there.
	Start time.Time `json:"start,omitzero"`
	// Scope of a revert: "host" (the rollout goes on) or "fleet" (the
	// run ends with it).
	Scope string `json:"scope,omitempty"`
	// Detail is free text (a reason, a trigger, failed hosts).
	Detail string `json:"detail,omitempty"`
}

// Journal writes a run's journal to a state store with check-and-set, so
// two processes can never both believe they own the run.
type Journal struct {
	// AfterWrite, when set, is called after each entry is stored (the
	// fault suite kills the process there: ROLLGUARD_FAULT_KILL_AFTER).
	AfterWrite func(JournalEntry)
	// mu orders writes from the wave loop and from a running playbook's
	// start callback.
	mu      sync.Mutex
	store   ports.StateStore
	version uint64
	doc     JournalDoc
}

// OpenJournal reads the journal of the last run (nil doc when there is
// none).
func OpenJournal(ctx context.Context, store ports.StateStore) (*Journal, error) {
	data, ver, err := store.Get(ctx, journalKey)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	j := &Journal{store: store, version: ver}
	if data != nil {
		err := json.Unmarshal(data, &j.doc)
		if err == nil && j.Unfinished() {
			err = j.doc.check()
		}
		if err != nil {
			return nil, fmt.Errorf("journal %s is corrupt (%v): move it away to start afresh, after checking the hosts by hand", journalKey, err)
		}
	}
	return j, nil
}

// check refuses an unfinished journal that a resume could misread: one
// that does not name its run, or whose steps name hosts or waves outside
// its own plan (a resume would revert the wrong host, or none). Such a
// journal was not written by rollguard alone.
func (d *JournalDoc) check() error {
	if strings.TrimSpace(d.RunID) == "" {
		return errors.New("no run id")
	}
	hosts, waves := map[string]bool{}, map[string]bool{}
	for _, w := range d.Plan {
		if w.Name == "" || waves[w.Name] {
			return fmt.Errorf("plan: wave %q is unnamed or twice", w.Name)
		}
		waves[w.Name] = true
		for _, h := range w.Hosts {
			if h == "" || hosts[h] {
				return fmt.Errorf("plan: host %q is unnamed or twice", h)
			}
			hosts[h] = true
		}
	}
	for _, e := range d.Entries {
		if e.Step == JournalApplyStart && (d.StartedAt.IsZero() || e.Start.IsZero() || e.Start.Before(d.StartedAt.Add(-24*time.Hour))) {
			// The wave's start ends its baseline window: a resume reads
			// the baseline again from there. (A day of slack for a clock
			// set back during the run.)
			return fmt.Errorf("step %d (%s) starts wave %q at %s, before the run started (%s)", e.Seq, e.Step, e.Wave,
				e.Start.UTC().Format(time.RFC3339), d.StartedAt.UTC().Format(time.RFC3339))
		}
		if e.Wave != "" && !waves[e.Wave] {
			return fmt.Errorf("step %d (%s) names wave %q, which is not in the plan", e.Seq, e.Step, e.Wave)
		}
		for _, h := range e.Hosts {
			if !hosts[h] {
				return fmt.Errorf("step %d (%s) names host %q, which is not in the plan", e.Seq, e.Step, h)
			}
		}
	}
	return nil
}

// Doc is the journal's content.
func (j *Journal) Doc() *JournalDoc { return &j.doc }

// Unfinished reports whether the journal holds a run that did not end.
func (j *Journal) Unfinished() bool { return j.doc.RunID != "" && !j.doc.Finished }

// Begin starts a new run's journal, replacing a finished one.
func (j *Journal) Begin(ctx context.Context, doc JournalDoc) error {
	if j.Unfinished() {
		return fmt.Errorf("journal holds the unfinished run %s", j.doc.RunID)
	}
	if doc.Version == "" {
		// History and known-good reverts name versions: a run without
		// one could never be reverted to.
		return fmt.Errorf("journal of run %s: no version (apply.version)", doc.RunID)
	}
	j.doc = doc
	return j.write(ctx, JournalEntry{Step: JournalRunStart, At: doc.StartedAt})
}

// Write appends an entry and stores the journal before returning: the
// caller acts only after this succeeded. An entry the store did not take
// is dropped, since its step does not act: a later write must not
// record it.
func (j *Journal) Write(ctx context.Context, e JournalEntry) error {
	return j.append(ctx, e, false)
}

// Record appends an entry for an action that has happened. When the store
// does not take it, it stays in the journal, and the next write that
// succeeds stores it too: what happened is never dropped.
func (j *Journal) Record(ctx context.Context, e JournalEntry) error {
	return j.append(ctx, e, true)
}

func (j *Journal) append(ctx context.Context, e JournalEntry, keep bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	before := j.doc
	if e.Step == JournalRunEnd {
		j.doc.Finished = true
		j.doc.Outcome = e.Detail
	}
	err := j.write(ctx, e)
	if err != nil && !keep {
		j.doc.Entries = before.Entries[:len(before.Entries):len(before.Entries)]
		j.doc.Finished, j.doc.Outcome = before.Finished, before.Outcome
	}
	return err
}

func (j *Journal) write(ctx context.Context, e JournalEntry) error {
	e.Seq = len(j.doc.Entries) + 1
	j.doc.Entries = append(j.doc.Entries, e)
	data, err := json.MarshalIndent(j.doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode journal: %w", err)
	}
	ver, err := j.store.Put(ctx, journalKey, data, j.version)
	if err != nil {
		if errors.Is(err, ports.ErrConflict) {
			return fmt.Errorf("journal of run %s was changed by another process (is another rollguard running this rollout?): %w", j.doc.RunID, err)
		}
		return fmt.Errorf("write journal (%s): %w", e.Step, err)
	}
	j.version = ver
	if j.AfterWrite != nil {
		j.AfterWrite(e)
	}
	return nil
}

// playbooksHere returns the pids of the playbooks the run started on
// this machine (JournalPlaybook entries record "host:pid").
func (d *JournalDoc) playbooksHere() []int {
	host, _ := os.Hostname()
	var pids []int
	for _, e := range d.Entries {
		if e.Step != JournalPlaybook {
			continue
		}
		h, p, ok := strings.Cut(e.Detail, ":")
		pid, err := strconv.Atoi(p)
		if ok && err == nil && h == host {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Resume is what a journal says about an unfinished run.
type Resume struct {
	Doc *JournalDoc
	// Passed are the waves that passed, by name.
	Passed map[string]JournalEntry
	// Current is the wave that was under way (apply-start written, not
	// passed), or "" when the run stopped between waves.
	Current string
	// Applied says the current wave's apply-end was written.
	Applied bool
	// Reverting holds the hosts of a revert that started and did not end.
	Reverting *JournalEntry
	// Reverted lists hosts whose revert ended.
	Reverted map[string]bool
	// Changed lists every host the run may have changed.
	Changed []string
}

// ResumeState reads an unfinished journal.
func (d *JournalDoc) ResumeState() *Resume {
	rs := &Resume{Doc: d, Passed: map[string]JournalEntry{}, Reverted: map[string]bool{}}
	seen := map[string]bool{}
	var revert *JournalEntry
	for i := range d.Entries {
		e := d.Entries[i]
		switch e.Step {
		case JournalApplyStart:
			rs.Current, rs.Applied = e.Wave, false
			for _, h := range e.Hosts {
				if !seen[h] {
					seen[h] = true
					rs.Changed = append(rs.Changed, h)
				}
			}
		case JournalApplyEnd:
			rs.Applied = true
		case JournalWavePassed:
			rs.Passed[e.Wave] = e
			rs.Current, rs.Applied = "", false
		case JournalRevertStart:
			revert = &d.Entries[i]
		case JournalRevertEnd:
			for _, h := range e.Hosts {
				rs.Reverted[h] = true
			}
			revert = nil
		}
	}
	rs.Reverting = revert
	return rs
}

// What a run writes down: the journal before each step acts, and the
// version history of each host.

func (x *execution) journalPlan() []JournalWave {
	out := make([]JournalWave, len(x.Plan.Waves))
	for i, w := range x.Plan.Waves {
		out[i] = JournalWave{Name: w.Name, Hosts: hostNames(w.Hosts), Monitor: w.Monitor.String()}
	}
	return out
}

// storeTimeout bounds one write to the state store (journal, history):
// a write must happen even when the run is being interrupted, so it does
// not end with the run's context, and a store that stops answering (a
// Consul agent that hangs) must not hold the run for ever.
const storeTimeout = 10 * time.Second

// storeCtx is the context of one state store call: not cancelled with
// the run, bounded by storeTimeout.
func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
}

// journalMust writes an entry before the step it announces; the step
// must not run when this fails.
func (x *execution) journalMust(ctx context.Context, e JournalEntry) error {
	return x.journalWrite(ctx, e, false)
}

func (x *execution) journalWrite(ctx context.Context, e JournalEntry, happened bool) error {
	if x.Journal == nil {
		return nil
	}
	if e.At.IsZero() {
		e.At = x.Clock.Now()
	}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	if happened {
		return x.Journal.Record(sctx, e)
	}
	return x.Journal.Write(sctx, e)
}

// journal writes an entry that follows an action; a failure is reported
// but does not undo the action, and the entry goes to the store with the
// next write that succeeds.
func (x *execution) journal(ctx context.Context, e JournalEntry) {
	if err := x.journalWrite(ctx, e, true); err != nil {
		x.log.Error("journal write failed", "step", e.Step, "err", err)
		x.logf("   WARNING: journal: %v", err)
	}
}

// journalPlaybook records a started playbook (this machine and its pid).
func (x *execution) journalPlaybook(ctx context.Context, pid int) {
	host, _ := os.Hostname()
	x.journal(ctx, JournalEntry{Step: JournalPlaybook, Detail: fmt.Sprintf("%s:%d", host, pid)})
}

// recordApplied writes the version into each host's history: applied
// where the play ran to its end, failed where it failed or the host was
// unreachable. A host no task ran on (skipped, unmatched) never received
// the version: nothing is written.
func (x *execution) recordApplied(ctx context.Context, res []ports.HostResult) {
	if x.History == nil || x.dry() {
		return
	}
	for _, hr := range res {
		outcome := history.VersionApplied
		switch {
		case hr.Status == ports.HostFailed || hr.Status == ports.HostUnreachable:
			outcome = history.VersionFailed
		case !hr.Applied():
			continue
		}
		rec := history.VersionRecord{Version: x.Spec.Apply.Version, Playbook: x.Spec.Apply.Playbook, ExtraVars: x.Spec.Apply.ExtraVars,
			At: x.Clock.Now(), RunID: x.RunID, Outcome: outcome}
		sctx, cancel := storeCtx(ctx)
		err := x.History.Record(sctx, hr.Host, rec)
		cancel()
		if err != nil {
			x.logf("   WARNING: history of %s: %v", hr.Host, err)
		}
	}
}

// recordOutcome marks this run's version on hosts (reverted).
func (x *execution) recordOutcome(ctx context.Context, names []string, outcome string) {
	if x.History == nil || x.dry() {
		return
	}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	if err := x.History.SetOutcome(sctx, names, x.Spec.Apply.Version, x.RunID, outcome); err != nil {
		x.logf("   WARNING: history: %v", err)
	}
}
