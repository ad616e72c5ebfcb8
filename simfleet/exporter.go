package simfleet

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Buckets are the upper bounds of http_request_duration_seconds, in
// seconds (Prometheus client defaults plus 0.075 and 0.15, where the
// simulated latencies live).
var Buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10}

const (
	// latencySigma is the spread of the log-normal latency distribution;
	// its p95 is exp(1.645*0.45) = 2.1 times its median.
	latencySigma = 0.45
	// maxSteps bounds the work of one scrape after a long gap: the gap is
	// integrated in at most this many steps (1 s each when it is shorter).
	maxSteps = 7200
)

// fileState identifies one version of app.conf on disk.
type fileState struct {
	exists bool
	ino    uint64
	size   int64
	mtime  time.Time
}

func statFile(path string) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	st := fileState{exists: true, size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// host is one simulated host: its configuration file, its noise, and its
// counters, advanced lazily to the clock's time at each scrape.
type host struct {
	name  string
	dir   string
	noise noise
	clock func() time.Time
	epoch time.Time
	log   *slog.Logger

	mu     sync.Mutex
	conf   AppConf
	file   fileState
	writes int
	// changed is when the configuration in effect last changed (the
	// start, or the new app.conf's modification time).
	changed time.Time
	last    time.Time
	// counters
	buckets []float64
	sum     float64
	count   float64
	ok      float64
	errors  float64
	idle    float64
	user    float64
}

func (h *host) confPath() string { return h.dir + "/app.conf" }

// observe re-reads app.conf if it changed on disk since the last look and
// returns the moment from which the new configuration applies: its mtime,
// clamped to [h.last, now], so that a change between two scrapes takes
// effect when it happened. Callers hold h.mu.
func (h *host) observe(now time.Time) (next AppConf, from time.Time, changed bool) {
	st := statFile(h.confPath())
	if st == h.file {
		return h.conf, now, false
	}
	h.file = st
	h.writes++
	if !st.exists {
		return h.conf, now, false
	}
	data, err := os.ReadFile(h.confPath())
	if err != nil {
		h.log.Warn("simfleet: read app.conf", "host", h.name, "err", err)
		return h.conf, now, false
	}
	c, err := ParseAppConf(string(data))
	if err != nil {
		h.log.Warn("simfleet: bad app.conf, keeping the previous configuration", "host", h.name, "err", err)
		return h.conf, now, false
	}
	from = st.mtime
	if from.Before(h.last) {
		from = h.last
	}
	if from.After(now) {
		from = now
	}
	h.log.Info("simfleet: configuration changed", "host", h.name, "version", c.Version,
		"latency_factor", c.LatencyFactor, "error_share", c.ErrorShare, "cpu_load", c.CPULoad)
	return c, from, true
}

// advance integrates the simulated traffic from h.last to now. Callers
// hold h.mu.
func (h *host) advance(now time.Time) {
	next, from, changed := h.observe(now)
	if changed {
		h.integrate(from)
		h.conf = next
		h.changed = from
	}
	h.integrate(now)
}

// integrate adds the expected requests, errors, latencies and CPU time of
// [h.last, to) to the counters, in steps of one second (longer after a
// long gap). Counters hold expected counts, so they are fractional.
func (h *host) integrate(to time.Time) {
	gap := to.Sub(h.last).Seconds()
	if gap <= 0 {
		return
	}
	steps := int(math.Ceil(gap))
	if steps > maxSteps {
		steps = maxSteps
	}
	dt := gap / float64(steps)
	t0 := h.last.Sub(h.epoch).Seconds()
	for i := range steps {
		l := h.noise.at(t0 + (float64(i)+0.5)*dt)
		n := h.noise.baseRPS * l.traffic * dt
		median := h.noise.baseLatency * h.conf.LatencyFactor * l.latency
		for b, le := range Buckets {
			h.buckets[b] += n * lognormalCDF(le, median, latencySigma)
		}
		h.sum += n * median * math.Exp(latencySigma*latencySigma/2)
		h.count += n
		share := math.Min(1, h.conf.ErrorShare*l.errors)
		h.errors += n * share
		h.ok += n * (1 - share)
		busy := math.Min(0.99, math.Max(0.01, h.conf.CPULoad*l.cpu))
		h.user += dt * busy
		h.idle += dt * (1 - busy)
	}
	h.last = to
}

func lognormalCDF(x, median, sigma float64) float64 {
	return 0.5 * math.Erfc(-math.Log(x/median)/(sigma*math.Sqrt2))
}

// ServeHTTP serves /metrics in the Prometheus text format.
func (h *host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	h.mu.Lock()
	h.advance(h.clock())
	var b strings.Builder
	h.writeMetrics(&b)
	h.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// writeMetrics renders the counters, each sample stamped with the moment
// its counters were integrated to (h.last), which the scrape config tells
// VictoriaMetrics to keep (honor_timestamps). A scrape stamped with its
// own start instead would misplace every counter by however long the
// scrape waited, and a loaded machine makes that wait vary by up to
// seconds: a rate over a 15 s window then moves by as much as the wait
// varies (CPU's 1 - rate(idle) by several percent). Callers hold h.mu.
func (h *host) writeMetrics(w *strings.Builder) {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	ts := strconv.FormatInt(h.last.UnixMilli(), 10)
	fmt.Fprintln(w, "# HELP http_request_duration_seconds Latency of the simulated HTTP requests.")
	fmt.Fprintln(w, "# TYPE http_request_duration_seconds histogram")
	for b, le := range Buckets {
		fmt.Fprintf(w, "http_request_duration_seconds_bucket{le=%q} %s %s\n", f(le), f(h.buckets[b]), ts)
	}
	fmt.Fprintf(w, "http_request_duration_seconds_bucket{le=\"+Inf\"} %s %s\n", f(h.count), ts)
	fmt.Fprintf(w, "http_request_duration_seconds_sum %s %s\n", f(h.sum), ts)
	fmt.Fprintf(w, "http_request_duration_seconds_count %s %s\n", f(h.count), ts)
	fmt.Fprintln(w, "# HELP http_requests_total Simulated HTTP requests by status code.")
	fmt.Fprintln(w, "# TYPE http_requests_total counter")
	fmt.Fprintf(w, "http_requests_total{code=\"200\"} %s %s\n", f(h.ok), ts)
	fmt.Fprintf(w, "http_requests_total{code=\"500\"} %s %s\n", f(h.errors), ts)
	fmt.Fprintln(w, "# HELP node_cpu_seconds_total Simulated CPU time by mode.")
	fmt.Fprintln(w, "# TYPE node_cpu_seconds_total counter")
	fmt.Fprintf(w, "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} %s %s\n", f(h.idle), ts)
	fmt.Fprintf(w, "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} %s %s\n", f(h.user), ts)
	fmt.Fprintln(w, "# HELP app_info The configuration version the simulated app runs.")
	fmt.Fprintln(w, "# TYPE app_info gauge")
	fmt.Fprintf(w, "app_info{version=%q} 1 %s\n", h.conf.Version, ts)
}
