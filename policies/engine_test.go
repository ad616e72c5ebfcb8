package policies

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// testEngine builds an engine over n hosts and the given metrics (all
// higher-is-worse), with the medium preset.
func testEngine(t *testing.T, n int, metrics []string, policies ...Evaluator) *Engine {
	t.Helper()
	return testEngineWith(t, mustPreset(t, SensitivityMedium), n, metrics, policies...)
}

// testEngineWith is testEngine with the detector configuration cfg.
func testEngineWith(t *testing.T, cfg DetectorConfig, n int, metrics []string, policies ...Evaluator) *Engine {
	t.Helper()
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = "web-" + string(rune('a'+i))
	}
	var mcs []MetricConfig
	for _, m := range metrics {
		mcs = append(mcs, MetricConfig{Name: m, HigherIsWorse: true})
	}
	e, err := NewEngine(EngineConfig{Hosts: hosts, Metrics: mcs, Detector: cfg, Policies: policies, NoDataTicks: 4})
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	return e
}

func fill(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

var degradedPolicy = &funcEvaluator{name: "any-degraded", fleet: func(env *Env) (bool, error) {
	return env.Fleet.Degraded > 0, nil
}}

// Difference in differences: a shift that moves every host (a traffic
// change) is not a regression of the changed ones; the same shift on the
// changed hosts alone is.
func TestEngineDifferenceInDifferences(t *testing.T) {
	tests := []struct {
		name           string
		shiftUntouched bool
		wantDegraded   bool
	}{
		{name: "fleet-wide shift", shiftUntouched: true, wantDegraded: false},
		{name: "shift on changed hosts only", shiftUntouched: false, wantDegraded: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 6
			e := testEngine(t, n, []string{"latency"}, degradedPolicy)
			for h := range n {
				e.SetBaseline(0, h, noise(uint64(h+1), 48, 100, 5))
			}
			e.StartWave("canary", 0, []int{0, 1})
			var res *TickResult
			for tick := range 12 {
				vals := noise(uint64(100+tick), n, 100, 5)
				for h := range vals {
					if h < 2 || tt.shiftUntouched {
						vals[h] += 40 // 8 spreads
					}
				}
				e.Observe(0, vals)
				res = e.Tick(PhaseMonitor, float64(tick))
			}
			m := e.Host(0).Metrics["latency"]
			if !m.HasControl || !(m.Control > 90) {
				t.Errorf("control %v (has %v), want the untouched hosts' mean", m.Control, m.HasControl)
			}
			if got := e.Env().Fleet.Degraded > 0; got != tt.wantDegraded {
				t.Errorf("degraded hosts %d (z %.2f, score %.2f), want degraded %v", e.Env().Fleet.Degraded, m.Z, m.Score, tt.wantDegraded)
			}
			if got := res.Policies[0].Outcome == OutcomeFire; got != tt.wantDegraded {
				t.Errorf("policy outcome %v, want fire %v", res.Policies[0].Outcome, tt.wantDegraded)
			}
		})
	}
}

// checkStage watches a 12-poll stage of latency on e, values(tick) at each
// poll, then its end-of-stage window test, and checks whether host 0 was
// degraded at any of them.
func checkStage(t *testing.T, e *Engine, wantDegraded bool, values func(tick int) []float64) {
	t.Helper()
	checkStagePolls(t, e, 12, wantDegraded, values)
}

// checkStagePolls is checkStage over a stage of the given polls.
func checkStagePolls(t *testing.T, e *Engine, polls int, wantDegraded bool, values func(tick int) []float64) {
	t.Helper()
	degraded := false
	for tick := range polls {
		e.Observe(0, values(tick))
		e.Tick(PhaseMonitor, float64(tick))
		degraded = degraded || e.Host(0).Degraded
	}
	e.Verdict(PhaseMonitor, float64(polls))
	degraded = degraded || e.Host(0).Degraded
	if degraded != wantDegraded {
		for name, m := range e.Host(0).Metrics {
			t.Errorf("degraded %v (%s: score %.2f, current %.1f, baseline %.1f), want %v", degraded, name, m.Score, m.Current, m.Baseline, wantDegraded)
		}
	}
}

// Difference in differences may excuse a shift, never invent one: a canary
// that holds its own baseline while the untouched hosts get 30% better is
// not degraded, by its ticks or by the window test at the end of the
// stage; a canary 30% worse while the fleet gets 30% better is.
func TestEngineNeverInventsARegression(t *testing.T) {
	tests := []struct {
		name         string
		canary       float64 // factor on the canary
		wantDegraded bool
	}{
		{"canary holds, controls improve", 1, false},
		{"canary worse, controls improve", 1.3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 6
			e := testEngine(t, n, []string{"latency"}, degradedPolicy)
			for h := range n {
				e.SetBaseline(0, h, noise(uint64(h+1), 48, 100, 2))
			}
			e.StartWave("canary", 0, []int{0})
			checkStage(t, e, tt.wantDegraded, func(tick int) []float64 {
				vals := noise(uint64(100+tick), n, 100, 2)
				for h := range vals {
					if h == 0 {
						vals[h] *= tt.canary
					} else {
						vals[h] *= 0.7
					}
				}
				return vals
			})
		})
	}
}

// A change in the daily trough: the fleet fell to half its evening level in
// the last polls of the baseline window, so the baseline median holds the
// evening, and a canary at 1.5 times the fleet is still under its own
// median. The host's own reference is its median moved by the untouched
// hosts' fall just before the change, when the host fell with them: the
// canary is degraded. A canary that did not fall with them and holds its
// own median is not (its own baseline is its reference). The reference is
// fixed before the change: a canary that holds the trough while the
// untouched hosts get 30% better after it, or holds its flat baseline
// while they do, is not.
func TestEngineTroughChangeAgainstTheFleet(t *testing.T) {
	tests := []struct {
		name         string
		trough       bool    // the fleet fell to half in the last 6 baseline polls
		level        bool    // the canaries stayed at the evening level
		canary       float64 // factor on the canaries after the change
		controls     float64 // factor on the untouched hosts after the change
		wantDegraded bool
	}{
		{"trough, canaries 1.5 times the fleet", true, false, 1.5, 1, true},
		{"trough, canaries hold it, controls improve", true, false, 1, 0.7, false},
		{"trough, canaries and controls hold it", true, false, 1, 1, false},
		{"trough of the untouched hosts, canaries hold their median", true, true, 1, 1, false},
		{"flat, canaries hold it, controls improve", false, false, 1, 0.7, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			level := func(h, i int) float64 { // host h's level at baseline poll i
				if tt.trough && i >= levelBaseline-6 && (h >= 2 || !tt.level) {
					return 50
				}
				return 100
			}
			checkAtLevels(t, 12, 0, level, tt.canary, tt.controls, tt.wantDegraded)
		})
	}
}

// A 10-minute canary at 5-minute polls in the daily trough: 2 polls, the
// first a warm-up poll, so only a burst can decide (the CUSUM and the
// window test need more polls). The burst judges the host against the
// same reference as the CUSUM and the window test when the host and the
// untouched hosts moved to the better side just before the change (its
// median moved by their fall), not the median that holds the evening: a
// canary at 2 and at 1.5 times the fleet is decided on its second poll
// (before: score 4.04, current 100.8 and 75.8, baseline 99.9: the window
// test over one poll, under the threshold). One that holds the trough, or
// that did not fall with the fleet and holds its own median, is not.
func TestEngineTroughStepOnATwoPollCanary(t *testing.T) {
	tests := []struct {
		name         string
		level        bool    // the canaries stayed at the evening level
		canary       float64 // factor on the canaries after the change
		wantDegraded bool
	}{
		{"canaries 2 times the fleet", false, 2, true},
		{"canaries 1.5 times the fleet", false, 1.5, true},
		{"canaries hold the trough", false, 1, false},
		{"canaries did not fall and hold their median", true, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			level := func(h, i int) float64 {
				if i >= levelBaseline-6 && (h >= 2 || !tt.level) {
					return 50
				}
				return 100
			}
			checkAtLevels(t, 2, 1, level, tt.canary, 1, tt.wantDegraded)
		})
	}
}

