package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rollguard/rollguard/report"
)

// Options configure the demo.
type Options struct {
	// Binary is the rollguard executable that runs the rollouts (the demo
	// drives the same command line a user would).
	Binary string
	// Dir is the working directory (default: a new temporary directory,
	// kept so that the reports can be read afterwards).
	Dir string
	// Hosts is the fleet size (default 6).
	Hosts     int
	Playbooks fs.FS
	// Out receives the progress a newcomer reads.
	Out io.Writer
}

// RolloutResult is what one rollout of the demo ended with.
type RolloutResult struct {
	Name      string
	ExitCode  int
	Report    *report.Report
	ReportDir string
	// Written lists the hosts whose app.conf was written during the rollout.
	Written []string
}

// Summary is the demo's result.
type Summary struct {
	Dir       string
	Good, Bad RolloutResult
	// OK is true when the good change promoted through every wave and the
	// bad one was caught on the canary, reverted, and touched no other host.
	OK      bool
	Problem string
}

// Run starts the environment, rolls out a good change (it must promote
// through the canary and two waves) and a bad one (the canary must catch
// it and revert it before any other host is touched), and stops
// everything, also when ctx is cancelled (Ctrl-C).
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if err := Check(); err != nil {
		fmt.Fprintf(o.Out, "demo: %v\n", err)
		if err := Install(ctx, o.Out); err != nil {
			return nil, err
		}
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "rollguard-demo-")
		if err != nil {
			return nil, err
		}
		o.Dir = d
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, "demo: "+format+"\n", args...) }
	say("working in %s", o.Dir)
	env, err := StartEnv(ctx, EnvOptions{Dir: o.Dir, Hosts: o.Hosts, Seed: 7, Playbooks: o.Playbooks})
	if err != nil {
		return nil, err
	}
	defer env.Close()
	say("simulated fleet of %d hosts up; VictoriaMetrics at %s scrapes them every second", len(env.Fleet.Hosts()), env.VM.URL())

	const baseline = 60 * time.Second
	if err := env.WaitForData(ctx, baseline+15*time.Second, func(s string) { say("%s", s) }); err != nil {
		return nil, fmt.Errorf("waiting for metrics: %w", err)
	}
	sum := &Summary{Dir: o.Dir}

	goodSpec, err := env.WriteSpec(SpecOptions{Name: "good-change", Version: "v2", Baseline: baseline,
		ExtraVars: map[string]string{"latency_factor": "0.9", "error_share": "0.004", "cpu_load": "0.28"}})
	if err != nil {
		return nil, err
	}
	say("rollout 1: a good change (v2: latency x0.9) — expect it to promote through the canary and two waves")
	sum.Good, err = runRollout(ctx, o, env, "good-change", goodSpec)
	if err != nil {
		return nil, err
	}

	badSpec, err := env.WriteSpec(SpecOptions{Name: "bad-change", Version: "v3", Baseline: baseline,
		ExtraVars: map[string]string{"latency_factor": "2.2", "error_share": "0.03", "cpu_load": "0.45"}})
	if err != nil {
		return nil, err
	}
	say("rollout 2: a bad change (v3: latency x2.2, 3%% errors) — expect the canary to catch it and revert it")
	sum.Bad, err = runRollout(ctx, o, env, "bad-change", badSpec)
	if err != nil {
		return nil, err
	}
	sum.judge(env)
	return sum, nil
}

// judge checks both outcomes as a user would.
func (s *Summary) judge(env *Env) {
	var problems []string
	if s.Good.ExitCode != 0 || s.Good.Report.Outcome != report.OutcomePromoted {
		problems = append(problems, fmt.Sprintf("the good change ended %q (exit %d), not promoted", s.Good.Report.Outcome, s.Good.ExitCode))
	}
	if s.Bad.ExitCode != 3 || s.Bad.Report.Outcome != report.OutcomeRolledBack {
		problems = append(problems, fmt.Sprintf("the bad change ended %q (exit %d), not rolled back", s.Bad.Report.Outcome, s.Bad.ExitCode))
	}
	canary := env.Fleet.Hosts()[0].Name
	for _, h := range s.Bad.Written {
		if h != canary {
			problems = append(problems, fmt.Sprintf("the bad change reached %s", h))
		}
	}
	if conf, ok := env.Fleet.Conf(canary); ok && conf.Version != "v2" {
		problems = append(problems, fmt.Sprintf("the canary %s runs %s after the rollback, not v2", canary, conf.Version))
	}
	s.OK = len(problems) == 0
	s.Problem = strings.Join(problems, "; ")
}

// runRollout runs `rollguard run` on spec, streaming its output.
func runRollout(ctx context.Context, o Options, env *Env, name, spec string) (RolloutResult, error) {
	res := RolloutResult{Name: name, ReportDir: filepath.Join(o.Dir, "reports", name)}
	before := map[string]int{}
	for _, h := range env.Fleet.Hosts() {
		before[h.Name] = env.Fleet.Writes(h.Name)
	}
	cmd := exec.CommandContext(ctx, o.Binary, "run", "-f", spec, "--report-dir", res.ReportDir)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 2 * time.Minute
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		fmt.Fprintf(o.Out, "  %s │ %s\n", name, sc.Text())
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case err != nil:
		return res, fmt.Errorf("rollguard run %s: %w", name, err)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	data, err := os.ReadFile(filepath.Join(res.ReportDir, "report.json"))
	if err != nil {
		return res, fmt.Errorf("rollout %s wrote no report (exit %d): %w", name, res.ExitCode, err)
	}
	res.Report = &report.Report{}
	if err := json.Unmarshal(data, res.Report); err != nil {
		return res, fmt.Errorf("report of %s: %w", name, err)
	}
	for _, h := range env.Fleet.Hosts() {
		if env.Fleet.Writes(h.Name) != before[h.Name] {
			res.Written = append(res.Written, h.Name)
		}
	}
	return res, nil
}
