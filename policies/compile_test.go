package policies

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// mustCompile compiles a policy with the given expressions or fails t.
func mustCompile(t testing.TB, fleet, host string) *Policy {
	t.Helper()
	src := Source{Name: "t", File: "t.yaml", Pos: Pos{Line: 1, Col: 1},
		RollbackWhen: Expr{Text: fleet, Pos: Pos{Line: 2, Col: 16}}, HostRollbackWhen: Expr{Text: host, Pos: Pos{Line: 3, Col: 21}}}
	p, err := Compile(src, testMetrics)
	if err != nil {
		t.Fatalf("compile %q / %q: %v", fleet, host, err)
	}
	return p
}

// randomEnv builds an Env of n changed hosts with random scores and
// metrics.
func randomEnv(r *rand.Rand, n int) *Env {
	pick := func(vals ...float64) float64 { return vals[r.IntN(len(vals))] }
	num := func() float64 {
		if r.IntN(4) == 0 {
			return pick(0, 1, 2, 5, 12, -1, 0.5)
		}
		return r.NormFloat64() * 6
	}
	env := &Env{
		Fleet:   Fleet{Size: n + r.IntN(5), Changed: n, Degraded: r.IntN(n + 1), FractionDegraded: r.Float64(), MeanScore: num(), MaxScore: num()},
		Wave:    Wave{Name: pick2(r, "canary", "wave-1"), Index: r.IntN(3)},
		Phase:   pick2(r, PhaseApply, PhaseMonitor),
		Elapsed: r.Float64() * 600,
	}
	for i := range n {
		h := &Host{Name: fmt.Sprintf("web-%d", i), Wave: pick2(r, "canary", "wave-1"), Score: math.Abs(num()),
			Applied: r.IntN(5) > 0, Failed: r.IntN(10) == 0, Metrics: map[string]*Metric{}}
		h.Degraded = h.Score > 5
		for _, q := range testMetrics.Metrics {
			h.Metrics[q] = &Metric{Current: num(), Baseline: num(), Stddev: math.Abs(num()), Z: num(), Ratio: num(),
				Delta: num(), Score: math.Abs(num()), Control: num(), Samples: r.IntN(100), NoData: r.IntN(8) == 0,
				HasControl: r.IntN(2) == 0, LowConfidence: r.IntN(6) == 0}
		}
		env.Hosts = append(env.Hosts, h)
	}
	return env
}

func pick2(r *rand.Rand, a, b string) string {
	if r.IntN(2) == 0 {
		return a
	}
	return b
}

// TestExprBuiltins: expr's own builtins and operators run in policies.
func TestExprBuiltins(t *testing.T) {
	p := mustCompile(t, `len(map(hosts, .name)) > 0 && hosts[0].name startsWith "web"`, "")
	env := randomEnv(rand.New(rand.NewPCG(3, 4)), 3)
	got, err := p.EvalFleet(env)
	if err != nil || !got {
		t.Errorf("EvalFleet = %v, %v; want true", got, err)
	}
}

// TestEvalErrors: an evaluation that fails is an error naming the policy,
// the host, and where in the file the expression failed.
func TestEvalErrors(t *testing.T) {
	tests := []struct {
		fleet, host string
		h           *Host
		want        string
	}{
		{host: `host.metrics.cpu.z > 1`, h: &Host{Name: "web-9", Metrics: map[string]*Metric{}},
			want: `policy "t": host_rollback_when for host web-9: t.yaml:3:38: cannot fetch a field from nil`},
		{fleet: `top_mean(hosts, fleet.fraction_degraded) > 1`,
			want: `policy "t": rollback_when: t.yaml:2:16: top_mean: share 0 is outside (0, 1]`},
		{fleet: `fleet.size % fleet.changed == 0`,
			want: `policy "t": rollback_when: t.yaml:2:27: runtime error: integer divide by zero`},
	}
	for _, tt := range tests {
		p := mustCompile(t, tt.fleet, tt.host)
		env := &Env{Hosts: hostsWithScores(1, 2)}
		var err error
		if tt.h != nil {
			_, err = p.EvalHost(env, tt.h)
			if env.Host != tt.h {
				t.Errorf("EvalHost did not set env.Host")
			}
		} else {
			_, err = p.EvalFleet(env)
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s%s: error %v, want %q", tt.fleet, tt.host, err, tt.want)
		}
	}
}

