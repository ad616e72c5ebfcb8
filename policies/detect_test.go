package policies

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/aclements/go-moremath/stats"
)

func mediumConfig(t *testing.T) DetectorConfig {
	t.Helper()
	c, err := Preset(SensitivityMedium)
	if err != nil {
		t.Fatalf("preset medium: %v", err)
	}
	return c
}

func newTestDetector(t *testing.T, cfg DetectorConfig, higherIsWorse bool) *Detector {
	t.Helper()
	d, err := NewDetector(cfg, MetricConfig{Name: "m", HigherIsWorse: higherIsWorse})
	if err != nil {
		t.Fatalf("new detector: %v", err)
	}
	return d
}

// noise returns n samples around centre with standard deviation sd, the
// same for a given seed.
func noise(seed uint64, n int, centre, sd float64) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]float64, n)
	for i := range out {
		out[i] = centre + sd*r.NormFloat64()
	}
	return out
}

// below clips xs at top, as a ratio is.
func below(top float64, xs []float64) []float64 {
	for i, x := range xs {
		xs[i] = min(x, top)
	}
	return xs
}

func repeat(pattern []float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = pattern[i%len(pattern)]
	}
	return out
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestBaselineSpreadAndFloors(t *testing.T) {
	cfg := mediumConfig(t)
	tests := []struct {
		name                 string
		samples              []float64
		wantCentre           float64
		wantSpread, tol      float64
		wantSamples          int
		wantLowConf, wantBad bool
	}{
		{name: "flat series: relative floor", samples: repeat([]float64{200}, 48),
			wantCentre: 200, wantSpread: cfg.RelFloor * 200, wantSamples: 48},
		{name: "quantised series: the tail floors the spread", samples: repeat([]float64{0.066, 0.066, 0.066, 0.134}, 48),
			wantCentre: 0.066, wantSpread: (0.134 - 0.066) / 1.4395, tol: 1e-3, wantSamples: 48},
		{name: "constant zeros: absolute floor", samples: repeat([]float64{0}, 48),
			wantCentre: 0, wantSpread: cfg.AbsFloor, wantSamples: 48},
		{name: "normal noise: MAD estimates the standard deviation", samples: noise(1, 2000, 100, 10),
			wantCentre: 100, wantSpread: 10, tol: 1, wantSamples: 2000},
		{name: "NaN samples are skipped", samples: []float64{math.NaN(), 5, 5, math.NaN(), 5},
			wantCentre: 5, wantSpread: cfg.RelFloor * 5, wantSamples: 3, wantLowConf: true},
		{name: "no samples: no baseline", samples: []float64{math.NaN()},
			wantSamples: 0, wantLowConf: true, wantBad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(tt.samples)
			m := d.Metric()
			if m.Samples != tt.wantSamples || m.LowConfidence != tt.wantLowConf {
				t.Errorf("samples %d low confidence %v, want %d %v", m.Samples, m.LowConfidence, tt.wantSamples, tt.wantLowConf)
			}
			if tt.wantBad {
				d.Observe(1)
				if !m.NoData {
					t.Errorf("a metric without baseline samples must read as no data")
				}
				return
			}
			if !near(m.Baseline, tt.wantCentre, tt.tol+1e-12) {
				t.Errorf("baseline %v, want %v", m.Baseline, tt.wantCentre)
			}
			if !near(m.Stddev, tt.wantSpread, tt.tol+1e-12) {
				t.Errorf("spread %v, want %v ± %v", m.Stddev, tt.wantSpread, tt.tol)
			}
		})
	}
}

// Tolerance: the largest change allowed, in the metric's unit. 10%
// of the level by default; at a cap (a lower-is-worse ratio near 100% or
// 1, availability at 99.93% or 100%, or a lower-is-worse metric sitting at
// one value) 1% of the cap; at 0 nothing but the absolute tolerance; a
// query may set both.
func TestTolerance(t *testing.T) {
	cfg := mediumConfig(t)
	pct := func(f float64) *float64 { return &f }
	tests := []struct {
		name    string
		metric  MetricConfig
		samples []float64
		want    float64
	}{
		{"latency: 10% of the median", MetricConfig{HigherIsWorse: true}, noise(1, 48, 200, 10), 20},
		{"availability at 100%: 1 point", MetricConfig{}, repeat([]float64{100}, 48), 1},
		{"availability that moves below 100%: 1 point", MetricConfig{}, below(100, noise(2, 48, 99.93, 0.03)), 1},
		{"availability as a fraction: 0.01", MetricConfig{}, below(1, noise(2, 48, 0.9993, 0.0003)), 0.01},
		{"a rate that passes 100: 10%", MetricConfig{}, noise(2, 48, 99, 5), 9.9},
		{"availability at 98%: 1 point", MetricConfig{}, below(100, noise(3, 48, 98, 0.3)), 1},
		{"a rate under 100, median under 90: 10%", MetricConfig{}, below(100, noise(3, 48, 85, 2)), 8.5},
		{"a lower-is-worse percentage at 60%: 10%", MetricConfig{}, below(100, noise(4, 48, 60, 3)), 6},
		{"higher-is-worse at 99.93%: 10%", MetricConfig{HigherIsWorse: true}, below(100, noise(2, 48, 99.93, 0.03)), 9.993},
		{"errors at 0: the absolute floor", MetricConfig{HigherIsWorse: true}, repeat([]float64{0}, 48), cfg.AbsFloor},
		{"errors at 0, tolerance_abs 0.01", MetricConfig{HigherIsWorse: true, ToleranceAbs: 0.01}, repeat([]float64{0}, 48), 0.01},
		{"query tolerance 25%", MetricConfig{HigherIsWorse: true, Tolerance: pct(0.25)}, noise(1, 48, 200, 10), 50},
		{"query tolerance 5% at a cap", MetricConfig{Tolerance: pct(0.05)}, repeat([]float64{100}, 48), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.metric.Name = "m"
			d, err := NewDetector(cfg, tt.metric)
			if err != nil {
				t.Fatal(err)
			}
			d.SetBaseline(tt.samples)
			if got := d.Metric().Tolerance; !near(got, tt.want, 0.02*tt.want) {
				t.Errorf("tolerance %v, want %v", got, tt.want)
			}
		})
	}
}

