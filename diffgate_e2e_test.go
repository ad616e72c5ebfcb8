package main

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/demo"
	"github.com/rollguard/rollguard/report"
)

// TestLiveDiffGate runs the pre-flight diff gate with real Ansible on the
// simulated fleet: plan --diff shows per host what the change would
// write; a run whose check would change a forbidden file stops at the
// gate with exit 4, naming the host, the task and the file, and no host
// is changed (every app.conf byte for byte, no write, no app.conf.prev).
// The gate stops before the first baseline, so no metrics are needed.
func TestLiveDiffGate(t *testing.T) {
	requireLive(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	env, err := demo.StartEnv(ctx, demo.EnvOptions{Dir: t.TempDir(), Hosts: 3, Seed: 3, Playbooks: os.DirFS("testdata/playbooks")})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	l := &live{t: t, ctx: ctx, env: env}
	dirs := map[string]string{}
	for _, h := range env.Fleet.Hosts() {
		l.hosts = append(l.hosts, h.Name)
		dirs[h.Name] = h.Dir
	}
	canary := l.hosts[0]
	confs, writes := l.confs(), l.writes()
	unchanged := func(t *testing.T) {
		t.Helper()
		if got := l.confs(); !maps.Equal(got, confs) {
			t.Errorf("app.conf changed:\n%v\nwant\n%v", got, confs)
		}
		if got := l.writes(); !maps.Equal(got, writes) {
			t.Errorf("writes %v, want %v", got, writes)
		}
		for h, dir := range dirs {
			if _, err := os.Stat(filepath.Join(dir, "app.conf.prev")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s has an app.conf.prev (%v)", h, err)
			}
		}
	}
	spec := func(name, preflight string) string {
		return l.spec(demo.SpecOptions{Name: name, Version: "v2", ExtraVars: map[string]string{"latency_factor": "1.4"}, Extra: preflight})
	}

	t.Run("plan --diff shows every host's would-be changes and writes nothing", func(t *testing.T) {
		l.t = t
		file := spec("diff-all", "preflight:\n  check: all\n  expect_changes: [app.conf]\n  max_changed_tasks: 2\n")
		code, out, errOut := rollguard(t, "plan", "-f", file, "--diff")
		if code != 0 {
			t.Fatalf("plan --diff: exit %d\n%s%s", code, out, errOut)
		}
		for _, h := range l.hosts {
			for _, want := range []string{"  " + h + "  changed: 2 tasks would change 2 files, +3 -3 lines",
				"    - Write app.conf: " + filepath.Join(dirs[h], "app.conf") + " (+3 -3)"} {
				if !strings.Contains(out, want) {
					t.Errorf("plan --diff output lacks %q:\n%s", want, out)
				}
			}
		}
		code, out, errOut = rollguard(t, "plan", "-f", file, "--diff", "--json")
		var p struct {
			Check *report.Preflight `json:"check"`
		}
		if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil || p.Check == nil {
			t.Fatalf("plan --diff --json: exit %d, %v\n%s%s", code, err, out, errOut)
		}
		if p.Check.Outcome != report.CheckPassed || p.Check.Scope != "all" || len(p.Check.Hosts) != len(l.hosts) {
			t.Errorf("check %+v, want passed over all %d hosts", p.Check, len(l.hosts))
		}
		unchanged(t)
	})

	t.Run("a forbidden file stops the run at the gate: exit 4, host, task and file named, nothing changed", func(t *testing.T) {
		l.t = t
		file := spec("diff-forbid", "preflight:\n  check: true\n  forbid_changes: [app.conf]\n")
		code, r, out := l.run(file, nil)
		conf := filepath.Join(dirs[canary], "app.conf")
		want := canary + `: task "Write app.conf" would change ` + conf + `, which preflight.forbid_changes forbids ("app.conf")`
		if code != 4 || r.Outcome != report.OutcomeHalted || !strings.Contains(r.Reason, want) {
			t.Fatalf("exit %d, outcome %q, reason %q: want 4, halted, naming %q\n%s", code, r.Outcome, r.Reason, want, out)
		}
		if !strings.Contains(out, "Halted: diff-forbid — the pre-flight check stopped the rollout before any change on "+want) {
			t.Errorf("the output does not end with the gate's reason:\n%s", out)
		}
		if pf := r.Preflight; pf == nil || pf.Outcome != report.CheckStopped || pf.Scope != "canary" || len(pf.Hosts) != 1 || pf.Hosts[0].Name != canary {
			t.Errorf("report.json preflight %+v, want the canary's check, stopped", pf)
		}
		for _, w := range r.Waves {
			if w.Outcome != report.WaveNotStarted {
				t.Errorf("wave %s: %s, want not_started", w.Name, w.Outcome)
			}
		}
		for _, h := range r.Hosts {
			if h.Applied {
				t.Errorf("%s applied", h.Name)
			}
		}
		unchanged(t)

		// plan --diff says the same, with exit 4.
		code, stdout, stderr := rollguard(t, "plan", "-f", file, "--diff")
		if code != 4 || !strings.Contains(stdout, want) {
			t.Errorf("plan --diff: exit %d, want 4 and %q\n%s%s", code, want, stdout, stderr)
		}
		unchanged(t)
	})

	t.Run("a host whose check fails is named; plan --diff exits 4", func(t *testing.T) {
		l.t = t
		file := l.spec(demo.SpecOptions{Name: "diff-fail", Version: "v2", ExtraVars: map[string]string{"fail_on": l.hosts[1]}, Extra: "preflight:\n  check: all\n"})
		code, out, errOut := rollguard(t, "plan", "-f", file, "--diff")
		want := l.hosts[1] + `: the check was failed (task "Fail where fail_on asks": fail_on asked ` + l.hosts[1] + ` to fail)`
		if code != 4 || !strings.Contains(out, want) {
			t.Errorf("plan --diff: exit %d, want 4 and %q\n%s%s", code, want, out, errOut)
		}
		unchanged(t)
	})
}

// A dry run judges a recorded check (--check-result) against the spec's
// preflight limits before the canary, and the report shows it: a check
// that changes only what expect_changes names passes and the replay goes
// on; one that would change secrets.yml halts with exit 4 naming the
// host, task and file. Without --check-result the check is not replayed.
func TestDryRunDiffGate(t *testing.T) {
	args := []string{"dry-run", "-f", "testdata/dryrun/diffgate.yaml", "--metrics", "testdata/recordings/good.jsonl", "--change-at", "2024-01-01T12:00:00Z"}
	f := func(check string, wantCode int, wantOutcome, wantReason string) report.Report {
		t.Helper()
		dir := t.TempDir()
		a := append(slices.Clone(args), "--report-dir", dir)
		if check != "" {
			a = append(a, "--check-result", check)
		}
		code, out, errOut := rollguard(t, a...)
		r := readReport(t, dir)
		if code != wantCode {
			t.Fatalf("--check-result %q: exit %d, want %d\n%s%s", check, code, wantCode, out, errOut)
		}
		if r.Preflight == nil && wantOutcome != "" || r.Preflight != nil && (r.Preflight.Outcome != wantOutcome || !r.Preflight.Recorded || !strings.Contains(r.Preflight.Reason, wantReason)) {
			t.Errorf("--check-result %q: preflight %+v, want %s with %q", check, r.Preflight, wantOutcome, wantReason)
		}
		md, err := os.ReadFile(filepath.Join(dir, "report.md"))
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(md), "## Pre-flight check"); has != (wantOutcome != "") {
			t.Errorf("--check-result %q: report.md has the pre-flight section: %v\n%s", check, has, md)
		}
		return r
	}
	f("testdata/dryrun/check-ok.json", 0, report.CheckPassed, "the check of 1 host passed: 1 would change (2 tasks, 2 files, +3 -3 lines)")
	r := f("testdata/dryrun/check-forbidden.json", 4, report.CheckStopped,
		`web-1: task "Render credentials" would change /srv/app/secrets.yml, which preflight.forbid_changes forbids ("secrets.yml")`)
	if r.Outcome != report.OutcomeHalted || !strings.HasPrefix(r.Reason, "the pre-flight check stopped the rollout before any change on web-1") {
		t.Errorf("outcome %q (%s), want halted by the gate", r.Outcome, r.Reason)
	}
	f("", 0, "", "")
	code, _, errOut := rollguard(t, append(slices.Clone(args), "--check-result", "testdata/dryrun/diffgate.yaml")...)
	if code != 2 || !strings.Contains(errOut, "check result testdata/dryrun/diffgate.yaml") {
		t.Errorf("a check result that is not JSON: exit %d, want 2\n%s", code, errOut)
	}
}
