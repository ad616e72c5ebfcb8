// Package report is what a run tells people: report.json (the contract in
// docs/design.md), report.md and report.html, and the run and wave outcomes.
// The runner fills a Report; WriteReport writes the three files. It
// imports nothing of ours.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Run outcomes (report.json "outcome").
const (
	OutcomePromoted   = "promoted"
	OutcomeRolledBack = "rolled_back"
	OutcomeHalted     = "halted"
	OutcomeError      = "error"
)

// Report is report.json: the contract in docs/design.md, extended compatibly.
type Report struct {
	RunID      string    `json:"run_id"`
	Name       string    `json:"name"`
	Outcome    string    `json:"outcome"`
	Reason     string    `json:"reason,omitempty"`
	DryRun     bool      `json:"dry_run,omitempty"`
	Version    string    `json:"version,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`

	// Preflight is the pre-flight check (the diff gate), when one was
	// run or, in a dry run, replayed from a recorded result.
	Preflight *Preflight `json:"preflight,omitempty"`

	Waves     []WaveReport `json:"waves"`
	Hosts     []HostReport `json:"hosts"`
	Decisions []Decision   `json:"decisions"`
	// Rollback is the rollback that ended the run (or the last one).
	Rollback *Rollback `json:"rollback"`
	// Rollbacks lists every rollback of the run in order, host-level
	// ones included.
	Rollbacks []*Rollback `json:"rollbacks,omitempty"`
	// Timeline holds one line per tick: what a person reads to follow the run.
	Timeline []TickLine `json:"timeline,omitempty"`
	// Series holds, per host and metric, the values seen (for the plots).
	Series map[string]map[string][]Point `json:"series,omitempty"`
	// Context records where the run ran (CI job, Nomad allocation).
	Context map[string]string `json:"context,omitempty"`
	// Warnings are what the run's data drew a warning for (a query that
	// reads a counter), as printed on stderr: they changed no decision.
	Warnings []string `json:"warnings,omitempty"`

	// The fields below let a reader (report.md, report.html, a script)
	// tell what decided without the spec at hand. All are optional:
	// reports written before they existed still render.

	// Queries lists the metrics in the spec's order, with the direction
	// that is worse.
	Queries []QueryReport `json:"queries,omitempty"`
	// Detection holds the detection parameters the run judged with.
	Detection *DetectionReport `json:"detection,omitempty"`
	// BaselineSeries holds, per host and metric, the samples of the
	// baseline window the host was judged against (the window before its
	// wave's apply; for a host never changed, the last window read).
	// Kept for the same fleets as Series.
	BaselineSeries map[string]map[string][]Point `json:"baseline_series,omitempty"`
}

// QueryReport is one metric of the spec.
type QueryReport struct {
	Name string `json:"name"`
	// Worse is the direction that is a regression: higher | lower.
	Worse string `json:"worse"`
}

// DetectionReport is the part of the detection configuration a reader
// needs to classify a metric.
type DetectionReport struct {
	Sensitivity string `json:"sensitivity,omitempty"`
	// Threshold is the score over which a metric, and its host, is
	// degraded.
	Threshold float64 `json:"threshold"`
	// Band is the half-width of the baseline band in spreads: a metric
	// within it is back to normal (verification uses the same band).
	Band float64 `json:"band"`
}

// Pre-flight check outcomes (report.json "preflight.outcome").
const (
	// CheckPassed: every checked host's check ran and broke no limit.
	CheckPassed = "passed"
	// CheckStopped: a host's check failed or broke a limit: the rollout
	// stopped before any change.
	CheckStopped = "stopped"
)

// Preflight is the pre-flight check: the playbook run in check mode with
// --diff over some hosts before anything was applied, and its judgement
// against the spec's limits. It is also the format of a recorded check
// result (dry-run --check-result), of which only hosts is read.
type Preflight struct {
	// Scope is which hosts were checked: canary | all.
	Scope string `json:"scope,omitempty"`
	// Recorded says the result was read from a file (a dry run).
	Recorded bool `json:"recorded,omitempty"`
	// Outcome: passed | stopped.
	Outcome string `json:"outcome,omitempty"`
	// Reason says why, as a sentence naming hosts, tasks and files.
	Reason string      `json:"reason,omitempty"`
	Hosts  []CheckHost `json:"hosts"`
}