// observeAll feeds values and returns the 1-based poll at which the
// detector first called the metric degraded, or 0.
func observeAll(d *Detector, values []float64) int {
	for i, v := range values {
		if d.Observe(v) {
			return i + 1
		}
	}
	return 0
}

// stageDecision feeds a stage's values and runs its end-of-stage verdict:
// the 1-based poll at which the detector first called the metric degraded
// (the stage's last when the verdict did), or 0.
func stageDecision(d *Detector, values []float64) int {
	if got := observeAll(d, values); got != 0 {
		return got
	}
	if d.Verdict() {
		return len(values)
	}
	return 0
}

// A change within the tolerance never degrades, however long it lasts
// and however quiet the host; twice the tolerance is decided on its third
// poll (the burst, held by the poll after its two), or at the end of a
// stage of two polls; at a cap, 3 points of availability are an outage.
func TestToleranceIsTheChangeThatMatters(t *testing.T) {
	tests := []struct {
		name     string
		worse    bool
		baseline []float64
		observed []float64
		want     int
	}{
		{"quiet latency +8% for 12 polls", true, noise(1, 48, 200, 1), noise(2, 12, 216, 1), 0},
		{"quiet latency +20%", true, noise(1, 48, 200, 1), noise(2, 12, 240, 1), 3},
		{"quiet latency +20%, a stage of 2 polls", true, noise(1, 48, 200, 1), noise(2, 2, 240, 1), 2},
		{"availability 100% to 97%", false, repeat([]float64{100}, 48), repeat([]float64{97}, 12), 3},
		{"availability 100% to 99.5%", false, repeat([]float64{100}, 48), repeat([]float64{99.5}, 12), 0},
		{"availability 99.93% (never 100%) to 97%", false, below(100, noise(1, 48, 99.93, 0.03)), noise(2, 12, 97, 0.2), 3},
		{"availability 98% to 95%", false, below(100, noise(1, 48, 98, 0.3)), noise(2, 12, 95, 0.3), 3},
		{"availability 99.93% (never 100%) to 99.5%", false, below(100, noise(1, 48, 99.93, 0.03)), noise(2, 12, 99.5, 0.05), 0},
		{"errors from exactly 0 to 2%", true, repeat([]float64{0}, 48), repeat([]float64{0.02, 0.01, 0.03}, 12), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDetector(t, mediumConfig(t), tt.worse)
			d.SetBaseline(tt.baseline)
			if got := stageDecision(d, tt.observed); got != tt.want {
				t.Errorf("decided at poll %d (score %.2f), want %d", got, d.Metric().Score, tt.want)
			}
		})
	}
}

// A quantised, low series like ec2_cpu_utilization_c6585a (0.066 most of
// the time, 0.134 every few polls) with one spike of 20x between two
// ordinary polls must not degrade, whatever the phase of its pattern at the
// change: one poll never decides.
func TestQuantisedSeriesAndOneSpikeDoNotFire(t *testing.T) {
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		pattern := []float64{0.066, 0.068, 0.066, 0.134, 0.066, 0.066, 0.132, 0.068}
		for phase := range pattern {
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(repeat(pattern, 48))
			monitored := repeat(append(pattern[phase:], pattern[:phase]...), 12)
			monitored[4], monitored[5], monitored[6] = 0.066, 1.466, 0.066
			if got := observeAll(d, monitored); got != 0 {
				t.Fatalf("%s, phase %d: degraded at poll %d (score %.2f)", name, phase, got, d.Metric().Score)
			}
			if d.Verdict() {
				t.Fatalf("%s, phase %d: degraded by the window test (score %.2f)", name, phase, d.Metric().Score)
			}
		}
	}
}

