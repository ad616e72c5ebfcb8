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
//   - Anomaly: NAB centres each labelled window on the labelled anomaly, with
//     about 8 h of normal data on either side (the window is a scoring
//     tolerance, not the anomaly's extent), so a change at the window's start
//     would have nothing to catch within the hour: the table prints that
//     case for information only. The asserted cases put the change at the
//     labelled point, a few polls before it (the regression shows up 3 or 6
//     polls after the apply) and a few points into it (the baseline already
//     holds its first points). Caught = fires within the 12 polls.

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
		out = append(out, s)
	}
	return out
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
		for _, w := range s.windows {
			for _, off := range nabOffsets {
				t := (w[0]+w[1])/2 + off // the labelled point is the window's centre
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
// after a change at the window's start (informational: see above).
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
		t.Logf("%-22s change at the window start (8 h before the label): fires within the hour in %d/%d", "rollguard "+name, c, n)
		if name != SensitivityMedium {
			continue
		}
		if got := sc.falseRate(); got > 0.05 {
			t.Errorf("medium: %.2f%% false rollbacks per no-change hour, want <= 5%%", 100*got)
		}
		// The product target is 55%. Self-calibration (the baseline's own
		// largest score raises the host's threshold) brought the medium
		// preset from 45.0% at 4.91% false rollbacks to 46.7% (56/120) at
		// 4.07%, against 40% for the plain z-score at the same rate (z > 6,
		// which also fires 14 times on c6585a); the trade-off curves of the
		// variants tried are in the README. This floor guards against
		// regressions.
		if got := sc.caught; got < 56 {
			t.Errorf("medium: caught %d/%d (%.1f%%) of labelled anomalies within %d polls, want >= 56 (46.7%%)", got, sc.anomalies, 100*sc.catchRate(), nabPolls)
		}
		if n := sc.falseBySeries["ec2_cpu_utilization_c6585a"]; n != 0 {
			t.Errorf("medium: %d false rollbacks on ec2_cpu_utilization_c6585a, want 0", n)
		}
	}
}