// levelHosts and levelBaseline are the fleet of checkAtLevels: hosts, and
// polls of baseline.
const levelHosts, levelBaseline = 10, 48

// checkAtLevels starts a canary of the first two of levelHosts hosts whose
// baselines are at level(h, i) (startAtLevels) and checks whether host 0
// is degraded over a stage of polls at each host's last baseline level,
// times canary on the canaries and controls on the others
// (stageAtLevels), with the medium preset and a warm-up of warmup polls:
// 12 and 0, or 2 and 1 (the README's 10-minute canary at 5-minute polls).
func checkAtLevels(t *testing.T, polls, warmup int, level func(h, i int) float64, canary, controls float64, wantDegraded bool) {
	t.Helper()
	cfg := mustPreset(t, SensitivityMedium)
	cfg.Warmup = warmup
	e := testEngineWith(t, cfg, levelHosts, []string{"latency"}, degradedPolicy)
	startAtLevels(e, levelHosts, levelBaseline, level)
	last := func(h int) float64 { return level(h, levelBaseline-1) }
	checkStagePolls(t, e, polls, wantDegraded, stageAtLevels(levelHosts, last, canary, controls))
}

// startAtLevels gives each of n hosts a baseline of nb polls at
// level(h, i) (noise of spread 1 around it) and starts a canary of the
// first two.
func startAtLevels(e *Engine, n, nb int, level func(h, i int) float64) {
	for h := range n {
		b := noise(uint64(h+1), nb, 0, 1)
		for i := range b {
			b[i] += level(h, i)
		}
		e.SetBaseline(0, h, b)
	}
	e.StartWave("canary", 0, []int{0, 1})
}

// stageAtLevels is a stage's polls over n hosts: host h at level(h)
// times canary for the canaries (the first two) and times controls for
// the others, noise of spread 1 around it.
func stageAtLevels(n int, level func(h int) float64, canary, controls float64) func(tick int) []float64 {
	return func(tick int) []float64 {
		vals := noise(uint64(100+tick), n, 0, 1)
		for h := range vals {
			f := controls
			if h < 2 {
				f = canary
			}
			vals[h] += level(h) * f
		}
		return vals
	}
}

// startOnTheRise gives each of n hosts a baseline of nb polls that
// climbs with level (noise of spread 1 around it) and starts a canary of
// the first two.
func startOnTheRise(e *Engine, n, nb int, level func(int) float64) {
	startAtLevels(e, n, nb, func(_, i int) float64 { return level(i) })
}

// A change made on the daily rise: the whole fleet climbs from 50 to 100
// through the canary's 48 baseline polls and on to 112 through its stage.
// Against its own baseline every host reads worse; against the untouched
// hosts, the canary's polls taken back by the fleet's level were compared
// with its baseline as observed, which the rise spreads from 50 to 100, so
// 1.2 times the fleet (twice the tolerance) was inside it. Its baseline
// is taken back by the fleet poll by poll too now (didBaselines), and
// the canary is degraded; one that moves with the fleet is not, nor one
// that holds while the fleet climbs.
func TestEngineRiseChangeAgainstTheFleet(t *testing.T) {
	tests := []struct {
		name         string
		canary       float64 // factor on the canary after the change
		hold         bool    // the canary holds its last baseline level
		wantDegraded bool
	}{
		{"canary 1.2 times the rising fleet", 1.2, false, true},
		{"canary rises with the fleet", 1, false, false},
		{"canary holds while the fleet rises", 1, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n, nb = 10, 48
			level := func(i int) float64 { return 50 + 50*float64(i)/(nb-1) }
			e := testEngine(t, n, []string{"latency"}, degradedPolicy)
			startOnTheRise(e, n, nb, level)
			checkStage(t, e, tt.wantDegraded, func(tick int) []float64 {
				vals := noise(uint64(100+tick), n, 0, 1)
				for h := range vals {
					switch {
					case h >= 2:
						vals[h] += level(nb + tick)
					case tt.hold:
						vals[h] += level(nb - 1)
					default:
						vals[h] += level(nb+tick) * tt.canary
					}
				}
				return vals
			})
		})
	}
}

// A step made on the daily rise, decided by the burst on the first polls
// after the warm-up: the fleet climbs from 50 to 100 through the
// baseline, the canary's step is 1.5 times the fleet. Against the fleet
// the step is 50 spreads of the canary's baseline taken back by the
// fleet; the burst bounded both comparisons by the host's own baseline,
// whose largest pair is the rise's top (50 over its median), and never
// fired: the canary's two polls of a 10-minute stage at 5-minute polls
// passed. Each comparison is bounded by its own baseline now: the one
// with the fleet by the relative baseline's pairs and spread, and by how
// far the untouched hosts' own moves spread at that poll. The canary that
// rises with the fleet is not degraded, nor one that a traffic surge at
// the change doubles as it does the untouched hosts, each host by its own
// share (2^0.7 to 2^1.3 times, the canaries 2^1.3: 1.17 times the fleet's
// median move, inside the untouched hosts' spread), which the relative
// baseline's spread alone read as a step (degraded, score 5.05).
func TestEngineBurstAgainstTheFleetOnARise(t *testing.T) {
	const n, nb = 10, 48
	level := func(i int) float64 { return 50 + 50*float64(i)/(nb-1) }
	for _, tt := range []struct {
		name         string
		value        func(h, tick int) float64 // before noise
		wantDegraded bool
	}{
		{"canary 1.5 times the rising fleet", func(h, tick int) float64 {
			if h < 2 {
				return 1.5 * level(nb+tick)
			}
			return level(nb + tick)
		}, true},
		{"canary rises with the fleet", func(h, tick int) float64 { return level(nb + tick) }, false},
		{"a surge doubles every host by its own share", func(h, tick int) float64 {
			share := 0.7 + 0.6*float64(h-2)/(n-3) // the untouched hosts
			if h < 2 {
				share = 1.3 // the canaries: 1.17 times the fleet
			}
			return level(nb+tick) * math.Pow(2, share)
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustPreset(t, SensitivityMedium)
			cfg.Warmup = 1 // 2m at 5-minute polls
			e := testEngineWith(t, cfg, n, []string{"latency"}, degradedPolicy)
			startOnTheRise(e, n, nb, level)
			// The warm-up's poll and the first after it, ending the
			// stage: the burst, with no poll left to hold it, is decided
			// by the stage's verdict.
			for tick := range 2 {
				vals := noise(uint64(100+tick), n, 0, 1)
				for h := range vals {
					vals[h] += tt.value(h, tick)
				}
				e.Observe(0, vals)
				e.Tick(PhaseMonitor, float64(tick))
			}
			e.Verdict(PhaseMonitor, 2)
			if m := e.Host(0).Metrics["latency"]; e.Host(0).Degraded != tt.wantDegraded {
				t.Errorf("after a stage of 2 polls: degraded %v (score %.2f, current %.1f, baseline %.1f), want %v",
					e.Host(0).Degraded, m.Score, m.Current, m.Baseline, tt.wantDegraded)
			}
		})
	}
}

