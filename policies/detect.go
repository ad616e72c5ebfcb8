package policies

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Detection, per host and metric, in four steps. The reasons for each:
//
// Baseline. The pre-change window gives a centre (median) and a spread
// (MAD x 1.4826, which equals the standard deviation for normal data). Both
// are robust: one burst in the baseline window moves neither, where a mean
// and standard deviation would be dragged by it and make the detector blind
// for the whole wave. The spread is floored by RelFloor x |median| and by
// AbsFloor, because real series are often flat or quantised (a CPU counter
// that reads 0.066 three times out of four has MAD 0): without a floor every
// wobble of one quantum would be an infinite deviation. It is also floored
// by the distance from the median to a high quantile of the baseline in the
// worse direction (TailQuantile): a host whose normal bursts fill less than
// half of its baseline, which the MAD ignores, gets a band that holds them.
//
// Current value. The latest Smoothing observations are averaged, so one
// noisy poll moves the current value by 1/Smoothing of its excursion. For
// the score the average is always over Smoothing slots: right after the
// change, slots not yet filled count as the expected value, so the first
// poll weighs 1/Smoothing like every other (see judge).
//
// Deviation. z = (current - expected) / spread, signed so that positive is
// the metric's worse direction. Without untouched hosts the expected value
// is the baseline median. With them it follows the fleet (difference in
// differences): a traffic change that moves the whole fleet moves the
// untouched hosts too and cancels out; the maths is in engine.go (fleet
// level). Working in spread units makes hosts of different scales
// comparable.
//
// Score. A one-sided CUSUM (Page 1954): S = max(0, S + z' - k). Each tick
// adds by how much the deviation exceeds the allowance k, so the score grows
// with severity times duration, and falls by k - z' per tick once the metric
// recovers, so a blip decays instead of being remembered forever. The input
// z' is computed like z but from observations winsorized to median ±
// ZCap x spread (around the expected value) before they are averaged: one
// sample can then add at most ZCap to the score over all the ticks it
// stays in the moving average, wherever it falls, and with ZCap <
// Threshold a single heavy-tailed spike (the kind real CPU and network
// series show several times a day, and services show when they restart)
// cannot fire from a score of 0, while a sustained step of any size still
// adds up to ZCap - k per tick. On a noisy host the score is seldom exactly
// 0; what a spike cannot do is add more than ZCap to it. The host's metric
// is degraded when S > Threshold. The reported Z is not winsorized: it is
// what a user reads as "how far off is it now".
//
// Self-calibration (SelfCalibrate). Some hosts burst as part of normal
// operation (disk flushes, batch jobs, network backups): several polls at
// 10-1000x their median, often more than the tail floor's share of the
// window, so their bursts score like a regression. Before judging, the
// baseline window itself is replayed through the score against its own
// centre and spread; the largest score it reaches, M, is a score this host
// produced while nothing had changed. The host is degraded when its score
// exceeds max(Threshold, M): a burst of the size the baseline already
// shows is normal, a larger or longer one is not. On a steady baseline M
// stays far below Threshold, so the speed of detection (a step of 2 x
// Threshold within 3 polls) is unchanged. Adding M to the threshold
// instead of taking the larger of the two was tried and lost a third of
// the catches for half of the false rollbacks.

// No data (NaN) is its own state: the score is kept as it was, the metric
// is marked NoData and consecutive no-data ticks are counted, so that the
// engine can hand on_no_data the decision instead of passing silently.

// DetectorConfig tunes the detectors. Preset gives the values for the
// sensitivity presets; a spec may override each field.
type DetectorConfig struct {
	// Allowance is the CUSUM slack k, in spreads: the deviation a metric may
	// keep for ever without its score growing. Must be >= 0.
	Allowance float64
	// Threshold is the score h over which a metric, and its host, is
	// degraded. Must be > 0.
	Threshold float64
	// Smoothing is the moving-average window, in ticks (>= 1).
	Smoothing int
	// RelFloor is the smallest spread as a share of |baseline median|
	// (default for every metric; a metric may override it).
	RelFloor float64
	// AbsFloor is the smallest spread in the metric's unit (default for
	// every metric; a metric may override it). Must be > 0 so that a
	// baseline of constant zeros still has a spread.
	AbsFloor float64
	// TailQuantile, when in (0.5, 1), floors the spread by the distance from
	// the median to this quantile of the baseline in the metric's worse
	// direction, scaled to a standard deviation for normal data (for 0.9:
	// divided by 1.2816). A baseline whose normal bursts are rare enough
	// for the MAD to ignore them still widens its band by them. 0 = off.
	TailQuantile float64
	// ZCap winsorizes observations to median ± ZCap spreads before they
	// enter the score, so that one sample adds at most ZCap to it. Must
	// be > Allowance.
	ZCap float64
	// MinBaselineSamples is the number of baseline samples below which the
	// baseline is flagged low-confidence (Metric.LowConfidence).
	MinBaselineSamples int
	// SelfCalibrate, when true, raises a host's threshold to the largest
	// score its own baseline window reaches when replayed through the
	// score against its own centre and spread: a host whose normal bursts
	// already produce a score of 9 is not degraded by a score of 8. A
	// steady baseline reaches far less than Threshold and keeps it.
	SelfCalibrate bool
	// Band is the half-width, in spreads, of the band a reverted host's
	// smoothed metrics must be back in for a rollback to count as verified
	// (see Engine.InBand). Must be > 0.
	Band float64
}

