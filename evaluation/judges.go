package evaluation

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aclements/go-moremath/stats"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/runner"
)

// Judge decides rollouts.
type Judge interface {
	// Name names the judge in the tables.
	Name() string
	// Applies reports whether the judge can judge c at all (a judge that
	// compares with controls cannot judge a rollout without any).
	Applies(c *Case) bool
	// Decide returns the monitored poll (1-based, over every stage) at
	// which the judge rolls back, or 0 when it promotes.
	Decide(v *View) int
}

// The peers' judges, written here as a user of Flagger, Kayenta or a
// hand-written alert rule would have them. Each judges every host of the
// stage being monitored on every watched metric; a host fails when one of
// its metrics fails, and the stage fails when at least 30% of its hosts
// (at least one) fail, the same share as the README's fraction rule. The
// untouched hosts (those of later stages) are the controls.

// peer is a judge made of a check at every poll and a check at the end of
// every stage.
type peer struct {
	name    string
	applies func(c *Case) bool
	// poll checks poll k (1-based) of stage s.
	poll func(v *View, s, k int) bool
	// end checks stage s after its last poll.
	end func(v *View, s int) bool
}

func (p *peer) Name() string { return p.name }

func (p *peer) Applies(c *Case) bool { return p.applies == nil || p.applies(c) }

func (p *peer) Decide(v *View) int {
	for s, st := range v.Stages {
		for k := 1; k <= st.Polls; k++ {
			if p.poll != nil && p.poll(v, s, k) {
				return v.StageStart(s) + k
			}
		}
		if p.end != nil && p.end(v, s) {
			return v.StageStart(s) + st.Polls
		}
	}
	return 0
}

// stageFails reports whether the stage fails: f holds for some metric
// of at least 30% of the hosts of stage s.
func stageFails(v *View, s int, f func(h, m int) bool) bool {
	hosts := v.Stages[s].Hosts
	failed := 0
	for _, h := range hosts {
		for m := range v.metrics {
			if f(h, m) {
				failed++
				break
			}
		}
		if float64(failed) >= 0.3*float64(len(hosts)) && failed > 0 {
			return true
		}
	}
	return false
}

// controls are the hosts untouched during stage s: those of no stage up to
// s.
func controls(v *View, s int) []int {
	changed := make([]bool, len(v.hosts))
	for _, st := range v.Stages[:s+1] {
		for _, h := range st.Hosts {
			changed[h] = true
		}
	}
	var out []int
	for h, c := range changed {
		if !c {
			out = append(out, h)
		}
	}
	return out
}

func clean(xs []float64) []float64 {
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			out = append(out, x)
		}
	}
	return out
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return medianSorted(s)
}

// mad is the median absolute deviation from med, scaled to a standard
// deviation for normal data.
func mad(xs []float64, med float64) float64 {
	d := make([]float64, len(xs))
	for i, x := range xs {
		d[i] = math.Abs(x - med)
	}
	return 1.4826 * median(d)
}

// Static is Flagger's threshold check as a user writes it against the
// baseline: the mean over the stage so far worse than the baseline mean by
// more than share of it, at every poll.
func Static(share float64) Judge {
	return &peer{
		name: fmt.Sprintf("static: window mean %g%% worse than baseline mean", 100*share),
		poll: func(v *View, s, k int) bool {
			return stageFails(v, s, func(h, m int) bool {
				b, w := clean(v.BaselineOf(h, m, s)), clean(v.Window(h, m, s)[:k])
				if len(b) == 0 || len(w) == 0 {
					return false
				}
				bm := mean(b)
				return v.src.Metrics[v.metrics[m]].Worse*(mean(w)-bm) > share*math.Abs(bm)
			})
		},
	}
}

