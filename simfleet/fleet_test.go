package simfleet

import (
	"bufio"
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// fakeClock is a settable clock shared by the fleet and the test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func startFleet(t *testing.T, hosts int, seed int64, clock *fakeClock) *Fleet {
	t.Helper()
	f, err := Start(t.Context(), Config{Dir: t.TempDir(), Hosts: hosts, Seed: seed, Clock: clock.Now})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

// scrape fetches a host's /metrics and returns every sample by its series
// text (name{labels}).
func scrape(t *testing.T, h Host) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + h.Target() + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", h.Name, err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("scrape %s: Content-Type %q", h.Name, ct)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// name{labels} value timestamp
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("scrape %s: line %q: want series, value and timestamp", h.Name, line)
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("scrape %s: line %q: %v", h.Name, line, err)
		}
		if _, err := strconv.ParseInt(f[2], 10, 64); err != nil {
			t.Fatalf("scrape %s: line %q: timestamp: %v", h.Name, line, err)
		}
		out[f[0]] = v
	}
	return out
}

// window is what a host did between two scrapes.
type window struct {
	requests, errShare, meanLatency, p95, busy float64
}

func diff(a, b map[string]float64) window {
	d := func(k string) float64 { return b[k] - a[k] }
	n := d("http_request_duration_seconds_count")
	// histogram_quantile as PromQL computes it: linear inside the bucket.
	p95 := math.NaN()
	prevLE, prevCum := 0.0, 0.0
	for _, le := range Buckets {
		cum := d(`http_request_duration_seconds_bucket{le="` + strconv.FormatFloat(le, 'f', -1, 64) + `"}`)
		if cum >= 0.95*n {
			p95 = prevLE + (le-prevLE)*(0.95*n-prevCum)/(cum-prevCum)
			break
		}
		prevLE, prevCum = le, cum
	}
	idle, user := d(`node_cpu_seconds_total{cpu="0",mode="idle"}`), d(`node_cpu_seconds_total{cpu="0",mode="user"}`)
	return window{
		requests:    n,
		errShare:    d(`http_requests_total{code="500"}`) / (d(`http_requests_total{code="200"}`) + d(`http_requests_total{code="500"}`)),
		meanLatency: d("http_request_duration_seconds_sum") / n,
		p95:         p95,
		busy:        user / (user + idle),
	}
}