// The mode of a fleet of services of very different latencies: seven of
// about 5 ms that barely move and three of 0.5 s whose spread is 70% of
// their level. The fleet's summed spread (about 1 s) is more than half its
// summed level (1.5 s), and the fleet was judged in differences, where the
// median move of one set of services in seconds is no measure of
// another's (the scenario hunt's OnlineBoutique fleet: in the last wave,
// whose expectation is measured on the wave's own baselines and then on
// the hosts of the waves that passed, cartservice 1.5 times slower read
// as an improvement, z -24.8). Most hosts sit two spreads above zero, so
// it is judged in ratios, each host's move its own share: the fast host's
// step in the last wave is degraded, the same wave without it is not.
func TestEngineModeOfMostHosts(t *testing.T) {
	for _, tt := range []struct {
		name         string
		step         float64
		wantDegraded bool
	}{
		{"a fast host of the last wave 1.5 times slower", 1.5, true},
		{"the last wave unchanged", 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const n, nb = 10, 30
			slow := func(h int) bool { return h >= 7 }
			level := func(h int, late bool) float64 {
				switch {
				case !slow(h):
					return 0.005
				case late:
					return 0.48
				}
				return 0.5
			}
			sd := func(h int) float64 {
				if slow(h) {
					return 0.35
				}
				return 0.00005
			}
			e := testEngine(t, n, []string{"latency"}, degradedPolicy)
			waves := [][]int{{0}, {1, 2, 3, 4, 5}, {6, 7, 8, 9}}
			changed := map[int]bool{}
			for w, hosts := range waves {
				for h := range n {
					if !changed[h] {
						b := noise(uint64(10*w+h+1), nb, level(h, w == 2), sd(h))
						for i := range b {
							b[i] = max(b[i], 0.001)
						}
						e.SetBaseline(0, h, b)
					}
				}
				e.StartWave(fmt.Sprint("wave-", w), w, hosts)
				if !e.levels[0].relative {
					t.Fatal("the fleet is judged in differences, want ratios")
				}
				for _, h := range hosts {
					changed[h] = true
				}
				degraded := false
				for tick := range 10 {
					vals := noise(uint64(100*w+tick), n, 0, 1)
					for h := range vals {
						vals[h] = max(level(h, w == 2)+sd(h)*vals[h], 0.001)
						if h == 6 && w == 2 {
							vals[h] *= tt.step
						}
					}
					e.Observe(0, vals)
					e.Tick(PhaseMonitor, float64(tick))
					degraded = degraded || e.Host(6).Degraded
				}
				if w < 2 {
					continue
				}
				e.Verdict(PhaseMonitor, 10)
				degraded = degraded || e.Host(6).Degraded
				if degraded != tt.wantDegraded {
					m := e.Host(6).Metrics["latency"]
					t.Errorf("host 6 degraded %v (z %.1f, current %.4f, baseline %.4f), want %v", degraded, m.Z, m.Current, m.Baseline, tt.wantDegraded)
				}
			}
		})
	}
}

// inflation reads how much a window mean of a series wanders beyond one of
// independent polls: 1 for noise and alternation, at most the bound's for
// a trend.
func TestInflation(t *testing.T) {
	trend := make([]float64, 48)
	for i := range trend {
		trend[i] = float64(i)
	}
	alternating := make([]float64, 48)
	for i := range alternating {
		alternating[i] = float64(i % 2)
	}
	for _, tt := range []struct {
		name   string
		xs     []float64
		lo, hi float64
	}{
		{"constant", []float64{3, 3, 3, 3}, 0, 0},
		{"alternating", alternating, 0, 0},
		{"noise", noise(7, 48, 100, 2), 0, 0.15},
		{"trend", trend, maxAutocorrelation, maxAutocorrelation},
	} {
		if got := autocorrelation(tt.xs); got < tt.lo-1e-9 || got > tt.hi+1e-9 {
			t.Errorf("%s: autocorrelation %.3f, want %.3f-%.3f", tt.name, got, tt.lo, tt.hi)
		}
	}
	// The variance factor of a mean of n AR(1) polls, summed term by
	// term, against the closed form inflation uses.
	factor := func(r float64, n int) float64 {
		f := 1.0
		for k := 1; k < n; k++ {
			f += 2 * (1 - float64(k)/float64(n)) * math.Pow(r, float64(k))
		}
		return f
	}
	for _, tt := range []struct {
		r      float64
		nw, nb int
	}{{0.5, 2, 48}, {0.5, 12, 48}, {0.3, 1, 48}, {0.5, 48, 48}, {0.2, 6, 12}} {
		fw, fb := factor(tt.r, tt.nw), factor(tt.r, tt.nb)
		nw, nb := float64(tt.nw), float64(tt.nb)
		want := math.Sqrt((fw/nw + fb/nb) / (1/nw + 1/nb))
		if got := inflation(tt.r, nw, nb); math.Abs(got-want) > 1e-9 {
			t.Errorf("inflation(%v, %d, %d) = %.6f, want %.6f", tt.r, tt.nw, tt.nb, got, want)
		}
	}
	// Two polls hold one correlated pair, twelve hold eleven: a canary's
	// two polls are discounted less than a long window (and than the
	// large-window bound the test used before, 1.73 at r = 0.5).
	two, twelve := inflation(0.5, 2, 48), inflation(0.5, 12, 48)
	if !(1 < two && two < 1.3 && two < twelve && twelve < math.Sqrt(3)) {
		t.Errorf("inflation at r 0.5 against 48 baseline polls: %.3f at 2 polls, %.3f at 12; want 1 < 2 polls < 1.3, < 12 polls < 1.73", two, twelve)
	}
	if got := inflation(0, 2, 48); got != 1 {
		t.Errorf("inflation at r 0: %v, want 1", got)
	}
}

// Difference in differences poll by poll: each of the canary's polls is
// taken back by the untouched hosts' movement at that same poll, in the
// burst, the CUSUM and the window test. A fleet whose level jumps from poll
// to poll (a traffic surge that doubles, then doubles again, then falls
// back), with the canary moving exactly as the fleet does, is no
// regression; measured against the controls' smoothed level (it lags a
// jump by a poll) it read as a burst. A canary 20% worse than a fleet that
// ramps up by 40% a poll is degraded; with the CUSUM's older poll taken
// back by the newest poll's movement it read as no worse than the fleet.
func TestEngineDifferenceInDifferencesPollByPoll(t *testing.T) {
	jumps := []float64{1, 1, 1, 2, 4, 4, 8, 8, 1, 1, 3, 1}
	ramp := make([]float64, 12)
	for i := range ramp {
		ramp[i] = math.Pow(1.4, float64(i))
	}
	tests := []struct {
		name         string
		evidence     string // the kind of evidence left on
		fleet        []float64
		canary       float64
		wantDegraded bool
	}{
		{"burst, fleet jumps, canary moves with it", "burst", jumps, 1, false},
		{"CUSUM, fleet jumps, canary moves with it", "cusum", jumps, 1, false},
		{"window test, fleet jumps, canary moves with it", "window", jumps, 1, false},
		{"burst, fleet jumps, canary 30% worse", "burst", jumps, 1.3, true},
		{"CUSUM, fleet jumps, canary 30% worse", "cusum", jumps, 1.3, true},
		{"window test, fleet jumps, canary 30% worse", "window", jumps, 1.3, true},
		{"CUSUM, fleet ramps up, canary moves with it", "cusum", ramp, 1, false},
		{"CUSUM, fleet ramps up, canary 20% worse", "cusum", ramp, 1.2, true},
		{"window test, fleet ramps up, canary moves with it", "window", ramp, 1, false},
		{"window test, fleet ramps up, canary 20% worse", "window", ramp, 1.2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 6
			cfg := mustPreset(t, SensitivityMedium)
			switch tt.evidence {
			case "burst":
				cfg.Limit, cfg.Confidence = 1e9, 1-1e-15
			case "cusum":
				cfg.Burst, cfg.Confidence = 1e9, 1-1e-15
			case "window":
				cfg.Burst, cfg.Limit = 1e9, 1e9
			}
			hosts := []string{"a", "b", "c", "d", "e", "f"}
			e, err := NewEngine(EngineConfig{Hosts: hosts, Metrics: []MetricConfig{{Name: "latency", HigherIsWorse: true}},
				Detector: cfg, Policies: []Evaluator{degradedPolicy}})
			if err != nil {
				t.Fatal(err)
			}
			for h := range n {
				e.SetBaseline(0, h, noise(uint64(h+1), 48, 100, 2))
			}
			e.StartWave("canary", 0, []int{0})
			degraded := ""
			for tick, f := range tt.fleet {
				vals := noise(uint64(100+tick), n, 100, 2)
				for h := range vals {
					vals[h] *= f
				}
				vals[0] *= tt.canary
				e.Observe(0, vals)
				e.Tick(PhaseMonitor, float64(tick))
				if ev := e.Evidence(0, 0); degraded == "" && e.Host(0).Degraded {
					degraded = fmt.Sprintf("at poll %d (burst %.2f, cusum %.2f)", tick+1, ev.Burst, ev.CUSUM)
				}
			}
			e.Verdict(PhaseMonitor, float64(len(tt.fleet)))
			if ev := e.Evidence(0, 0); degraded == "" && e.Host(0).Degraded {
				degraded = fmt.Sprintf("at the verdict (window %.2f)", ev.Window)
			}
			if (degraded != "") != tt.wantDegraded {
				t.Errorf("degraded %q, want degraded %v", degraded, tt.wantDegraded)
			}
		})
	}
}

