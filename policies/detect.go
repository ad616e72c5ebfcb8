package policies

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Detection, per host and metric. What it is built from, and why:
//
// Baseline. The pre-change window gives a centre (median) and a spread
// (MAD x 1.4826, which equals the standard deviation for normal data). Both
// are robust: one burst in the baseline window moves neither. The spread
// is floored by the distance from the median to a high quantile of the
// baseline in the worse direction (TailQuantile), so a host whose normal
// bursts fill less than half of its baseline gets a band that holds them,
// by RelFloor x |median| and by AbsFloor, so a flat or quantised series
// (a CPU that reads 0.066 three times out of four) still has a scale.
//
// Tolerance. The largest change allowed, in the metric's own unit:
// Tolerance x |median| (10% by default, like Kayenta's allowed increase),
// and never less than the query's absolute tolerance. A lower-is-worse
// ratio at its cap (a percentage or fraction never above 100 or 1 in its
// baseline, its median within 10% of it: availability at 99.93% or 98%),
// or a lower-is-worse baseline that sits at one value, is at a
// bound, where a share of the level means nothing (3 points of
// availability are an outage, and 10% of 99.93 would hide it): its
// default tolerance is BoundTolerance (1%) of the cap (1 point). A count
// that sits at 0 has no level: only the absolute tolerance applies. Every
// kind of evidence below counts only what lies beyond the tolerance. (The
// evaluation harness chose 10%: the smallest change its visibility oracle
// calls a regression, and the default that kept drifting metrics quiet.)
//
// Expected value, and difference in differences. A host is judged against
// its own baseline median AND against that median moved by the untouched
// hosts' movement since the baseline (engine.go, fleetLevel), measured at
// that same poll: its excess at a poll is the smaller of the two. Each
// poll keeps its own excess, so the CUSUM's smoothing window never takes
// an older poll back by a newer poll's movement. So a change the whole
// fleet shares is excused (the second is small), and the untouched hosts
// improving never makes a host that holds its own baseline look worse (the
// first is small): difference in differences may excuse a shift, never
// invent one.
//
// The level just before the change. The CUSUM and the window test also
// judge against the median of the last Recent baseline polls when it is
// worse than the baseline median (lift): a host that was drifting before
// the change is not degraded by staying where it was going. Their excess
// is the smallest of the three (own, fleet-adjusted, recent). The burst
// keeps the baseline median: a doubling is a regression whatever the host
// did just before.
//
// The fleet's move just before the change. A change made as the daily
// cycle falls lands under a baseline median that holds the evening: 1.5
// times a trough value has no excess over it, whatever the fleet-adjusted
// excess is. So, when the host's recent level is not worse than its median,
// the CUSUM and the window test judge it against its median moved by the
// untouched hosts' move over the last Recent baseline polls (engine.go,
// fleetLevel.pre: their recent median relative to their baseline medians,
// from minReference of them, not the wave's own hosts), when that move is
// to the better side and beyond the host's tolerance and the host moved
// so too over those polls (the reference moves by the smaller of the two;
// a host that did not move with the fleet keeps its own baseline). The
// move is fixed before the change: untouched hosts improving after it
// cannot make the reference stricter, and the fleet-adjusted excess must
// still agree. The burst judges against this stricter reference too (a
// 10-minute canary at 5-minute polls has nothing else that can decide):
// it always takes the stricter of the median and the host's reference,
// measured against the same bounds, and the comparison with the fleet
// must still agree.
//
// A drift shared with the fleet. A host that drifted with the untouched
// hosts before the change, either way (its recent level moved from its
// median, and its baseline taken back by them spreads at most liftShare
// times as widely as observed), has a baseline whose spread as observed
// is the drift's: a step beyond where it was going reads as noise in it.
// The window test's comparison with the host's own history then also
// takes each poll back by the untouched hosts' level just before the
// change and ranks it in the baseline taken back by them, which spreads
// only by the host's own noise; the poll counts as the worse of the two
// reads (engine.go, fleetLevel.preAdjust). The burst's and the repeats'
// comparison with the host's own history reads the poll so too, against
// the bounds of that baseline (its largest pair or poll, its MAD, the
// tolerance), and is beyond its bound when either read is. The reference
// is still fixed before the change, and the fleet-adjusted comparison
// must still agree.
//
// Three kinds of evidence, each scaled so that it crosses Threshold exactly
// when it is enough to call the metric degraded; the metric's score is the
// largest, and the host's the largest of its metrics':
//
//   - A burst (magnitude): the last two polls are both beyond the
//     tolerance, beyond BurstSpreads MAD spreads, and beyond Burst times
//     the largest excess that two consecutive polls of the baseline both
//     reached, a multiple that grows with the log of the polls the stage
//     has watched (BurstGrowth: over 12 polls an excursion has 12 chances
//     to pass a bound set for 1). The burst must hold: it is decided on
//     the first of the next two polls still beyond the tolerance and
//     still BurstHold (half, at every preset) as far out as the burst's
//     second poll, and dropped when neither is (two polls far out that
//     fall back are an excursion: a batch job, a backup; a step holds
//     its level); a burst whose second
//     poll ends the stage, with no poll left to hold it, is decided by
//     the stage's verdict (holdBurst, verdictScore). A clear step is decided on its third poll, or on its
//     second when that ends the stage, however short the stage; one
//     spike never decides (two polls must agree), and a host whose
//     baseline holds bursts of that size is protected by its own
//     baseline. The spreads keep a baseline whose pairs happened to
//     stay near the median from making an ordinary excursion a burst;
//     they never ask more than Burst times (grown alike) the largest
//     excess one baseline poll reached, nor less than BurstSpreads of
//     AbsFloor: a series whose spread is its own swing between levels
//     reaches less than its spreads in any one poll (spreadFloor).
//   - Severity x duration: a one-sided CUSUM (Page 1954) of the smoothed
//     excess beyond the tolerance, in spreads, with allowance k:
//     S = max(0, S + z' - k). It grows with severity times duration and
//     decays on recovery, so a moderate sustained shift is decided within
//     the stage and a blip is forgotten. Observations are winsorized at
//     ZCap spreads beyond the tolerance before they are averaged, so one
//     sample adds at most ZCap to S. Self-calibration: the baseline window
//     is replayed through the same CUSUM against its own centre, and the
//     largest score it reaches, M, is a score this host produced while
//     nothing changed; the host's CUSUM is degraded only above
//     max(Threshold, M).
//   - A verdict over the whole window, at the end of every stage (see
//     Engine.Verdict): a one-sided Mann-Whitney rank test of the polls since
//     the host's apply, shifted back by the tolerance, against the
//     baseline, once as observed and once taken back by the untouched
//     hosts' movement (difference in differences); both must reject at
//     Confidence, Bonferroni-corrected over the host's metrics (see
//     NewEngine). The tolerance is the effect size that matters: the test
//     asks whether the shift (its Hodges-Lehmann estimate is what it
//     measures) exceeds the tolerance, not whether it exceeds 0. It catches
//     a moderate shift on a noisy host that the sequential score never
//     crosses.
//
// Warm-up. The first Warmup polls with data after a host's apply (cold
// caches, JIT, connection pools) are watched but cannot decide on their
// own: the CUSUM and the window test start after them, and a burst needs
// its second poll after them to hold it (or the stage's end after the
// first). A cold start that settles within the warm-up never rolls back;
// a doubling is decided on the second poll after it. Polls without data
// do not count: a process (or its exporter) restarted by the apply misses
// the polls right after it, and its cold start comes with the first ones
// it answers.
//
// No data (NaN) is its own state: the score is kept as it was, the metric
// is marked NoData and consecutive no-data ticks are counted, so that the
// engine can hand on_no_data the decision instead of passing silently.

