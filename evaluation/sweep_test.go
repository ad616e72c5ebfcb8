package evaluation

import (
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/policies"
)

type variant struct {
	name   string
	setup  func()
	tweak  func(*policies.DetectorConfig)
	policy string
}

var variants []variant

// run replays cases through rollguard medium as the variant sets it up.
func (v variant) run(cs []*Case, dir string) *Results {
	if v.setup != nil {
		v.setup()
	}
	pol := v.policy
	if pol == "" {
		pol = "top_mean(hosts, 0.30) > 5"
	}
	return Run(cs, func() []Judge {
		r := NewRollguard("medium", pol, dir)
		r.Tweak = v.tweak
		return []Judge{r}
	}, 2)
}

// TestSweep prints compact figures of rollguard medium variants
// (ROLLGUARD_SWEEP=substring of the variants' names).
func TestSweep(t *testing.T) {
	sel := os.Getenv("ROLLGUARD_SWEEP")
	if sel == "" {
		t.Skip("ROLLGUARD_SWEEP")
	}
	cs := cases(t)
	dir := t.TempDir()
	for _, v := range variants {
		if sel != "all" && !strings.Contains(v.name, sel) {
			continue
		}
		printSweep(v.run(cs, dir), v.name)
	}
}

// headline is a run's figures over every data set and protocol: caught /
// no-change rolled back over both halves and per half, and the polls from
// visible to decided of a step of twice the tolerance (median / p90).
func headline(res *Results) string {
	both := res.Tally(0, func(*Case) bool { return true })
	dev, held := res.Tally(0, byHalf(Dev)), res.Tally(0, byHalf(HeldOut))
	st := res.Tally(0, byKind(stepKind(2)))
	return fmt.Sprintf("both %5d/%5d %.1f%% / %4d/%5d %.2f%% | dev %.1f%% / %.2f%% | held-out %.1f%% / %.2f%% | step2 %s (%d/%d)",
		both.Caught, both.Visible, 100*both.CatchRate(), both.RolledBack, both.NoChange, 100*both.FalseRate(),
		100*dev.CatchRate(), 100*dev.FalseRate(), 100*held.CatchRate(), 100*held.FalseRate(), delays(st), st.Caught, st.Visible)
}

func printSweep(res *Results, name string) {
	fmt.Printf("== %s: %s\n", name, headline(res))
	var devs strings.Builder
	for _, d := range Datasets {
		t := res.Tally(0, and(byDataset(d), byHalf(Dev)))
		fmt.Fprintf(&devs, " %s %d/%d %d/%d |", d, t.Caught, t.Visible, t.RolledBack, t.NoChange)
	}
	fmt.Printf("   dev:%s\n", devs.String())
	var helds strings.Builder
	for _, d := range Datasets {
		t := res.Tally(0, and(byDataset(d), byHalf(HeldOut)))
		fmt.Fprintf(&helds, " %s %d/%d %d/%d |", d, t.Caught, t.Visible, t.RolledBack, t.NoChange)
	}
	fmt.Printf("  held:%s\n", helds.String())
	for _, d := range Datasets {
		var b strings.Builder
		for _, p := range Protocols {
			f := and(byDataset(d), byProtocol(p))
			td, th := res.Tally(0, and(f, byHalf(Dev))), res.Tally(0, and(f, byHalf(HeldOut)))
			if !td.Applies && !th.Applies {
				continue
			}
			short := map[string]string{ShortCanary: "short", LongCanary: "long", FleetWaves: "waves", FleetMove: "move", ControlsImprove: "ctrl+", ColdStart: "cold"}[p]
			if td.Visible+th.Visible > 0 {
				fmt.Fprintf(&b, " %s %.1f/%.1f|%.1f/%.1f", short, 100*td.CatchRate(), 100*td.FalseRate(), 100*th.CatchRate(), 100*th.FalseRate())
			} else {
				fmt.Fprintf(&b, " %s -/%.1f|-/%.1f", short, 100*td.FalseRate(), 100*th.FalseRate())
			}
		}
		a := res.Tally(0, byDataset(d))
		fmt.Printf("   %-11s all %.1f/%.2f:%s\n", d, 100*a.CatchRate(), 100*a.FalseRate(), b.String())
	}
}

