package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollguard/rollguard/demo"
	"github.com/rollguard/rollguard/integrations/localstate"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
	"github.com/rollguard/rollguard/runner"
)

// live is the shared environment of the live end-to-end tests: a
// simulated fleet scraped by a real VictoriaMetrics, changed by real
// Ansible through the rollguard binary.
type live struct {
	t     *testing.T
	ctx   context.Context
	env   *demo.Env
	hosts []string
	// extraEnv is added to rollguard's environment (CONSUL_HTTP_ADDR, ...).
	extraEnv []string
	// signal is what run's kill callback sends (default SIGKILL).
	signal os.Signal
	// want is every host's app.conf as the last subtest that passed left
	// it: where the next one starts from.
	want map[string]string
	// records are the --record files of the current subtest's runs, with
	// each run's report directory.
	records []liveRecord
}

// sub runs one subtest from a known fleet state: every host's app.conf
// as the last passing subtest left it (a failed one may have left a host
// on another version), the metrics settled on it, waited for on
// VictoriaMetrics' data. A subtest that fails keeps the recordings of
// its runs (--record) and says where, so that a detector judgement can
// be replayed with dry-run.
func (l *live) sub(t *testing.T, name string, f func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		parent := l.t
		l.t, l.records = t, nil
		defer func() { l.t = parent }()
		for h, conf := range l.want {
			p := filepath.Join(l.env.Dir, "fleet", h, "app.conf")
			if cur, err := os.ReadFile(p); err != nil || string(cur) != conf {
				t.Logf("%s is not where the last passing subtest left it: restoring its app.conf", h)
				if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := l.env.Settle(l.ctx); err != nil {
			t.Fatal(err)
		}
		f(t)
		if !t.Failed() {
			l.want = l.confs()
			return
		}
		keep := filepath.Join(os.TempDir(), "rollguard-live-recordings")
		for i, rec := range l.records {
			data, err := os.ReadFile(rec.metrics)
			if err != nil {
				continue
			}
			base := filepath.Join(keep, fmt.Sprintf("%s-%d", regexp.MustCompile(`\W+`).ReplaceAllString(t.Name(), "_"), i+1))
			dst := base + ".jsonl.gz"
			if os.MkdirAll(keep, 0o755) != nil || os.WriteFile(dst, data, 0o644) != nil {
				continue
			}
			replay := "--change-at <the wave's apply_started_at>"
			if doc, err := os.ReadFile(filepath.Join(rec.reportDir, "report.json")); err == nil && os.WriteFile(base+".report.json", doc, 0o644) == nil {
				replay = "--run-report " + base + ".report.json"
			}
			t.Logf("the metrics of run %d are kept in %s (replay: rollguard dry-run -f <spec> --metrics %s %s)", i+1, dst, dst, replay)
		}
	})
}

// liveRecord is one run's --record file and its --report-dir.
type liveRecord struct{ metrics, reportDir string }

const liveBaseline = 60 * time.Second

// spec writes a spec with the live tests' timing: 1 s ticks, a 12 s canary
// and 6 s waves.
func (l *live) spec(o demo.SpecOptions) string {
	l.t.Helper()
	o.Interval, o.Baseline, o.Monitor, o.WaveMonitor = time.Second, liveBaseline, 12*time.Second, 6*time.Second
	path, err := l.env.WriteSpec(o)
	if err != nil {
		l.t.Fatal(err)
	}
	return path
}

// conf is a host's app.conf, byte for byte.
func (l *live) conf(host string) string {
	for _, h := range l.env.Fleet.Hosts() {
		if h.Name == host {
			data, err := os.ReadFile(filepath.Join(h.Dir, "app.conf"))
			if err != nil {
				l.t.Fatal(err)
			}
			return string(data)
		}
	}
	l.t.Fatalf("no host %s", host)
	return ""
}

func (l *live) confs() map[string]string {
	m := map[string]string{}
	for _, h := range l.hosts {
		m[h] = l.conf(h)
	}
	return m
}

func (l *live) version(host string) string {
	c, _ := l.env.Fleet.Conf(host)
	return c.Version
}

func (l *live) writes() map[string]int {
	m := map[string]int{}
	for _, h := range l.hosts {
		m[h] = l.env.Fleet.Writes(h)
	}
	return m
}