func writeConf(t *testing.T, h Host, c AppConf) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.Dir, "app.conf"), []byte(c.Format()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStartWritesNeutralConf(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	f := startFleet(t, 3, 1, clock)
	hosts := f.Hosts()
	if len(hosts) != 3 {
		t.Fatalf("Hosts: got %d, want 3", len(hosts))
	}
	ports := map[int]bool{}
	for i, h := range hosts {
		if want := "web-" + strconv.Itoa(i+1); h.Name != want || h.Address != "127.0.0.1" || h.Dir != filepath.Join(filepath.Dir(h.Dir), want) {
			t.Errorf("host %d: got %+v, want name %s on 127.0.0.1 in a directory named after it", i, h, want)
		}
		ports[h.Port] = true
		data, err := os.ReadFile(filepath.Join(h.Dir, "app.conf"))
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		got, err := ParseAppConf(string(data))
		if err != nil || got != NeutralConf() {
			t.Errorf("%s: app.conf parses to %+v, %v; want %+v", h.Name, got, err, NeutralConf())
		}
		if n := f.Writes(h.Name); n != 0 {
			t.Errorf("%s: Writes right after Start = %d, want 0", h.Name, n)
		}
		if v := h.Vars(); v["host_dir"] != h.Dir || v["ansible_connection"] != "local" {
			t.Errorf("%s: Vars %v", h.Name, v)
		}
	}
	if len(ports) != 3 {
		t.Errorf("ports %v: want 3 distinct", ports)
	}
	if f.Writes("web-9") != -1 {
		t.Errorf("Writes of an unknown host: want -1")
	}
}

// The counters grow with simulated time only, at the rates the host's
// app.conf asks for, and a changed app.conf moves the host that has it and
// no other.
func TestMetricsFollowAppConf(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	f := startFleet(t, 3, 7, clock)
	hosts := f.Hosts()

	before := make([]map[string]float64, 3)
	for i, h := range hosts {
		before[i] = scrape(t, h)
	}
	again := scrape(t, hosts[0])
	if again["http_request_duration_seconds_count"] != before[0]["http_request_duration_seconds_count"] {
		t.Errorf("counters moved without the clock moving")
	}
	clock.Advance(60 * time.Second)
	base := make([]window, 3)
	mid := make([]map[string]float64, 3)
	for i, h := range hosts {
		mid[i] = scrape(t, h)
		base[i] = diff(before[i], mid[i])
		w := base[i]
		if w.requests < 60*5 || w.requests > 60*100 {
			t.Errorf("%s: %.0f requests in 60 s, want about 20/s", h.Name, w.requests)
		}
		if w.p95 < 0.05 || w.p95 > 0.15 {
			t.Errorf("%s: p95 %.3f s, want about 0.09 s", h.Name, w.p95)
		}
		if w.errShare < 0.002 || w.errShare > 0.015 {
			t.Errorf("%s: error share %.4f, want about 0.005", h.Name, w.errShare)
		}
		if w.busy < 0.2 || w.busy > 0.45 {
			t.Errorf("%s: CPU busy %.3f, want about 0.3", h.Name, w.busy)
		}
		if got := mid[i]["http_request_duration_seconds_bucket{le=\"+Inf\"}"]; got != mid[i]["http_request_duration_seconds_count"] {
			t.Errorf("%s: +Inf bucket %v != count", h.Name, got)
		}
		if mid[i][`app_info{version="v1"}`] != 1 {
			t.Errorf("%s: app_info{version=\"v1\"} missing", h.Name)
		}
	}

	writeConf(t, hosts[1], AppConf{Version: "v2", LatencyFactor: 1.5, ErrorShare: 0.05, CPULoad: 0.6})
	if n := f.Writes("web-2"); n != 1 {
		t.Errorf("Writes(web-2) after one write = %d, want 1", n)
	}
	clock.Advance(60 * time.Second)
	for i, h := range hosts {
		w := diff(mid[i], scrape(t, h))
		ratio := func(a, b float64) float64 { return a / b }
		if i == 1 {
			if r := ratio(w.meanLatency, base[i].meanLatency); r < 1.35 || r > 1.65 {
				t.Errorf("%s: mean latency x%.2f after latency_factor=1.5, want about x1.5", h.Name, r)
			}
			if w.errShare < 0.03 || w.errShare > 0.08 {
				t.Errorf("%s: error share %.4f after error_share=0.05", h.Name, w.errShare)
			}
			if w.busy < 0.45 || w.busy > 0.8 {
				t.Errorf("%s: CPU busy %.3f after cpu_load=0.6", h.Name, w.busy)
			}
			continue
		}
		if r := ratio(w.meanLatency, base[i].meanLatency); r < 0.85 || r > 1.15 {
			t.Errorf("%s (unchanged): mean latency x%.2f, want about x1", h.Name, r)
		}
		if n := f.Writes(h.Name); n != 0 {
			t.Errorf("%s: Writes = %d, want 0", h.Name, n)
		}
	}
	if c, _ := f.Conf("web-2"); c.Version != "v2" {
		t.Errorf("Conf(web-2).Version = %q, want v2", c.Version)
	}
}

// The same seed and clock give the same series; another seed does not.
func TestSeedReproducible(t *testing.T) {
	series := func(seed int64) []float64 {
		clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
		f := startFleet(t, 2, seed, clock)
		var out []float64
		for range 5 {
			clock.Advance(7 * time.Second)
			for _, h := range f.Hosts() {
				m := scrape(t, h)
				out = append(out, m["http_request_duration_seconds_sum"], m[`http_requests_total{code="500"}`])
			}
		}
		return out
	}
	a, b, c := series(42), series(42), series(43)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 42 twice: sample %d differs: %v vs %v", i, a[i], b[i])
		}
	}
	same := true
	for i := range a {
		same = same && a[i] == c[i]
	}
	if same {
		t.Errorf("seeds 42 and 43 gave the same series")
	}
}

