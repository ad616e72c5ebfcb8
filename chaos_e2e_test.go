package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollguard/rollguard/demo"
	"github.com/rollguard/rollguard/integrations/localstate"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
	"github.com/rollguard/rollguard/runner"
	"github.com/rollguard/rollguard/simfleet"
)

// The fault suite: real rollouts (the rollguard binary, real Ansible, a
// real VictoriaMetrics scraping the simulated fleet) broken on purpose —
// SIGKILL at random moments and at every journaled step boundary,
// SIGTERM under both on_interrupt modes, the metrics store restarted
// mid-monitor, a playbook that hangs past apply.timeout, the Consul KV
// and Nomad Variables stores failing and hanging mid-run, two runs at
// once, stdout closed — each followed, when the process died, by the same
// command again. After every case the invariants a user relies on hold:
//
//   - each host carries the new version only if the outcome is promoted
//     (and no host policy reverted it) or frozen by the user's choice;
//     otherwise its previous app.conf, byte for byte;
//   - the journal is finished and agrees with the report (so a new run
//     starts fresh);
//   - the lock is free;
//   - no playbook is left running.
//
// `make chaos` runs the whole suite (ROLLGUARD_CHAOS=full); with
// ROLLGUARD_E2E=1 alone (make test) a short form runs: one random kill of
// a good change, a kill after a playbook started, a hanging playbook and
// a closed stdout (TestLive kills bad changes at four steps and refuses a
// second run). The random choices
// come from a seed that is printed; ROLLGUARD_CHAOS_SEED repeats them.

// chaosKills is how many random SIGKILLs the full suite aims at each
// change kind (good, bad).
const chaosKills = 20

// chaosUndisturbed is how many good changes the full suite runs without
// a fault, to compare their outcomes with the resumed ones.
const chaosUndisturbed = 8

// chaosBaseline is the baseline window of the suite's rollouts.
const chaosBaseline = 40 * time.Second

type chaos struct {
	t     *testing.T
	ctx   context.Context
	env   *demo.Env
	hosts []string
	rng   *rand.Rand
	n     int
	// results counts, per group, the cases whose invariants held and the
	// cases run; notes are per group facts for the summary.
	results map[string]*[2]int
	notes   map[string]map[string]int
	order   []string
}

func TestChaos(t *testing.T) {
	full := os.Getenv("ROLLGUARD_CHAOS") == "full"
	if !full && os.Getenv("ROLLGUARD_E2E") != "1" {
		t.Skip("the fault suite runs with ROLLGUARD_E2E=1 (short form) or ROLLGUARD_CHAOS=full (make chaos)")
	}
	if testing.Short() {
		t.Skip("the fault suite takes minutes")
	}
	if err := demo.Check(); err != nil {
		t.Fatalf("the fault suite needs Ansible and VictoriaMetrics: %v", err)
	}
	t.Parallel() // beside TestLive: see there
	seed := time.Now().UnixNano()
	if s := os.Getenv("ROLLGUARD_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("ROLLGUARD_CHAOS_SEED=%q: %v", s, err)
		}
	}
	t.Logf("chaos seed %d (ROLLGUARD_CHAOS_SEED=%d repeats this run's choices)", seed, seed)
	ctx, cancel := testContext(t)
	defer cancel()
	env, err := demo.StartEnv(ctx, demo.EnvOptions{Dir: t.TempDir(), Hosts: 6, Seed: seed % 1000, Playbooks: os.DirFS("testdata/playbooks")})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if err := env.WaitForData(ctx, chaosBaseline+5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	c := &chaos{t: t, ctx: ctx, env: env, rng: rand.New(rand.NewPCG(uint64(seed), 11)), results: map[string]*[2]int{}, notes: map[string]map[string]int{}}
	for _, h := range env.Fleet.Hosts() {
		c.hosts = append(c.hosts, h.Name)
	}
	defer c.summary()

	kills, boundaries := 1, []string{runner.JournalPlaybook}
	if full {
		kills = chaosKills
		boundaries = []string{runner.JournalRunStart, runner.JournalSnapshot, runner.JournalApplyStart, runner.JournalPlaybook,
			runner.JournalApplyEnd, runner.JournalWavePassed, runner.JournalRevertStart, runner.JournalRevertEnd, runner.JournalRunEnd}
	}
	if full {
		// The same good change undisturbed: how often the detector rolls
		// it back without any fault, to compare with the resumed runs.
		for i := range chaosUndisturbed {
			c.run("good undisturbed", fmt.Sprintf("good change, undisturbed %d", i+1), c.undisturbed)
		}
	}
	for i := range kills {
		c.run("good", fmt.Sprintf("good change, SIGKILL at random %d", i+1), func() []string { return c.killRandom(false) })
		if full {
			c.run("bad", fmt.Sprintf("bad change, SIGKILL at random %d", i+1), func() []string { return c.killRandom(true) })
		}
	}
	for _, step := range boundaries {
		c.run("boundaries", "SIGKILL after journal step "+step, func() []string { return c.killAfter(step) })
	}
	c.run("hang", "a playbook hangs past apply.timeout", c.hang)
	c.run("broken pipe", "stdout closed", c.brokenPipe)
	if full {
		c.run("concurrent", "two runs at once", c.concurrent)
		c.run("sigterm", "SIGTERM, on_interrupt: revert", func() []string { return c.sigterm(runner.ModeRevert) })
		c.run("sigterm", "SIGTERM, on_interrupt: freeze", func() []string { return c.sigterm(runner.ModeFreeze) })
		c.run("metrics store", "VictoriaMetrics killed and restarted mid-monitor", c.restartVM)
		for _, store := range []string{"consul", "nomad"} {
			c.run(store, store+" store fails mid-run", func() []string { return c.storeFault(store, false) })
			c.run(store, store+" store hangs mid-run", func() []string { return c.storeFault(store, true) })
		}
	}
}

