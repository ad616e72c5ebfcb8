package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Runner runs one rollguard command line (without the program name),
// writing its standard output to stdout, and returns its exit code: the
// CLI in-process, or the binary as a child. Cancelling ctx should stop
// the command the way SIGTERM does.
type Runner func(ctx context.Context, argv []string, stdout io.Writer) int

// SpecFacts is what the step needs to know of the spec besides running
// it.
type SpecFacts struct {
	// StateStore is state.store (local, consul or nomad) and StateDir the
	// local state directory.
	StateStore, StateDir string
	// Requirements is a galaxy requirements file that lists collections,
	// next to the playbook ("" when there is none).
	Requirements string
}

// Options are what Step needs besides the environment.
type Options struct {
	// Run runs the command. Required.
	Run Runner
	// Inspect reads the spec at path (nil: the step does without).
	Inspect func(path string) (SpecFacts, error)
	// Stdout receives the command's output, workflow commands
	// (annotations) and ansible-galaxy's output (default os.Stdout).
	Stdout io.Writer
	// Logger receives a line per step (default: discard).
	Logger *slog.Logger
}

// Outcomes the action reports besides report.json's (promoted,
// rolled_back, halted, error).
const (
	OutcomeValid   = "valid"
	OutcomeInvalid = "invalid"
	OutcomePlanned = "planned"
)

// Result is what the step reports as its outputs.
type Result struct {
	// Outcome is report.json's outcome for run and dry-run when the command
	// wrote one, else derived from the exit code: promoted, rolled_back,
	// halted, error, valid, invalid, planned.
	Outcome string
	// ExitCode is the command's exit code; the step should end with it.
	ExitCode int
	// ReportDir is the report directory ("" for plan and validate).
	ReportDir string

	// fresh is set when this command (re)wrote report.json.
	fresh bool
	// output is what plan printed, for the summary.
	output string
}

// Outputs are the step outputs of r (action.yml's outputs).
func (r Result) Outputs() []Output {
	return []Output{
		{Name: "outcome", Value: r.Outcome},
		{Name: "exit-code", Value: strconv.Itoa(r.ExitCode)},
		{Name: "report-dir", Value: r.ReportDir},
	}
}

// Step is the action: it reads the inputs from getenv; before run and
// plan it installs the collections of the playbook's galaxy requirements
// file; it runs the command, then writes the outputs to $GITHUB_OUTPUT
// and to $GITHUB_STEP_SUMMARY the report (run, dry-run), the plan (plan)
// or a one-line verdict, after a warning when a run keeps its state in
// the workspace, which the job loses. Bad inputs give exit code 2 and
// outcome invalid without running anything. The error reports bad inputs
// and files that could not be written; the Result stands either way.
func Step(ctx context.Context, getenv func(string) string, opts Options) (Result, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	in, inErr := ReadInputs(getenv)
	var res Result
	var warnings []string
	if inErr != nil {
		res = Result{Outcome: OutcomeInvalid, ExitCode: 2}
	} else {
		var facts SpecFacts
		if opts.Inspect != nil && (in.Command == CommandRun || in.Command == CommandPlan) {
			// A spec that does not load is the command's to report.
			var err error
			if facts, err = opts.Inspect(in.Spec); err != nil {
				opts.Logger.Info("spec not inspected", "error", err)
			}
		}
		if in.Command == CommandRun && facts.StateStore == "local" && InActions(getenv) {
			w := localStateWarning(facts.StateDir)
			warnings = append(warnings, w)
			fmt.Fprintln(opts.Stdout, "::warning title=rollguard state is local::"+escapeData(w))
		}
		if facts.Requirements != "" {
			if err := InstallCollections(ctx, facts.Requirements, opts.Stdout); err != nil {
				res = Result{Outcome: "error", ExitCode: 1}
				warnings = append(warnings, err.Error())
			}
		}
		if res.ExitCode == 0 {
			res = execute(ctx, in, opts.Run, opts.Stdout)
		}
	}
	opts.Logger.Info("rollguard step finished", "command", in.Command, "outcome", res.Outcome, "exit_code", res.ExitCode)

	errs := []error{inErr}
	if path := getenv("GITHUB_OUTPUT"); path != "" {
		errs = append(errs, WriteOutputs(path, res.Outputs()))
	} else {
		opts.Logger.Warn("GITHUB_OUTPUT is not set: no step outputs written")
	}
	if path := getenv("GITHUB_STEP_SUMMARY"); path != "" {
		var md strings.Builder
		for _, w := range warnings {
			fmt.Fprintf(&md, "> [!WARNING]\n> %s\n\n", w)
		}
		md.WriteString(summary(in, res, inErr))
		errs = append(errs, AppendSummary(path, md.String(),
			"The report was cut to fit GitHub's step summary limit: see report.md in "+res.ReportDir+"."))
	}
	return res, errors.Join(errs...)
}