// MADZ is the alert rule a user writes by hand: the poll's robust z
// against the baseline (median, MAD x 1.4826) over limit, for polls
// consecutive polls.
func MADZ(limit float64, polls int) Judge {
	return &peer{
		name: fmt.Sprintf("median/MAD z > %g on %d poll(s)", limit, polls),
		poll: func(v *View, s, k int) bool {
			if k < polls {
				return false
			}
			return stageFails(v, s, func(h, m int) bool {
				b := clean(v.BaselineOf(h, m, s))
				if len(b) == 0 {
					return false
				}
				med := median(b)
				spread := mad(b, med)
				worse := v.src.Metrics[v.metrics[m]].Worse
				for _, x := range v.Window(h, m, s)[k-polls : k] {
					d := worse * (x - med)
					if math.IsNaN(x) || d <= 0 || spread > 0 && d/spread <= limit {
						return false
					}
				}
				return true
			})
		},
	}
}

func init() {
	// Kayenta's Mann-Whitney classifier uses the normal approximation
	// (with tie correction); so do these judges, at every sample size.
	stats.MannWhitneyExactLimit = 0
	stats.MannWhitneyTiesExactLimit = 0
}

// mannWhitneyWorse reports whether x is worse than y at two-sided
// confidence 1 - alpha, in direction worse.
func mannWhitneyWorse(x, y []float64, worse, alpha float64) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	r, err := stats.MannWhitneyUTest(x, y, stats.LocationDiffers)
	if err != nil {
		return false // every value equal: no difference
	}
	return r.P < alpha && worse*(r.U-float64(len(x)*len(y))/2) > 0
}

// KayentaOwn is Kayenta's Mann-Whitney judge at confidence percent (98 in
// the tables) of each stage's window against the host's own baseline, at
// the end of the stage.
func KayentaOwn(confidence float64) Judge {
	alpha := (100 - confidence) / 100
	return &peer{
		name: fmt.Sprintf("Kayenta-style Mann-Whitney %g%%, own history", confidence),
		end: func(v *View, s int) bool {
			return stageFails(v, s, func(h, m int) bool {
				return mannWhitneyWorse(clean(v.Window(h, m, s)), clean(v.BaselineOf(h, m, s)), v.src.Metrics[v.metrics[m]].Worse, alpha)
			})
		},
	}
}

// relativeTo expresses xs relative to the level med: as a ratio when the
// level is positive, as a difference otherwise.
func relativeTo(xs []float64, med float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		if med > 0 {
			out[i] = x / med
		} else {
			out[i] = x - med
		}
	}
	return out
}

// KayentaControls is Kayenta's Mann-Whitney judge at confidence percent
// (98 in the tables) of each stage's window against the controls' windows over the same polls, at the
// end of the stage. Hosts differ in level, so every host's values are
// taken relative to its own baseline median; a stage without controls (the
// last wave) is not judged.
func KayentaControls(confidence float64) Judge {
	alpha := (100 - confidence) / 100
	return &peer{
		name:    fmt.Sprintf("Kayenta-style Mann-Whitney %g%%, vs controls", confidence),
		applies: func(c *Case) bool { return len(c.hosts) > len(c.Stages[0].Hosts) },
		end: func(v *View, s int) bool {
			ctrl := controls(v, s)
			if len(ctrl) == 0 {
				return false
			}
			return stageFails(v, s, func(h, m int) bool {
				b := clean(v.BaselineOf(h, m, s))
				if len(b) == 0 {
					return false
				}
				var pooled []float64
				for _, c := range ctrl {
					cb := clean(v.BaselineOf(c, m, s))
					if len(cb) > 0 {
						pooled = append(pooled, relativeTo(clean(v.Window(c, m, s)), median(cb))...)
					}
				}
				x := relativeTo(clean(v.Window(h, m, s)), median(b))
				return mannWhitneyWorse(x, pooled, v.src.Metrics[v.metrics[m]].Worse, alpha)
			})
		},
	}
}

// lowerMedian is the median of xs taken on the better side in direction
// worse (for an even count, the better of the two middle values).
func lowerMedian(xs []float64, worse float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	if worse > 0 {
		return s[n/2-1]
	}
	return s[n/2]
}

