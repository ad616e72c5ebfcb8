package victoriametrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// startVM starts a real victoria-metrics for the test, or skips when the
// binary is missing (fails instead when ROLLGUARD_E2E=1).
func startVM(t *testing.T, opts ServerOptions) *Server {
	t.Helper()
	if _, err := FindBinary(); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("ROLLGUARD_E2E=1 but: %v", err)
		}
		t.Skip(err)
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := StartServer(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestE2EClientMatchesReplay imports a recording into a real
// VictoriaMetrics and checks that the Client's answers over it are the
// Replay's answers over the same file: the Replay's lookback is a dry
// run's at 15 s polls (30 s), shorter than the recording's 1-minute
// resolution, and range queries step at, under and over it.
func TestE2EClientMatchesReplay(t *testing.T) {
	vm := startVM(t, ServerOptions{})
	ctx := context.Background()
	const file = "../../testdata/recordings/traffic-shift.jsonl.gz" // gzip on purpose
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Import(ctx, vm.URL(), f); err != nil {
		t.Fatal(err)
	}
	rec, err := OpenRecording(file)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := NewReplay(rec, ReplayOptions{Lookback: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	client := newClient(t, Config{URL: vm.URL(), HostLabel: "instance"})
	keys := append(hostNames(10), "web-404")

	for _, name := range rec.Names() {
		q := ports.Query{Name: name, Expr: name}
		// On sample times and between them.
		for _, at := range []time.Time{change.Add(-time.Hour), change, change.Add(30 * time.Second), change.Add(10*time.Minute + 59*time.Second)} {
			want := make([]float64, len(keys))
			got := make([]float64, len(keys))
			if err := replay.Instant(ctx, q, keys, at, want); err != nil {
				t.Fatal(err)
			}
			if err := client.Instant(ctx, q, keys, at, got); err != nil {
				t.Fatal(err)
			}
			if !equalNaN(got, want) {
				t.Errorf("%s at %s: VictoriaMetrics %v, replay %v", name, at.Format(time.TimeOnly), got, want)
			}
		}
		from, to := change.Add(-30*time.Minute), change.Add(5*time.Minute)
		for _, step := range []time.Duration{time.Minute, 15 * time.Second, 5 * time.Minute} {
			want, err := replay.Range(ctx, q, keys, from, to, step)
			if err != nil {
				t.Fatal(err)
			}
			got, err := client.Range(ctx, q, keys, from, to, step)
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range keys {
				if !slices.Equal(got[i].Timestamps, want[i].Timestamps) || !slices.Equal(got[i].Values, want[i].Values) {
					t.Errorf("%s range on %s at step %s: VictoriaMetrics %v, replay %v", name, k, step, got[i], want[i])
				}
			}
			if n := int(to.Sub(from)/step) + 1; len(want[0].Values) != n {
				t.Errorf("%s: replay range at step %s has %d points, want %d: the comparison proves little", name, step, len(want[0].Values), n)
			}
		}
	}
}

// TestE2ERecordLiveRunThenReplay records what a Client saw from a real
// VictoriaMetrics and checks a Replay of the recording answers the same.
func TestE2ERecordLiveRunThenReplay(t *testing.T) {
	vm := startVM(t, ServerOptions{})
	ctx := context.Background()
	f, err := os.Open("../../testdata/recordings/nodata.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Import(ctx, vm.URL(), f); err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	rec := NewRecorder(newClient(t, Config{URL: vm.URL()}), "instance", &file)
	keys := hostNames(3)
	q := ports.Query{Name: "latency_p95", Expr: "latency_p95"}
	if _, err := rec.Range(ctx, q, keys, change.Add(-30*time.Minute), change, time.Minute); err != nil {
		t.Fatal(err)
	}
	type tick struct {
		at   time.Time
		vals []float64
	}
	var ticks []tick
	for at := change.Add(15 * time.Second); at.Before(change.Add(10 * time.Minute)); at = at.Add(15 * time.Second) {
		out := make([]float64, len(keys))
		if err := rec.Instant(ctx, q, keys, at, out); err != nil {
			t.Fatal(err)
		}
		ticks = append(ticks, tick{at, out})
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	back, err := ReadRecording(&file)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := NewReplay(back, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range ticks {
		out := make([]float64, len(keys))
		if err := replay.Instant(ctx, q, keys, tk.at, out); err != nil {
			t.Fatal(err)
		}
		if !equalNaN(out, tk.vals) {
			t.Errorf("at %s: replay %v, the live run saw %v", tk.at.Format(time.TimeOnly), out, tk.vals)
		}
	}
}

// TestE2EScrape checks that a server started with a scrape config scrapes
// its targets: what the demo's simulated fleet relies on.
func TestE2EScrape(t *testing.T) {
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# TYPE demo_latency_seconds gauge")
		fmt.Fprintln(w, "demo_latency_seconds 0.25")
	}))
	defer exporter.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "scrape.yml")
	scrape := fmt.Sprintf("scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [%q]\n", exporter.Listener.Addr().String())
	if err := os.WriteFile(cfg, []byte(scrape), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := startVM(t, ServerOptions{DataDir: filepath.Join(dir, "data"), ScrapeConfigPath: cfg, ScrapeInterval: time.Second})
	client := newClient(t, Config{URL: vm.URL(), HostLabel: "instance"})
	keys := []string{exporter.Listener.Addr().String()}
	q := ports.Query{Name: "latency", Expr: "demo_latency_seconds"}

	// Poll with a bounded deadline: the first scrape lands within an
	// interval or two. Without Flush a new series became searchable only
	// after about 10 seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	out := make([]float64, 1)
	for {
		if err := vm.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := client.Instant(ctx, q, keys, time.Now(), out); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		if out[0] == 0.25 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no scraped sample within 30s (last value %v)", out[0])
		case <-tick.C:
		}
	}
}

func TestStartServerErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := StartServer(ctx, ServerOptions{}); err == nil {
		t.Error("StartServer without DataDir: no error")
	}
	t.Setenv(BinEnv, filepath.Join(t.TempDir(), "no-such-binary"))
	_, err := StartServer(ctx, ServerOptions{DataDir: t.TempDir()})
	if !errors.Is(err, ErrNoBinary) {
		t.Errorf("error = %v, want ErrNoBinary", err)
	}
	// A binary that exits at once: the start fails fast with its output.
	_, err = StartServer(ctx, ServerOptions{DataDir: t.TempDir(), Bin: "/bin/false", StartTimeout: 20 * time.Second})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("process exited")) {
		t.Errorf("error = %v, want the process' exit", err)
	}
}

func TestE2EStopEndsTheProcessGroup(t *testing.T) {
	vm := startVM(t, ServerOptions{})
	pid := vm.cmd.Process.Pid
	if err := vm.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := vm.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still exists after Stop (kill -0: %v)", pid, err)
	}
	if _, err := http.Get(vm.URL() + "/health"); err == nil {
		t.Error("server still answers after Stop")
	}
}
