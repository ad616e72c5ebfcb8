package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file lays out report.html's charts: one host's metric over its
// baseline window and the run, against its baseline band and the untouched
// hosts' median, with the apply, fire, revert and verification marked.
// Geometry only; the markup is in the page template, so every label is
// escaped by html/template.

// chart is one laid-out plot, in pixels.
type chart struct {
	W, H   float64
	Title  string
	Sub    string
	Bad    bool
	Left   float64 // plot area
	Right  float64
	Top    float64
	Bottom float64
	XTicks []tick
	YTicks []tick
	XLabel string
	YLabel string
	// BaselineWindow tints the baseline window (nil when unknown).
	BaselineWindow *box
	// Band is the baseline band (baseline ± band spreads), drawn over the
	// baseline window and the monitoring window.
	Band      *box
	BaselineY float64
	// Host are the host's line segments (a gap in the data breaks the
	// line); Dots its points when there are few.
	Host []string
	Dots []dot
	// Control is the untouched hosts' median, ControlLabel its legend.
	Control      []string
	ControlLabel string
	Marks        []mark
	NoData       *box
	// Clipped says how much of the baseline window is shown, when not
	// all of it ("" when all).
	Clipped string
}

// preWindow is how much of the time before the apply a chart shows: twice
// the time after it, at least 12 samples, so that before and after both
// read; the whole baseline window when it is shorter.
func preWindow(after time.Duration, pts []Point) time.Duration {
	step := time.Duration(0)
	if len(pts) >= 2 {
		gaps := make([]time.Duration, 0, len(pts)-1)
		for i := 1; i < len(pts); i++ {
			gaps = append(gaps, pts[i].T.Sub(pts[i-1].T))
		}
		slices.Sort(gaps)
		step = gaps[len(gaps)/2]
	}
	return max(2*after, 12*step)
}

type tick struct {
	Pos   float64
	Label string
}

type box struct{ X, Y, W, H float64 }

type dot struct{ X, Y float64 }

// mark is a vertical line at a moment (apply, fire, revert, verify).
type mark struct {
	X      float64
	Kind   string
	Label  string
	LabelY float64
	// End puts the label left of the line (near the right edge).
	End bool
}

// chartSize is a chart's outer size and the room its axes take; long
// charts name the policy in their fire marks.
type chartSize struct {
	w, h, left, right, top, bottom float64
	long                           bool
}

var (
	bigChart   = chartSize{w: 1080, h: 300, left: 64, right: 24, top: 12, bottom: 40, long: true}
	smallChart = chartSize{w: 340, h: 210, left: 56, right: 22, top: 12, bottom: 40}
)