// Simple is the simple rule: at the end of each stage, the window's lower
// median against the host's baseline median moved by the untouched hosts'
// median ratio (window lower median over baseline median), rolled back
// when it is worse by more than spreads robust spreads of the baseline (3
// in the tables), with the spread floored at 0.5% of the level.
func Simple(spreads float64) Judge {
	name := "simple rule: lower median vs baseline median x controls' ratio"
	if spreads != 3 {
		name += fmt.Sprintf(", %g MAD", spreads)
	}
	return &peer{
		name: name,
		end: func(v *View, s int) bool {
			return stageFails(v, s, func(h, m int) bool {
				b, w := clean(v.BaselineOf(h, m, s)), clean(v.Window(h, m, s))
				if len(b) == 0 || len(w) == 0 {
					return false
				}
				worse := v.src.Metrics[v.metrics[m]].Worse
				med := median(b)
				var ratios []float64
				for _, c := range controls(v, s) {
					cb, cw := clean(v.BaselineOf(c, m, s)), clean(v.Window(c, m, s))
					if len(cb) > 0 && len(cw) > 0 && median(cb) > 0 {
						ratios = append(ratios, lowerMedian(cw, worse)/median(cb))
					}
				}
				expected := med
				if len(ratios) > 0 && med > 0 {
					expected = med * median(ratios)
				}
				limit := max(spreads*mad(b, med), 0.005*math.Abs(med))
				return worse*(lowerMedian(w, worse)-expected) > limit
			})
		},
	}
}

// Rollguard is rollguard as a user runs it: a rollout.yaml with the data
// set's queries and interval, the given sensitivity and the one policy
// rollback_when, loaded by runner.Load; the engine built by
// runner.EngineConfig; every tick evaluated by the real policies.Engine,
// with on_no_data: fail.
type Rollguard struct {
	// Tweak, when set, changes the detector configuration the spec gives
	// (for the trade-off curves); Label then names the change. Warmup,
	// when set, is written as detection.warmup.
	Tweak  func(*policies.DetectorConfig)
	Label  string
	Warmup string
	// Inspect, when set, is called when the judge rolls back, with the
	// engine as it decided and the values it read (v.Start places the
	// stages): stage s, poll k of it (1-based), at the end-of-stage
	// verdict or at a tick.
	Inspect func(eng *policies.Engine, v *View, s, k int, verdict bool)
	Trace   func(eng *policies.Engine, s, k int)

	name, sensitivity, policy string
	// dir is where specs go, in specDir, a directory of this judge's own.
	dir, specDir string
	loaded       map[string]*loadedSpec
}

type loadedSpec struct {
	path string // the rollout.yaml
	spec *runner.Spec
	pols []*policies.Policy
	// err is why Load refused the spec.
	err error
}

// NewRollguard returns the rollguard judge for a sensitivity and a
// rollback_when expression; dir is where its specs are written.
func NewRollguard(sensitivity, rollbackWhen, dir string) *Rollguard {
	return &Rollguard{
		name:        fmt.Sprintf("rollguard %s: %s", sensitivity, rollbackWhen),
		sensitivity: sensitivity, policy: rollbackWhen, dir: dir, loaded: map[string]*loadedSpec{},
	}
}

func (r *Rollguard) Name() string {
	if r.Label != "" {
		return r.name + ", " + r.Label
	}
	return r.name
}

// Applies reports whether rollguard accepts the spec of c: a stage too
// short to roll back a clear step is refused by runner.Load, as
// `rollguard validate` refuses it (see Refusal).
func (r *Rollguard) Applies(c *Case) bool {
	_, err := r.spec(c)
	return err == nil
}

// Refusal is why rollguard refuses the spec of c, or "".
func (r *Rollguard) Refusal(c *Case) string {
	if _, err := r.spec(c); err != nil {
		return err.Error()
	}
	return ""
}

