package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "validate -f rollout.yaml",
		Short: "Load the spec and its policies, print every problem (exit 0 valid, 2 invalid)",
		Long: `validate loads rollout.yaml and every policy file it names, checks every key,
value and reference, and compiles every policy expression against the policy
environment. It prints every problem at once as file:line:col: message, and
changes nothing anywhere.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			spec, pols, err := loadSpec(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: valid: rollout %q, %d queries, %d policies\n", file, spec.Name, len(spec.Metrics.Queries), len(pols))
			return nil
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	return c
}
