package victoriametrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rollguard/rollguard/steps"
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

// BenchmarkDecodeTick is one monitoring tick of a 10,000-host fleet: an
// Instant query for each of 4 metrics, over HTTP, decoded into per-host
// values. ns/host is the cost of the tick divided by the hosts.
func BenchmarkDecodeTick(b *testing.B) {
	c, keys := benchFleet(b)
	ctx := context.Background()
	out := make([][]float64, len(benchMetrics))
	for i := range out {
		out[i] = make([]float64, len(keys))
	}
	at := time.Unix(1704110460, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for mi, m := range benchMetrics {
			if err := c.Instant(ctx, steps.Query{Name: m, Expr: m}, keys, at, out[mi]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchHosts), "ns/host")
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