// spec loads (once per shape) the rollout.yaml a user would write for c:
// its stages as canary and waves, its metrics, the sensitivity and the
// policy. Host names do not change what detection does: the spec names
// the hosts h1, h2, ... in the case's order.
func (r *Rollguard) spec(c *Case) (*loadedSpec, error) {
	var b strings.Builder
	names := make([]string, len(c.hosts))
	for i := range names {
		names[i] = fmt.Sprintf("h%d", i+1)
	}
	fmt.Fprintf(&b, "name: evaluation\ntargets:\n  static: [%s]\n", strings.Join(names, ", "))
	fmt.Fprintf(&b, "canary:\n  hosts: %d\n  monitor: %s\n", len(c.Stages[0].Hosts), c.Interval*time.Duration(c.Stages[0].Polls))
	b.WriteString("waves:\n")
	rest := len(c.hosts) - len(c.Stages[0].Hosts)
	for _, st := range c.Stages[1:] {
		fmt.Fprintf(&b, "  - {size: %d, monitor: %s}\n", len(st.Hosts), c.Interval*time.Duration(st.Polls))
		rest -= len(st.Hosts)
	}
	if rest > 0 {
		// A canary protocol judges the canary stage; the rollout would
		// go on with the rest.
		fmt.Fprintf(&b, "  - {size: 100%%, monitor: %s}\n", c.Interval*time.Duration(c.Stages[0].Polls))
	}
	b.WriteString("apply:\n  playbook: site.yml\n")
	fmt.Fprintf(&b, "metrics:\n  interval: %s\n  baseline: %s\n  queries:\n", c.Interval, c.Interval*time.Duration(c.JudgedBaseline()))
	for _, m := range c.Metrics() {
		worse := "higher"
		if m.Worse < 0 {
			worse = "lower"
		}
		abs := ""
		if m.Unit > 0 && m.Bound == 0 {
			// A count at 0 has no level to take a share of: the README
			// tells the user to state the smallest count that matters.
			abs = fmt.Sprintf(", tolerance_abs: %g", m.Unit)
		}
		fmt.Fprintf(&b, "    %s: {query: '%s', worse: %s%s}\n", m.Name, m.Name, worse, abs)
	}
	fmt.Fprintf(&b, "detection:\n  sensitivity: %s\n", r.sensitivity)
	if r.Warmup != "" {
		fmt.Fprintf(&b, "  warmup: %s\n", r.Warmup)
	}
	fmt.Fprintf(&b, "policies:\n  - name: judge\n    rollback_when: '%s'\n", r.policy)
	key := b.String()
	if l, ok := r.loaded[key]; ok {
		if l.err != nil {
			return nil, l.err
		}
		return l, nil
	}
	if r.specDir == "" {
		// Judges of parallel workers share dir: each writes its own.
		d, err := os.MkdirTemp(r.dir, "rollguard-")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(d, "site.yml"), []byte("- hosts: all\n  tasks: []\n"), 0o644); err != nil {
			return nil, err
		}
		r.specDir = d
	}
	path := filepath.Join(r.specDir, fmt.Sprintf("rollout-%d.yaml", len(r.loaded)))
	if err := os.WriteFile(path, []byte(key), 0o644); err != nil {
		return nil, err
	}
	spec, pols, err := runner.Load(path, func(string) (string, bool) { return "", false })
	if err != nil {
		// What Load says after the file's position.
		msg := err.Error()
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, path) {
			msg = msg[i+2:]
		}
		r.loaded[key] = &loadedSpec{err: errors.New(msg)}
		return nil, r.loaded[key].err
	}
	l := &loadedSpec{path: path, spec: spec, pols: pols}
	r.loaded[key] = l
	return l, nil
}