// journal reads a rollout's journal from its local state directory.
func (l *live) journal(name string) runner.JournalDoc {
	l.t.Helper()
	store, err := localstate.New(filepath.Join(l.env.Dir, "state", name))
	if err != nil {
		l.t.Fatal(err)
	}
	data, _, err := store.Get(l.ctx, "journal.json")
	if err != nil || data == nil {
		l.t.Fatalf("journal of %s: %v", name, err)
	}
	var doc runner.JournalDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		l.t.Fatal(err)
	}
	return doc
}

// requireLive skips a live test when Ansible or VictoriaMetrics is
// missing (fails under ROLLGUARD_E2E=1, which asks for every end-to-end
// test to run) or under -short.
func requireLive(t *testing.T) {
	t.Helper()
	if err := demo.Check(); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("ROLLGUARD_E2E=1 but %v", err)
		}
		t.Skip(err)
	}
	if testing.Short() {
		t.Skip("live end-to-end tests take minutes")
	}
}

// startLive starts a live environment of its own for test t: 6 simulated
// hosts scraped by a real VictoriaMetrics, with a baseline's worth of
// data. The cases of one environment share it (a baseline takes a minute
// to collect) and run in order, each starting from the configs the
// previous one left.
func startLive(t *testing.T) *live {
	t.Helper()
	ctx, cancel := testContext(t)
	t.Cleanup(cancel)
	env, err := demo.StartEnv(ctx, demo.EnvOptions{Dir: t.TempDir(), Hosts: 6, Seed: 11, Playbooks: os.DirFS("testdata/playbooks")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	if err := env.WaitForData(ctx, liveBaseline+15*time.Second, func(s string) { t.Log(s) }); err != nil {
		t.Fatal(err)
	}
	l := &live{t: t, ctx: ctx, env: env}
	for _, h := range env.Fleet.Hosts() {
		l.hosts = append(l.hosts, h.Name)
	}
	l.want = l.confs()
	return l
}

// TestLive runs real rollouts with real Ansible against a simulated fleet
// scraped by a real VictoriaMetrics: a good change, a bad one, reverts
// and their fallbacks, host-level decisions, the lock.
func TestLive(t *testing.T) {
	requireLive(t)
	// Side by side with TestLiveResume and TestChaos, each with a fleet
	// and a VictoriaMetrics of its own: they spend most of their time
	// waiting on ticks, so together they take about the longest one's
	// time, not the sum (make test runs go test with -parallel 3).
	t.Parallel()
	l := startLive(t)
	canary, env, ctx := l.hosts[0], l.env, l.ctx

	l.sub(t, "good change promotes everywhere", func(t *testing.T) {
		// apply.version is left unset: rollguard names the version.
		spec := l.spec(demo.SpecOptions{Name: "fleet", KnownGood: true,
			ExtraVars: map[string]string{"version": "v2", "latency_factor": "0.95", "cpu_load": "0.3"}})
		code, r, out := l.run(spec, nil)
		if code != 0 || r.Outcome != report.OutcomePromoted {
			t.Fatalf("exit %d, outcome %q (%s)\n%s", code, r.Outcome, r.Reason, out)
		}
		for _, h := range l.hosts {
			if v := l.version(h); v != "v2" {
				t.Errorf("%s runs %s after a promoted rollout, want v2", h, v)
			}
		}
		for _, w := range r.Waves {
			if w.Outcome != "passed" {
				t.Errorf("wave %s: %s", w.Name, w.Outcome)
			}
		}
		// Every host's v2 is now known-good in the history, under the
		// version rollguard computed, which the journal names too.
		code, hist, _ := rollguard(t, "history", "-f", spec, "--json")
		if code != 0 || strings.Count(hist, `"outcome": "known_good"`) != len(l.hosts) ||
			strings.Count(hist, `"version": "`+r.Version+`"`) != len(l.hosts) || !strings.HasPrefix(r.Version, "h-") {
			t.Errorf("history (exit %d) does not mark version %q known-good on every host:\n%s", code, r.Version, hist)
		}
		if doc := l.journal("fleet"); doc.Version != r.Version {
			t.Errorf("journal version %q, report version %q", doc.Version, r.Version)
		}
	})

	l.sub(t, "bad change caught on the canary and reverted", func(t *testing.T) {
		before, confs := l.writes(), l.confs()
		spec := l.spec(demo.SpecOptions{Name: "fleet", Version: "v3",
			ExtraVars: map[string]string{"latency_factor": "2.5", "error_share": "0.03"}})
		record := filepath.Join(t.TempDir(), "bad.jsonl.gz")
		push := env.VM.URL() + "/api/v1/import/prometheus"
		code, r, out := l.run(spec, nil, "--record", record, "--push-metrics", push, "-o", "json")
		if code != 3 || r.Outcome != report.OutcomeRolledBack {
			t.Fatalf("exit %d, outcome %q (%s)\n%s", code, r.Outcome, r.Reason, out)
		}
		if strings.Contains(out, push) {
			t.Errorf("the push URL appears in the output")
		}
		l.selfMetrics(r)
		l.attributed(r, canary)
		// What the run saw, replayed by a dry run on the run's timeline
		// (its apply took seconds, several polls on a busy machine),
		// reaches the same verdict.
		doc, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		runReport := filepath.Join(t.TempDir(), "report.json")
		if err := os.WriteFile(runReport, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		if dcode, dout, derr := rollguard(t, "dry-run", "-f", spec, "--metrics", record, "--run-report", runReport); dcode != 3 {
			t.Errorf("dry run of the recording on the run's timeline (apply %s to %v): exit %d, want 3 like the live run\n%s%s",
				r.Waves[0].ApplyStartedAt, r.Waves[0].ApplyEndedAt, dcode, dout, derr)
		}
		after := l.writes()
		for _, h := range l.hosts[1:] {
			if after[h] != before[h] {
				t.Errorf("%s's app.conf was written during a rollout the canary stopped", h)
			}
		}
		if got := l.conf(canary); got != confs[canary] {
			t.Errorf("canary's app.conf after the rollback:\n%s\nwant the previous one:\n%s", got, confs[canary])
		}
		if r.Rollback == nil || !slices.Equal(r.Rollback.Hosts, []string{canary}) || !r.Rollback.Verified {
			t.Fatalf("rollback %+v, want the canary reverted and verified", r.Rollback)
		}
		// Decided within 3 ticks of the change becoming visible: the
		// first tick whose latency is 30% over the canary's baseline or
		// whose error rate is 1 point over it. A decision before either
		// crossed is within 0 ticks.
		var fired time.Time
		for _, d := range r.Decisions {
			if d.Fired {
				fired = d.At
				break
			}
		}
		if fired.IsZero() {
			t.Fatalf("no decision fired\n%s", out)
		}
		crossed := func(metric string, over func(v, base float64) bool) time.Time {
			base := r.Hosts[0].Metrics[metric].Baseline
			for _, p := range r.Series[canary][metric] {
				if !p.T.After(fired) && over(p.V, base) {
					return p.T
				}
			}
			return time.Time{}
		}
		visible := crossed("latency_p95", func(v, b float64) bool { return v > 1.3*b })
		if e := crossed("error_rate", func(v, b float64) bool { return v > b+0.01 }); !e.IsZero() && (visible.IsZero() || e.Before(visible)) {
			visible = e
		}
		ticks := 0
		for _, p := range r.Series[canary]["latency_p95"] {
			if !visible.IsZero() && !p.T.Before(visible) && !p.T.After(fired) {
				ticks++
			}
		}
		if ticks > 3 {
			t.Errorf("decided %d ticks after the regression became visible (at %s), want at most 3\n%s", ticks, visible.Format(time.TimeOnly), out)
		}
	})

	l.sub(t, "failed revert playbook falls back to the known-good version", func(t *testing.T) {
		// Each test that makes a canary bad uses a canary of its own: a
		// host's next baseline would otherwise hold the bad minutes.
		canary := l.hosts[1]
		confs := l.confs()
		// apply.version unset here too: the known-good version is the
		// one rollguard computed for the first subtest's change.
		spec := l.spec(demo.SpecOptions{Name: "fleet", KnownGood: true, Canary: []string{canary},
			ExtraVars:       map[string]string{"version": "v4", "latency_factor": "2.5", "error_share": "0.03"},
			RevertExtraVars: map[string]string{"fail_revert": "true"}})
		code, r, out := l.run(spec, nil)
		if code != 3 || r.Rollback == nil {
			t.Fatalf("exit %d, outcome %q (%s)\n%s", code, r.Outcome, r.Reason, out)
		}
		var tried []string
		for _, m := range r.Rollback.Methods {
			tried = append(tried, m.Name+":"+map[bool]string{true: "ok", false: "failed"}[m.OK])
		}
		if !slices.Equal(tried, []string{"revert-playbook:failed", "known-good:ok"}) {
			t.Errorf("methods tried %v, want the revert playbook failing, then known-good", tried)
		}
		if got := l.conf(canary); got != confs[canary] {
			t.Errorf("canary's app.conf after the known-good re-apply:\n%s\nwant exactly the known-good one:\n%s", got, confs[canary])
		}
		if !r.Rollback.Verified {
			t.Errorf("rollback not verified: %s", r.Rollback.Verification)
		}
	})

	l.sub(t, "a host-level fire reverts one host while the others promote", func(t *testing.T) {
		bad := l.hosts[3] // in wave-1
		confs := l.confs()
		// The other hosts keep the latency the fleet has (0.95, the good
		// change's): at 1.0 they rose 5% by design, and on a loaded
		// machine about 10%, at the tolerance, and a host-level policy
		// reverted one of them too.
		spec := l.spec(demo.SpecOptions{Name: "fleet", Version: "v5",
			ExtraVars: map[string]string{"latency_factor": "0.95", "host_overrides": "{" + bad + ": {latency_factor: 3.0, error_share: 0.08}}"},
			Policies: `policies:
  - name: degraded-share
    rollback_when: 'fraction(hosts, .degraded) >= 0.5'
  - name: extreme-host
    host_rollback_when: 'host.degraded'
`})
		code, r, out := l.run(spec, nil)
		if code != 0 || r.Outcome != report.OutcomePromoted {
			t.Fatalf("exit %d, outcome %q (%s)\n%s", code, r.Outcome, r.Reason, out)
		}
		for _, h := range r.Hosts {
			if h.Reverted != (h.Name == bad) {
				t.Errorf("host %s reverted: %v", h.Name, h.Reverted)
			}
		}
		if got := l.conf(bad); got != confs[bad] {
			t.Errorf("%s's app.conf after its host-level revert:\n%s\nwant:\n%s", bad, got, confs[bad])
		}
		// Verified while the rollout went on, and reported before it ended.
		if len(r.Rollbacks) != 1 || !r.Rollbacks[0].Verified || r.Rollbacks[0].FinishedAt.After(r.FinishedAt) {
			t.Errorf("rollbacks %+v, want %s's, verified before the run ended\n%s", r.Rollbacks, bad, out)
		} else {
			t.Logf("%s reverted at %s: %s", bad, r.Rollbacks[0].StartedAt.Format(time.TimeOnly), r.Rollbacks[0].Verification)
		}
		for _, h := range l.hosts {
			if h != bad && l.version(h) != "v5" {
				t.Errorf("%s runs %s, want v5", h, l.version(h))
			}
		}
	})

	l.sub(t, "a host whose play fails is reverted and named; revert.max_failed: 1 lets the rollout go on", func(t *testing.T) {
		failing := l.hosts[2] // in wave-1
		confs := l.confs()
		spec := l.spec(demo.SpecOptions{Name: "fleet", Version: "v6", MaxFailed: "1",
			ExtraVars: map[string]string{"latency_factor": "0.95", "fail_after_write_on": failing}})
		code, r, out := l.run(spec, nil)
		var rep *report.HostReport
		for i := range r.Hosts {
			if r.Hosts[i].Name == failing {
				rep = &r.Hosts[i]
			}
		}
		if rep == nil || rep.Status != ports.HostFailed || !rep.Reverted || !strings.Contains(rep.Message, "service check failed") {
			t.Fatalf("host %s: %+v, want failed (with its message) and reverted\n%s", failing, rep, out)
		}
		if got := l.conf(failing); got != confs[failing] {
			t.Errorf("%s's app.conf after its revert:\n%s\nwant:\n%s", failing, got, confs[failing])
		}
		if code != 0 {
			t.Errorf("exit %d: one failed host must not stop the rollout\n%s", code, out)
		}
	})

	l.sub(t, "a second run is refused and names the holder", func(t *testing.T) {
		spec := l.spec(demo.SpecOptions{Name: "fleet", Version: "v7"})
		locker, err := localstate.NewLocker(filepath.Join(env.Dir, "state"), nil)
		if err != nil {
			t.Fatal(err)
		}
		lease, err := locker.Acquire(ctx, "fleet", ports.Holder{Host: "test-host", PID: os.Getpid(), RunID: "holder-run", Since: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		before := l.writes()
		code, _, errOut := rollguard(t, "run", "-f", spec)
		if code != 1 || !strings.Contains(errOut, "holder-run") || !strings.Contains(errOut, "test-host") {
			t.Fatalf("exit %d, stderr %q: want 1 naming run holder-run on test-host", code, errOut)
		}
		// --lock-wait retries for a while, saying for whom it waits.
		code, _, errOut = rollguard(t, "run", "-f", spec, "--lock-wait", "3s")
		lease.Release(ctx)
		if code != 1 || !strings.Contains(errOut, "waiting up to") || !strings.Contains(errOut, "holder-run") {
			t.Fatalf("--lock-wait: exit %d, stderr %q: want the wait announced, then 1", code, errOut)
		}
		if !maps.Equal(before, l.writes()) {
			t.Errorf("a refused run wrote an app.conf")
		}
	})
}

// TestLiveResume kills and interrupts real rollouts at every step and
// resumes them, from the local state and from Consul KV and Nomad
// Variables, and kills VictoriaMetrics under a run (the last case).
func TestLiveResume(t *testing.T) {
	requireLive(t)
	t.Parallel() // beside TestLive: see there
	l := startLive(t)
	env := l.env

	// Killed at each step boundary, then the same command again: every
	// host ends with either the new version or the one it had (never
	// unknown), and the journal and the report agree.
	// The run killed at monitoring is taken back with --abort instead.
	kills := []struct {
		step, canary string
		at           *regexp.Regexp
		abort        bool
	}{
		{"snapshot", l.hosts[2], regexp.MustCompile(`^   snapshot of `), false},
		{"apply", l.hosts[4], regexp.MustCompile(`^   ` + l.hosts[4] + `  `), false},
		{"monitoring", l.hosts[5], monitorTick, true},
		{"revert", l.hosts[3], regexp.MustCompile(`^   revert by `), false},
	}
	for i, k := range kills {
		l.sub(t, "killed at "+k.step+" then resumed", func(t *testing.T) {
			confs := l.confs()
			name := "kill-" + k.step
			spec := l.spec(demo.SpecOptions{Name: name, Version: "k" + string(rune('1'+i)), Snapshots: true, Canary: []string{k.canary},
				ExtraVars: map[string]string{"latency_factor": "2.5", "error_share": "0.03"}})
			code, _, out := l.run(spec, k.at.MatchString)
			if code != -1 {
				t.Fatalf("the run was not killed at %s (exit %d)\n%s", k.step, code, out)
			}
			if doc := l.journal(name); doc.Finished {
				t.Fatalf("the killed run's journal says it finished")
			}
			var args []string
			said := "resuming the unfinished run"
			if k.abort {
				args, said = []string{"--abort"}, "aborting the unfinished run"
			}
			code, r, out2 := l.run(spec, nil, args...)
			if code != 3 || r.Outcome != report.OutcomeRolledBack {
				t.Fatalf("resumed: exit %d, outcome %q (%s)\nfirst:\n%s\nresumed:\n%s", code, r.Outcome, r.Reason, out, out2)
			}
			if !strings.Contains(out2, said) {
				t.Errorf("the second run does not say %q\n%s", said, out2)
			}
			for _, h := range l.hosts {
				if got := l.conf(h); got != confs[h] {
					t.Errorf("%s ends with\n%s\nwant its previous config\n%s\nfirst run:\n%s\nresumed:\n%s", h, got, confs[h], out, out2)
				}
			}
			doc := l.journal(name)
			if !doc.Finished || doc.Outcome != r.Outcome || doc.RunID != r.RunID {
				t.Errorf("journal (finished %v, outcome %q, run %s) disagrees with the report (%q, run %s)", doc.Finished, doc.Outcome, doc.RunID, r.Outcome, r.RunID)
			}
		})
	}

	l.sub(t, "SIGTERM during monitoring reverts, reports and exits 4", func(t *testing.T) {
		canary := l.hosts[1]
		confs := l.confs()
		spec := l.spec(demo.SpecOptions{Name: "sigterm", Version: "s1", Canary: []string{canary},
			ExtraVars: map[string]string{"latency_factor": "1.0"}})
		l.signal = syscall.SIGTERM
		defer func() { l.signal = nil }()
		code, r, out := l.run(spec, monitorTick.MatchString)
		if code != 4 || r.Outcome != report.OutcomeHalted || !strings.Contains(r.Reason, "interrupted") {
			t.Fatalf("exit %d, outcome %q (%s): want 4, halted, interrupted\n%s", code, r.Outcome, r.Reason, out)
		}
		if r.Rollback == nil || !slices.Equal(r.Rollback.Hosts, []string{canary}) || r.Rollback.Trigger != "interrupt" {
			t.Errorf("rollback %+v: want the canary reverted on the interrupt", r.Rollback)
		}
		for _, h := range l.hosts {
			if got := l.conf(h); got != confs[h] {
				t.Errorf("%s ends with\n%s\nwant its previous config", h, got)
			}
		}
		if doc := l.journal("sigterm"); !doc.Finished || doc.Outcome != report.OutcomeHalted {
			t.Errorf("journal finished %v, outcome %q", doc.Finished, doc.Outcome)
		}
	})

	l.sub(t, "journal, history and lock in Consul KV and Nomad Variables: a second process resumes", func(t *testing.T) {
		testSharedStateResume(t, l)
	})

	l.sub(t, "metrics store dies during monitoring: never promotes", func(t *testing.T) {
		spec := l.spec(demo.SpecOptions{Name: "vm-dies", Version: "v9", ExtraVars: map[string]string{"latency_factor": "1.0"}})
		killed := false
		code, r, out := l.run(spec, func(line string) bool {
			if !killed && monitorTick.MatchString(line) {
				killed = true
				env.VM.Stop()
			}
			return false
		})
		if !killed {
			t.Fatalf("the run never reached monitoring\n%s", out)
		}
		if code == 0 || r.Outcome == report.OutcomePromoted {
			t.Fatalf("promoted without metrics: exit %d\n%s", code, out)
		}
		if !strings.Contains(r.Reason, "metrics unavailable") {
			t.Errorf("reason %q does not say the metrics were unavailable\n%s", r.Reason, out)
		}
		for _, h := range l.hosts[1:] {
			if l.version(h) == "v9" {
				t.Errorf("%s received v9 although the canary was never judged", h)
			}
		}
	})
}

// monitorTick matches the timeline line of a canary tick in monitoring.
var monitorTick = regexp.MustCompile(`^\d\d:\d\d:\d\d canary\s+monitor `)

// run runs `rollguard run` on spec. kill, when it returns true for an
// output line, SIGKILLs rollguard there (exit code -1, no report).
// Otherwise it returns the exit code, the report and the output.
// selfMetrics reads rollguard's own metrics of run r back from the
// VictoriaMetrics it pushed them to, by the rollout's and the run's
// labels, as a dashboard would.
func (l *live) selfMetrics(r report.Report) {
	t := l.t
	t.Helper()
	match := fmt.Sprintf(`{__name__=~"rollguard_.*",rollout=%q,run_id=%q}`, r.Name, r.RunID)
	const ended = `rollguard_runs_total{outcome="rolled_back"}`
	// The Prometheus import is buffered: flush and read until the run's
	// end is there, for at most 30 s.
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	var got map[string]float64
	for got[ended] == 0 {
		if err := l.env.VM.Flush(ctx); err != nil {
			t.Fatalf("no %s for %s in VictoriaMetrics (%v); it holds %v", ended, match, err, got)
		}
		got = l.series(match)
	}
	for name, want := range map[string]float64{
		ended: 1,
		`rollguard_hosts_applied_total{wave="canary"}`:                                                1,
		`rollguard_hosts_reverted_total{trigger="` + r.Rollback.Trigger + `"}`:                        1,
		`rollguard_decisions_total{outcome="fire",policy="` + r.Rollback.Trigger + `",scope="fleet"}`: 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v; VictoriaMetrics holds %v", name, got[name], want, got)
		}
	}
	for _, name := range []string{"rollguard_tick_duration_seconds_count", "rollguard_query_duration_seconds_count", `rollguard_decision_delay_seconds_count{policy="` + r.Rollback.Trigger + `"}`} {
		if got[name] < 1 {
			t.Errorf("%s = %v, want at least 1; VictoriaMetrics holds %v", name, got[name], got)
		}
	}
}

// series exports the series matching match from VictoriaMetrics: each
// series' name with its labels other than rollout, run_id and query
// (sorted) -> its last value, summed over the labels left out.
func (l *live) series(match string) map[string]float64 {
	resp, err := http.Get(l.env.VM.URL() + "/api/v1/export?" + url.Values{"match[]": {match}}.Encode())
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var s struct {
			Metric map[string]string `json:"metric"`
			Values []float64         `json:"values"`
		}
		if err := dec.Decode(&s); err != nil {
			l.t.Fatal(err)
		}
		var labels []string
		for k, v := range s.Metric {
			if k != "__name__" && k != "rollout" && k != "run_id" && k != "query" && k != "vmrange" && k != "instance" && k != "job" {
				labels = append(labels, fmt.Sprintf("%s=%q", k, v))
			}
		}
		slices.Sort(labels)
		name := s.Metric["__name__"]
		if len(labels) > 0 {
			name += "{" + strings.Join(labels, ",") + "}"
		}
		if len(s.Values) > 0 {
			out[name] += s.Values[len(s.Values)-1]
		}
	}
	return out
}

// attributed checks that the report names the tasks the apply changed on
// the reverted host next to what degraded on it, in report.md and
// report.html.
func (l *live) attributed(r report.Report, host string) {
	t := l.t
	t.Helper()
	h := r.Hosts[slices.IndexFunc(r.Hosts, func(h report.HostReport) bool { return h.Name == host })]
	if len(h.ChangedTasks) == 0 {
		t.Fatalf("%s: changed_tasks is empty after a real apply changed its app.conf", host)
	}
	a := report.Attribution(&r, &h).String()
	if !strings.HasPrefix(a, "after `"+h.ChangedTasks[0]+"`") || !strings.Contains(a, "changed on "+host) {
		t.Errorf("attribution %q does not name %s's changed task %q", a, host, h.ChangedTasks[0])
	}
	if md := report.Markdown(&r); !strings.Contains(md, a) {
		t.Errorf("report.md does not say %q", a)
	}
	last := h.ChangedTasks[len(h.ChangedTasks)-1]
	if page := report.HTML(&r); !strings.Contains(page, "<code>"+html.EscapeString(last)+"</code> changed on "+host) {
		t.Errorf("report.html does not name %s's changed task %q", host, last)
	}
}

// run runs `rollguard run` on spec and returns its exit code, the
// report.json it wrote and its output (stdout and stderr). kill, when it
// says so of a line, sends the run l.signal. With "-o json" among args
// the output is stderr alone, and stdout must be report.json's document.
func (l *live) run(spec string, kill func(string) bool, args ...string) (int, report.Report, string) {
	t := l.t
	t.Helper()
	dir := filepath.Join(t.TempDir(), "report")
	if !slices.Contains(args, "--record") {
		rec := filepath.Join(t.TempDir(), "metrics.jsonl.gz")
		args = append(args, "--record", rec)
		l.records = append(l.records, liveRecord{metrics: rec, reportDir: dir})
	}
	cmd := exec.CommandContext(l.ctx, binary, append([]string{"run", "-f", spec, "--report-dir", dir}, args...)...)
	cmd.Env = append(os.Environ(), l.extraEnv...)
	jsonOut := strings.Contains(strings.Join(args, " "), "-o json")
	var stdout strings.Builder
	var pipe io.ReadCloser
	var err error
	if jsonOut {
		cmd.Stdout = &stdout
		pipe, err = cmd.StderrPipe()
	} else {
		pipe, err = cmd.StdoutPipe()
		cmd.Stderr = cmd.Stdout
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	killed := false
	sig := l.signal
	if sig == nil {
		sig = os.Kill
	}
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if !killed && kill != nil && kill(sc.Text()) {
			killed = true
			cmd.Process.Signal(sig)
		}
	}
	err = cmd.Wait()
	if killed && sig == os.Kill {
		// What the killed run had started (a playbook in its own process
		// group) may still be finishing: the resumed run must cope.
		return -1, report.Report{}, out.String()
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("rollguard run: %v\n%s", err, out.String())
	}
	r := readReport(t, dir)
	if jsonOut {
		var doc report.Report
		dec := json.NewDecoder(strings.NewReader(stdout.String()))
		if err := dec.Decode(&doc); err != nil || dec.More() || doc.RunID != r.RunID || doc.Outcome != r.Outcome || len(doc.Hosts) != len(r.Hosts) {
			t.Errorf("run -o json: stdout is not report.json's one document (%v; run %q, outcome %q):\n%s", err, doc.RunID, doc.Outcome, stdout.String())
		}
	}
	return code, r, out.String()
}