// testContext ends a few seconds before the test binary's deadline
// (go test -timeout), so a stuck case fails with its output rather than
// a panic; without a deadline it does not end.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	if d, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), d.Add(-30*time.Second))
	}
	return context.WithCancel(context.Background())
}

// run runs one case as a subtest, from a known fleet state (every host
// back on the neutral app.conf, its metrics settled), and counts it.
func (c *chaos) run(group, name string, f func() []string) {
	if c.results[group] == nil {
		c.results[group] = &[2]int{}
		c.order = append(c.order, group)
	}
	ran := false
	ok := c.t.Run(name, func(t *testing.T) {
		ran = true
		parent := c.t
		c.t = t
		defer func() { c.t = parent }()
		if err := c.env.Reset(c.ctx, simfleet.NeutralConf()); err != nil {
			t.Fatal(err)
		}
		for _, p := range f() {
			t.Error(p)
		}
	})
	// A case that -run filtered out (go test -run 'TestChaos$/consul')
	// is not counted.
	if !ran {
		return
	}
	c.results[group][1]++
	if ok {
		c.results[group][0]++
	}
}

func (c *chaos) note(group, fact string) {
	if c.notes[group] == nil {
		c.notes[group] = map[string]int{}
	}
	c.notes[group][fact]++
}

// summary logs the counts, one group a line, as the README quotes them.
func (c *chaos) summary() {
	var parts []string
	for _, g := range c.order {
		r := c.results[g]
		if r[1] == 0 {
			continue
		}
		s := fmt.Sprintf("%s: %d/%d", g, r[0], r[1])
		if n := c.notes[g]; len(n) > 0 {
			var facts []string
			for _, k := range slices.Sorted(func(yield func(string) bool) {
				for k := range n {
					if !yield(k) {
						return
					}
				}
			}) {
				facts = append(facts, fmt.Sprintf("%d %s", n[k], k))
			}
			s += " (" + strings.Join(facts, ", ") + ")"
		}
		parts = append(parts, s)
	}
	c.t.Logf("chaos summary: %s", strings.Join(parts, "; "))
}

// change is one rollout the suite starts: its spec and what it changes.
type change struct {
	name, version, spec string
	bad                 bool
	canary              string
	before              map[string]string
}

