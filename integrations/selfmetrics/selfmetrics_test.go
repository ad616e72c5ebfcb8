package selfmetrics

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// text is the metrics in Prometheus text format.
func text(m *Metrics) string {
	var b bytes.Buffer
	m.WritePrometheus(&b)
	return b.String()
}

func wantLines(t *testing.T, got string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains("\n"+got, "\n"+l+"\n") {
			t.Errorf("missing line %q in:\n%s", l, got)
		}
	}
}

func TestMetricsOfARun(t *testing.T) {
	m := New("web-tuning", "20240101T120000Z-abc")
	m.HostsApplied("canary", 1)
	m.HostsApplied("wave-1", 4)
	m.HostsReverted("fleet-threshold", 1)
	m.Decision("fleet-threshold", "fleet", "pass")
	m.Decision("fleet-threshold", "fleet", "pass")
	m.Decision("fleet-threshold", "fleet", "fire")
	m.Decision("extreme-host", "host", "fire")
	m.Tick(30 * time.Millisecond)
	m.Tick(50 * time.Millisecond)
	m.Decided("fleet-threshold", 45*time.Second)
	m.RunEnded("rolled_back")

	const l = `rollout="web-tuning",run_id="20240101T120000Z-abc"`
	wantLines(t, text(m),
		`rollguard_hosts_applied_total{`+l+`,wave="canary"} 1`,
		`rollguard_hosts_applied_total{`+l+`,wave="wave-1"} 4`,
		`rollguard_hosts_reverted_total{`+l+`,trigger="fleet-threshold"} 1`,
		`rollguard_decisions_total{`+l+`,policy="fleet-threshold",scope="fleet",outcome="pass"} 2`,
		`rollguard_decisions_total{`+l+`,policy="fleet-threshold",scope="fleet",outcome="fire"} 1`,
		`rollguard_decisions_total{`+l+`,policy="extreme-host",scope="host",outcome="fire"} 1`,
		`rollguard_tick_duration_seconds_count{`+l+`} 2`,
		`rollguard_tick_duration_seconds_sum{`+l+`} 0.08`,
		`rollguard_decision_delay_seconds_sum{`+l+`,policy="fleet-threshold"} 45`,
		`rollguard_runs_total{`+l+`,outcome="rolled_back"} 1`,
	)
}

func TestLabelValuesAreEscaped(t *testing.T) {
	m := New(`we"b\tuning`+"\n", "r1")
	m.RunEnded("promoted")
	wantLines(t, text(m), `rollguard_runs_total{rollout="we\"b\\tuning\n",run_id="r1",outcome="promoted"} 1`)
}

// fakeSource answers queries from funcs.
type fakeSource struct {
	instant func(context.Context) error
}

func (f fakeSource) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	return f.instant(ctx)
}

func (f fakeSource) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	return nil, f.instant(ctx)
}

func TestSourceCountsQueriesAndErrors(t *testing.T) {
	m := New("r", "1")
	fail := false
	src := m.Source(fakeSource{instant: func(ctx context.Context) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fail {
			return errors.New("query \"latency\" on http://vm/: 503")
		}
		return nil
	}})
	q := ports.Query{Name: "latency"}
	ctx := context.Background()
	src.Instant(ctx, q, nil, time.Time{}, nil)
	src.Range(ctx, q, nil, time.Time{}, time.Time{}, time.Second)
	fail = true
	if err := src.Instant(ctx, q, nil, time.Time{}, nil); err == nil {
		t.Fatalf("the wrapped error was lost")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	src.Instant(cancelled, q, nil, time.Time{}, nil) // the caller gave up: not the store's error
	const l = `rollout="r",run_id="1",query="latency"`
	wantLines(t, text(m),
		`rollguard_query_duration_seconds_count{`+l+`} 4`,
		`rollguard_query_errors_total{`+l+`} 1`,
	)
}

// importServer is a stand-in for /api/v1/import/prometheus: it hands
// every request's method, path and (gunzipped) body to the test.
func importServer(t *testing.T, status int) (*httptest.Server, chan string) {
	got := make(chan string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := io.Reader(r.Body)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				return
			}
			body = zr
		}
		data, _ := io.ReadAll(body)
		got <- r.Method + " " + r.URL.Path + "\n" + string(data)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestPushSendsPrometheusText(t *testing.T) {
	srv, got := importServer(t, http.StatusNoContent)
	m := New("web", "r1")
	m.RunEnded("promoted")
	p, err := NewPusher(m, srv.URL+"/api/v1/import/prometheus", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := <-got
	if !strings.HasPrefix(req, "POST /api/v1/import/prometheus\n") {
		t.Errorf("request %q, want a POST to the import path", strings.SplitN(req, "\n", 2)[0])
	}
	wantLines(t, req, `rollguard_runs_total{rollout="web",run_id="r1",outcome="promoted"} 1`)
}

func TestPushPeriodically(t *testing.T) {
	srv, got := importServer(t, http.StatusNoContent)
	m := New("web", "r1")
	m.HostsApplied("canary", 1)
	p, err := NewPusher(m, srv.URL+"/api/v1/import/prometheus", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Start(ctx, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// Two pushes arrive without anyone calling Push; the second carries
	// what changed after the first.
	next := func() string {
		t.Helper()
		select {
		case req := <-got:
			return req
		case <-time.After(time.Minute): // a liveness bound, not a measurement
			t.Fatal("no periodic push arrived")
			return ""
		}
	}
	wantLines(t, next(), `rollguard_hosts_applied_total{rollout="web",run_id="r1",wave="canary"} 1`)
	m.HostsApplied("canary", 2)
	for !strings.Contains(next(), `wave="canary"} 3`) {
	}
}

func TestPushErrorsNeverShowTheURL(t *testing.T) {
	srv, _ := importServer(t, http.StatusUnauthorized)
	secretURL := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/api/v1/import/prometheus?token=s3cret"
	var logs bytes.Buffer
	p, err := NewPusher(New("web", "r1"), secretURL, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Push(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("error %v, want the status", err)
	}
	for _, secret := range []string{"hunter2", "s3cret", "import"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows %q", err, secret)
		}
	}
	p.options().LogErr("metrics: push: cannot push metrics to %q: %s", secretURL, "boom")
	if strings.Contains(logs.String(), "hunter2") || strings.Contains(logs.String(), "s3cret") {
		t.Errorf("log shows the URL: %s", logs.String())
	}

	for _, bad := range []string{"ftp://host/x", "http:///x", "://"} {
		if _, err := NewPusher(New("w", "r"), bad, nil); err == nil {
			t.Errorf("URL %q accepted", bad)
		}
	}
}