// hostChart lays out metric name of host h.
func hostChart(r *Report, h *HostReport, name string, sz chartSize) (chart, bool) {
	pts := hostPoints(r, h.Name, name)
	f := r.finding(h, name)
	m := h.Metrics[name]
	if len(pts) < 2 && f.Class != ClassNoData {
		return chart{}, false
	}
	c := chart{W: sz.w, H: sz.h, Left: sz.left, Right: sz.w - sz.right, Top: sz.top, Bottom: sz.h - sz.bottom,
		Title: fmt.Sprintf("%s · %s", h.Name, name), Bad: f.Moved() || f.Class == ClassNoData,
		XLabel: "time (UTC)", YLabel: name}
	c.Sub = fmt.Sprintf("%s · %s", f.Class, f.Change())
	if f.Class != ClassNoData {
		c.Sub += " (" + f.Effect() + ")"
	}
	wave := r.wave(h.Wave)

	// Time range: the host's baseline window (or its first point) to the
	// end of the run.
	var t0, t1 time.Time
	widen := func(t time.Time) {
		if t0.IsZero() || t.Before(t0) {
			t0 = t
		}
		if t.After(t1) {
			t1 = t
		}
	}
	for _, p := range pts {
		widen(p.T)
	}
	if wave != nil {
		for _, t := range []*time.Time{wave.BaselineFrom, wave.ApplyStartedAt} {
			if t != nil {
				widen(*t)
			}
		}
	}
	widen(r.FinishedAt)
	if !t1.After(t0) {
		return chart{}, false
	}
	// A long baseline window before a short run would squeeze the run
	// into the chart's last pixels: show the end of the window only
	// (preWindow), and say so.
	if wave != nil && wave.ApplyStartedAt != nil {
		apply := *wave.ApplyStartedAt
		if from := apply.Add(-preWindow(t1.Sub(apply), pts)); from.After(t0) {
			t0 = from
			pts = slices.DeleteFunc(slices.Clone(pts), func(p Point) bool { return p.T.Before(t0) })
			if wave.BaselineFrom != nil {
				c.Clipped = fmt.Sprintf("baseline window %s–%s, drawn from %s", wave.BaselineFrom.UTC().Format("15:04"),
					apply.UTC().Format("15:04"), t0.UTC().Format("15:04:05"))
			}
		}
	}
	control, nControl := controlMedian(r, name, h.Name, t0, t1)

	// Value range: the host, the controls and the band (the tolerance and
	// Band spreads either side of the baseline, as verification takes it).
	band := r.detection().Band
	if band <= 0 {
		band = presetBand
	}
	half := band*m.Stddev + m.Tolerance
	lo, hi := m.Baseline-half, m.Baseline+half
	for _, p := range slices.Concat(pts, control) {
		lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
	}
	if hi == lo {
		d := math.Max(math.Abs(hi)*0.1, 1e-9)
		lo, hi = lo-d, hi+d
	}
	c.YTicks, lo, hi = valueTicks(lo, hi, c.Top, c.Bottom, 5)
	c.XTicks = timeTicks(t0, t1, c.Left, c.Right, int((c.Right-c.Left)/90))
	x := func(t time.Time) float64 {
		span := t1.Sub(t0).Seconds()
		if span <= 0 {
			return c.Left
		}
		return c.Left + (c.Right-c.Left)*t.Sub(t0).Seconds()/span
	}
	y := func(v float64) float64 { return c.Bottom - (c.Bottom-c.Top)*(v-lo)/(hi-lo) }

	if wave != nil && wave.BaselineFrom != nil && wave.ApplyStartedAt != nil {
		x0, x1 := math.Max(x(*wave.BaselineFrom), c.Left), x(*wave.ApplyStartedAt)
		c.BaselineWindow = &box{X: x0, Y: c.Top, W: x1 - x0, H: c.Bottom - c.Top}
	}
	bt, bb := y(m.Baseline+half), y(m.Baseline-half)
	c.Band = &box{X: c.Left, Y: bt, W: c.Right - c.Left, H: math.Max(bb-bt, 1)}
	c.BaselineY = y(m.Baseline)
	if len(pts) > 0 {
		c.Host = polylines(pts, x, y)
	}
	if len(pts) <= 12 {
		for _, p := range pts {
			c.Dots = append(c.Dots, dot{x(p.T), y(p.V)})
		}
	}
	if len(control) >= 2 {
		c.Control = polylines(control, x, y)
		c.ControlLabel = fmt.Sprintf("dashed: controls, median of %d untouched hosts", nControl)
	}
	if f.Class == ClassNoData {
		from := c.Left
		if since := noDataSince(r, h, name); !since.IsZero() {
			from = x(since)
		}
		c.NoData = &box{X: from, Y: c.Top, W: c.Right - from, H: c.Bottom - c.Top}
	}
	c.Marks = hostMarks(r, h, t0, t1, x, c.Right, sz.long)
	return c, true
}

// noDataSince is when a host's metric last had a value, or its wave's
// apply started when it had none after that (zero when unknown).
func noDataSince(r *Report, h *HostReport, name string) time.Time {
	var since time.Time
	if w := r.wave(h.Wave); w != nil && w.ApplyStartedAt != nil {
		since = *w.ApplyStartedAt
	}
	if pts := hostPoints(r, h.Name, name); len(pts) > 0 && pts[len(pts)-1].T.After(since) {
		since = pts[len(pts)-1].T
	}
	return since
}