// Magnitude counts: a step far beyond anything the host's baseline shows
// is decided on its third poll at every preset (its first two are the
// burst, the third holds it), or on its second at the end of a stage,
// while a host whose baseline holds bursts of that size (two polls at 3x,
// twice) is protected by its own baseline, and decided only on a larger
// one. A burst must hold: two polls at 3x that fall straight back within
// the tolerance are an excursion (a batch job, a backup), and a burst
// held by the second poll after it is decided there.
func TestBurst(t *testing.T) {
	steady := noise(3, 48, 100, 5)
	bursty := slices.Clone(steady)
	for _, at := range []int{10, 30} {
		bursty[at], bursty[at+1] = 300, 300
	}
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name     string
			baseline []float64
			observed []float64
			want     int
		}{
			{"steady host, a step to 3x", steady, repeat([]float64{300}, 4), 3},
			{"steady host, two polls at 3x, then back", steady, []float64{300, 300, 100, 100}, 0},
			{"steady host, two polls at 3x, then back and up", steady, []float64{300, 300, 100, 300}, 4},
			{"steady host, two polls at 3x, then back twice", steady, []float64{300, 300, 100, 100, 130}, 0},
			{"steady host, two polls at 3x ending the stage", steady, []float64{100, 100, 300, 300}, 4},
			{"bursty host, two polls at 3x ending the stage", bursty, []float64{100, 100, 300, 300}, 0},
			{"bursty host, a step to 10x", bursty, repeat([]float64{1000}, 4), 3},
			{"steady host, one poll at 100x", steady, []float64{100, 1e4, 100, 100}, 0},
		}
		for _, tt := range tests {
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(tt.baseline)
			if got := stageDecision(d, tt.observed); got != tt.want {
				t.Errorf("%s, %s: decided at poll %d (score %.2f), want %d", name, tt.name, got, d.Metric().Score, tt.want)
			}
		}
	}
}

// A burst holds at half its height: the poll that holds it must still be
// half as far out as its second poll. Two polls at 10x on a host whose
// baseline holds two bursts of 3x, then 1.2x (beyond the tolerance, far
// under half the height), are an excursion draining away; settling at 6x,
// more than half, they are a step, decided on the poll that holds it.
// (At high, the CUSUM's lower limit decides the two polls at 10x on
// their own.)
func TestBurstHoldsAtHalfItsHeight(t *testing.T) {
	bursty := noise(3, 48, 100, 5)
	for _, at := range []int{10, 30} {
		bursty[at], bursty[at+1] = 300, 300
	}
	for _, name := range []string{SensitivityLow, SensitivityMedium} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			name     string
			observed []float64
			want     int
		}{
			{"then back to 1.2x", []float64{1000, 1000, 120, 100, 100}, 0},
			{"then 6x", []float64{1000, 1000, 600, 600}, 3},
		} {
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(bursty)
			if got := stageDecision(d, tt.observed); got != tt.want {
				t.Errorf("%s, two polls at 10x %s: decided at poll %d (score %.2f), want %d", name, tt.name, got, d.Metric().Score, tt.want)
			}
		}
	}
}

// The burst's bound grows with the polls a stage has watched: two polls at
// 2.5 times the baseline's largest pair decide when they are the stage's
// first two (held by the third), and not when they end a 12-poll stage
// (twelve chances to pass a bound set for one), where only a larger
// excursion decides (at the stage's end, with no poll left to hold it).
func TestBurstBoundGrowsWithThePollsWatched(t *testing.T) {
	cfg := mediumConfig(t)
	base := noise(5, 48, 100, 1)
	base[20], base[21] = 130, 130
	quiet := noise(6, 10, 100, 1)
	tests := []struct {
		name     string
		observed []float64
		want     int
	}{
		{"polls 1-3 at 2.5x the pair", append([]float64{175, 175, 175}, quiet...), 3},
		{"polls 11-12 at 2.5x the pair", append(slices.Clone(quiet), 175, 175), 0},
		{"polls 11-12 at 5x the pair", append(slices.Clone(quiet), 250, 250), 12},
	}
	for _, tt := range tests {
		d := newTestDetector(t, cfg, true)
		d.SetBaseline(base)
		if got := stageDecision(d, tt.observed); got != tt.want {
			t.Errorf("%s: decided at poll %d (score %.2f), want %d", tt.name, got, d.Metric().Score, tt.want)
		}
	}
	cfg.BurstGrowth = 0
	d := newTestDetector(t, cfg, true)
	d.SetBaseline(base)
	if got := stageDecision(d, append(slices.Clone(quiet), 175, 175)); got != 12 {
		t.Errorf("without growth, polls 11-12 at 2.5x the pair: decided at poll %d, want 12", got)
	}
}

// A step of twice the tolerance is decided within 2 polls of becoming
// visible at every preset, on a host quiet enough for it to be visible
// from its first poll: on its third poll at the latest.
func TestStepOfTwiceTheToleranceDecidedWithin2Polls(t *testing.T) {
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		for seed := range uint64(20) {
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(noise(100+seed, 48, 100, 2))
			if got := observeAll(d, noise(200+seed, 12, 120, 2)); got == 0 || got > 3 {
				t.Errorf("%s, seed %d: +20%% step decided at poll %d, want 1..3", name, seed, got)
			}
		}
	}
}