// The window test runs at the end of a stage: a moderate shift of the
// canary on a noisy host that no tick decides is decided by Verdict, which
// evaluates the policies again; the untouched hosts are not judged.
func TestEngineVerdict(t *testing.T) {
	const n = 4
	cfg := mustPreset(t, SensitivityMedium)
	cfg.Burst, cfg.Limit = 1e9, 1e9 // the window test alone
	e, err := NewEngine(EngineConfig{Hosts: []string{"a", "b", "c", "d"}, Metrics: []MetricConfig{{Name: "latency", HigherIsWorse: true}},
		Detector: cfg, Policies: []Evaluator{degradedPolicy}})
	if err != nil {
		t.Fatal(err)
	}
	for h := range n {
		e.SetBaseline(0, h, noise(uint64(h+1), 48, 100, 40))
	}
	e.StartWave("canary", 0, []int{0})
	for tick := range 12 {
		vals := noise(uint64(50+tick), n, 100, 40)
		vals[0] += 80
		e.Observe(0, vals)
		if res := e.Tick(PhaseMonitor, float64(tick)); res.Policies[0].Outcome == OutcomeFire {
			t.Fatalf("tick %d fired with the sequential evidence off", tick+1)
		}
	}
	res := e.Verdict(PhaseMonitor, 12)
	if res.Policies[0].Outcome != OutcomeFire || !e.Host(0).Degraded || e.Env().Fleet.Degraded != 1 {
		t.Errorf("verdict: outcome %v, canary degraded %v (score %.2f), fleet degraded %d; want fire, true, 1",
			res.Policies[0].Outcome, e.Host(0).Degraded, e.Host(0).Score, e.Env().Fleet.Degraded)
	}
	e.Observe(0, noise(99, n, 100, 40))
	if e.Tick(PhaseMonitor, 13); e.Host(0).Score > cfg.Threshold {
		t.Errorf("the verdict's score outlived its tick: %.2f", e.Host(0).Score)
	}
}

// A warm-up in the engine counts the polls since each host's apply: a
// cold start of the canary settles unjudged; the next wave's cold start
// too, while the canary is past its warm-up.
func TestEngineWarmup(t *testing.T) {
	cfg := mustPreset(t, SensitivityMedium)
	cfg.Warmup = 2
	e, err := NewEngine(EngineConfig{Hosts: []string{"a", "b", "c", "d"}, Metrics: []MetricConfig{{Name: "latency", HigherIsWorse: true}},
		Detector: cfg, Policies: []Evaluator{degradedPolicy}})
	if err != nil {
		t.Fatal(err)
	}
	for h := range 4 {
		e.SetBaseline(0, h, noise(uint64(h+1), 48, 100, 3))
	}
	cold := []float64{2.5, 1.5}
	wave := func(name string, index int, hosts []int) {
		e.StartWave(name, index, hosts)
		for tick := range 8 {
			vals := noise(uint64(10*index+tick), 4, 100, 3)
			for _, h := range hosts {
				if tick < len(cold) {
					vals[h] *= cold[tick]
				}
			}
			e.Observe(0, vals)
			if res := e.Tick(PhaseMonitor, float64(tick)); res.Policies[0].Outcome == OutcomeFire {
				t.Fatalf("%s, poll %d: a cold start fired", name, tick+1)
			}
		}
		if res := e.Verdict(PhaseMonitor, 8); res.Policies[0].Outcome == OutcomeFire {
			t.Fatalf("%s: the window test counted a cold start", name)
		}
	}
	wave("canary", 0, []int{0})
	for h := 1; h < 4; h++ {
		e.SetBaseline(0, h, noise(uint64(h+20), 48, 100, 3))
	}
	wave("wave-1", 1, []int{1, 2, 3})
}

func TestEngineWavesAndExclude(t *testing.T) {
	e := testEngine(t, 4, []string{"latency"}, degradedPolicy)
	for h := range 4 {
		e.SetBaseline(0, h, fill(48, 100))
	}
	e.StartWave("canary", 0, []int{0})
	env := e.Env()
	if len(env.Hosts) != 1 || env.Hosts[0].Name != "web-a" || env.Wave.Name != "canary" || !env.Hosts[0].Applied {
		t.Fatalf("after canary: hosts %d wave %+v", len(env.Hosts), env.Wave)
	}
	e.StartWave("wave-1", 1, []int{1, 2, 0, 9}) // 0 again and 9 out of range: skipped
	if len(env.Hosts) != 3 || env.Hosts[1].Wave != "wave-1" || env.Fleet.Changed != 3 || env.Wave.Index != 1 {
		t.Fatalf("after wave-1: %d hosts, changed %d, wave %+v", len(env.Hosts), env.Fleet.Changed, env.Wave)
	}
	e.MarkFailed(2)
	e.Exclude(1)
	if len(env.Hosts) != 2 || env.Hosts[1].Name != "web-c" || !env.Hosts[1].Failed {
		t.Fatalf("after excluding web-b: %v", hostNames(env.Hosts))
	}
	e.Observe(0, []float64{100, 100, 100, 100})
	e.Tick(PhaseMonitor, 1)
	if env.Fleet.Size != 4 || env.Fleet.Changed != 2 {
		t.Errorf("fleet %+v, want size 4, changed 2", env.Fleet)
	}
	// Host 3 is the only control: excluded host 1 is not one.
	if m := e.Host(0).Metrics["latency"]; !m.HasControl {
		t.Errorf("no control with one untouched host")
	}
}