// DetectorConfig tunes the detectors. Preset gives the values for the
// sensitivity presets; a spec may override each field.
type DetectorConfig struct {
	// Threshold is the score over which a metric, and its host, is
	// degraded; every kind of evidence is scaled to it (5 at every
	// preset). Must be > 0.
	Threshold float64
	// Allowance is the CUSUM slack k, in spreads beyond the tolerance.
	// Must be >= 0.
	Allowance float64
	// Limit is the CUSUM's own decision limit h, in spreads: the CUSUM's
	// contribution to the score is Threshold x S / max(Limit, M). Must be
	// > 0.
	Limit float64
	// Smoothing is the CUSUM's moving-average window, in ticks (>= 1).
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
	// divided by 1.2816). 0 = off.
	TailQuantile float64
	// ZCap winsorizes observations at ZCap spreads beyond the tolerance
	// before they enter the CUSUM, so that one sample adds at most ZCap
	// to it. Must be > Allowance.
	ZCap float64
	// MinBaselineSamples is the number of baseline samples below which the
	// baseline is flagged low-confidence (Metric.LowConfidence).
	MinBaselineSamples int
	// SelfCalibrate, when true, raises a host's CUSUM limit to 1.15 times
	// the largest score its own baseline window reaches when replayed
	// through the CUSUM against its own centre (see selfMargin).
	SelfCalibrate bool
	// Band is the half-width, in spreads beyond the tolerance, of the band
	// a reverted host's smoothed metrics must be back in for a rollback to
	// count as verified (see Engine.InBand). Must be > 0.
	Band float64
	// Tolerance is the default relative tolerance: the smallest change
	// that matters, as a share of the baseline median (a metric may
	// override it). Must be >= 0.
	Tolerance float64
	// BoundTolerance is the default relative tolerance of a metric whose
	// baseline sits at one value (a bound). Must be >= 0.
	BoundTolerance float64
	// Burst is how far beyond the largest excess two consecutive baseline
	// polls both reached two polls must both be to decide at once, as a
	// multiple of it. Must be >= 1.
	Burst float64
	// BurstGrowth grows the Burst multiple with the polls a stage has
	// watched since its warm-up: n polls in, the two polls must be
	// Burst x (1 + BurstGrowth x ln n) times the baseline's largest pair
	// (see metricState.burstGrowth). 0 = off. Must be >= 0.
	BurstGrowth float64
	// BurstSpreads is the least a burst must reach, in spreads: a
	// baseline whose pairs happened to stay close to the median does not
	// make an ordinary excursion a burst. It never asks more than Burst
	// times the largest excess one baseline poll reached (grown as the
	// pair's multiple), nor less than BurstSpreads of AbsFloor. Must be
	// >= 0.
	BurstSpreads float64
	// FleetSpreads is the least a burst against the fleet must reach, in
	// how far the untouched hosts' own moves spread at that poll (see
	// bounds): that spread is read off a handful of hosts at one poll, a
	// rougher estimate than a baseline's MAD. 0: BurstSpreads. Must be
	// >= 0.
	FleetSpreads float64
	// BurstHold is how far out, as a share of the burst's second poll's
	// excess, the poll that holds a burst must still be, beside beyond
	// the tolerance (see holdBurst): a step holds its level, an
	// excursion that falls back more than that is decaying. 0: beyond
	// the tolerance is enough. Must be in [0, 1].
	BurstHold float64
	// Confidence is the one-sided confidence at which the end-of-stage
	// rank test rejects "no shift beyond the tolerance". Must be in
	// (0.5, 1).
	Confidence float64
	// Warmup is the number of polls with data after a host's apply that
	// cannot decide on their own. Must be >= 0.
	Warmup int
	// Recent is the number of last baseline polls whose median is the
	// host's recent level: when that is worse than the baseline median
	// (the host was already drifting before the change), the CUSUM and the
	// window test count only excess beyond it; the untouched hosts' move
	// over the same polls can make the reference stricter (see the fleet's
	// move just before the change, above). 0 = off.
	Recent int
}

// Validate reports every invalid field at once.
func (c DetectorConfig) Validate() error {
	var errs []error
	nonNeg := func(name string, v float64) {
		if v < 0 || math.IsNaN(v) {
			errs = append(errs, fmt.Errorf("detection %s %v: must be >= 0", name, v))
		}
	}
	positive := func(name string, v float64) {
		if !(v > 0) {
			errs = append(errs, fmt.Errorf("detection %s %v: must be > 0", name, v))
		}
	}
	positive("threshold", c.Threshold)
	nonNeg("allowance", c.Allowance)
	positive("limit", c.Limit)
	if c.Smoothing < 1 {
		errs = append(errs, fmt.Errorf("detection smoothing %d: must be >= 1", c.Smoothing))
	}
	nonNeg("rel_floor", c.RelFloor)
	positive("abs_floor", c.AbsFloor)
	if !(c.ZCap > c.Allowance) {
		errs = append(errs, fmt.Errorf("detection z_cap %v: must be > allowance %v", c.ZCap, c.Allowance))
	}
	if c.TailQuantile != 0 && !(c.TailQuantile > 0.5 && c.TailQuantile < 1) {
		errs = append(errs, fmt.Errorf("detection tail_quantile %v: must be 0 or in (0.5, 1)", c.TailQuantile))
	}
	if c.MinBaselineSamples < 0 {
		errs = append(errs, fmt.Errorf("detection min_baseline_samples %d: must be >= 0", c.MinBaselineSamples))
	}
	positive("band", c.Band)
	nonNeg("tolerance", c.Tolerance)
	nonNeg("bound tolerance", c.BoundTolerance)
	nonNeg("burst_spreads", c.BurstSpreads)
	nonNeg("burst_growth", c.BurstGrowth)
	nonNeg("fleet_spreads", c.FleetSpreads)
	if !(c.BurstHold >= 0 && c.BurstHold <= 1) {
		errs = append(errs, fmt.Errorf("detection burst_hold %v: must be in [0, 1]", c.BurstHold))
	}
	if !(c.Burst >= 1) {
		errs = append(errs, fmt.Errorf("detection burst %v: must be >= 1", c.Burst))
	}
	if !(c.Confidence > 0.5 && c.Confidence < 1) {
		errs = append(errs, fmt.Errorf("detection confidence %v: must be in (0.5, 1)", c.Confidence))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("detection warmup %d polls: must be >= 0", c.Warmup))
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
	// RelFloor and AbsFloor override the detector's spread floors for
	// this metric when > 0.
	RelFloor, AbsFloor float64
	// Tolerance, when set (not nil), is this metric's relative tolerance,
	// at a bound too; ToleranceAbs its tolerance in its own unit (the
	// tolerance is never below it).
	Tolerance    *float64
	ToleranceAbs float64
}