// Warm-up: a cold start (the first polls after the apply at 2.5x and 1.5x)
// that settles within the warm-up never degrades; a doubling is decided
// on the second poll after it (the warm-up's last and the first after it
// are the burst, the second holds it).
//
// The warm-up is the first polls WITH DATA after the apply: a process
// (or its exporter) restarted by the apply misses the polls right after
// it, and its cold start comes with the first ones it answers. Counted in
// ticks, one missed poll put the cold start's second poll past a 2-poll
// warm-up and the burst decided on it (the scenario hunt: a x2 cold start
// of 2 polls, no change, rolled back 23 of 36 with one missed scrape, 2 of
// 36 with none). A doubling is still decided on the second poll after the
// warm-up, and a host that never reports counts its ticks without data
// for on_no_data as before.
func TestWarmup(t *testing.T) {
	cfg := mediumConfig(t)
	cfg.Warmup = 2
	base := noise(11, 48, 100, 3)
	nan := math.NaN()
	tests := []struct {
		name     string
		observed []float64
		want     int
	}{
		{"cold start", append([]float64{250, 150}, noise(12, 10, 100, 3)...), 0},
		{"doubling", repeat([]float64{200}, 12), 4},
		{"cold start, then a doubling", append([]float64{250, 150}, repeat([]float64{200}, 10)...), 4},
		{"a missed poll, then the cold start", append([]float64{nan, 250, 150}, noise(12, 10, 100, 3)...), 0},
		{"three missed polls, then the cold start", append([]float64{nan, nan, nan, 250, 150}, noise(12, 10, 100, 3)...), 0},
		{"a missed poll, then a doubling", append([]float64{nan}, repeat([]float64{200}, 12)...), 5},
		{"a missed poll within the warm-up, then a cold start's tail", append([]float64{250, nan, 150}, noise(12, 10, 100, 3)...), 0},
		{"a cold start that outlasts the warm-up, falling", append([]float64{200, 167, 133}, noise(12, 10, 100, 3)...), 0},
		{"a cold start that outlasts the warm-up, then a regression", append([]float64{200, 167, 150}, repeat([]float64{150}, 10)...), 5},
		// The quick start's latency-50 shape: a step that rose within the
		// warm-up and fell back after it, by more than a cold start's fall
		// must be, is no cold start (it did not fall from the apply on).
		{"a noisy step, up within the warm-up and down after it", append([]float64{150, 175}, repeat([]float64{150}, 10)...), 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(base)
			if got := observeAll(d, tt.observed); got != tt.want {
				t.Errorf("decided at poll %d (score %.2f), want %d", got, d.Metric().Score, tt.want)
			}
			if tt.want == 0 && d.Verdict() {
				t.Errorf("the window test counted the warm-up (score %.2f)", d.Metric().Score)
			}
		})
	}
	t.Run("never reports", func(t *testing.T) {
		d := newTestDetector(t, cfg, true)
		d.SetBaseline(base)
		if got := observeAll(d, repeat([]float64{nan}, 6)); got != 0 {
			t.Fatalf("decided at poll %d without data", got)
		}
		if got := d.NoDataTicks(); got != 6 || !d.Metric().NoData {
			t.Errorf("no data for %d ticks (NoData %v), want 6 (true)", got, d.Metric().NoData)
		}
	})
}

// The window test at the end of a stage, alone (the burst and the
// sequential score off): a shift held for the whole stage on a noisy host
// (+70% with a spread of 40% of the level) is caught; the same stage
// without the shift, or with a shift within the tolerance, is not.
func TestVerdictCatchesASustainedShift(t *testing.T) {
	cfg := mediumConfig(t)
	cfg.Burst, cfg.Limit = 1e9, 1e9
	caught := make([]int, 3)
	const trials = 40
	levels := []float64{170, 100, 105}
	for seed := range uint64(trials) {
		base := noise(300+seed, 48, 100, 40)
		for kind, level := range levels {
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(base)
			if p := observeAll(d, noise(400+seed, 12, level, 40)); p != 0 {
				t.Fatalf("the sequential evidence is off, yet decided at poll %d", p)
			}
			if d.Verdict() {
				caught[kind]++
			}
		}
	}
	if caught[0] < trials*3/4 {
		t.Errorf("window test caught %d of %d +70%% shifts, want >= %d", caught[0], trials, trials*3/4)
	}
	if caught[1] > 0 || caught[2] > 0 {
		t.Errorf("window test fired on %d no-change stages and %d within the tolerance, want 0", caught[1], caught[2])
	}
}

func TestSmoothingIsMovingAverage(t *testing.T) {
	cfg := mediumConfig(t)
	cfg.Smoothing = 3
	d := newTestDetector(t, cfg, true)
	d.SetBaseline(repeat([]float64{10}, 20))
	want := []float64{13, 11.5, 12, 12, 13, 14} // window of up to 3
	for i, v := range []float64{13, 10, 13, 13, 13, 16} {
		d.Observe(v)
		if got := d.Metric().Current; !near(got, want[i], 1e-9) {
			t.Errorf("after %d observations current = %v, want %v", i+1, got, want[i])
		}
	}
	m := d.Metric()
	if !near(m.Delta, 4, 1e-9) || !near(m.Ratio, 1.4, 1e-9) || !near(m.Z, 4/m.Stddev, 1e-9) {
		t.Errorf("delta %v ratio %v z %v, want 4, 1.4, %v", m.Delta, m.Ratio, m.Z, 4/m.Stddev)
	}
}

func TestDirectionLowerIsWorse(t *testing.T) {
	cfg := mediumConfig(t)
	d := newTestDetector(t, cfg, false)
	d.SetBaseline(noise(2, 48, 100, 2))
	if got := observeAll(d, repeat([]float64{150}, 6)); got != 0 || d.Metric().Z >= 0 {
		t.Fatalf("higher values of a lower-is-worse metric: degraded at %d, z %v, want never, z < 0", got, d.Metric().Z)
	}
	if got := observeAll(d, repeat([]float64{60}, 6)); got == 0 {
		t.Fatalf("lower values of a lower-is-worse metric: not degraded (score %.2f)", d.Metric().Score)
	}
}

