package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Runner runs one rollguard command line (without the program name) and
// returns its exit code: the CLI in-process, or the binary as a child.
// Cancelling ctx should stop the command the way SIGTERM does.
type Runner func(ctx context.Context, argv []string) int

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
}

// Outputs are the step outputs of r (action.yml's outputs).
func (r Result) Outputs() []Output {
	return []Output{
		{Name: "outcome", Value: r.Outcome},
		{Name: "exit-code", Value: strconv.Itoa(r.ExitCode)},
		{Name: "report-dir", Value: r.ReportDir},
	}
}

// Step is the action: it reads the inputs from getenv, runs the command
// with run, then writes the outputs to $GITHUB_OUTPUT and the report (or
// a one-line verdict) to $GITHUB_STEP_SUMMARY. Bad inputs give exit code 2
// and outcome invalid without running anything. The error reports bad
// inputs and files that could not be written; the Result stands either way.
func Step(ctx context.Context, getenv func(string) string, run Runner, logger *slog.Logger) (Result, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	in, inErr := ReadInputs(getenv)
	var res Result
	if inErr != nil {
		res = Result{Outcome: OutcomeInvalid, ExitCode: 2}
	} else {
		res = execute(ctx, in, run)
	}
	logger.Info("rollguard step finished", "command", in.Command, "outcome", res.Outcome, "exit_code", res.ExitCode)

	errs := []error{inErr}
	if path := getenv("GITHUB_OUTPUT"); path != "" {
		errs = append(errs, WriteOutputs(path, res.Outputs()))
	} else {
		logger.Warn("GITHUB_OUTPUT is not set: no step outputs written")
	}
	if path := getenv("GITHUB_STEP_SUMMARY"); path != "" {
		errs = append(errs, AppendSummary(path, summary(in, res, inErr),
			"The report was cut to fit GitHub's step summary limit: see report.md in "+res.ReportDir+"."))
	}
	return res, errors.Join(errs...)
}

func execute(ctx context.Context, in Inputs, run Runner) Result {
	res := Result{}
	var before time.Time
	reportJSON := filepath.Join(in.ReportDir, "report.json")
	if in.WritesReport() {
		res.ReportDir = in.ReportDir
		if fi, err := os.Stat(reportJSON); err == nil {
			before = fi.ModTime()
		}
	}
	res.ExitCode = run(ctx, in.Argv())
	res.Outcome = outcomeOfCode(in.Command, res.ExitCode)
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

// outcomeOfCode maps the CLI's exit codes (DESIGN.md) to an outcome.
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
	return fmt.Sprintf("### rollguard %s `%s`\n\n**%s** (exit code %d)\n", in.Command, in.Spec, res.Outcome, res.ExitCode)
}
