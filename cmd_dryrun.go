package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/integrations/victoriametrics"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
	"github.com/rollguard/rollguard/runner"
)

func newDryRunCmd() *cobra.Command {
	var file, metrics, changeAt, reportDir, checkResult, runReport string
	var quiet bool
	var o outputFlag
	c := &cobra.Command{
		Use:   "dry-run -f rollout.yaml --metrics rec.jsonl (--change-at T | --run-report report.json) [--report-dir D]",
		Short: "Replay recorded metrics through the waves, detectors and policies (0 would promote, 3 would roll back)",
		Long: `dry-run says what a real rollout would have done, from recorded metrics and
with nothing installed: no Ansible, no metrics server, no host touched.

The recording is VictoriaMetrics' export format (/api/v1/export, one series a
line, plain or gzip), with __name__ set to the query's name in the spec and the
host in metrics.host_label; 'rollguard run --record' writes exactly this. A
poll reads a series' latest sample, as a live query does: a series recorded
less often than metrics.interval (an export at a 1-minute scrape interval,
polled every 15s) repeats its last sample between two samples, and dry-run
warns that each sample is then judged as several polls.

The hosts are targets.static; with discovered targets (inventory, Consul,
Nomad) a dry run asks nothing and takes the hosts the recording has, in name
order. The canary's apply starts at --change-at and takes no time; each later
wave starts when the previous wave's monitoring period ends (--run-report
replays a live run's timeline instead); each wave's baseline is the
recording's metrics.baseline window right before it. Time is simulated, so
hours replay in milliseconds. It prints a timeline (tick, wave, degraded
hosts, each policy's outcome and reason) and writes report.json, report.md
and report.html into --report-dir when given. --change-at must fall within the recording, after
its first sample (exit 2 names the recording's time range otherwise); a
recording that starts less than metrics.baseline before it, or ends before
the plan's stages do, is replayed with what it holds, with a warning.

--output json prints report.json's document on stdout, and the timeline and
the verdict on stderr.

--run-report replays a live run's timeline, from its report.json, in place of
--change-at: each wave starts when the run's did and its apply ends when the
run's did (the waves' apply_started_at and apply_ended_at), so the run's
--record file replays as the run saw it. Without it a dry run's applies take
no time: a stage's monitoring period starts where the apply started, and with
an apply that took several polls (a playbook over many hosts) the replay
judges polls from before the change showed and stops before the last ones the
run judged.

--check-result judges a recorded pre-flight check (the "check" of
'rollguard plan --diff --json', or report.json's "preflight") against the
spec's preflight limits before the canary, as a run does with the check
it runs: a check that breaks a limit makes the dry run halt (exit 4).

Exit codes: 0 would promote, 3 would roll back, 4 would halt, 1 a canary
host without a baseline in the recording (nothing judged), 2 bad input.`,
		Example: `  rollguard dry-run -f rollout.yaml --metrics export.jsonl.gz --change-at 2024-01-01T12:00:00Z --report-dir out/
  rollguard dry-run -f rollout.yaml --metrics rec.jsonl --change-at 1704110400 -q
  rollguard dry-run -f rollout.yaml --metrics rec.jsonl --change-at 2024-01-01T12:00:00Z -o json | jq -r .outcome
  rollguard run -f rollout.yaml --record rec.jsonl.gz --report-dir run/
  rollguard dry-run -f rollout-new-policies.yaml --metrics rec.jsonl.gz --run-report run/report.json`,
		Args: cobra.NoArgs,
		RunE: o.runE(func(c *cobra.Command) error {
			var timing runner.Timing
			var at time.Time
			var err error
			if runReport != "" {
				if changeAt != "" {
					return badInput(fmt.Errorf("--change-at and --run-report both say when the first apply started: give one"))
				}
				if timing, err = runner.ReadTiming(runReport); err != nil {
					return badInput(err)
				}
				at = timing.Earliest()
			} else if at, err = parseChangeAt(changeAt); err != nil {
				return badInput(err)
			}
			if metrics == "" {
				return badInput(fmt.Errorf("--metrics is required: a recording in VictoriaMetrics' export format"))
			}
			spec, pols, err := loadSpec(file)
			if err != nil {
				return err
			}
			warnSpec(c.ErrOrStderr(), spec)
			rec, err := victoriametrics.OpenRecording(metrics)
			if err != nil {
				return badInput(err)
			}
			rec.HostLabel = spec.Metrics.HostLabel
			what := "--change-at"
			if runReport != "" {
				what = "--run-report's first apply_started_at"
			}
			if err := changeWithin(at, what, metrics, rec); err != nil {
				return badInput(err)
			}
			if w := shortRecording(spec, rec, at); w != "" {
				fmt.Fprintln(c.ErrOrStderr(), w)
			}
			for _, w := range coarseRecording(spec, rec) {
				fmt.Fprintln(c.ErrOrStderr(), w)
			}
			// A recorded sample stands for two intervals (two of its own
			// when it was recorded less often), as a live query would see
			// it; after that the host has no data.
			replay, err := victoriametrics.NewReplay(rec, victoriametrics.ReplayOptions{Lookback: 2 * spec.Metrics.Interval.D()})
			if err != nil {
				return badInput(err)
			}
			hosts, err := dryRunHosts(spec, rec)
			if err != nil {
				return badInput(err)
			}
			plan, err := runner.MakePlan(spec, hosts)
			if err != nil {
				return badInput(err)
			}
			if err := timing.Check(plan); err != nil {
				return badInput(fmt.Errorf("--run-report %s: %w", runReport, err))
			}
			if w := recordingEndsEarly(plan, rec, at); w != "" {
				fmt.Fprintln(c.ErrOrStderr(), w)
			}
			var check *report.Preflight
			if checkResult != "" {
				if check, err = runner.ReadCheckResult(checkResult); err != nil {
					return badInput(err)
				}
			}
			out := io.Writer(newProgress(o.progress(c)))
			if quiet {
				out = nil
			}
			ro, err := newRollout(spec, pols, plan, rolloutOptions{
				metrics: replay, clock: runner.NewSimClock(at.UTC()), out: out, warn: c.ErrOrStderr(),
				log: slog.New(slog.DiscardHandler), runID: newRunID(true),
			})
			if err != nil {
				return err
			}
			ro.CheckResult, ro.Timing = check, timing
			res, err := ro.Execute(context.WithoutCancel(c.Context()))
			if err != nil {
				return badInput(err)
			}
			return finish(c, &o, res, reportDir)
		}),
	}
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().StringVar(&metrics, "metrics", "", "recorded metrics (VictoriaMetrics export format, .jsonl or .jsonl.gz)")
	c.Flags().StringVar(&changeAt, "change-at", "", "when the first apply started: RFC 3339 or unix seconds")
	c.Flags().StringVar(&reportDir, "report-dir", "", "write report.json, report.md, report.html here")
	c.Flags().StringVar(&runReport, "run-report", "", "a live run's report.json: replay its timeline (each wave's start and apply end) in place of --change-at")
	c.Flags().StringVar(&checkResult, "check-result", "", "a recorded pre-flight check result (JSON) to judge before the canary")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the verdict, not the timeline")
	o.add(c)
	return c
}