// The sequential score (CUSUM) grows with severity x duration and decays
// on recovery: a sustained moderate shift that no two polls make a burst
// of is decided within the stage, and forgotten after.
func TestScoreGrowsAndDecays(t *testing.T) {
	cfg := mediumConfig(t)
	cfg.Burst = 1e9 // the sequential score alone
	cfg.Recent = 0  // against the baseline median (TestRecentLevel)
	d := newTestDetector(t, cfg, true)
	d.SetBaseline(noise(3, 48, 50, 5))
	spread := d.Metric().Stddev
	if got := observeAll(d, repeat([]float64{50 + d.Metric().Tolerance + 2*spread}, 12)); got == 0 {
		t.Fatalf("a sustained shift 2 spreads beyond the tolerance never degraded (score %.2f)", d.Metric().Score)
	}
	prev := d.Metric().Score
	for i := 0; d.Metric().Score > 0; i++ {
		d.Observe(50)
		s := d.Metric().Score
		if i >= cfg.Smoothing && s >= prev {
			t.Fatalf("tick %d after recovery: score %.2f did not fall from %.2f", i+1, s, prev)
		}
		prev = s
		if i > 100 {
			t.Fatalf("score never decayed to 0 (still %.2f)", s)
		}
	}
	if d.Degraded() {
		t.Errorf("still degraded after the score decayed")
	}
}

func TestNoDataKeepsScore(t *testing.T) {
	cfg := mediumConfig(t)
	cfg.Burst = 1e9
	d := newTestDetector(t, cfg, true)
	d.SetBaseline(noise(4, 48, 50, 5))
	step := 50 + d.Metric().Tolerance + 3*d.Metric().Stddev
	observeAll(d, repeat([]float64{step}, 2))
	score, current := d.Metric().Score, d.Metric().Current
	if score == 0 {
		t.Fatal("no score after a shift")
	}
	for i := 1; i <= 3; i++ {
		d.Observe(math.NaN())
		m := d.Metric()
		if !m.NoData || d.NoDataTicks() != i || m.Score != score || m.Current != current {
			t.Fatalf("no-data tick %d: nodata %v ticks %d score %v current %v, want true %d %v %v",
				i, m.NoData, d.NoDataTicks(), m.Score, m.Current, i, score, current)
		}
	}
	d.Observe(step)
	if m := d.Metric(); m.NoData || d.NoDataTicks() != 0 || m.Score <= score {
		t.Errorf("data back: nodata %v ticks %d score %v, want false 0 > %v", m.NoData, d.NoDataTicks(), m.Score, score)
	}
}

// One sample adds at most ZCap spreads to the sequential score wherever it
// falls, the first poll after the change included: on the score's scale,
// Threshold x ZCap / Limit.
func TestOneSampleAddsAtMostZCap(t *testing.T) {
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Burst = 1e9 // the sequential score alone
		limit := cfg.Threshold * cfg.ZCap / cfg.Limit
		for at := range 4 {
			for seed := range uint64(20) {
				base := noise(100+seed, 48, 100, 5)
				mon := noise(200+seed, 12, 100, 5)
				with, without := newTestDetector(t, cfg, true), newTestDetector(t, cfg, true)
				with.SetBaseline(base)
				without.SetBaseline(base)
				mon[at] = without.Metric().Baseline
				spiked := slices.Clone(mon)
				spiked[at] = 1e6
				for i := range mon {
					with.Observe(spiked[i])
					without.Observe(mon[i])
					if d := with.Metric().Score - without.Metric().Score; d > limit+1e-9 {
						t.Fatalf("%s, spike at poll %d, seed %d: poll %d score %.3f, %.3f more than with the median, want <= %.3f",
							name, at+1, seed, i+1, with.Metric().Score, d, limit)
					}
				}
			}
		}
	}
}

func TestDetectorInBand(t *testing.T) {
	cfg := mediumConfig(t)
	d := newTestDetector(t, cfg, true)
	d.SetBaseline(noise(10, 48, 100, 5))
	if d.InBand() {
		t.Error("in band before any observation")
	}
	d.Observe(100)
	if !d.InBand() {
		t.Errorf("not in band at the baseline (z %.2f)", d.Metric().Z)
	}
	m := d.Metric()
	for range cfg.Smoothing {
		d.Observe(100 + m.Tolerance + (cfg.Band-0.5)*m.Stddev)
	}
	if !d.InBand() {
		t.Errorf("not in band within the tolerance and %v spreads (z %.1f)", cfg.Band, m.Z)
	}
	for range cfg.Smoothing {
		d.Observe(100 + m.Tolerance + (cfg.Band+1)*m.Stddev)
	}
	if d.InBand() {
		t.Errorf("in band beyond the tolerance and %v spreads (z %.1f)", cfg.Band, m.Z)
	}
	d.Observe(math.NaN())
	if d.InBand() {
		t.Error("in band without data")
	}
}

