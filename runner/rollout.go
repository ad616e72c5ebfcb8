package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// Rollout is the configuration of one run of a spec over a plan: live (an
// Applier is set) or dry (no Applier: applies and reverts are simulated,
// and the metrics come from a recording under a simulated clock). Execute
// runs it; the run's state lives in an execution (state.go), never here.
type Rollout struct {
	Spec     *Spec
	Policies []*policies.Policy
	Plan     *Plan
	Metrics  ports.MetricsSource
	// Applier runs playbooks; nil makes this a dry run.
	Applier ports.Applier
	Clock   ports.Clock
	// Out receives the human timeline (nil: discarded).
	Out io.Writer
	// Warnings receives what the run's data draws a warning for, one
	// "rollguard: warning: ..." line each, as it is found (nil: the
	// report's warnings only).
	Warnings io.Writer
	Logger   *slog.Logger
	RunID    string
	// Alerter sends alerts (nil: none; a dry run sends none).
	Alerter ports.Alerter
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
	History *history.History
	// Snapshots takes and restores per-host snapshots (nil: none).
	Snapshots ports.Snapshotter
	// SnapshotSkipHost: a host whose snapshot failed is not changed
	// (revert.snapshot.on_failure: skip_host, the default).
	SnapshotSkipHost bool
	// CheckResult is a recorded pre-flight check result that a dry run
	// judges instead of running the check (nil: none).
	CheckResult *report.Preflight
	// Timing is a live run's timeline that a dry run replays (nil: each
	// apply is instantaneous, and each wave starts when the one before
	// it passed). See ReadTiming.
	Timing Timing
	// Resume, when set, continues the unfinished run it describes (or
	// reverts everything it changed, with Abort).
	Resume *Resume
	Abort  bool
	// Telemetry receives what the run does, for rollguard's own metrics
	// (nil: discarded).
	Telemetry ports.Telemetry
}

// Result is what a rollout ended with.
type Result struct {
	Report *report.Report
	// ExitCode follows the command-line contract: 0 promoted, 3 rolled
	// back, 4 halted, 1 error.
	ExitCode int
}

// ExitCode maps an outcome to the contract's exit code.
func ExitCode(outcome string) int {
	switch outcome {
	case report.OutcomePromoted:
		return 0
	case report.OutcomeRolledBack:
		return 3
	case report.OutcomeHalted:
		return 4
	}
	return 1
}

// verdict is how a rollout, or the step that ends it, ends: a run outcome
// (report.Outcome*) and its reason as a sentence. The zero verdict means
// the rollout goes on.
type verdict struct {
	outcome string
	reason  string
}

// ends reports whether the rollout stops here.
func (v verdict) ends() bool { return v.outcome != "" }

// Check builds what Execute builds before it starts (the hosts' label
// values, the detection engine) and returns what Execute would fail on,
// without running anything: a live run calls it before it takes its lock.
func (r *Rollout) Check() error {
	_, err := newExecution(r)
	return err
}

// Execute runs the rollout wave by wave and returns its report. An error
// is returned only when the rollout could not run at all; a run that
// started always yields a report, with outcome "error" if it broke.
func (r *Rollout) Execute(ctx context.Context) (*Result, error) {
	x, err := newExecution(r)
	if err != nil {
		return nil, err
	}
	x.report.StartedAt = x.Clock.Now()
	v, err := x.start(ctx)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			v = verdict{report.OutcomeHalted, x.interrupted(ctx)}
		} else {
			// The run broke (the state store stopped answering, a
			// baseline could not be read): what it changed goes back
			// like after an interruption.
			v = verdict{report.OutcomeError, x.leaveSafe(ctx, err, report.TriggerError)}
		}
	}
	x.finishVerifying(ctx)
	v = x.journalLost(x.unknownHosts(x.unverifiedRevert(v)))
	x.end(ctx, v)
	return &Result{Report: x.report, ExitCode: ExitCode(v.outcome)}, nil
}

