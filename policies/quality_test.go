package policies

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The detection-quality replay: real AWS CloudWatch series from the Numenta
// Anomaly Benchmark (testdata/nab, MIT licence, 5-minute steps) with their
// labelled anomaly windows. Each case is a single-host rollout: 4 h of
// baseline (48 points) before a change time, then 1 h of monitoring at
// 5-minute polls (12 polls); the policy is "the host is degraded"
// (score > threshold).
//
//   - No change: change times every hour where neither the baseline nor the
//     monitoring hour touches a labelled window. The rollout must promote;
//     a fire is a false rollback, counted per no-change hour.
//   - Anomaly: NAB centres a window of 10% of the file's length / its number
//     of labels on each labelled anomaly (hours of normal data on either
//     side: the window is a scoring tolerance, not the anomaly's extent),
//     so a change at the window's start would have nothing to catch within
//     the hour: the table prints that case for information only. The
//     labelled points are recovered from the windows (nabLabels; NAB merges
//     the windows of labels closer than a window, so a merged window's
//     centre is no label). The asserted cases put the change at each
//     labelled point, a few polls before it (the regression shows up 3 or 6
//     polls after the apply) and a few points after it (the baseline
//     already holds its first points). Caught = fires within the 12 polls.
//     The share caught is over these cases (4 per label).

const (
	nabBaseline = 48
	nabPolls    = 12
)

// nabOffsets are the change times tried per labelled anomaly, in points
// after the labelled point (the window's centre).
var nabOffsets = []int{-6, -3, 0, 3}

type nabSeries struct {
	name    string
	values  []float64
	windows [][2]int // [first, last] point index, inclusive
	// labels are the labelled anomalies' point indices (see nabLabels).
	labels []int
}

func loadNAB(t testing.TB) []nabSeries {
	t.Helper()
	dir := filepath.Join("testdata", "nab")
	raw, err := os.ReadFile(filepath.Join(dir, "anomaly_windows.json"))
	if err != nil {
		t.Fatalf("read anomaly windows: %v", err)
	}
	var labels map[string][][2]string
	if err := json.Unmarshal(raw, &labels); err != nil {
		t.Fatalf("parse anomaly windows: %v", err)
	}
	names := make([]string, 0, len(labels))
	for name := range labels {
		names = append(names, name)
	}
	sort.Strings(names)
	const layout = "2006-01-02 15:04:05"
	var out []nabSeries
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		s := nabSeries{name: strings.TrimSuffix(filepath.Base(name), ".csv")}
		var ts []time.Time
		for i, row := range rows[1:] {
			at, err := time.Parse(layout, row[0])
			if err != nil {
				t.Fatalf("%s:%d: time %q: %v", name, i+2, row[0], err)
			}
			v, err := strconv.ParseFloat(row[1], 64)
			if err != nil {
				t.Fatalf("%s:%d: value %q: %v", name, i+2, row[1], err)
			}
			ts = append(ts, at)
			s.values = append(s.values, v)
		}
		for _, w := range labels[name] {
			from, err1 := time.Parse(layout, strings.Split(w[0], ".")[0])
			to, err2 := time.Parse(layout, strings.Split(w[1], ".")[0])
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: window %v: bad time", name, w)
			}
			first := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(from) })
			last := sort.Search(len(ts), func(i int) bool { return ts[i].After(to) }) - 1
			s.windows = append(s.windows, [2]int{first, last})
		}
		labels, err := nabLabels(len(s.values), s.windows)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s.labels = labels
		out = append(out, s)
	}
	return out
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

// overlaps reports whether [from, to) touches a labelled window.
func (s nabSeries) overlaps(from, to int) bool {
	for _, w := range s.windows {
		if from <= w[1] && to > w[0] {
			return true
		}
	}
	return false
}

// nabRule decides one case: the baseline samples and the monitored values
// (one per poll); it returns the 1-based poll that fired, or 0.
type nabRule func(baseline, monitored []float64) int

// detectorRule replays a case through an Engine with one host, one metric
// and the policy "host degraded".
func detectorRule(t testing.TB, cfg DetectorConfig) nabRule {
	t.Helper()
	degraded := &funcEvaluator{name: "degraded", fleet: func(env *Env) (bool, error) {
		return env.Fleet.Degraded > 0, nil
	}}
	e, err := NewEngine(EngineConfig{
		Hosts:    []string{"host"},
		Metrics:  []MetricConfig{{Name: "value", HigherIsWorse: true}},
		Detector: cfg,
		Policies: []Evaluator{degraded},
	})
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	obs := make([]float64, 1)
	return func(baseline, monitored []float64) int {
		e.SetBaseline(0, 0, baseline)
		e.StartWave("canary", 0, []int{0})
		for i, v := range monitored {
			obs[0] = v
			e.Observe(0, obs)
			r := e.Tick(PhaseMonitor, float64(i+1)*300)
			if r.Policies[0].Outcome == OutcomeFire {
				return i + 1
			}
		}
		return 0
	}
}

