package runner

import (
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// regressingFleet is a fleet whose latency on a host rises to 0.5 while
// that host carries the change: from when the runner has taken the
// apply's result (the telemetry below hears it), so that no tick sees
// the change before the runner knows what the apply did, until
// revert.yml ran on it. late delays a host's rise after its apply, and
// recover its return after its revert (none: at once).
type regressingFleet struct {
	mu      sync.Mutex
	changed map[string]bool
	since   map[string]time.Time // when changed last flipped
	late    map[string]time.Duration
	recover time.Duration
}

func (f *regressingFleet) value(query, host string, at time.Time) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	wiggle := 0.002 * math.Sin(float64(at.Unix()/15)+float64(len(host)))
	since, flipped := f.since[host]
	switch {
	case query == "rps":
		return 100 + 100*wiggle
	case f.changed[host] && !at.Before(since.Add(f.late[host])),
		!f.changed[host] && flipped && at.Before(since.Add(f.recover)):
		return 0.5 + wiggle
	}
	return 0.2 + wiggle
}

func (f *regressingFleet) Instant(_ context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	for i, k := range keys {
		out[i] = f.value(q.Name, k, at)
	}
	return nil
}

func (f *regressingFleet) Range(_ context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	out := make([]ports.Samples, len(keys))
	for i, k := range keys {
		for t := from; !t.After(to); t = t.Add(step) {
			out[i].Timestamps = append(out[i].Timestamps, t.UnixMilli())
			out[i].Values = append(out[i].Values, f.value(q.Name, k, t))
		}
	}
	return out, nil
}

// recordedTelemetry keeps every telemetry call as a line; onApplied,
// when set, hears each wave's apply end.
type recordedTelemetry struct {
	mu        sync.Mutex
	calls     []string
	ticks     int
	delay     []time.Duration
	onApplied func(wave string)
}

func (t *recordedTelemetry) add(s string) { t.mu.Lock(); t.calls = append(t.calls, s); t.mu.Unlock() }
func (t *recordedTelemetry) HostsApplied(wave string, n int) {
	t.add("applied " + wave + " " + strings.Repeat("+", n))
	if t.onApplied != nil {
		t.onApplied(wave)
	}
}
func (t *recordedTelemetry) HostsReverted(trigger string, n int) {
	t.add("reverted " + trigger + " " + strings.Repeat("+", n))
}
func (t *recordedTelemetry) Decision(policy, scope, outcome string) {
	t.add("decision " + policy + " " + scope + " " + outcome)
}
func (t *recordedTelemetry) Tick(time.Duration) { t.mu.Lock(); t.ticks++; t.mu.Unlock() }
func (t *recordedTelemetry) Decided(policy string, d time.Duration) {
	t.add("decided " + policy)
	t.mu.Lock()
	t.delay = append(t.delay, d)
	t.mu.Unlock()
}
func (t *recordedTelemetry) RunEnded(outcome string) { t.add("ended " + outcome) }

const reportSpec = `name: exec
targets:
  static: [web-1, web-2, web-3, web-4]
canary: {hosts: 1, monitor: 5m}
apply: {playbook: playbooks/site.yml, version: v2}
revert: {playbook: playbooks/revert.yml, verify: 2m}
metrics:
  url: http://127.0.0.1:1
  baseline: 20m
  queries:
    rps: {query: rps, worse: lower}
    latency: {query: latency}
policies:
  - name: any-degraded
    rollback_when: 'fleet.degraded > 0'
`

// regressing is a live rollout of spec over regressingFleet under a
// simulated clock that starts at regressionStart, its telemetry and the
// alerts it sent.
type regressing struct {
	ro    *Rollout
	tel   *recordedTelemetry
	fleet *regressingFleet

	mu     sync.Mutex
	alerts []ports.Alert
}

var regressionStart = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)