func hostNames(hs []*Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func TestEngineInBandVerifiesRollback(t *testing.T) {
	e := testEngine(t, 2, []string{"latency", "errors"}, degradedPolicy)
	for h := range 2 {
		e.SetBaseline(0, h, noise(uint64(h+1), 48, 100, 5))
		e.SetBaseline(1, h, noise(uint64(h+10), 48, 0.01, 0.001))
	}
	e.StartWave("canary", 0, []int{0, 1})
	tick := func(lat0, err0 float64) {
		e.Observe(0, []float64{lat0, 100})
		e.Observe(1, []float64{err0, 0.01})
		e.Tick(PhaseMonitor, 0)
	}
	for range 6 {
		tick(300, 0.5)
	}
	if !e.Host(0).Degraded || e.InBand(0) {
		t.Fatalf("degraded host: degraded %v in band %v", e.Host(0).Degraded, e.InBand(0))
	}
	e.Exclude(0)
	if e.InBand(0) {
		t.Error("in band right after exclusion, before any new value")
	}
	tick(100, 0.5) // latency recovered, errors not yet
	if e.InBand(0) {
		t.Error("in band while errors are still 50x the baseline")
	}
	tick(100, 0.01)
	tick(100, 0.01)
	if !e.InBand(0) {
		t.Errorf("not in band after recovery: latency z %.2f errors z %.2f",
			e.Host(0).Metrics["latency"].Z, e.Host(0).Metrics["errors"].Z)
	}
	if e.InBand(5) {
		t.Error("in band for a host that does not exist")
	}
}

func TestEngineNoDataOutcomes(t *testing.T) {
	nan := math.NaN()
	latencyHigh := &funcEvaluator{name: "latency-high", metrics: []string{"latency"}, fleet: func(env *Env) (bool, error) {
		for _, h := range env.Hosts {
			if m := h.Metrics["latency"]; !m.NoData && m.Current > 500 {
				return true, nil
			}
		}
		return false, nil
	}}
	errorsOnly := &funcEvaluator{name: "errors-only", metrics: []string{"errors"}, fleet: func(*Env) (bool, error) { return false, nil }}
	allMetrics := &funcEvaluator{name: "all", fleet: func(*Env) (bool, error) { return false, nil }}
	e := testEngine(t, 2, []string{"latency", "errors"}, latencyHigh, errorsOnly, allMetrics)
	for h := range 2 {
		e.SetBaseline(0, h, fill(48, 100))
		e.SetBaseline(1, h, fill(48, 0))
	}
	e.StartWave("canary", 0, []int{0, 1})

	type want struct {
		outcome     Outcome
		noData      bool
		noDataTicks int
	}
	steps := []struct {
		latency, errors []float64
		want            [3]want
	}{
		{[]float64{100, 100}, []float64{0, 0}, [3]want{{OutcomePass, false, 0}, {OutcomePass, false, 0}, {OutcomePass, false, 0}}},
		{[]float64{100, nan}, []float64{0, 0}, [3]want{{OutcomeNoData, true, 1}, {OutcomePass, false, 0}, {OutcomeNoData, true, 1}}},
		{[]float64{100, nan}, []float64{0, 0}, [3]want{{OutcomeNoData, true, 2}, {OutcomePass, false, 0}, {OutcomeNoData, true, 2}}},
		// Fires on the data that exists: a fire, still flagged no-data.
		{[]float64{2000, nan}, []float64{0, 0}, [3]want{{OutcomeFire, true, 3}, {OutcomePass, false, 0}, {OutcomeNoData, true, 3}}},
		// Latency back everywhere (host 0 still smoothed over 2000), errors
		// not observed at all.
		{[]float64{100, 100}, nil, [3]want{{OutcomeFire, false, 0}, {OutcomeNoData, true, 1}, {OutcomeNoData, true, 4}}},
	}
	for i, s := range steps {
		e.Observe(0, s.latency)
		if s.errors != nil { // not observed at all: no data
			e.Observe(1, s.errors)
		}
		res := e.Tick(PhaseMonitor, float64(i))
		for p, w := range s.want {
			got := res.Policies[p]
			if got.Outcome != w.outcome || got.NoData != w.noData || got.NoDataTicks != w.noDataTicks {
				t.Errorf("tick %d policy %s: %v nodata %v ticks %d, want %v %v %d", i, got.Policy.PolicyName(),
					got.Outcome, got.NoData, got.NoDataTicks, w.outcome, w.noData, w.noDataTicks)
			}
		}
	}
	if e.Host(1).Metrics["latency"].NoData != false {
		t.Error("latency back but still no data")
	}
}

// Four changed hosts each miss ONE poll (one failed scrape each), at four
// consecutive ticks, while the untouched hosts report: no host has been
// silent for more than a tick, so on_no_data (detection.no_data_ticks 4)
// has nothing to fire on. A fleet of 200 hosts with 1% of scrapes failing
// has some host missing at most ticks, and rolled back 12 of 12 no-change
// dry runs on "no data for 4 consecutive ticks" when every such tick
// counted.
func TestEngineNoDataTicksAreOneHostsSilence(t *testing.T) {
	allMetrics := &funcEvaluator{name: "seed", fleet: func(*Env) (bool, error) { return false, nil }}
	const n = 6 // hosts 0-3 changed, 4-5 untouched
	e := testEngine(t, n, []string{"latency"}, allMetrics)
	for h := range n {
		e.SetBaseline(0, h, fill(48, 100))
	}
	e.StartWave("wave-1", 1, []int{0, 1, 2, 3})
	for tick := range 4 {
		v := fill(n, 100)
		v[tick] = math.NaN() // host `tick` misses this poll only
		e.Observe(0, v)
		got := e.Tick(PhaseMonitor, float64(tick)).Policies[0]
		if got.NoDataTicks > 1 {
			t.Errorf("tick %d: the policy counts %d consecutive no-data ticks, but no host has missed more than 1 poll in a row", tick, got.NoDataTicks)
		}
	}
}

// A silence as long as the longest in a host's own baseline window is
// that metric's own (a latency of a service that serves no request in
// some minutes): on_no_data counts only the ticks beyond it. A host whose
// baseline went 3 polls without a value at times is not in no data for
// its first 3 silent ticks, and reaches detection.no_data_ticks (4) on
// its 7th; a host with a full baseline is in no data on its first.
func TestEngineSilenceBeyondTheBaselinesOwn(t *testing.T) {
	nan := math.NaN()
	seed := &funcEvaluator{name: "seed", fleet: func(*Env) (bool, error) { return false, nil }}
	e := testEngine(t, 3, []string{"latency"}, seed)
	sparse := fill(48, 100)
	for i := 10; i < 13; i++ {
		sparse[i], sparse[i+20] = nan, nan
	}
	e.SetBaseline(0, 0, sparse)
	// A host whose series began late, or went silent just before the
	// change, has no silence of its own: those runs end or start no
	// value.
	late := fill(48, 100)
	for i := range 20 {
		late[i], late[47-i/5] = nan, nan
	}
	e.SetBaseline(0, 1, late)
	e.SetBaseline(0, 2, fill(48, 100))
	e.StartWave("canary", 0, []int{0, 1})
	for tick := 1; tick <= 7; tick++ {
		e.Observe(0, []float64{nan, 100, 100})
		got := e.Tick(PhaseMonitor, float64(tick)).Policies[0]
		want := max(0, tick-3)
		if got.NoDataTicks != want || got.NoData != (want > 0) {
			t.Errorf("sparse host silent for %d ticks: nodata %v, %d ticks; want %v, %d", tick, got.NoData, got.NoDataTicks, want > 0, want)
		}
	}
	if m := e.Host(0).Metrics["latency"]; !m.NoData {
		t.Error("host.metrics.latency.nodata is false on a tick without a value")
	}
	e.Observe(0, []float64{100, nan, 100})
	if got := e.Tick(PhaseMonitor, 8).Policies[0]; !got.NoData || got.NoDataTicks != 1 {
		t.Errorf("full host silent for 1 tick: nodata %v, %d ticks; want true, 1", got.NoData, got.NoDataTicks)
	}
}

// An infinity is a value, never no data: +Inf on a higher-is-worse metric
// (histogram_quantile when every request is past the top bucket) is the
// worst it can read, and two such polls are a burst; -Inf there is no
// evidence. The host's metrics stay finite, so that a report can say them.
func TestEngineInfinityIsAValue(t *testing.T) {
	inf := math.Inf(1)
	e := testEngine(t, 3, []string{"latency"}, degradedPolicy)
	rng := rand.New(rand.NewPCG(3, 4))
	for h := range 3 {
		base := make([]float64, 48)
		for i := range base {
			base[i] = 100 + 5*rng.NormFloat64()
		}
		e.SetBaseline(0, h, base)
	}
	e.StartWave("canary", 0, []int{0, 1})
	var res *TickResult
	for i := range 3 { // past the warm-up, then two polls
		e.Observe(0, []float64{inf, -inf, 100})
		res = e.Tick(PhaseMonitor, float64(i))
	}
	worst, better := e.Host(0).Metrics["latency"], e.Host(1).Metrics["latency"]
	if worst.NoData || !e.Host(0).Degraded || res.Policies[0].Outcome != OutcomeFire {
		t.Errorf("+Inf: nodata %v, degraded %v, policy %v: want a value, degraded, fired", worst.NoData, e.Host(0).Degraded, res.Policies[0].Outcome)
	}
	if better.NoData || e.Host(1).Degraded || better.Score > 0 {
		t.Errorf("-Inf on a higher-is-worse metric: nodata %v, degraded %v, score %v: want a value, no evidence", better.NoData, e.Host(1).Degraded, better.Score)
	}
	for _, m := range []*Metric{worst, better} {
		for _, v := range []float64{m.Current, m.Delta, m.Ratio, m.Z, m.Score} {
			if math.IsInf(v, 0) || math.IsNaN(v) {
				t.Errorf("metric %+v holds %v: want finite figures", m, v)
			}
		}
	}
}

// No data on the changed hosts AND on every untouched host is a gap in
// the metrics' collection, not the change: it is still no data, flagged
// FleetNoData, and does not count towards on_no_data: fail's ticks. No data
// on the changed hosts alone, or with no untouched host to tell, counts.
func TestEngineFleetWideNoData(t *testing.T) {
	nan := math.NaN()
	latencyOnly := &funcEvaluator{name: "latency", metrics: []string{"latency"}, fleet: func(*Env) (bool, error) { return false, nil }}
	allMetrics := &funcEvaluator{name: "all", fleet: func(*Env) (bool, error) { return false, nil }}
	type want struct {
		fleet       bool
		noDataTicks int
	}
	tests := []struct {
		name string
		// before are the hosts of a stage that passed before wave's.
		before []int
		wave   []int // the changed hosts, of 3
		// missing are the hosts without latency during the gap.
		missing []int
		// errorsMissing: host 0 also misses errors at the gap's last tick.
		errorsMissing bool
		want          []want // latency's, then all's, at the gap's last tick
		// silent are hosts that never report latency: no baseline, no
		// value (a host without the exporter).
		silent []int
	}{
		{"whole fleet", nil, []int{0}, []int{0, 1, 2}, false, []want{{true, 0}, {true, 0}}, nil},
		{"whole fleet, and errors on the canary alone", nil, []int{0}, []int{0, 1, 2}, true, []want{{true, 0}, {false, 1}}, nil},
		{"changed host only", nil, []int{0}, []int{0}, false, []want{{false, 6}, {false, 6}}, nil},
		{"one untouched host still has data", nil, []int{0}, []int{0, 1}, false, []want{{false, 6}, {false, 6}}, nil},
		{"one stage of every host", nil, []int{0, 1, 2}, []int{0, 1, 2}, false, []want{{false, 6}, {false, 6}}, nil},
		// The last wave: the hosts of the wave that passed stand in for
		// the untouched ones.
		{"last wave, and the wave that passed", []int{0, 1}, []int{2}, []int{0, 1, 2}, false, []want{{true, 0}, {true, 0}}, nil},
		{"last wave alone", []int{0, 1}, []int{2}, []int{2}, false, []want{{false, 6}, {false, 6}}, nil},
		{"last wave, one host that passed still has data", []int{0, 1}, []int{2}, []int{1, 2}, false, []want{{false, 6}, {false, 6}}, nil},
		// A host that never reported latency tells nothing about a gap
		// in its collection.
		{"untouched hosts that never reported", nil, []int{0}, []int{0, 1, 2}, false, []want{{false, 6}, {false, 6}}, []int{1, 2}},
		{"one untouched host that never reported, one that stops", nil, []int{0}, []int{0, 1, 2}, false, []want{{true, 0}, {true, 0}}, []int{1}},
		{"the untouched host never reported, the host that passed stops", []int{0}, []int{2}, []int{0, 1, 2}, false, []want{{true, 0}, {true, 0}}, []int{1}},
		{"the untouched host never reported, the host that passed has data", []int{0}, []int{2}, []int{1, 2}, false, []want{{false, 6}, {false, 6}}, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testEngine(t, 3, []string{"latency", "errors"}, latencyOnly, allMetrics)
			for h := range 3 {
				if !slices.Contains(tt.silent, h) {
					e.SetBaseline(0, h, fill(48, 100))
				}
				e.SetBaseline(1, h, fill(48, 0))
			}
			wave := 0
			if tt.before != nil {
				e.StartWave("canary", 0, tt.before)
				lat := fill(3, 100)
				for _, h := range tt.silent {
					lat[h] = nan
				}
				e.Observe(0, lat)
				e.Observe(1, fill(3, 0))
				if res := e.Tick(PhaseMonitor, 0); res.Policies[0].Outcome != OutcomePass {
					t.Fatalf("canary with data: %v", res.Policies[0].Outcome)
				}
				wave = 1
			}
			e.StartWave("rest", wave, tt.wave)
			const gap = 6 // more than NoDataTicks (4)
			var res *TickResult
			for tick := range gap {
				lat := fill(3, 100)
				for _, h := range tt.missing {
					lat[h] = nan
				}
				errs := fill(3, 0)
				if tt.errorsMissing && tick == gap-1 {
					errs[0] = nan
				}
				e.Observe(0, lat)
				e.Observe(1, errs)
				res = e.Tick(PhaseMonitor, float64(tick))
			}
			for p, w := range tt.want {
				got := res.Policies[p]
				if got.Outcome != OutcomeNoData || !got.NoData || got.FleetNoData != w.fleet || got.NoDataTicks != w.noDataTicks {
					t.Errorf("policy %s after %d ticks: %v nodata %v fleet %v ticks %d, want nodata, fleet %v, ticks %d",
						got.Policy.PolicyName(), gap, got.Outcome, got.NoData, got.FleetNoData, got.NoDataTicks, w.fleet, w.noDataTicks)
				}
			}
			if got := e.FleetNoData(0); got != tt.want[0].fleet {
				t.Errorf("FleetNoData(latency) %v", got)
			}
			if got, want := e.UntouchedReference(0), tt.before == nil; tt.want[0].fleet && got != want {
				t.Errorf("UntouchedReference(latency) %v, want %v", got, want)
			}
			// The data comes back: a pass, nothing counted.
			e.Observe(0, fill(3, 100))
			e.Observe(1, fill(3, 0))
			res = e.Tick(PhaseMonitor, gap)
			if got := res.Policies[0]; got.Outcome != OutcomePass || got.NoData || got.FleetNoData || got.NoDataTicks != 0 {
				t.Errorf("data back: %v nodata %v fleet %v ticks %d, want a pass", got.Outcome, got.NoData, got.FleetNoData, got.NoDataTicks)
			}
		})
	}
}