// Decide replays the case through the engine the way a rollout runs its
// waves: baselines for the stage's hosts and every untouched host over the
// window before the stage, StartWave, then a tick per poll, and the
// end-of-stage verdict. A stage that ends holding (a gap in the metrics
// on the untouched hosts too) is monitored on, poll by poll with the
// case's following data, until the hold ends or detection.hold_limit
// (default: the stage's monitoring period) has passed, and then it rolls
// back, as the runner does (runner/wave.go); the stages after it start
// that much later, their changes with them (Case.Staged), so the poll it
// returns is the one `rollguard dry-run` decides at on the case's data.
func (r *Rollguard) Decide(v *View) int {
	l, err := r.spec(v.Case)
	if err != nil {
		panic(err) // the harness writes the spec: a bug, not data
	}
	cfg, err := runner.EngineConfig(l.spec, v.HostNames(), l.pols)
	if err != nil {
		panic(err)
	}
	if r.Tweak != nil {
		r.Tweak(&cfg.Detector)
	}
	eng, err := policies.NewEngine(cfg)
	if err != nil {
		panic(err)
	}
	nh := len(v.hosts)
	obs := make([]float64, nh)
	changed := make([]bool, nh)
	// delays[s] is how many polls stage s starts late.
	delays := make([]int, len(v.Stages))
	slack := holdSlack(v.Case, l.spec)
	view := v
	for s, st := range v.Stages {
		if delays[s] > 0 {
			view = v.Case.Staged(delays, len(v.Stages)-1, slack)
		}
		start := view.Start(s)
		next := start + st.Polls
		for h := range nh {
			if changed[h] {
				continue
			}
			for m := range v.metrics {
				eng.SetBaseline(m, h, view.BaselineOf(h, m, s))
			}
		}
		eng.StartWave(st.Name, s, st.Hosts)
		for _, h := range st.Hosts {
			changed[h] = true
		}
		var untreated *View // built when the stage is held past next
		monitor := v.Interval * time.Duration(st.Polls)
		holdLimit := l.spec.Detection.HoldFor(monitor)
		// The hosts without data when the monitoring period ended, until
		// they report: the stage waits for them only (runner/wave.go).
		var waitFor []int
		ended := false
		k := 1
		for ; ; k++ {
			i := start + k - 1
			if i == view.Extent() {
				// Held past the case's stages: read on (slack is
				// more than the hold limits allow).
				view = v.Case.Staged(delays, len(v.Stages)-1, slack)
			}
			for m := range v.metrics {
				for h := range nh {
					if !changed[h] && i >= next {
						// A later stage's host, not changed yet.
						if untreated == nil {
							untreated = v.Case.Staged(delays, s, slack)
						}
						obs[h] = untreated.Value(h, m, i)
					} else {
						obs[h] = view.Value(h, m, i)
					}
				}
				eng.Observe(m, obs)
			}
			res := eng.Tick(policies.PhaseMonitor, float64(k)*v.Interval.Seconds())
			if r.Trace != nil {
				r.Trace(eng, s, k)
			}
			fire, hold, gap := decided(res, l.pols, cfg.NoDataTicks)
			past := v.Interval * time.Duration(k)
			if past >= monitor {
				if !ended {
					ended, waitFor = true, silentHosts(eng, changed)
				}
				waitFor = slices.DeleteFunc(waitFor, func(h int) bool { return !silent(eng, h) })
				if hold && !gap && len(waitFor) == 0 {
					hold = false
				}
			}
			if fire || hold && past >= monitor+holdLimit {
				if r.Inspect != nil {
					r.Inspect(eng, view, s, k, false)
				}
				return start + k
			}
			if past >= monitor && !hold && (past >= monitor+holdLimit || !fewPolls(eng, st.Hosts)) {
				// Not before every stage host has had the polls a
				// decision needs, up to the hold limit (runner/wave.go).
				break
			}
		}
		if fire, _, _ := decided(eng.Verdict(policies.PhaseMonitor, float64(k)*v.Interval.Seconds()), l.pols, cfg.NoDataTicks); fire {
			if r.Inspect != nil {
				r.Inspect(eng, view, s, k, true)
			}
			return start + k
		}
		// A stage held past its end delays the next (and so every later
		// one).
		if s+1 < len(delays) {
			delays[s+1] = delays[s] + k - st.Polls
		}
	}
	return 0
}