// Validate reports every invalid field at once.
func (c DetectorConfig) Validate() error {
	var errs []error
	if c.Allowance < 0 || math.IsNaN(c.Allowance) {
		errs = append(errs, fmt.Errorf("detection allowance %v: must be >= 0", c.Allowance))
	}
	if !(c.Threshold > 0) {
		errs = append(errs, fmt.Errorf("detection threshold %v: must be > 0", c.Threshold))
	}
	if c.Smoothing < 1 {
		errs = append(errs, fmt.Errorf("detection smoothing %d: must be >= 1", c.Smoothing))
	}
	if c.RelFloor < 0 || math.IsNaN(c.RelFloor) {
		errs = append(errs, fmt.Errorf("detection rel_floor %v: must be >= 0", c.RelFloor))
	}
	if !(c.AbsFloor > 0) {
		errs = append(errs, fmt.Errorf("detection abs_floor %v: must be > 0", c.AbsFloor))
	}
	if !(c.ZCap > c.Allowance) {
		errs = append(errs, fmt.Errorf("detection z_cap %v: must be > allowance %v", c.ZCap, c.Allowance))
	}
	if c.TailQuantile != 0 && !(c.TailQuantile > 0.5 && c.TailQuantile < 1) {
		errs = append(errs, fmt.Errorf("detection tail_quantile %v: must be 0 or in (0.5, 1)", c.TailQuantile))
	}
	if c.MinBaselineSamples < 0 {
		errs = append(errs, fmt.Errorf("detection min_baseline_samples %d: must be >= 0", c.MinBaselineSamples))
	}
	if !(c.Band > 0) {
		errs = append(errs, fmt.Errorf("detection band %v: must be > 0", c.Band))
	}
	return errors.Join(errs...)
}

// MetricConfig is one metric the engine watches.
type MetricConfig struct {
	// Name is the query's name (host.metrics.<name> in policies).
	Name string
	// HigherIsWorse is the degradation direction: true for latency, errors,
	// CPU; false for throughput or success rate.
	HigherIsWorse bool
	// RelFloor and AbsFloor override the detector's floors for this metric
	// when > 0.
	RelFloor, AbsFloor float64
}

// metricState is one host's detector for one metric. The engine keeps all of
// them in one slab; Metric is embedded so that host.metrics.<name> points
// straight into the slab and nothing is copied per tick.
type metricState struct {
	Metric
	// scoreZ is the winsorized, control-adjusted deviation fed to the score.
	scoreZ float64
	// ref is the host's level in the fleet's reference window (the first
	// wave's baseline window), in the metric's unit: its first baseline
	// median, or a later one brought back to the reference window by the
	// fleet level of its own window (see Engine.StartWave).
	ref float64
	// baseLevel is the fleet level (engine.go) of the window the current
	// baseline was taken from.
	baseLevel float64
	// noDataTicks counts consecutive ticks without a value.
	noDataTicks int32
	// ringN is how many observations the ring holds, ringPos where the
	// next one goes.
	ringN, ringPos int32
	hasBaseline    bool
	// hasRef is true once ref and baseLevel are set (at the first
	// StartWave after a baseline).
	hasRef bool
	// rebased is true when the baseline was set since the last StartWave.
	rebased bool
	// fresh is true when the latest tick brought a value.
	fresh bool
	// scale is Threshold divided by this host's own limit (Threshold, or
	// the self-calibrated score when that is higher). Score is the CUSUM
	// times scale, so Score > Threshold means degraded on every host and
	// policies that compare or average scores across hosts (top_mean)
	// see one scale. 0 before the first baseline means 1.
	scale float64
}

// detectorParams are the per-metric constants of the maths.
type detectorParams struct {
	dir                   float64 // +1 higher is worse, -1 lower is worse
	relFloor, absFloor    float64
	allowance, threshold  float64
	zCap, band            float64
	tailQ, tailZ          float64
	minSamples, smoothing int
	selfCalibrate         bool
}

