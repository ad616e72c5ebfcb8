package main

import (
	"fmt"
	"os"

	"github.com/rollguard/rollguard/integrations/github"
	"github.com/rollguard/rollguard/runner"
	"github.com/spf13/cobra"
)

func newValidateCmd() *cobra.Command {
	var file string
	var allowUnset bool
	c := &cobra.Command{
		Use:   "validate -f rollout.yaml [--allow-unset-env]",
		Short: "Load the spec and its policies, print every problem (exit 0 valid, 2 invalid)",
		Long: `validate loads rollout.yaml and every policy file it names, checks every key,
value and reference, and compiles every policy expression against the policy
environment. It prints every problem at once as file:line:col: message, and
changes nothing anywhere. In GitHub Actions each problem is also an ::error
annotation on its file, line and column.

--allow-unset-env is for where the secrets are not (a pull request from a
fork): an unset ${VAR} without a default is a notice, not an error, and only
the values that hold one go unchecked; every other check runs.`,
		Example: `  rollguard validate -f rollout.yaml
  rollguard validate -f rollout.yaml --allow-unset-env   # on a pull request without secrets`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !allowUnset {
				spec, pols, err := loadSpec(file)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "%s: valid: rollout %q, %d queries, %d policies\n", file, spec.Name, len(spec.Metrics.Queries), len(pols))
				return nil
			}
			if file == "" {
				return badInput(fmt.Errorf("no spec given: use -f rollout.yaml"))
			}
			spec, pols, err := runner.LoadAllowUnset(file, nil)
			if err != nil {
				return badInput(err)
			}
			w := c.OutOrStdout()
			unset := 0
			for _, r := range spec.Env {
				if r.Set || r.HasDefault {
					continue
				}
				unset++
				msg := fmt.Sprintf("environment variable %s is not set: the value of %s was not checked", r.Name, r.Key)
				if github.InActions(os.Getenv) {
					fmt.Fprintln(w, github.Annotation(os.Getenv, "notice", r.File, r.Line, r.Col, msg))
				} else {
					fmt.Fprintf(w, "%s:%d:%d: notice: %s\n", r.File, r.Line, r.Col, msg)
				}
			}
			fmt.Fprintf(w, "%s: valid: rollout %q, %d queries, %d policies; %d unset variables not checked\n", file, spec.Name, len(spec.Metrics.Queries), len(pols), unset)
			return nil
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().BoolVar(&allowUnset, "allow-unset-env", false, "an unset ${VAR} is a notice and its value goes unchecked; every other check runs")
	return c
}
