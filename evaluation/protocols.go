package evaluation

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// The protocols: fixed rollout shapes, at each data set's own poll
// interval, that every judge is run through.
const (
	// ShortCanary: one host, 2 polls of monitoring, nothing untouched to
	// compare with (a 10-minute canary on 5-minute metrics).
	ShortCanary = "short canary"
	// LongCanary: one host, 12 polls, nothing untouched to compare with.
	LongCanary = "long canary"
	// FleetWaves: canaries, then two waves, with the untouched hosts as
	// controls (JumpStarter: 2 canaries and 13 other services; Nezha: one
	// pod and the system's other pods).
	FleetWaves = "fleet, waves"
	// FleetMove: the whole fleet moves at the change, canaries and
	// controls alike (JumpStarter's fleet segments, and a shift injected
	// into every host): must not roll back.
	FleetMove = "fleet-wide move"
	// ControlsImprove: the untouched hosts get better while the canary
	// holds its own baseline: must not roll back.
	ControlsImprove = "controls improve"
	// ColdStart: a benign restart, the first polls after each stage's
	// apply elevated (cold caches, JIT, connection pools): must not roll
	// back.
	ColdStart = "cold start"
)

// Protocols in report order.
var Protocols = []string{ShortCanary, LongCanary, FleetWaves, FleetMove, ControlsImprove, ColdStart}

// Stage is one monitored stage of a rollout: the canary or a wave.
type Stage struct {
	Name string
	// Hosts are indices into the case's hosts.
	Hosts []int
	// Polls is the stage's monitoring period in polls.
	Polls int
}

// effect changes one host's metric from monitored poll From (0-based,
// counted over every stage) to To (exclusive): the value moves away from
// the metric's bound by Mul (1 + 0.1 k for k tolerances, in the worse
// direction) and by Add units in the worse direction. Ramp > 0 reaches
// full strength after Ramp polls, linearly. Strength, when set, gives the
// strength per poll from From (a cold start's decay) instead.
type effect struct {
	Host, Metric int
	From, To     int
	Mul, Add     float64
	Ramp         int
	Strength     []float64
}

// Case is one rollout with a known outcome.
type Case struct {
	// ID names the case for a person debugging it.
	ID       string
	Dataset  string
	Protocol string
	Half     Half
	// Kind says what happens: "no change", "step 2×tol", "labelled", ...
	Kind string
	// Regression is true when the change is bad: rolling back is right.
	Regression bool
	// VisibleAt is the monitored poll (1-based, over every stage) at
	// which the oracle first sees the regression; 0 when it never does
	// (the case is then not counted: nobody must catch it).
	VisibleAt int
	// Interval is the poll interval.
	Interval time.Duration
	// Baseline is the number of polls of baseline before each stage.
	Baseline int
	// Judged, when not 0, is how many of the Baseline polls the judges
	// read as the baseline: the last ones (TestBaselineLength). The
	// oracle saw every one when the case was built.
	Judged int
	Stages []Stage

	src     *Source
	metrics []int // indices into src.Metrics
	hosts   []int // indices into src.Hosts
	// At is the source poll of the first monitored poll.
	At      int
	effects []effect
	// mask marks the source polls whose values are left out of
	// baselines (other faults, for Nezha): read as NaN. nil: none.
	mask []bool
}

// Metrics returns the case's watched metrics.
func (c *Case) Metrics() []Metric {
	out := make([]Metric, len(c.metrics))
	for i, m := range c.metrics {
		out[i] = c.src.Metrics[m]
	}
	return out
}

// HostNames returns the case's hosts' names.
func (c *Case) HostNames() []string {
	out := make([]string, len(c.hosts))
	for i, h := range c.hosts {
		out[i] = c.src.Hosts[h].Name
	}
	return out
}

// Polls is the number of monitored polls over every stage.
func (c *Case) Polls() int {
	n := 0
	for _, s := range c.Stages {
		n += s.Polls
	}
	return n
}

// StageStart is the monitored poll index (0-based) at which stage s begins.
func (c *Case) StageStart(s int) int {
	n := 0
	for _, st := range c.Stages[:s] {
		n += st.Polls
	}
	return n
}