func TestDetectorConfigValidate(t *testing.T) {
	good := mediumConfig(t)
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := DetectorConfig{Allowance: -1, Threshold: 0, Limit: 0, Smoothing: 0, RelFloor: -1, AbsFloor: 0, ZCap: -2, Band: 0,
		TailQuantile: 0.3, MinBaselineSamples: -1, Tolerance: -1, BoundTolerance: -1, BurstSpreads: -1, Burst: 0.5, Confidence: 1, Warmup: -1,
		FleetSpreads: -1, BurstHold: 1.5}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, field := range []string{"allowance", "threshold", "limit", "smoothing", "rel_floor", "abs_floor", "z_cap", "band",
		"tail_quantile", "min_baseline_samples", "tolerance", "bound tolerance", "burst_spreads", "burst 0.5", "confidence", "warmup",
		"fleet_spreads", "burst_hold 1.5"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}

// Self-calibration of the sequential score: a slow climb of the size and
// length the baseline already shows (a host that flushes its disk for four
// polls now and then) is normal for that host, while the same climb on a
// host whose baseline is steady is a regression.
func TestSelfCalibrationToleratesBaselineBursts(t *testing.T) {
	steady := noise(3, 48, 100, 5)
	bursty := noise(3, 48, 100, 5)
	for _, at := range []int{10, 30} {
		for i := at; i < at+4; i++ {
			bursty[i] = 160
		}
	}
	burst := []float64{160, 160, 160, 100, 100, 100} // shorter than the baseline's bursts
	tests := []struct {
		name     string
		baseline []float64
		calib    bool
		want     bool
	}{
		{"steady baseline", steady, true, true},
		{"bursty baseline", bursty, true, false},
		{"bursty baseline, calibration off", bursty, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mediumConfig(t)
			cfg.SelfCalibrate = tt.calib
			cfg.Burst = 1e9      // the sequential score alone
			cfg.TailQuantile = 0 // the bursts fill 1/6 of the window: isolate calibration from the tail floor
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(tt.baseline)
			if got := observeAll(d, burst) > 0; got != tt.want {
				t.Errorf("degraded %v (score %.2f), want %v", got, d.Metric().Score, tt.want)
			}
		})
	}
}

// One score scale: the score crosses Threshold (5 at every preset)
// exactly when the metric is degraded, and never exceeds 1.2 x Threshold,
// so top_mean(hosts, share) over the threshold means about share of the
// hosts are degraded.
func TestOneScoreScale(t *testing.T) {
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Threshold != 5 {
			t.Errorf("%s: threshold %v, want 5 (the README's seed rule)", name, cfg.Threshold)
		}
		for seed := range uint64(10) {
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(noise(seed, 48, 100, 10))
			for _, v := range append(noise(seed+50, 6, 100, 10), noise(seed+60, 6, 100+float64(seed)*20, 10)...) {
				deg := d.Observe(v)
				m := d.Metric()
				if deg != (m.Score > cfg.Threshold) || deg != d.Degraded() {
					t.Fatalf("%s: degraded %v with score %.2f and threshold %v", name, deg, m.Score, cfg.Threshold)
				}
				if m.Score > 1.01*cfg.Threshold+1e-9 {
					t.Fatalf("%s: score %.2f over 1.01 x threshold", name, m.Score)
				}
			}
		}
	}
}

// The window test's statistic is Mann-Whitney's U read off the baseline's
// 32 quantiles: against go-moremath's test (normal approximation, as the
// window test uses) on the same samples, its z agrees within 0.15 (the
// sketch reads each rank to 1/64 of the baseline), whatever the shift.
func TestWindowTestIsMannWhitney(t *testing.T) {
	stats.MannWhitneyExactLimit, stats.MannWhitneyTiesExactLimit = 0, 0
	cfg := mediumConfig(t)
	cfg.Burst, cfg.Limit = 1e9, 1e9
	cfg.Recent = 0 // the rank test against the whole baseline
	zero := 0.0
	for seed := range uint64(30) {
		base := noise(500+seed, 48, 100, 10)
		window := noise(600+seed, 12, 100+float64(seed%6)*3, 10)
		d, err := NewDetector(cfg, MetricConfig{Name: "m", HigherIsWorse: true, Tolerance: &zero})
		if err != nil {
			t.Fatal(err)
		}
		d.SetBaseline(base)
		observeAll(d, window)
		d.Verdict()
		z := d.st.windowScore(&d.p) / d.p.threshold * d.p.zAlpha
		got := 1 - 0.5*math.Erfc(-z/math.Sqrt2)
		res, err := stats.MannWhitneyUTest(window, base, stats.LocationGreater)
		if err != nil {
			t.Fatal(err)
		}
		want := math.Sqrt2 * math.Erfinv(1-2*res.P) // moremath's z
		if z > 0 && math.Abs(z-want) > 0.15 {
			t.Errorf("seed %d: z %.3f (p %.4f) from the sketch, %.3f (p %.4f) from go-moremath", seed, z, got, want, res.P)
		}
	}
}

