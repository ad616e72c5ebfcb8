// Command rollguard rolls configuration changes out to VM fleets with
// Ansible, canary first, watches every host's metrics against its own
// pre-change baseline, and rolls back by itself when a policy fires.
//
// main.go maps errors to exit codes and lists the commands, one file each
// (cmd_run.go, cmd_dryrun.go, ...); wire.go builds a rollout from a spec
// and the command's options: flags and environment -> integrations ->
// runner -> exit code.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/integrations/github"
	"github.com/rollguard/rollguard/policies"
)

// Exit codes of the command-line contract.
const (
	exitOK         = 0
	exitError      = 1
	exitBadInput   = 2
	exitRolledBack = 3
	exitHalted     = 4
)

// exitError carries an exit code through cobra.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func badInput(err error) error { return &codeError{code: exitBadInput, err: err} }
func failed(err error) error   { return &codeError{code: exitError, err: err} }

// usageError is a flag or argument error, followed by where to read the
// command's usage.
type usageError struct {
	err     error
	command string
}

func (e *usageError) Error() string { return fmt.Sprintf("%v\nSee '%s --help'.", e.err, e.command) }
func (e *usageError) Unwrap() error { return e.err }

// exitWith ends a command with a code but no further message.
type exitWith int

func (e exitWith) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func main() {
	// With stdout or stderr closed (a pipe whose reader went away), Go's
	// runtime kills the process at its first write there unless SIGPIPE
	// is handled: a rollout must not die of its progress output. Handled
	// (not ignored, which children would inherit), a write just fails
	// with EPIPE, and the progress writer drops it.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	os.Exit(run(os.Args[1:]))
}

// progress is the writer of a run's human output. A write that fails (a
// closed stdout, a broken pipe, a full disk) is dropped and later ones
// are not tried: what a rollout does never depends on whether anyone
// reads its progress. Its report, journal and exit code carry what
// matters.
type progress struct {
	w      io.Writer
	broken atomic.Bool
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

func (p *progress) Write(b []byte) (int, error) {
	if !p.broken.Load() {
		if _, err := p.w.Write(b); err != nil {
			p.broken.Store(true)
		}
	}
	return len(b), nil
}

func run(args []string) int { return runTo(args, os.Stdout) }

// runTo runs the command line args with its standard output on stdout.
func runTo(args []string, stdout io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var code exitWith
	if errors.As(err, &code) {
		return int(code)
	}
	var ce *codeError
	if errors.As(err, &ce) {
		var list policies.ErrorList
		if errors.As(ce.err, &list) {
			// One problem a line, each file:line:col first, as compilers
			// print them, so editors and CI annotations can jump to them.
			for _, e := range list {
				fmt.Fprintln(os.Stderr, e)
				var pe *policies.PosError
				if github.InActions(os.Getenv) && errors.As(e, &pe) {
					fmt.Fprintln(stdout, github.Annotation(os.Getenv, "error", pe.File, pe.Line, pe.Col, pe.Msg))
				}
			}
			fmt.Fprintf(os.Stderr, "rollguard: %d problem(s); nothing was changed\n", len(list))
			return ce.code
		}
		fmt.Fprintln(os.Stderr, "rollguard:", ce.err)
		return ce.code
	}
	// Flag and argument errors from cobra are bad input.
	fmt.Fprintln(os.Stderr, "rollguard:", err)
	return exitBadInput
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "rollguard",
		Short: "Roll configuration changes out to VM fleets, canary first, and roll back on degradation",
		Long: `rollguard applies an Ansible playbook to a fleet wave by wave, canary first.
While each wave applies and during its monitoring period it watches every
host's metrics (any Prometheus-compatible query API, e.g. VictoriaMetrics)
against that host's own pre-change baseline, scores the degradation, and
evaluates your policies (expr expressions). When a policy fires it reverts
the wave (or one host) and stops.

Exit codes: 0 promoted, 1 error, 2 bad input, 3 rolled back, 4 halted (a person must decide).`,
		Example: `  rollguard validate -f rollout.yaml
  rollguard dry-run  -f rollout.yaml --metrics recorded.jsonl --change-at 2024-01-01T12:00:00Z
  rollguard plan     -f rollout.yaml
  rollguard run      -f rollout.yaml --report-dir reports/`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("rollguard {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return badInput(&usageError{err: err, command: c.CommandPath()})
	})
	// One file per command: cmd_<name>.go. wire.go builds what they share.
	root.AddCommand(
		newValidateCmd(),
		newDryRunCmd(),
		newPlanCmd(),
		newSchemaCmd(),
		newVersionCmd(),
		newRunCmd(),
		newDemoCmd(),
		newGitHubActionCmd(),
		newHistoryCmd(),
		newNomadCmd(),
	)
	return root
}