// View is a case's values, materialised: every host's every metric from
// Baseline polls before the change to the end of the last stage.
type View struct {
	*Case
	// series[h][m][i + Baseline] is monitored poll index i (0-based;
	// negative indices are the baseline before the first stage).
	series [][][]float64
	// delays[s] is how many polls stage s starts late (nil: none; see
	// Staged).
	delays []int
}

// Start is the monitored poll (0-based) at which stage s begins in the
// view: its place in the case, delayed by the holds before it.
func (v *View) Start(s int) int {
	if v.delays == nil {
		return v.StageStart(s)
	}
	return v.StageStart(s) + v.delays[s]
}

// Materialize computes the case's values, with its effects applied.
func (c *Case) Materialize() *View { return c.materialize(c.effects, 0) }

// Staged computes the case's values as a rollout whose stages start late
// reads them: stage s starts delays[s] polls after its place in the case
// (the stages before it were held past their end by a gap in the
// metrics), each effect moves with the start of its stage, the effects of
// the stages after last are left out (their hosts are not changed yet),
// and the values run extra polls past the case's stages. The recorded
// data do not move: what the hosts read is fixed in time, and a change's
// effects follow its apply.
func (c *Case) Staged(delays []int, last, extra int) *View {
	var effects []effect
	for _, e := range c.effects {
		s := c.stageOf(e.From)
		if s > last {
			continue
		}
		e.From += delays[s]
		e.To += delays[s]
		effects = append(effects, e)
	}
	v := c.materialize(effects, extra)
	v.delays = slices.Clone(delays)
	return v
}

// stageOf is the stage monitored poll i (0-based) falls in: the first
// before the change, the last after every stage.
func (c *Case) stageOf(i int) int {
	for s := range c.Stages[1:] {
		if i < c.StageStart(s+1) {
			return s
		}
	}
	return len(c.Stages) - 1
}

// materialize computes the case's values with effects, over extra polls
// past the case's stages.
func (c *Case) materialize(effects []effect, extra int) *View {
	v := &View{Case: c}
	n := c.Baseline + c.Polls() + extra
	v.series = make([][][]float64, len(c.hosts))
	for h := range c.hosts {
		v.series[h] = make([][]float64, len(c.metrics))
		for m := range c.metrics {
			out := make([]float64, n)
			for j := range out {
				out[j] = c.raw(h, m, j-c.Baseline)
			}
			v.series[h][m] = out
		}
	}
	for _, e := range effects {
		mt := c.src.Metrics[c.metrics[e.Metric]]
		s := v.series[e.Host][e.Metric]
		for i := max(e.From, -c.Baseline); i < e.To && i+c.Baseline < len(s); i++ {
			x := s[i+c.Baseline]
			if math.IsNaN(x) {
				continue
			}
			s[i+c.Baseline] = e.apply(x, i, mt)
		}
	}
	return v
}

// raw is host h's metric m at monitored poll i (0-based) in the source,
// before any effect: NaN where the source has none.
func (c *Case) raw(h, m, i int) float64 {
	sm := c.metrics[m]
	raw := c.src.Hosts[c.hosts[h]].Values[sm]
	p := c.At + i
	// An application-wide metric is the canary's: the untouched hosts do
	// not have it (it would be their own series).
	if p < 0 || p >= len(raw) || c.masked(p) || c.src.Metrics[sm].App && h != 0 {
		return math.NaN()
	}
	return raw[p]
}

// masked reports whether source poll p is left out (only before the
// change: what happens after it is what is judged).
func (c *Case) masked(p int) bool {
	return p < c.At && c.mask != nil && c.mask[p]
}

// apply returns x with the effect at monitored poll i.
func (e effect) apply(x float64, i int, m Metric) float64 {
	s := 1.0
	switch {
	case e.Strength != nil:
		if i-e.From >= len(e.Strength) {
			return x
		}
		s = e.Strength[i-e.From]
	case e.Ramp > 0:
		s = min(1, float64(i-e.From+1)/float64(e.Ramp))
	}
	mul := 1 + s*(e.Mul-1)
	d := x - m.Bound
	if m.Worse*d < 0 {
		// The worse direction points toward the bound (a request rate
		// falling to 0): 1 + f away from it is 1 - f toward it.
		mul = max(2-mul, 0)
	}
	return m.Bound + d*mul + s*e.Add*m.Worse
}

