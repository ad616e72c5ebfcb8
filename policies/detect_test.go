package policies

import (
	"math"
	"math/rand/v2"
	"testing"
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

// A quantised, low series like ec2_cpu_utilization_c6585a (0.066 most of
// the time, one reading of 0.134 every few polls, a rare single spike of
// 20x) must not degrade, whatever the phase of its pattern at the change.
func TestQuantisedSeriesDoesNotFire(t *testing.T) {
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
			monitored[5] = 1.466 // a single spike
			for i, v := range monitored {
				if d.Observe(v) {
					t.Fatalf("%s, phase %d: degraded at poll %d (score %.2f)", name, phase, i+1, d.Metric().Score)
				}
			}
		}
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
	base := noise(2, 48, 100, 2)
	d.SetBaseline(base)
	for range 6 {
		d.Observe(150) // better: higher throughput
	}
	if d.Degraded() || d.Metric().Z >= 0 {
		t.Fatalf("higher values of a lower-is-worse metric: degraded %v z %v, want not degraded, z < 0", d.Degraded(), d.Metric().Z)
	}
	for range 6 {
		d.Observe(60)
	}
	if !d.Degraded() {
		t.Fatalf("lower values of a lower-is-worse metric: not degraded (score %.2f)", d.Metric().Score)
	}
}

func TestScoreDecaysOnRecovery(t *testing.T) {
	cfg := mediumConfig(t)
	d := newTestDetector(t, cfg, true)
	d.SetBaseline(noise(3, 48, 50, 5))
	spread := d.Metric().Stddev
	ticks := 0
	for !d.Degraded() {
		d.Observe(50 + 3*spread)
		if ticks++; ticks > 50 {
			t.Fatalf("a sustained 3-spread shift never degraded (score %.2f)", d.Metric().Score)
		}
	}
	peak := d.Metric().Score
	prev := peak
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
	d := newTestDetector(t, cfg, true)
	d.SetBaseline(noise(4, 48, 50, 5))
	spread := d.Metric().Stddev
	for range 3 {
		d.Observe(50 + 3*spread)
	}
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
	d.Observe(50 + 3*spread)
	if m := d.Metric(); m.NoData || d.NoDataTicks() != 0 || m.Score <= score {
		t.Errorf("data back: nodata %v ticks %d score %v, want false 0 > %v", m.NoData, d.NoDataTicks(), m.Score, score)
	}
}

// A single heavy-tailed spike, however large, must not fire on its own: the
// winsorization bounds what one sample adds to the score.
func TestSingleSpikeDoesNotFire(t *testing.T) {
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		d := newTestDetector(t, cfg, true)
		base := noise(5, 48, 100, 5)
		d.SetBaseline(base)
		mon := noise(6, 12, 100, 5)
		mon[2] = 1e6
		for i, v := range mon {
			if d.Observe(v) {
				t.Fatalf("%s: degraded at poll %d by one spike (score %.2f)", name, i+1, d.Metric().Score)
			}
		}
	}
}

// One sample adds at most ZCap to the score wherever it falls, the first
// poll after the change included (where the smoothing window is not yet
// full): the score with a spike exceeds the score with the baseline's
// median in its place by at most ZCap at every tick, at every preset and
// position.
func TestOneSampleAddsAtMostZCap(t *testing.T) {
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		for at := range 4 {
			for seed := range uint64(20) {
				base := noise(100+seed, 48, 100, 5)
				mon := noise(200+seed, 12, 100, 5)
				with, without := newTestDetector(t, cfg, true), newTestDetector(t, cfg, true)
				with.SetBaseline(base)
				without.SetBaseline(base)
				mon[at] = without.Metric().Baseline
				spiked := append([]float64(nil), mon...)
				spiked[at] = 1e6
				for i := range mon {
					with.Observe(spiked[i])
					without.Observe(mon[i])
					if d := with.Metric().Score - without.Metric().Score; d > cfg.ZCap+1e-9 {
						t.Fatalf("%s, spike at poll %d, seed %d: poll %d score %.3f, %.3f more than with the median, want <= ZCap %g",
							name, at+1, seed, i+1, with.Metric().Score, d, cfg.ZCap)
					}
				}
			}
		}
	}
}