// localStateWarning says what a local state store means in CI.
func localStateWarning(dir string) string {
	if dir == "" {
		dir = ".rollguard"
	}
	return fmt.Sprintf("state.store is local: the journal, the history and the lock live in %s, in this job's workspace, which is gone when the job ends. "+
		"A later job cannot resume or revert this run, nor knows the known-good version. Use state.store: consul or nomad.", dir)
}

func execute(ctx context.Context, in Inputs, run Runner, stdout io.Writer) Result {
	res := Result{}
	var before time.Time
	reportJSON := filepath.Join(in.ReportDir, "report.json")
	if in.WritesReport() {
		res.ReportDir = in.ReportDir
		if fi, err := os.Stat(reportJSON); err == nil {
			before = fi.ModTime()
		}
	}
	var out bytes.Buffer
	res.ExitCode = run(ctx, in.Argv(), io.MultiWriter(stdout, &out))
	res.Outcome = outcomeOfCode(in.Command, res.ExitCode)
	if in.Command == CommandPlan {
		res.output = out.String()
	}
	if in.WritesReport() {
		// Trust report.json only if this command (re)wrote it: a stale
		// one from an earlier run must not speak for this one.
		if fi, err := os.Stat(reportJSON); err == nil && !fi.ModTime().Equal(before) {
			res.fresh = true
			if o := readOutcome(reportJSON); o != "" {
				res.Outcome = o
			}
		}
	}
	return res
}

// outcomeOfCode maps the CLI's exit codes (docs/design.md) to an outcome.
func outcomeOfCode(command string, code int) string {
	switch code {
	case 0:
		switch command {
		case CommandValidate:
			return OutcomeValid
		case CommandPlan:
			return OutcomePlanned
		default:
			return "promoted"
		}
	case 2:
		return OutcomeInvalid
	case 3:
		return "rolled_back"
	case 4:
		return "halted"
	default:
		return "error"
	}
}

func readOutcome(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var r struct {
		Outcome string `json:"outcome"`
	}
	if json.Unmarshal(data, &r) != nil {
		return ""
	}
	return r.Outcome
}

// summary is the step summary: report.md when the command wrote one, a
// verdict line otherwise.
func summary(in Inputs, res Result, inErr error) string {
	if inErr != nil {
		return fmt.Sprintf("### rollguard: bad action inputs\n\n```\n%s\n```\n", inErr)
	}
	if res.fresh {
		if md, err := os.ReadFile(filepath.Join(res.ReportDir, "report.md")); err == nil {
			return string(md)
		}
	}
	verdict := fmt.Sprintf("### rollguard %s `%s`\n\n**%s** (exit code %d)\n", in.Command, in.Spec, res.Outcome, res.ExitCode)
	if strings.TrimSpace(res.output) != "" {
		return verdict + "\n```\n" + strings.TrimRight(res.output, "\n") + "\n```\n"
	}
	return verdict
}
