package evaluation

import (
	"math"
	"slices"
)

// Oracle.
//
// A regression counts (must be caught) only when it is visible, judged by
// an oracle that no judge uses. It knows what no judge knows: which polls
// the regression touches (an injected effect's polls, a label's span). It
// calls the regression visible at the first affected poll (the second,
// when it touches more than one: one poll of several is a spike, not yet
// a change) where the typical excess of the affected polls so far (their median, taken on the
// better side for an even count, of the observed value's excess over the
// baseline median in the metric's worse direction)
//
//   - is at least the tolerance: 10% of the baseline median's distance from
//     the metric's bound (0 for most metrics, 100 for a success rate), and
//     at least the metric's unit where it has one (1 point of success
//     rate, 1 error), and
//   - stands out of what the host's baseline shows over as many polls: it
//     is more than StandOut (2) times the largest such typical excess of
//     any run of as many consecutive baseline polls (n at most half the
//     baseline).
//
// StandOut is calibrated on the data, not on any judge: applied to every
// run of the short no-change windows, as if their excursions were effects,
// an oracle with StandOut 1 calls 3-30% of them visible, with 2 1-3.5%
// (TestOracleOnNoChange prints the figures).
//
// Where the source screened its labels itself (Nezha's signal_check), a
// labelled regression also needs the source to have seen that metric move
// in its worse direction.

// StandOut is how many times the baseline's largest excursion over as
// many polls an effect must exceed to be visible.
const StandOut = 2

// tolerance is the oracle's smallest effect that matters for a metric whose
// baseline median is med.
func tolerance(m Metric, med float64) float64 {
	return max(0.1*math.Abs(med-m.Bound), m.Unit)
}

// typical is the median of the excesses xs, on the smaller side for an
// even count (NaN for none); it sorts xs.
func typical(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	return xs[(len(xs)-1)/2]
}

// visibleAt returns the first monitored poll index (0-based) at which the
// excesses ex (one per monitored poll, NaN where the poll is not affected
// or has no value) on a metric with this baseline are visible, or -1.
func visibleAt(m Metric, baseline []float64, ex []float64) int {
	clean := slices.DeleteFunc(slices.Clone(baseline), math.IsNaN)
	if len(clean) < 6 {
		return -1
	}
	slices.Sort(clean)
	med := medianSorted(clean)
	tol := tolerance(m, med)
	affected := 0
	for _, e := range ex {
		if !math.IsNaN(e) {
			affected++
		}
	}
	var seen []float64
	for i, e := range ex {
		if math.IsNaN(e) {
			continue
		}
		seen = append(seen, e)
		if len(seen) < min(2, affected) {
			continue // one poll of several is a spike, not yet a change
		}
		t := typical(slices.Clone(seen))
		if t >= tol && t > StandOut*runExcess(baseline, min(len(seen), len(baseline)/2), m.Worse, med) {
			return i
		}
	}
	return -1
}

// runExcess is the largest typical excess over med, in direction worse, of
// n consecutive values of xs (runs holding a NaN skipped), or +Inf when xs
// holds no such run.
func runExcess(xs []float64, n int, worse, med float64) float64 {
	best := math.Inf(-1)
	run := make([]float64, n)
	for i := 0; i+n <= len(xs); i++ {
		ok := true
		for j, x := range xs[i : i+n] {
			if math.IsNaN(x) {
				ok = false
				break
			}
			run[j] = worse * (x - med)
		}
		if ok {
			best = max(best, typical(run))
		}
	}
	if math.IsInf(best, -1) {
		return math.Inf(1)
	}
	return best
}

// medianSorted is the median of sorted, non-empty xs.
func medianSorted(xs []float64) float64 {
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// oracle sets c.VisibleAt from the polls the case's effects touch
// (injected) or from the labelled polls of labelled host h (when lb is not
// nil), judging the observed values.
func (c *Case) oracle(lb *Label, labelledHost int) {
	v := c.Materialize()
	best := -1
	consider := func(h, m, from, to int) {
		// The baseline before the stage in which the effect starts.
		base := v.BaselineOf(h, m, c.stageOf(from))
		clean := slices.DeleteFunc(slices.Clone(base), math.IsNaN)
		if len(clean) == 0 {
			return
		}
		slices.Sort(clean)
		med := medianSorted(clean)
		mt := c.src.Metrics[c.metrics[m]]
		ex := make([]float64, c.Polls())
		for i := range ex {
			ex[i] = math.NaN()
			if i >= from && i < to {
				ex[i] = mt.Worse * (v.Value(h, m, i) - med)
			}
		}
		if at := visibleAt(mt, base, ex); at >= 0 && (best < 0 || at < best) {
			best = at
		}
	}
	if lb != nil {
		for m := range c.metrics {
			if lb.Shifted != nil && !lb.Shifted[c.metrics[m]] {
				continue
			}
			consider(labelledHost, m, lb.From-c.At, lb.To-c.At)
		}
	}
	for _, e := range c.effects {
		consider(e.Host, e.Metric, e.From, e.To)
	}
	c.VisibleAt = best + 1
}