func newDetectorParams(c DetectorConfig, m MetricConfig) detectorParams {
	p := detectorParams{
		dir:           -1,
		relFloor:      c.RelFloor,
		absFloor:      c.AbsFloor,
		allowance:     c.Allowance,
		threshold:     c.Threshold,
		zCap:          c.ZCap,
		band:          c.Band,
		minSamples:    c.MinBaselineSamples,
		smoothing:     c.Smoothing,
		selfCalibrate: c.SelfCalibrate,
	}
	if m.HigherIsWorse {
		p.dir = 1
	}
	if c.TailQuantile > 0 {
		p.tailQ = c.TailQuantile
		p.tailZ = math.Sqrt2 * math.Erfinv(2*c.TailQuantile-1)
	}
	if m.RelFloor > 0 {
		p.relFloor = m.RelFloor
	}
	if m.AbsFloor > 0 {
		p.absFloor = m.AbsFloor
	}
	return p
}

// setBaseline computes the robust centre and spread of samples (NaN skipped)
// and restarts the state: empty smoothing window, zero score. scratch is
// reused for sorting; the grown buffer is returned.
func (s *metricState) setBaseline(p *detectorParams, samples, scratch []float64) []float64 {
	scratch = scratch[:0]
	for _, v := range samples {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			scratch = append(scratch, v)
		}
	}
	n := len(scratch)
	s.Samples = n
	s.LowConfidence = n < p.minSamples
	s.hasBaseline = n > 0
	s.rebased = n > 0
	s.ringN, s.ringPos = 0, 0
	s.Score, s.scoreZ, s.Z = 0, 0, 0
	s.Current, s.Delta, s.Ratio = 0, 0, 0
	s.noDataTicks = 0
	s.fresh = false
	if n == 0 {
		s.Baseline, s.Stddev = 0, 0
		return scratch
	}
	slices.Sort(scratch)
	med := median(scratch)
	tail := 0.0
	if p.tailQ > 0 {
		if p.dir > 0 {
			tail = (quantile(scratch, p.tailQ) - med) / p.tailZ
		} else {
			tail = (med - quantile(scratch, 1-p.tailQ)) / p.tailZ
		}
	}
	for i, v := range scratch {
		scratch[i] = math.Abs(v - med)
	}
	slices.Sort(scratch)
	spread := 1.4826 * median(scratch)
	spread = max(spread, tail, p.relFloor*math.Abs(med), p.absFloor)
	s.Baseline, s.Stddev = med, spread
	s.scale = 1
	if p.selfCalibrate {
		s.scale = p.threshold / max(p.threshold, selfScore(p, samples, med, spread))
	}
	return scratch
}

// selfScore replays the baseline samples, in time order, through the score
// (the same smoothing, winsorization and allowance) against their own centre
// and spread, and returns the largest score reached: how high normal
// operation took this host's score.
func selfScore(p *detectorParams, samples []float64, med, spread float64) float64 {
	lo, hi := med-p.zCap*spread, med+p.zCap*spread
	var score, best float64
	// from is where the smoothing window starts: a live detector starts
	// at the change from a window that holds nothing but the centre (see
	// judge), so an excursion replayed here starts the same way, at the
	// first sample after the score was last 0, and scores as it would
	// live.
	from := 0
	for i, v := range samples {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		if score == 0 {
			from = i
		}
		var sum float64
		n := 0
		for j := i; j >= from && n < p.smoothing; j-- {
			if x := samples[j]; !math.IsNaN(x) && !math.IsInf(x, 0) {
				sum += min(max(x, lo), hi)
				n++
			}
		}
		sum += float64(p.smoothing-n) * med
		z := p.dir * (sum/float64(p.smoothing) - med) / spread
		score = max(0, score+z-p.allowance)
		best = max(best, score)
	}
	return best
}