func init() {
	variants = append(variants,
		variant{name: "base"},
		// The burst's hold at a share of its second poll's excess (medium
		// holds at half), and medium before it: no share, 2.25 spreads.
		variant{name: "tried-hold0", tweak: func(c *policies.DetectorConfig) { c.BurstHold = 0 }},
		variant{name: "tried-hold25", tweak: func(c *policies.DetectorConfig) { c.BurstHold = 0.25 }},
		variant{name: "tried-hold75", tweak: func(c *policies.DetectorConfig) { c.BurstHold = 0.75 }},
		variant{name: "tried-hold100", tweak: func(c *policies.DetectorConfig) { c.BurstHold = 1 }},
		variant{name: "tried-hold50-spreads225", tweak: func(c *policies.DetectorConfig) { c.BurstSpreads = 2.25 }},
		variant{name: "before-hold", tweak: func(c *policies.DetectorConfig) { c.BurstHold, c.BurstSpreads = 0, 2.25 }},
		variant{name: "fraction", policy: "fraction(hosts, .degraded) >= 0.3"},
		variant{name: "before-recent0", tweak: func(c *policies.DetectorConfig) { c.Recent = 0 }},
		variant{name: "before-conf999", tweak: func(c *policies.DetectorConfig) { c.Confidence = 0.999 }},
		variant{name: "x-noburst", tweak: func(c *policies.DetectorConfig) { c.Burst = 1e9 }},
		variant{name: "x-nocusum", tweak: func(c *policies.DetectorConfig) { c.Limit = 1e9 }},
		variant{name: "x-nowindow", tweak: func(c *policies.DetectorConfig) { c.Confidence = 1 - 1e-15 }},
		// The window test at the high preset's confidence and below.
		variant{name: "tried-window95", tweak: func(c *policies.DetectorConfig) { c.Confidence = 0.95 }},
		variant{name: "tried-window90", tweak: func(c *policies.DetectorConfig) { c.Confidence = 0.90 }},
		// Of TestGrid's five points that meet the targets on the
		// development halves, the one that rolls back the fewest over both
		// halves at 90% caught: no CUSUM, the window test at 99.5%,
		// bursts from 3 spreads.
		variant{name: "tried-grid-dev", tweak: func(c *policies.DetectorConfig) {
			c.Limit, c.Confidence, c.BurstSpreads = 1e9, 0.995, 3
		}},
	)
}

// TestGrid replays rollguard medium over a grid of its four main settings
// (the CUSUM's limit, 1e9 = no CUSUM; the window test's confidence; the
// burst's multiple and least reach) and prints the figures pooled over
// every data set and protocol, and per half (ROLLGUARD_GRID=1).
func TestGrid(t *testing.T) {
	if os.Getenv("ROLLGUARD_GRID") == "" {
		t.Skip("ROLLGUARD_GRID")
	}
	cs := cases(t)
	dir := t.TempDir()
	for _, limit := range []float64{6.5, 13, 1e9} {
		for _, conf := range []float64{0.98, 0.995} {
			for _, burst := range []float64{1.7, 2.1} {
				for _, spreads := range []float64{2, 3} {
					res := variant{tweak: func(c *policies.DetectorConfig) {
						c.Limit, c.Confidence, c.Burst, c.BurstSpreads = limit, conf, burst, spreads
					}}.run(cs, dir)
					fmt.Printf("limit %-5g confidence %-5g burst %-3g spreads %-4g | %s\n", limit, conf, burst, spreads, headline(res))
				}
			}
		}
	}
}

func TestCounts(t *testing.T) {
	if os.Getenv("ROLLGUARD_SWEEP") == "" {
		t.Skip()
	}
	n := map[string][2]int{}
	for _, c := range cases(t) {
		if c.Regression {
			continue
		}
		k := c.Dataset + "/" + c.Protocol
		x := n[k]
		x[c.Half]++
		n[k] = x
	}
	for k, x := range n {
		fmt.Printf("%-32s dev %5d held %5d\n", k, x[0], x[1])
	}
}