func TestEngineHostPoliciesAndErrors(t *testing.T) {
	hostZ := &funcEvaluator{name: "host-z", host: func(env *Env, h *Host) (bool, error) {
		if env.Host != h {
			return false, errors.New("env.Host is not the host judged")
		}
		return h.Metrics["latency"].Z > 12, nil
	}}
	failing := mustCompile(t, `fleet.size % fleet.degraded == 0`, "") // degraded is 0 at first: divides by zero
	e := testEngine(t, 4, []string{"latency"}, hostZ, failing)
	for h := range 4 {
		e.SetBaseline(0, h, fill(48, 100))
	}
	e.StartWave("canary", 0, []int{1, 2})
	e.Observe(0, []float64{100, 100, 1000, 1000}) // host 3 untouched: never judged
	res := e.Tick(PhaseApply, 5)
	if len(res.HostFires) != 1 || res.HostFires[0].Host != 2 || res.HostFires[0].Policy != hostZ {
		t.Errorf("host fires %+v, want host 2 by host-z", res.HostFires)
	}
	if res.Policies[0].Outcome != OutcomePass {
		t.Errorf("host-only policy outcome %v, want pass (host fires are listed apart)", res.Policies[0].Outcome)
	}
	// The policy and its rule are named once (the engine used to name
	// them again in front of the policy's own words).
	if got := res.Policies[1]; got.Outcome != OutcomeError || got.Err == nil ||
		got.Err.Error() != `policy "t": rollback_when: t.yaml:2:27: runtime error: integer divide by zero` {
		t.Errorf("failing policy: %v %v, want the error naming the policy and its rule once", got.Outcome, got.Err)
	}
	if e.Env().Host != nil || e.Env().Phase != PhaseApply || e.Env().Elapsed != 5 {
		t.Errorf("env after tick: host %v phase %q elapsed %v", e.Env().Host, e.Env().Phase, e.Env().Elapsed)
	}
	for range mustPreset(t, SensitivityMedium).Smoothing {
		e.Observe(0, []float64{100, 100, 100, 100})
		res = e.Tick(PhaseMonitor, 6)
	}
	if len(res.HostFires) != 0 {
		t.Errorf("host fires %+v after recovery, want none (buffer reused)", res.HostFires)
	}
}

func TestNewEngineReportsEveryProblem(t *testing.T) {
	unknown := &funcEvaluator{name: "p", metrics: []string{"nope"}, fleet: func(*Env) (bool, error) { return false, nil }}
	_, err := NewEngine(EngineConfig{
		Hosts:    []string{"a"},
		Metrics:  []MetricConfig{{Name: "m"}, {Name: "m"}},
		Detector: DetectorConfig{},
		Policies: []Evaluator{unknown},
	})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{`metric "m": defined twice`, `policy "p": unknown metric "nope"`, "threshold"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{OutcomePass: "pass", OutcomeFire: "fire", OutcomeNoData: "nodata", OutcomeError: "error", 9: "Outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(o), got, want)
		}
	}
}

