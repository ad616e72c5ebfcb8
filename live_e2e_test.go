package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/demo"
	"github.com/rollguard/rollguard/steps"
)

// TestLive runs real rollouts with real Ansible against a simulated fleet
// scraped by a real VictoriaMetrics. The cases share one environment (a
// baseline takes most of a minute to collect) and run in order; the last
// one kills VictoriaMetrics.
func TestLive(t *testing.T) {
	if err := demo.Check(); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("ROLLGUARD_E2E=1 but %v", err)
		}
		t.Skip(err)
	}
	if testing.Short() {
		t.Skip("live end-to-end tests take minutes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	env, err := demo.StartEnv(ctx, demo.EnvOptions{Dir: t.TempDir(), Hosts: 6, Seed: 11, Playbooks: os.DirFS("testdata/playbooks")})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	const baseline = 40 * time.Second
	if err := env.WaitForData(ctx, baseline+15*time.Second, func(s string) { t.Log(s) }); err != nil {
		t.Fatal(err)
	}
	hosts := env.Fleet.Hosts()
	canary := hosts[0].Name
	writes := func() map[string]int {
		m := map[string]int{}
		for _, h := range hosts {
			m[h.Name] = env.Fleet.Writes(h.Name)
		}
		return m
	}
	version := func(name string) string {
		c, _ := env.Fleet.Conf(name)
		return c.Version
	}

	t.Run("good change promotes everywhere", func(t *testing.T) {
		spec, err := env.WriteSpec(demo.SpecOptions{Name: "good", Version: "v2", Baseline: baseline,
			ExtraVars: map[string]string{"latency_factor": "0.95", "cpu_load": "0.3"}})
		if err != nil {
			t.Fatal(err)
		}
		code, r, out := liveRun(t, ctx, spec, nil)
		if code != 0 || r.Outcome != steps.OutcomePromoted {
			t.Fatalf("exit %d, outcome %q (%s)\n%s", code, r.Outcome, r.Reason, out)
		}
		for _, h := range hosts {
			if v := version(h.Name); v != "v2" {
				t.Errorf("%s runs %s after a promoted rollout, want v2", h.Name, v)
			}
		}
		for _, w := range r.Waves {
			if w.Outcome != "passed" {
				t.Errorf("wave %s: %s", w.Name, w.Outcome)
			}
		}
	})

	t.Run("bad change caught on the canary and reverted", func(t *testing.T) {
		before := writes()
		canaryWas := version(canary)
		spec, err := env.WriteSpec(demo.SpecOptions{Name: "bad", Version: "v3", Baseline: baseline,
			ExtraVars: map[string]string{"latency_factor": "2.5", "error_share": "0.03"}})
		if err != nil {
			t.Fatal(err)
		}
		code, r, out := liveRun(t, ctx, spec, nil)
		if code != 3 || r.Outcome != steps.OutcomeRolledBack {
			t.Fatalf("exit %d, outcome %q (%s)\n%s", code, r.Outcome, r.Reason, out)
		}
		after := writes()
		for _, h := range hosts[1:] {
			if after[h.Name] != before[h.Name] {
				t.Errorf("%s's app.conf was written during a rollout the canary stopped", h.Name)
			}
		}
		if v := version(canary); v != canaryWas {
			t.Errorf("canary runs %s after the rollback, want %s restored", v, canaryWas)
		}
		if r.Rollback == nil || !slices.Equal(r.Rollback.Hosts, []string{canary}) || !r.Rollback.Verified {
			t.Fatalf("rollback %+v, want the canary reverted and verified", r.Rollback)
		}
		// Decided within 3 ticks of the change becoming visible: the
		// first tick whose latency is 30% over the canary's baseline.
		var fired time.Time
		for _, d := range r.Decisions {
			if d.Fired {
				fired = d.At
				break
			}
		}
		base := r.Hosts[0].Metrics["latency_p95"].Baseline
		ticks, visible := 0, false
		for _, p := range r.Series[canary]["latency_p95"] {
			if p.T.After(fired) {
				break
			}
			if p.V > 1.3*base {
				visible = true
			}
			if visible {
				ticks++
			}
		}
		if !visible || ticks > 3 {
			t.Errorf("decided %d ticks after the regression became visible (visible: %v), want at most 3\n%s", ticks, visible, out)
		}
	})

	t.Run("a host whose play fails is reverted and named", func(t *testing.T) {
		failing := hosts[2].Name // in wave-1
		failingWas := version(failing)
		spec, err := env.WriteSpec(demo.SpecOptions{Name: "failing-host", Version: "v4", Baseline: baseline,
			ExtraVars: map[string]string{"latency_factor": "1.0", "fail_after_write_on": failing}})
		if err != nil {
			t.Fatal(err)
		}
		_, r, out := liveRun(t, ctx, spec, nil)
		var rep *steps.HostReport
		for i := range r.Hosts {
			if r.Hosts[i].Name == failing {
				rep = &r.Hosts[i]
			}
		}
		if rep == nil || rep.Status != steps.HostFailed || !rep.Reverted {
			t.Fatalf("host %s: %+v, want failed and reverted\n%s", failing, rep, out)
		}
		if v := version(failing); v != failingWas {
			t.Errorf("%s runs %s after its revert, want %s", failing, v, failingWas)
		}
		if !strings.Contains(out, failing) {
			t.Errorf("the output does not name %s", failing)
		}
		for _, h := range hosts {
			if h.Name != failing && r.Outcome == steps.OutcomePromoted && version(h.Name) != "v4" {
				t.Errorf("%s runs %s, want v4", h.Name, version(h.Name))
			}
		}
	})

	t.Run("metrics store dies during monitoring: never promotes", func(t *testing.T) {
		spec, err := env.WriteSpec(demo.SpecOptions{Name: "vm-dies", Version: "v5", Baseline: baseline,
			ExtraVars: map[string]string{"latency_factor": "1.0"}})
		if err != nil {
			t.Fatal(err)
		}
		killed := false
		code, r, out := liveRun(t, ctx, spec, func(line string) {
			if !killed && monitorTick.MatchString(line) {
				killed = true
				env.VM.Stop()
			}
		})
		if !killed {
			t.Fatalf("the run never reached monitoring\n%s", out)
		}
		if code == 0 || r.Outcome == steps.OutcomePromoted {
			t.Fatalf("promoted without metrics: exit %d\n%s", code, out)
		}
		if !strings.Contains(r.Reason, "metrics unavailable") {
			t.Errorf("reason %q does not say the metrics were unavailable", r.Reason)
		}
		for _, h := range hosts[1:] {
			if version(h.Name) == "v5" {
				t.Errorf("%s received v5 although the canary was never judged", h.Name)
			}
		}
	})
}

// monitorTick matches the timeline line of a canary tick in monitoring.
var monitorTick = regexp.MustCompile(`^\d\d:\d\d:\d\d canary\s+monitor `)

// liveRun runs `rollguard run` on spec, calling onLine for each output
// line as it comes, and returns the exit code, the report and the output.
func liveRun(t *testing.T, ctx context.Context, spec string, onLine func(string)) (int, steps.Report, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "report")
	cmd := exec.CommandContext(ctx, binary, "run", "-f", spec, "--report-dir", dir)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if onLine != nil {
			onLine(sc.Text())
		}
	}
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("rollguard run: %v\n%s", err, out.String())
	}
	return code, readReport(t, dir), out.String()
}