// sketchSize is the number of baseline quantiles a detector keeps for the
// end-of-stage rank test: the test's ranks are read off them with an
// error below 1/sketchSize of the baseline's count.
const sketchSize = 32

// metricState is one host's detector for one metric. The engine keeps all of
// them in one slab; Metric is embedded so that host.metrics.<name> points
// straight into the slab and nothing is copied per tick.
type metricState struct {
	Metric
	// ref is the host's level in the fleet's reference window (the first
	// wave's baseline window), in the metric's unit: its first baseline
	// median, or a later one brought back to the reference window by the
	// fleet level of its own window (see Engine.StartWave).
	ref float64
	// baseLevel is the fleet level (engine.go) of the window the current
	// baseline was taken from.
	baseLevel float64
	// lift is how far the level of the last baseline polls is worse
	// than the baseline median (0 or more): excess counts beyond it.
	lift float64
	// recent is the median of the last Recent baseline polls (NaN: none,
	// or Recent is 0): an untouched host's level just before the change.
	recent float64
	// pre is how much stricter than the baseline median the host's own
	// reference is (0 or more): the untouched hosts' move just before the
	// host's change, in the better direction, when beyond the tolerance
	// (see Engine.StartWave).
	pre float64
	// preMul and preAdd take a poll back by the untouched hosts' level
	// just before the change (x*preMul + preAdd, preTakeBack) for the
	// window test's and the burst's comparison with the host's own
	// history, when the host drifted with them (see
	// fleetLevel.preAdjust); preMul is NaN otherwise. float32, as the
	// sketch the poll is ranked in.
	preMul, preAdd float32
	// pair is the largest excess over the median, in the worse direction,
	// that two consecutive baseline polls both reached (0 or more).
	pair float64
	// madSpread is the spread without the tail and relative floors: a
	// burst must reach BurstSpreads of it, beside the baseline's pairs.
	madSpread float64
	// last and lastRel are the excesses of the latest poll (NaN: none
	// since the apply) as observed, over the stricter of the baseline
	// median and the host's reference, and taken back by the fleet's
	// movement (see judge). Its second read (preTakeBack) is derived from
	// prev, its value.
	last, lastRel float64
	// relMed, relPair and relMad are the median, the largest pair excess
	// and the MAD spread of the baseline taken back by the fleet poll by
	// poll, where it spreads less than as observed (relOK; see
	// Engine.didBaselines): the burst's comparison with the fleet is
	// bounded by them, as the one with the host's own baseline is by its
	// own.
	relMed, relPair, relMad float64
	// single and relSingle are the largest excess over the median, in
	// the worse direction, that one baseline poll reached (0 or more),
	// as observed and taken back by the fleet (where relOK).
	single, relSingle float64
	// top holds the repeatPolls largest excursions since the apply,
	// each the smaller of its excess as observed and against the fleet
	// over the repeat's bounds (see repeats and repeatScore).
	top [repeatPolls]float64
	// prev is the latest poll's value as observed (NaN: none since the
	// apply), for settling and the burst's second read.
	prev float64
	// pending is a burst not yet decided (0: none): the latest two polls'
	// score over their bounds (see holdBurst), waiting for a poll that
	// holds it; pendingAge counts the polls since, and pendingHold is how
	// far out that poll must be (BurstHold of the burst's second poll's
	// excess).
	pending     float64
	pendingHold float64
	// settling is true while every poll since the apply's first has
	// fallen below the one before, after a warm-up of two polls or more
	// by more than the tolerance and BurstSpreads spreads (see judge).
	settling   bool
	pendingAge uint8
	// relOK: relMed, relPair and relMad hold a baseline relative to the
	// fleet (beside settling, in the padding before cusum).
	relOK bool
	// cusum is the CUSUM in spreads, before self-calibration; limit is
	// the host's own limit, max(Limit, M).
	cusum, limit float64
	// burst and verdict are the burst and window-test scores (on the
	// Threshold scale) of the latest tick and the latest verdict.
	burst, verdict float64
	// uOwn and uDid accumulate the rank test's statistic over the
	// window: per poll, the share of the baseline below the poll's value
	// less the tolerance (ties half), as observed and taken back by the
	// fleet's movement. nw counts the polls.
	uOwn, uDid float64
	// didR is the lag-1 autocorrelation of the baseline relative to the
	// fleet, held to [0, maxAutocorrelation] (0 without one): the second
	// test's z is divided by how much it inflates the spread of the
	// difference of the window's and the baseline's means (inflation).
	didR float64
	nw   int32
	// nb is the number of baseline samples.
	nb int32
	// age counts the polls with data since the host's apply: the
	// warm-up is its first Warmup of them, so a restart that costs the
	// exporter the polls right after the apply does not push the cold
	// start out of the warm-up (ticks without data are counted by
	// noDataTicks, for on_no_data, and never shorten it).
	age int32
	// noDataTicks counts consecutive ticks without a value.
	noDataTicks int32
	// gap is the longest run of polls without a value in the baseline
	// window between two with one: a silence that long is the metric's
	// own (a latency of a service that serves no request in some
	// minutes), not no data.
	gap int32
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
}

// detectorParams are the per-metric constants of the maths.
type detectorParams struct {
	dir                         float64 // +1 higher is worse, -1 lower is worse
	relFloor, absFloor          float64
	allowance, limit, threshold float64
	zCap, band                  float64
	tailQ, tailZ                float64
	tolerance, boundTol, tolAbs float64
	burst, burstZ, zAlpha       float64
	burstGrowth, burstHold      float64
	fleetZ                      float64
	minSamples, smoothing, warm int
	recent                      int
	selfCalibrate               bool
}

