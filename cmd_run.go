package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/integrations/selfmetrics"
	"github.com/rollguard/rollguard/integrations/victoriametrics"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/runner"
)

func newRunCmd() *cobra.Command {
	var f runFlags
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

--push-metrics (or metrics.push_url) pushes rollguard's own metrics
(rollguard_*, labelled with rollout and run_id) in Prometheus text format
every metrics.interval and at the end, e.g. to VictoriaMetrics'
/api/v1/import/prometheus. The URL is never printed.

--output json prints report.json's document on stdout, and the progress
and the verdict on stderr.

Exit codes: 0 promoted, 3 rolled back, 4 halted (a person must decide),
1 error, 2 bad input.`,
		Example: `  rollguard run -f rollout.yaml --report-dir reports/
  rollguard run -f rollout.yaml --record run.jsonl.gz --push-metrics http://vm:8428/api/v1/import/prometheus
  rollguard run -f rollout.yaml --abort
  rollguard run -f rollout.yaml -o json > report.json`,
		Args: cobra.NoArgs,
		RunE: f.o.runE(f.run),
	}
	c.Flags().StringVarP(&f.file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().StringVar(&f.reportDir, "report-dir", "", "write report.json, report.md, report.html here (default <state dir>/reports/<run id>)")
	c.Flags().StringVar(&f.record, "record", "", "write the metrics the run saw to this file (export format; .gz compresses)")
	c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log details to stderr")
	c.Flags().BoolVar(&f.abort, "abort", false, "revert every host an unfinished run changed, instead of resuming it")
	c.Flags().DurationVar(&f.lockWait, "lock-wait", 0, "wait this long for a held lock (a crashed run's Consul session or Nomad lease lapses within about a minute) instead of exiting 1")
	c.Flags().StringVar(&f.pushMetrics, "push-metrics", "", "push rollguard's own metrics here in Prometheus text format (overrides metrics.push_url; never printed)")
	f.o.add(c)
	return c
}

// runFlags are the options of `rollguard run`.
type runFlags struct {
	file, reportDir, record string
	verbose, abort          bool
	lockWait                time.Duration
	pushMetrics             string
	o                       outputFlag
}

// run is `rollguard run`: load, discover, connect the metrics, take the
// lock, take up an unfinished run, execute, report.
func (f *runFlags) run(c *cobra.Command) error {
	out := newProgress(f.o.progress(c))
	spec, pols, err := loadSpec(f.file)
	if err != nil {
		return err
	}
	warnSpec(c.ErrOrStderr(), spec)
	if spec.Metrics.URL == "" {
		return badInput(spec.Problem("metrics.url", "metrics.url is required for a live run (dry-run replays a recording without it)"))
	}
	// Bad input changes nothing: the flags are checked before the state
	// directory, the lock and the journal are opened.
	if u := pushURL(spec, f.pushMetrics); u != "" {
		if _, err := selfmetrics.CheckURL(u); err != nil {
			return badInput(err)
		}
	}
	ctx, stop := signalContext(c.Context())
	defer stop()
	log := newLogger(f.verbose)
	hosts, plan, err := discoverPlan(ctx, spec)
	if err != nil {
		return err
	}
	src, closeSrc, err := liveMetrics(ctx, spec, f.record, log)
	if err != nil {
		return err
	}
	defer closeSrc()
	// What the spec alone decides (alert destinations, snapshot hooks,
	// the detection engine) is built and checked before the state is
	// opened: a value found bad there changes nothing either.
	ro, err := newRollout(spec, pols, plan, rolloutOptions{clock: runner.WallClock{}, out: out, warn: c.ErrOrStderr(), log: log, live: true})
	if err != nil {
		return err
	}
	if err := ro.Check(); err != nil {
		return badInput(err)
	}
	st, err := openState(ctx, spec, log)
	if err != nil {
		return failed(err)
	}
	runID := newRunID(false)
	lease, err := acquireLock(ctx, st, spec, runID, f.lockWait, func(s string) { fmt.Fprintln(c.ErrOrStderr(), "rollguard:", s) })
	if err != nil {
		return failed(err)
	}
	defer lease.Release(context.WithoutCancel(ctx))
	ctx, cancelLost := untilLockLost(ctx, lease, spec.Name)
	defer cancelLost(nil)
	live, err := openJournal(ctx, st, spec, f.abort)
	if err != nil {
		return err
	}
	if rs := live.resume; rs != nil {
		runID = rs.Doc.RunID
		if plan, err = runner.PlanFromJournal(spec, rs.Doc, hosts); err != nil {
			return failed(err)
		}
		// The history of the run's hosts is kept under the version it
		// started with.
		if v := rs.Doc.Version; v != "" && v != spec.Apply.Version {
			fmt.Fprintf(c.ErrOrStderr(), "rollguard: warning: the unfinished run %s started with version %s; the spec now gives %s: the resumed run applies what the spec gives now, recorded as %s\n", rs.Doc.RunID, v, spec.Apply.Version, v)
			spec.Apply.Version = v
		}
		what := "resuming"
		if f.abort {
			what = "aborting"
		}
		fmt.Fprintf(out, "rollguard: %s the unfinished run %s (journal in %s)\n", what, runID, st.where)
	}
	tel, src, pushed, err := selfMetrics(ctx, spec, f.pushMetrics, runID, src, log)
	if err != nil {
		return err
	}
	defer pushed(c.ErrOrStderr())
	live.attach(ro)
	// A resumed run plans from its journal (above), after the check.
	ro.Plan, ro.Metrics, ro.RunID, ro.Telemetry = plan, src, runID, tel
	fmt.Fprintf(out, "rollguard run %s: rollout %q, %d hosts\n", runID, spec.Name, len(hosts))
	plan.WriteText(out)
	res, err := ro.Execute(ctx)
	if err != nil {
		return failed(err)
	}
	reportDir := f.reportDir
	if reportDir == "" {
		reportDir = filepath.Join(stateDir(spec), "reports", runID)
	}
	return finish(c, &f.o, res, reportDir)
}

// selfMetrics sets up rollguard's own metrics when a push URL is given
// (--push-metrics, else metrics.push_url): they are pushed every
// metrics.interval, and once more by pushed, which the caller defers. The
// metrics source comes back wrapped, to count the queries. Without a URL
// the telemetry is nil and pushed does nothing.
func selfMetrics(ctx context.Context, spec *runner.Spec, flagURL, runID string, src ports.MetricsSource, log *slog.Logger) (
	tel ports.Telemetry, wrapped ports.MetricsSource, pushed func(io.Writer), err error) {
	u := pushURL(spec, flagURL)
	if u == "" {
		return nil, src, func(io.Writer) {}, nil
	}
	m := selfmetrics.New(spec.Name, runID)
	p, err := selfmetrics.NewPusher(m, u, log)
	if err != nil {
		return nil, nil, nil, badInput(err)
	}
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	if err := p.Start(pctx, spec.Metrics.Interval.D()); err != nil {
		stop()
		return nil, nil, nil, badInput(err)
	}
	return m, m.Source(src), func(w io.Writer) {
		stop()
		if err := p.Push(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(w, "rollguard:", err)
		}
	}, nil
}

// pushURL is where rollguard's own metrics go: --push-metrics, else
// metrics.push_url ("": nowhere).
func pushURL(spec *runner.Spec, flagURL string) string {
	if flagURL != "" {
		return flagURL
	}
	return spec.Metrics.PushURL
}

// liveMetrics connects to metrics.url, checks that it answers, and with
// --record tees what the run sees into a recording; closeSrc ends the
// recording.
func liveMetrics(ctx context.Context, spec *runner.Spec, record string, log *slog.Logger) (src ports.MetricsSource, closeSrc func(), err error) {
	client, err := victoriametrics.New(victoriametrics.Config{
		URL: spec.Metrics.URL, HostLabel: spec.Metrics.HostLabel, BearerToken: spec.Metrics.BearerToken,
		BasicAuthUser: basicUser(spec), BasicAuthPassword: basicPassword(spec),
		Headers: spec.Metrics.Headers, Timeout: spec.Metrics.Timeout.D(), Logger: log,
	})
	if err != nil {
		return nil, nil, badInput(err)
	}
	if err := preflight(ctx, spec, client); err != nil {
		return nil, nil, failed(err)
	}
	if record == "" {
		return client, func() {}, nil
	}
	rec, err := victoriametrics.CreateRecorder(client, spec.Metrics.HostLabel, record)
	if err != nil {
		return nil, nil, badInput(err)
	}
	return rec, func() {
		if err := rec.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "rollguard: --record:", err)
		}
	}, nil
}

// untilLockLost stops the run like a signal when the lock is lost (a
// Consul session invalidated, a lease taken over): revert or freeze.
func untilLockLost(ctx context.Context, lease ports.Lease, name string) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-lease.Lost():
			cancel(fmt.Errorf("lost the lock of rollout %q", name))
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// openJournal opens the rollout's journal under the lock; when it holds
// an unfinished run, that run is resumed (or, with --abort, reverted).
func openJournal(ctx context.Context, st *stateBackend, spec *runner.Spec, abort bool) (*liveState, error) {
	journal, err := runner.OpenJournal(ctx, st.store)
	if err != nil {
		return nil, failed(err)
	}
	if step := os.Getenv("ROLLGUARD_FAULT_KILL_AFTER"); step != "" {
		// Fault injection for the fault suite (make chaos): the process
		// dies (SIGKILL, as a lost machine would) right after the first
		// journal entry of that step is stored, before the step acts.
		journal.AfterWrite = func(e runner.JournalEntry) {
			if e.Step == step {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	live := &liveState{state: st, journal: journal, abort: abort}
	switch {
	case journal.Unfinished():
		live.resume = journal.Doc().ResumeState()
	case abort:
		return nil, failed(fmt.Errorf("--abort: rollout %q has no unfinished run to abort (journal in %s)", spec.Name, st.where))
	}
	return live, nil
}
