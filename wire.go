package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/integrations/ansible"
	"github.com/rollguard/rollguard/integrations/consul"
	"github.com/rollguard/rollguard/integrations/github"
	"github.com/rollguard/rollguard/integrations/nomad"
	"github.com/rollguard/rollguard/integrations/notify"
	"github.com/rollguard/rollguard/integrations/snapshot"
	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
	"github.com/rollguard/rollguard/runner"
)

// This file builds what the commands share: the spec, the targets, and
// the one rollout that run and dry-run execute (newRollout); state and
// lock are in wire_state.go.

// rolloutOptions are what a command adds to a spec, its policies and its
// plan to make a rollout.
type rolloutOptions struct {
	metrics ports.MetricsSource
	clock   ports.Clock
	// out receives the timeline (nil: none).
	out io.Writer
	// warn receives the warnings the run's data draws (nil: the report's
	// only).
	warn  io.Writer
	log   *slog.Logger
	runID string
	// live makes a live run: Ansible applies, alerts go out, snapshots
	// are taken. false is a dry run. The journal and the history come
	// later, with the lock (liveState.attach).
	live bool
	// telemetry receives what the run does (nil: nothing).
	telemetry ports.Telemetry
}

// liveState is where a live run keeps its journal and history.
type liveState struct {
	state   *stateBackend
	journal *runner.Journal
	// resume is the unfinished run the journal holds (nil: a new run);
	// abort reverts it instead of resuming it.
	resume *runner.Resume
	abort  bool
}

// attach gives a live rollout the journal and the history it keeps
// under the lock.
func (l *liveState) attach(ro *runner.Rollout) {
	ro.Journal, ro.History = l.journal, &history.History{Store: l.state.store}
	ro.Resume, ro.Abort = l.resume, l.abort
}

// newRollout builds the rollout of a spec: the one place where the
// integrations are wired into the runner. Everything it builds comes from
// the spec alone (alert destinations, snapshot hooks), so a live run
// calls it before it opens its state and takes its lock: a value they
// refuse is bad input that changes nothing.
func newRollout(spec *runner.Spec, pols []*policies.Policy, plan *runner.Plan, o rolloutOptions) (*runner.Rollout, error) {
	ro := &runner.Rollout{
		Spec: spec, Policies: pols, Plan: plan,
		Metrics: o.metrics, Clock: o.clock, Out: o.out, Warnings: o.warn, Logger: o.log, RunID: o.runID, Telemetry: o.telemetry,
	}
	if !o.live {
		return ro, nil
	}
	alerter, err := newAlerter(spec)
	if err != nil {
		return nil, badInput(err)
	}
	snaps, skipHost, err := newSnapshotter(spec, o.log)
	if err != nil {
		return nil, badInput(err)
	}
	ro.Applier = newApplier(spec, o.log)
	ro.Alerter, ro.ReportURL, ro.Context = alerter, github.RunURL(os.Getenv), runContext()
	ro.Snapshots, ro.SnapshotSkipHost = snaps, skipHost
	return ro, nil
}

// newApplier runs the spec's playbooks with Ansible: the apply, the
// revert and the pre-flight check go the same way (the user's inventory,
// apply.timeout).
func newApplier(spec *runner.Spec, log *slog.Logger) ports.Applier {
	return ansible.New(ansible.Config{WorkDir: spec.Dir, Inventory: spec.Targets.Inventory,
		Timeout: spec.Apply.Timeout.D(), Logger: log})
}

// newRunID names a run: "dry-<8 hex>" for a dry run, "<UTC time>-<8
// hex>" for a live one, so that live runs sort by start.
func newRunID(dry bool) string {
	id := uuid.NewString()[:8]
	if dry {
		return "dry-" + id
	}
	return time.Now().UTC().Format("20060102T150405Z") + "-" + id
}

// loadSpec loads and compiles a spec; any problem is bad input (exit 2),
// with every problem listed.
func loadSpec(path string) (*runner.Spec, []*policies.Policy, error) {
	if path == "" {
		return nil, nil, badInput(fmt.Errorf("no spec given: use -f rollout.yaml"))
	}
	spec, pols, err := runner.Load(path, nil)
	if err != nil {
		return nil, nil, badInput(err)
	}
	return spec, pols, nil
}

// warnSpec prints the spec's warnings (runner.Spec.Warnings) on w as
// file:line:col: warning: message, or as ::warning annotations on their
// file and line in GitHub Actions. A warning never changes the exit code.
func warnSpec(w io.Writer, spec *runner.Spec) {
	for _, x := range spec.Warnings {
		if github.InActions(os.Getenv) {
			fmt.Fprintln(w, github.Annotation(os.Getenv, "warning", x.File, x.Line, x.Col, x.Msg))
		} else {
			fmt.Fprintf(w, "%s:%d:%d: warning: %s\n", x.File, x.Line, x.Col, x.Msg)
		}
	}
}