// BaselineOf returns host h's baseline for metric m before stage s: the
// last JudgedBaseline polls before it.
func (v *View) BaselineOf(h, m, s int) []float64 {
	to := v.Start(s) + v.Baseline
	return v.series[h][m][to-v.JudgedBaseline() : to]
}

// JudgedBaseline is how many polls of baseline the judges read.
func (c *Case) JudgedBaseline() int {
	if c.Judged > 0 && c.Judged < c.Baseline {
		return c.Judged
	}
	return c.Baseline
}

// Extent is the number of monitored polls the view holds values of (the
// case's stages, and any extra polls it was built with).
func (v *View) Extent() int { return len(v.series[0][0]) - v.Baseline }

// Window returns host h's values of metric m during stage s.
func (v *View) Window(h, m, s int) []float64 {
	from := v.Start(s) + v.Baseline
	return v.series[h][m][from : from+v.Stages[s].Polls]
}

// Value returns host h's metric m at monitored poll index i (0-based).
func (v *View) Value(h, m, i int) float64 { return v.series[h][m][i+v.Baseline] }

// shape is how the protocols are laid out at a source's poll interval.
type shape struct {
	// baseline is the baseline window in polls: what a user would
	// configure (4 h at 5-minute polls, 30 minutes at 1-minute polls).
	baseline int
	// short, long and stage are the monitoring periods in polls: the
	// short and long canaries, and each stage of a fleet rollout.
	short, long, stage int
	// canaries is the canary count of a fleet rollout.
	canaries int
	// guard keeps no-change cases this many polls away from any label.
	guard int
	// stride is the distance in polls between the changes of two
	// canary cases of one host (the more hosts, the longer), fleetStride
	// between two fleet rollouts.
	stride, fleetStride int
	// coldStart is a restart's effect on the polls after the apply:
	// factor coldMul on the first, then coldStart[i] of that excess.
	coldMul   float64
	coldStart []float64
	// offsets are the change times tried around a labelled regression's
	// first poll, per protocol (negative: the change comes before it).
	offsets map[string][]int
}

func shapeOf(src *Source) shape {
	spread := max(1, len(src.Hosts)/5)
	if src.Interval >= 5*time.Minute {
		return shape{
			baseline: 48, short: 2, long: 12, stage: 12, canaries: 2, guard: 12, stride: 12 * spread, fleetStride: 6,
			// a 2-minute burst of 2.5x latency averaged into a 5-minute poll
			coldMul: 1.6, coldStart: []float64{1},
			offsets: map[string][]int{ShortCanary: {-1, 0}, LongCanary: {-6, -3, 0, 3}, FleetWaves: {-6, -3, 0}},
		}
	}
	return shape{
		baseline: 30, short: 2, long: 12, stage: 10, canaries: 1, guard: 5, stride: 5 * spread, fleetStride: 5,
		coldMul: 2, coldStart: []float64{1, 0.4},
		offsets: map[string][]int{ShortCanary: {0}, LongCanary: {-3, 0}, FleetWaves: {-3, 0}},
	}
}

// Steps are the injected regressions' sizes, in tolerances (10% of the
// level, or the metric's unit at a bound): +20%, +50%, x2 in the metric's
// worse direction.
var Steps = []int{2, 5, 10}

// stepKind names an injected step of k tolerances.
func stepKind(k int) string { return fmt.Sprintf("step %d×tol", k) }

// RampKind names the injected ramp: from the change's last third to 10
// tolerances at the end of the stage.
const RampKind = "late ramp"

// builder accumulates the cases of one source.
type builder struct {
	src   *Source
	sh    shape
	cases []*Case
	// rot rotates the injected metric over the cases.
	rot int
	// masked is the source's mask (see mask), once computed.
	masked []bool
}