// zscoreRule is the plain rule to compare against: fire when one poll is
// more than limit standard deviations above the baseline mean.
func zscoreRule(limit float64) nabRule {
	return func(baseline, monitored []float64) int {
		var sum, sq float64
		for _, v := range baseline {
			sum += v
		}
		mean := sum / float64(len(baseline))
		for _, v := range baseline {
			sq += (v - mean) * (v - mean)
		}
		sd := math.Sqrt(sq / float64(len(baseline)-1))
		for i, v := range monitored {
			if sd > 0 && (v-mean)/sd > limit || sd == 0 && v > mean {
				return i + 1
			}
		}
		return 0
	}
}

type nabScore struct {
	hours, falseRollbacks int
	anomalies, caught     int
	caughtAt              map[int][2]int // offset -> caught, cases
	falseBySeries         map[string]int
	pollsToCatch          []int
}

func (s nabScore) falseRate() float64 { return float64(s.falseRollbacks) / float64(s.hours) }
func (s nabScore) catchRate() float64 { return float64(s.caught) / float64(s.anomalies) }

func scoreNAB(all []nabSeries, rule nabRule) nabScore {
	sc := nabScore{caughtAt: map[int][2]int{}, falseBySeries: map[string]int{}}
	for _, s := range all {
		for t := nabBaseline; t+nabPolls <= len(s.values); t += nabPolls {
			if s.overlaps(t-nabBaseline, t+nabPolls) {
				continue
			}
			sc.hours++
			if rule(s.values[t-nabBaseline:t], s.values[t:t+nabPolls]) > 0 {
				sc.falseRollbacks++
				sc.falseBySeries[s.name]++
			}
		}
		for _, label := range s.labels {
			for _, off := range nabOffsets {
				t := label + off
				if t < nabBaseline || t+nabPolls > len(s.values) {
					continue
				}
				sc.anomalies++
				c := sc.caughtAt[off]
				c[1]++
				if p := rule(s.values[t-nabBaseline:t], s.values[t:t+nabPolls]); p > 0 {
					sc.caught++
					c[0]++
					sc.pollsToCatch = append(sc.pollsToCatch, p)
				}
				sc.caughtAt[off] = c
			}
		}
	}
	return sc
}

// windowStartRate is the share of windows where rule fires within the hour
// after a change at the window's first point, hours before its label
// (informational: see above).
func windowStartRate(all []nabSeries, rule nabRule) (caught, n int) {
	for _, s := range all {
		for _, w := range s.windows {
			t := w[0]
			if t < nabBaseline || t+nabPolls > len(s.values) {
				continue
			}
			n++
			if rule(s.values[t-nabBaseline:t], s.values[t:t+nabPolls]) > 0 {
				caught++
			}
		}
	}
	return caught, n
}

func (s nabScore) row(name string) string {
	var offs []string
	for _, off := range nabOffsets {
		c := s.caughtAt[off]
		offs = append(offs, fmt.Sprintf("%+d: %2d/%2d", off, c[0], c[1]))
	}
	return fmt.Sprintf("%-22s false %5.2f%% (%3d/%4d h)  caught %5.1f%% (%2d/%2d; %s)  c6585a false %d",
		name, 100*s.falseRate(), s.falseRollbacks, s.hours, 100*s.catchRate(), s.caught, s.anomalies,
		strings.Join(offs, ", "), s.falseBySeries["ec2_cpu_utilization_c6585a"])
}