// changeWithin refuses a change time the recording cannot replay: before
// or at its first sample (no baseline) or after its last.
func changeWithin(at time.Time, what, path string, rec *victoriametrics.Recording) error {
	first, last := rec.Span()
	if first.IsZero() {
		return fmt.Errorf("recording %s has no samples", path)
	}
	if !at.After(first) || at.After(last) {
		return fmt.Errorf("%s %s is outside the recording, which runs from %s to %s: the first apply must start after its first sample and by its last",
			what, at.UTC().Format(time.RFC3339), first.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339))
	}
	return nil
}

// shortRecording warns when the recording starts less than
// metrics.baseline before the change: the first stage's baseline then
// holds only what the recording has, and a short baseline rolls back good
// changes more often ("" when it holds the whole baseline).
func shortRecording(spec *runner.Spec, rec *victoriametrics.Recording, at time.Time) string {
	first, _ := rec.Span()
	base, iv := spec.Metrics.Baseline.D(), spec.Metrics.Interval.D()
	held := at.Sub(first)
	if held >= base || iv <= 0 {
		return ""
	}
	return fmt.Sprintf("rollguard: warning: the recording starts %s before --change-at and metrics.baseline is %s: the first stage's baseline holds %d poll(s) at %s, not %d",
		runner.FormatDuration(held), runner.FormatDuration(base), int((held+iv-1)/iv), runner.FormatDuration(iv), int(base/iv))
}