// mask returns the polls that baselines leave out. Nezha's faults come
// every few minutes in the first hours: like the source's own screening,
// baselines leave out the polls of the other faults and disturbances (and
// 2 polls after each), on every host, since a fault travels along calls.
func (b *builder) mask() []bool {
	if b.masked == nil {
		b.masked = make([]bool, b.src.Polls)
		for _, set := range [][]Label{b.src.Regressions, b.src.Busy} {
			for _, l := range set {
				for p := max(l.From, 0); p < min(l.To+2, b.src.Polls); p++ {
					b.masked[p] = true
				}
			}
		}
	}
	return b.masked
}

// BuildCases returns every case of every protocol over the sources.
func BuildCases(srcs []*Source) []*Case { return buildCases(srcs, nil) }

// buildCases builds the cases with baseline(interval) polls of baseline
// before each stage, when baseline is not nil, instead of the shape's.
func buildCases(srcs []*Source, baseline func(time.Duration) int) []*Case {
	var out []*Case
	for _, src := range srcs {
		b := &builder{src: src, sh: shapeOf(src)}
		if baseline != nil {
			b.sh.baseline = baseline(src.Interval)
		}
		b.canaryCases(ShortCanary, b.sh.short)
		b.canaryCases(LongCanary, b.sh.long)
		if len(src.Hosts) > 2 {
			b.fleetCases()
		}
		out = append(out, b.cases...)
	}
	return out
}

// newCase starts a case of protocol p whose first monitored poll is at.
func (b *builder) newCase(p, kind string, at int, hosts []int, metrics []int, stages []Stage) *Case {
	c := &Case{
		Dataset: b.src.Dataset, Protocol: p, Half: b.src.Half(at), Kind: kind,
		Interval: b.src.Interval, Baseline: b.sh.baseline, Stages: stages,
		src: b.src, metrics: metrics, hosts: hosts, At: at,
	}
	c.ID = fmt.Sprintf("%s/%s/%s/%s@%d", b.src.Dataset, b.src.Name, p, kind, at)
	if b.src.Dataset == "nezha" {
		c.mask = b.mask()
	}
	return c
}

// fits reports whether a case at poll at with polls monitored polls fits
// in the source.
func (b *builder) fits(at, polls int) bool {
	return at-b.sh.baseline >= 0 && at+polls <= b.src.Polls
}

// watched returns the metrics of host h a rollout watches: every metric
// with data in most of the baseline before at; app-level metrics only
// when app is true.
func (b *builder) watched(h, at int, app bool) []int {
	var out []int
	for m, mt := range b.src.Metrics {
		if mt.App && !app {
			continue
		}
		vals := b.src.Hosts[h].Values[m][at-b.sh.baseline : at]
		n := 0
		for _, v := range vals {
			if !math.IsNaN(v) {
				n++
			}
		}
		if 2*n > len(vals) {
			out = append(out, m)
		}
	}
	return out
}

// step returns the effect of a step of k tolerances on case host h's
// case metric m from monitored poll from: in the metric's unit when its
// baseline sits at its bound, relative otherwise.
func (b *builder) step(c *Case, h, m, from, k int) effect {
	mt := b.src.Metrics[c.metrics[m]]
	base := b.src.Hosts[c.hosts[h]].Values[c.metrics[m]][c.At+from-b.sh.baseline : c.At+from]
	clean := slices.DeleteFunc(slices.Clone(base), math.IsNaN)
	slices.Sort(clean)
	e := effect{Host: h, Metric: m, From: from, To: c.Polls(), Mul: 1}
	if mt.Unit > 0 && len(clean) > 0 && math.Abs(medianSorted(clean)-mt.Bound) < mt.Unit {
		e.Add = float64(k) * mt.Unit
	} else {
		e.Mul = 1 + 0.1*float64(k)
	}
	return e
}

// pick rotates over a case's metrics for the one an injected regression
// hits.
func (b *builder) pick(metrics []int) int {
	b.rot++
	return b.rot % len(metrics)
}

