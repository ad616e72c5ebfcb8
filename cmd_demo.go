package main

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/demo"
	"github.com/rollguard/rollguard/report"
)

//go:embed testdata/playbooks
var playbooks embed.FS

func newDemoCmd() *cobra.Command {
	var dir string
	var hosts int
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole loop on a simulated local fleet (needs Ansible and VictoriaMetrics)",
		Long: `demo starts a simulated fleet on this machine (each host an HTTP exporter on
127.0.0.1 whose latency, errors and CPU follow the app.conf that the playbook
writes into its directory), a VictoriaMetrics that scrapes it every second, and
runs two real rollouts with Ansible:

  1. a good change, which promotes through the canary and two waves;
  2. a bad change, which the canary catches; rollguard reverts it with the
     revert playbook, verifies the canary recovered, and no other host is touched.

It takes about three minutes and stops everything at the end or on Ctrl-C.
Exit 0 when both rollouts behaved so. When Ansible or VictoriaMetrics is
missing it installs it first (ansible-core with apt-get, as root;
victoria-metrics v1.151.0 with go install); 'make demo' does the same through
ci/install-deps.sh.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, stop := signalContext(c.Context())
			defer stop()
			self, err := os.Executable()
			if err != nil {
				return failed(err)
			}
			pb, err := fs.Sub(playbooks, "testdata/playbooks")
			if err != nil {
				return failed(err)
			}
			start := time.Now()
			sum, err := demo.Run(ctx, demo.Options{Binary: self, Dir: dir, Hosts: hosts, Playbooks: pb, Out: c.OutOrStdout()})
			if err != nil {
				return failed(err)
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "\n══ rollguard demo summary (%s) ══\n", time.Since(start).Round(time.Second))
			for _, r := range []demo.RolloutResult{sum.Good, sum.Bad} {
				line := fmt.Sprintf("%-12s %-12s exit %d — %s", r.Name, r.Report.Outcome, r.ExitCode, r.Report.Reason)
				fmt.Fprintln(w, line)
				if rb := r.Report.Rollback; rb != nil && r.Report.Outcome == report.OutcomeRolledBack {
					fmt.Fprintf(w, "%-12s reverted %s, verified: %v (%s)\n", "", strings.Join(rb.Hosts, ", "), rb.Verified, rb.Verification)
				}
				fmt.Fprintf(w, "%-12s hosts written: %s; report: %s/report.html\n", "", strings.Join(r.Written, ", "), r.ReportDir)
			}
			if !sum.OK {
				fmt.Fprintf(w, "DEMO FAILED: %s\n", sum.Problem)
				return exitWith(exitError)
			}
			fmt.Fprintln(w, "OK: the good change promoted everywhere; the bad one was caught on the canary and reverted before it reached another host.")
			return nil
		},
	}
	c.Example = `  rollguard demo
  rollguard demo --dir /tmp/demo --hosts 8   # keeps the reports in /tmp/demo`
	c.Flags().StringVar(&dir, "dir", "", "working directory (default: a new temporary directory)")
	c.Flags().IntVar(&hosts, "hosts", 6, "number of simulated hosts")
	return c
}