// CheckHost is one host's check.
type CheckHost struct {
	Name string `json:"name"`
	// Status is the check's outcome on the host, as an apply's: ok |
	// changed | failed | unreachable | skipped | unmatched.
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	// Changes lists the tasks that would change something, in order.
	Changes []TaskChange `json:"changes,omitempty"`
	// Violations are the limits the host breaks, as sentences.
	Violations []string `json:"violations,omitempty"`
}

// TaskChange is one task that would change a host, and the files it
// would change.
type TaskChange struct {
	Task  string       `json:"task"`
	Files []FileChange `json:"files,omitempty"`
}

// FileChange is one file a task would change, with the lines its diff
// adds and removes (0 and 0 when the module gave no text diff).
type FileChange struct {
	Path    string `json:"path"`
	Added   int    `json:"added"`
	Removed int    `json:"removed"`
}

// Totals sums a host's would-be changes: tasks, files, lines added and
// removed.
func (h CheckHost) Totals() (tasks, files, added, removed int) {
	for _, c := range h.Changes {
		tasks++
		for _, f := range c.Files {
			files++
			added += f.Added
			removed += f.Removed
		}
	}
	return tasks, files, added, removed
}

// WaveOutcome is what became of a wave (report.json waves[].outcome).
type WaveOutcome string

// Wave outcomes.
const (
	// WaveNotStarted: the rollout ended before the wave began.
	WaveNotStarted WaveOutcome = "not_started"
	// WavePassed: the wave's monitoring period ended without a fire.
	WavePassed WaveOutcome = "passed"
	// WaveFired: a fleet-level fire (or a failed apply) ended the rollout
	// in this wave.
	WaveFired WaveOutcome = "fired"
	// WaveHalted: the rollout was frozen in this wave for a person.
	WaveHalted WaveOutcome = "halted"
	// WaveError: the wave could not run (baseline, snapshot or journal
	// failed, or the run was interrupted).
	WaveError WaveOutcome = "error"
)

// WaveReport is one wave of the plan and what became of it.
type WaveReport struct {
	Name    string      `json:"name"`
	Index   int         `json:"index"`
	Hosts   []string    `json:"hosts"`
	Outcome WaveOutcome `json:"outcome"`
	Monitor string      `json:"monitor"`
	// BaselineFrom is the start of the wave's baseline window, which
	// ends at ApplyStartedAt.
	BaselineFrom   *time.Time `json:"baseline_from,omitempty"`
	ApplyStartedAt *time.Time `json:"apply_started_at"`
	ApplyEndedAt   *time.Time `json:"apply_ended_at,omitempty"`
	FinishedAt     *time.Time `json:"finished_at"`
}

// HostReport is one host's story.
type HostReport struct {
	Name    string `json:"name"`
	Wave    string `json:"wave"`
	Applied bool   `json:"applied"`
	// Status is the apply's result on the host, from the play recap: ok |
	// changed | failed | unreachable | skipped | unmatched (empty: its
	// wave did not start).
	Status string `json:"status,omitempty"`
	// Message says why a play did not run to its end on the host.
	Message      string   `json:"message,omitempty"`
	ChangedTasks []string `json:"changed_tasks"`
	Reverted     bool     `json:"reverted"`
	// RevertReason says why the host was reverted or, for a host that did
	// not apply and was not reverted, why it was left as it was.
	RevertReason string                  `json:"revert_reason,omitempty"`
	Snapshot     string                  `json:"snapshot"`
	MaxScore     float64                 `json:"max_score"`
	Metrics      map[string]MetricReport `json:"metrics"`
}

// MetricReport is one metric on one host, at the end of the run.
type MetricReport struct {
	Baseline float64 `json:"baseline"`
	Stddev   float64 `json:"stddev"`
	Current  float64 `json:"current"`
	Z        float64 `json:"z"`
	Score    float64 `json:"score"`
	MaxScore float64 `json:"max_score"`
	// Worst and WorstZ are the smoothed value and its z when the score
	// peaked (when z peaked, for a metric whose score never rose): what
	// the regression looked like, even after a revert brought Current
	// back.
	Worst   float64 `json:"worst,omitempty"`
	WorstZ  float64 `json:"worst_z,omitempty"`
	Samples int     `json:"samples"`
	NoData  bool    `json:"nodata,omitempty"`
	// Tolerance is the largest change allowed, in the metric's unit:
	// the band is the tolerance and Detection.Band spreads.
	Tolerance     float64 `json:"tolerance,omitempty"`
	LowConfidence bool    `json:"low_confidence,omitempty"`
	// Class is the verdict on this metric, as Kayenta gives one per
	// metric: pass | high | low | nodata (see Classify).
	Class string `json:"class,omitempty"`
}