func TestDetectionQuality(t *testing.T) {
	all := loadNAB(t)
	// The plain rule, at limits around the same false-rollback rates.
	for _, limit := range []float64{3, 4, 6} {
		t.Log(scoreNAB(all, zscoreRule(limit)).row(fmt.Sprintf("z-score > %g", limit)))
	}
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := scoreNAB(all, detectorRule(t, cfg))
		t.Log(sc.row("rollguard " + name))
		c, n := windowStartRate(all, detectorRule(t, cfg))
		t.Logf("%-22s change at the window's first point (hours before the label): fires within the hour in %d/%d", "rollguard "+name, c, n)
		if name != SensitivityMedium {
			continue
		}
		if got := sc.falseRate(); got > 0.05 {
			t.Errorf("medium: %.2f%% false rollbacks per no-change hour, want <= 5%%", 100*got)
		}
		// The product target is 55%; TestDetectionTradeoff and the README
		// show why this replay cannot reach it at <= 5% false rollbacks with
		// a rule that does not fire on one spike (c6585a's normal spikes look
		// exactly like several labelled anomalies). Medium catches 42.7%
		// (53/124) at 4.30% against 38.7% for the plain z-score at a similar
		// rate (z > 6, which also fires 14 times on c6585a). It caught 56
		// while the first poll after the change weighed double (see judge):
		// a two-poll blip and a spike at that first poll, which the same
		// detector misses a few polls later, and one more spike whose score
		// the first poll's noise had raised. This floor guards against
		// regressions.
		if got := sc.caught; got < 53 {
			t.Errorf("medium: caught %d/%d (%.1f%%) of labelled anomalies within %d polls, want >= 53 (42.7%%)", got, sc.anomalies, 100*sc.catchRate(), nabPolls)
		}
		if n := sc.falseBySeries["ec2_cpu_utilization_c6585a"]; n != 0 {
			t.Errorf("medium: %d false rollbacks on ec2_cpu_utilization_c6585a, want 0", n)
		}
	}
}

func TestNABLabels(t *testing.T) {
	// n = 4032 points: one label gets a window of 403 points (half 201),
	// two labels 201 points each (half 100).
	tests := []struct {
		name    string
		n       int
		windows [][2]int
		want    []int
		wantErr bool
	}{
		{name: "no windows", n: 4032},
		{name: "one label", n: 4032, windows: [][2]int{{1765, 2167}}, want: []int{1966}},
		{name: "two labels", n: 4032, windows: [][2]int{{3447, 3647}, {3677, 3877}}, want: []int{3547, 3777}},
		{name: "two labels merged", n: 4032, windows: [][2]int{{1526, 1868}}, want: []int{1626, 1768}},
		// Three labels: 134 points each (half 67).
		{name: "merged pair beside a plain window", n: 4032, windows: [][2]int{{100, 234}, {1000, 1250}}, want: []int{167, 1067, 1183}},
		{name: "clipped at the start", n: 4032, windows: [][2]int{{0, 150}, {1000, 1200}}, want: []int{50, 1100}},
		{name: "clipped at the end", n: 4032, windows: [][2]int{{1000, 1200}, {3900, 4031}}, want: []int{1100, 4000}},
		{name: "clipped window too short for its label", n: 4032, windows: [][2]int{{0, 50}}, wantErr: true},
		{name: "too short for any label count", n: 4032, windows: [][2]int{{100, 150}}, wantErr: true},
		{name: "too long for two merged labels", n: 4032, windows: [][2]int{{100, 1000}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nabLabels(tt.n, tt.windows)
			if (err != nil) != tt.wantErr {
				t.Fatalf("nabLabels(%d, %v) error %v, want error %v", tt.n, tt.windows, err, tt.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("nabLabels(%d, %v) = %v, want %v", tt.n, tt.windows, got, tt.want)
			}
		})
	}
}

// TestDetectionTradeoff prints what the replay allows and the medium
// preset's trade-off curve, for the README:
//
//   - the ceiling: how many anomaly cases and no-change hours have at
//     least 1, 2 or 3 polls above everything their own 4 h baseline held
//     (a rule that sees only the monitored hour and that baseline, in the
//     worse direction, has little to go on elsewhere);
//   - medium with its threshold swept: false rollbacks, anomalies caught
//     and false rollbacks on c6585a at each.
//
// It asserts what makes the curve a curve: a higher threshold never fires
// more, on either side.
func TestDetectionTradeoff(t *testing.T) {
	all := loadNAB(t)
	for _, k := range []int{1, 2, 3} {
		rule := func(baseline, monitored []float64) int {
			top := baseline[0]
			for _, v := range baseline {
				top = max(top, v)
			}
			n := 0
			for i, v := range monitored {
				if v > top {
					n++
				}
				if n >= k {
					return i + 1
				}
			}
			return 0
		}
		t.Log(scoreNAB(all, rule).row(fmt.Sprintf(">= %d polls above max", k)))
	}
	cfg, err := Preset(SensitivityMedium)
	if err != nil {
		t.Fatal(err)
	}
	var prev *nabScore
	for th := 4.0; th <= 9; th += 0.5 {
		cfg.Threshold = th
		sc := scoreNAB(all, detectorRule(t, cfg))
		t.Log(sc.row(fmt.Sprintf("medium threshold %g", th)))
		if prev != nil && (sc.falseRollbacks > prev.falseRollbacks || sc.caught > prev.caught) {
			t.Errorf("threshold %g: %d false rollbacks and %d caught, more than at %g (%d, %d)",
				th, sc.falseRollbacks, sc.caught, th-0.5, prev.falseRollbacks, prev.caught)
		}
		prev = &sc
	}
}