// The presets order by sensitivity: each decides a burst, a sequential
// score and a window test on less evidence than the one before.
func TestPresets(t *testing.T) {
	var prev DetectorConfig
	for i, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		c, err := Preset(name)
		if err != nil {
			t.Fatalf("preset %s: %v", name, err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("preset %s invalid: %v", name, err)
		}
		if c.Limit <= c.ZCap {
			t.Errorf("preset %s: CUSUM limit %v <= z cap %v: one sample could fire alone", name, c.Limit, c.ZCap)
		}
		if i > 0 && (c.Limit > prev.Limit || c.Burst > prev.Burst || c.Confidence > prev.Confidence || c.BurstSpreads > prev.BurstSpreads) {
			t.Errorf("preset %s is not more sensitive than the one before", name)
		}
		prev = c
	}
	if def, _ := Preset(""); def != mustPreset(t, SensitivityMedium) {
		t.Error(`Preset("") is not medium`)
	}
	if _, err := Preset("extreme"); err == nil || !strings.Contains(err.Error(), "extreme") {
		t.Errorf("unknown preset: %v", err)
	}
}

func mustPreset(t *testing.T, name string) DetectorConfig {
	t.Helper()
	c, err := Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A tick allocates nothing of its own.
func TestTickDoesNotAllocate(t *testing.T) {
	hostZ := &funcEvaluator{name: "host-z", host: func(_ *Env, h *Host) (bool, error) { return h.Score > 1e9, nil }}
	e := testEngine(t, 8, []string{"latency", "errors"}, degradedPolicy, hostZ)
	for h := range 8 {
		e.SetBaseline(0, h, noise(uint64(h), 48, 100, 5))
		e.SetBaseline(1, h, noise(uint64(h), 48, 1, 0.1))
	}
	e.StartWave("canary", 0, []int{0, 1, 2})
	lat, errs := noise(1, 8, 100, 5), noise(2, 8, 1, 0.1)
	allocs := testing.AllocsPerRun(100, func() {
		e.Observe(0, lat)
		e.Observe(1, errs)
		e.Tick(PhaseMonitor, 1)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per tick, want 0", allocs)
	}
}

// Difference in differences across waves, the way the runner drives the
// engine: at every wave start, baselines over the hour before it for the
// wave's hosts and every untouched host, then StartWave, then one tick a
// minute. A fleet-wide traffic change (latency x1.4 on every host from one
// minute after the canary's apply) must not degrade anyone through the two
// later waves, although the later waves' baseline windows already hold part
// of the shift and the last wave has no control left; the same change plus
// a real regression on wave-1's hosts must degrade them during wave-1.
func TestEngineDifferenceInDifferencesAcrossWaves(t *testing.T) {
	const (
		n        = 10
		change   = 120 // minute of the canary's apply
		window   = 60  // baseline minutes
		monitor  = 10  // ticks per wave
		duration = change + 3*monitor + 1
	)
	waves := []struct {
		name  string
		hosts []int
	}{
		{"canary", []int{0}},
		{"wave-1", []int{1, 2, 3, 4}},
		{"wave-2", []int{5, 6, 7, 8, 9}},
	}
	tests := []struct {
		name       string
		regression float64 // factor on wave-1's hosts from one minute after their apply
		// drift, instead of the shift at the canary's apply, moves every
		// host by +40% from one minute after the last wave's apply.
		drift bool
		// wantDegraded is the set of hosts that must end up degraded in
		// each wave (nil: none at any tick of that wave).
		wantDegraded [3][]int
	}{
		{name: "fleet-wide shift", regression: 1},
		{name: "shift and a regression on wave-1", regression: 1.6, wantDegraded: [3][]int{nil, {1, 2, 3, 4}, nil}},
		// No untouched host is left in the last wave: the hosts of the
		// waves that passed show how the fleet moves.
		{name: "fleet-wide drift during the last wave", drift: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Hosts of different scales (level 80..170 ms) and noise of 5%
			// of their level; errors sit at exactly 0 (the additive mode).
			latency := make([][]float64, n)
			for h := range n {
				level := 80 + 10*float64(h)
				latency[h] = noise(uint64(h+1), duration, level, 0.05*level)
				for i := change + 1; i < duration; i++ {
					switch {
					case tt.drift && i > change+2*monitor:
						latency[h][i] *= 1.4
					case !tt.drift:
						latency[h][i] *= 1.4
						if h >= 1 && h <= 4 && i > change+monitor {
							latency[h][i] *= tt.regression
						}
					}
				}
			}
			e := testEngine(t, n, []string{"latency", "errors"}, degradedPolicy)
			untouched := map[int]bool{}
			for h := range n {
				untouched[h] = true
			}
			for w, wave := range waves {
				start := change + w*monitor
				for h := range untouched {
					e.SetBaseline(0, h, latency[h][start-window:start])
					e.SetBaseline(1, h, fill(window, 0))
				}
				for _, h := range wave.hosts {
					delete(untouched, h)
				}
				e.StartWave(wave.name, w, wave.hosts)
				var degraded []int
				for tick := start + 1; tick <= start+monitor; tick++ {
					vals := make([]float64, n)
					for h := range n {
						vals[h] = latency[h][tick]
					}
					e.Observe(0, vals)
					e.Observe(1, fill(n, 0))
					e.Tick(PhaseMonitor, float64(tick-start)*60)
					if tt.wantDegraded[w] == nil && e.Env().Fleet.Degraded > 0 {
						for _, h := range e.Env().Hosts {
							if !h.Degraded {
								continue
							}
							m := h.Metrics["latency"]
							t.Errorf("%s minute +%d: host %s degraded (z %.2f, score %.2f, current %.1f, baseline %.1f)",
								wave.name, tick-start, h.Name, m.Z, m.Score, m.Current, m.Baseline)
						}
						t.FailNow()
					}
				}
				for h := range n {
					if e.Host(h).Degraded {
						degraded = append(degraded, h)
					}
				}
				if tt.wantDegraded[w] != nil && !slices.Equal(degraded, tt.wantDegraded[w]) {
					t.Errorf("%s: degraded hosts %v, want %v", wave.name, degraded, tt.wantDegraded[w])
				}
				if tt.wantDegraded[w] != nil {
					return // the runner would roll back here
				}
			}
		})
	}
}

// A fleet-wide shift of an error rate that sits at 0 is handled additively:
// the canary's errors rising with everyone's is not a regression, rising
// alone is.
func TestEngineDifferenceInDifferencesAdditive(t *testing.T) {
	for _, tt := range []struct {
		name         string
		fleetWide    bool
		wantDegraded bool
	}{
		{"fleet-wide", true, false},
		{"canary only", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const n = 5
			e := testEngine(t, n, []string{"errors"}, degradedPolicy)
			for h := range n {
				e.SetBaseline(0, h, fill(60, 0))
			}
			e.StartWave("canary", 0, []int{0})
			for tick := range 10 {
				vals := fill(n, 0)
				for h := range vals {
					if h == 0 || tt.fleetWide {
						vals[h] = 0.02 + 0.001*float64((tick+h)%3)
					}
				}
				e.Observe(0, vals)
				e.Tick(PhaseMonitor, float64(tick))
			}
			if got := e.Host(0).Degraded; got != tt.wantDegraded {
				m := e.Host(0).Metrics["errors"]
				t.Errorf("degraded %v (z %.2f, score %.2f), want %v", got, m.Z, m.Score, tt.wantDegraded)
			}
		})
	}
}

// The control level is a median: quickselect against sorting.
func TestMedianInPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{1, 2, 3, 4, 5, 10, 11, 100, 1001} {
		for trial := range 20 {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = math.Round(r.NormFloat64() * 10) // ties on purpose
				if trial%5 == 0 {
					xs[i] = float64(i % 3)
				}
			}
			sorted := slices.Clone(xs)
			slices.Sort(sorted)
			if got, want := medianInPlace(xs), median(sorted); got != want {
				t.Fatalf("n %d trial %d: median %v, want %v", n, trial, got, want)
			}
		}
	}
}