// Decision is one policy's verdict at one tick.
type Decision struct {
	At     time.Time `json:"at"`
	Wave   string    `json:"wave"`
	Policy string    `json:"policy"`
	// Scope: fleet | host.
	Scope string `json:"scope"`
	// Host is the host judged ("" for a fleet decision).
	Host string `json:"host"`
	// Outcome: pass | fire | nodata | error.
	Outcome string             `json:"outcome"`
	Fired   bool               `json:"fired"`
	Reason  string             `json:"reason"`
	Values  map[string]float64 `json:"values"`
}

// MarshalJSON writes every key of report.json's contract (DESIGN.md),
// values as {} when the decision quoted none.
func (d Decision) MarshalJSON() ([]byte, error) {
	type plain Decision
	if d.Values == nil {
		d.Values = map[string]float64{}
	}
	return json.Marshal(plain(d))
}

// Rollback triggers that are not a policy's judgement of the metrics:
// the apply itself, or an interrupted run. Other triggers are a policy's
// name, host-policy, metrics-error or on_no_data.
const (
	// TriggerApplyFailed: hosts did not apply (a host failed after a
	// change, or a stage's hosts did not carry the change).
	TriggerApplyFailed = "apply-failed"
	// TriggerApplyError: the playbook could not run.
	TriggerApplyError = "apply-error"
	// TriggerApplyTimeout: the playbook ran past apply.timeout.
	TriggerApplyTimeout = "apply-timeout"
	// TriggerInterrupt: the run was interrupted (on_interrupt: revert).
	TriggerInterrupt = "interrupt"
	// TriggerError: the run broke after changing hosts (its state store
	// stopped answering, a baseline could not be read) and reverted them.
	TriggerError = "error"
	// TriggerAbort: run --abort reverted an unfinished run.
	TriggerAbort = "abort"
	// TriggerResume: a resumed run finished a revert the crash cut short.
	TriggerResume = "resume-revert"
)

// Rollback says what was reverted, why and how.
type Rollback struct {
	// Trigger is the policy that fired, or one of the Trigger constants.
	Trigger    string    `json:"trigger"`
	Reason     string    `json:"reason"`
	Scope      string    `json:"scope"`
	Hosts      []string  `json:"hosts"`
	Methods    []Method  `json:"methods"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Verified   bool      `json:"verified"`
	// Verification says how verification went, as a sentence.
	Verification string `json:"verification,omitempty"`
	// HostLevel is true for a revert after which the rollout went on (a
	// host policy fired, a host's apply failed); false for the revert
	// that ended the run.
	HostLevel bool `json:"host_level,omitempty"`
	// VerifyStartedAt is when the revert methods had finished and
	// verification began (absent when nothing was verified).
	VerifyStartedAt *time.Time `json:"verify_started_at,omitempty"`
}

// Method is one revert method tried.
type Method struct {
	Name   string   `json:"name"`
	Hosts  []string `json:"hosts"`
	OK     bool     `json:"ok"`
	Detail string   `json:"detail,omitempty"`
}

// TickLine is one tick of the timeline.
type TickLine struct {
	At       time.Time `json:"at"`
	Wave     string    `json:"wave"`
	Phase    string    `json:"phase"`
	Degraded []string  `json:"degraded"`
	Policies []string  `json:"policies"`
}

// Point is one value of a series.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// Report files are 0644 and the directories WriteReport creates 0755,
// whatever the umask: a later CI step, running as another user (the
// GitHub Action's container writes as root, actions/upload-artifact reads
// as the runner's user), must be able to read them.
const (
	reportFileMode = 0o644
	reportDirMode  = 0o755
)

// WriteReport writes report.json, report.md and report.html into dir,
// creating it. Each file is written to a temporary name and renamed, so a
// reader never sees half a report.
func WriteReport(dir string, r *Report) error {
	if err := mkdirReport(dir); err != nil {
		return fmt.Errorf("report directory %s: %w", dir, err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report.json: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"report.json", append(js, '\n')},
		{"report.md", []byte(Markdown(r))},
		{"report.html", []byte(HTML(r))},
	}
	for _, f := range files {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600.
	if err := tmp.Chmod(reportFileMode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// mkdirReport creates dir and its missing parents with reportDirMode,
// leaving the modes of directories that exist alone.
func mkdirReport(dir string) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, reportDirMode); err != nil {
		return err
	}
	for _, d := range missing {
		if err := os.Chmod(d, reportDirMode); err != nil {
			return err
		}
	}
	return nil
}