// canaryCases: one canary host monitored for polls polls, the source's
// other hosts untouched beside it (the controls; NAB's series are
// unrelated, so a NAB canary has none). No-change cases every stride polls
// of every host where the host is quiet; steps and (long canary) the late
// ramp injected into every other one; the labelled regressions at their
// offsets.
func (b *builder) canaryCases(p string, polls int) {
	src, sh := b.src, b.sh
	withControls := func(canary int) (hosts []int, stages []Stage) {
		hosts = []int{canary}
		if src.Dataset != "nab" {
			for h := range src.Hosts {
				if h != canary {
					hosts = append(hosts, h)
				}
			}
		}
		return hosts, []Stage{{Name: "canary", Hosts: []int{0}, Polls: polls}}
	}
	for h := range src.Hosts {
		hosts, stages := withControls(h)
		// Hosts start at different phases so that cases of a fleet are
		// spread over the day.
		for at, i := sh.baseline+h*sh.stride/len(src.Hosts), 0; b.fits(at, polls); at, i = at+sh.stride, i+1 {
			if !src.quiet(h, at-sh.baseline, at+polls, sh.guard) {
				continue
			}
			ms := b.watched(h, at, true)
			if len(ms) == 0 {
				continue
			}
			b.cases = append(b.cases, b.newCase(p, "no change", at, hosts, ms, stages))
			if i%2 == 1 {
				continue
			}
			m := b.pick(ms)
			for _, k := range Steps {
				c := b.newCase(p, stepKind(k), at, hosts, ms, stages)
				c.Regression = true
				c.effects = []effect{b.step(c, 0, m, 0, k)}
				c.oracle(nil, 0)
				b.cases = append(b.cases, c)
			}
			if p == LongCanary {
				c := b.newCase(p, RampKind, at, hosts, ms, stages)
				c.Regression = true
				e := b.step(c, 0, m, 2*polls/3, 10)
				e.Ramp = polls - e.From
				c.effects = []effect{e}
				c.oracle(nil, 0)
				b.cases = append(b.cases, c)
			}
			if p == LongCanary && src.Dataset == "nab" {
				b.coldStart(p, at, hosts, ms, stages)
			}
		}
	}
	for _, lb := range src.Regressions {
		hosts, stages := withControls(lb.Host)
		for _, off := range sh.offsets[p] {
			at := lb.From + off
			if !b.fits(at, polls) {
				continue
			}
			ms := b.watched(lb.Host, at, true)
			c := b.newCase(p, "labelled "+lb.Kind, at, hosts, ms, stages)
			c.Regression = true
			c.oracle(&lb, 0)
			b.cases = append(b.cases, c)
		}
	}
}

// coldStart adds a cold-start case: every stage's hosts restart at their
// stage's start, their higher-is-worse metrics elevated for the first
// polls.
func (b *builder) coldStart(p string, at int, hosts []int, ms []int, stages []Stage) {
	c := b.newCase(ColdStart, "cold start", at, hosts, ms, stages)
	c.ID += "/" + p
	for s, st := range stages {
		from := c.StageStart(s)
		for _, h := range st.Hosts {
			for m, sm := range ms {
				if b.src.Metrics[sm].Warms {
					c.effects = append(c.effects, effect{Host: h, Metric: m, From: from, To: from + len(b.sh.coldStart),
						Mul: b.sh.coldMul, Strength: b.sh.coldStart})
				}
			}
		}
	}
	b.cases = append(b.cases, c)
}

// fleetStages lays out a fleet rollout over n hosts whose first canaries
// are the canaries: the canary stage, then half of the rest, then the
// rest.
func (b *builder) fleetStages(canaries []int, n int) (hosts []int, stages []Stage) {
	hosts = slices.Clone(canaries)
	for h := range n {
		if !slices.Contains(canaries, h) {
			hosts = append(hosts, h)
		}
	}
	k := len(canaries)
	rest := n - k
	w1 := (rest + 1) / 2
	idx := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	stages = []Stage{
		{Name: "canary", Hosts: idx(0, k), Polls: b.sh.stage},
		{Name: "wave-1", Hosts: idx(k, k+w1), Polls: b.sh.stage},
		{Name: "wave-2", Hosts: idx(k+w1, n), Polls: b.sh.stage},
	}
	return hosts, stages
}