// execute runs the rollout, failing the test on an error.
func (g *regressing) execute(t *testing.T) *Result {
	t.Helper()
	res, err := g.ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// canaryEmptied fails unless the run rolled back because host policies
// reverted every host of the canary.
func canaryEmptied(t *testing.T, r *report.Report) {
	t.Helper()
	if r.Outcome != report.OutcomeRolledBack || !strings.Contains(r.Reason, "no host of canary carries the change") {
		t.Errorf("outcome %s: %q, want rolled_back: no host of canary carries the change", r.Outcome, r.Reason)
	}
}

func regressingRollout(t *testing.T, specYAML string) *regressing {
	t.Helper()
	spec, pols, err := load("testdata/exec.yaml", []byte(specYAML), testEnv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := MakePlan(spec, StaticHosts(spec))
	if err != nil {
		t.Fatal(err)
	}
	clock := NewSimClock(regressionStart)
	fleet := &regressingFleet{changed: map[string]bool{}, since: map[string]time.Time{}, late: map[string]time.Duration{}}
	app := &scriptedApplier{result: func(req ports.ApplyRequest) ports.ApplyResult {
		if strings.HasSuffix(req.Playbook, "revert.yml") {
			fleet.mu.Lock()
			for _, h := range req.Limit {
				fleet.changed[h], fleet.since[h] = false, clock.Now()
			}
			fleet.mu.Unlock()
		}
		res := changedAll(req)
		if strings.HasSuffix(req.Playbook, "revert.yml") {
			for i := range res.Hosts {
				res.Hosts[i].ChangedTasks = []string{"restore app.conf"}
			}
		}
		return res
	}}
	g := &regressing{tel: &recordedTelemetry{onApplied: func(wave string) {
		fleet.mu.Lock()
		defer fleet.mu.Unlock()
		for _, w := range plan.Waves {
			for _, h := range w.Hosts {
				if w.Name == wave {
					fleet.changed[h.Name], fleet.since[h.Name] = true, clock.Now()
				}
			}
		}
	}}, fleet: fleet}
	g.ro = &Rollout{
		Spec: spec, Policies: pols, Plan: plan, Metrics: fleet, Applier: app,
		Clock: clock, RunID: "run-1", Telemetry: g.tel,
		Alerter: ports.AlerterFunc(func(_ context.Context, a ports.Alert) error {
			g.mu.Lock()
			g.alerts = append(g.alerts, a)
			g.mu.Unlock()
			return nil
		}),
	}
	return g
}

// The runner fills what the reports read, from the host states: metrics
// in the spec's order with their direction, the detection parameters,
// each host's baseline samples at their times, the baseline window, the
// class of every metric, the tasks that changed, when verification
// began; the alerts say what changed next to what degraded, and the
// telemetry hears of the apply, every decision, every tick, the fire
// and its delay, the revert and the end.
func TestReportFromTheHostStates(t *testing.T) {
	g := regressingRollout(t, reportSpec)
	res := g.execute(t)
	spec, start, tel, alerts := g.ro.Spec, regressionStart, g.tel, g.alerts
	r := res.Report
	if r.Outcome != report.OutcomeRolledBack {
		t.Fatalf("outcome %q (%s), want rolled_back", r.Outcome, r.Reason)
	}

	if want := []report.QueryReport{{Name: "rps", Worse: "lower"}, {Name: "latency", Worse: "higher"}}; !slices.Equal(r.Queries, want) {
		t.Errorf("queries %+v, want the spec's order %+v", r.Queries, want)
	}
	if d := r.Detection; d == nil || d.Sensitivity != "medium" || d.Threshold <= 0 || d.Band <= 0 {
		t.Errorf("detection %+v, want medium with its threshold and band", d)
	}
	canary := r.Waves[0]
	if canary.BaselineFrom == nil || !canary.BaselineFrom.Equal(start.Add(-20*time.Minute)) || !canary.ApplyStartedAt.Equal(start) {
		t.Errorf("canary baseline from %v, apply %v: want 11:40 and 12:00", canary.BaselineFrom, canary.ApplyStartedAt)
	}
	for _, h := range []string{"web-1", "web-4"} {
		pts := r.BaselineSeries[h]["latency"]
		if len(pts) < 70 || pts[0].T.Before(*canary.BaselineFrom) || !pts[len(pts)-1].T.Before(start) || math.Abs(pts[0].V-0.2) > 0.01 {
			t.Errorf("%s's baseline series: %d points from %v to %v, want ~80 at 0.2 inside [11:40, 12:00)", h, len(pts), pts[0].T, pts[len(pts)-1].T)
		}
	}

	web1 := r.Hosts[0]
	if web1.Name != "web-1" || web1.Metrics["latency"].Class != report.ClassHigh || web1.Metrics["rps"].Class != report.ClassPass {
		t.Errorf("%s classes: latency %q, rps %q; want high, pass", web1.Name, web1.Metrics["latency"].Class, web1.Metrics["rps"].Class)
	}
	if !slices.Equal(web1.ChangedTasks, []string{"write app.conf"}) {
		t.Errorf("web-1 changed tasks %q, want the apply's [write app.conf]", web1.ChangedTasks)
	}
	rb := r.Rollback
	if rb == nil || rb.HostLevel || rb.VerifyStartedAt == nil || rb.VerifyStartedAt.Before(rb.StartedAt) || rb.VerifyStartedAt.After(rb.FinishedAt) || !rb.Verified {
		t.Fatalf("rollback %+v: want a verified fleet-level revert with its verification start between its start and end", rb)
	}

	const attributed = "after `write app.conf` changed on web-1, latency 0.2"
	var rollbackAlert *ports.Alert
	for i := range alerts {
		if alerts[i].Event == ports.EventRollback {
			rollbackAlert = &alerts[i]
		}
	}
	if rollbackAlert == nil || len(rollbackAlert.Attribution) != 1 || !strings.HasPrefix(rollbackAlert.Attribution[0], attributed) ||
		!regexp.MustCompile(`→ 0\.(49\d*|5\d*) \(\+1[45]\d%\)$`).MatchString(rollbackAlert.Attribution[0]) {
		t.Errorf("rollback alert %+v: want the attribution %q… → 0.5 (+150%%)", rollbackAlert, attributed)
	}
	if md := report.Markdown(r); !strings.Contains(md, attributed) {
		t.Errorf("report.md does not say %q:\n%s", attributed, md)
	}

	var calls []string
	for _, c := range tel.calls {
		if !strings.HasPrefix(c, "decision ") || strings.HasSuffix(c, " fire") {
			calls = append(calls, c)
		}
	}
	want := []string{"applied canary +", "decision any-degraded fleet fire", "decided any-degraded", "reverted any-degraded +", "ended rolled_back"}
	if !slices.Equal(calls, want) {
		t.Errorf("telemetry %q, want %q (passes left out)", calls, want)
	}
	fleetDecisions := 0
	for _, d := range r.Decisions {
		if d.Scope == "fleet" {
			fleetDecisions++
		}
	}
	if n := strings.Count(strings.Join(tel.calls, "\n"), "decision any-degraded fleet"); n != fleetDecisions || tel.ticks != len(r.Timeline) {
		t.Errorf("telemetry heard %d decisions and %d ticks; the report has %d and %d", n, tel.ticks, fleetDecisions, len(r.Timeline))
	}
	// The delay heard is from web-1 leaving its band to the fire. How many
	// simulated ticks the apply spans depends on when its goroutine runs,
	// so web-1 may leave its band during the warm-up (detection.warmup from
	// the apply's start), whose polls cannot decide: the fire must come
	// within 5 ticks of the later of the two.
	var fired time.Time
	for _, d := range r.Decisions {
		if d.Fired {
			fired = d.At
			break
		}
	}
	if len(tel.delay) != 1 || tel.delay[0] < 0 || fired.IsZero() {
		t.Fatalf("decision delay %v, fired at %v: want one delay and a fire", tel.delay, fired)
	}
	left := fired.Add(-tel.delay[0])
	from := canary.ApplyStartedAt.Add(spec.Detection.Warmup.D())
	if left.After(from) {
		from = left
	}
	if d := fired.Sub(from); d > 5*spec.Metrics.Interval.D() {
		t.Errorf("fired %v after web-1 left its band (at %v) and the warm-up ended (%v after the apply began): want within 5 ticks",
			d, left.Format(time.TimeOnly), spec.Detection.Warmup.D())
	}
}

// A host policy's revert is host-level: the report says so, the verdict
// line names the reverted host, and the host fire's delay is heard. The
// canary's only host reverted, no host of the canary carries the change:
// the stage does not pass and the run ends rolled back there.
func TestHostLevelRevertInTheReport(t *testing.T) {
	g := regressingRollout(t, strings.Replace(reportSpec, "rollback_when: 'fleet.degraded > 0'",
		"rollback_when: 'fleet.degraded > 3'\n    host_rollback_when: 'host.metrics.latency.z > 6'", 1))
	res := g.execute(t)
	r := res.Report
	var reverted []string
	for _, rb := range r.Rollbacks {
		if !rb.HostLevel {
			t.Errorf("rollback of %v is not host-level: %+v", rb.Hosts, rb)
		}
		reverted = append(reverted, rb.Hosts...)
	}
	if !slices.Equal(reverted, []string{"web-1"}) {
		t.Fatalf("reverted %v, want the canary web-1 alone (outcome %s: %s)", reverted, r.Outcome, r.Reason)
	}
	canaryEmptied(t, r)
	if s := report.Summary(r); !strings.Contains(s, "web-1 reverted (host policy any-degraded") {
		t.Errorf("verdict line %q does not name web-1's host-level revert", s)
	}
	if n := strings.Count(strings.Join(g.tel.calls, "\n"), "decided any-degraded"); n != 1 {
		t.Errorf("telemetry heard %d decision delays, want one for the host fire: %q", n, g.tel.calls)
	}
}

// twoCanarySpec is reportSpec with a canary of web-1 and web-2 monitored
// for monitor, its fleet policy rule and the host policy
// host.metrics.latency.z > 6.
func twoCanarySpec(rule, monitor string) string {
	spec := strings.Replace(reportSpec, "rollback_when: 'fleet.degraded > 0'",
		"rollback_when: '"+rule+"'\n    host_rollback_when: 'host.metrics.latency.z > 6'", 1)
	return strings.Replace(spec, "canary: {hosts: 1, monitor: 5m}", "canary: {hosts: 2, monitor: "+monitor+"}", 1)
}

// Hosts whose host policy fires at the same poll are reverted together:
// one revert playbook run limited to them and one verification, as a
// fleet rollback reverts its hosts, not one after the other, each
// holding up the next and the watch of every other host for a whole
// verification.
func TestHostFiresOfOnePollRevertTogether(t *testing.T) {
	spec := twoCanarySpec("fleet.degraded > 3", "5m")
	g := regressingRollout(t, spec)
	res := g.execute(t)
	r := res.Report
	var fired []time.Time
	for _, d := range r.Decisions {
		if d.Scope == "host" && d.Fired {
			fired = append(fired, d.At)
		}
	}
	if len(fired) != 2 || !fired[0].Equal(fired[1]) {
		t.Fatalf("host fires at %v, want web-1 and web-2 at one poll", fired)
	}
	runs := g.ro.Applier.(*scriptedApplier).runs
	if reverts := slices.DeleteFunc(slices.Clone(runs), func(s string) bool { return !strings.HasPrefix(s, "revert.yml") }); !slices.Equal(reverts, []string{"revert.yml: web-1,web-2"}) {
		t.Errorf("revert playbook runs %q, want one limited to web-1 and web-2", reverts)
	}
	if len(r.Rollbacks) != 1 || !slices.Equal(r.Rollbacks[0].Hosts, []string{"web-1", "web-2"}) || !r.Rollbacks[0].HostLevel || !r.Rollbacks[0].Verified {
		for _, rb := range r.Rollbacks {
			t.Logf("rollback of %v at %s, verified at %s: %s", rb.Hosts, rb.StartedAt.Format(time.TimeOnly), rb.FinishedAt.Format(time.TimeOnly), rb.Verification)
		}
		t.Fatalf("%d rollbacks, want one host-level revert of web-1 and web-2, verified", len(r.Rollbacks))
	}
	rb := r.Rollbacks[0]
	t.Logf("fired at %s, both reverted and verified at %s", fired[0].Format(time.TimeOnly), rb.FinishedAt.Format(time.TimeOnly))
	for _, h := range r.Hosts {
		if want := h.Name == "web-1" || h.Name == "web-2"; h.Reverted != want || want && !strings.HasPrefix(h.RevertReason, "host policy any-degraded: ") {
			t.Errorf("%s reverted %v (%q)", h.Name, h.Reverted, h.RevertReason)
		}
	}
	canaryEmptied(t, r)
}

// A fleet policy that fires at the poll a host policy fires ends the
// rollout: the host's revert is the fleet rollback's, not one of its own
// verified ahead of it.
func TestFleetFireTakesThatPollsHostFires(t *testing.T) {
	spec := twoCanarySpec("fraction(hosts, .metrics.latency.z > 6) > 0.5", "5m")
	g := regressingRollout(t, spec)
	res := g.execute(t)
	r := res.Report
	var fired []string
	for _, d := range r.Decisions {
		if d.Fired {
			fired = append(fired, fmt.Sprintf("%s %s %s", d.At.Format(time.TimeOnly), d.Scope, d.Host))
		}
	}
	if len(fired) != 3 || fired[0][:8] != fired[2][:8] {
		t.Fatalf("fires %q, want the fleet policy and the host policy on web-1 and web-2 at one poll", fired)
	}
	if len(r.Rollbacks) != 1 || r.Rollbacks[0].HostLevel || r.Rollbacks[0].Trigger != "any-degraded" || !slices.Equal(r.Rollbacks[0].Hosts, []string{"web-1", "web-2"}) {
		for _, rb := range r.Rollbacks {
			t.Logf("rollback of %v by %s (host-level %v), %s to %s", rb.Hosts, rb.Trigger, rb.HostLevel, rb.StartedAt.Format(time.TimeOnly), rb.FinishedAt.Format(time.TimeOnly))
		}
		t.Fatalf("%d rollbacks, want one by the fleet policy of web-1 and web-2", len(r.Rollbacks))
	}
	if r.Outcome != report.OutcomeRolledBack || !strings.HasPrefix(r.Reason, "any-degraded fired in wave canary") {
		t.Errorf("outcome %s: %q, want rolled_back by any-degraded", r.Outcome, r.Reason)
	}
}

// A host-level revert is verified while the rollout goes on: the polls
// that watch the reverted host come back into its band are the stage's
// own, and every other host is judged at each of them. Here web-1's
// latency takes 3 minutes to come back after its revert, and web-2's
// rises 2 minutes after the apply: web-2 is reverted at its own poll,
// while web-1's verification is still under way, not when it ends.
func TestHostRevertIsVerifiedWhileTheRolloutGoesOn(t *testing.T) {
	spec := twoCanarySpec("fleet.degraded > 3", "10m")
	spec = strings.Replace(spec, "verify: 2m", "verify: 5m", 1)
	g := regressingRollout(t, spec)
	g.fleet.late["web-2"] = 2 * time.Minute
	g.fleet.recover = 3 * time.Minute
	if testing.Verbose() {
		g.ro.Out = t.Output()
	}
	res := g.execute(t)
	r := res.Report
	if len(r.Rollbacks) != 2 {
		t.Fatalf("%d rollbacks, want web-1's and web-2's (outcome %s: %s)", len(r.Rollbacks), r.Outcome, r.Reason)
	}
	first, second := r.Rollbacks[0], r.Rollbacks[1]
	for _, rb := range r.Rollbacks {
		t.Logf("%v reverted at %s, verified at %s: %s", rb.Hosts, rb.StartedAt.Format(time.TimeOnly), rb.FinishedAt.Format(time.TimeOnly), rb.Verification)
	}
	if !slices.Equal(first.Hosts, []string{"web-1"}) || !slices.Equal(second.Hosts, []string{"web-2"}) || !first.Verified || !second.Verified {
		t.Fatalf("want web-1's then web-2's revert, both verified")
	}
	if !second.StartedAt.Before(first.FinishedAt) {
		t.Errorf("web-2's revert began at %s, after web-1's verification ended (%s): want while it was under way",
			second.StartedAt.Format(time.TimeOnly), first.FinishedAt.Format(time.TimeOnly))
	}
	if d := first.FinishedAt.Sub(*first.VerifyStartedAt); d < 3*time.Minute {
		t.Errorf("web-1 verified %s after its revert, want no sooner than its 3 minutes back", d)
	}
	canaryEmptied(t, r)
}

// A host-level revert whose host does not come back is alerted when its
// verification runs out, while the rollout goes on, and the promotion at
// the end is a halt: a person must look at that host.
func TestHostRevertNotVerifiedWhileTheRolloutGoesOn(t *testing.T) {
	spec := twoCanarySpec("fleet.degraded > 3", "5m")
	g := regressingRollout(t, spec)
	g.fleet.late["web-2"] = time.Hour // web-2 and the later hosts hold
	g.fleet.late["web-3"] = time.Hour
	g.fleet.late["web-4"] = time.Hour
	g.fleet.recover = time.Hour // web-1 does not come back
	res := g.execute(t)
	r := res.Report
	if len(r.Rollbacks) != 1 || r.Rollbacks[0].Verified || !strings.HasPrefix(r.Rollbacks[0].Verification, "not verified: after 2m") {
		t.Fatalf("rollbacks %+v, want web-1's, not verified after 2m", r.Rollbacks)
	}
	rb := r.Rollbacks[0]
	var failed []ports.Alert
	for _, a := range g.alerts {
		if a.Event == ports.EventVerifyFailed {
			failed = append(failed, a)
		}
	}
	canaryEnd := *r.Waves[0].FinishedAt
	if len(failed) != 1 || !slices.Equal(failed[0].Hosts, []string{"web-1"}) || !failed[0].At.Equal(rb.FinishedAt) || !failed[0].At.Before(canaryEnd) {
		t.Errorf("verify_failed alerts %+v, want one for web-1 at %s, before the canary ended (%s)", failed, rb.FinishedAt.Format(time.TimeOnly), canaryEnd.Format(time.TimeOnly))
	}
	t.Logf("web-1 reverted at %s, not verified at %s; the canary ended at %s, the run at %s", rb.StartedAt.Format(time.TimeOnly), rb.FinishedAt.Format(time.TimeOnly), canaryEnd.Format(time.TimeOnly), r.FinishedAt.Format(time.TimeOnly))
	if res.ExitCode != 4 || r.Outcome != report.OutcomeHalted || !strings.Contains(r.Reason, "the revert of web-1 was not verified") {
		t.Errorf("exit %d, outcome %s: %q, want halted: the revert of web-1 was not verified", res.ExitCode, r.Outcome, r.Reason)
	}
	for _, h := range r.Hosts {
		if h.Reverted != (h.Name == "web-1") {
			t.Errorf("%s reverted: %v", h.Name, h.Reverted)
		}
	}
}
