package policies

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Evaluator is what the engine needs of a policy. *Policy implements it;
// tests pass closures.
type Evaluator interface {
	// HasFleet reports whether the policy has a rollback_when program.
	HasFleet() bool
	// HasHost reports whether the policy has a host_rollback_when program.
	HasHost() bool
	// EvalFleet runs rollback_when against env. An error of EvalFleet or
	// EvalHost names the policy, its rule (and host) itself.
	EvalFleet(env *Env) (bool, error)
	// EvalHost runs host_rollback_when against env with env.Host = h.
	EvalHost(env *Env, h *Host) (bool, error)
	// UsesMetrics names the metrics the policy reads; nil means all of
	// them (the engine then treats no data on any metric as no data for
	// the policy).
	UsesMetrics() []string
	// PolicyName names the policy in results and reports.
	PolicyName() string
}

// Outcome is a policy's result at one tick.
type Outcome int

// Outcomes, from the least to the most decisive for a caller: Fire wins over
// NoData (it fired on the data that exists), Error over NoData.
const (
	// OutcomePass: evaluated on complete data, did not fire.
	OutcomePass Outcome = iota
	// OutcomeFire: rollback_when fired.
	OutcomeFire
	// OutcomeNoData: did not fire, but a metric the policy uses had no
	// data for some changed host; the caller applies on_no_data (and
	// PolicyResult.FleetNoData says whether the untouched hosts had none
	// either).
	OutcomeNoData
	// OutcomeError: an evaluation failed (see PolicyResult.Err).
	OutcomeError
)

