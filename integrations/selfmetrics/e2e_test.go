package selfmetrics

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/integrations/victoriametrics"
)

// TestE2EPushToVictoriaMetrics pushes a run's metrics to a real
// VictoriaMetrics and reads them back by the rollout's label.
func TestE2EPushToVictoriaMetrics(t *testing.T) {
	if _, err := victoriametrics.FindBinary(); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("ROLLGUARD_E2E=1 but: %v", err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := victoriametrics.StartServer(ctx, victoriametrics.ServerOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()

	m := New("web-tuning", "run-1")
	m.HostsApplied("canary", 1)
	m.HostsReverted("fleet-threshold", 1)
	m.Decision("fleet-threshold", "fleet", "fire")
	m.Tick(20 * time.Millisecond)
	m.RunEnded("rolled_back")
	p, err := NewPusher(m, vm.URL()+"/api/v1/import/prometheus", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Push(ctx); err != nil {
		t.Fatal(err)
	}
	// The Prometheus text import is buffered: poll until the runs series
	// is searchable (force_flush alone can be too early).
	q := url.Values{"match[]": {`{__name__=~"rollguard_.*",rollout="web-tuning"}`}}
	var body []byte
	for !strings.Contains(string(body), "rollguard_runs_total") {
		if ctx.Err() != nil {
			t.Fatalf("no rollguard_runs_total in VictoriaMetrics: %s", body)
		}
		if err := vm.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(vm.URL() + "/api/v1/export?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	for _, want := range []string{
		`"__name__":"rollguard_runs_total","outcome":"rolled_back","rollout":"web-tuning","run_id":"run-1"},"values":[1]`,
		`"__name__":"rollguard_hosts_applied_total","rollout":"web-tuning","run_id":"run-1","wave":"canary"},"values":[1]`,
		`"__name__":"rollguard_hosts_reverted_total"`,
		`"__name__":"rollguard_decisions_total"`,
		`"__name__":"rollguard_tick_duration_seconds_count"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("VictoriaMetrics does not hold %s; it has:\n%s", want, body)
		}
	}
}
