package victoriametrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
)

const benchHosts = 10000

var benchMetrics = []string{"latency_p95", "error_rate", "cpu", "saturation"}

// benchFleet serves, per metric, a 10,000-series answer in VictoriaMetrics'
// exact shape (TestGeneratedResponseShape) and returns a Client on it.
func benchFleet(b *testing.B) (*Client, []string) {
	keys := hostNames(benchHosts)
	bodies := map[string][]byte{}
	for mi, m := range benchMetrics {
		bodies[m] = vmInstantResponse(m, keys, 1704110460, func(i int) float64 {
			return 0.2 + float64((i*7919+mi)%1000)/1e4
		})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(bodies[r.URL.Query().Get("query")])
	}))
	b.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	return c, keys
}

// BenchmarkDecodeTick is one monitoring tick of a 10,000-host fleet, half
// of it changed: an Instant query for each of 4 metrics over HTTP, decoded
// into per-host values and observed by the policies engine, then the
// engine's Tick with a fleet policy (top_mean(hosts, 0.30) > 5) and a host
// policy (host.metrics.error_rate.z > 12). ns/host is the cost of the tick
// divided by the hosts.
func BenchmarkDecodeTick(b *testing.B) {
	c, keys := benchFleet(b)
	engine := benchEngine(b, keys)
	ctx := context.Background()
	outs := make([][]float64, len(benchMetrics))
	for mi := range outs {
		outs[mi] = make([]float64, len(keys))
	}
	errs := make([]error, len(benchMetrics))
	at := time.Unix(1704110460, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		// As runner's observe: the queries at once, then judged in order.
		var wg sync.WaitGroup
		for mi, m := range benchMetrics {
			wg.Go(func() { errs[mi] = c.Instant(ctx, ports.Query{Name: m, Expr: m}, keys, at, outs[mi]) })
		}
		wg.Wait()
		for mi := range benchMetrics {
			if errs[mi] != nil {
				b.Fatal(errs[mi])
			}
			engine.Observe(mi, outs[mi])
		}
		res := engine.Tick(policies.PhaseMonitor, 60)
		for _, p := range res.Policies {
			if p.Outcome == policies.OutcomeError {
				b.Fatal(p.Err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchHosts), "ns/host")
}

// BenchmarkDecodeTickQueriesOnly is BenchmarkDecodeTick without the engine.
func BenchmarkDecodeTickQueriesOnly(b *testing.B) {
	c, keys := benchFleet(b)
	ctx := context.Background()
	out := make([]float64, len(keys))
	at := time.Unix(1704110460, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, m := range benchMetrics {
			if err := c.Instant(ctx, ports.Query{Name: m, Expr: m}, keys, at, out); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchHosts), "ns/host")
}

// benchEngine builds an engine over keys with baselines for every host and
// the first half of the hosts changed.
func benchEngine(b *testing.B, keys []string) *policies.Engine {
	names := benchMetrics
	fleet, err := policies.Compile(policies.Source{Name: "fleet", RollbackWhen: policies.Expr{Text: "top_mean(hosts, 0.30) > 5"}},
		policies.CompileOptions{Metrics: names})
	if err != nil {
		b.Fatal(err)
	}
	host, err := policies.Compile(policies.Source{Name: "host", HostRollbackWhen: policies.Expr{Text: "host.metrics.error_rate.z > 12"}},
		policies.CompileOptions{Metrics: names})
	if err != nil {
		b.Fatal(err)
	}
	det, err := policies.Preset("medium")
	if err != nil {
		b.Fatal(err)
	}
	metrics := make([]policies.MetricConfig, len(names))
	for i, n := range names {
		metrics[i] = policies.MetricConfig{Name: n, HigherIsWorse: true}
	}
	e, err := policies.NewEngine(policies.EngineConfig{Hosts: keys, Metrics: metrics, Detector: det,
		Policies: []policies.Evaluator{fleet, host}})
	if err != nil {
		b.Fatal(err)
	}
	baseline := make([]float64, 30)
	for h := range keys {
		for m := range names {
			for i := range baseline {
				baseline[i] = 0.2 + float64((h*31+m*7+i)%50)/1e3
			}
			e.SetBaseline(m, h, baseline)
		}
	}
	changed := make([]int, len(keys)/2)
	for i := range changed {
		changed[i] = i
	}
	e.StartWave("wave-1", 1, changed)
	return e
}

// BenchmarkDecodeResponse is the decoding alone: one 10,000-series answer.
func BenchmarkDecodeResponse(b *testing.B) {
	keys := hostNames(benchHosts)
	body := vmInstantResponse("latency_p95", keys, 1704110460, func(i int) float64 { return 0.2 + float64(i%1000)/1e4 })
	m := (&matcherCache{hostLabel: "instance"}).matcher(keys)
	out := make([]float64, len(keys))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_, err := decodeResponse(body, "instance", func(host []byte, hasHost bool, labels []byte, pts []point) error {
			if i, ok := m.match(host, hasHost, labels); ok {
				out[i] = pts[0].V
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchHosts), "ns/host")
}