// The alarm threshold, as documented on DetectorConfig.Threshold, is a
// score; a step of 2 x Threshold spreads (of the baseline spread after
// floors) must be decided within 3 polls of the first poll that sees it, at
// every preset.
func TestStepOfTwiceThresholdDecidedWithin3Polls(t *testing.T) {
	for _, name := range []string{SensitivityLow, SensitivityMedium, SensitivityHigh} {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		d := newTestDetector(t, cfg, true)
		d.SetBaseline(noise(7, 48, 100, 5))
		for i, v := range noise(8, 6, 100, 5) {
			if d.Observe(v) {
				t.Fatalf("%s: degraded at poll %d before the step", name, i+1)
			}
		}
		step := 2 * cfg.Threshold * d.Metric().Stddev
		decided := 0
		for i, v := range noise(9, 12, 100+step, 5) {
			if d.Observe(v) {
				decided = i + 1
				break
			}
		}
		if decided == 0 || decided > 3 {
			t.Errorf("%s: step of %.3g (2 x threshold %.3g spreads) decided at poll %d, want 1..3", name, step, cfg.Threshold, decided)
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
	for range cfg.Smoothing {
		d.Observe(100 + (cfg.Band+1)*d.Metric().Stddev)
	}
	if d.InBand() {
		t.Errorf("in band %.1f spreads away (band %v)", d.Metric().Z, cfg.Band)
	}
	d.Observe(math.NaN())
	if d.InBand() {
		t.Error("in band without data")
	}
}

func TestDetectorConfigValidate(t *testing.T) {
	good := DetectorConfig{Allowance: 1, Threshold: 8, Smoothing: 3, RelFloor: 0.05, AbsFloor: 1e-9, ZCap: 4, Band: 3}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := DetectorConfig{Allowance: -1, Threshold: 0, Smoothing: 0, RelFloor: -1, AbsFloor: 0, ZCap: -2, Band: 0, TailQuantile: 0.3, MinBaselineSamples: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, field := range []string{"allowance", "threshold", "smoothing", "rel_floor", "abs_floor", "z_cap", "band", "tail_quantile", "min_baseline_samples"} {
		if !contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}

func contains(s, sub string) bool { return len(sub) == 0 || indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// Self-calibration: a burst of the size and length the baseline already
// shows (a host that flushes its disk for four polls now and then) is
// normal for that host, while the same burst on a host whose baseline is
// steady is a regression; a larger, sustained step still fires on the
// bursty host. The observed burst lasts three polls, the fewest at the cap
// that the medium preset fires on (two score 2 ZCap - 3 Allowance = 6.5,
// which is not over its threshold).
func TestSelfCalibrationToleratesBaselineBursts(t *testing.T) {
	steady := noise(3, 48, 100, 5)
	bursty := noise(3, 48, 100, 5)
	for _, at := range []int{10, 30} {
		for i := at; i < at+4; i++ {
			bursty[i] = 160
		}
	}
	burst := []float64{160, 160, 160, 100, 100, 100} // shorter than the baseline's bursts
	step := repeat([]float64{400}, 10)
	tests := []struct {
		name     string
		baseline []float64
		observed []float64
		calib    bool
		want     bool
	}{
		{"steady baseline, burst", steady, burst, true, true},
		{"bursty baseline, shorter burst", bursty, burst, true, false},
		{"bursty baseline, shorter burst, calibration off", bursty, burst, false, true},
		{"bursty baseline, sustained larger step", bursty, step, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mediumConfig(t)
			cfg.SelfCalibrate = tt.calib
			cfg.TailQuantile = 0 // the bursts fill 1/6 of the window: isolate calibration from the tail floor
			d := newTestDetector(t, cfg, true)
			d.SetBaseline(tt.baseline)
			got := false
			for _, v := range tt.observed {
				got = d.Observe(v) || got
			}
			if got != tt.want {
				t.Errorf("degraded %v (score %.2f), want %v", got, d.Metric().Score, tt.want)
			}
		})
	}
}