// TestLost compares two variants' catches by data set, protocol and kind
// (ROLLGUARD_LOST=a,b).
func TestLost(t *testing.T) {
	sel := os.Getenv("ROLLGUARD_LOST")
	if sel == "" {
		t.Skip()
	}
	names := strings.Split(sel, ",")
	cs := cases(t)
	dir := t.TempDir()
	var polls [][]int
	for _, n := range names {
		for _, v := range variants {
			if v.name != n {
				continue
			}
			polls = append(polls, v.run(cs, dir).Polls[0])
		}
	}
	lost, won := map[string]int{}, map[string]int{}
	for i, c := range cs {
		if !c.Regression || c.VisibleAt == 0 || polls[0][i] < 0 {
			continue
		}
		k := fmt.Sprintf("%-12s %-14s %-22s", c.Dataset, c.Protocol, c.Kind)
		if polls[0][i] > 0 && polls[1][i] == 0 {
			lost[k]++
			if os.Getenv("ROLLGUARD_LIFTVIS") != "" {
				lost[k+" "+liftVisible(c)]++
			}
			if show := os.Getenv("ROLLGUARD_SHOW"); show != "" && strings.Contains(c.ID, show) && lost[k] <= 3 {
				v := c.Materialize()
				for _, e := range c.effects[:1] {
					fmt.Printf("%s (visible at %d, decided at %d) metric %s:\n  base:", c.ID, c.VisibleAt, polls[0][i], c.Metrics()[e.Metric].Name)
					b := v.BaselineOf(e.Host, e.Metric, 0)
					med := safeMedian(clean(b))
					for _, x := range b {
						fmt.Printf(" %.2f", x/med)
					}
					fmt.Printf("\n  after:")
					for j := range c.Polls() {
						fmt.Printf(" %.2f", v.Value(e.Host, e.Metric, j)/med)
					}
					fmt.Println()
				}
			}
		}
		if polls[0][i] == 0 && polls[1][i] > 0 {
			won[k]++
		}
	}
	for _, k := range slices.Sorted(maps.Keys(lost)) {
		fmt.Printf("lost %4d  %s\n", lost[k], k)
	}
	for _, k := range slices.Sorted(maps.Keys(won)) {
		fmt.Printf("won  %4d  %s\n", won[k], k)
	}
}

// TestOne traces one case (ROLLGUARD_ONE=id, ROLLGUARD_ONE_VARIANT=name).
func TestOne(t *testing.T) {
	id := os.Getenv("ROLLGUARD_ONE")
	if id == "" {
		t.Skip()
	}
	for _, v := range variants {
		if v.name == os.Getenv("ROLLGUARD_ONE_VARIANT") && v.setup != nil {
			v.setup()
		}
	}
	for _, c := range cases(t) {
		if c.ID != id {
			continue
		}
		r := NewRollguard("medium", "top_mean(hosts, 0.30) > 5", t.TempDir())
		r.Trace = func(eng *policies.Engine, s, k int) {
			for m, mt := range c.Metrics() {
				met := eng.Host(0).Metrics[mt.Name]
				ev := eng.Evidence(0, m)
				fmt.Printf("stage %d poll %d %s: cur %.4g base %.4g tol %.3g score %.2f burst %.2f cusum %.2f repeat %.2f window %.2f\n", s, k, mt.Name, met.Current, met.Baseline, met.Tolerance, met.Score, ev.Burst, ev.CUSUM, ev.Repeat, ev.Window)
			}
		}
		fmt.Println("decided", r.Decide(c.Materialize()))
	}
}

// TestMissed counts a variant's missed visible regressions
// (ROLLGUARD_MISSED=variant).
func TestMissed(t *testing.T) { breakdown(t, "ROLLGUARD_MISSED", true) }

// TestKinds breaks a variant's no-change rollbacks down by data set,
// protocol and kind (ROLLGUARD_KINDS=variant).
func TestKinds(t *testing.T) { breakdown(t, "ROLLGUARD_KINDS", false) }

// breakdown prints, per data set, protocol, kind and half, how many
// visible regressions the variant named by env missed (regressions) or how
// many no-change rollouts it rolled back.
func breakdown(t *testing.T, env string, regressions bool) {
	name := os.Getenv(env)
	if name == "" {
		t.Skip()
	}
	cs := cases(t)
	i := slices.IndexFunc(variants, func(v variant) bool { return v.name == name })
	if i < 0 {
		t.Fatalf("%s=%s: no such variant", env, name)
	}
	res := variants[i].run(cs, t.TempDir())
	n, all := map[string]int{}, map[string]int{}
	for i, c := range cs {
		if c.Regression != regressions || regressions && c.VisibleAt == 0 || res.Polls[0][i] < 0 {
			continue
		}
		k := fmt.Sprintf("%-12s %-16s %-22s %s", c.Dataset, c.Protocol, c.Kind, c.Half)
		all[k]++
		if (res.Polls[0][i] == 0) == regressions {
			n[k]++
		}
	}
	what := "rolled back"
	if regressions {
		what = "missed"
	}
	for _, k := range slices.Sorted(maps.Keys(all)) {
		fmt.Printf("%s %4d of %5d  %s\n", what, n[k], all[k], k)
	}
}

