package main

import (
	"fmt"
	"os"

	"github.com/rollguard/rollguard/integrations/github"
	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/runner"
	"github.com/spf13/cobra"
)

// validDoc is `validate --output json` for a spec that loads.
type validDoc struct {
	File    string `json:"file"`
	Valid   bool   `json:"valid"`
	Rollout string `json:"rollout"`
	// Queries and Policies are named in the spec's order.
	Queries  []string `json:"queries"`
	Policies []string `json:"policies"`
	// Unchecked are the values left unchecked for an unset ${VAR}
	// (--allow-unset-env), each where it is written.
	Unchecked []problem `json:"unchecked,omitempty"`
	// Warnings are what the spec allows and a user should know (a
	// baseline of fewer than 24 polls), each where it is written.
	Warnings []problem `json:"warnings,omitempty"`
}

func newValidateCmd() *cobra.Command {
	var file string
	var allowUnset bool
	var o outputFlag
	c := &cobra.Command{
		Use:   "validate -f rollout.yaml [--allow-unset-env] [-o json]",
		Short: "Load the spec and its policies, print every problem (exit 0 valid, 2 invalid)",
		Long: `validate loads rollout.yaml and every policy file it names, checks every key,
value and reference, and compiles every policy expression against the policy
environment. It prints every problem at once as file:line:col: message, and
changes nothing anywhere. In GitHub Actions each problem is also an ::error
annotation on its file, line and column.

--allow-unset-env is for where the secrets are not (a pull request from a
fork): an unset ${VAR} without a default is a notice, not an error, and only
the values that hold one go unchecked; every other check runs.

A valid spec can still draw a warning (file:line:col: warning: message,
a ::warning annotation in GitHub Actions), which never changes the exit
code: a metrics.baseline of fewer than 24 polls of metrics.interval (in
the evaluation, baselines of 24, 12 and 6 polls rolled back 1.5, 2.3 and
4 times as many good changes as 48; the default is 48 polls, at least
30m). plan, dry-run and run print the same warnings on stderr.

--output json prints {"file","valid":true,"rollout","queries":[...],"policies":[...]}
(and "unchecked":[{"file","line","column","message"}] with --allow-unset-env,
"warnings":[{"file","line","column","message"}] when there are any)
for a valid spec, and for an invalid one
{"error","exit_code":2,"problems":[{"file","line","column","message"},...]}.`,
		Example: `  rollguard validate -f rollout.yaml
  rollguard validate -f rollout.yaml --allow-unset-env   # on a pull request without secrets
  rollguard validate -f rollout.yaml -o json | jq '.problems[] | "\(.file):\(.line): \(.message)"'`,
		Args: cobra.NoArgs,
		RunE: o.runE(func(c *cobra.Command) error {
			var spec *runner.Spec
			var pols []*policies.Policy
			var err error
			if allowUnset {
				if file == "" {
					return badInput(fmt.Errorf("no spec given: use -f rollout.yaml"))
				}
				spec, pols, err = runner.LoadAllowUnset(file, nil)
				if err != nil {
					err = badInput(err)
				}
			} else {
				spec, pols, err = loadSpec(file)
			}
			if err != nil {
				return err
			}
			doc := validDoc{File: file, Valid: true, Rollout: spec.Name, Queries: []string{}, Policies: []string{}}
			for _, q := range spec.Metrics.Queries {
				doc.Queries = append(doc.Queries, q.Name)
			}
			for _, p := range pols {
				doc.Policies = append(doc.Policies, p.Name)
			}
			// Notices go with the progress: on stderr under --output json.
			w := o.progress(c)
			for _, r := range spec.Env {
				if r.Set || r.HasDefault {
					continue
				}
				msg := fmt.Sprintf("environment variable %s is not set: the value of %s was not checked", r.Name, r.Key)
				doc.Unchecked = append(doc.Unchecked, problem{File: r.File, Line: r.Line, Column: r.Col, Message: msg})
				if github.InActions(os.Getenv) {
					fmt.Fprintln(w, github.Annotation(os.Getenv, "notice", r.File, r.Line, r.Col, msg))
				} else {
					fmt.Fprintf(w, "%s:%d:%d: notice: %s\n", r.File, r.Line, r.Col, msg)
				}
			}
			warnSpec(w, spec)
			for _, x := range spec.Warnings {
				doc.Warnings = append(doc.Warnings, placed(x))
			}
			if o.json() {
				return writeJSON(c.OutOrStdout(), doc)
			}
			line := fmt.Sprintf("%s: valid: rollout %q, %d queries, %d policies", file, spec.Name, len(spec.Metrics.Queries), len(pols))
			if allowUnset {
				line += fmt.Sprintf("; %d unset variables not checked", len(doc.Unchecked))
			}
			fmt.Fprintln(c.OutOrStdout(), line)
			return nil
		}),
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().BoolVar(&allowUnset, "allow-unset-env", false, "an unset ${VAR} is a notice and its value goes unchecked; every other check runs")
	o.add(c)
	return c
}