// A host that was already drifting up before the change is judged by the
// CUSUM and the window test against the level its last baseline polls
// reached: a stage that stays there is not degraded, one that moves a
// sustained 2 spreads beyond it is, and a doubling is still a burst.
func TestRecentLevel(t *testing.T) {
	base := noise(7, 48, 100, 2)
	for i := 40; i < 48; i++ {
		base[i] += 30 // the last 8 polls: +30%, three tolerances
	}
	cases := []struct {
		name  string
		level float64
		want  bool
	}{
		{"stays at the recent level", 130, false},
		{"beyond the recent level", 0, true}, // set below: 2 spreads beyond it and the tolerance
		{"a doubling", 200, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDetector(t, mediumConfig(t), true)
			d.SetBaseline(base)
			level := tc.level
			if level == 0 {
				level = 130 + d.Metric().Tolerance + 2*d.Metric().Stddev
			}
			got := observeAll(d, noise(8, 12, level, 2)) > 0
			if !got {
				got = d.Verdict()
			}
			if got != tc.want {
				t.Errorf("level %.1f after a baseline ending at 130 (median %.1f, tolerance %.1f, spread %.1f): degraded %v, want %v (score %.2f)",
					level, d.Metric().Baseline, d.Metric().Tolerance, d.Metric().Stddev, got, tc.want, d.Metric().Score)
			}
		})
	}
	// Without the recent level, staying at it is a regression.
	cfg := mediumConfig(t)
	cfg.Recent = 0
	d := newTestDetector(t, cfg, true)
	d.SetBaseline(base)
	if observeAll(d, noise(8, 12, 130, 2)) == 0 && !d.Verdict() {
		t.Errorf("Recent 0: +30%% over the baseline median held for 12 polls was not degraded (score %.2f)", d.Metric().Score)
	}
}

// The single-metric Detector takes an infinity as the Engine does (see
// TestEngineInfinityIsAValue): +Inf on a higher-is-worse metric is a value,
// and two polls of it past the warm-up degrade the metric.
func TestDetectorInfinityIsAValue(t *testing.T) {
	d := newTestDetector(t, mediumConfig(t), true)
	d.SetBaseline(noise(5, 48, 100, 5))
	degraded := false
	for range 3 {
		degraded = d.Observe(math.Inf(1))
	}
	if m := d.Metric(); m.NoData || !degraded || math.IsInf(m.Current, 0) {
		t.Errorf("+Inf: nodata %v, degraded %v, current %v: want a finite value, degraded", m.NoData, degraded, m.Current)
	}
}

// A series that begins inside the baseline window was born there: its
// first polls are a cold start, as after an apply, and the warm-up's
// polls are left out of its baseline. A canary born 12 polls before the
// change with a cold start of 1.5x over the warm-up catches a 1.5x step
// within the warm-up and two polls, as the same host without the cold
// start does; with the cold start in its baseline (a spread of 31, not
// 4.8), the 1.5x step scored 4.11 and the window test did not reject. A
// sparse series that starts the window silent for no longer than its own
// silences keeps every sample, and so does one that starts within
// birthSlack polls of the window.
func TestBirthWarmupLeftOutOfTheBaseline(t *testing.T) {
	cfg := mediumConfig(t)
	cfg.Warmup = 2
	nan := math.NaN()
	born := func(cold float64) []float64 {
		b := repeat([]float64{nan}, 36)
		vals := noise(21, 12, 100, 4)
		vals[0], vals[1] = vals[0]*cold, vals[1]*cold
		return append(b, vals...)
	}
	step := repeat([]float64{150}, 4)
	for _, cold := range []float64{1, 1.5} {
		d := newTestDetector(t, cfg, true)
		d.SetBaseline(born(cold))
		if got := d.Metric().Samples; got != 10 {
			t.Errorf("cold x%.1f: baseline of %d samples, want 10 (12 less the warm-up's 2)", cold, got)
		}
		if got := observeAll(d, step); got == 0 && !d.Verdict() {
			t.Errorf("cold x%.1f: a 1.5x step on a host born in the baseline window not decided (score %.2f, spread %.2f)", cold, d.Metric().Score, d.Metric().Stddev)
		}
	}
	sparse := born(1.8)
	for i := range 36 { // a silence of 4 polls opens the window, as inside it
		if i%10 >= 4 {
			sparse[i] = 100
		}
	}
	full := append(repeat([]float64{nan}, 2), born(1.8)[36:]...)
	for name, b := range map[string][]float64{"sparse": sparse, "within the slack": full} {
		d := newTestDetector(t, cfg, true)
		d.SetBaseline(b)
		want := 0
		for _, v := range b {
			if !math.IsNaN(v) {
				want++
			}
		}
		if got := d.Metric().Samples; got != want {
			t.Errorf("%s: baseline of %d samples, want all %d", name, got, want)
		}
	}
}

// Self-calibration's margin: the baseline's largest excursion is the
// largest of a few, and a stage after it holds more of the same. A flush
// a little past the baseline's largest (here the baseline's four polls
// and one more, just over the tolerance) is the host's own; one that lasts
// a poll longer at full height is not.
func TestSelfCalibrationMargin(t *testing.T) {
	bursty := noise(3, 48, 100, 5)
	for _, at := range []int{10, 30} {
		for i := at; i < at+4; i++ {
			bursty[i] = 160
		}
	}
	tests := []struct {
		name  string
		after []float64
		want  bool
	}{
		{"the baseline's flush", []float64{160, 160, 160, 160, 100, 100, 100}, false},
		{"the baseline's flush and a poll just past the tolerance", []float64{160, 160, 160, 160, 112, 100, 100}, false},
		{"a flush a poll longer than the baseline's", []float64{160, 160, 160, 160, 160, 100, 100}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mediumConfig(t)
			cfg.Burst = 1e9      // the sequential score alone
			cfg.TailQuantile = 0 // isolate calibration from the tail floor
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(bursty)
			best := 0.0
			got := false
			for _, v := range tt.after {
				got = d.Observe(v) || got
				best = max(best, d.Metric().Score)
			}
			if got != tt.want {
				t.Errorf("degraded %v (largest score %.2f), want %v", got, best, tt.want)
			}
		})
	}
}