// recordingEndsEarly warns when the recording ends before the plan's
// stages do (each stage's monitoring period, then the bake, from
// --change-at): the polls past its end have no data, and on_no_data
// decides the verdict there ("" when the recording holds the plan).
func recordingEndsEarly(plan *runner.Plan, rec *victoriametrics.Recording, at time.Time) string {
	need := plan.Bake
	for _, w := range plan.Waves {
		need += w.Monitor
	}
	_, last := rec.Span()
	if held := last.Sub(at); held < need {
		return fmt.Sprintf("rollguard: warning: the recording ends %s after --change-at, and the rollout's %d stage(s) run %s: the polls past its end have no data, and on_no_data decides the verdict there",
			runner.FormatDuration(held), len(plan.Waves), runner.FormatDuration(need))
	}
	return ""
}

// coarseRecording warns when the recording holds a query's samples less
// often than metrics.interval polls, one warning per resolution: each
// poll between two samples then reads the last one again, as a live
// query would, so one sample is judged as several polls in a row (no
// warning for a query the recording lacks or holds at the interval).
func coarseRecording(spec *runner.Spec, rec *victoriametrics.Recording) []string {
	iv := spec.Metrics.Interval.D()
	if iv <= 0 {
		return nil
	}
	var order []time.Duration
	names := map[time.Duration][]string{}
	for _, q := range spec.Metrics.Queries {
		r := rec.Resolution(q.Name)
		if 2*r < 3*iv {
			continue
		}
		if names[r] == nil {
			order = append(order, r)
		}
		names[r] = append(names[r], q.Name)
	}
	var out []string
	for _, r := range order {
		out = append(out, fmt.Sprintf("rollguard: warning: the recording has a sample of %s every %s, and metrics.interval is %s: a poll between two samples reads the last one again, as a live query does, so each sample is judged as about %d polls in a row; metrics.interval: %s judges each once",
			strings.Join(names[r], ", "), runner.FormatDuration(r), runner.FormatDuration(iv), int(math.Round(float64(r)/float64(iv))), runner.FormatDuration(r)))
	}
	return out
}

// parseChangeAt accepts RFC 3339 or unix seconds.
func parseChangeAt(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("--change-at is required: the moment the (first) apply started, RFC 3339 (2024-01-01T12:00:00Z) or unix seconds (or --run-report: a live run's report.json, whose timeline is replayed)")
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.Abs(f) >= 1e11 { // past the year 5000: milliseconds, most likely
			return time.Time{}, fmt.Errorf("--change-at %s as unix seconds is in the year %d: give seconds (%.0f), not milliseconds", s, time.Unix(int64(f), 0).UTC().Year(), f/1000)
		}
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("--change-at %q: want RFC 3339 (2024-01-01T12:00:00Z) or unix seconds (1704110400)", s)
}

// dryRunHosts takes the static targets; for discovered targets (Consul,
// Nomad, inventory) a dry run cannot ask the cluster, so the hosts are the
// ones the recording has, in name order.
func dryRunHosts(spec *runner.Spec, rec *victoriametrics.Recording) ([]ports.Host, error) {
	if len(spec.Targets.Static) > 0 {
		return runner.StaticHosts(spec), nil
	}
	names := rec.Hosts()
	if len(names) == 0 {
		return nil, fmt.Errorf("the recording has no series with the label %q, and the spec's targets are not a static list", spec.Metrics.HostLabel)
	}
	hosts := make([]ports.Host, len(names))
	for i, n := range names {
		hosts[i] = ports.Host{Name: n, Address: n}
	}
	return hosts, nil
}