// newChange writes a spec for a good change (the same app.conf but its
// version) or a bad one (latency x2.5, 3% errors), with a canary of its
// own so that no host's baseline holds the previous case's bad minutes.
func (c *chaos) newChange(bad bool, o demo.SpecOptions) change {
	c.t.Helper()
	c.n++
	ch := change{name: fmt.Sprintf("chaos-%d", c.n), bad: bad, canary: c.hosts[c.n%len(c.hosts)], before: c.confs()}
	o.Name = ch.name
	o.Interval, o.Baseline, o.Monitor, o.WaveMonitor = time.Second, chaosBaseline, 8*time.Second, 5*time.Second
	o.Canary = []string{ch.canary}
	// A fleet fire reverts every host changed so far, so that whatever
	// does not end promoted ends with every host as it was.
	o.Scope = runner.ScopeAll
	if o.ExtraVars == nil {
		o.ExtraVars = map[string]string{}
	}
	if bad {
		ch.version = fmt.Sprintf("b%d", c.n)
		o.ExtraVars["latency_factor"], o.ExtraVars["error_share"] = "2.5", "0.03"
	} else {
		ch.version = fmt.Sprintf("g%d", c.n)
	}
	o.ExtraVars["version"] = ch.version
	spec, err := c.env.WriteSpec(o)
	if err != nil {
		c.t.Fatal(err)
	}
	ch.spec = spec
	return ch
}

func (c *chaos) confs() map[string]string {
	m := map[string]string{}
	for _, h := range c.env.Fleet.Hosts() {
		data, err := os.ReadFile(filepath.Join(h.Dir, "app.conf"))
		if err != nil {
			c.t.Fatal(err)
		}
		m[h.Name] = string(data)
	}
	return m
}

// proc is a running rollguard.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
	code int
	// killed says a signal ended it.
	killed bool
}

// start starts rollguard with args; onLine sees every output line.
func (c *chaos) start(env []string, onLine func(p *proc, line string), args ...string) *proc {
	c.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if onLine != nil {
				onLine(p, sc.Text())
			}
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
			if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
				p.killed = true
			}
		}
		close(p.done)
	}()
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// wait waits for the process, or kills it when the suite's time is out.
func (c *chaos) wait(p *proc) {
	select {
	case <-p.done:
	case <-c.ctx.Done():
		p.cmd.Process.Kill()
		<-p.done
	}
}

// runTo runs `rollguard run` on ch to its end and reads its report.
func (c *chaos) runTo(ch change, env []string) (int, report.Report, string) {
	c.t.Helper()
	dir := filepath.Join(c.t.TempDir(), "report")
	p := c.start(env, nil, "run", "-f", ch.spec, "--report-dir", dir)
	c.wait(p)
	if p.killed {
		c.t.Fatalf("rollguard run died of a signal\n%s", p.output())
	}
	if _, err := os.Stat(filepath.Join(dir, "report.json")); err != nil {
		c.t.Fatalf("rollguard run (exit %d) wrote no report\n%s", p.code, p.output())
	}
	return p.code, readReport(c.t, dir), p.output()
}

// killRandom SIGKILLs a rollout at a moment drawn at random over a run's
// usual length, then runs the same command again.
func (c *chaos) killRandom(bad bool) []string {
	ch := c.newChange(bad, demo.SpecOptions{Snapshots: c.rng.IntN(2) == 0})
	span := 30 * time.Second
	if bad {
		span = 20 * time.Second
	}
	at := time.Duration(c.rng.Int64N(int64(span)))
	c.t.Logf("%s: SIGKILL %s after the start", ch.name, at)
	p := c.start(nil, nil, "run", "-f", ch.spec, "--report-dir", filepath.Join(c.t.TempDir(), "first"))
	timer := time.AfterFunc(at, func() { p.cmd.Process.Signal(syscall.SIGKILL) })
	c.wait(p)
	timer.Stop()
	return c.resume(ch, p, kindOf(bad))
}

func kindOf(bad bool) string {
	if bad {
		return "bad"
	}
	return "good"
}

// undisturbed runs a good change without any fault.
func (c *chaos) undisturbed() []string {
	ch := c.newChange(false, demo.SpecOptions{})
	code, r, out := c.runTo(ch, nil)
	c.note("good undisturbed", "ended "+r.Outcome)
	p := c.invariants(ch, code, r, false)
	if r.Outcome != report.OutcomePromoted {
		p = append(p, fmt.Sprintf("a good change ended %s: %s (%s)", r.Outcome, r.Reason, decidedBy(r)))
	}
	if len(p) > 0 {
		return append(p, out)
	}
	return nil
}

// wantOutcome is how a change must end, killed and resumed or not: a good
// one (only the version changes) promoted, a bad one rolled back.
func wantOutcome(ch change) string {
	if ch.bad {
		return report.OutcomeRolledBack
	}
	return report.OutcomePromoted
}

