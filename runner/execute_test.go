package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// flatMetrics answers every query with the same value for every host: a
// fleet that never degrades, so that what a test sees comes from the
// applies alone.
type flatMetrics struct{}

func (flatMetrics) Instant(_ context.Context, _ ports.Query, _ []string, _ time.Time, out []float64) error {
	for i := range out {
		out[i] = 0.2
	}
	return nil
}

func (flatMetrics) Range(_ context.Context, _ ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	out := make([]ports.Samples, len(keys))
	for i := range out {
		for t := from; !t.After(to); t = t.Add(step) {
			out[i].Timestamps = append(out[i].Timestamps, t.UnixMilli())
			out[i].Values = append(out[i].Values, 0.2)
		}
	}
	return out, nil
}

// scriptedApplier answers each playbook run with result(req) (and fail's
// error, when set) and records the runs and the orphans it was asked to
// stop.
type scriptedApplier struct {
	result func(ports.ApplyRequest) ports.ApplyResult
	fail   func(ports.ApplyRequest) error
	// block, when set, runs before a playbook's result; its error is the
	// run's.
	block func(context.Context, ports.ApplyRequest) error

	mu      sync.Mutex
	runs    []string // "playbook: host,host"
	orphans []int
}

func (a *scriptedApplier) Apply(ctx context.Context, req ports.ApplyRequest, _ func(ports.ApplyEvent)) (ports.ApplyResult, error) {
	a.mu.Lock()
	a.runs = append(a.runs, fmt.Sprintf("%s: %s", req.Playbook[strings.LastIndex(req.Playbook, "/")+1:], strings.Join(req.Limit, ",")))
	a.mu.Unlock()
	if a.block != nil {
		if err := a.block(ctx, req); err != nil {
			return ports.ApplyResult{}, err
		}
	}
	var err error
	if a.fail != nil {
		err = a.fail(req)
	}
	return a.result(req), err
}

func (a *scriptedApplier) StopOrphans(_ context.Context, pids []int) []int {
	a.orphans = append(a.orphans, pids...)
	return nil
}

// changedAll is every limited host changed.
func changedAll(req ports.ApplyRequest) ports.ApplyResult {
	var res ports.ApplyResult
	for _, h := range req.Limit {
		res.Hosts = append(res.Hosts, ports.HostResult{Host: h, Status: ports.HostChanged, ChangedTasks: []string{"write app.conf"}})
	}
	return res
}

const execSpec = `name: exec
targets:
  static: [web-1, web-2, web-3, web-4]
canary: {hosts: 1, monitor: 5m}
apply: {playbook: playbooks/site.yml, version: v2}
revert: {playbook: playbooks/revert.yml, verify: 1m}
metrics:
  url: http://127.0.0.1:1
  queries:
    latency: {query: latency}
policies:
  - name: any-degraded
    rollback_when: 'fleet.degraded > 0'
`