// liftVisible says whether c's injected effect is visible to the oracle
// against the level of the last 3 baseline polls instead of the median.
func liftVisible(c *Case) string {
	if len(c.effects) == 0 {
		return "labelled"
	}
	v := c.Materialize()
	e := c.effects[0]
	b := v.BaselineOf(e.Host, e.Metric, 0)
	recent := safeMedian(clean(slices.Clone(b[len(b)-3:])))
	med := safeMedian(clean(b))
	mt := c.Metrics()[e.Metric]
	lift := max(0, mt.Worse*(recent-med))
	shifted := slices.Clone(b)
	ex := make([]float64, c.Polls())
	for i := range ex {
		ex[i] = math.NaN()
		if i >= e.From && i < e.To {
			ex[i] = mt.Worse*(v.Value(e.Host, e.Metric, i)-med) - lift
		}
	}
	if visibleAt(mt, shifted, ex) >= 0 {
		return "visible over the recent level"
	}
	return "NOT visible over the recent level"
}

// TestOracleFloor counts the no-change rollouts in which some judged host's
// metric, from the apply of its stage on (or from any poll of it on), looks
// to the visibility oracle like a visible regression: a judge that catches
// every visible regression starting at the apply cannot tell those apart.
func TestOracleFloor(t *testing.T) {
	if os.Getenv("ROLLGUARD_SWEEP") == "" {
		t.Skip()
	}
	type k struct {
		d, p string
		h    Half
	}
	n, at0, any := map[k]int{}, map[k]int{}, map[k]int{}
	for _, c := range cases(t) {
		if c.Regression {
			continue
		}
		key := k{c.Dataset, c.Protocol, c.Half}
		n[key]++
		found0, foundAny := oracleSees(c)
		if found0 {
			at0[key]++
		}
		if foundAny {
			any[key]++
		}
	}
	var tot [2][3]int
	for _, key := range slices.SortedFunc(maps.Keys(n), func(a, b k) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	}) {
		fmt.Printf("%-12s %-18s %-8s n %5d  visible from the apply %5.1f%%  from any poll %5.1f%%\n", key.d, key.p, key.h, n[key],
			100*float64(at0[key])/float64(n[key]), 100*float64(any[key])/float64(n[key]))
		if !(key.d == "nezha" && key.p == ShortCanary) {
			tot[key.h][0] += n[key]
			tot[key.h][1] += at0[key]
			tot[key.h][2] += any[key]
		}
	}
	for h := range 2 {
		fmt.Printf("pooled %s (no Nezha short canary): from the apply %.1f%%, from any poll %.1f%%\n", Half(h),
			100*float64(tot[h][1])/float64(tot[h][0]), 100*float64(tot[h][2])/float64(tot[h][0]))
	}
}

// oracleSees reports whether, in a no-change rollout, some judged host's
// metric looks to the visibility oracle like a visible regression from the
// apply of its stage on (at0), or from some poll of the stage on (some).
func oracleSees(c *Case) (at0, some bool) {
	v := c.Materialize()
	for s, st := range c.Stages {
		for _, h := range st.Hosts {
			for m, mt := range c.Metrics() {
				base := v.BaselineOf(h, m, s)
				cb := clean(base)
				if len(cb) == 0 {
					continue
				}
				med := median(cb)
				w := v.Window(h, m, s)
				for from := range w {
					ex := make([]float64, len(w))
					for i := range ex {
						ex[i] = math.NaN()
						if i >= from {
							ex[i] = mt.Worse * (w[i] - med)
						}
					}
					if visibleAt(mt, base, ex) >= 0 {
						some = true
						if from == 0 {
							at0 = true
						}
					}
					if some && at0 {
						return at0, some
					}
				}
			}
		}
	}
	return at0, some
}