// killAfter SIGKILLs a rollout right after it journaled its first entry
// of step (ROLLGUARD_FAULT_KILL_AFTER), then runs the same command again.
func (c *chaos) killAfter(step string) []string {
	// Every step is reached by a bad change with snapshots, except a
	// passed wave.
	bad := step != runner.JournalWavePassed
	ch := c.newChange(bad, demo.SpecOptions{Snapshots: true})
	p := c.start([]string{"ROLLGUARD_FAULT_KILL_AFTER=" + step}, nil, "run", "-f", ch.spec, "--report-dir", filepath.Join(c.t.TempDir(), "first"))
	c.wait(p)
	if !p.killed {
		return []string{fmt.Sprintf("the run was not killed after %s (exit %d)\n%s", step, p.code, p.output())}
	}
	return c.resume(ch, p, "boundaries")
}

// resume runs the same command again after the first process ended (or
// died), and checks the invariants on the result.
func (c *chaos) resume(ch change, first *proc, group string) []string {
	doc := c.journal(ch.name)
	if !first.killed {
		c.note(group, "ended before the kill")
	}
	code, r, out := c.runTo(ch, nil)
	var problems []string
	resumed := strings.Contains(out, "resuming the unfinished run")
	switch {
	case first.killed && doc.RunID == "" && resumed:
		problems = append(problems, "the second run resumed, but the killed run had journaled nothing")
	case first.killed && doc.RunID != "" && !doc.Finished && !resumed:
		// A kill in the first milliseconds, before the journal's first
		// entry, leaves nothing to resume: the second run starts afresh.
		problems = append(problems, "the second run did not resume the killed run's unfinished journal")
	case doc.Finished && resumed:
		problems = append(problems, "the second run resumed a finished journal")
	}
	if first.killed {
		c.note(group, "killed")
		if doc.RunID == "" {
			c.note(group, "killed before its journal began")
		}
	}
	c.note(group, "ended "+r.Outcome)
	if want := wantOutcome(ch); r.Outcome != want {
		problems = append(problems, fmt.Sprintf("a %s change ended %s, want %s: %s (last decision by %s)", kindOf(ch.bad), r.Outcome, want, r.Reason, decidedBy(r)))
	}
	if p := c.invariants(ch, code, r, false); len(p) > 0 {
		problems = append(problems, p...)
	}
	if len(problems) > 0 {
		problems = append(problems, "first run:\n"+first.output()+"\nsecond run:\n"+out)
	}
	return problems
}

// decidedBy names the host and wave of the fire that ended r, if any.
func decidedBy(r report.Report) string {
	for _, d := range r.Decisions {
		if d.Fired {
			worst, score := "", 0.0
			for _, h := range r.Hosts {
				if h.MaxScore > score {
					worst, score = h.Name+" ("+h.Wave+")", h.MaxScore
				}
			}
			return fmt.Sprintf("%s in %s: %s; highest score %.2f on %s", d.Policy, d.Wave, d.Reason, score, worst)
		}
	}
	return "no fire"
}

// invariants checks, after a case ended with report r (exit code), what a
// user relies on. frozen: the user chose to keep the change on a halt.
func (c *chaos) invariants(ch change, code int, r report.Report, frozen bool) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if want := runner.ExitCode(r.Outcome); code != want {
		bad("exit %d with outcome %q, want %d", code, r.Outcome, want)
	}
	reverted := map[string]bool{}
	applied := map[string]bool{}
	for _, h := range r.Hosts {
		reverted[h.Name], applied[h.Name] = h.Reverted, h.Applied
	}
	for _, h := range c.hosts {
		conf, _ := c.env.Fleet.Conf(h)
		now := c.confs()[h]
		carries := conf.Version == ch.version
		switch {
		case r.Outcome == report.OutcomePromoted && !reverted[h]:
			if !carries {
				bad("%s runs %s after a promotion, want %s", h, conf.Version, ch.version)
			}
		case frozen && applied[h] && !reverted[h]:
			if !carries {
				bad("%s runs %s after a freeze that keeps the change, want %s", h, conf.Version, ch.version)
			}
		default:
			if now != ch.before[h] {
				bad("%s after outcome %s (reverted %v):\n%s\nwant its previous app.conf byte for byte:\n%s", h, r.Outcome, reverted[h], now, ch.before[h])
			}
		}
	}
	doc := c.journal(ch.name)
	if !doc.Finished || doc.Outcome != r.Outcome || doc.RunID != r.RunID {
		bad("journal: run %s finished %v outcome %q; report: run %s outcome %q", doc.RunID, doc.Finished, doc.Outcome, r.RunID, r.Outcome)
	}
	locker, err := localstate.NewLocker(filepath.Join(c.env.Dir, "state"), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if lease, err := locker.Acquire(c.ctx, ch.name, ports.Holder{Host: "chaos", PID: os.Getpid(), RunID: "check"}); err != nil {
		bad("the lock is not free: %v", err)
	} else {
		lease.Release(c.ctx)
	}
	if left := c.playbooksLeft(); len(left) > 0 {
		bad("playbooks left running: %s", strings.Join(left, "; "))
	}
	return problems
}

