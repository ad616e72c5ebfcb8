package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/report"
)

// This file is how the commands that print a result print it: --output
// text (for a person) or json (one document on stdout, for a script; the
// progress goes to stderr), and the verdict line's colour.

// Output formats (--output).
const (
	outputText = "text"
	outputJSON = "json"
)

// outputFlag is the --output flag of validate, plan, dry-run and run.
type outputFlag struct {
	format string
}

func (o *outputFlag) add(c *cobra.Command) {
	c.Flags().StringVarP(&o.format, "output", "o", outputText, "text | json: json prints one JSON document on stdout and the progress on stderr")
}

func (o *outputFlag) json() bool { return o.format == outputJSON }

// check refuses a format other than text and json.
func (o *outputFlag) check() error {
	if o.format != outputText && o.format != outputJSON {
		return badInput(fmt.Errorf("--output %q: want text or json", o.format))
	}
	return nil
}

// progress is where a command's progress goes: stdout for a person,
// stderr when stdout holds the JSON document.
func (o *outputFlag) progress(c *cobra.Command) io.Writer {
	if o.json() {
		return c.ErrOrStderr()
	}
	return c.OutOrStdout()
}

// runE runs a command's body; under --output json a failure that ends
// the command before its document was written writes the error document
// on stdout (the message still goes to stderr).
func (o *outputFlag) runE(body func(c *cobra.Command) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, _ []string) error {
		if err := o.check(); err != nil {
			return err
		}
		err := body(c)
		var done exitWith
		if err != nil && o.json() && !errors.As(err, &done) {
			if werr := writeJSON(c.OutOrStdout(), errorDocument(err)); werr != nil {
				return errors.Join(err, werr)
			}
		}
		return err
	}
}

// errorDoc is the --output json document of a command that failed before
// it had a result: what failed, the exit code, and for a spec that does
// not load every problem with its place.
type errorDoc struct {
	Error    string    `json:"error"`
	ExitCode int       `json:"exit_code"`
	Problems []problem `json:"problems,omitempty"`
}

// problem is one load-time problem: file, line and column (0 when
// unknown) and the message.
type problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

func errorDocument(err error) errorDoc {
	doc := errorDoc{Error: err.Error(), ExitCode: exitBadInput}
	var ce *codeError
	if errors.As(err, &ce) {
		doc.ExitCode = ce.code
	}
	if doc.Problems = problems(err); len(doc.Problems) > 0 {
		doc.Error = fmt.Sprintf("%d problem(s); nothing was changed", len(doc.Problems))
	}
	return doc
}

// problems lists the placed problems of a spec that did not load.
func problems(err error) []problem {
	var list policies.ErrorList
	if !errors.As(err, &list) {
		return nil
	}
	var out []problem
	for _, e := range list {
		var pe *policies.PosError
		if errors.As(e, &pe) {
			out = append(out, placed(pe))
		} else {
			out = append(out, problem{Message: e.Error()})
		}
	}
	return out
}

// placed is a problem at its position.
func placed(pe *policies.PosError) problem {
	return problem{File: pe.File, Line: pe.Line, Column: pe.Col, Message: pe.Msg}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// ANSI colours of the verdict line, by outcome.
var verdictColour = map[string]string{
	report.OutcomePromoted:   "\x1b[1;32m", // bold green
	report.OutcomeRolledBack: "\x1b[1;31m", // bold red
	report.OutcomeHalted:     "\x1b[1;33m", // bold yellow
	report.OutcomeError:      "\x1b[1;31m",
}

// colourful says whether w is a terminal that wants colour: never under
// NO_COLOR (https://no-color.org: set and not empty) or TERM=dumb, never
// into a file or a pipe.
func colourful(w io.Writer, getenv func(string) string) bool {
	if getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return false
	}
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// paint wraps s in the outcome's colour when colour is on.
func paint(on bool, outcome, s string) string {
	c, ok := verdictColour[outcome]
	if !on || !ok {
		return s
	}
	return c + s + "\x1b[0m"
}