// discoverPlan finds the targets and plans the waves. A plan that cannot
// be made from a static list is bad input (validate reports it too); from
// discovered hosts it is an error (exit 1): the spec is valid, the fleet
// does not fit it.
func discoverPlan(ctx context.Context, spec *runner.Spec) ([]ports.Host, *runner.Plan, error) {
	hosts, err := discover(ctx, spec)
	if err != nil {
		return nil, nil, failed(err)
	}
	plan, err := runner.MakePlan(spec, hosts)
	if err == nil {
		// A run renders metrics.host_value for every host when it
		// starts: a discovered host it cannot render is refused now,
		// before anything is locked.
		err = runner.CheckHostValues(spec, hosts)
	}
	switch {
	case err != nil && len(spec.Targets.Static) > 0:
		return nil, nil, badInput(err)
	case err != nil:
		return nil, nil, failed(err)
	}
	return hosts, plan, nil
}

// discover finds the targets of a spec: its static list, an Ansible
// inventory, Consul service instances or Nomad nodes.
func discover(ctx context.Context, spec *runner.Spec) ([]ports.Host, error) {
	t := spec.Targets
	switch {
	case len(t.Static) > 0:
		return runner.StaticHosts(spec), nil
	case t.Inventory != "":
		return ansible.Inventory(ctx, ansible.InventoryQuery{Path: t.Inventory, Group: t.Group, Dir: spec.Dir,
			VaultPasswordFile: spec.Apply.VaultPasswordFile})
	case t.Consul != nil:
		c, err := consul.New(nil, nil)
		if err != nil {
			return nil, fmt.Errorf("consul client: %w", err)
		}
		passing := t.Consul.PassingOnly == nil || *t.Consul.PassingOnly
		return consul.Discover(ctx, c, consul.Query{Service: t.Consul.Service, Tags: t.Consul.Tags, Datacenter: t.Consul.Datacenter,
			PassingOnly: passing, NodeMeta: t.Consul.NodeMeta, Namespace: t.Consul.Namespace, Partition: t.Consul.Partition, NameFrom: t.Consul.NameFrom})
	case t.Nomad != nil:
		c, err := nomad.New(nil, nil)
		if err != nil {
			return nil, fmt.Errorf("nomad client: %w", err)
		}
		return nomad.DiscoverNodes(ctx, c, nomad.NodeQuery{NodePool: t.Nomad.NodePool, NodeClass: t.Nomad.NodeClass, Meta: t.Nomad.Meta})
	}
	return nil, fmt.Errorf("targets: no source")
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

// newSnapshotter builds the snapshot hooks of revert.snapshot (nil when
// none are configured).
func newSnapshotter(spec *runner.Spec, log *slog.Logger) (ports.Snapshotter, bool, error) {
	sn := spec.Revert.Snapshot
	if sn == nil {
		return nil, false, nil
	}
	s, err := snapshot.New(snapshot.Config{Create: sn.Create, Restore: sn.Restore, Delete: sn.Delete,
		Concurrency: sn.Concurrency, Timeout: sn.Timeout.D(), Dir: spec.Dir, Logger: log})
	if err != nil {
		return nil, false, fmt.Errorf("revert.snapshot: %w", err)
	}
	return s, sn.OnFailure != "continue", nil
}

// runContext says where this run runs: a GitHub Actions job, a Nomad
// allocation, or nothing special.
func runContext() map[string]string {
	return nomadContext(github.RunContext(os.Getenv))
}

// nomadContext records the allocation a run executes in.
func nomadContext(ctx map[string]string) map[string]string {
	a, ok := nomad.AllocationFromEnv(os.Getenv)
	if !ok {
		return ctx
	}
	if ctx == nil {
		ctx = map[string]string{}
	}
	ctx["nomad_job"] = a.JobID
	ctx["nomad_parent_job"] = a.ParentJobID
	ctx["nomad_alloc"] = a.AllocID
	ctx["nomad_node"] = a.NodeName
	ctx["nomad_namespace"] = a.Namespace
	return ctx
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

// finish prints the verdict (in colour on a terminal), writes the report,
// prints report.json's document on stdout under --output json, and maps
// the outcome to the exit code.
func finish(c *cobra.Command, o *outputFlag, res *runner.Result, reportDir string) error {
	r := res.Report
	w := o.progress(c)
	verdict := report.Verdict(r)
	head := paint(colourful(w, os.Getenv), r.Outcome, strings.ToUpper(verdict[:1])+verdict[1:])
	fmt.Fprintf(w, "\n%s: %s — %s\n", head, r.Name, report.Summary(r))
	if rb := r.Rollback; rb != nil && r.Outcome == report.OutcomeRolledBack {
		fmt.Fprintf(w, "rollback: %s on %s (verified: %v)\n", rb.Trigger, strings.Join(rb.Hosts, ", "), rb.Verified)
	}
	if reportDir != "" {
		if err := report.WriteReport(reportDir, r); err != nil {
			fmt.Fprintln(os.Stderr, "rollguard:", err)
			return exitWith(exitError)
		}
		fmt.Fprintf(w, "report: %s/report.{json,md,html}\n", strings.TrimSuffix(reportDir, "/"))
	}
	if o.json() {
		if err := writeJSON(c.OutOrStdout(), r); err != nil {
			fmt.Fprintln(os.Stderr, "rollguard:", err)
			return exitWith(exitError)
		}
	}
	if res.ExitCode == exitOK {
		return nil
	}
	return exitWith(res.ExitCode)
}
