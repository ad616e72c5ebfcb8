package main

import (
	"github.com/spf13/cobra"
)

func newPlanCmd() *cobra.Command {
	var file string
	var asJSON bool
	var o outputFlag
	c := &cobra.Command{
		Use:   "plan -f rollout.yaml [--json | -o json]",
		Short: "Discover the targets and print the wave plan; changes nothing",
		Long: `plan discovers the targets (static list, Ansible inventory, Consul service or
Nomad nodes), selects the canary and splits the rest into the waves, and
prints the plan. It changes nothing. --json (or --output json) prints
{"rollout":"web","waves":[{"name":"canary","hosts":["web-1"],"monitor":"5m"},...],"bake":"10m"}
(bake only when the spec has one).

When the waves follow a meta key (waves[].spread_by, waves[].by,
canary.pin), every wave also shows its hosts by value ("zone: a 2/4" is 2
of zone a's 4 hosts), and in --json a "topology" object per wave:
{"key","mode","max_per_value","never_whole","values":[{"value","hosts","total"}]}.

Exit codes: 0 planned, 2 bad input (a static list that cannot satisfy the
spec), 1 discovery failed or the discovered hosts cannot satisfy the spec
(the error names the wave, the value and the numbers).`,
		Example: `  rollguard plan -f rollout.yaml
  rollguard plan -f rollout.yaml --json | jq -r '.waves[0].hosts[]'
  CONSUL_HTTP_ADDR=http://consul:8500 rollguard plan -f rollout.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: o.runE(func(c *cobra.Command) error {
			spec, _, err := loadSpec(file)
			if err != nil {
				return err
			}
			_, plan, err := discoverPlan(c.Context(), spec)
			if err != nil {
				return err
			}
			if asJSON || o.json() {
				return plan.WriteJSON(c.OutOrStdout(), spec.Name)
			}
			plan.WriteText(c.OutOrStdout())
			return nil
		}),
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON (the same as --output json)")
	o.add(c)
	return c
}