func TestUsesMetrics(t *testing.T) {
	tests := []struct {
		fleet, host string
		want        []string // nil: every metric
	}{
		{"", `host.metrics.error_rate.z > 12`, []string{"error_rate"}},
		{`count(hosts, .metrics.cpu.z > 1) > 2`, `host.metrics["latency_p95"].ratio > 2 || host.metrics.cpu.z > 1`, []string{"cpu", "latency_p95"}},
		{`fleet.size > 10 && elapsed > 5`, "", []string{}},
		{`top_mean(hosts, 0.3) > 5`, "", nil},
		{`fraction(hosts, .degraded) > 0.3`, "", nil},
		{"", `host.score > 3`, nil},
		{`fleet.mean_score > 1`, "", nil},
	}
	for _, tt := range tests {
		got := mustCompile(t, tt.fleet, tt.host).UsesMetrics()
		if (got == nil) != (tt.want == nil) || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("UsesMetrics(%q, %q) = %#v, want %#v", tt.fleet, tt.host, got, tt.want)
		}
	}
}

// benchHosts is the fleet size of the engine's performance target.
const benchHosts = 10_000

// BenchmarkEvalHost evaluates a host policy once per host of a 10,000-host
// fleet per op (one tick); ns/host is the per-host cost.
func BenchmarkEvalHost(b *testing.B) {
	p := mustCompile(b, "", `host.metrics.error_rate.z > 12`)
	env := randomEnv(rand.New(rand.NewPCG(5, 6)), benchHosts)
	b.ReportAllocs()
	for b.Loop() {
		for _, h := range env.Hosts {
			if _, err := p.EvalHost(env, h); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchHosts, "ns/host")
}

// BenchmarkEvalFleet evaluates fleet policies over 10,000 hosts.
func BenchmarkEvalFleet(b *testing.B) {
	for _, e := range []string{`top_mean(hosts, 0.30) > 5`, `fraction(hosts, .degraded) >= 0.3`, `count(hosts, .score > 5) > 3`} {
		b.Run(e, func(b *testing.B) {
			p := mustCompile(b, e, "")
			env := randomEnv(rand.New(rand.NewPCG(7, 8)), benchHosts)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.EvalFleet(env); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchHosts, "ns/host")
		})
	}
}

// An expression that reads nothing of the rollout has the same value on
// every tick: valid, with a warning at the expression that says which
// value and what the policy then does. One that reads the rollout, even
// a tautology over it (len(hosts) >= 0), or now(), is not warned about.
func TestConstantExpressionWarns(t *testing.T) {
	f := func(fleet, host string, want ...string) {
		t.Helper()
		p := mustCompile(t, fleet, host)
		var got []string
		for _, w := range p.Warnings {
			got = append(got, w.Error())
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%q / %q: warnings\n%s\nwant\n%s", fleet, host, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	const reads = "it reads nothing of the rollout (hosts, host, fleet, wave, phase, elapsed), so the policy "
	f("true", "", `t.yaml:2:16: rollback_when of policy "t" is always true: `+reads+"rolls back every rollout")
	f("false", "", `t.yaml:2:16: rollback_when of policy "t" is always false: `+reads+"never fires")
	f("2 * 3 > 5 && not false", "", `t.yaml:2:16: rollback_when of policy "t" is always true: `+reads+"rolls back every rollout")
	f("all([1, 2], # > 1)", "", `t.yaml:2:16: rollback_when of policy "t" is always false: `+reads+"never fires")
	f("", "1 < 2", `t.yaml:3:21: host_rollback_when of policy "t" is always true: `+reads+"reverts every host it judges")
	f("let x = 1; x > 2", "1 > 2",
		`t.yaml:2:16: rollback_when of policy "t" is always false: `+reads+"never fires",
		`t.yaml:3:21: host_rollback_when of policy "t" is always false: `+reads+"never reverts a host")
	f("top_mean(hosts, 0.30) > 5", "host.metrics.latency_p95.z > 12")
	f("len(hosts) >= 0 || true", "")
	f("fleet.size > 0", "")
	f("phase == 'apply' or elapsed > 60 or wave.index > 0", "")
	f("now().Year() > 2000", "")
}
