// Package evaluation replays the real data sets in testdata/ (Numenta
// Anomaly Benchmark CloudWatch series, JumpStarter production services,
// Nezha microservice fault injections) through rollguard's detection and
// through the judges the peers ship or a user writes by hand, under fixed
// rollout protocols, and tabulates for every judge side by side how many
// visible regressions it caught, how many no-change rollouts it rolled
// back, and how many polls it took from visible to decided.
//
// rollguard is judged as a user runs it: a rollout.yaml is loaded by
// runner.Load, the engine configuration is built from it by the runner's
// own function, and the README's policies run in the real policies.Engine.
//
// The story is told in four files: datasets.go loads the data, protocols.go
// turns it into rollouts with known outcomes (and the visibility oracle),
// judges.go holds the judges, report.go runs them and prints the tables.
package evaluation

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Metric is one watched query of a data set.
type Metric struct {
	// Name is the query's name in the rollout spec.
	Name string
	// Worse is +1 when higher is worse, -1 when lower is worse.
	Worse float64
	// Bound is the value the metric cannot pass in its better direction
	// (100 for a success rate, 0 for latencies and counts): the oracle's
	// tolerance is relative to the distance from it.
	Bound float64
	// Unit is the smallest change that matters in the metric's own unit
	// (the oracle's tolerance at the bound: 1 point of success rate, 1
	// error); 0 means only the relative tolerance applies.
	Unit float64
	// App marks an application-wide metric (Nezha's frontend: one series
	// for the whole system), watched as the canary's own in the canary
	// protocols only.
	App bool
	// Warms marks a metric that a restarted instance raises while it
	// warms up (latency, CPU): the cold-start protocol raises it.
	Warms bool
}

// Host is one host's series, one value per poll (NaN: no data).
type Host struct {
	Name   string
	Values [][]float64 // [metric][poll]
}

// Label is a labelled stretch of a source: a regression to catch, a
// fleet-wide movement not to roll back on, or a stretch to leave alone.
type Label struct {
	// Host is the host index, -1 for every host.
	Host int
	// From and To are the labelled polls, [From, To).
	From, To int
	// Kind names the label (NAB anomaly, a Nezha fault kind, a
	// JumpStarter scope).
	Kind string
	// Shifted, when not nil, says per metric whether the source's own
	// screening saw it move in its worse direction (Nezha's
	// signal_check); nil leaves visibility to the oracle alone.
	Shifted []bool
}

// Source is one data set's recording: hosts whose polls line up.
type Source struct {
	// Dataset is the table the source reports in: nab, nezha, jumpstarter.
	Dataset string
	// Name tells sources of one data set apart.
	Name     string
	Interval time.Duration
	// Start is the time of poll 0.
	Start   time.Time
	Metrics []Metric
	Hosts   []Host
	// Regressions are the labelled regressions to catch.
	Regressions []Label
	// FleetMoves are labelled movements of the whole fleet.
	FleetMoves []Label
	// Busy are stretches that are neither quiet nor a case: other labels,
	// unlabelled disturbances. Host -1 covers every host.
	Busy []Label
	// Quiet, when not nil, are the only stretches known to hold no change
	// (Nezha's quiet windows); nil means every poll away from a label.
	Quiet [][2]int
	// Half splits the source's cases into development and held-out.
	Half func(poll int) Half
	// Polls is the number of polls of every series.
	Polls int
}

// Half is one of the two fixed halves every data set's cases fall in.
type Half int

// The halves: defaults are chosen on the development halves of all data
// sets together; the held-out halves only report.
const (
	Dev Half = iota
	HeldOut
)

func (h Half) String() string {
	if h == Dev {
		return "dev"
	}
	return "held-out"
}