func newDetectorParams(c DetectorConfig, m MetricConfig) detectorParams {
	p := detectorParams{
		dir:           -1,
		relFloor:      c.RelFloor,
		absFloor:      c.AbsFloor,
		allowance:     c.Allowance,
		limit:         c.Limit,
		threshold:     c.Threshold,
		zCap:          c.ZCap,
		band:          c.Band,
		tolerance:     c.Tolerance,
		boundTol:      c.BoundTolerance,
		tolAbs:        m.ToleranceAbs,
		burst:         c.Burst,
		burstZ:        c.BurstSpreads,
		burstGrowth:   c.BurstGrowth,
		burstHold:     c.BurstHold,
		fleetZ:        cmp.Or(c.FleetSpreads, c.BurstSpreads),
		zAlpha:        math.Sqrt2 * math.Erfinv(2*c.Confidence-1),
		minSamples:    c.MinBaselineSamples,
		smoothing:     c.Smoothing,
		warm:          c.Warmup,
		selfCalibrate: c.SelfCalibrate,
		recent:        c.Recent,
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
	if m.Tolerance != nil {
		p.tolerance, p.boundTol = *m.Tolerance, *m.Tolerance
	}
	return p
}

// setBaseline computes the robust centre and spread of samples (NaN skipped,
// in time order), the tolerance, the burst and self-calibration limits and
// the rank test's sketch, and restarts the state: empty smoothing window,
// zero score. scratch is reused for sorting; the grown buffer is returned.
func (s *metricState) setBaseline(p *detectorParams, samples, scratch []float64, sketch []float32) []float64 {
	s.gap = longestGap(samples)
	samples = pastBirth(p, samples, s.gap)
	scratch = scratch[:0]
	for _, v := range samples {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			scratch = append(scratch, v)
		}
	}
	n := len(scratch)
	s.Samples = n
	s.nb = int32(n)
	s.LowConfidence = n < p.minSamples
	s.hasBaseline = n > 0
	s.rebased = n > 0
	s.restart()
	s.Current, s.Delta, s.Ratio, s.Z = 0, 0, 0, 0
	s.noDataTicks = 0
	if n == 0 {
		s.Baseline, s.Stddev, s.Tolerance = 0, 0, 0
		return scratch
	}
	slices.Sort(scratch)
	med := median(scratch)
	lo, hi := scratch[0], scratch[n-1]
	fillSketch(p, scratch, sketch)
	tail := 0.0
	if p.tailQ > 0 {
		if p.dir > 0 {
			tail = (quantile(scratch, p.tailQ) - med) / p.tailZ
		} else {
			tail = (med - quantile(scratch, 1-p.tailQ)) / p.tailZ
		}
	}
	mad := madOf(scratch, scratch)
	raw := max(mad, tail)
	spread := max(raw, p.relFloor*math.Abs(med), p.absFloor)
	s.madSpread = max(mad, p.absFloor)
	rel, level := p.tolerance, math.Abs(med)
	if p.dir < 0 {
		if c := ratioCap(lo, med, hi); c > 0 {
			// A ratio at its cap (availability at 99.93%): what matters
			// is a share of the cap, as the errors it lets through.
			rel, level = p.boundTol, c
		} else if raw == 0 {
			// The baseline sits at the best value it takes.
			rel = p.boundTol
		}
	}
	s.Baseline, s.Stddev = med, spread
	s.Tolerance = max(rel*level, p.tolAbs, p.absFloor)
	s.pair = pairExcess(p, samples, med)
	s.single = singleExcess(p, lo, hi, med)
	s.recent = recentMedian(p, samples, scratch)
	s.lift = recentLift(p, s.recent, med)
	s.pre = 0
	s.preMul, s.preAdd = float32(math.NaN()), 0
	s.didR = 0
	s.relOK = false
	s.limit = p.limit
	if p.selfCalibrate {
		s.limit = max(p.limit, selfMargin*selfScore(p, samples, med, spread, s.Tolerance))
	}
	return scratch
}

// fillSketch sets sketch to sketchSize quantiles of sorted (ascending,
// non-empty) in the worse direction, ascending: the rank test's baseline.
func fillSketch(p *detectorParams, sorted []float64, sketch []float32) {
	for i := range sketch {
		q := (float64(i) + 0.5) / float64(len(sketch))
		if p.dir < 0 {
			q = 1 - q
		}
		sketch[i] = float32(p.dir * quantile(sorted, q))
	}
}

// birthSlack is how many polls at the start of a baseline window a series
// may miss and still be one that existed when the window began: a range
// query's first point can fall a poll after the window's start (step
// alignment, a late first scrape).
const birthSlack = 2

// pastBirth is samples without the warm-up of a series born inside the
// baseline window: one whose polls before its first value (a run of NaN at
// the window's start) number more than birthSlack and more than its own
// longest silence (gap, see longestGap: a sparse series that starts the
// window silent has not been born then). A birth is an apply: the first
// p.warm polls with a value after it are a cold start (caches, JIT,
// connection pools) that a baseline must not take as the host's normal, as
// the warm-up after a stage's apply is not judged. They are left out when
// a value remains after them; otherwise samples are returned as they are.
func pastBirth(p *detectorParams, samples []float64, gap int32) []float64 {
	lead := 0
	for lead < len(samples) && math.IsNaN(samples[lead]) {
		lead++
	}
	if p.warm <= 0 || lead <= birthSlack || lead <= int(gap) {
		return samples
	}
	seen := 0
	for i := lead; i < len(samples); i++ {
		if math.IsNaN(samples[i]) {
			continue
		}
		if seen == p.warm {
			return samples[i:]
		}
		seen++
	}
	return samples
}

// ratioCap is the best value of a lower-is-worse metric whose baseline
// (lowest lo, median med, highest hi) reads as a ratio at its cap: 1 (a
// fraction) or 100 (a percentage) when the baseline never passes it and
// has its median within 10% of it (availability at 99.93% or at 98%, an
// apdex at 0.97), else 0. There a share of the level is no tolerance: 10%
// of 99.93% is 10 points, and availability falling to 97% lets 40 times
// the errors through.
func ratioCap(lo, med, hi float64) float64 {
	for _, c := range [...]float64{1, 100} {
		if lo >= 0 && hi <= c && med >= 0.9*c {
			return c
		}
	}
	return 0
}

