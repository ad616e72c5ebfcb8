package policies

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

var benchMetrics = []string{"latency_p95", "error_rate", "cpu", "rps"}

// benchPolicies compiles the seed policies of the design document.
func benchPolicies(tb testing.TB) []Evaluator {
	tb.Helper()
	srcs := []Source{
		{Name: "fleet-threshold", File: "bench.yaml", RollbackWhen: Expr{Text: "top_mean(hosts, 0.30) > 5"}},
		{Name: "latency-regression", File: "bench.yaml",
			RollbackWhen:     Expr{Text: "fraction(hosts, .degraded) >= 0.3"},
			HostRollbackWhen: Expr{Text: "host.metrics.error_rate.z > 12"}},
	}
	var out []Evaluator
	for _, src := range srcs {
		p, err := Compile(src, CompileOptions{Metrics: benchMetrics})
		if err != nil {
			tb.Fatalf("compile %s: %v", src.Name, err)
		}
		out = append(out, p)
	}
	return out
}

// benchEngine builds an engine over hosts with 4 metrics, baselines for
// every host, and half the fleet changed (canary + one wave), so that both
// the judged and the control paths run.
func benchEngine(tb testing.TB, hosts []string, base []float64, policies []Evaluator) *Engine {
	tb.Helper()
	cfg, err := Preset(SensitivityMedium)
	if err != nil {
		tb.Fatal(err)
	}
	n := len(hosts)
	var mcs []MetricConfig
	for _, m := range benchMetrics {
		mcs = append(mcs, MetricConfig{Name: m, HigherIsWorse: m != "rps"})
	}
	e, err := NewEngine(EngineConfig{Hosts: hosts, Metrics: mcs, Detector: cfg, Policies: policies})
	if err != nil {
		tb.Fatal(err)
	}
	for h := range n {
		for m := range mcs {
			e.SetBaseline(m, h, base)
		}
	}
	e.StartWave("canary", 0, []int{0})
	wave := make([]int, 0, n/2)
	for h := 1; h < n/2; h++ {
		wave = append(wave, h)
	}
	e.StartWave("wave-1", 1, wave)
	return e
}

// BenchmarkTick measures one full tick (Observe 4 metrics over every host,
// then Tick: detectors, fleet statistics, the two fleet programs once and
// the host program once per changed host) with the compiled seed policies.
// It reports ns/host per tick and B/host, the engine's heap per host with 4
// metrics (runtime.MemStats around NewEngine and the baselines).
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			policies := benchPolicies(b)
			hostsNames := make([]string, n) // names are the caller's, not the engine's
			for i := range hostsNames {
				hostsNames[i] = fmt.Sprintf("host-%d", i)
			}
			base := noise(1, 48, 100, 5) // before the measurement: the caller's
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			e := benchEngine(b, hostsNames, base, policies)
			runtime.GC()
			runtime.ReadMemStats(&after)
			perHost := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)

			r := rand.New(rand.NewPCG(2, 3))
			vals := make([][]float64, len(benchMetrics))
			for m := range vals {
				vals[m] = make([]float64, n)
				for h := range vals[m] {
					vals[m][h] = 100 + 5*r.NormFloat64()
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				for m := range vals {
					e.Observe(m, vals[m])
				}
				e.Tick(PhaseMonitor, float64(i))
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/host")
			b.ReportMetric(perHost, "B/host")
			runtime.KeepAlive(e)
		})
	}
}

// BenchmarkVerdict measures the end-of-stage window test of every changed
// host (half the fleet, 4 metrics, 12 polls observed) and the policies it
// evaluates again, once per stage.
func BenchmarkVerdict(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("host-%d", i)
			}
			e := benchEngine(b, names, noise(1, 48, 100, 5), benchPolicies(b))
			vals := noise(2, n, 100, 5)
			for i := range 12 {
				for m := range benchMetrics {
					e.Observe(m, vals)
				}
				e.Tick(PhaseMonitor, float64(i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e.Verdict(PhaseMonitor, 12)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/host")
		})
	}
}