// Over a long quiet stretch the noise stays realistic: no host's 15 s p95
// strays far from its own median, yet it is not flat either.
func TestNoiseBounded(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	f := startFleet(t, 3, 3, clock)
	for _, h := range f.Hosts() {
		prev := scrape(t, h)
		var p95s []float64
		for range 240 { // one hour in 15 s windows
			clock.Advance(15 * time.Second)
			cur := scrape(t, h)
			p95s = append(p95s, diff(prev, cur).p95)
			prev = cur
		}
		lo, hi, mean := math.Inf(1), math.Inf(-1), 0.0
		for _, v := range p95s {
			lo, hi, mean = math.Min(lo, v), math.Max(hi, v), mean+v/float64(len(p95s))
		}
		t.Logf("%s: 15 s p95 over an hour in [%.3f, %.3f], mean %.3f", h.Name, lo, hi, mean)
		if hi/lo > 2 || hi/lo < 1.05 {
			t.Errorf("%s: 15 s p95 over an hour in [%.3f, %.3f] (mean %.3f): want some noise but under x2", h.Name, lo, hi, mean)
		}
	}
}

func TestParseAppConf(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    AppConf
		wantErr string
	}{
		{name: "neutral round trip", text: NeutralConf().Format(), want: NeutralConf()},
		{name: "playbook template", text: "# app.conf\nversion=v2\nlatency_factor=1.5\nerror_share=0.005\ncpu_load=0.3\n",
			want: AppConf{Version: "v2", LatencyFactor: 1.5, ErrorShare: 0.005, CPULoad: 0.3}},
		{name: "missing keys keep neutral values", text: "version = v3\n", want: AppConf{Version: "v3", LatencyFactor: 1, ErrorShare: 0.005, CPULoad: 0.3}},
		{name: "unknown key", text: "version=v1\nlatency=2\n", wantErr: `line 2: unknown key "latency"`},
		{name: "not a number", text: "latency_factor=fast\n", wantErr: `line 1: latency_factor: "fast" is not a number`},
		{name: "out of range, all reported", text: "error_share=2\ncpu_load=-1\nlatency_factor=0\n",
			wantErr: "line 1: error_share must be in [0, 1]; line 2: cpu_load must be in [0, 1]; line 3: latency_factor must be > 0"},
		{name: "no equals sign", text: "version v1\n", wantErr: `line 1: want key=value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAppConf(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// A bad app.conf leaves the host on its last good configuration.
func TestBadAppConfKeepsPrevious(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	f := startFleet(t, 1, 1, clock)
	h := f.Hosts()[0]
	writeConf(t, h, AppConf{Version: "v2", LatencyFactor: 2, ErrorShare: 0.01, CPULoad: 0.3})
	clock.Advance(time.Second)
	scrape(t, h)
	if err := os.WriteFile(filepath.Join(h.Dir, "app.conf"), []byte("latency_factor=oops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	m := scrape(t, h)
	if m[`app_info{version="v2"}`] != 1 {
		t.Errorf("after a bad app.conf: want the host still on v2, got %v", m)
	}
	if n := f.Writes(h.Name); n != 2 {
		t.Errorf("Writes = %d, want 2", n)
	}
}

func TestScrapeConfig(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	f := startFleet(t, 2, 1, clock)
	path := filepath.Join(t.TempDir(), "scrape.yml")
	if err := f.ScrapeConfig(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global struct {
			ScrapeInterval string `yaml:"scrape_interval"`
		} `yaml:"global"`
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
			RelabelConfigs []map[string]any `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if cfg.Global.ScrapeInterval != "1s" || len(cfg.ScrapeConfigs) != 1 {
		t.Fatalf("got %+v", cfg)
	}
	sc := cfg.ScrapeConfigs[0]
	for i, h := range f.Hosts() {
		got := sc.StaticConfigs[i]
		if len(got.Targets) != 1 || got.Targets[0] != h.Target() || got.Labels["simfleet_host"] != h.Name {
			t.Errorf("static config %d: %+v, want target %s labelled %s", i, got, h.Target(), h.Name)
		}
	}
	if len(sc.RelabelConfigs) != 2 || sc.RelabelConfigs[0]["target_label"] != "instance" {
		t.Errorf("relabel configs %v: want simfleet_host copied to instance, then dropped", sc.RelabelConfigs)
	}
}

// Close stops the exporters; so does cancelling Start's context.
func TestCloseStopsExporters(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	f, err := Start(ctx, Config{Dir: t.TempDir(), Hosts: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := f.Hosts()[0]
	resp, err := http.Get("http://" + h.Target() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	cancel()
	// Close after the context's own stop must wait for it and not fail.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + h.Target() + "/metrics"); err == nil {
		t.Errorf("exporter still answers after Close")
	}
}
