package evaluation

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rollguard/rollguard/policies"
)

// fire is one degraded host's metric at a no-change rollout's rollback.
type fire struct {
	c             *Case
	stage, poll   int
	verdict       bool
	host, metric  int
	hostStage     int
	evidence      string
	ev            policies.Evidence
	degradedHosts int
	changedHosts  int
	// drift is the last 3 baseline polls' median over the baseline
	// median, own the stage's window median so far, ctrl the controls'
	// median move, each in tolerances in the worse direction; corr the
	// correlation of the host with the controls' median over the
	// baseline.
	drift, own, ctrl, corr float64
	// metricsDegraded is how many of the host's metrics were degraded.
	metricsDegraded int
}

// TestDiagnose breaks rollguard medium's rollbacks of no-change rollouts
// down by data set, protocol, evidence, metric and poll, and prints some of
// them as series (ROLLGUARD_DIAG=1).
func TestDiagnose(t *testing.T) {
	if os.Getenv("ROLLGUARD_DIAG") == "" {
		t.Skip("set ROLLGUARD_DIAG=1 to diagnose no-change rollbacks")
	}
	for _, v := range variants {
		if v.name == os.Getenv("ROLLGUARD_DIAG_VARIANT") && v.setup != nil {
			v.setup()
		}
	}
	var quiet []*Case
	for _, c := range cases(t) {
		if !c.Regression {
			quiet = append(quiet, c)
		}
	}
	dir := t.TempDir()
	var mu sync.Mutex
	var fires []fire
	res := Run(quiet, func() []Judge {
		r := Reference(dir)
		r.Inspect = func(eng *policies.Engine, v *View, s, k int, verdict bool) {
			mu.Lock()
			defer mu.Unlock()
			env := eng.Env()
			nd := 0
			for _, h := range env.Hosts {
				if h.Degraded {
					nd++
				}
			}
			for h := range v.hosts {
				host := eng.Host(h)
				if !host.Degraded {
					continue
				}
				hs := 0
				for i, st := range v.Stages {
					if slices.Contains(st.Hosts, h) {
						hs = i
					}
				}
				md := 0
				for m := range v.metrics {
					if host.Metrics[v.Metrics()[m].Name].Score > 5 {
						md++
					}
				}
				for m, mt := range v.Metrics() {
					met := host.Metrics[mt.Name]
					if met.Score <= 5 {
						continue
					}
					ev := eng.Evidence(h, m)
					kind := "cusum"
					switch {
					case ev.Window >= max(ev.Burst, ev.CUSUM, ev.Repeat):
						kind = "window"
					case ev.Burst >= max(ev.CUSUM, ev.Repeat):
						kind = "burst"
					case ev.Repeat >= ev.CUSUM:
						kind = "repeat"
					}
					f := fire{c: v.Case, stage: s, poll: k, verdict: verdict, host: h, metric: m, hostStage: hs,
						evidence: kind, ev: ev, degradedHosts: nd, changedHosts: len(env.Hosts), metricsDegraded: md}
					f.drift, f.own, f.ctrl, f.corr = features(v, h, m, hs, s, k)
					fires = append(fires, f)
				}
			}
		}
		return []Judge{r}
	}, 2)
	// What the run decided, per case: rolled back, or refused (a spec
	// runner.Load refuses: the Nezha short canary at medium).
	rolled, refused := map[*Case]bool{}, map[*Case]bool{}
	for i, c := range quiet {
		rolled[c], refused[c] = res.Polls[0][i] > 0, res.Polls[0][i] < 0
	}
	t.Logf("%d no-change rollouts, %d rolled back, %d degraded host-metrics", len(quiet), res.Tally(0, func(*Case) bool { return true }).RolledBack, len(fires))

	count := func(title string, key func(f fire) string) {
		n := map[string]int{}
		for _, f := range fires {
			n[key(f)]++
		}
		keys := slices.Collect(func(y func(string) bool) {
			for k := range n {
				if !y(k) {
					return
				}
			}
		})
		slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(n[b], n[a]), strings.Compare(a, b)) })
		fmt.Printf("\n## %s\n\n", title)
		for _, k := range keys {
			fmt.Printf("%6d  %s\n", n[k], k)
		}
	}
	// One row per rolled-back case, by the first degraded metric's kind.
	rows := map[*Case][]fire{}
	for _, f := range fires {
		rows[f.c] = append(rows[f.c], f)
	}
	perCase := func(title string, key func(fs []fire) string) {
		n := map[string]int{}
		for _, fs := range rows {
			n[key(fs)]++
		}
		keys := slices.Sorted(func(y func(string) bool) {
			for k := range n {
				if !y(k) {
					return
				}
			}
		})
		fmt.Printf("\n## %s (rollouts)\n\n", title)
		for _, k := range keys {
			fmt.Printf("%6d  %s\n", n[k], k)
		}
	}
	perCase("data set, protocol, evidence set", func(fs []fire) string {
		kinds := map[string]bool{}
		for _, f := range fs {
			kinds[f.evidence] = true
		}
		ks := slices.Sorted(func(y func(string) bool) {
			for k := range kinds {
				if !y(k) {
					return
				}
			}
		})
		return fmt.Sprintf("%-12s %-18s %s", fs[0].c.Dataset, fs[0].c.Protocol, strings.Join(ks, "+"))
	})
	// Every no-change rollout by what the visibility oracle sees in it, and
	// how many of each kind rollguard rolled back.
	type seen struct{ d, p, sees string }
	all, back := map[seen]int{}, map[seen]int{}
	sees := [...]string{"visible from the apply", "visible from a later poll", "quiet"}
	var pooled [len(sees)][2]int
	visible := map[*Case]bool{}
	for _, c := range quiet {
		at0, some := oracleSees(c)
		visible[c] = some
		i := 2
		switch {
		case at0:
			i = 0
		case some:
			i = 1
		}
		key := seen{c.Dataset, c.Protocol, sees[i]}
		all[key]++
		if refused[c] {
			continue
		}
		pooled[i][0]++
		if rolled[c] {
			back[key]++
			pooled[i][1]++
		}
	}
	fmt.Printf("\n## no-change rollouts rolled back, by what the visibility oracle sees\n\n")
	for _, key := range slices.SortedFunc(maps.Keys(all), func(a, b seen) int {
		return cmp.Or(strings.Compare(a.d, b.d), strings.Compare(a.p, b.p), strings.Compare(a.sees, b.sees))
	}) {
		fmt.Printf("%-12s %-18s %-26s %5d / %5d\n", key.d, key.p, key.sees, back[key], all[key])
	}
	for i, s := range sees {
		fmt.Printf("pooled (no Nezha short canary) %-26s %5d / %5d (%.2f%%)\n", s, pooled[i][1], pooled[i][0],
			100*float64(pooled[i][1])/float64(pooled[i][0]))
	}
	// The long canary's rollbacks by the canary's series: where a
	// half's figure comes from.
	type series struct {
		d, src, host string
		half         Half
	}
	lc, lcBack, lcSees := map[series]int{}, map[series]int{}, map[series]int{}
	for _, c := range quiet {
		if c.Protocol != LongCanary {
			continue
		}
		key := series{c.Dataset, c.src.Name, c.HostNames()[c.Stages[0].Hosts[0]], c.Half}
		lc[key]++
		if visible[c] {
			lcSees[key]++
		}
		if rolled[c] {
			lcBack[key]++
		}
	}
	fmt.Printf("\n## long canary, no-change rollouts by the canary's series (those with a rollback): rolled back / rollouts, and how many of them the visibility oracle calls visible\n\n")
	for _, key := range slices.SortedFunc(maps.Keys(lcBack), func(a, b series) int {
		return cmp.Or(strings.Compare(a.d, b.d), cmp.Compare(lcBack[b], lcBack[a]), strings.Compare(a.src+a.host, b.src+b.host), cmp.Compare(a.half, b.half))
	}) {
		name := key.src // NAB: a series is a source and its host
		if key.host != key.src {
			name += " " + key.host
		}
		fmt.Printf("%-12s %-8s %-56s %4d / %4d, visible %4d\n", key.d, key.half, name, lcBack[key], lc[key], lcSees[key])
	}
	perCase("data set, protocol, stage, verdict", func(fs []fire) string {
		return fmt.Sprintf("%-12s %-18s stage %d verdict=%v", fs[0].c.Dataset, fs[0].c.Protocol, fs[0].stage, fs[0].verdict)
	})
	perCase("data set, protocol, degraded hosts / changed", func(fs []fire) string {
		return fmt.Sprintf("%-12s %-18s %d/%d", fs[0].c.Dataset, fs[0].c.Protocol, fs[0].degradedHosts, fs[0].changedHosts)
	})
	count("host-metrics: data set, protocol, metric, evidence", func(f fire) string {
		return fmt.Sprintf("%-12s %-18s %-22s %s", f.c.Dataset, f.c.Protocol, f.c.Metrics()[f.metric].Name, f.evidence)
	})
	count("host-metrics: data set, poll in stage, evidence", func(f fire) string {
		return fmt.Sprintf("%-12s poll %2d %s", f.c.Dataset, f.poll, f.evidence)
	})
	count("host-metrics: data set, host's stage vs stage judged", func(f fire) string {
		return fmt.Sprintf("%-12s host of stage %d judged in stage %d", f.c.Dataset, f.hostStage, f.stage)
	})
	bucket := func(x float64) string {
		switch {
		case math.IsNaN(x):
			return "n/a"
		case x < 0:
			return "<0"
		case x < 0.5:
			return "0-0.5"
		case x < 1:
			return "0.5-1"
		case x < 2:
			return "1-2"
		case x < 5:
			return "2-5"
		}
		return ">=5"
	}
	count("host-metrics: data set, drift before the apply (tolerances)", func(f fire) string {
		return fmt.Sprintf("%-12s %s", f.c.Dataset, bucket(f.drift))
	})
	count("host-metrics: data set, own move (tolerances)", func(f fire) string {
		return fmt.Sprintf("%-12s %s", f.c.Dataset, bucket(f.own))
	})
	count("host-metrics: data set, controls' move (tolerances)", func(f fire) string {
		return fmt.Sprintf("%-12s %s", f.c.Dataset, bucket(f.ctrl))
	})
	count("host-metrics: data set, baseline correlation with controls", func(f fire) string {
		c := "n/a"
		switch {
		case math.IsNaN(f.corr):
		case f.corr < 0.2:
			c = "<0.2"
		case f.corr < 0.5:
			c = "0.2-0.5"
		case f.corr < 0.8:
			c = "0.5-0.8"
		default:
			c = ">=0.8"
		}
		return fmt.Sprintf("%-12s %s", f.c.Dataset, c)
	})
	count("host-metrics: data set, metrics degraded on the host", func(f fire) string {
		return fmt.Sprintf("%-12s %d of %d", f.c.Dataset, f.metricsDegraded, len(f.c.metrics))
	})

	// Series: the first fires of every data set and protocol, in turn.
	n := 20
	if s := os.Getenv("ROLLGUARD_DIAG_N"); s != "" {
		fmt.Sscan(s, &n)
	}
	slices.SortFunc(fires, func(a, b fire) int {
		return cmp.Or(strings.Compare(a.c.ID, b.c.ID), cmp.Compare(a.host, b.host), cmp.Compare(a.metric, b.metric))
	})
	byGroup := map[string][]fire{}
	var groups []string
	only := os.Getenv("ROLLGUARD_DIAG_GROUP")
	for _, f := range fires {
		g := f.c.Dataset + "/" + f.c.Protocol
		if only != "" && !strings.Contains(g+"/"+f.evidence, only) {
			continue
		}
		if byGroup[g] == nil {
			groups = append(groups, g)
		}
		byGroup[g] = append(byGroup[g], f)
	}
	shown := 0
	for i := 0; shown < n; i++ {
		any := false
		for _, g := range groups {
			if i < len(byGroup[g]) && shown < n {
				// Spread over each group's fires.
				fs := byGroup[g]
				printFire(fs[(i*7919)%len(fs)])
				shown++
				any = true
			}
		}
		if !any {
			break
		}
	}
}