// fleetCases: rollouts over the whole source with canaries and waves. At
// every stride polls where every host is quiet: a no-change rollout, and
// in turn an injected step on the canaries (hosts of a later wave get it
// when their wave is applied), a shift of every host (fleet-wide move),
// the controls improving, and a cold start. Then the labelled
// regressions (the labelled host as the first canary) and, for
// JumpStarter, the labelled fleet-wide segments.
func (b *builder) fleetCases() {
	src, sh := b.src, b.sh
	n := len(src.Hosts)
	total := 3 * sh.stage
	metricsAt := func(hosts []int, at int) []int {
		// The metrics every canary has (a query returns a series per
		// host; pods without one read as no data, which the canaries
		// must not be).
		var out []int
		for m, mt := range src.Metrics {
			if mt.App {
				continue
			}
			ok := true
			for _, h := range hosts {
				ok = ok && slices.Contains(b.watched(h, at, false), m)
			}
			if ok {
				out = append(out, m)
			}
		}
		return out
	}
	for at, i := sh.baseline, 0; b.fits(at, total); at += sh.fleetStride {
		if !src.quiet(-1, at-sh.baseline, at+total, sh.guard) {
			continue
		}
		i++
		var canaries []int
		for j := range sh.canaries {
			canaries = append(canaries, (i*sh.canaries+j)%n)
		}
		hosts, stages := b.fleetStages(canaries, n)
		ms := metricsAt(canaries, at)
		if len(ms) == 0 {
			continue
		}
		b.cases = append(b.cases, b.newCase(FleetWaves, "no change", at, hosts, ms, stages))
		switch i % 4 {
		case 0:
			k := Steps[(i/4)%len(Steps)]
			c := b.newCase(FleetWaves, stepKind(k), at, hosts, ms, stages)
			c.Regression = true
			m := b.pick(ms)
			for s, st := range stages {
				for _, h := range st.Hosts {
					c.effects = append(c.effects, b.step(c, h, m, c.StageStart(s), k))
				}
			}
			c.oracle(nil, 0)
			b.cases = append(b.cases, c)
		case 1:
			c := b.newCase(FleetMove, "shift of every host", at, hosts, ms, stages)
			m := b.pick(ms)
			for h := range hosts {
				c.effects = append(c.effects, b.step(c, h, m, 0, 5))
			}
			b.cases = append(b.cases, c)
		case 2:
			c := b.newCase(ControlsImprove, "controls 30% better", at, hosts, ms, stages)
			m := b.pick(ms)
			for h := len(canaries); h < n; h++ {
				c.effects = append(c.effects, effect{Host: h, Metric: m, From: 0, To: total, Mul: 0.7})
			}
			b.cases = append(b.cases, c)
		case 3:
			b.coldStart(FleetWaves, at, hosts, ms, stages)
		}
	}
	for _, lb := range src.Regressions {
		for _, off := range sh.offsets[FleetWaves] {
			at := lb.From + off
			if !b.fits(at, total) {
				continue
			}
			canaries := []int{lb.Host}
			for j := 1; j < sh.canaries; j++ {
				canaries = append(canaries, (lb.Host+j)%n)
			}
			hosts, stages := b.fleetStages(canaries, n)
			c := b.newCase(FleetWaves, "labelled "+lb.Kind, at, hosts, metricsAt(canaries, at), stages)
			c.Regression = true
			c.oracle(&lb, 0)
			b.cases = append(b.cases, c)
		}
	}
	// Fleet-wide segments: the change lands at a segment's onset (and a
	// few polls around it) with two of the moving hosts as canaries.
	seen := map[[2]int]bool{}
	for _, lb := range src.FleetMoves {
		for _, off := range []int{-6, -3, 0, 3} {
			at := lb.From + off
			var moving []int
			for _, o := range src.FleetMoves {
				if o.Host != lb.Host && o.From <= at+sh.stage && o.To > at {
					moving = append(moving, o.Host)
				}
			}
			if len(moving) == 0 || !b.fits(at, total) || seen[[2]int{lb.Host, at}] {
				continue
			}
			seen[[2]int{lb.Host, at}] = true
			canaries := []int{lb.Host, moving[0]}[:sh.canaries]
			hosts, stages := b.fleetStages(canaries, n)
			b.cases = append(b.cases, b.newCase(FleetMove, "labelled fleet segment", at, hosts, metricsAt(canaries, at), stages))
		}
	}
}