// holdSlack is how many polls past c's stages holds can take its rollout
// under spec: each stage's hold limit, and the poll that ends it.
func holdSlack(c *Case, spec *runner.Spec) int {
	slack := 0
	for _, st := range c.Stages {
		slack += int(spec.Detection.HoldFor(c.Interval*time.Duration(st.Polls))/c.Interval) + 1
	}
	return slack
}

// decided is what a tick's result does, as runner.execution.decide reads
// it: fire when a policy fired or failed, or had no data for noData ticks
// with on_no_data: fail (and some untouched host, in the last wave some
// host of the waves that passed, had data: PolicyResult.FleetNoData);
// hold when a policy has no data with on_no_data: hold, or with
// on_no_data: fail otherwise (a stage never passes on missing data); gap
// when the first hold is a gap in the metrics (it waits for no host).
func decided(res *policies.TickResult, pols []*policies.Policy, noData int) (fire, hold, gap bool) {
	for i, pr := range res.Policies {
		nd := pr.Outcome == policies.OutcomeNoData
		switch {
		case pr.Outcome == policies.OutcomeFire, pr.Outcome == policies.OutcomeError:
			return true, false, false
		case nd && pols[i].OnNoData == policies.NoDataFail && !pr.FleetNoData && pr.NoDataTicks >= noData:
			return true, false, false
		case nd && pols[i].OnNoData != policies.NoDataIgnore:
			if !hold {
				gap = pols[i].OnNoData == policies.NoDataFail && pr.FleetNoData
			}
			hold = true
		}
	}
	return false, hold, gap
}

// fewPolls reports whether some host of hosts has had fewer polls with
// data since its apply than a decision needs (policies.Engine.DataPolls),
// as runner's execution.fewPolls does.
func fewPolls(eng *policies.Engine, hosts []int) bool {
	return slices.ContainsFunc(hosts, func(h int) bool {
		have, need := eng.DataPolls(h)
		return have < need
	})
}

// silentHosts returns the changed hosts silent on some metric at the
// engine's last tick (the harness's policies read every metric).
func silentHosts(eng *policies.Engine, changed []bool) []int {
	var out []int
	for h, c := range changed {
		if c && silent(eng, h) {
			out = append(out, h)
		}
	}
	return out
}

// silent reports whether host h was silent (policies.Metric.Silent) on
// some metric at the last tick.
func silent(eng *policies.Engine, h int) bool {
	for _, m := range eng.Host(h).Metrics {
		if m.Silent {
			return true
		}
	}
	return false
}

// Judges returns every judge, the peers first; dir is where rollguard's
// specs are written.
func Judges(dir string) []Judge {
	return []Judge{
		Static(0.10),
		Static(0.20),
		KayentaOwn(98),
		KayentaControls(98),
		MADZ(3, 1),
		MADZ(3, 2),
		Simple(3),
		NewRollguard("low", seedRule, dir),
		Reference(dir),
		NewRollguard("high", seedRule, dir),
		NewRollguard("medium", "fraction(hosts, .degraded) >= 0.3", dir),
	}
}

// Curve returns rollguard medium with the seed rule at settings on both
// sides of the default, for the trade-off curves: the burst's least reach
// in spreads swept (lower catches more and rolls back more), without the
// recent level (DetectorConfig.Recent 0), and the warm-up cut to one poll
// (what a 2-poll canary at 1-minute polls needs).
func Curve(dir string) []Judge {
	var out []Judge
	for _, z := range []float64{1.5, 2, 2.25, 2.5, 3, 4} {
		r := Reference(dir)
		r.Label = fmt.Sprintf("burst >= %g spreads", z)
		r.Tweak = func(c *policies.DetectorConfig) { c.BurstSpreads = z }
		out = append(out, r)
	}
	r := Reference(dir)
	r.Label = "no recent level"
	r.Tweak = func(c *policies.DetectorConfig) { c.Recent = 0 }
	out = append(out, r)
	r = Reference(dir)
	r.Label, r.Warmup = "warmup 1m", "1m"
	return append(out, r)
}