// median of sorted, non-empty xs.
func median(xs []float64) float64 {
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// quantile of sorted, non-empty xs, interpolating linearly between ranks.
func quantile(xs []float64, q float64) float64 {
	r := q * float64(len(xs)-1)
	i := int(r)
	if i+1 >= len(xs) {
		return xs[len(xs)-1]
	}
	f := r - float64(i)
	return xs[i]*(1-f) + xs[i+1]*f
}

// observe takes one tick's value (NaN = no data) into the smoothing window
// and computes the deviation from the host's own baseline, without any
// control adjustment (judge adds it for the hosts that are judged).
func (s *metricState) observe(p *detectorParams, v float64, ring []float64) {
	if !s.hasBaseline || math.IsNaN(v) || math.IsInf(v, 0) {
		s.fresh = false
		s.NoData = true
		s.noDataTicks++
		return
	}
	s.fresh = true
	s.NoData = false
	s.noDataTicks = 0
	w := int32(len(ring))
	ring[s.ringPos] = v
	s.ringPos = (s.ringPos + 1) % w
	if s.ringN < w {
		s.ringN++
	}
	var sum float64
	for _, x := range ring[:s.ringN] {
		sum += x
	}
	s.Current = sum / float64(s.ringN)
	s.Delta = s.Current - s.Baseline
	if s.Baseline != 0 {
		s.Ratio = s.Current / s.Baseline
	} else {
		s.Ratio = 0
	}
	s.Z = p.dir * s.Delta / s.Stddev
}

// judge sets Z and the score's input from the value the host is expected
// to have at this tick and the spread around it (the baseline's median and
// spread when there is nothing to adjust for). The observations are
// winsorized to expected ± ZCap x spread before they are averaged for the
// score, over the full Smoothing width: slots the window has not filled
// since the change count as the expected value. So one sample weighs
// 1/Smoothing at every tick it stays in the window, the first poll after
// the change included, and adds at most ZCap to the score wherever it
// falls; averaging over the filled slots only would weigh a first-poll
// spike (a restart, a cold cache) 1.5 x ZCap at Smoothing 2, and fire
// the high preset on it alone. A tick without a value changes nothing.
func (s *metricState) judge(p *detectorParams, ring []float64, expected, spread float64) {
	if !s.fresh {
		return
	}
	lo, hi := expected-p.zCap*spread, expected+p.zCap*spread
	w := float64(len(ring))
	clipped := (w - float64(s.ringN)) * expected
	for _, x := range ring[:s.ringN] {
		clipped += min(max(x, lo), hi)
	}
	s.Z = p.dir * (s.Current - expected) / spread
	s.scoreZ = p.dir * (clipped/w - expected) / spread
}

// accumulate advances the CUSUM by one tick; a tick without data keeps the
// score. It reports whether the metric is degraded.
func (s *metricState) accumulate(p *detectorParams) bool {
	if s.fresh {
		scale := s.scale
		if scale == 0 {
			scale = 1
		}
		s.Score = max(0, s.Score/scale+s.scoreZ-p.allowance) * scale
	}
	return s.Score > p.threshold
}

// inBand reports whether the smoothed value is within Band spreads of the
// baseline (control-adjusted), with at least one value since the reset.
func (s *metricState) inBand(p *detectorParams) bool {
	return s.fresh && s.ringN > 0 && math.Abs(s.Z) <= p.band
}

// restartWindow empties the smoothing window, so that Current reflects only
// what is observed from now on.
func (s *metricState) restartWindow() {
	s.ringN, s.ringPos = 0, 0
	s.fresh = false
}

// Detector is the detector of one metric on one host, for callers that do
// not need a whole Engine (tests, replaying one series). The Engine runs the
// same maths over a slab of them.
type Detector struct {
	p       detectorParams
	st      metricState
	ring    []float64
	scratch []float64
}

// NewDetector returns a detector for one metric, or an error if cfg is
// invalid.
func NewDetector(cfg DetectorConfig, m MetricConfig) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detector for metric %q: %w", m.Name, err)
	}
	return &Detector{p: newDetectorParams(cfg, m), ring: make([]float64, cfg.Smoothing)}, nil
}

// SetBaseline sets the baseline from the pre-change samples (NaN skipped)
// and restarts smoothing and score.
func (d *Detector) SetBaseline(samples []float64) {
	d.scratch = d.st.setBaseline(&d.p, samples, d.scratch)
}

// Observe takes one tick's value (NaN = no data) without a control group
// and reports whether the metric is degraded.
func (d *Detector) Observe(v float64) bool {
	d.st.observe(&d.p, v, d.ring)
	d.st.HasControl, d.st.Control = false, 0
	d.st.judge(&d.p, d.ring, d.st.Baseline, d.st.Stddev)
	return d.st.accumulate(&d.p)
}

// ObserveControlled is Observe with a control group: shift is the mean
// deviation, in spreads and in the worse direction, of untouched hosts over
// the same tick, and mean their mean current value.
func (d *Detector) ObserveControlled(v, shift, mean float64) bool {
	d.st.observe(&d.p, v, d.ring)
	d.st.HasControl, d.st.Control = true, mean
	d.st.judge(&d.p, d.ring, d.st.Baseline+d.p.dir*shift*d.st.Stddev, d.st.Stddev)
	return d.st.accumulate(&d.p)
}

// Metric is the detector's state as policies see it.
func (d *Detector) Metric() *Metric { return &d.st.Metric }

// Degraded reports whether the score is over the threshold.
func (d *Detector) Degraded() bool { return d.st.Score > d.p.threshold }

// NoDataTicks is the number of consecutive ticks without a value.
func (d *Detector) NoDataTicks() int { return int(d.st.noDataTicks) }

// InBand reports whether the smoothed value is back within Band spreads of
// the baseline.
func (d *Detector) InBand() bool { return d.st.inBand(&d.p) }