// hostPoints is the host's series for a metric, baseline window included,
// in time order.
func hostPoints(r *Report, host, name string) []Point {
	pts := slices.Concat(r.BaselineSeries[host][name], r.Series[host][name])
	pts = slices.DeleteFunc(pts, func(p Point) bool { return math.IsNaN(p.V) || math.IsInf(p.V, 0) })
	slices.SortStableFunc(pts, func(a, b Point) int { return a.T.Compare(b.T) })
	return slices.CompactFunc(pts, func(a, b Point) bool { return a.T.Equal(b.T) })
}

// controlMedian is, at each moment in [t0, t1], the median of the metric
// over the other hosts than except untouched at that moment (their wave
// had not started), and how many hosts contributed.
func controlMedian(r *Report, name, except string, t0, t1 time.Time) ([]Point, int) {
	started := map[string]time.Time{}
	for _, w := range r.Waves {
		if w.ApplyStartedAt != nil {
			for _, h := range w.Hosts {
				started[h] = *w.ApplyStartedAt
			}
		}
	}
	byTime := map[int64][]float64{}
	hosts := 0
	for _, h := range r.Hosts {
		if h.Name == except {
			continue
		}
		used := false
		for _, p := range hostPoints(r, h.Name, name) {
			if s, ok := started[h.Name]; (ok && !p.T.Before(s)) || p.T.Before(t0) || p.T.After(t1) {
				continue
			}
			byTime[p.T.UnixMilli()] = append(byTime[p.T.UnixMilli()], p.V)
			used = true
		}
		if used {
			hosts++
		}
	}
	out := make([]Point, 0, len(byTime))
	for ms, vs := range byTime {
		slices.Sort(vs)
		med := vs[len(vs)/2]
		if len(vs)%2 == 0 {
			med = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
		}
		out = append(out, Point{T: time.UnixMilli(ms).UTC(), V: med})
	}
	slices.SortFunc(out, func(a, b Point) int { return a.T.Compare(b.T) })
	return out, hosts
}

