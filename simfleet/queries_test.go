package simfleet_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rollguard/rollguard/integrations/victoriametrics"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/simfleet"
)

// requireVM starts VictoriaMetrics scraping the fleet, or skips (fails with
// ROLLGUARD_E2E=1) when the binary is missing.
func requireVM(t *testing.T, f *simfleet.Fleet) *victoriametrics.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no VictoriaMetrics end-to-end test")
	}
	scrape := filepath.Join(t.TempDir(), "scrape.yml")
	if err := f.ScrapeConfig(scrape); err != nil {
		t.Fatal(err)
	}
	srv, err := victoriametrics.StartServer(t.Context(), victoriametrics.ServerOptions{
		DataDir: t.TempDir(), ScrapeConfigPath: scrape,
	})
	if errors.Is(err, victoriametrics.ErrNoBinary) && os.Getenv("ROLLGUARD_E2E") != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	c, err := victoriametrics.New(victoriametrics.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// instant evaluates every demo query now, per host.
func instant(ctx context.Context, c *victoriametrics.Client, names []string) (map[string][]float64, error) {
	out := map[string][]float64{}
	for name, expr := range map[string]string{
		"latency_p95": simfleet.QueryLatencyP95,
		"error_rate":  simfleet.QueryErrorRate,
		"cpu":         simfleet.QueryCPU,
	} {
		vals := make([]float64, len(names))
		if err := c.Instant(ctx, ports.Query{Name: name, Expr: expr}, names, time.Now(), vals); err != nil {
			return nil, err
		}
		out[name] = vals
	}
	return out, nil
}

// poll calls check every half second until it returns nil or ctx ends.
func poll(ctx context.Context, check func() error) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last: %v", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// The demo's queries, run by a real VictoriaMetrics over the fleet's
// exporters, give one value per host; raising one host's latency_factor
// raises that host's p95 within seconds and leaves the others' alone.
func TestQueriesOverVictoriaMetrics(t *testing.T) {
	f, err := simfleet.Start(t.Context(), simfleet.Config{Dir: t.TempDir(), Hosts: 3, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	c := requireVM(t, f)
	names := []string{"web-1", "web-2", "web-3"}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// Wait for a full window of samples on every host, then take the
	// baseline as the mean of a few evaluations.
	var base map[string][]float64
	err = poll(ctx, func() error {
		v, err := instant(ctx, c, names)
		if err != nil {
			return err
		}
		for q, vals := range v {
			for i, x := range vals {
				if math.IsNaN(x) {
					return fmt.Errorf("%s: no value for %s", q, names[i])
				}
			}
		}
		base = v
		return nil
	})
	if err != nil {
		t.Fatalf("queries never answered for every host: %v", err)
	}
	t.Logf("first values: %v", base)
	for i := range names {
		p95, errRate, cpu := base["latency_p95"][i], base["error_rate"][i], base["cpu"][i]
		if p95 < 0.04 || p95 > 0.2 || errRate < 0 || errRate > 0.05 || cpu < 0.1 || cpu > 0.6 {
			t.Errorf("%s: p95 %.3f s, error rate %.4f, cpu %.3f: outside the neutral configuration's range", names[i], p95, errRate, cpu)
		}
	}
	// Let the 15 s window fill, so the baseline is not a partial one.
	var before []float64
	err = poll(ctx, func() error {
		v, err := instant(ctx, c, names)
		if err != nil {
			return err
		}
		before = v["latency_p95"]
		// VictoriaMetrics extends the first rate over the scrape interval;
		// 16 samples in the window means it is full.
		return countSamples(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}

	conf := simfleet.NeutralConf()
	conf.Version, conf.LatencyFactor = "v2", 1.5
	if err := os.WriteFile(filepath.Join(f.Hosts()[1].Dir, "app.conf"), []byte(conf.Format()), 0o644); err != nil {
		t.Fatal(err)
	}
	changedAt := time.Now()
	var after []float64
	err = poll(ctx, func() error {
		v, err := instant(ctx, c, names)
		if err != nil {
			return err
		}
		after = v["latency_p95"]
		if r := after[1] / before[1]; r < 1.3 {
			return fmt.Errorf("web-2 p95 x%.2f so far", r)
		}
		return nil
	})
	t.Logf("p95 before %v, after %v (%s after the change)", before, after, time.Since(changedAt).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("web-2's p95 did not rise x1.3 after latency_factor=1.5: %v", err)
	}
	for _, i := range []int{0, 2} {
		if r := after[i] / before[i]; r > 1.15 || r < 0.85 {
			t.Errorf("%s (unchanged): p95 moved x%.2f", names[i], r)
		}
	}
}

// countSamples returns nil once every host has a full window of scrapes.
func countSamples(ctx context.Context, c *victoriametrics.Client) error {
	names := []string{"web-1", "web-2", "web-3"}
	vals := make([]float64, len(names))
	q := ports.Query{Name: "samples", Expr: `count_over_time(http_requests_total{code="200"}[` + simfleet.Window + `])`}
	if err := c.Instant(ctx, q, names, time.Now(), vals); err != nil {
		return err
	}
	for i, v := range vals {
		if math.IsNaN(v) || v < 14 {
			return fmt.Errorf("%s: %v samples in the window", names[i], v)
		}
	}
	return nil
}