// features computes a degraded metric's diagnostic figures: see fire.
func features(v *View, h, m, hs, s, k int) (drift, own, ctrl, corr float64) {
	mt := v.Metrics()[m]
	base := clean(v.BaselineOf(h, m, hs))
	if len(base) == 0 {
		return math.NaN(), math.NaN(), math.NaN(), math.NaN()
	}
	med := median(base)
	tol := max(0.1*math.Abs(med), mt.Unit, 1e-9)
	b := v.BaselineOf(h, m, hs)
	drift = mt.Worse * (safeMedian(clean(b[len(b)-3:])) - med) / tol
	from, to := v.Start(hs), v.Start(s)+k
	var win []float64
	for i := from; i < to; i++ {
		win = append(win, v.Value(h, m, i))
	}
	own = mt.Worse * (safeMedian(clean(win)) - med) / tol
	ctrlHosts := controls(v, s)
	if len(ctrlHosts) == 0 {
		return drift, own, math.NaN(), math.NaN()
	}
	var moves []float64
	for _, c := range ctrlHosts {
		cb := clean(v.BaselineOf(c, m, hs))
		var cw []float64
		for i := from; i < to; i++ {
			cw = append(cw, v.Value(c, m, i))
		}
		cw = clean(cw)
		if len(cb) == 0 || len(cw) == 0 {
			continue
		}
		cm := median(cb)
		if cm > 0 {
			moves = append(moves, median(cw)/cm-1)
		}
	}
	ctrl = math.NaN()
	if len(moves) > 0 && med != 0 {
		ctrl = mt.Worse * median(moves) * math.Abs(med) / tol
	}
	// Correlation over the baseline of the host with the controls' median
	// relative level.
	var xs, ys []float64
	for i := range b {
		var rel []float64
		for _, c := range ctrlHosts {
			cb := v.BaselineOf(c, m, hs)
			cm := safeMedian(clean(cb))
			if cm > 0 && !math.IsNaN(cb[i]) {
				rel = append(rel, cb[i]/cm)
			}
		}
		if len(rel) > 0 && !math.IsNaN(b[i]) {
			xs = append(xs, b[i])
			ys = append(ys, median(rel))
		}
	}
	return drift, own, ctrl, pearson(xs, ys)
}

func safeMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return median(xs)
}

func pearson(xs, ys []float64) float64 {
	if len(xs) < 3 {
		return math.NaN()
	}
	mx, my := mean(xs), mean(ys)
	var sxy, sxx, syy float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
		syy += (ys[i] - my) * (ys[i] - my)
	}
	if sxx == 0 || syy == 0 {
		return math.NaN()
	}
	return sxy / math.Sqrt(sxx*syy)
}

// printFire prints a degraded metric's series: the host's baseline before
// its stage and its polls to the rollback, relative to the baseline median,
// and the controls' median relative level beside.
func printFire(f fire) {
	v := f.c.Materialize()
	mt := v.Metrics()[f.metric]
	fmt.Printf("\n### %s host %s metric %s: stage %d poll %d verdict=%v, %s (burst %.1f cusum %.1f repeat %.1f window %.1f), %d/%d hosts degraded, %d/%d metrics; drift %.1f own %.1f ctrl %.1f corr %.2f\n",
		f.c.ID, v.HostNames()[f.host], mt.Name, f.stage, f.poll, f.verdict, f.evidence, f.ev.Burst, f.ev.CUSUM, f.ev.Repeat, f.ev.Window,
		f.degradedHosts, f.changedHosts, f.metricsDegraded, len(f.c.metrics), f.drift, f.own, f.ctrl, f.corr)
	base := clean(v.BaselineOf(f.host, f.metric, f.hostStage))
	med := median(base)
	rel := func(x float64) string {
		if math.IsNaN(x) {
			return "  .  "
		}
		if med == 0 {
			return fmt.Sprintf("%5.2g", x)
		}
		return fmt.Sprintf("%5.2f", x/med)
	}
	from := v.StageStart(f.hostStage)
	to := v.StageStart(f.stage) + f.poll
	var b strings.Builder
	fmt.Fprintf(&b, "  baseline (median %.4g):", med)
	for _, x := range v.BaselineOf(f.host, f.metric, f.hostStage) {
		b.WriteString(" " + rel(x))
	}
	b.WriteString("\n  after:")
	for i := from; i < to; i++ {
		b.WriteString(" " + rel(v.Value(f.host, f.metric, i)))
	}
	ctrl := controls(v, f.stage)
	if len(ctrl) > 0 {
		b.WriteString("\n  controls' median, baseline:")
		cm := make([]float64, len(ctrl))
		for j, c := range ctrl {
			cm[j] = safeMedian(clean(v.BaselineOf(c, f.metric, f.hostStage)))
		}
		line := func(i int) string {
			var r []float64
			for j, c := range ctrl {
				if x := v.Value(c, f.metric, i); !math.IsNaN(x) && cm[j] > 0 {
					r = append(r, x/cm[j])
				}
			}
			if len(r) == 0 {
				return "  .  "
			}
			return fmt.Sprintf("%5.2f", median(r))
		}
		for i := from - v.Baseline; i < from; i++ {
			b.WriteString(" " + line(i))
		}
		b.WriteString("\n  controls' median, after:")
		for i := from; i < to; i++ {
			b.WriteString(" " + line(i))
		}
	}
	fmt.Println(b.String())
}
