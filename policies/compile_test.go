package policies

import (
	"fmt"
	"math"
	"math/rand/v2"
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
// metrics; with missing, a host now and then lacks a metric.
func randomEnv(r *rand.Rand, n int, missing bool) *Env {
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
			if missing && r.IntN(40) == 0 {
				continue
			}
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

// fleetExprs and hostExprs are in the fast path's subset; the property
// test checks that the fast path and expr's VM agree on them.
var fleetExprs = []string{
	`top_mean(hosts, 0.30) > 5`,
	`top_mean(hosts, 1) >= 2.5`,
	`fraction(hosts, .degraded) >= 0.3`,
	`fraction(hosts, .score > 2 && !.failed) > 0.25 || fleet.max_score > 9`,
	`count(hosts, .score > 5) > 3`,
	`len(filter(hosts, .metrics.error_rate.z > 3)) >= 2`,
	`any(hosts, .metrics.cpu.nodata) and phase == "monitor"`,
	`all(hosts, .applied) || none(hosts, .degraded) || one(hosts, .failed)`,
	`fleet.degraded / fleet.changed > 0.2`,
	`fleet.degraded * 3 + 1 > fleet.size - 2 and fleet.size % 2 == 0`,
	`fleet.fraction_degraded ** 2 > 0.1 or fleet.mean_score ^ 2 > 9`,
	`max(fleet.mean_score, fleet.max_score / 2) > 4 && min(fleet.size, 3) >= 3`,
	`abs(fleet.mean_score - 2) < 1.5 && abs(fleet.degraded - 2) <= 1`,
	`elapsed > 120 ? fraction(hosts, .degraded) > 0.5 : fraction(hosts, .degraded) > 0.8`,
	`(wave.index == 0 ? 1 : 3) <= count(hosts, .degraded)`,
	`wave.name != "canary" && float(fleet.changed) / 2 > 1`,
	`count(hosts, any(hosts, .score > 7) && .score > 3) > 1`,
	`fraction(hosts, .metrics.latency_p95.ratio > 1.5 && .metrics.latency_p95.samples >= 10) > 0.1`,
	`-fleet.mean_score < -3 || +fleet.changed == 0`,
	`not (fleet.max_score <= 8)`,
	`count(hosts, .wave == "canary" and .name != "web-0") >= len(hosts) / 2`,
	`fraction(hosts, .metrics.error_rate.has_control and .metrics.error_rate.control > 0) > 0.5 == true`,
}

var hostExprs = []string{
	`host.metrics.error_rate.z > 12`,
	`host.metrics.error_rate.z > 2`,
	`host.metrics["latency_p95"].ratio > 1.5 and host.metrics.latency_p95.delta > 0.05`,
	`host.degraded && !host.metrics.cpu.low_confidence`,
	`host.score > fleet.mean_score * 2`,
	`host.metrics.cpu.current - host.metrics.cpu.baseline > 2 * host.metrics.cpu.stddev`,
	`host.failed or host.metrics.cpu.score > 4 and host.wave == wave.name`,
	`host.metrics.error_rate.samples < 10 ? false : host.metrics.error_rate.z > 1`,
	`max(host.metrics.cpu.z, host.metrics.error_rate.z, host.metrics.latency_p95.z) > 3`,
	`host.name == "web-3" || host.metrics.cpu.nodata`,
}

// TestFastPathMatchesVM: on many expressions and random environments, the
// fast path and expr's VM return the same value, or both an error.
func TestFastPathMatchesVM(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var envs []*Env
	for i := range 300 {
		envs = append(envs, randomEnv(r, i%23, i%3 == 0))
	}
	check := func(t *testing.T, pr *program, setHost bool) {
		t.Helper()
		if pr.fast == nil {
			t.Fatalf("%q is not on the fast path", pr.expr.Text)
		}
		agreedTrue, agreedFalse := 0, 0
		for i, env := range envs {
			hosts := []*Host{nil}
			if setHost {
				hosts = env.Hosts
			}
			for _, h := range hosts {
				if setHost {
					env.Host = h
				}
				fv, ferr := pr.evalFast(env)
				vv, verr := pr.evalVM(env)
				if fv != vv || (ferr == nil) != (verr == nil) {
					t.Fatalf("%q env %d host %v: fast = %v, %v; vm = %v, %v", pr.expr.Text, i, hostName(h), fv, ferr, vv, verr)
				}
				if ferr == nil && fv {
					agreedTrue++
				} else if ferr == nil {
					agreedFalse++
				}
			}
		}
		if agreedTrue == 0 || agreedFalse == 0 {
			t.Logf("%q: the random environments only made it %v", pr.expr.Text, agreedTrue > 0)
		}
	}
	for _, e := range fleetExprs {
		t.Run(e, func(t *testing.T) { check(t, mustCompile(t, e, "").fleet, false) })
	}
	for _, e := range hostExprs {
		t.Run(e, func(t *testing.T) { check(t, mustCompile(t, "", e).host, true) })
	}
}

// TestVMFallback: an expression outside the fast path's subset still runs,
// on expr's VM.
func TestVMFallback(t *testing.T) {
	p := mustCompile(t, `len(map(hosts, .name)) > 0 && hosts[0].name startsWith "web"`, "")
	if p.fleet.fast != nil {
		t.Fatalf("expected a VM-only program")
	}
	env := randomEnv(rand.New(rand.NewPCG(3, 4)), 3, false)
	got, err := p.EvalFleet(env)
	if err != nil || !got {
		t.Errorf("EvalFleet = %v, %v; want true", got, err)
	}
}

// TestEvalErrors: a host lacking a metric the policy reads is an error
// naming the policy and host, on both paths.
func TestEvalErrors(t *testing.T) {
	p := mustCompile(t, "", `host.metrics.cpu.z > 1`)
	env := &Env{}
	h := &Host{Name: "web-9", Metrics: map[string]*Metric{}}
	for _, fast := range []bool{true, false} {
		if !fast {
			p.host.fast = nil
		}
		_, err := p.EvalHost(env, h)
		if err == nil {
			t.Fatalf("fast=%v: no error for a missing metric", fast)
		}
		if env.Host != h {
			t.Errorf("EvalHost did not set env.Host")
		}
		t.Logf("fast=%v: %v", fast, err)
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
	for _, path := range []string{"fast", "vm"} {
		b.Run(path, func(b *testing.B) {
			p := mustCompile(b, "", `host.metrics.error_rate.z > 12`)
			if path == "vm" {
				p.host.fast = nil
			}
			env := randomEnv(rand.New(rand.NewPCG(5, 6)), benchHosts, false)
			b.ReportAllocs()
			for b.Loop() {
				for _, h := range env.Hosts {
					if _, err := p.EvalHost(env, h); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchHosts, "ns/host")
		})
	}
}

// BenchmarkEvalFleet evaluates fleet policies over 10,000 hosts.
func BenchmarkEvalFleet(b *testing.B) {
	for _, e := range []string{`top_mean(hosts, 0.30) > 5`, `fraction(hosts, .degraded) >= 0.3`, `count(hosts, .score > 5) > 3`} {
		for _, path := range []string{"fast", "vm"} {
			b.Run(path+"/"+e, func(b *testing.B) {
				p := mustCompile(b, e, "")
				if path == "vm" {
					p.fleet.fast = nil
				}
				env := randomEnv(rand.New(rand.NewPCG(7, 8)), benchHosts, false)
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
}
