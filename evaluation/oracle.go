package evaluation

import (
	"math"
	"slices"
)

// Oracle.
//
// A regression counts (must be caught) only when it is visible, judged by
// an oracle that no judge uses: it knows which polls the regression
// touches and by how much (for an injected effect, the amount added; for a
// labelled one, the observed excess over the baseline median), and calls
// the regression visible at the first affected poll where the mean effect
// over the affected polls so far, in the metric's worse direction,
//
//   - is at least the tolerance: 10% of the baseline median's distance from
//     the metric's bound (0 for most metrics, 100 for a success rate), and
//     at least the metric's unit where it has one (1 point of success
//     rate, 1 error), and
//   - stands out of what the host's baseline shows over as many polls: it
//     exceeds the largest mean of that many consecutive baseline polls,
//     minus the baseline median (a run of n polls is compared with runs of
//     n polls; n at most half the baseline).
//
// Where the source screened its labels itself (Nezha's signal_check), a
// labelled regression also needs the source to have seen that metric move
// in its worse direction.

// tolerance is the oracle's smallest effect that matters for a metric whose
// baseline median is med.
func tolerance(m Metric, med float64) float64 {
	return max(0.1*math.Abs(med-m.Bound), m.Unit)
}

// visibleAt returns the first monitored poll index (0-based) at which the
// effects eff (one per monitored poll, NaN where the poll is not
// affected) on a metric with this baseline are visible, or -1.
func visibleAt(m Metric, baseline []float64, eff []float64) int {
	clean := make([]float64, 0, len(baseline))
	for _, x := range baseline {
		if !math.IsNaN(x) {
			clean = append(clean, x)
		}
	}
	if len(clean) < 6 {
		return -1
	}
	sorted := slices.Clone(clean)
	slices.Sort(sorted)
	med := medianSorted(sorted)
	tol := tolerance(m, med)
	var sum float64
	n := 0
	for i, e := range eff {
		if math.IsNaN(e) {
			continue
		}
		sum += e
		n++
		mean := sum / float64(n)
		if mean >= tol && mean > runExcess(baseline, min(n, len(baseline)/2), m.Worse, med) {
			return i
		}
	}
	return -1
}

// runExcess is the largest mean of n consecutive values of xs (runs holding
// a NaN skipped) beyond med in direction worse, or +Inf when xs holds no
// such run.
func runExcess(xs []float64, n int, worse, med float64) float64 {
	best := math.Inf(-1)
	for i := 0; i+n <= len(xs); i++ {
		var sum float64
		ok := true
		for _, x := range xs[i : i+n] {
			if math.IsNaN(x) {
				ok = false
				break
			}
			sum += x
		}
		if ok {
			best = max(best, worse*(sum/float64(n)-med))
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

// oracle sets c.VisibleAt from the case's effects (injected) or from the
// labelled polls of labelled host h (when lb is not nil).
func (c *Case) oracle(lb *Label, labelledHost int) {
	v := c.Materialize()
	best := -1
	consider := func(h, m, from, to int, injected *effect) {
		// The baseline before the stage in which the effect starts.
		s := 0
		for s+1 < len(c.Stages) && c.StageStart(s+1) <= from {
			s++
		}
		base := v.BaselineOf(h, m, s)
		mt := c.src.Metrics[c.metrics[m]]
		eff := make([]float64, c.Polls())
		for i := range eff {
			eff[i] = math.NaN()
		}
		clean := slices.DeleteFunc(slices.Clone(base), math.IsNaN)
		if len(clean) == 0 {
			return
		}
		slices.Sort(clean)
		med := medianSorted(clean)
		for i := max(from, 0); i < min(to, len(eff)); i++ {
			x := v.Value(h, m, i)
			if math.IsNaN(x) {
				continue
			}
			if injected != nil {
				raw := c.src.Hosts[c.hosts[h]].Values[c.metrics[m]][c.At+i]
				eff[i] = mt.Worse * (x - raw)
			} else {
				eff[i] = mt.Worse * (x - med)
			}
		}
		if at := visibleAt(mt, base, eff); at >= 0 && (best < 0 || at < best) {
			best = at
		}
	}
	if lb != nil {
		for m := range c.metrics {
			if lb.Shifted != nil && !lb.Shifted[c.metrics[m]] {
				continue
			}
			consider(labelledHost, m, lb.From-c.At, lb.To-c.At, nil)
		}
	}
	for i := range c.effects {
		e := &c.effects[i]
		consider(e.Host, e.Metric, e.From, e.To, e)
	}
	c.VisibleAt = best + 1
}