// execRollout is a live rollout of spec (execSpec, or a variant) under a
// simulated clock, with a journal and a history in memory.
func execRollout(t *testing.T, spec string, apply func(ports.ApplyRequest) ports.ApplyResult) (*Rollout, *scriptedApplier, *memStore) {
	t.Helper()
	s, pols, err := load("testdata/exec.yaml", []byte(spec), testEnv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := MakePlan(s, StaticHosts(s))
	if err != nil {
		t.Fatal(err)
	}
	store := newMemStore()
	journal, err := OpenJournal(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	app := &scriptedApplier{result: apply}
	return &Rollout{
		Spec: s, Policies: pols, Plan: plan, Metrics: flatMetrics{}, Applier: app,
		Clock: NewSimClock(time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)), RunID: "run-1",
		Journal: journal, History: &history.History{Store: store},
	}, app, store
}

// promoted executes ro and returns its report, failing the test unless
// the rollout promoted.
func promoted(t *testing.T, ro *Rollout) *report.Report {
	t.Helper()
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Outcome != report.OutcomePromoted {
		t.Fatalf("outcome %q (%s), want promoted", res.Report.Outcome, res.Report.Reason)
	}
	return res.Report
}

// A host whose play failed before changing anything is left alone, one
// whose play failed after changing something is reverted by name, and the
// report, the journal and the history tell the same story of each host.
// Two failed hosts of three in wave-1 are what revert.max_failed: 2
// tolerates, so the rollout goes on.
func TestExecuteFailedHosts(t *testing.T) {
	spec := strings.Replace(execSpec, "verify: 1m}", "verify: 1m, max_failed: 2}", 1)
	ro, app, store := execRollout(t, spec, func(req ports.ApplyRequest) ports.ApplyResult {
		res := changedAll(req)
		if strings.HasSuffix(req.Playbook, "revert.yml") {
			return res
		}
		for i, h := range res.Hosts {
			switch h.Host {
			case "web-2":
				res.Hosts[i] = ports.HostResult{Host: h.Host, Status: ports.HostFailed, Message: "no space left"}
			case "web-3":
				res.Hosts[i].Status, res.Hosts[i].Message = ports.HostFailed, "handler failed"
			}
		}
		return res
	})
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if res.ExitCode != 0 || r.Outcome != report.OutcomePromoted || !strings.Contains(r.Reason, "2 hosts carry the change") {
		t.Fatalf("exit %d, outcome %q (%s): want promoted with web-1 and web-4 carrying the change", res.ExitCode, r.Outcome, r.Reason)
	}
	if want := []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4", "revert.yml: web-3"}; !slices.Equal(app.runs, want) {
		t.Errorf("playbook runs %q, want %q", app.runs, want)
	}

	type hostStory struct {
		applied, reverted bool
		why               string
		version           string // the history's outcome of v2
	}
	want := map[string]hostStory{
		"web-1": {true, false, "", history.VersionKnownGood},
		"web-2": {false, false, "apply failed before changing anything; left as it was", history.VersionFailed},
		"web-3": {true, true, "apply failed on the host", history.VersionReverted},
		"web-4": {true, false, "", history.VersionKnownGood},
	}
	for _, h := range r.Hosts {
		recs, err := ro.History.For(t.Context(), h.Name)
		if err != nil || len(recs) != 1 {
			t.Fatalf("history of %s: %v, %v", h.Name, recs, err)
		}
		got := hostStory{h.Applied, h.Reverted, h.RevertReason, recs[0].Outcome}
		if got != want[h.Name] {
			t.Errorf("%s: report and history say %+v, want %+v", h.Name, got, want[h.Name])
		}
	}
	if len(r.Rollbacks) != 1 || !slices.Equal(r.Rollbacks[0].Hosts, []string{"web-3"}) || !r.Rollbacks[0].Verified {
		t.Errorf("rollbacks %+v: want web-3's, verified", r.Rollbacks)
	}

	// The journal agrees: web-3 reverted at host level, only web-4 passed
	// in the last wave, and the run ended promoted.
	j, err := OpenJournal(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range j.Doc().Entries {
		steps = append(steps, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", e.Step, e.Wave, strings.Join(e.Hosts, ","), e.Scope)))
	}
	wantSteps := []string{
		"run-start", "apply-start canary web-1", "apply-end canary web-1", "wave-passed canary web-1",
		"apply-start wave-1 web-2,web-3,web-4", "apply-end wave-1 web-2,web-3,web-4",
		"revert-start  web-3 host", "revert-end  web-3 host", "wave-passed wave-1 web-4", "run-end",
	}
	if !slices.Equal(steps, wantSteps) {
		t.Errorf("journal\n%s\nwant\n%s", strings.Join(steps, "\n"), strings.Join(wantSteps, "\n"))
	}
	if !j.Doc().Finished || j.Doc().Outcome != report.OutcomePromoted {
		t.Errorf("journal finished %v, outcome %q", j.Doc().Finished, j.Doc().Outcome)
	}
}

// crashed journals run-0 of ro with entries, as a run killed after them
// left it in store, and makes ro the run that resumes it.
func crashed(t *testing.T, ro *Rollout, store *memStore, entries ...JournalEntry) {
	t.Helper()
	doc := JournalDoc{RunID: "run-0", Rollout: ro.Spec.Name, Version: "v2", StartedAt: ro.Clock.Now(), Plan: (&execution{Rollout: ro}).journalPlan()}
	if err := ro.Journal.Begin(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := ro.Journal.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	j, err := OpenJournal(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	ro.Journal, ro.Resume, ro.RunID = j, j.Doc().ResumeState(), "run-0"
}

// A resumed run has the Applier stop the playbooks that the killed run
// started on this machine, and no other, before it applies again.
func TestResumeStopsOrphans(t *testing.T) {
	ro, app, store := execRollout(t, execSpec, changedAll)
	host, _ := os.Hostname()
	t0 := ro.Clock.Now()
	crashed(t, ro, store,
		JournalEntry{Step: JournalApplyStart, Wave: "canary", Hosts: []string{"web-1"}, Start: t0},
		JournalEntry{Step: JournalPlaybook, Detail: host + ":4242"},
		JournalEntry{Step: JournalPlaybook, Detail: "another-machine:4343"},
	)
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(app.orphans, []int{4242}) {
		t.Errorf("asked to stop %v, want only this machine's playbook 4242", app.orphans)
	}
	if res.Report.Outcome != report.OutcomePromoted || app.runs[0] != "site.yml: web-1" {
		t.Errorf("outcome %q, runs %q: want the canary applied again, then promoted", res.Report.Outcome, app.runs)
	}
}

// A playbook that hangs past apply.timeout (on the run's clock) is
// stopped, and the wave it was applying is reverted: the rollout never
// waits on it for ever.
func TestApplyTimeoutStopsAHangingPlaybook(t *testing.T) {
	ro, app, _ := execRollout(t, execSpec, changedAll)
	ro.Spec.Apply.Timeout = Duration(2 * time.Minute)
	hung := make(chan struct{})
	app.block = func(ctx context.Context, req ports.ApplyRequest) error {
		if strings.HasSuffix(req.Playbook, "site.yml") {
			close(hung)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	<-hung
	r := res.Report
	if r.Outcome != report.OutcomeRolledBack || !strings.Contains(r.Reason, "ran past apply.timeout (2m)") {
		t.Fatalf("outcome %q (%s): want rolled back because apply.timeout passed", r.Outcome, r.Reason)
	}
	if r.Rollback == nil || !slices.Equal(r.Rollback.Hosts, []string{"web-1"}) {
		t.Errorf("rollback %+v: want the canary reverted", r.Rollback)
	}
	if ended := r.Waves[0].ApplyEndedAt; ended == nil || ended.Sub(*r.Waves[0].ApplyStartedAt) > 3*time.Minute {
		t.Errorf("the apply ended at %v, want within a tick of the 2m timeout", ended)
	}
}

// A run whose state store stops answering after the canary passed cannot
// journal its next step. It must not act unjournaled either: reverting
// the canary behind the journal's back would let the run that resumes it
// trust a canary that no longer carries the change and promote around it
// (what the fault suite's store cases found). So the canary keeps the
// change, as the journal says, the run names it and ends, and once the
// store answers the same command resumes the run to a promotion with
// every host on the change.
func TestBrokenStoreLeavesHostsAsTheJournalSays(t *testing.T) {
	ro, app, store := execRollout(t, execSpec, changedAll)
	ro.Journal.AfterWrite = func(e JournalEntry) {
		if e.Step == JournalWavePassed {
			store.setFail(errors.New("connection refused"))
		}
	}
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if r.Outcome != report.OutcomeError || res.ExitCode != 1 || !strings.Contains(r.Reason, "connection refused") ||
		!strings.Contains(r.Reason, "web-1 NOT reverted") || !strings.Contains(r.Reason, "--abort") {
		t.Fatalf("exit %d, outcome %q (%s): want error, naming the canary that keeps the change", res.ExitCode, r.Outcome, r.Reason)
	}
	if want := []string{"site.yml: web-1"}; !slices.Equal(app.runs, want) {
		t.Errorf("playbook runs %q, want %q: no revert the journal does not know of", app.runs, want)
	}
	for _, h := range r.Hosts {
		if h.Name == "web-1" && (h.Reverted || !strings.Contains(h.RevertReason, "not reverted")) {
			t.Errorf("report says of web-1: reverted %v (%s)", h.Reverted, h.RevertReason)
		}
	}
	if rb := r.Rollback; rb == nil || rb.Verified || len(rb.Methods) != 1 || rb.Methods[0].OK {
		t.Errorf("rollback %+v: want one method that did not run", rb)
	}

	// The store answers again: the journal holds the unfinished run with
	// the canary applied and no revert; the same command resumes it.
	store.setFail(nil)
	j, err := OpenJournal(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range j.Doc().Entries {
		if e.Step == JournalRevertStart || e.Step == JournalRevertEnd {
			t.Errorf("journal records a %s that did not happen: %+v", e.Step, e)
		}
	}
	if !j.Unfinished() {
		t.Fatal("journal finished: nothing to resume")
	}
	ro.Journal, ro.Resume, ro.Clock = j, j.Doc().ResumeState(), NewSimClock(ro.Clock.Now().Add(time.Minute))
	res, err = ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Outcome != report.OutcomePromoted {
		t.Fatalf("resumed run: outcome %q (%s), want promoted", res.Report.Outcome, res.Report.Reason)
	}
	if want := []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4"}; !slices.Equal(app.runs, want) {
		t.Errorf("playbook runs %q, want %q: the canary kept the change, the other hosts get it", app.runs, want)
	}
}

// --abort with the store failing: the revert is not journaled, so it does
// not run; the verdict says so and names the host, never "reverted".
func TestAbortWithTheStoreFailing(t *testing.T) {
	ro, app, store := execRollout(t, execSpec, changedAll)
	t0 := ro.Clock.Now()
	crashed(t, ro, store,
		JournalEntry{Step: JournalApplyStart, Wave: "canary", Hosts: []string{"web-1"}, Start: t0},
		JournalEntry{Step: JournalApplyEnd, Wave: "canary", Hosts: []string{"web-1"}},
	)
	ro.Abort = true
	store.setFail(errors.New("connection refused"))
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if r.Outcome != report.OutcomeError || strings.Contains(r.Reason, "reverted 1") || !strings.Contains(r.Reason, "web-1 NOT reverted") {
		t.Errorf("outcome %q (%s): want error naming web-1 as not reverted", r.Outcome, r.Reason)
	}
	if len(app.runs) != 0 {
		t.Errorf("playbook runs %q, want none", app.runs)
	}
}

// slowMetrics is flatMetrics on a metrics source whose every poll takes
// work of the simulated clock's time, and it records when each poll asked.
type slowMetrics struct {
	flatMetrics
	clock *SimClock
	work  time.Duration
	asked []time.Time
}

func (m *slowMetrics) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	m.asked = append(m.asked, at)
	if err := m.clock.Sleep(ctx, m.work); err != nil {
		return err
	}
	return m.flatMetrics.Instant(ctx, q, keys, at, out)
}

// A slow metrics source does not stretch the polls: they stay one
// metrics.interval apart, so a 5-minute canary at 1-minute polls keeps its
// 5 polls however long each takes to answer, and a poll that takes longer
// than an interval skips the polls it overran instead of firing them at
// once.
func TestPollsKeepTheirIntervalOnASlowSource(t *testing.T) {
	spec := strings.Replace(execSpec, "  url: http://127.0.0.1:1\n", "  url: http://127.0.0.1:1\n  interval: 1m\n", 1)
	for _, c := range []struct {
		work, apart time.Duration
	}{
		{0, time.Minute},
		{20 * time.Second, time.Minute},      // drifted to 1m20s before
		{150 * time.Second, 3 * time.Minute}, // the poll at +2m was overrun: skipped
	} {
		t.Run(c.work.String(), func(t *testing.T) {
			ro, _, _ := execRollout(t, spec, changedAll)
			clock := NewSimClock(ro.Clock.Now())
			m := &slowMetrics{clock: clock, work: c.work}
			ro.Clock, ro.Metrics = clock, m
			r := promoted(t, ro)
			// The canary's polls, and those of its 5 monitoring minutes:
			// after its apply ended, up to its end (the report dates both).
			w := r.Waves[0]
			var canary []time.Time
			monitored := 0
			for _, at := range m.asked {
				if !at.After(*w.FinishedAt) {
					canary = append(canary, at)
					if at.After(*w.ApplyEndedAt) {
						monitored++
					}
				}
			}
			for i := 1; i < len(canary); i++ {
				if d := canary[i].Sub(canary[i-1]); d != c.apart {
					t.Fatalf("canary polls at %v: poll %d came %s after the one before, want %s", canary, i, d, c.apart)
				}
			}
			t.Logf("canary polls %s apart, %d in its 5 monitoring minutes", c.apart, monitored)
			if want := int((5*time.Minute + c.apart - 1) / c.apart); monitored < want {
				t.Errorf("the canary's 5 minutes of monitoring had %d polls, want %d", monitored, want)
			}
			// A poll that outlasts the interval is said once, in the
			// report.
			var slow []string
			for _, w := range r.Warnings {
				if strings.Contains(w, "not less than metrics.interval") {
					slow = append(slow, w)
				}
			}
			want := 0
			if c.work >= time.Minute {
				want = 1
			}
			if len(slow) != want {
				t.Errorf("%d warnings about slow polls %q, want %d", len(slow), slow, want)
			}
		})
	}
}

// barrierMetrics is flatMetrics on a source that answers a poll's queries,
// and a baseline's, only once all n of them have been asked: queries asked
// one after another time out.
type barrierMetrics struct {
	flatMetrics
	n int

	mu      sync.Mutex
	arrived map[time.Time]int
	all     map[time.Time]chan struct{}
}

func (b *barrierMetrics) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if err := b.wait(q, at); err != nil {
		return err
	}
	return b.flatMetrics.Instant(ctx, q, keys, at, out)
}

// Range holds a baseline's queries as Instant holds a poll's, by the
// window's end.
func (b *barrierMetrics) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	if err := b.wait(q, to); err != nil {
		return nil, err
	}
	return b.flatMetrics.Range(ctx, q, keys, from, to, step)
}

// wait returns once the n queries at time at have all been asked.
func (b *barrierMetrics) wait(q ports.Query, at time.Time) error {
	b.mu.Lock()
	if b.all[at] == nil {
		b.all[at] = make(chan struct{})
	}
	all := b.all[at]
	if b.arrived[at]++; b.arrived[at] == b.n {
		close(all)
	}
	b.mu.Unlock()
	select {
	case <-all:
		return nil
	case <-time.After(10 * time.Second): // a guard, not a timing
		return fmt.Errorf("query %s at %s: the other queries were not asked while it ran", q.Name, at.Format(time.TimeOnly))
	}
}

// A poll asks its queries at once, and a wave's baseline too, so that
// each takes its slowest query's time, not their sum: a source that
// answers only when every query of the poll (or baseline) is under way
// answers them all, and the rollout promotes.
func TestPollAsksItsQueriesAtOnce(t *testing.T) {
	spec := strings.Replace(execSpec, "    latency: {query: latency}\n",
		"    latency: {query: latency}\n    errors: {query: errors}\n    cpu: {query: cpu}\n", 1)
	ro, _, _ := execRollout(t, spec, changedAll)
	ro.Metrics = &barrierMetrics{n: 3, arrived: map[time.Time]int{}, all: map[time.Time]chan struct{}{}}
	r := promoted(t, ro)
	for _, q := range []string{"latency", "errors", "cpu"} {
		if n := len(r.Series["web-1"][q]); n < 5 {
			t.Errorf("web-1's %s has %d points in the report, want every poll's", q, n)
		}
	}
}
