package main

import (
	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/report"
	"github.com/rollguard/rollguard/runner"
)

func newPlanCmd() *cobra.Command {
	var file string
	var asJSON, diff, verbose bool
	var o outputFlag
	c := &cobra.Command{
		Use:   "plan -f rollout.yaml [--json | -o json]",
		Short: "Discover the targets and print the wave plan; changes nothing",
		Long: `plan discovers the targets (static list, Ansible inventory, Consul service or
Nomad nodes), selects the canary and splits the rest into the waves, and
prints the plan, and what each wave is judged on: the poll interval, the
baseline before its apply in polls, the warm-up (a metrics.baseline of
fewer than 24 polls draws a warning on stderr). It changes nothing.
--json (or --output json) prints
{"rollout":"web","waves":[{"name":"canary","hosts":["web-1"],"monitor":"5m"},...],"bake":"10m"}
(bake only when the spec has one).

When the waves follow a meta key (waves[].spread_by, waves[].by,
canary.pin), every wave also shows its hosts by value ("zone: a 2/4" is 2
of zone a's 4 hosts), and in --json a "topology" object per wave:
{"key","mode","max_per_value","never_whole","values":[{"value","hosts","total"}]}.

--diff also runs apply.playbook in check mode with --diff (nothing is
written) on the hosts preflight.check names (the canary when it is not
set), the way run's pre-flight check does, and prints per host the tasks
that would change, their files and the lines added and removed, judged
against the spec's preflight limits; in --json a "check" object in
report.json's "preflight" form, which dry-run --check-result reads.

Exit codes: 0 planned, 4 the pre-flight check (--diff) would stop the
rollout (the reason names the host, task and file), 2 bad input (a static list that cannot satisfy the
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
			warnSpec(c.ErrOrStderr(), spec)
			_, plan, err := discoverPlan(c.Context(), spec)
			if err != nil {
				return err
			}
			if diff {
				hosts := runner.CheckHosts(spec, plan)
				if plan.Check, err = runner.RunCheck(c.Context(), newApplier(spec, newLogger(verbose)), spec, plan, hosts); err != nil {
					return failed(err)
				}
			}
			if asJSON || o.json() {
				err = plan.WriteJSON(c.OutOrStdout(), spec.Name)
			} else {
				plan.WriteText(c.OutOrStdout())
			}
			if err == nil && plan.Check != nil && plan.Check.Outcome == report.CheckStopped {
				return exitWith(exitHalted)
			}
			return err
		}),
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON (the same as --output json)")
	c.Flags().BoolVar(&diff, "diff", false, "run the pre-flight check (check mode, --diff) and show what would change")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "log details to stderr")
	o.add(c)
	return c
}