// polylines turns points into polyline coordinate lists, broken where a
// gap is longer than 2.5 typical steps (missing data is not drawn as a
// straight line).
func polylines(pts []Point, x func(time.Time) float64, y func(float64) float64) []string {
	steps := make([]time.Duration, 0, len(pts))
	for i := 1; i < len(pts); i++ {
		steps = append(steps, pts[i].T.Sub(pts[i-1].T))
	}
	slices.Sort(steps)
	gap := time.Duration(math.MaxInt64)
	if len(steps) > 0 && steps[len(steps)/2] > 0 {
		gap = steps[len(steps)/2] * 5 / 2
	}
	var out []string
	var b strings.Builder
	for i, p := range pts {
		if i > 0 && p.T.Sub(pts[i-1].T) > gap {
			out = append(out, strings.TrimSpace(b.String()))
			b.Reset()
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", x(p.T), y(p.V))
	}
	return append(out, strings.TrimSpace(b.String()))
}

// hostMarks marks the moments that concern a host: its wave's apply, the
// fired decisions that reverted it or ended the run, its revert and the
// verification. Labels at the same place are stacked.
func hostMarks(r *Report, h *HostReport, t0, t1 time.Time, x func(time.Time) float64, right float64, long bool) []mark {
	var ms []mark
	add := func(t time.Time, kind, label string) {
		if t.Before(t0) || t.After(t1) {
			return
		}
		ms = append(ms, mark{X: x(t), Kind: kind, Label: label})
	}
	if w := r.wave(h.Wave); w != nil && w.ApplyStartedAt != nil {
		label := "apply"
		if long {
			label += " " + w.Name
		}
		add(*w.ApplyStartedAt, MomentApply, label)
		if w.ApplyEndedAt != nil && w.ApplyEndedAt.Sub(*w.ApplyStartedAt) > 0 {
			add(*w.ApplyEndedAt, MomentApply, "applied")
		}
	}
	for _, d := range r.Decisions {
		if d.Fired && (d.Host == "" || d.Host == h.Name) {
			label := "fire"
			if long {
				label += ": " + d.Policy
			}
			add(d.At, MomentFire, label)
		}
	}
	for _, rb := range r.rollbacks() {
		if !slices.Contains(rb.Hosts, h.Name) {
			continue
		}
		add(rb.StartedAt, MomentRevert, "revert")
		switch {
		case rb.Verified:
			add(rb.FinishedAt, MomentVerify, "verified")
		case rb.VerifyStartedAt != nil:
			add(rb.FinishedAt, MomentVerify, "not verified")
		}
	}
	slices.SortStableFunc(ms, func(a, b mark) int { return cmp.Compare(a.X, b.X) })
	// Greedy rows: a label goes on the first row where it runs into no
	// other label (about 6.5 px per character); near the right edge it
	// goes left of its line.
	type span struct{ from, to float64 }
	var rows [][]span
	for i := range ms {
		w := 6.5*float64(len(ms[i].Label)) + 6
		sp := span{ms[i].X, ms[i].X + w}
		if sp.to > right {
			ms[i].End = true
			sp = span{ms[i].X - w, ms[i].X}
		}
		row := 0
		for ; row < len(rows); row++ {
			if !slices.ContainsFunc(rows[row], func(o span) bool { return sp.from < o.to && o.from < sp.to }) {
				break
			}
		}
		if row == len(rows) {
			rows = append(rows, nil)
		}
		rows[row] = append(rows[row], sp)
		ms[i].LabelY = float64(12 + 13*row)
	}
	return ms
}

// wave returns the named wave's report (nil when unknown).
func (r *Report) wave(name string) *WaveReport {
	for i := range r.Waves {
		if r.Waves[i].Name == name {
			return &r.Waves[i]
		}
	}
	return nil
}

// valueTicks picks about n round ticks covering [lo, hi] and returns them
// with the widened range they span.
func valueTicks(lo, hi, top, bottom float64, n int) ([]tick, float64, float64) {
	step := niceStep((hi - lo) / float64(n))
	first, last := math.Floor(lo/step+1e-9), math.Ceil(hi/step-1e-9)
	count := int(last - first)
	if count < 1 {
		count = 1
	}
	decimals := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	ts := make([]tick, 0, count+1)
	for i := 0; i <= count; i++ {
		v := (first + float64(i)) * step
		label := strconv.FormatFloat(v, 'f', decimals, 64)
		if math.Abs(v) >= 1e5 {
			label = strconv.FormatFloat(v, 'g', 3, 64)
		}
		if strings.Trim(label, "-0.") == "" {
			label = "0"
		}
		ts = append(ts, tick{Pos: bottom - (bottom-top)*float64(i)/float64(count), Label: label})
	}
	return ts, first * step, (first + float64(count)) * step
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// timeSteps are the round time steps an axis may use.
var timeSteps = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// timeTicks puts at most n ticks on round times in [t0, t1], labelled
// HH:MM (HH:MM:SS under a minute).
func timeTicks(t0, t1 time.Time, left, right float64, n int) []tick {
	span := t1.Sub(t0)
	if span <= 0 || n < 2 {
		return []tick{{Pos: left, Label: t0.UTC().Format("15:04:05")}}
	}
	step := timeSteps[len(timeSteps)-1]
	for _, s := range timeSteps {
		if span/s <= time.Duration(n) {
			step = s
			break
		}
	}
	layout := "15:04"
	if step < time.Minute {
		layout = "15:04:05"
	}
	var ts []tick
	for t := t0.UTC().Truncate(step); !t.After(t1); t = t.Add(step) {
		if t.Before(t0) {
			continue
		}
		pos := left + (right-left)*t.Sub(t0).Seconds()/span.Seconds()
		ts = append(ts, tick{Pos: pos, Label: t.Format(layout)})
	}
	return ts
}