// longestGap is the longest run of samples without a value (NaN; an
// infinity is a value) between two with one: a silence the metric came
// back from. Runs at the window's start (before the series existed) or
// end (silent since) are not the metric's own.
func longestGap(samples []float64) int32 {
	var run, longest int32
	seen := false
	for _, v := range samples {
		if math.IsNaN(v) {
			run++
			continue
		}
		if seen {
			longest = max(longest, run)
		}
		seen, run = true, 0
	}
	return longest
}

// recentMedian is the median of the last p.recent valid samples (NaN when
// there is none, or when p.recent is 0). buf is scratch space.
func recentMedian(p *detectorParams, samples []float64, buf []float64) float64 {
	if p.recent <= 0 {
		return math.NaN()
	}
	buf = buf[:0]
	for i := len(samples) - 1; i >= 0 && len(buf) < p.recent; i-- {
		if v := samples[i]; !math.IsNaN(v) && !math.IsInf(v, 0) {
			buf = append(buf, v)
		}
	}
	if len(buf) == 0 {
		return math.NaN()
	}
	slices.Sort(buf)
	return median(buf)
}

// recentLift is how far the recent level is beyond med in the worse
// direction (0 when not, or when there is no recent level).
func recentLift(p *detectorParams, recent, med float64) float64 {
	if math.IsNaN(recent) {
		return 0
	}
	return max(0, p.dir*(recent-med))
}

// pairExcess is the largest excess over med, in the worse direction, that
// two consecutive samples both reached (0 when none is above med).
func pairExcess(p *detectorParams, samples []float64, med float64) float64 {
	best := 0.0
	prev := math.NaN()
	for _, v := range samples {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			prev = math.NaN()
			continue
		}
		e := p.dir * (v - med)
		if !math.IsNaN(prev) {
			best = max(best, min(prev, e))
		}
		prev = e
	}
	return best
}

// singleExcess is the largest excess over med, in the worse direction, that
// one of the samples between lo and hi reached (0 or more).
func singleExcess(p *detectorParams, lo, hi, med float64) float64 {
	if p.dir > 0 {
		return max(0, hi-med)
	}
	return max(0, med-lo)
}

// selfMargin is how far above the largest score its own baseline reached a
// self-calibrated host's CUSUM limit sits. That score is the largest of the
// few excursions a baseline holds, and a stage after it holds more of the
// same: over n polls after a baseline of N, one of them passes the
// baseline's largest in about n/(n+N) of the stages where nothing changed
// (a fifth, for 12 polls after 48), as one draw passes the largest of the
// others. 15% above it is where the harness's development halves stopped
// trading more than one no-change rollback saved for each regression lost
// (README, "Self-calibration's margin").
const selfMargin = 1.15

// selfScore replays the baseline samples, in time order, through the CUSUM
// (the same smoothing, winsorization, tolerance and allowance) against
// their own centre and spread, and returns the largest score reached: how
// high normal operation took this host's score.
func selfScore(p *detectorParams, samples []float64, med, spread, tol float64) float64 {
	hi := tol + p.zCap*spread
	lo := -p.zCap * spread
	var score, best float64
	// from is where the smoothing window starts: a live detector starts
	// at the change from an empty window (see judge), so an excursion
	// replayed here starts the same way, at the first sample after the
	// score was last 0, and scores as it would live.
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
				sum += min(max(p.dir*(x-med), lo), hi)
				n++
			}
		}
		z := (sum/float64(p.smoothing) - tol) / spread
		score = max(0, score+z-p.allowance)
		best = max(best, score)
	}
	return best
}