// playbooksLeft lists the processes still running a playbook of the
// suite's fleet (their command line names its directory).
func (c *chaos) playbooksLeft() []string {
	var left []string
	// A stopped playbook's process group may take a moment to exit:
	// look until it has, for at most a few seconds of the suite's time.
	deadline := time.Now().Add(15 * time.Second)
	for {
		left = left[:0]
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil {
				continue
			}
			cmd := strings.ReplaceAll(string(data), "\x00", " ")
			if strings.Contains(cmd, c.env.Dir) && (strings.Contains(cmd, "ansible") || strings.Contains(cmd, "sleep 3600")) {
				left = append(left, e.Name()+": "+cmd)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		select {
		case <-c.ctx.Done():
			return left
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *chaos) journal(name string) runner.JournalDoc {
	c.t.Helper()
	store, err := localstate.New(filepath.Join(c.env.Dir, "state", name))
	if err != nil {
		c.t.Fatal(err)
	}
	j, err := runner.OpenJournal(c.ctx, store)
	if err != nil {
		c.t.Fatal(err)
	}
	return *j.Doc()
}

// sigterm stops a good change at its canary's first monitoring tick with
// SIGTERM: it reverts (or, with on_interrupt: freeze, keeps) the change,
// reports and exits 4.
func (c *chaos) sigterm(mode string) []string {
	ch := c.newChange(false, demo.SpecOptions{OnInterrupt: mode})
	dir := filepath.Join(c.t.TempDir(), "report")
	var once sync.Once
	p := c.start(nil, func(p *proc, line string) {
		if monitorTick.MatchString(line) {
			once.Do(func() { p.cmd.Process.Signal(syscall.SIGTERM) })
		}
	}, "run", "-f", ch.spec, "--report-dir", dir)
	c.wait(p)
	r := readReport(c.t, dir)
	problems := c.invariants(ch, p.code, r, mode == runner.ModeFreeze)
	if r.Outcome != report.OutcomeHalted || !strings.Contains(r.Reason, "interrupted") {
		problems = append(problems, fmt.Sprintf("outcome %q (%s), want halted: interrupted", r.Outcome, r.Reason))
	}
	if len(problems) > 0 {
		problems = append(problems, p.output())
	}
	return problems
}

// restartVM stops VictoriaMetrics at the canary's first monitoring tick
// and starts it again on the same address after a random 1-6 s: the run
// goes on if the store came back within metrics.error_limit ticks, and
// otherwise rolls back; it never promotes on missing data.
func (c *chaos) restartVM() []string {
	ch := c.newChange(false, demo.SpecOptions{})
	down := time.Second + time.Duration(c.rng.Int64N(int64(5*time.Second)))
	dir := filepath.Join(c.t.TempDir(), "report")
	var once sync.Once
	restarted := make(chan error, 1)
	p := c.start(nil, func(p *proc, line string) {
		if monitorTick.MatchString(line) {
			once.Do(func() {
				go func() {
					restarted <- c.env.RestartVM(c.ctx, func() { time.Sleep(down) })
				}()
			})
		}
	}, "run", "-f", ch.spec, "--report-dir", dir)
	c.wait(p)
	if err := <-restarted; err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("VictoriaMetrics was down for %s", down)
	r := readReport(c.t, dir)
	c.note("metrics store", "ended "+r.Outcome)
	problems := c.invariants(ch, p.code, r, false)
	if r.Outcome == report.OutcomePromoted && strings.Contains(p.output(), "metrics unavailable") {
		problems = append(problems, "promoted although metrics were unavailable")
	}
	if len(problems) > 0 {
		problems = append(problems, p.output())
	}
	return problems
}

// hang has the canary's play hang (after writing app.conf) past a 6 s
// apply.timeout: the playbook is stopped, its process group gone, and the
// canary reverted.
func (c *chaos) hang() []string {
	ch := c.newChange(false, demo.SpecOptions{ApplyTimeout: 6 * time.Second})
	ch.spec = c.rewrite(ch, func(s string) string {
		return strings.Replace(s, "  extra_vars:\n", "  extra_vars:\n    hang_on: "+ch.canary+"\n", 1)
	})
	code, r, out := c.runTo(ch, nil)
	problems := c.invariants(ch, code, r, false)
	if r.Outcome != report.OutcomeRolledBack || !strings.Contains(r.Reason, "apply.timeout") {
		problems = append(problems, fmt.Sprintf("outcome %q (%s), want rolled back because of apply.timeout", r.Outcome, r.Reason))
	}
	if len(problems) > 0 {
		problems = append(problems, out)
	}
	return problems
}

// rewrite edits a change's spec file.
func (c *chaos) rewrite(ch change, edit func(string) string) string {
	data, err := os.ReadFile(ch.spec)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(ch.spec, []byte(edit(string(data))), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return ch.spec
}

// concurrent starts two runs of one rollout at the same moment: one takes
// the lock, the other exits 1 naming it, and the first ends as usual.
func (c *chaos) concurrent() []string {
	ch := c.newChange(false, demo.SpecOptions{})
	dirs := [2]string{filepath.Join(c.t.TempDir(), "a"), filepath.Join(c.t.TempDir(), "b")}
	var ps [2]*proc
	for i := range ps {
		ps[i] = c.start(nil, nil, "run", "-f", ch.spec, "--report-dir", dirs[i])
	}
	for _, p := range ps {
		c.wait(p)
	}
	winner, loser := 0, 1
	if ps[0].code == 1 {
		winner, loser = 1, 0
	}
	var problems []string
	if ps[loser].code != 1 || !strings.Contains(ps[loser].output(), "another run holds the lock") {
		problems = append(problems, fmt.Sprintf("of two runs at once, neither was refused: exits %d and %d", ps[0].code, ps[1].code))
	}
	r := readReport(c.t, dirs[winner])
	if !strings.Contains(ps[loser].output(), r.RunID) {
		problems = append(problems, "the refused run does not name the holder "+r.RunID)
	}
	problems = append(problems, c.invariants(ch, ps[winner].code, r, false)...)
	if len(problems) > 0 {
		problems = append(problems, ps[0].output(), ps[1].output())
	}
	return problems
}

// brokenPipe runs a good change with stdout and stderr closed pipes: the
// rollout runs to its end, its journal and report complete.
func (c *chaos) brokenPipe() []string {
	ch := c.newChange(false, demo.SpecOptions{})
	dir := filepath.Join(c.t.TempDir(), "report")
	code := brokenPipe(c.t, nil, "run", "-f", ch.spec, "--report-dir", dir)
	if code < 0 {
		return []string{"rollguard died with stdout closed"}
	}
	r := readReport(c.t, dir)
	problems := c.invariants(ch, code, r, false)
	if r.FinishedAt.IsZero() || len(r.Timeline) == 0 || len(r.Waves) == 0 {
		problems = append(problems, fmt.Sprintf("report incomplete: finished %v, %d timeline lines", r.FinishedAt, len(r.Timeline)))
	}
	return problems
}

// storeFault runs a good change with its journal, history and lock in a
// Consul KV or Nomad Variables fake behind a proxy that, from the canary's
// first monitoring tick on, fails every request with 503 or holds it
// without answer (hang). The run cannot journal its next step: it
// reverts what it changed and ends; then the store comes back and a new
// run finds a finished journal or resumes the unfinished one to an end.
func (c *chaos) storeFault(store string, hang bool) []string {
	token := "chaos-" + store + "-token"
	ch := c.newChange(false, demo.SpecOptions{StateStore: store})
	open := newConsulStore
	if store == "nomad" {
		open = newNomadStore
	}
	st := open(c.t, ch.name, token)
	var target *url.URL
	for _, kv := range st.env {
		if k, v, _ := strings.Cut(kv, "="); k == "CONSUL_HTTP_ADDR" || k == "NOMAD_ADDR" {
			if !strings.Contains(v, "://") {
				v = "http://" + v
			}
			target, _ = url.Parse(v)
		}
	}
	var broken atomic.Bool
	release := make(chan struct{})
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			if hang {
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
			http.Error(w, "chaos: store unavailable", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(release)
	var env []string
	for _, kv := range st.env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CONSUL_HTTP_ADDR":
			kv = k + "=" + strings.TrimPrefix(srv.URL, "http://")
		case "NOMAD_ADDR":
			kv = k + "=" + srv.URL
		}
		env = append(env, kv)
	}
	dir := filepath.Join(c.t.TempDir(), "report")
	p := c.start(env, func(p *proc, line string) {
		if monitorTick.MatchString(line) {
			broken.Store(true)
		}
	}, "run", "-f", ch.spec, "--report-dir", dir)
	c.wait(p)
	if p.killed {
		return []string{"rollguard died of a signal with its store failing\n" + p.output()}
	}
	broken.Store(false)
	var problems []string
	// The store is back. A lock the dead or failing run could not release
	// lapses (its TTL or lease passes: made to pass now); where the run
	// could not finish its journal, the same command takes it up.
	st.lapse()
	r, code, rdir := report.Report{}, p.code, dir
	second := &proc{done: make(chan struct{})}
	close(second.done)
	if j, err := runner.OpenJournal(c.ctx, st.store); err != nil {
		return []string{fmt.Sprintf("journal in the %s store: %v\n%s", store, err, p.output())}
	} else if !j.Doc().Finished {
		rdir = filepath.Join(filepath.Dir(dir), "second")
		second = c.start(env, nil, "run", "-f", ch.spec, "--report-dir", rdir)
		c.wait(second)
		code = second.code
		c.note(store, "resumed by a second run")
		if !strings.Contains(second.output(), "resuming the unfinished run") {
			problems = append(problems, "the second run did not resume the unfinished journal")
		}
	}
	if _, err := os.Stat(filepath.Join(rdir, "report.json")); err != nil {
		return []string{fmt.Sprintf("no report (exit %d)\n%s\n%s", code, p.output(), second.output())}
	}
	r = readReport(c.t, rdir)
	c.note(store, "ended "+r.Outcome)
	// The journal lives in the store here, not in the state directory.
	for _, h := range c.hosts {
		now := c.confs()[h]
		conf, _ := c.env.Fleet.Conf(h)
		if r.Outcome == report.OutcomePromoted {
			if conf.Version != ch.version {
				problems = append(problems, fmt.Sprintf("%s runs %s after a promotion", h, conf.Version))
			}
		} else if now != ch.before[h] {
			problems = append(problems, fmt.Sprintf("%s after outcome %s:\n%s\nwant its previous app.conf:\n%s", h, r.Outcome, now, ch.before[h]))
		}
	}
	if want := runner.ExitCode(r.Outcome); code != want {
		problems = append(problems, fmt.Sprintf("exit %d with outcome %q", code, r.Outcome))
	}
	if left := c.playbooksLeft(); len(left) > 0 {
		problems = append(problems, "playbooks left running: "+strings.Join(left, "; "))
	}
	// The journal in the store is finished (a new run starts fresh) and
	// agrees with the report; the lock is free.
	if j, err := runner.OpenJournal(c.ctx, st.store); err != nil {
		problems = append(problems, fmt.Sprintf("journal in the %s store: %v", store, err))
	} else if doc := j.Doc(); !doc.Finished || doc.Outcome != r.Outcome || doc.RunID != r.RunID {
		problems = append(problems, fmt.Sprintf("journal in the %s store: run %s finished %v outcome %q; report: run %s outcome %q", store, doc.RunID, doc.Finished, doc.Outcome, r.RunID, r.Outcome))
	}
	if h, held := st.holder(); held {
		problems = append(problems, fmt.Sprintf("the %s lock is still held by run %s", store, h.RunID))
	}
	for _, out := range []string{p.output(), second.output()} {
		if strings.Contains(out, token) {
			problems = append(problems, "the store's token was printed")
		}
	}
	if len(problems) > 0 {
		problems = append(problems, "first run:\n"+p.output(), "second run:\n"+second.output())
	}
	return problems
}