// String returns pass, fire, nodata or error.
func (o Outcome) String() string {
	switch o {
	case OutcomePass:
		return "pass"
	case OutcomeFire:
		return "fire"
	case OutcomeNoData:
		return "nodata"
	case OutcomeError:
		return "error"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// PolicyResult is one policy's result at one tick.
type PolicyResult struct {
	Policy Evaluator
	// Outcome is the fleet-level outcome (rollback_when). Host-level fires
	// (host_rollback_when) are listed in TickResult.HostFires; a policy
	// with only a host program is Pass, NoData or Error here.
	Outcome Outcome
	// NoData is true when a metric the policy uses had no data for some
	// changed host at this tick, longer than that host's baseline window
	// went without it (Metric.Silent), whether or not the policy fired.
	NoData bool
	// NoDataTicks is the longest silence of one changed host: the number
	// of consecutive ticks, this one included, at which that host had no
	// value of a metric the policy reads (0 when NoData is false). Hosts
	// that each miss a poll in turn are no silence longer than 1. Ticks
	// with FleetNoData are not counted, and do not break the count either.
	NoDataTicks int
	// FleetNoData is true when NoData is, and every metric the policy
	// misses is missing on every untouched host too (there is at least
	// one): a gap in the metrics' collection across the fleet, not
	// something the change did. With no untouched host (the last wave,
	// the bake) the hosts of the stages that passed are the reference;
	// with neither (a one-stage rollout) it is false.
	FleetNoData bool
	// Err is the first evaluation error of the tick, when Outcome is
	// OutcomeError.
	Err error
}

// HostFire is one host whose host_rollback_when fired.
type HostFire struct {
	Policy Evaluator
	// Host is the host's index in EngineConfig.Hosts.
	Host int
}

// TickResult is what one tick decided. The engine reuses it: it is valid
// until the next call to Tick.
type TickResult struct {
	// Policies has one result per policy, in EngineConfig order.
	Policies []PolicyResult
	// HostFires lists host-level fires, by policy then host order.
	HostFires []HostFire
}

// EngineConfig is what an Engine watches and decides with.
type EngineConfig struct {
	// Hosts are every target host's names; the engine refers to hosts by
	// their index in this list.
	Hosts []string
	// Metrics are the queries, in the order Observe refers to them.
	Metrics []MetricConfig
	// Detector tunes every detector (per-metric floors may override it).
	Detector DetectorConfig
	// Policies are evaluated at every tick, in order.
	Policies []Evaluator
	// NoDataTicks is carried for the caller (on_no_data: fail tolerates
	// that many consecutive no-data ticks); the engine only counts them.
	NoDataTicks int
}

type policyState struct {
	ev      Evaluator
	metrics []int // indices into EngineConfig.Metrics; nil = all
	// silent counts, per host, the consecutive counted ticks at which
	// the host had no value of a metric the policy reads; silentAny says
	// whether any count may be above 0.
	silent    []int32
	silentAny bool
}

// Difference in differences across waves: the fleet level.
//
// The runner takes baselines at every wave start, over the window just
// before it, for the wave's hosts and for every untouched host. A host of
// wave w is judged against its own baseline b_h, taken over window w; the
// untouched hosts (the controls) tell how the whole fleet has moved since
// then. Comparing z-scores does not work across waves: each host's z is in
// its own spread units, and a control re-baselined over a window that
// already holds part of a fleet-wide shift has a moved median and, through
// the tail floor, a much wider spread, so the same +40% reads as a small z
// on it and a large one on a host baselined before the shift. The engine
// compares levels in the metric's own unit instead:
//
//   - Each host has a reference level ref_h: its baseline median over the
//     first window it was baselined in (the canary's, for every host in the
//     usual plan). The fleet level of a set of values v_c is the median over
//     hosts of v_c / ref_c - in relative mode - or of v_c - ref_c - in
//     additive mode -, i.e. how far the fleet has moved since the reference
//     window. The median, rather than the mean, keeps one control that
//     spikes (CPU series do, 20x for a poll) from moving every judged host's
//     expectation; with one or two controls it is their mean.
//   - At each StartWave the engine measures L_w, the fleet level of the
//     wave's baseline window, over the baselines just taken (the wave's own
//     hosts and the untouched ones: all were measured over that same
//     pre-change window, so all are valid witnesses). Every host
//     re-baselined then is stamped with baseLevel = L_w. A host baselined
//     for the first time gets ref = b / L_w (b - L_w), its level brought
//     back to the reference window, so L is always relative to one window.
//   - At each tick, F(t) is the fleet level of the controls' latest poll
//     (not their smoothed values: those lag a jump of the fleet by a poll,
//     and the judged host's poll at t is compared with the fleet at t).
//     Each of the judged host's polls is taken back by F at that same
//     poll, in the burst, the CUSUM's window and the window test.
//     A judged host h is expected at
//     b_h x F(t) / baseLevel_h with spread s_h x F(t) / baseLevel_h
//     (relative: a fleet that moved by 40% moves the host's level and its
//     noise by 40%), or at b_h + F(t) - baseLevel_h with spread s_h
//     (additive). For the canary's hosts baseLevel = 1 (0) and this is
//     b_h x (1 + S(t)) with S(t) the controls' relative shift.
//   - Without controls (the last wave, or a one-host rollout), F stays at
//     the last level measured: the controls' level at the last tick that
//     had any (the fleet's most recent state before the last wave's
//     change), or L_w when no tick had controls yet. A single-host rollout
//     therefore judges against its own baseline, unchanged.
//
// The mode is chosen per metric on its first baselines: relative when every
// host's median is positive and most hosts' medians are at least two
// spreads above zero (latency, CPU, throughput), additive otherwise (error
// rates that sit at 0, where a ratio is undefined or swings on noise
// alone).
type fleetLevel struct {
	// decided is true once the mode has been chosen.
	decided bool
	// relative is the mode: ratios (true) or differences (false).
	relative bool
	// seen is true once a tick has measured the level from controls.
	seen bool
	// level is the fleet level at the latest tick with controls, or the
	// latest L_w before any.
	level float64
	// pre is the untouched hosts' level over the last Recent polls of the
	// latest wave's baseline window relative to their level over the
	// whole window (a shift, see shift); hasPre is false when fewer than
	// minReference untouched hosts had both.
	pre    float64
	hasPre bool
	// spread is how far the reference hosts' own shifts spread around
	// level at the latest tick with them (1.4826 MAD, in shift units;
	// see measure): how differently the hosts the level is taken from
	// moved, which no comparison against the fleet is finer than.
	spread float64
}

// preExcess is how much stricter than its baseline median host state st's
// own reference is, in the worse direction: the untouched
// hosts' move just before the change (pre) applied to st's median, when
// it is to the better side and beyond st's tolerance (a smaller move is
// no move), and no more than st's own move over the same polls, which must
// be beyond its tolerance too: a host that did not move with the fleet is
// judged against its own baseline. Else 0.
func (l *fleetLevel) preExcess(st *metricState, p *detectorParams) float64 {
	if !l.hasPre || !st.hasBaseline || math.IsNaN(st.recent) {
		return 0
	}
	moved := st.Baseline + l.pre
	if l.relative {
		moved = st.Baseline * l.pre
	}
	fleet, own := p.dir*(st.Baseline-moved), p.dir*(st.Baseline-st.recent)
	if !(fleet > st.Tolerance && own > st.Tolerance) {
		return 0
	}
	return min(fleet, own)
}

// liftShare is how much more narrowly than as observed a host's baseline
// taken back by the untouched hosts must spread (MAD) for the host to have
// drifted with them (see preAdjust): chosen on every data set together
// (make eval and the scenario hunts' replica fleets, README "A drift
// shared with the fleet"): 0.5 and 1 rolled back more no-change rollouts
// of JumpStarter's fleets of unlike services for about as many caught.
const liftShare = 0.3

// preAdjust is the adjustment (x*mul + add, see takeBack) that takes a
// poll of host state st back by the untouched hosts' level just before
// the change (pre), when st drifted with them before it: its recent level
// moved from its median, to the worse side (a lift) or to the better side
// with them (a stricter reference, see preExcess), and its baseline taken
// back by them poll by poll spreads at most liftShare times as widely as
// observed (relOK). mul is NaN otherwise, and where a ratio has no scale.
// Such a host's baseline as observed spreads over the drift, in which a
// step beyond where it was going reads as noise; taken back by the
// untouched hosts' level before the change, its polls are measured from
// where it was going, and its baseline taken back by them poll by poll
// spreads only by its own noise (see judge: the window test's and the
// burst's second reads).
func (l *fleetLevel) preAdjust(st *metricState) (mul, add float32) {
	if st.lift == 0 && st.pre == 0 || !l.hasPre || !st.relOK || st.relMad > liftShare*st.madSpread {
		return float32(math.NaN()), 0
	}
	a, ok := l.takeBack(st, l.pre)
	if !ok {
		return float32(math.NaN()), 0
	}
	return float32(a.mul), float32(a.add)
}

// identity is the level of the reference window itself.
func (l *fleetLevel) identity() float64 {
	if l.relative {
		return 1
	}
	return 0
}

// shift is how far value v has moved from the reference level ref.
func (l *fleetLevel) shift(v, ref float64) float64 {
	if l.relative {
		return v / ref
	}
	return v - ref
}

// unshift brings value v, measured when the fleet level was level, back
// to the reference window.
func (l *fleetLevel) unshift(v, level float64) float64 {
	if l.relative {
		if level > 0 {
			return v / level
		}
		return v
	}
	return v - level
}

// expect is the value and spread host state st is expected to have at the
// current fleet level. A host that never went through StartWave with a
// baseline, or a level that is not positive in relative mode (every
// control at zero: no information about scale), is judged against its own
// baseline.
func (l *fleetLevel) expect(st *metricState, p *detectorParams) (expected, spread float64) {
	if !l.decided || !st.hasRef {
		return st.Baseline, st.Stddev
	}
	if !l.relative {
		return st.Baseline + l.level - st.baseLevel, st.Stddev
	}
	if !(l.level > 0) || !(st.baseLevel > 0) {
		return st.Baseline, st.Stddev
	}
	scale := l.level / st.baseLevel
	return st.Baseline * scale, max(st.Stddev*scale, p.absFloor)
}

// adjustment brings a value of host state st observed at the current
// fleet level back to the level of its baseline window: divided by
// level / baseLevel (relative), or less level - baseLevel (additive). The
// identity where expect judges against the host's own baseline, except
// where the fleet's level fell to zero in ratios: every untouched host at
// 0 (availability in a dependency's outage) is the fleet's movement, not
// a lack of scale, and the comparison against the fleet then finds no
// excess (adjust.zero), so the host is not degraded by what it shares.
func (l *fleetLevel) adjustment(st *metricState) adjust {
	if !l.decided || !st.hasRef {
		return identity
	}
	if l.relative && l.level == 0 && st.baseLevel > 0 {
		return adjust{mul: 1, zero: true}
	}
	a, ok := l.takeBack(st, l.level)
	if !ok {
		return identity
	}
	a.spread = l.spread
	if l.relative {
		a.spread = l.spread / l.level * math.Abs(st.relMed)
	}
	return a
}

// takeBack is the adjustment (without its spread) that brings a value of
// host state st observed at fleet level level back to the level of its
// baseline window: divided by level / baseLevel (relative), or less
// level - baseLevel (additive). ok is false where a ratio has no scale
// (level or baseLevel not above 0).
func (l *fleetLevel) takeBack(st *metricState, level float64) (a adjust, ok bool) {
	if !l.relative {
		return adjust{mul: 1, add: st.baseLevel - level}, true
	}
	if !(level > 0) || !(st.baseLevel > 0) {
		return identity, false
	}
	return adjust{mul: st.baseLevel / level}, true
}

// measure sets the level and its spread from the reference hosts' shifts
// at this tick (non-empty; overwritten).
func (l *fleetLevel) measure(shifts []float64) {
	l.level = medianInPlace(shifts)
	l.seen = true
	for i, v := range shifts {
		shifts[i] = math.Abs(v - l.level)
	}
	l.spread = 1.4826 * medianInPlace(shifts)
	if l.spread == 0 {
		// More than half the hosts moved by the same amount (errors
		// per poll: most hosts at 0, or at the fleet's surge): 0.87
		// times the deviations' 75th percentile, which is 1.4826 MAD
		// for a normal spread and which one host's excursion does not
		// move. A surge of errors then spreads the fleet by what its
		// hosts draw of it.
		l.spread = 0.87 * selectKth(shifts, 3*len(shifts)/4)
	}
}

// medianInPlace returns the median of xs (non-empty, no NaN), reordering
// it: quickselect, linear on average, no allocation.
func medianInPlace(xs []float64) float64 {
	n := len(xs)
	k := n / 2
	hi := selectKth(xs, k)
	if n%2 == 1 {
		return hi
	}
	// xs[:k] now holds the k smallest values; the median's lower half is
	// the largest of them.
	lo := xs[0]
	for _, v := range xs[1:k] {
		lo = max(lo, v)
	}
	return (lo + hi) / 2
}

// selectKth reorders xs so that xs[k] is the value of rank k, every value
// before it is <= and every value after it >=, and returns xs[k] (Hoare's
// selection with a median-of-three pivot).
func selectKth(xs []float64, k int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if xs[mid] < xs[lo] {
			xs[mid], xs[lo] = xs[lo], xs[mid]
		}
		if xs[hi] < xs[lo] {
			xs[hi], xs[lo] = xs[lo], xs[hi]
		}
		if xs[hi] < xs[mid] {
			xs[hi], xs[mid] = xs[mid], xs[hi]
		}
		pivot := xs[mid]
		i, j := lo, hi
		for i <= j {
			for xs[i] < pivot {
				i++
			}
			for xs[j] > pivot {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return xs[k]
		}
	}
	return xs[k]
}

// Engine runs the detectors of every host and metric and evaluates the
// policies, one tick at a time. It keeps one Env and updates it in place;
// after construction a tick allocates nothing of its own (policy programs
// may). It is not safe for concurrent use.
//
// Memory layout: one slab of detector states (host-major, so one host's
// metrics sit together), one slab of smoothing windows, one Host per target
// whose Metrics map points into the state slab. Hosts are entered in
// Env.Hosts when their wave starts and leave it when excluded.
type Engine struct {
	cfg    EngineConfig
	nh, nm int
	params []detectorParams // per metric
	hosts  []Host
	states []metricState // [host*nm + metric]
	rings  []float64     // [(host*nm + metric)*smoothing + i]
	// xrings are the CUSUM's windows beside rings: each poll's excess,
	// taken back by the untouched hosts' movement at that poll.
	xrings []float64
	// sketches are the baselines' quantiles for the window test:
	// [(host*nm + metric)*sketchSize + i].
	sketches []float32
	// didSketches are the same quantiles of each baseline taken back by
	// the untouched hosts' movement poll by poll, for the window test's
	// comparison with the fleet (see didBaselines); a copy of the
	// sketch where there is no such fleet.
	didSketches []float32
	// bsamples holds the baselines set since the last StartWave, as
	// given (NaN for a missed poll), for didBaselines, until StartWave:
	// bsamples[boff[i] : boff[i]+blen[i]] for state i; blen 0 when none.
	bsamples   []float32
	boff, blen []int32
	// gbuf is didBaselines' scratch: the fleet's level at each poll of
	// the window, counted from its end.
	gbuf []float64
	obs  []float64 // [metric*nh + host], NaN-filled after each tick

	changed, excluded []bool
	// inWave marks the hosts of the wave StartWave is starting, while it
	// measures the untouched hosts' levels (see fleetLevel.pre).
	inWave []bool
	// envIdx[i] is the host index of env.Hosts[i].
	envIdx []int

	// levels are the per-metric fleet levels (see fleetLevel).
	levels []fleetLevel
	// Per-metric scratch of a tick: the control group's mean current value
	// and size, and whether some changed host was silent (Metric.Silent).
	ctrlMean     []float64
	ctrlN        []int
	metricNoData []bool
	// fleetNoData is true, per metric, when no reference host had a value
	// at the last tick; untouchedRef says whether the reference was the
	// untouched hosts or the hosts of passed stages (Engine.FleetNoData).
	fleetNoData, untouchedRef []bool
	// ctrlSeen and passSeen are their scratch: per metric, what this tick
	// saw of the untouched hosts and of the hosts of passed stages;
	// changedSeen of every changed host, this stage's included: when one
	// of them has a value the metric's collection works, and the others'
	// silence is their own, even when the reference hosts are silent too
	// (in the last wave, a host of a passed stage whose data stopped is
	// its own reference).
	ctrlSeen, passSeen, changedSeen []refSeen
	// passN is the number of hosts of passed stages with a value.
	passN []int
	// waveOf is the index of the wave each changed host belongs to.
	waveOf []int
	// ctrlBuf[m*nh : m*nh+ctrlN[m]] are the controls' shifts from their
	// reference levels at this tick (and, at StartWave, the baselines'),
	// reordered by the median.
	ctrlBuf []float64

	policies []policyState
	env      Env
	result   TickResult
	scratch  []float64
}

// NewEngine builds an engine, or reports every problem in cfg at once.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	var errs []error
	if err := cfg.Detector.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(cfg.Metrics) == 0 {
		errs = append(errs, errors.New("no metrics"))
	}
	index := make(map[string]int, len(cfg.Metrics))
	for i, m := range cfg.Metrics {
		if _, dup := index[m.Name]; dup {
			errs = append(errs, fmt.Errorf("metric %q: defined twice", m.Name))
		}
		index[m.Name] = i
		if m.RelFloor < 0 || m.AbsFloor < 0 {
			errs = append(errs, fmt.Errorf("metric %q: floors must be >= 0", m.Name))
		}
	}
	e := &Engine{cfg: cfg, nh: len(cfg.Hosts), nm: len(cfg.Metrics)}
	for _, ev := range cfg.Policies {
		ps := policyState{ev: ev, silent: make([]int32, len(cfg.Hosts))}
		if used := ev.UsesMetrics(); used != nil {
			ps.metrics = make([]int, 0, len(used))
			for _, name := range used {
				i, ok := index[name]
				if !ok {
					errs = append(errs, fmt.Errorf("policy %q: unknown metric %q", ev.PolicyName(), name))
					continue
				}
				ps.metrics = append(ps.metrics, i)
			}
		}
		e.policies = append(e.policies, ps)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}

	nh, nm, w := e.nh, e.nm, cfg.Detector.Smoothing
	e.params = make([]detectorParams, nm)
	for m, mc := range cfg.Metrics {
		e.params[m] = newDetectorParams(cfg.Detector, mc)
		// The window test's confidence is Bonferroni-corrected over the
		// host's metrics: a host is degraded when any of them is.
		if nm > 1 {
			c := 1 - (1-cfg.Detector.Confidence)/float64(nm)
			e.params[m].zAlpha = math.Sqrt2 * math.Erfinv(2*c-1)
		}
	}
	e.hosts = make([]Host, nh)
	e.states = make([]metricState, nh*nm)
	e.rings = make([]float64, nh*nm*w)
	e.xrings = make([]float64, nh*nm*w)
	e.sketches = make([]float32, nh*nm*sketchSize)
	e.didSketches = make([]float32, nh*nm*sketchSize)
	e.boff = make([]int32, nh*nm)
	e.blen = make([]int32, nh*nm)
	e.obs = make([]float64, nm*nh)
	for i := range e.obs {
		e.obs[i] = math.NaN()
	}
	e.changed = make([]bool, nh)
	e.excluded = make([]bool, nh)
	e.inWave = make([]bool, nh)
	e.levels = make([]fleetLevel, nm)
	e.ctrlMean = make([]float64, nm)
	e.ctrlN = make([]int, nm)
	e.passN = make([]int, nm)
	e.waveOf = make([]int, nh)
	e.metricNoData = make([]bool, nm)
	e.fleetNoData = make([]bool, nm)
	e.untouchedRef = make([]bool, nm)
	e.ctrlSeen = make([]refSeen, nm)
	e.passSeen = make([]refSeen, nm)
	e.changedSeen = make([]refSeen, nm)
	for h, name := range cfg.Hosts {
		host := &e.hosts[h]
		host.Name = name
		host.Metrics = make(map[string]*Metric, nm)
		for m, mc := range cfg.Metrics {
			st := &e.states[h*nm+m]
			st.NoData, st.Silent = true, true
			host.Metrics[mc.Name] = &st.Metric
		}
	}
	e.ctrlBuf = make([]float64, nm*nh)
	e.env.Hosts = make([]*Host, 0, nh)
	e.envIdx = make([]int, 0, nh)
	e.env.Fleet.Size = nh
	e.result.Policies = make([]PolicyResult, len(e.policies))
	for i, ps := range e.policies {
		e.result.Policies[i].Policy = ps.ev
	}
	return e, nil
}

func (e *Engine) valid(host int) bool { return host >= 0 && host < e.nh }

func (e *Engine) ring(host, metric int) []float64 {
	w := e.cfg.Detector.Smoothing
	i := (host*e.nm + metric) * w
	return e.rings[i : i+w : i+w]
}

func (e *Engine) xring(host, metric int) []float64 {
	w := e.cfg.Detector.Smoothing
	i := (host*e.nm + metric) * w
	return e.xrings[i : i+w : i+w]
}

func (e *Engine) sketch(host, metric int) []float32 {
	i := (host*e.nm + metric) * sketchSize
	return e.sketches[i : i+sketchSize : i+sketchSize]
}

func (e *Engine) didSketch(host, metric int) []float32 {
	i := (host*e.nm + metric) * sketchSize
	return e.didSketches[i : i+sketchSize : i+sketchSize]
}

// StartWave marks hosts (indices into EngineConfig.Hosts) as changed and
// applied, enters them in Env.Hosts and restarts their scores and smoothing.
// It sets Env.Wave. Indices out of range, already changed or excluded hosts
// are skipped.
//
// Before that it records, per metric, the fleet level of the window the
// baselines set since the last StartWave were taken from (see fleetLevel):
// call SetBaseline first, for the wave's hosts and every untouched host,
// over one window.
func (e *Engine) StartWave(name string, index int, hosts []int) {
	for _, h := range hosts {
		if e.valid(h) {
			e.inWave[h] = true
		}
	}
	for m := range e.nm {
		e.recordWaveLevel(m)
	}
	for _, h := range hosts {
		if e.valid(h) {
			e.inWave[h] = false
		}
	}
	// The baselines' copies are needed until the next wave's: let them
	// go (a fleet of 100,000 hosts at 48 polls holds 19 MB per metric).
	e.bsamples = nil
	clear(e.blen)
	e.env.Wave = Wave{Name: name, Index: index}
	for _, h := range hosts {
		if !e.valid(h) || e.changed[h] || e.excluded[h] {
			continue
		}
		e.changed[h] = true
		e.waveOf[h] = index
		host := &e.hosts[h]
		host.Wave = name
		host.Applied = true
		host.Score, host.Degraded = 0, false
		for m := range e.nm {
			e.states[h*e.nm+m].restart()
		}
		e.env.Hosts = append(e.env.Hosts, host)
		e.envIdx = append(e.envIdx, h)
	}
	e.env.Fleet.Changed = len(e.env.Hosts)
}

// recordWaveLevel is StartWave's bookkeeping for metric m: decide the
// metric's mode on its first baselines, measure the fleet level L_w of this
// wave's baseline window over the hosts re-baselined since the last wave,
// give hosts baselined for the first time their reference level, stamp
// every re-baselined host with L_w, and give the wave's own re-baselined
// hosts the untouched hosts' move over the window's last polls (see
// fleetLevel.preExcess).
func (e *Engine) recordWaveLevel(m int) {
	lv := &e.levels[m]
	lv.hasPre = false
	minB := math.Inf(1)
	n, aboveZero := 0, 0
	shifts := e.ctrlBuf[m*e.nh : m*e.nh : (m+1)*e.nh]
	for h := range e.nh {
		st := &e.states[h*e.nm+m]
		if !st.rebased || !st.hasBaseline || e.changed[h] || e.excluded[h] {
			continue
		}
		n++
		minB = min(minB, st.Baseline)
		if st.Baseline >= 2*st.Stddev {
			aboveZero++
		}
		if st.hasRef && lv.decided && (!lv.relative || st.ref > 0) {
			shifts = append(shifts, lv.shift(st.Baseline, st.ref))
		}
	}
	if n == 0 {
		return
	}
	if !lv.decided {
		// Relative when every host's level is positive and most hosts'
		// levels are at least two spreads above zero: a ratio to a level
		// lost in its own noise (error rates near 0) would swing on noise
		// alone. Most hosts, not the fleet's sum: one spiky service of
		// 0.5 s set the sum's spread, and the fleet's move in seconds
		// (4 ms for it) then read as 70% on a 5 ms one.
		lv.decided = true
		lv.relative = minB > 0 && 2*aboveZero > n
		lv.level = lv.identity()
		lv.seen = false
	}
	waveLevel := lv.identity()
	if len(shifts) > 0 {
		waveLevel = medianInPlace(shifts)
	}
	// The untouched hosts' move over the last Recent polls of the window,
	// each relative to its own baseline median: not the wave's own hosts
	// (a host's own recent level is its own noise), and only from
	// minReference of them, as the fleet level at a tick.
	pre := shifts[:0]
	for h := range e.nh {
		st := &e.states[h*e.nm+m]
		if !st.rebased || !st.hasBaseline || e.changed[h] || e.excluded[h] || e.inWave[h] || math.IsNaN(st.recent) {
			continue
		}
		if lv.relative && !(st.Baseline > 0) {
			continue
		}
		pre = append(pre, lv.shift(st.recent, st.Baseline))
	}
	lv.pre, lv.hasPre = lv.identity(), len(pre) >= minReference
	if lv.hasPre {
		lv.pre = medianInPlace(pre)
	}
	e.didBaselines(m)
	for h := range e.nh {
		st := &e.states[h*e.nm+m]
		if !st.rebased {
			continue
		}
		st.rebased = false
		if !st.hasBaseline || e.changed[h] || e.excluded[h] {
			continue
		}
		if !st.hasRef {
			st.ref = lv.unshift(st.Baseline, waveLevel)
			st.hasRef = true
		}
		st.baseLevel = waveLevel
		if e.inWave[h] {
			// Baselined over this window: the untouched hosts' move over
			// its last polls applies to it.
			st.pre = lv.preExcess(st, &e.params[m])
			st.preMul, st.preAdd = lv.preAdjust(st)
		}
	}
	if !lv.seen {
		lv.level = waveLevel
	}
}

// didBaselines sets the DiD sketch of metric m for the hosts of the wave
// being started that were baselined since the last StartWave: their
// baseline polls, each taken back by the untouched hosts' level at that
// poll (the median of their polls relative to their own baseline medians,
// as a tick takes back a judged poll), so that the window test compares
// the host's polls relative to the fleet with its baseline relative to
// the fleet. A fleet that rose or fell through the baseline window (a
// change made on the daily rise) then widens the baseline no more than it
// moves the window. Polls are matched from the window's end (a host with
// a recorded change has a shorter window that ends at the same time); a
// poll with fewer than minReference untouched values is left out, and a
// host keeps its own sketch when fewer than half its baseline polls
// remain (the last wave, a small fleet), or when its baseline relative to
// the fleet spreads no less than as observed (MAD): a fleet of other
// services whose movement explains none of this host's keeps the
// comparison it had. The second test's z is divided by the inflation of
// the relative baseline's autocorrelation: a host whose share of the
// fleet drifts slowly (a daily shape of its own) reads a window's shift
// less surely. The same relative baseline bounds the burst's comparison
// with the fleet: its median, its largest pair and its MAD (relOK).
func (e *Engine) didBaselines(m int) {
	lv := &e.levels[m]
	if !lv.decided {
		return
	}
	nh, nm := e.nh, e.nm
	// The untouched hosts' states with a baseline copy.
	var controls []int
	polls := 0
	for h := range nh {
		i := h*nm + m
		st := &e.states[i]
		if st.rebased && st.hasBaseline && !e.changed[h] && !e.excluded[h] && !e.inWave[h] &&
			e.blen[i] > 0 && (!lv.relative || st.Baseline > 0) {
			controls = append(controls, i)
			polls = max(polls, int(e.blen[i]))
		}
	}
	if polls == 0 {
		return
	}
	e.gbuf = slices.Grow(e.gbuf[:0], polls)[:polls]
	buf := e.ctrlBuf[m*nh : m*nh : (m+1)*nh]
	for k := range polls {
		buf = buf[:0]
		for _, i := range controls {
			if int(e.blen[i]) <= k {
				continue
			}
			v := float64(e.bsamples[int(e.boff[i])+int(e.blen[i])-1-k])
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			buf = append(buf, lv.shift(v, e.states[i].Baseline))
		}
		e.gbuf[k] = math.NaN()
		if len(buf) >= minReference {
			e.gbuf[k] = medianInPlace(buf)
		}
	}
	p := &e.params[m]
	for h := range nh {
		i := h*nm + m
		st := &e.states[i]
		if !e.inWave[h] || !st.rebased || !st.hasBaseline || e.changed[h] || e.excluded[h] || e.blen[i] == 0 {
			continue
		}
		// samples, then vals, then rel (each kept poll taken back, NaN
		// where it is not known, in time order) in the same buffer.
		n := int(e.blen[i])
		samples := slices.Grow(e.scratch[:0], 3*n)
		for _, v := range e.bsamples[e.boff[i] : int(e.boff[i])+n] {
			samples = append(samples, float64(v))
		}
		kept := pastBirth(p, samples, longestGap(samples))
		vals := samples[n:n]
		rel := samples[2*n : 2*n]
		for j, v := range kept {
			rel = append(rel, math.NaN())
			k := len(kept) - 1 - j
			if k >= polls || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			g := e.gbuf[k]
			if math.IsNaN(g) || lv.relative && !(g > 0) {
				continue
			}
			rel[j] = lv.unshift(v, g)
			vals = append(vals, rel[j])
		}
		e.scratch = samples
		if len(vals) < 2 || 2*len(vals) < int(st.nb) {
			continue
		}
		r := autocorrelation(vals)
		slices.Sort(vals)
		// samples[:len(vals)] is free now: vals follows it.
		mad := madOf(vals, samples[:0])
		if mad >= st.madSpread {
			continue // the fleet explains none of the host's movement
		}
		st.didR = r
		fillSketch(p, vals, e.didSketch(h, m))
		st.relMed = median(vals)
		st.relPair = pairExcess(p, rel, st.relMed)
		st.relSingle = singleExcess(p, vals[0], vals[len(vals)-1], st.relMed)
		st.relMad = max(mad, p.absFloor)
		st.relOK = true
	}
}

// maxAutocorrelation bounds the lag-1 autocorrelation inflation reads:
// chosen on every data set together (make eval and the scenario hunt's
// fleets, README "Detection judged on real data"): 0 (no inflation)
// caught the most and rolled back the most, 0.8 the fewest of both.
const maxAutocorrelation = 0.5

// autocorrelation is the lag-1 autocorrelation of xs (in time order),
// held to [0, maxAutocorrelation].
func autocorrelation(xs []float64) float64 {
	var mean float64
	for _, v := range xs {
		mean += v
	}
	mean /= float64(len(xs))
	var num, den float64
	for i, v := range xs {
		d := v - mean
		den += d * d
		if i > 0 {
			num += d * (xs[i-1] - mean)
		}
	}
	if den > 0 {
		return min(max(num/den, 0), maxAutocorrelation)
	}
	return 0
}

// inflation is how much wider the difference of the means of nw window
// polls and nb baseline polls spreads when both are an AR(1) series of
// lag-1 autocorrelation r than when their polls are independent: the
// square root of (f(nw)/nw + f(nb)/nb) / (1/nw + 1/nb), with f(n) =
// 1 + 2 sum_{k<n} (1 - k/n) r^k, the variance factor of a mean of n
// polls. f(n) grows from 1 + r at 2 polls towards (1+r)/(1-r): a short
// window holds few correlated pairs, so two polls of a canary are not
// discounted as twelve are (1.25 against 1.65 at r = 0.5 and a baseline
// of 48).
func inflation(r float64, nw, nb float64) float64 {
	if r <= 0 {
		return 1
	}
	f := func(n float64) float64 {
		return 1 + 2*r/(1-r) - 2*r*(1-math.Pow(r, n))/(n*(1-r)*(1-r))
	}
	return math.Sqrt((f(nw)/nw + f(nb)/nb) / (1/nw + 1/nb))
}

// SetBaseline sets one host's baseline for one metric from the pre-change
// samples (NaN skipped), and restarts that detector's smoothing and score.
// Call it at each wave start, before StartWave, for the wave's hosts and
// for every untouched host (which form the control group), all over the
// same window: StartWave measures that window's fleet level from them.
func (e *Engine) SetBaseline(metric, host int, samples []float64) {
	if !e.valid(host) || metric < 0 || metric >= e.nm {
		return
	}
	e.scratch = e.states[host*e.nm+metric].setBaseline(&e.params[metric], samples, e.scratch, e.sketch(host, metric))
	copy(e.didSketch(host, metric), e.sketch(host, metric))
	i := host*e.nm + metric
	e.boff[i], e.blen[i] = int32(len(e.bsamples)), int32(len(samples))
	for _, v := range samples {
		e.bsamples = append(e.bsamples, float32(v))
	}
}

// Observe records one metric's values for the next Tick: values[h] for host
// index h, NaN for no data. A metric not observed before a tick has no data
// at that tick.
func (e *Engine) Observe(metric int, values []float64) {
	if metric < 0 || metric >= e.nm {
		return
	}
	copy(e.obs[metric*e.nh:(metric+1)*e.nh], values)
}

// MarkFailed marks a host whose apply failed or that was unreachable.
func (e *Engine) MarkFailed(host int) {
	if e.valid(host) {
		e.hosts[host].Failed = true
	}
}

// Exclude takes a reverted host out of Env.Hosts and out of the control
// group. Its detectors keep observing, from an empty smoothing window, so
// that InBand can verify the rollback.
func (e *Engine) Exclude(host int) {
	if !e.valid(host) || e.excluded[host] {
		return
	}
	e.excluded[host] = true
	for m := range e.nm {
		e.states[host*e.nm+m].restartWindow()
	}
	if i := slices.Index(e.envIdx, host); i >= 0 {
		e.env.Hosts = slices.Delete(e.env.Hosts, i, i+1)
		e.envIdx = slices.Delete(e.envIdx, i, i+1)
	}
	e.env.Fleet.Changed = len(e.env.Hosts)
}

// Env is the environment the policies see; it changes at every Tick.
func (e *Engine) Env() *Env { return &e.env }

// Host returns host i (an index into EngineConfig.Hosts).
func (e *Engine) Host(i int) *Host { return &e.hosts[i] }

// InBand reports whether every metric of host that has a baseline has a
// value since the host was excluded (or its window restarted) and its
// smoothed value is within Band spreads of the baseline, after the control
// adjustment: the check that a rollback worked. A host without any
// baseline is not in band.
func (e *Engine) InBand(host int) bool {
	if !e.valid(host) {
		return false
	}
	judged := false
	for m := range e.nm {
		st := &e.states[host*e.nm+m]
		if !st.hasBaseline {
			continue
		}
		if !st.inBand(&e.params[m]) {
			return false
		}
		judged = true
	}
	return judged
}

// Evidence is one host's metric's evidence at the latest tick or verdict,
// each kind on the Threshold scale: what made its score.
type Evidence struct {
	// Burst is the burst's score, CUSUM the severity x duration score
	// after self-calibration, Window the end-of-stage window test's (0
	// between verdicts).
	Burst, CUSUM, Window float64
	// Repeat is the score of the third largest excursion since the
	// apply (see metricState.repeats).
	Repeat float64
}

// Evidence returns host's evidence on metric (indices into
// EngineConfig.Hosts and Metrics).
func (e *Engine) Evidence(host, metric int) Evidence {
	st := &e.states[host*e.nm+metric]
	ev := Evidence{Burst: st.burst, Window: st.verdict, Repeat: st.repeatScore(&e.params[metric])}
	if st.limit > 0 {
		ev.CUSUM = e.params[metric].threshold * st.cusum / st.limit
	}
	return ev
}

// NoDataTicks is the configured tolerance (EngineConfig.NoDataTicks).
func (e *Engine) NoDataTicks() int { return e.cfg.NoDataTicks }

// DecisionPolls is the fewest polls on which detection can decide a clear
// step after a warm-up of warm polls: two in a row beyond the baseline (one
// spike never decides), the second after the warm-up.
func DecisionPolls(warm int) int { return max(2, warm+1) }

// DataPolls returns how many polls with data host has had since its apply
// on the metric, of those it has a baseline of, that had fewest, and how
// many a decision needs (DecisionPolls after the warm-up); 0, 0 when it
// has no baseline. A stage that ends with have < need has judged the host
// on polls no detector can decide on.
func (e *Engine) DataPolls(host int) (have, need int) {
	if !e.valid(host) {
		return 0, 0
	}
	have = -1
	for m := range e.nm {
		st := &e.states[host*e.nm+m]
		if !st.hasBaseline {
			continue
		}
		if have < 0 || int(st.age) < have {
			have = int(st.age)
		}
		need = max(need, DecisionPolls(e.params[m].warm))
	}
	if have < 0 {
		return 0, 0
	}
	return have, need
}

// FleetNoData reports whether, at the last tick, metric had no value on
// any of the reference hosts, and there was at least one: the untouched
// hosts that can report it, or, without any, the hosts of passed stages
// that can. A host can report a metric when it has a baseline of it or a
// value at this tick: one that never reported it (no exporter for it) is
// no reference, so it never turns the changed hosts' no data into a gap.
func (e *Engine) FleetNoData(metric int) bool { return e.fleetNoData[metric] }

// UntouchedReference reports whether FleetNoData(metric) was judged on
// the untouched hosts (true) or on the hosts of passed stages.
func (e *Engine) UntouchedReference(metric int) bool { return e.untouchedRef[metric] }

// minReference is the fewest hosts whose median sets the fleet level.
const minReference = 3

// refSeen is what a tick saw of a group of reference hosts for one
// metric: none that can report it, some with a value, or some that can
// report it and none with a value.
type refSeen uint8

const (
	refNone refSeen = iota
	refReporting
	refSilent
)

// see takes one reference host's value v at this tick (NaN: none), with
// whether it has a baseline of the metric.
func (r *refSeen) see(v float64, hasBaseline bool) {
	switch {
	case !math.IsNaN(v) && !math.IsInf(v, 0):
		// The value, not a baseline: an untouched host without a
		// baseline that has a value shows the collection works.
		*r = refReporting
	case hasBaseline && *r == refNone:
		*r = refSilent
	}
}

// Tick updates every detector from the last Observe of each metric,
// refreshes the Env (host scores, fleet statistics, phase, elapsed) and
// evaluates every policy: a fleet program once, a host program once per
// changed, non-excluded host. The result is reused by the next Tick.
func (e *Engine) Tick(phase string, elapsed float64) *TickResult {
	nh, nm := e.nh, e.nm
	// Detectors: every host with a baseline observes, so that untouched
	// hosts can serve as controls and excluded hosts can be verified.
	for m := range nm {
		e.ctrlMean[m], e.ctrlN[m] = 0, 0
		e.ctrlSeen[m], e.passSeen[m], e.changedSeen[m] = refNone, refNone, refNone
		e.passN[m] = 0
	}
	for h := range nh {
		control := !e.changed[h] && !e.excluded[h]
		passed := e.changed[h] && !e.excluded[h] && e.waveOf[h] != e.env.Wave.Index
		for m := range nm {
			st := &e.states[h*nm+m]
			// observe takes an infinity as finite makes it; the
			// reference bookkeeping below reads the same value.
			v := st.finite(e.obs[m*nh+h])
			e.obs[m*nh+h] = math.NaN()
			if control || passed {
				seen := &e.ctrlSeen[m]
				if passed {
					seen = &e.passSeen[m]
				}
				seen.see(v, st.hasBaseline)
			}
			if e.changed[h] && !e.excluded[h] {
				e.changedSeen[m].see(v, true)
			}
			if !st.hasBaseline && !e.changed[h] {
				continue
			}
			st.observe(&e.params[m], v, e.ring(h, m))
			lv := &e.levels[m]
			if !st.fresh || !st.hasRef || !lv.decided || lv.relative && !(st.ref > 0) {
				continue
			}
			// The controls' level is taken from their latest poll, v:
			// a judged host's poll is compared with the fleet at that
			// same poll.
			switch {
			case control:
				e.ctrlBuf[m*nh+e.ctrlN[m]] = lv.shift(v, st.ref)
				e.ctrlMean[m] += st.Current
				e.ctrlN[m]++
			case passed:
				// From the end of the metric's buffer: the controls
				// fill it from the start, and a host is one or the
				// other.
				e.passN[m]++
				e.ctrlBuf[(m+1)*nh-e.passN[m]] = lv.shift(v, st.ref)
			}
		}
	}
	// The fleet level of each metric at this tick, from the controls.
	// Without enough of them (the last wave, the bake), the hosts of the
	// stages that passed stand in for them: their change was judged
	// harmless, so how they move is how the fleet moves. Without either
	// (a one-stage rollout of every host) it stays the last one measured.
	// A group of fewer than minReference hosts is no reference: its
	// median is one of them, or the mean of two, so one host's spike or
	// its own late regression would set every judged host's expectation
	// (a canary that tripled after it passed made the last wave's
	// doubling read as an improvement).
	for m := range nm {
		// A gap in the collection is told from the change by the
		// untouched hosts that can report the metric; without any, by
		// the hosts of the stages that passed (they had data after their
		// own apply, and this stage's apply did not touch them); without
		// either, no data is the changed hosts' own; and so it is when
		// a changed host has a value.
		ref := e.ctrlSeen[m]
		e.untouchedRef[m] = ref != refNone
		if !e.untouchedRef[m] {
			ref = e.passSeen[m]
		}
		e.fleetNoData[m] = ref == refSilent && e.changedSeen[m] != refReporting
		n, k := e.ctrlN[m], e.passN[m]
		if n > 0 {
			e.ctrlMean[m] /= float64(n)
		}
		switch {
		case n >= minReference:
			e.levels[m].measure(e.ctrlBuf[m*nh : m*nh+n])
		case k >= minReference:
			e.levels[m].measure(e.ctrlBuf[(m+1)*nh-k : (m+1)*nh])
		}
	}

	// Scores of changed hosts; control adjustment for every host that is
	// judged or verified.
	for h := range nh {
		if !e.changed[h] && !e.excluded[h] {
			continue
		}
		judged := e.changed[h] && !e.excluded[h]
		for m := range nm {
			st := &e.states[h*nm+m]
			p := &e.params[m]
			lv := &e.levels[m]
			st.HasControl = e.ctrlN[m] > 0
			st.Control = e.ctrlMean[m]
			expected, spread := lv.expect(st, p)
			adj := lv.adjustment(st)
			st.judge(p, e.ring(h, m), e.xring(h, m), e.sketch(h, m), e.didSketch(h, m), adj, expected, spread)
			if judged {
				st.verdict = 0
				st.accumulate(p, e.xring(h, m))
			}
		}
	}
	return e.decide(phase, elapsed, true)
}

// Verdict runs the end-of-stage window test of every judged host and
// metric (every poll since the host's apply, after its warm-up: see
// detect.go), counts it in their scores and evaluates every policy again:
// call it when a stage's monitoring period ends, after its last Tick. The
// result is reused by the next Tick or Verdict.
func (e *Engine) Verdict(phase string, elapsed float64) *TickResult {
	for h := range e.nh {
		if !e.changed[h] || e.excluded[h] {
			continue
		}
		for m := range e.nm {
			st := &e.states[h*e.nm+m]
			p := &e.params[m]
			st.verdictScore(p)
		}
	}
	return e.decide(phase, elapsed, false)
}

// decide refreshes the hosts' scores and the fleet statistics from the
// detectors and evaluates every policy; tick says a tick was observed (a
// verdict is not one: it counts no no-data tick).
func (e *Engine) decide(phase string, elapsed float64, tick bool) *TickResult {
	nh, nm := e.nh, e.nm
	var fleet Fleet
	fleet.Size = nh
	for m := range nm {
		e.metricNoData[m] = false
	}
	for h := range nh {
		if !e.changed[h] || e.excluded[h] {
			continue
		}
		host := &e.hosts[h]
		score, degraded := 0.0, false
		for m := range nm {
			st := &e.states[h*nm+m]
			if st.Score > e.params[m].threshold {
				degraded = true
			}
			score = max(score, st.Score)
			if st.Silent {
				e.metricNoData[m] = true
			}
		}
		host.Score, host.Degraded = score, degraded
		fleet.Changed++
		fleet.MeanScore += score
		fleet.MaxScore = max(fleet.MaxScore, score)
		if degraded {
			fleet.Degraded++
		}
	}
	if fleet.Changed > 0 {
		fleet.MeanScore /= float64(fleet.Changed)
		fleet.FractionDegraded = float64(fleet.Degraded) / float64(fleet.Changed)
	}
	e.env.Fleet = fleet
	e.env.Phase = phase
	e.env.Elapsed = elapsed
	e.env.Host = nil

	e.result.HostFires = e.result.HostFires[:0]
	for i := range e.policies {
		e.evaluate(i, tick)
	}
	e.env.Host = nil
	return &e.result
}

// countSilence counts this tick towards the silence of every changed
// host that is silent (Metric.Silent) on a metric policy ps reads, ends
// it on every other host, and returns the longest silence: a fleet in which every
// host misses one scrape now and then is not a fleet without data.
func (e *Engine) countSilence(ps *policyState) int {
	longest := int32(0)
	for h := range e.nh {
		if !e.changed[h] || e.excluded[h] || !e.misses(h, ps.metrics) {
			ps.silent[h] = 0
			continue
		}
		ps.silent[h]++
		longest = max(longest, ps.silent[h])
	}
	ps.silentAny = true
	return int(longest)
}

// misses reports whether host h is silent (Metric.Silent) on one of
// metrics (every metric when nil).
func (e *Engine) misses(h int, metrics []int) bool {
	states := e.states[h*e.nm : (h+1)*e.nm]
	if metrics == nil {
		for m := range states {
			if states[m].Silent {
				return true
			}
		}
		return false
	}
	for _, m := range metrics {
		if states[m].Silent {
			return true
		}
	}
	return false
}

// evaluate runs policy i and fills its result; tick counts this
// evaluation's no data towards the policy's consecutive no-data ticks,
// unless every metric it misses is missing fleet-wide (FleetNoData).
func (e *Engine) evaluate(i int, tick bool) {
	ps := &e.policies[i]
	res := &e.result.Policies[i]
	noData, fleetGap := false, true
	missing := func(m int) {
		if e.metricNoData[m] {
			noData = true
			fleetGap = fleetGap && e.fleetNoData[m]
		}
	}
	if ps.metrics == nil {
		for m := range e.nm {
			missing(m)
		}
	} else {
		for _, m := range ps.metrics {
			missing(m)
		}
	}
	fleetGap = fleetGap && noData
	ticks := 0
	switch {
	case !noData:
		if ps.silentAny {
			clear(ps.silent)
			ps.silentAny = false
		}
	case !tick, fleetGap:
		// Neither counted nor broken.
		ticks = int(slices.Max(ps.silent))
	default:
		ticks = e.countSilence(ps)
	}
	res.NoData, res.FleetNoData, res.NoDataTicks, res.Err = noData, fleetGap, ticks, nil

	fired := false
	if ps.ev.HasFleet() {
		ok, err := ps.ev.EvalFleet(&e.env)
		res.Err = err
		fired = ok && err == nil
	}
	if ps.ev.HasHost() {
		for j, host := range e.env.Hosts {
			e.env.Host = host
			ok, err := ps.ev.EvalHost(&e.env, host)
			if err != nil {
				if res.Err == nil {
					res.Err = err
				}
				continue
			}
			if ok {
				e.result.HostFires = append(e.result.HostFires, HostFire{Policy: ps.ev, Host: e.envIdx[j]})
			}
		}
		e.env.Host = nil
	}
	switch {
	case fired:
		res.Outcome = OutcomeFire
	case res.Err != nil:
		res.Outcome = OutcomeError
	case noData:
		res.Outcome = OutcomeNoData
	default:
		res.Outcome = OutcomePass
	}
}
