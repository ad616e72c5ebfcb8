package main

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/demo"
	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/integrations/ansible"
	"github.com/rollguard/rollguard/integrations/github"
	"github.com/rollguard/rollguard/integrations/notify"
	"github.com/rollguard/rollguard/integrations/victoriametrics"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
	"github.com/rollguard/rollguard/runner"
)

//go:embed testdata/playbooks
var playbooks embed.FS

// addLiveCommands adds the commands that touch real systems.
func addLiveCommands(root *cobra.Command) {
	root.AddCommand(newRunCmd(), newDemoCmd(), newGitHubActionCmd(), newHistoryCmd(), newNomadCmd())
}

// discover finds the targets of a spec.
func discover(ctx context.Context, spec *runner.Spec) ([]ports.Host, error) {
	t := spec.Targets
	switch {
	case len(t.Static) > 0:
		return runner.StaticHosts(spec), nil
	case t.Inventory != "":
		return ansible.Inventory(ctx, "", t.Inventory, t.Group)
	}
	return discoverShared(ctx, spec)
}

// signalContext is cancelled by SIGINT or SIGTERM, with the signal as the
// cause, so that the report says what stopped the run.
func signalContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			cancel(fmt.Errorf("received %s", s))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

func newLogger(verbose bool) *slog.Logger {
	if !verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newRunCmd() *cobra.Command {
	var file, reportDir, record string
	var verbose, abort bool
	var lockWait time.Duration
	c := &cobra.Command{
		Use:   "run -f rollout.yaml [--report-dir D] [--record rec.jsonl]",
		Short: "Roll the change out for real: canary, waves, monitoring, automatic rollback",
		Long: `run applies apply.playbook wave by wave with Ansible, canary first. For each
wave it takes every host's baseline from the metrics store (metrics.baseline
before the apply), applies the playbook with --limit to the wave, and watches
every host each metrics.interval while the playbook runs and through the wave's
monitoring period. When a fleet policy fires it reverts per revert.scope and
stops; when a host policy fires it reverts that host and goes on. After a
revert it watches the reverted hosts until their metrics are back in their
baseline band (revert.verify).

SIGINT/SIGTERM stop the apply and revert what was changed (or freeze it, per
revert.on_interrupt), write the report and exit 4.

--record writes every value the run saw in VictoriaMetrics' export format, so
'rollguard dry-run' can replay the run against new policies.

Exit codes: 0 promoted, 3 rolled back, 4 halted (a person must decide),
1 error, 2 bad input.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			spec, pols, err := loadSpec(file)
			if err != nil {
				return err
			}
			if spec.Metrics.URL == "" {
				return badInput(fmt.Errorf("%s: metrics.url is required for a live run", spec.File))
			}
			ctx, stop := signalContext(c.Context())
			defer stop()
			log := newLogger(verbose)
			hosts, err := discover(ctx, spec)
			if err != nil {
				return failed(err)
			}
			plan, err := runner.MakePlan(spec, hosts)
			if err != nil {
				return badInput(err)
			}
			client, err := victoriametrics.New(victoriametrics.Config{
				URL: spec.Metrics.URL, HostLabel: spec.Metrics.HostLabel, BearerToken: spec.Metrics.BearerToken,
				BasicAuthUser: basicUser(spec), BasicAuthPassword: basicPassword(spec),
				Headers: spec.Metrics.Headers, Timeout: spec.Metrics.Timeout.D(), Logger: log,
			})
			if err != nil {
				return badInput(err)
			}
			if err := preflight(ctx, spec, client); err != nil {
				return failed(err)
			}
			var src ports.MetricsSource = client
			if record != "" {
				rec, err := victoriametrics.CreateRecorder(client, spec.Metrics.HostLabel, record)
				if err != nil {
					return badInput(err)
				}
				defer func() {
					if err := rec.Close(); err != nil {
						fmt.Fprintln(os.Stderr, "rollguard: --record:", err)
					}
				}()
				src = rec
			}
			alerter, err := newAlerter(spec)
			if err != nil {
				return badInput(err)
			}
			snaps, skipHost, err := newSnapshotter(spec, log)
			if err != nil {
				return badInput(err)
			}
			st, err := openState(ctx, spec, log)
			if err != nil {
				return failed(err)
			}
			runID := time.Now().UTC().Format("20060102T150405Z") + "-" + uuid.NewString()[:8]
			lease, err := acquireLock(ctx, st, spec, runID, lockWait, func(s string) { fmt.Fprintln(c.ErrOrStderr(), "rollguard:", s) })
			if err != nil {
				return failed(err)
			}
			defer lease.Release(context.WithoutCancel(ctx))
			// Losing the lock (a Consul session invalidated, a lease
			// taken over) stops the run like a signal: revert or freeze.
			ctx, cancelLost := context.WithCancelCause(ctx)
			defer cancelLost(nil)
			go func() {
				select {
				case <-lease.Lost():
					cancelLost(fmt.Errorf("lost the lock of rollout %q", spec.Name))
				case <-ctx.Done():
				}
			}()
			journal, err := runner.OpenJournal(ctx, st.store)
			if err != nil {
				return failed(err)
			}
			var resume *runner.Resume
			switch {
			case journal.Unfinished():
				doc := journal.Doc()
				resume = doc.ResumeState()
				runID = doc.RunID
				if plan, err = runner.PlanFromJournal(spec, doc, hosts); err != nil {
					return failed(err)
				}
				what := "resuming"
				if abort {
					what = "aborting"
				}
				fmt.Fprintf(c.OutOrStdout(), "rollguard: %s the unfinished run %s (journal in %s)\n", what, runID, st.where)
			case abort:
				return failed(fmt.Errorf("--abort: rollout %q has no unfinished run to abort (journal in %s)", spec.Name, st.where))
			}
			ro := &runner.Rollout{
				Spec: spec, Policies: pols, Plan: plan, Metrics: src,
				Applier: ansible.New(ansible.Config{WorkDir: spec.Dir, Logger: log}),
				Clock:   runner.WallClock{}, Out: c.OutOrStdout(), Logger: log, RunID: runID,
				Alerter: alerter, ReportURL: github.RunURL(os.Getenv), Context: runContext(),
				Journal: journal, History: &history.History{Store: st.store},
				Snapshots: snaps, SnapshotSkipHost: skipHost,
				Resume: resume, Abort: abort,
			}
			fmt.Fprintf(c.OutOrStdout(), "rollguard run %s: rollout %q, %d hosts\n", runID, spec.Name, len(hosts))
			plan.WriteText(c.OutOrStdout())
			res, err := ro.Execute(ctx)
			if err != nil {
				return failed(err)
			}
			if reportDir == "" {
				reportDir = filepath.Join(stateDir(spec), "reports", runID)
			}
			return finish(c, res, reportDir)
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().StringVar(&reportDir, "report-dir", "", "write report.json, report.md, report.html here (default <state dir>/reports/<run id>)")
	c.Flags().StringVar(&record, "record", "", "write the metrics the run saw to this file (export format; .gz compresses)")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "log details to stderr")
	c.Flags().BoolVar(&abort, "abort", false, "revert every host an unfinished run changed, instead of resuming it")
	c.Flags().DurationVar(&lockWait, "lock-wait", 0, "wait this long for a held lock (a crashed run's Consul session or Nomad lease lapses within about a minute) instead of exiting 1")
	return c
}

// newAlerter builds the alert fan-out from the spec (nil when none).
func newAlerter(spec *runner.Spec) (ports.Alerter, error) {
	if len(spec.Alerts) == 0 {
		return nil, nil
	}
	cfg := make([]notify.AlertConfig, len(spec.Alerts))
	for i, a := range spec.Alerts {
		cfg[i] = notify.AlertConfig{Type: a.Type, URL: a.URL, On: a.On}
	}
	return notify.New(cfg, notify.Options{})
}

// runContext says where this run runs: a GitHub Actions job, a Nomad
// allocation, or nothing special.
func runContext() map[string]string {
	return nomadContext(github.RunContext(os.Getenv))
}

func basicUser(spec *runner.Spec) string {
	if spec.Metrics.BasicAuth == nil {
		return ""
	}
	return spec.Metrics.BasicAuth.Username
}

func basicPassword(spec *runner.Spec) string {
	if spec.Metrics.BasicAuth == nil {
		return ""
	}
	return spec.Metrics.BasicAuth.Password
}

// stateDir is where local state (reports, history, journal) lives.
func stateDir(spec *runner.Spec) string {
	if spec.State.Dir != "" {
		return spec.State.Dir
	}
	return filepath.Join(spec.Dir, ".rollguard")
}

// preflight checks that the metrics source answers before any host is
// touched.
func preflight(ctx context.Context, spec *runner.Spec, src ports.MetricsSource) error {
	q := spec.Metrics.Queries[0]
	out := make([]float64, 1)
	if err := src.Instant(ctx, ports.Query{Name: q.Name, Expr: q.Query}, []string{"rollguard-preflight"}, time.Now(), out); err != nil {
		return fmt.Errorf("preflight: the metrics source does not answer: %w", err)
	}
	return nil
}

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
	c.Flags().StringVar(&dir, "dir", "", "working directory (default: a new temporary directory)")
	c.Flags().IntVar(&hosts, "hosts", 6, "number of simulated hosts")
	return c
}

// newGitHubActionCmd is the entry point of action.yml: it reads the
// action's inputs, runs the command they name, and writes the outputs and
// the job summary.
func newGitHubActionCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "github-action",
		Short:  "Run as a GitHub Action step (reads INPUT_* variables)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			res, err := github.Step(c.Context(), os.Getenv, func(_ context.Context, argv []string) int { return run(argv) },
				slog.New(slog.NewTextHandler(os.Stderr, nil)))
			if err != nil {
				fmt.Fprintln(os.Stderr, "rollguard:", err)
			}
			if res.ExitCode == 0 {
				return nil
			}
			return exitWith(res.ExitCode)
		},
	}
}