// madOf is 1.4826 times the median absolute deviation of sorted
// (ascending), the absolute deviations written into buf, which may be
// sorted itself (its values are then replaced).
func madOf(sorted, buf []float64) float64 {
	med := median(sorted)
	buf = buf[:0]
	for _, v := range sorted {
		buf = append(buf, math.Abs(v-med))
	}
	slices.Sort(buf)
	return 1.4826 * median(buf)
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

// restart empties the smoothing window and forgets every score and the
// window test: what is observed from now on is judged afresh.
func (s *metricState) restart() {
	s.ringN, s.ringPos = 0, 0
	s.fresh = false
	s.Score, s.cusum, s.burst, s.verdict = 0, 0, 0, 0
	s.top = [repeatPolls]float64{}
	s.uOwn, s.uDid, s.nw = 0, 0, 0
	s.last, s.lastRel, s.prev = math.NaN(), math.NaN(), math.NaN()
	s.pending, s.pendingAge = 0, 0
	s.settling = false
	s.age = 0
}

// infScales is how far beyond its baseline, in the larger of its level,
// spread and tolerance, an infinite value counts (see finite).
const infScales = 1000

// finite is v, or, for an infinity, a value infScales times the
// baseline's scale beyond it on the infinity's side: histogram_quantile
// answers +Inf when every observation is past its top bucket, the worst a
// latency can read, and never a missing value. That far is past every
// bound of the detector (the burst's, the CUSUM's winsorization, the
// window test's ranks); on the better side it is no evidence. Without a
// baseline there is no scale, and an infinity is no data.
func (s *metricState) finite(v float64) float64 {
	if !math.IsInf(v, 0) || !s.hasBaseline {
		return v
	}
	far := infScales * max(math.Abs(s.Baseline), s.Stddev, s.Tolerance)
	if v > 0 {
		return s.Baseline + far
	}
	return s.Baseline - far
}

// observe takes one tick's value (NaN = no data, an infinity as finite
// makes it) into the smoothing window and computes the deviation from the
// host's own baseline, without any control adjustment (judge adds it for
// the hosts that are judged).
func (s *metricState) observe(p *detectorParams, v float64, ring []float64) {
	v = s.finite(v)
	if !s.hasBaseline || math.IsNaN(v) {
		s.fresh = false
		s.NoData = true
		s.noDataTicks++
		s.Silent = !s.hasBaseline || s.noDataTicks > s.gap
		return
	}
	s.age++
	if p.warm > 0 && int(s.age) == p.warm+1 {
		// The warm-up is over: its polls leave the smoothing window.
		s.ringN, s.ringPos = 0, 0
	}
	s.fresh = true
	s.NoData, s.Silent = false, false
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

// adjust brings a value observed now back to the level of the window its
// host's baseline was taken over: x*mul + add (see fleetLevel.adjustment).
// spread is how far the reference hosts' own moves spread at this poll,
// in the host's unit after the adjustment (see fleetLevel.spread).
type adjust struct {
	mul, add, spread float64
	// zero is true when the fleet's level is zero in ratios (every
	// untouched host's value fell to 0: a dependency outage, no
	// traffic): no poll can be taken back by it, and the host is where
	// the fleet is wherever it is, so the comparison against the fleet
	// finds no excess.
	zero bool
}

// identity is the adjustment when there is nothing to adjust for.
var identity = adjust{mul: 1}

func (a adjust) apply(x float64) float64 { return x*a.mul + a.add }

// judge computes this tick's evidence from the host's last value and
// smoothing window. adj brings the latest poll back to the baseline
// window's level by the untouched hosts' movement at that same poll;
// expected and spread are what the host is expected at now (for Z). It
// keeps the poll's excess, with its own poll's adjustment, in xring (the
// CUSUM's window, beside ring). A tick without a value changes nothing.
func (s *metricState) judge(p *detectorParams, ring, xring []float64, sketch, didSketch []float32, adj adjust, expected, spread float64) {
	if !s.fresh {
		return
	}
	s.Z = p.dir * (s.Current - expected) / spread
	inWarmup := int(s.age) <= p.warm
	// The poll's excess beyond the baseline median as observed, and
	// with the fleet's movement taken out beyond the baseline's median
	// taken out so too (relExcess).
	latest := s.latest(ring)
	own, rel := p.dir*(latest-s.Baseline), s.relExcess(p, adj.apply(latest))
	did := p.dir * (adj.apply(latest) - s.Baseline)
	if adj.zero {
		rel, did = 0, 0
	}
	if adj.spread > s.Stddev && s.madSpread <= p.absFloor {
		// A host whose baseline sits at one value (errors at 0,
		// availability at 100) has no spread of its own to measure the
		// fleet's surge by: against the fleet, its excess beyond the
		// tolerance counts in the untouched hosts' spread at this poll.
		did = s.Tolerance + (did-s.Tolerance)*s.Stddev/adj.spread
	}
	// The CUSUM's observation of this poll: the smaller of its excess
	// over the host's own reference (see reference) and with this poll's
	// adjustment, both over the baseline median and in its spreads.
	ref := s.reference()
	xring[(int(s.ringPos)+len(xring)-1)%len(xring)] = min(own+ref, did)
	s.burst = 0
	// The burst and the repeats judge the poll against the stricter of the
	// baseline median and the host's own reference: a recent level worse
	// than the median moves neither, the fleet's move to the better side
	// just before the change moves both.
	strict := own + max(0, ref)
	// A host that drifted with the untouched hosts before the change (see
	// fleetLevel.preAdjust): its own comparison also reads the poll taken
	// back by their level just before the change, over its baseline taken
	// back by them, whose spread is the host's own noise, not the drift's
	// (the window test's second read below); the comparison is beyond its
	// bound when either read is. NaN when the host did not drift with them
	// (or, for the last poll, there is none).
	preX := s.preTakeBack(latest)
	pre, lastPre := s.relExcess(p, preX), s.relExcess(p, s.preTakeBack(s.prev))
	// A cold start that outlasts a warm-up of two polls or more: every
	// poll since the apply's first has fallen below the one before, those
	// after the warm-up by more than the tolerance and BurstSpreads MAD
	// spreads (as observed: the untouched hosts' noise is not the host's),
	// the first below the warm-up's last. While it keeps falling, no two
	// of its polls are a burst (the CUSUM still weighs them). A step holds
	// its level: a noisy one that rose within the warm-up and fell back
	// by as much after it is no cold start, and is decided as before.
	if past := s.age - int32(p.warm); p.warm >= 2 && s.age >= 2 {
		fall := p.dir * (s.prev - latest)
		if past <= 0 {
			s.settling = fall > 0 && (s.age == 2 || s.settling)
		} else {
			s.settling = fall > max(s.Tolerance, p.burstZ*s.madSpread) && s.settling
		}
	}
	s.prev = latest
	judged := !inWarmup && !s.settling
	growth := 1.0
	if judged {
		growth = s.burstGrowth(p)
	}
	if judged && !math.IsNaN(s.last) {
		// Both polls beyond the bound, as observed and against the
		// fleet, each comparison bounded by its own baseline's pairs
		// and spread: as observed, the host's baseline; against the
		// fleet, the baseline taken back by the fleet poll by poll
		// where it is tighter (relOK), else the host's too. A change
		// made on the daily rise is then measured against how far the
		// host strays from the fleet, not against how far the rise
		// took it within its baseline; and never against less than how
		// far the untouched hosts' own moves spread at this poll
		// (adj.spread): a surge that moves each host by its own share
		// moves the host off the fleet's median as much as them.
		bound, relBound := s.bounds(p, s.pair, s.relPair, growth, adj)
		ownR := min(s.last, strict) / bound
		if !math.IsNaN(pre) && !math.IsNaN(lastPre) {
			ownR = max(ownR, min(lastPre, pre)/s.preBound(p, s.relPair, growth))
		}
		s.holdBurst(p, min(ownR, min(s.lastRel, rel)/relBound), min(strict, rel))
	}
	s.last, s.lastRel = strict, rel
	if judged {
		s.repeats(p, strict, rel, pre, growth, adj)
	}
	if inWarmup {
		return
	}
	// The rank test's statistics: the share of the baseline below the
	// poll less the tolerance, as observed against the host's own
	// baseline, and taken back by the fleet's movement against its
	// baseline taken back so too, poll by poll (didSketch, see
	// Engine.didBaselines): both sides of the second are relative to the
	// fleet, so a daily rise or fall that the untouched hosts share
	// widens neither.
	rank := sketchRank(sketch, p.dir*latest+ref-s.Tolerance)
	if !math.IsNaN(preX) {
		// A host that drifted with the untouched hosts before the change
		// (see fleetLevel.preAdjust): also its poll taken back by their
		// level just before it, against its baseline taken back by them;
		// the poll is as far beyond the host's own history as the worse
		// of the two reads.
		rank = max(rank, sketchRank(didSketch, p.dir*preX-s.Tolerance))
	}
	s.uOwn += rank
	if adj.zero {
		s.uDid += 0.5 // the poll is where the fleet is: no evidence
	} else {
		s.uDid += sketchRank(didSketch, p.dir*adj.apply(latest)-s.Tolerance)
	}
	s.nw++
}

// burstHoldPolls is how many polls after a burst's two may hold it: one of
// them must still be beyond the tolerance, and BurstHold as far out as
// the burst's second poll, or the burst is dropped.
const burstHoldPolls = 2

// holdBurst decides a burst once it holds: both is the latest two polls'
// score over their bounds (> 0: they are a burst), excess the latest poll's
// smaller excess, as observed over the host's reference and against the
// fleet. A burst is decided on the first of the burstHoldPolls polls after
// it that is still beyond the tolerance both ways and still BurstHold of
// the burst's second poll's excess, and dropped when none is: two polls
// far out that fall back within the tolerance, or most of the way to it
// (a batch job, a backup, a burst of traffic the fleet did not share),
// are an excursion, not a change; a step holds its level. A burst whose
// second poll ends a stage, with no poll left to hold it, is decided by
// verdictScore. A smaller pair while one waits does not restart its wait;
// a larger one takes its place and waits afresh.
func (s *metricState) holdBurst(p *detectorParams, both, excess float64) {
	if s.pending > 0 {
		s.pendingAge++
		if excess > s.Tolerance && excess >= s.pendingHold {
			s.burst = p.threshold * s.pending
			s.pending, s.pendingAge = 0, 0
		} else if s.pendingAge >= burstHoldPolls {
			s.pending, s.pendingAge = 0, 0
		}
	}
	if both > s.pending {
		s.pending, s.pendingAge, s.pendingHold = both, 0, p.burstHold*excess
	}
}

// verdictScore is the end-of-stage verdict: the window test's score, and a
// burst whose second poll was the stage's last (no poll was left to hold
// it), counted in the metric's score. A burst that a poll since has not
// held is not: that poll fell back within the tolerance.
func (s *metricState) verdictScore(p *detectorParams) {
	s.verdict = s.windowScore(p)
	if s.pending > 0 && s.pendingAge == 0 {
		s.burst = max(s.burst, p.threshold*s.pending)
	}
	s.Score = min(scoreCap*p.threshold, max(s.Score, s.verdict, s.burst))
}

// burstGrowth is how much further than Burst times the baseline's largest
// pair the latest two polls must both be on the n-th poll that can decide
// a burst (n = 1 on the first poll after the warm-up, whose last poll is
// the pair's first; without a warm-up, on the second poll):
// 1 + BurstGrowth x ln(n). A stage that has watched n polls has given n
// chances to an excursion as large as the baseline's largest, so the
// bound grows with them (a multiple-testing correction for a tail that
// falls off exponentially, where the largest of n grows as ln n): 1 on
// the first poll that can decide, 1.49 on the second, 2.74 on the
// twelfth at 0.7. n counts polls with data, as the warm-up does: a
// missed poll gave no excursion a chance.
func (s *metricState) burstGrowth(p *detectorParams) float64 {
	n := int(s.age) - max(p.warm, 1)
	if p.burstGrowth <= 0 || n <= 1 {
		return 1
	}
	if n < len(smallLogs) {
		return 1 + p.burstGrowth*smallLogs[n]
	}
	return 1 + p.burstGrowth*math.Log(float64(n))
}

// repeatPolls is how many polls since the apply must each pass the repeat's
// bounds: one more than a burst's two, anywhere in the host's watch.
const repeatPolls = 3

// repeats keeps the repeatPolls largest excursions of the polls since the
// apply (after the warm-up), each the smaller of the poll's excess as
// observed and against the fleet over its bound, and scores the smallest
// of them once it is beyond (it holds for the rest of the host's watch):
// degraded when repeatPolls polls each went beyond everything one
// baseline poll showed. An outage that takes one poll in three or
// four (availability 20 points down, the rest at 100) makes no burst,
// moves no median, and its capped polls keep the CUSUM under its limit;
// it repeats. The bounds are the burst's with the baseline's largest
// single poll in place of its largest pair: Burst times it, growing with
// the polls watched, never less than the tolerance and BurstSpreads of
// AbsFloor (the spreads' floor is capped by this very bound: spreadFloor);
// against the fleet, where relOK, the baseline taken back by it
// and never less than the untouched hosts' spread at this poll. pre is
// the poll's excess taken back by the untouched hosts' level just before
// the change (NaN: the host did not drift with them), a second read of
// the comparison as observed, bounded by preBound.
func (s *metricState) repeats(p *detectorParams, own, rel, pre, growth float64, adj adjust) {
	if !((own > 0 || pre > 0) && rel > 0) {
		return
	}
	bound, relBound := s.bounds(p, s.single, s.relSingle, growth, adj)
	relBound = max(relBound, p.fleetZ*adj.spread)
	ownR := own / bound
	if pre > 0 {
		ownR = max(ownR, pre/s.preBound(p, s.relSingle, growth))
	}
	r := min(ownR, rel/relBound)
	k := repeatPolls - 1
	if r <= s.top[k] {
		return
	}
	s.top[k] = r
	for i := k; i > 0 && s.top[i] > s.top[i-1]; i-- {
		s.top[i], s.top[i-1] = s.top[i-1], s.top[i]
	}
}

// repeatScore is the repeats' score on the Threshold scale: the smallest
// of the repeatPolls largest excursions, once it is beyond its bounds
// (below, a stage's largest excursions would hold every host's score up
// for the rest of its watch), else 0.
func (s *metricState) repeatScore(p *detectorParams) float64 {
	if r := s.top[repeatPolls-1]; r > 1 {
		return p.threshold * r
	}
	return 0
}

// bounds are the bounds a poll's excess must pass, as observed and against
// the fleet, for the burst (ext, relExt: the baseline's largest pair as
// observed and taken back by the fleet) and the repeats (its largest
// single poll): Burst times ext, grown by growth, never less than the
// tolerance and the spreads' floor (spreadFloor); against the fleet, where relOK,
// the same of the baseline taken back by it and never less than
// FleetSpreads of the untouched hosts' spread at this poll (adj.spread),
// else the same bound as observed.
func (s *metricState) bounds(p *detectorParams, ext, relExt, growth float64, adj adjust) (bound, relBound float64) {
	bound = max(s.Tolerance, p.burst*ext*growth, spreadFloor(p, s.madSpread, s.single, growth))
	relBound = bound
	if s.relOK {
		relBound = max(s.preBound(p, relExt, growth), p.fleetZ*adj.spread)
	}
	return bound, relBound
}

// preBound is the bound of the baseline taken back by the fleet (relOK):
// Burst times relExt (its largest pair or single poll), grown by growth,
// never less than the tolerance and the spreads' floor of its MAD and
// single poll (spreadFloor). Against the
// fleet it is never less than the untouched hosts' spread at this poll
// either (bounds); a poll taken back by their level just before the
// change (a host that drifted with them) is bounded by it alone, as that
// level was fixed before the change.
func (s *metricState) preBound(p *detectorParams, relExt, growth float64) float64 {
	return max(s.Tolerance, p.burst*relExt*growth, spreadFloor(p, s.relMad, s.relSingle, growth))
}

// spreadFloor is the least the burst's and the repeats' bounds ask beside
// the baseline's largest pair or single poll: BurstSpreads MAD spreads,
// so that a baseline whose pairs happened to stay near the median does
// not make an ordinary excursion a burst, but never more than Burst times
// the largest excess a single baseline poll reached (grown as the pair's
// multiple is): a baseline whose spread is its own regular swing (a
// series that alternates between levels, a quantized one) reaches less
// than its spreads say in any one poll, and two polls beyond Burst times
// anything one poll of it showed are beyond the ordinary. The repeats'
// own bound is that multiple of the single poll already. It never goes
// under BurstSpreads of AbsFloor, the least spread the metric is said to
// have (an error count at 0 whose baseline showed a few fractions).
func spreadFloor(p *detectorParams, mad, single, growth float64) float64 {
	return min(p.burstZ*mad, max(p.burst*single*growth, p.burstZ*p.absFloor))
}

// smallLogs holds ln n for the polls of most stages, so that a tick does
// not compute a logarithm per host and metric.
var smallLogs = func() (t [64]float64) {
	for n := 1; n < len(t); n++ {
		t[n] = math.Log(float64(n))
	}
	return t
}()

// latest is the value of the latest poll in the ring.
func (s *metricState) latest(ring []float64) float64 {
	return ring[(int(s.ringPos)+len(ring)-1)%len(ring)]
}

// reference is how far the CUSUM and the window test move the host's own
// reference from its baseline median, as the excess it adds: -lift when
// the host's recent level is worse than its median (it was drifting before
// the change), else pre (it moved to the better side just before the
// change, and the untouched hosts with it).
func (s *metricState) reference() float64 {
	if s.lift > 0 {
		return -s.lift
	}
	return s.pre
}

// preTakeBack is x taken back by the untouched hosts' level just before
// the change (x*preMul + preAdd), for a host that drifted with them; NaN
// otherwise (preMul is NaN) or when x is.
func (s *metricState) preTakeBack(x float64) float64 {
	return x*float64(s.preMul) + float64(s.preAdd)
}

// relExcess is x's excess in the worse direction, x a poll taken back by
// the fleet's movement: over the median of the baseline taken back so
// too, where there is one (relOK), else over the baseline median.
func (s *metricState) relExcess(p *detectorParams, x float64) float64 {
	if s.relOK {
		return p.dir * (x - s.relMed)
	}
	return p.dir * (x - s.Baseline)
}

// sketchRank is the share of the ascending sketch's values below v, ties
// counting half: v's mid-rank in the baseline, read off its quantiles.
func sketchRank(sketch []float32, v float64) float64 {
	lo, hi := 0, len(sketch)
	for lo < hi { // first index with sketch[i] >= v
		m := (lo + hi) / 2
		if float64(sketch[m]) < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	eq := lo
	for eq < len(sketch) && float64(sketch[eq]) == v {
		eq++
	}
	return (float64(lo) + 0.5*float64(eq-lo)) / float64(len(sketch))
}

// scoreCap bounds a metric's score at this many thresholds: a host that is
// degraded counts as degraded, and one host far off cannot carry
// top_mean(hosts, share) over the threshold for hosts that are not.
const scoreCap = 1.01

// accumulate advances the CUSUM by one tick (not during the warm-up; a
// tick without data keeps it) and sets the metric's score, the largest of
// its kinds of evidence on the Threshold scale. It reports whether the
// metric is degraded.
func (s *metricState) accumulate(p *detectorParams, xring []float64) bool {
	if s.fresh && int(s.age) > p.warm {
		hi, lo := s.Tolerance+p.zCap*s.Stddev, -p.zCap*s.Stddev
		var sum float64
		for _, x := range xring[:s.ringN] {
			sum += min(max(x, lo), hi)
		}
		// Slots the window has not filled since the apply count as no
		// excess: the first poll weighs 1/Smoothing like every other.
		z := (sum/float64(len(xring)) - s.Tolerance) / s.Stddev
		s.cusum = max(0, s.cusum+z-p.allowance)
	}
	s.Score = min(scoreCap*p.threshold, max(p.threshold*s.cusum/s.limit, s.burst, s.verdict, s.repeatScore(p)))
	return s.Score > p.threshold
}

// windowScore is the end-of-stage rank test's score on the Threshold scale:
// Threshold times the smaller of the two tests' z over the z of the
// confidence, 0 when either sees no shift beyond the tolerance.
func (s *metricState) windowScore(p *detectorParams) float64 {
	if s.nw == 0 || s.nb == 0 {
		return 0
	}
	nw, nb := float64(s.nw), float64(s.nb)
	mu := nw * nb / 2
	sigma := math.Sqrt(nw * nb * (nw + nb + 1) / 12)
	z := min(s.uOwn*nb-mu-0.5, (s.uDid*nb-mu-0.5)/inflation(s.didR, nw, nb)) / sigma
	if z <= 0 {
		return 0
	}
	return p.threshold * z / p.zAlpha
}

// inBand reports whether the smoothed value is within the tolerance and
// Band spreads of the baseline (control-adjusted), with at least one value
// since the reset: a change smaller than the tolerance is no change.
func (s *metricState) inBand(p *detectorParams) bool {
	return s.fresh && s.ringN > 0 && math.Abs(s.Z) <= p.band+s.Tolerance/s.Stddev
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
	xring   []float64
	sketch  []float32
	scratch []float64
}

// NewDetector returns a detector for one metric, or an error if cfg is
// invalid.
func NewDetector(cfg DetectorConfig, m MetricConfig) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detector for metric %q: %w", m.Name, err)
	}
	return &Detector{p: newDetectorParams(cfg, m), ring: make([]float64, cfg.Smoothing), xring: make([]float64, cfg.Smoothing), sketch: make([]float32, sketchSize)}, nil
}

// SetBaseline sets the baseline from the pre-change samples (NaN skipped),
// and restarts smoothing, scores and the warm-up: the next Observe is the
// first poll after an apply.
func (d *Detector) SetBaseline(samples []float64) {
	d.scratch = d.st.setBaseline(&d.p, samples, d.scratch, d.sketch)
}

// Observe takes one tick's value (NaN = no data) without a control group
// and reports whether the metric is degraded.
func (d *Detector) Observe(v float64) bool {
	d.st.observe(&d.p, v, d.ring)
	d.st.HasControl, d.st.Control = false, 0
	d.st.verdict = 0
	d.st.judge(&d.p, d.ring, d.xring, d.sketch, d.sketch, identity, d.st.Baseline, d.st.Stddev)
	return d.st.accumulate(&d.p, d.xring)
}

// Verdict runs the end-of-stage rank test over every poll since the
// baseline (after the warm-up) and reports whether the metric is degraded
// with it counted.
func (d *Detector) Verdict() bool {
	d.st.verdictScore(&d.p)
	return d.st.Score > d.p.threshold
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
