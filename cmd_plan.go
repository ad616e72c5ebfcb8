package main

import (
	"github.com/spf13/cobra"
)

func newPlanCmd() *cobra.Command {
	var file string
	var asJSON bool
	c := &cobra.Command{
		Use:   "plan -f rollout.yaml [--json]",
		Short: "Discover the targets and print the wave plan; changes nothing",
		Long: `plan discovers the targets (static list, Ansible inventory, Consul service or
Nomad nodes), selects the canary and splits the rest into the waves, and
prints the plan. It changes nothing. --json prints
{"waves":[{"name":"canary","hosts":["web-1"],"monitor":"5m"},...]}.

When the waves follow a meta key (waves[].spread_by, waves[].by,
canary.pin), every wave also shows its hosts by value ("zone: a 2/4" is 2
of zone a's 4 hosts), and in --json a "topology" object per wave:
{"key","mode","max_per_value","never_whole","values":[{"value","hosts","total"}]}.

Exit codes: 0 planned, 2 bad input (a static list that cannot satisfy the
spec), 1 discovery failed or the discovered hosts cannot satisfy the spec
(the error names the wave, the value and the numbers).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			spec, _, err := loadSpec(file)
			if err != nil {
				return err
			}
			_, plan, err := discoverPlan(c.Context(), spec)
			if err != nil {
				return err
			}
			if asJSON {
				return plan.WriteJSON(c.OutOrStdout())
			}
			plan.WriteText(c.OutOrStdout())
			return nil
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return c
}