// A dependency's outage takes every host's availability to 0: the fleet's
// level in ratios is 0, the fleet's movement and not a lack of scale. The
// canary at 0 with every untouched host is not degraded (it was, 500
// spreads below its own baseline, while 10% on every host was excused);
// at 0 alone it is.
func TestEngineFleetAtZero(t *testing.T) {
	tests := []struct {
		name          string
		canary, fleet float64 // availability after the change
		wantDegraded  bool
	}{
		{"every host at 0", 0, 0, false},
		{"every host at 10", 10, 10, false},
		{"the canary at 0 alone", 0, 99.9, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 10
			hosts := make([]string, n)
			for i := range hosts {
				hosts[i] = fmt.Sprintf("web-%d", i+1)
			}
			e, err := NewEngine(EngineConfig{Hosts: hosts, Metrics: []MetricConfig{{Name: "availability"}},
				Detector: mustPreset(t, SensitivityMedium), Policies: []Evaluator{degradedPolicy}, NoDataTicks: 4})
			if err != nil {
				t.Fatal(err)
			}
			for h := range n {
				e.SetBaseline(0, h, below(100, noise(uint64(h+1), 48, 99.9, 0.05)))
			}
			e.StartWave("canary", 0, []int{0, 1})
			checkStage(t, e, tt.wantDegraded, func(int) []float64 {
				vals := fill(n, tt.fleet)
				vals[0], vals[1] = tt.canary, tt.canary
				return vals
			})
		})
	}
}

// A dependency's errors on every host: errors per poll sit at 0 through
// the baseline, and from the change every host draws its own share of a
// surge (Poisson, 3 per poll). Against its own baseline, with no spread
// of its own, any error is infinitely many spreads; against the fleet,
// the canary is one draw of the fleet's. The untouched hosts' spread at
// each poll (most at the surge's count: the 75th percentile of their
// deviations, where their MAD is 0) bounds the repeats and measures the
// CUSUM's excess against the fleet, so the canary is not degraded by its
// share of the surge; by a surge of its own it is. (At +10 per poll 5 of
// these 20 fleets still roll back: README, "Metrics at a bound".)
func TestEngineFleetWideErrorSurge(t *testing.T) {
	poisson := func(r *rand.Rand, lambda float64) float64 {
		k, p := 0.0, r.Float64()
		for l := math.Exp(-lambda); p > l; p *= r.Float64() {
			k++
		}
		return k
	}
	tests := []struct {
		name          string
		canary, fleet float64 // errors per poll added from the change
		wantDegraded  bool
	}{
		{"every host +3 per poll", 3, 3, false},
		{"the canary alone +3 per poll", 3, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 10
			misses := 0
			for seed := range uint64(20) {
				r := rand.New(rand.NewPCG(seed, 7))
				hosts := make([]string, n)
				for i := range hosts {
					hosts[i] = fmt.Sprintf("web-%d", i+1)
				}
				e, err := NewEngine(EngineConfig{Hosts: hosts, Metrics: []MetricConfig{{Name: "errors", HigherIsWorse: true, ToleranceAbs: 1}},
					Detector: mustPreset(t, SensitivityMedium), Policies: []Evaluator{degradedPolicy}, NoDataTicks: 4})
				if err != nil {
					t.Fatal(err)
				}
				for h := range n {
					b := make([]float64, 48)
					for i := range b {
						b[i] = poisson(r, 0.05)
					}
					e.SetBaseline(0, h, b)
				}
				e.StartWave("canary", 0, []int{0, 1})
				degraded := false
				for tick := range 12 {
					vals := make([]float64, n)
					for h := range vals {
						lambda := tt.fleet
						if h < 2 {
							lambda = tt.canary
						}
						vals[h] = poisson(r, 0.05+lambda)
					}
					e.Observe(0, vals)
					e.Tick(PhaseMonitor, float64(tick))
					degraded = degraded || e.Host(0).Degraded || e.Host(1).Degraded
				}
				e.Verdict(PhaseMonitor, 12)
				degraded = degraded || e.Host(0).Degraded || e.Host(1).Degraded
				if degraded != tt.wantDegraded {
					misses++
				}
			}
			if misses > 1 {
				t.Errorf("%d of 20 fleets: canary degraded %v, want %v", misses, !tt.wantDegraded, tt.wantDegraded)
			}
		})
	}
}

// A change at the end of a drift the whole fleet shared. Every host's
// latency climbed from 50 to 100 through the second half of its baseline
// (the evening), or fell from 100 to 40 (the night), so its recent level
// has moved from its median and its baseline as observed spreads over the
// whole drift. The CUSUM and the window test judge the host against where
// it was going (its recent level when that is worse than its median, its
// median moved by the fleet's fall when better); in that wide spread, a
// canary 20% above its recent level after the climb, or 1.3 times the
// fleet's level after the fall (52, still far under its median of 97),
// while the untouched hosts hold theirs, read as noise, and the canary
// was promoted. A host whose baseline taken back by the untouched hosts
// spreads at most 0.3 times as widely as observed (liftShare) drifted
// with them: the window test's comparison with its own history also
// takes its polls back by the untouched hosts' level just before the
// change, in that relative baseline, and counts the worse of the two. The
// canary is degraded; one that holds its level with the fleet is not, nor
// one that holds it while the untouched hosts get 30% better after the
// change, nor one that climbed alone (its lift is its own) and holds it.
func TestEngineChangeAfterASharedDrift(t *testing.T) {
	tests := []struct {
		name             string
		from, to         float64 // every host's level at the start and the end of its drift
		alone            bool    // only the canaries drifted
		canary, controls float64 // factors on the recent level after the change
		wantDegraded     bool
	}{
		{"climb, canaries 20% above the fleet's level", 50, 100, false, 1.2, 1, true},
		{"climb, canaries and untouched hosts hold it", 50, 100, false, 1, 1, false},
		{"climb, canaries hold it, untouched hosts improve", 50, 100, false, 1, 0.7, false},
		{"climb, canaries climbed alone and hold it", 50, 100, true, 1, 1, false},
		{"fall, canaries 1.3 times the fleet's level", 100, 40, false, 1.3, 1, true},
		{"fall, canaries and untouched hosts hold it", 100, 40, false, 1, 1, false},
		{"fall, canaries hold it, untouched hosts improve", 100, 40, false, 1, 0.7, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const half = levelBaseline / 2
			level := func(h, i int) float64 { // host h's level at baseline poll i
				if i < half || tt.alone && h >= 2 {
					return tt.from
				}
				return tt.from + (tt.to-tt.from)*float64(i-half+1)/float64(half)
			}
			checkAtLevels(t, 12, 0, level, tt.canary, tt.controls, tt.wantDegraded)
		})
	}
}

// The shared drift with the README's 10-minute canary: the warm-up's poll
// and one more, so only the burst can decide. The canaries fell with the
// fleet from 100 to 40 through the whole baseline, then stand at 1.5
// times the untouched hosts (60, under their own median):
// as observed, their baseline spreads with the fall, and the step is
// inside its bound. The burst's comparison with their own history also
// reads the poll taken back by the untouched hosts' level just before the
// change, against their baseline taken back by them (their own noise):
// degraded on the second poll (before: `degraded false (latency: score
// 4.03, current 60.8, baseline 69.4), want true`). A climb's step was
// decided before and is now: the burst judges it against the median,
// below the recent level. Canaries that hold the fleet's level, or hold
// it while the untouched hosts improve, are not degraded; nor canaries
// that climbed alone and hold it.
func TestEngineSharedDriftStepOnATwoPollCanary(t *testing.T) {
	tests := []struct {
		name             string
		from, to         float64
		alone            bool
		canary, controls float64
		wantDegraded     bool
	}{
		{"fall, canaries 1.5 times the fleet's level", 100, 40, false, 1.5, 1, true},
		{"fall, canaries and untouched hosts hold it", 100, 40, false, 1, 1, false},
		{"fall, canaries hold it, untouched hosts improve", 100, 40, false, 1, 0.7, false},
		{"climb, canaries 1.5 times the fleet's level", 50, 100, false, 1.5, 1, true},
		{"climb, canaries climbed alone and hold it", 50, 100, true, 1, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			level := func(h, i int) float64 {
				if tt.alone && h >= 2 {
					return tt.from
				}
				return tt.from + (tt.to-tt.from)*float64(i+1)/float64(levelBaseline)
			}
			checkAtLevels(t, 2, 1, level, tt.canary, tt.controls, tt.wantDegraded)
		})
	}
}