// quiet reports whether host h's polls [from, to) are away from every label
// by guard polls and, when the source lists quiet windows, inside one.
func (s *Source) quiet(h, from, to, guard int) bool {
	if from < 0 || to > s.Polls {
		return false
	}
	if s.Quiet != nil {
		in := false
		for _, q := range s.Quiet {
			if from >= q[0] && to <= q[1] {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, set := range [][]Label{s.Regressions, s.FleetMoves, s.Busy} {
		for _, l := range set {
			if (l.Host == h || l.Host == -1 || h == -1) && from < l.To+guard && to > l.From-guard {
				return false
			}
		}
	}
	return true
}

// LoadAll loads every source under dir (evaluation/testdata).
func LoadAll(dir string) ([]*Source, error) {
	nab, err := loadNAB(filepath.Join(dir, "nab"))
	if err != nil {
		return nil, err
	}
	js, err := loadJumpStarter(filepath.Join(dir, "jumpstarter"))
	if err != nil {
		return nil, err
	}
	nz, err := loadNezha(filepath.Join(dir, "nezha"))
	if err != nil {
		return nil, err
	}
	out := append(nab, js)
	return append(out, nz...), nil
}

// readCSV reads a gzipped CSV: its header, its first column as text (the
// timestamps) and every other column as numbers (an empty cell is NaN;
// cols[0] is nil).
func readCSV(path string) (header, first []string, cols [][]float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	rows, err := csv.NewReader(zr).ReadAll()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) < 2 {
		return nil, nil, nil, fmt.Errorf("%s: no rows", path)
	}
	header = rows[0]
	cols = make([][]float64, len(header))
	for i, row := range rows[1:] {
		first = append(first, row[0])
		for c := 1; c < len(header); c++ {
			v := math.NaN()
			if row[c] != "" {
				if v, err = strconv.ParseFloat(row[c], 64); err != nil {
					return nil, nil, nil, fmt.Errorf("%s:%d: column %s: %w", path, i+2, header[c], err)
				}
			}
			cols[c] = append(cols[c], v)
		}
	}
	return header, first, cols, nil
}

// loadNAB loads the 17 NAB CloudWatch series, one source each (they come
// from unrelated instances and times, so none is another's control). The
// halves alternate by series in name order.
func loadNAB(dir string) ([]*Source, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "anomaly_windows.json"))
	if err != nil {
		return nil, err
	}
	var windows map[string][][2]string
	if err := json.Unmarshal(raw, &windows); err != nil {
		return nil, fmt.Errorf("nab anomaly windows: %w", err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range windows {
			if !yield(k) {
				return
			}
		}
	})
	const layout = "2006-01-02 15:04:05"
	var out []*Source
	for i, name := range names {
		_, stamps, cols, err := readCSV(filepath.Join(dir, name+".gz"))
		if err != nil {
			return nil, err
		}
		times := make([]time.Time, len(stamps))
		for j, s := range stamps {
			if times[j], err = time.Parse(layout, s); err != nil {
				return nil, fmt.Errorf("nab %s: time %q: %w", name, s, err)
			}
		}
		short := strings.TrimSuffix(filepath.Base(name), ".csv")
		half := Dev
		if i%2 == 1 {
			half = HeldOut
		}
		s := &Source{
			Dataset: "nab", Name: short, Interval: 5 * time.Minute, Start: times[0],
			Metrics: []Metric{{Name: "value", Worse: 1, Warms: true}},
			Hosts:   []Host{{Name: short, Values: [][]float64{cols[1]}}},
			Half:    func(int) Half { return half },
			Polls:   len(cols[1]),
		}
		var spans [][2]int
		for _, w := range windows[name] {
			from, err1 := time.Parse(layout, strings.Split(w[0], ".")[0])
			to, err2 := time.Parse(layout, strings.Split(w[1], ".")[0])
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("nab %s: window %v: bad time", name, w)
			}
			first, _ := slices.BinarySearchFunc(times, from, func(a, b time.Time) int { return a.Compare(b) })
			last, found := slices.BinarySearchFunc(times, to, func(a, b time.Time) int { return a.Compare(b) })
			if !found {
				last--
			}
			spans = append(spans, [2]int{first, last})
		}
		labels, err := nabLabels(s.Polls, spans)
		if err != nil {
			return nil, fmt.Errorf("nab %s: %w", name, err)
		}
		// A labelled point is a regression from that point to the end of
		// its window; the rest of the window is neither quiet nor a case.
		for _, w := range spans {
			s.Busy = append(s.Busy, Label{Host: 0, From: w[0], To: w[1] + 1, Kind: "anomaly window"})
		}
		for _, at := range labels {
			end := at + 1
			for _, w := range spans {
				if at >= w[0] && at <= w[1] {
					end = w[1] + 1
				}
			}
			s.Regressions = append(s.Regressions, Label{Host: 0, From: at, To: end, Kind: "anomaly"})
		}
		out = append(out, s)
	}
	return out, nil
}

// nabLabels recovers the labelled anomalies' points from the windows of a
// series of n points. NAB's labeller (nab/labeler.py, applyWindows and
// checkWindows) gives each of a file's k labels the window
// [a - W/2, a + W/2] with W = int(0.1 n / k) points, clipped to the series,
// and merges windows that overlap. So a window of exactly 2 (W/2) points
// holds one label at its centre, a longer one holds two labels that were
// closer than W, at its first point + W/2 and its last point - W/2
// (ec2_cpu_utilization_825cc2: two CPU drops 12 h apart, whose merged
// window's centre is neither), and a window clipped at an end of the
// series has its label W/2 from its other end. k is the smallest count
// that explains every window this way; a layout that no k explains is an
// error, not a guess.
func nabLabels(n int, windows [][2]int) ([]int, error) {
	if len(windows) == 0 {
		return nil, nil
	}
	for k := len(windows); k <= 2*len(windows); k++ {
		half := int(0.1*float64(n)/float64(k)) / 2
		var labels []int
		ok := true
		for _, w := range windows {
			span := w[1] - w[0]
			switch {
			case w[0] == 0 && span < 2*half && w[1] >= half:
				labels = append(labels, w[1]-half)
			case w[1] == n-1 && span < 2*half && w[0]+half <= w[1]:
				labels = append(labels, w[0]+half)
			case span == 2*half:
				labels = append(labels, w[0]+half)
			case span > 2*half && span <= 4*half:
				labels = append(labels, w[0]+half, w[1]-half)
			default:
				ok = false
			}
		}
		if ok && len(labels) == k {
			return labels, nil
		}
	}
	return nil, fmt.Errorf("anomaly windows %v of %d points: no label count explains them", windows, n)
}