// start runs a new rollout from its first wave, resumes an unfinished
// one, or aborts it.
func (x *execution) start(ctx context.Context) (verdict, error) {
	switch {
	case x.Resume != nil && x.Abort:
		return x.abort(ctx)
	case x.Resume != nil:
		return x.resume(ctx)
	}
	// The check comes before the journal: a run it stops, or that is
	// killed during it, has changed nothing and leaves nothing to resume.
	if v, err := x.preflight(ctx); err != nil || v.ends() {
		return v, err
	}
	if x.Journal != nil {
		err := x.Journal.Begin(ctx, JournalDoc{RunID: x.RunID, Rollout: x.Spec.Name, Version: x.Spec.Apply.Version, StartedAt: x.report.StartedAt, Plan: x.journalPlan()})
		if err != nil {
			return verdict{}, err
		}
	}
	return x.waves(ctx, 0)
}

// unverifiedRevert turns a promotion into a halt when a host-level revert
// did not recover: a person must look at that host.
func (x *execution) unverifiedRevert(v verdict) verdict {
	if v.outcome != report.OutcomePromoted || x.dry() {
		return v
	}
	for _, rb := range x.report.Rollbacks {
		if !rb.Verified {
			v.outcome = report.OutcomeHalted
			v.reason += fmt.Sprintf("; but the revert of %s was not verified (%s): a person must look", strings.Join(rb.Hosts, ", "), rb.Verification)
			break
		}
	}
	return v
}

// end writes the verdict into the report, says it to whoever wants
// alerts, removes a promoted run's snapshots and closes the journal.
func (x *execution) end(ctx context.Context, v verdict) {
	rep := x.report
	rep.Outcome, rep.Reason = v.outcome, v.reason
	rep.FinishedAt = x.Clock.Now()
	switch v.outcome {
	case report.OutcomePromoted:
		x.alert(ctx, ports.EventPromoted, "", nil, v.reason, nil, nil)
	case report.OutcomeHalted, report.OutcomeError:
		x.alert(ctx, ports.EventHalted, "", nil, v.reason, nil, nil)
	}
	if v.outcome == report.OutcomePromoted {
		x.deleteSnapshots(ctx)
	}
	x.finishHosts()
	x.journal(ctx, JournalEntry{Step: JournalRunEnd, Detail: v.outcome})
	x.tel.RunEnded(v.outcome)
}

// interrupted leaves a safe state after the run was stopped from outside
// (SIGINT, SIGTERM, a lost lock): per revert.on_interrupt it reverts every
// host changed so far, or freezes them, and says which.
func (x *execution) interrupted(ctx context.Context) string {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = context.Canceled
	}
	return x.leaveSafe(ctx, fmt.Errorf("interrupted (%w)", cause), report.TriggerInterrupt)
}

// leaveSafe puts the hosts changed so far back (or leaves them frozen,
// per revert.on_interrupt) after the run was stopped by why, and says
// what it did after why.
func (x *execution) leaveSafe(ctx context.Context, why error, trigger string) string {
	var hosts []string
	for i := range x.hosts {
		if x.hosts[i].carries() {
			hosts = append(hosts, x.hosts[i].Name)
		}
	}
	if len(hosts) == 0 {
		return fmt.Sprintf("%v before any host was changed", why)
	}
	if x.Spec.Revert.OnInterrupt == ModeFreeze {
		return fmt.Sprintf("%v; %d hosts keep the change (on_interrupt: freeze): %s", why, len(hosts), abbreviate(hosts, 8))
	}
	x.logf("   %v: reverting %s", why, abbreviate(hosts, 8))
	rb := x.revertHosts(context.WithoutCancel(ctx), hosts, why.Error(), trigger, false)
	rb.Scope = ScopeAll
	if len(x.notJournaled) > 0 {
		return why.Error()
	}
	return fmt.Sprintf("%v; reverted %d hosts (on_interrupt: revert), verified: %v", why, len(hosts), rb.Verified)
}

// journalLost says, when a revert could not be journaled, which hosts
// keep the change and what to do: the journal still says they carry it,
// so the same command resumes the run from there once the store answers,
// and --abort reverts them. A person must look (halted), unless the run
// already ended in an error, which says as much.
func (x *execution) journalLost(v verdict) verdict {
	if len(x.notJournaled) == 0 {
		return v
	}
	if v.outcome != report.OutcomeError {
		v.outcome = report.OutcomeHalted
	}
	v.reason += fmt.Sprintf("; %s NOT reverted: the state store did not take the journal entry of the revert (%v). They keep the change, as the journal says: run the same command once the store answers to resume the run, or add --abort to revert them",
		abbreviate(x.notJournaled, 8), x.notJournaledErr)
	return v
}