// An outage that takes one poll in three or four: availability at 100,
// every third or fourth poll 20 points down. No two bad polls are in a
// row (no burst), the median does not move (no window test), and each
// poll counts at most 4 spreads in the CUSUM, which the good polls
// between take back. Three polls beyond everything the baseline showed
// decide it; a host whose baseline dips as deep now and then is not
// degraded by dipping as before.
func TestRepeatedExcursions(t *testing.T) {
	steady := below(100, noise(5, 48, 99.99, 0.01))
	dipping := slices.Clone(steady)
	for i := 3; i < len(dipping); i += 8 {
		dipping[i] = 80
	}
	every := func(k int) []float64 {
		out := fill(12, 100)
		for i := 1; i < len(out); i += k {
			out[i] = 80
		}
		return out
	}
	tests := []struct {
		name     string
		baseline []float64
		after    []float64
		want     bool
	}{
		{"one poll in three", steady, every(3), true},
		{"one poll in four", steady, every(4), true},
		{"two polls in twelve", steady, every(6), false},
		{"a host that dips so now and then, one poll in four", dipping, every(4), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDetector(t, mediumConfig(t), false)
			d.SetBaseline(tt.baseline)
			got := observeAll(d, tt.after) > 0
			if got != tt.want {
				t.Errorf("degraded %v (score %.2f, tolerance %.2f), want %v", got, d.Metric().Score, d.Metric().Tolerance, tt.want)
			}
		})
	}
}

// A series whose spread is its own regular swing between two levels (a
// host that flips between a busy and an idle state, as some of NAB's
// network series do) never reaches its MAD spreads in any one poll: here
// 2.5 spreads are 46 above its median of 92.5, its highest poll 12.5.
// Two polls beyond Burst times the largest excess that one baseline poll
// showed are beyond the ordinary: a step to 130 is decided on a two-poll
// stage (before, 2.5 spreads held it back), while the swing itself, a
// spike in it, or a step within the tolerance is not.
func TestBurstOnASeriesThatSwingsBetweenLevels(t *testing.T) {
	pattern := []float64{80, 105, 80, 105, 105, 80, 80, 105}
	cfg := mediumConfig(t)
	tests := []struct {
		name     string
		observed []float64
		want     int
	}{
		{"a step to 130, ending a stage of 2", []float64{130, 135}, 2},
		{"a step to 130, held", repeat([]float64{130, 135}, 12), 3},
		{"the swing goes on", repeat(pattern, 12), 0},
		{"one spike at 150", []float64{80, 150, 80, 105, 105, 80, 80, 105, 80, 105, 80, 105}, 0},
		{"a step within the tolerance", repeat([]float64{100, 101}, 12), 0},
	}
	for _, tt := range tests {
		d := newTestDetector(t, cfg, true)
		d.SetBaseline(repeat(pattern, 48))
		wantBurstDecision(t, d, tt.name, tt.observed, tt.want)
	}
}

// wantBurstDecision runs a stage through d (its baseline set) and checks
// that it is decided at poll want (0: never), and by the burst.
func wantBurstDecision(t *testing.T, d *Detector, name string, observed []float64, want int) {
	t.Helper()
	got := stageDecision(d, observed)
	if got != want {
		t.Errorf("%s: decided at poll %d (score %.2f), want %d", name, got, d.Metric().Score, want)
	}
	if got != 0 && !(d.st.burst > d.p.threshold) {
		t.Errorf("%s: decided by the window test or the CUSUM (burst %.2f), want the burst", name, d.st.burst)
	}
}

// The cap on the burst's spreads (Burst times the baseline's largest
// single poll) never goes under BurstSpreads of the metric's abs_floor:
// the least spread its user gave it. A series swinging between 0.9 and
// 1.1 whose user said its spread is at least 0.12 (2.5 of it: 0.3 above
// the median of 1) does not call two polls at 1.2 a burst, though they
// pass 1.7 times its largest single poll (0.17 above it); a step to 1.5
// is decided on its second poll (at the end of a stage of two).
func TestBurstSpreadsCapKeepsTheAbsoluteFloor(t *testing.T) {
	pattern := []float64{0.9, 1.1, 0.9, 1.1, 1.1, 0.9, 0.9, 1.1}
	cfg := mediumConfig(t)
	tests := []struct {
		name     string
		observed []float64
		want     int
	}{
		{"two polls at 1.2", []float64{1.2, 1.2}, 0},
		{"a step to 1.5", []float64{1.5, 1.5}, 2},
	}
	for _, tt := range tests {
		d, err := NewDetector(cfg, MetricConfig{Name: "m", HigherIsWorse: true, AbsFloor: 0.12})
		if err != nil {
			t.Fatalf("new detector: %v", err)
		}
		d.SetBaseline(repeat(pattern, 48))
		wantBurstDecision(t, d, tt.name, tt.observed, tt.want)
	}
}
