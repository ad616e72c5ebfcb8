// Package github is rollguard's GitHub Actions glue: it reads the action's
// inputs (INPUT_* variables), writes step outputs to $GITHUB_OUTPUT,
// appends the Markdown report to $GITHUB_STEP_SUMMARY and describes the
// workflow run (run URL, commit) for the report's context. Every function
// takes the environment as a getenv function and files as paths, so tests
// and the action entry point share one code path.
package github

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Commands the action can run.
const (
	CommandRun      = "run"
	CommandDryRun   = "dry-run"
	CommandPlan     = "plan"
	CommandValidate = "validate"
)

// DefaultReportDir is the report-dir input's default, relative to the
// workspace.
const DefaultReportDir = "rollguard-report"

// Input returns the action input name as the runner passes it: the
// variable INPUT_<NAME> with spaces as underscores, upper-cased (hyphens
// stay), trimmed like the Actions toolkit's getInput. For runners that
// cannot pass hyphens through a shell, INPUT_<NAME> with hyphens as
// underscores is read as a fallback.
func Input(getenv func(string) string, name string) string {
	key := "INPUT_" + strings.ToUpper(strings.ReplaceAll(name, " ", "_"))
	if v := strings.TrimSpace(getenv(key)); v != "" {
		return v
	}
	return strings.TrimSpace(getenv(strings.ReplaceAll(key, "-", "_")))
}

// Inputs are the action's inputs (action.yml).
type Inputs struct {
	// Spec is the rollout spec's path ("spec", required).
	Spec string
	// Command is run | dry-run | plan | validate ("command", default run).
	Command string
	// ReportDir receives report.json, report.md, report.html for run and
	// dry-run ("report-dir", default DefaultReportDir).
	ReportDir string
	// Args are extra arguments ("args"), split like a shell would:
	// whitespace separates, quotes group, backslash escapes.
	Args []string
	// AllowUnsetEnv makes validate check everything but the values of
	// unset ${VAR}s ("allow-unset-env", default false): for pull requests,
	// which get no secrets from forks.
	AllowUnsetEnv bool
}

// ReadInputs reads and checks the inputs, reporting every problem at once.
func ReadInputs(getenv func(string) string) (Inputs, error) {
	in := Inputs{
		Spec:      Input(getenv, "spec"),
		Command:   Input(getenv, "command"),
		ReportDir: Input(getenv, "report-dir"),
	}
	if in.Command == "" {
		in.Command = CommandRun
	}
	if in.ReportDir == "" {
		in.ReportDir = DefaultReportDir
	}
	var errs []error
	if in.Spec == "" {
		errs = append(errs, errors.New("input spec is required (the rollout spec's path)"))
	}
	if !slices.Contains([]string{CommandRun, CommandDryRun, CommandPlan, CommandValidate}, in.Command) {
		errs = append(errs, fmt.Errorf("input command %q: want run, dry-run, plan or validate", in.Command))
	}
	switch v := Input(getenv, "allow-unset-env"); v {
	case "", "false":
	case "true":
		in.AllowUnsetEnv = true
		if in.Command != CommandValidate {
			errs = append(errs, fmt.Errorf("input allow-unset-env applies to command validate, not %s", in.Command))
		}
	default:
		errs = append(errs, fmt.Errorf("input allow-unset-env %q: want true or false", v))
	}
	args, err := SplitArgs(Input(getenv, "args"))
	if err != nil {
		errs = append(errs, fmt.Errorf("input args: %w", err))
	}
	in.Args = args
	return in, errors.Join(errs...)
}

// WritesReport says whether the command writes a report directory.
func (in Inputs) WritesReport() bool {
	return in.Command == CommandRun || in.Command == CommandDryRun
}

// Argv is the rollguard command line for the inputs (without the program
// name).
func (in Inputs) Argv() []string {
	argv := []string{in.Command, "-f", in.Spec}
	if in.WritesReport() {
		argv = append(argv, "--report-dir", in.ReportDir)
	}
	if in.AllowUnsetEnv {
		argv = append(argv, "--allow-unset-env")
	}
	return append(argv, in.Args...)
}

// SplitArgs splits s into words the way a POSIX shell would, without
// expansions: blanks and newlines separate words, '...' is literal, "..."
// keeps \" \\ \$ \` escapes, and a backslash outside quotes escapes the
// next character.
func SplitArgs(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	const (
		none = iota
		single
		double
	)
	quote := none
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch quote {
		case single:
			if r == '\'' {
				quote = none
			} else {
				cur.WriteRune(r)
			}
		case double:
			switch {
			case r == '"':
				quote = none
			case r == '\\' && i+1 < len(rs) && strings.ContainsRune("\"\\$`", rs[i+1]):
				i++
				cur.WriteRune(rs[i])
			default:
				cur.WriteRune(r)
			}
		default:
			switch {
			case r == ' ' || r == '\t' || r == '\n' || r == '\r':
				if inWord {
					words = append(words, cur.String())
					cur.Reset()
					inWord = false
				}
			case r == '\'':
				quote, inWord = single, true
			case r == '"':
				quote, inWord = double, true
			case r == '\\':
				if i+1 >= len(rs) {
					return nil, errors.New("a trailing backslash escapes nothing")
				}
				i++
				if rs[i] != '\n' { // backslash-newline joins lines
					cur.WriteRune(rs[i])
					inWord = true
				}
			default:
				cur.WriteRune(r)
				inWord = true
			}
		}
	}
	if quote != none {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