// jumpStarterMetrics are the watched columns of the JumpStarter services.
// The source does not name them; by scale m00 and m05 look like latencies,
// m06 like a utilisation percentage, m01 like an error count (0 most of the
// time) and m18 like a request counter, whose drop on one service is that
// service failing.
var jumpStarterMetrics = []Metric{
	{Name: "m00", Worse: 1, Warms: true},
	{Name: "m01", Worse: 1, Unit: 1},
	{Name: "m05", Worse: 1, Warms: true},
	{Name: "m06", Worse: 1, Warms: true},
	{Name: "m18", Worse: -1},
}

// loadJumpStarter loads the 15 services as one fleet. Local segments are
// regressions, fleet segments fleet moves, group segments busy; the halves
// alternate by day.
func loadJumpStarter(dir string) (*Source, error) {
	files, err := filepath.Glob(filepath.Join(dir, "hosts", "*.csv.gz"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("jumpstarter: no host files in %s", dir)
	}
	slices.Sort(files)
	s := &Source{Dataset: "jumpstarter", Name: "jumpstarter", Interval: 5 * time.Minute,
		Start: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Metrics: jumpStarterMetrics}
	index := map[string]int{}
	for _, f := range files {
		header, _, cols, err := readCSV(f)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(filepath.Base(f), ".csv.gz")
		h := Host{Name: name}
		for _, m := range s.Metrics {
			c := slices.Index(header, m.Name)
			if c < 0 {
				return nil, fmt.Errorf("jumpstarter %s: no column %s", name, m.Name)
			}
			h.Values = append(h.Values, cols[c])
		}
		index[name] = len(s.Hosts)
		s.Hosts = append(s.Hosts, h)
		s.Polls = len(cols[1])
	}
	raw, err := os.ReadFile(filepath.Join(dir, "labels.json"))
	if err != nil {
		return nil, err
	}
	var labels []struct {
		Host  string `json:"host"`
		From  int    `json:"start_index"`
		To    int    `json:"end_index_exclusive"`
		Scope string `json:"scope"`
	}
	if err := json.Unmarshal(raw, &labels); err != nil {
		return nil, fmt.Errorf("jumpstarter labels: %w", err)
	}
	for _, l := range labels {
		h, ok := index[l.Host]
		if !ok {
			return nil, fmt.Errorf("jumpstarter label: unknown host %s", l.Host)
		}
		lb := Label{Host: h, From: l.From, To: l.To, Kind: l.Scope}
		switch l.Scope {
		case "local":
			s.Regressions = append(s.Regressions, lb)
		case "fleet":
			s.FleetMoves = append(s.FleetMoves, lb)
		default:
			s.Busy = append(s.Busy, lb)
		}
	}
	perDay := int(24 * time.Hour / s.Interval)
	s.Half = func(poll int) Half { return Half((poll / perDay) % 2) }
	return s, nil
}

// nezhaPodMetrics and nezhaAppMetrics are the watched columns of Nezha's
// pods and of its frontend (the whole application). server_latency_p90_s is
// watched on OnlineBoutique only: most TrainTicket pods serve no request
// in most minutes.
var (
	nezhaPodMetrics = []Metric{
		{Name: "cpu_usage_pct", Worse: 1, Warms: true},
		{Name: "mem_usage_pct", Worse: 1},
		{Name: "server_latency_p90_s", Worse: 1, Warms: true},
		{Name: "workload_ops", Worse: -1},
	}
	nezhaAppMetrics = []Metric{
		{Name: "success_rate_pct", Worse: -1, Bound: 100, Unit: 1, App: true},
		{Name: "latency_p90_s", Worse: 1, App: true, Warms: true},
	}
	// nezhaSignal maps a watched metric to its name in signal_check.
	nezhaSignal = map[string]string{
		"cpu_usage_pct": "pod.cpu_usage_pct", "mem_usage_pct": "pod.mem_usage_pct",
		"server_latency_p90_s": "pod.server_latency_p90_s", "workload_ops": "pod.workload_ops",
		"success_rate_pct": "frontend.success_rate_pct", "latency_p90_s": "frontend.latency_p90_s",
	}
)

// loadNezha loads each Nezha system as one fleet of pods. Faults are
// regressions; unlabelled disturbances are busy; only the quiet windows
// are quiet. The halves alternate by hour.
func loadNezha(dir string) ([]*Source, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var manifest []struct {
		System string   `json:"system"`
		Dir    string   `json:"dir"`
		First  int64    `json:"first_timestamp"`
		Pods   []string `json:"pods"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return nil, fmt.Errorf("nezha manifest: %w", err)
	}
	var faults []struct {
		System string `json:"system"`
		Host   string `json:"host"`
		Start  int64  `json:"start"`
		End    int64  `json:"end"`
		Kind   string `json:"kind"`
		Class  string `json:"kind_class"`
		Signal struct {
			Z       map[string]float64 `json:"z"`
			Shifted []string           `json:"shifted_metrics"`
		} `json:"signal_check"`
	}
	var quiet, disturbed []struct {
		System string  `json:"system"`
		Host   *string `json:"host"`
		Start  int64   `json:"start"`
		End    int64   `json:"end"`
	}
	for file, v := range map[string]any{"labels.json": &faults, "quiet_windows.json": &quiet, "unlabelled_disturbances.json": &disturbed} {
		raw, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		// Python wrote the files: a z it could not compute is NaN, which
		// JSON does not have.
		raw = bytes.ReplaceAll(raw, []byte(": NaN"), []byte(": null"))
		if err := json.Unmarshal(raw, v); err != nil {
			return nil, fmt.Errorf("nezha %s: %w", file, err)
		}
	}
	var out []*Source
	for _, m := range manifest {
		s := &Source{Dataset: "nezha", Name: m.System, Interval: time.Minute, Start: time.Unix(m.First, 0).UTC()}
		for _, mt := range nezhaPodMetrics {
			if mt.Name == "server_latency_p90_s" && m.System != "online_boutique" {
				continue
			}
			s.Metrics = append(s.Metrics, mt)
		}
		header, _, app, err := readCSV(filepath.Join(dir, m.Dir, "frontend_service.csv.gz"))
		if err != nil {
			return nil, err
		}
		var appCols [][]float64
		for _, mt := range nezhaAppMetrics {
			if c := slices.Index(header, mt.Name); c >= 0 {
				s.Metrics = append(s.Metrics, mt)
				appCols = append(appCols, app[c])
			}
		}
		index := map[string]int{}
		for _, pod := range m.Pods {
			header, _, cols, err := readCSV(filepath.Join(dir, m.Dir, "pods", pod+".csv.gz"))
			if err != nil {
				return nil, err
			}
			h := Host{Name: pod}
			for _, mt := range s.Metrics {
				if mt.App {
					continue
				}
				c := slices.Index(header, mt.Name)
				if c < 0 {
					return nil, fmt.Errorf("nezha %s: no column %s", pod, mt.Name)
				}
				h.Values = append(h.Values, cols[c])
			}
			h.Values = append(h.Values, appCols...)
			index[pod] = len(s.Hosts)
			s.Hosts = append(s.Hosts, h)
			s.Polls = len(h.Values[0])
		}
		poll := func(t int64) int {
			return int(math.Ceil(float64(t-m.First) / s.Interval.Seconds()))
		}
		for _, f := range faults {
			if f.System != m.System {
				continue
			}
			h, ok := index[f.Host]
			if !ok {
				return nil, fmt.Errorf("nezha fault: unknown pod %s", f.Host)
			}
			l := Label{Host: h, From: poll(f.Start), To: poll(f.End), Kind: f.Kind, Shifted: make([]bool, len(s.Metrics))}
			for i, mt := range s.Metrics {
				name := nezhaSignal[mt.Name]
				if slices.Contains(f.Signal.Shifted, name) && f.Signal.Z[name]*mt.Worse > 0 {
					l.Shifted[i] = true
				}
			}
			s.Regressions = append(s.Regressions, l)
		}
		for _, d := range disturbed {
			if d.System != m.System {
				continue
			}
			h := -1
			if d.Host != nil {
				h = index[*d.Host]
			}
			s.Busy = append(s.Busy, Label{Host: h, From: poll(d.Start), To: poll(d.End), Kind: "unlabelled"})
		}
		for _, q := range quiet {
			if q.System == m.System {
				s.Quiet = append(s.Quiet, [2]int{poll(q.Start), min(poll(q.End), s.Polls)})
			}
		}
		s.Half = func(p int) Half { return Half((p / 60) % 2) }
		out = append(out, s)
	}
	return out, nil
}
