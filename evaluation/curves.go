package evaluation

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Family is one judge swept over its natural parameter.
type Family struct {
	Name     string
	Settings []Setting
	// Peer is false for rollguard's own settings: they are printed, but
	// do not decide whether rollguard medium is dominated.
	Peer bool
}

// Setting is one judge of a family, labelled by its parameter.
type Setting struct {
	Label string
	Judge Judge
}

// seedRule is the README's seed rule, the policy of rollguard's rows.
const seedRule = "top_mean(hosts, 0.30) > 5"

// Reference is the judge every family is set against: rollguard medium
// with the seed rule, the default.
func Reference(dir string) *Rollguard { return NewRollguard("medium", seedRule, dir) }

// Families returns every judge family swept over its parameter; dir is
// where rollguard's specs are written.
func Families(dir string) []Family {
	static := Family{Name: "static (window mean worse than baseline mean by)", Peer: true}
	for _, share := range []float64{0.05, 0.10, 0.20, 0.30, 0.50, 1} {
		static.Settings = append(static.Settings, Setting{fmt.Sprintf("%g%%", 100*share), Static(share)})
	}
	madz := Family{Name: "median/MAD z", Peer: true}
	for _, polls := range []int{1, 2, 3} {
		for _, z := range []float64{2, 3, 4, 5, 6, 8} {
			madz.Settings = append(madz.Settings, Setting{fmt.Sprintf("z > %g, %d poll(s)", z, polls), MADZ(z, polls)})
		}
	}
	own := Family{Name: "Kayenta MW, own history", Peer: true}
	ctrl := Family{Name: "Kayenta MW, vs controls", Peer: true}
	for _, conf := range []float64{90, 95, 98, 99, 99.9} {
		own.Settings = append(own.Settings, Setting{fmt.Sprintf("%g%%", conf), KayentaOwn(conf)})
		ctrl.Settings = append(ctrl.Settings, Setting{fmt.Sprintf("%g%%", conf), KayentaControls(conf)})
	}
	simple := Family{Name: "simple rule", Peer: true}
	for _, k := range []float64{2, 3, 4, 6, 8} {
		simple.Settings = append(simple.Settings, Setting{fmt.Sprintf("%g MAD", k), Simple(k)})
	}
	rg := Family{Name: "rollguard, seed rule (not a peer)"}
	for _, s := range []string{"low", "medium", "high"} {
		rg.Settings = append(rg.Settings, Setting{s, NewRollguard(s, seedRule, dir)})
	}
	for _, j := range Curve(dir) {
		rg.Settings = append(rg.Settings, Setting{"medium, " + j.(*Rollguard).Label, j})
	}
	return []Family{static, madz, own, ctrl, simple, rg}
}

// WithFamilies returns judges followed by every family's judges that
// judges does not hold already (by name).
func WithFamilies(judges []Judge, fams []Family) []Judge {
	out := slices.Clone(judges)
	for _, f := range fams {
		for _, s := range f.Settings {
			if !slices.ContainsFunc(out, func(j Judge) bool { return j.Name() == s.Judge.Name() }) {
				out = append(out, s.Judge)
			}
		}
	}
	return out
}

// Point is one setting's figures on the development and held-out halves.
type Point struct{ Dev, Held Tally }

// atMost reports whether a/b <= c/d, for counts (0/0 reads as 0).
func atMost(a, b, c, d int) bool { return int64(a)*int64(d) <= int64(c)*int64(b) }

// AtRate picks, on the development half only, the point that catches the
// largest share of visible regressions among those that roll back no
// larger share of no-change rollouts than ref (ties: the fewer
// rollbacks, then the first); -1 when none is that careful.
func AtRate(pts []Point, ref Tally) int {
	best := -1
	for i, p := range pts {
		if !p.Dev.Applies || !atMost(p.Dev.RolledBack, p.Dev.NoChange, ref.RolledBack, ref.NoChange) {
			continue
		}
		if best < 0 || better(p.Dev, pts[best].Dev) {
			best = i
		}
	}
	return best
}

// ToCatch picks, on the development half only, the point that rolls back
// the smallest share of no-change rollouts among those that catch at
// least ref's share of visible regressions (ties: the more caught, then
// the first); -1 when none catches as much.
func ToCatch(pts []Point, ref Tally) int {
	best := -1
	for i, p := range pts {
		if !p.Dev.Applies || !atMost(ref.Caught, ref.Visible, p.Dev.Caught, p.Dev.Visible) {
			continue
		}
		if best < 0 || careful(p.Dev, pts[best].Dev) {
			best = i
		}
	}
	return best
}

// better: a catches a larger share than b, or as large a share at a
// smaller share of rollbacks.
func better(a, b Tally) bool {
	if !atMost(a.Caught, a.Visible, b.Caught, b.Visible) {
		return true
	}
	return atMost(b.Caught, b.Visible, a.Caught, a.Visible) && !atMost(b.RolledBack, b.NoChange, a.RolledBack, a.NoChange)
}

// careful: a rolls back a smaller share than b, or as small a share while
// catching a larger one.
func careful(a, b Tally) bool {
	if !atMost(b.RolledBack, b.NoChange, a.RolledBack, a.NoChange) {
		return true
	}
	return atMost(a.RolledBack, a.NoChange, b.RolledBack, b.NoChange) && !atMost(a.Caught, a.Visible, b.Caught, b.Visible)
}

// Dominates reports whether p's held-out figures are at least as good as
// ref's on both counts and better on one: as large a share caught (when
// there are regressions) at no larger share rolled back.
func Dominates(p, ref Tally) bool {
	rolledLE := atMost(p.RolledBack, p.NoChange, ref.RolledBack, ref.NoChange)
	rolledLT := !atMost(ref.RolledBack, ref.NoChange, p.RolledBack, p.NoChange)
	if ref.Visible == 0 || p.Visible == 0 {
		return rolledLT
	}
	caughtGE := atMost(ref.Caught, ref.Visible, p.Caught, p.Visible)
	caughtGT := !atMost(p.Caught, p.Visible, ref.Caught, ref.Visible)
	return caughtGE && rolledLE && (caughtGT || rolledLT)
}

// pick is a family's two settings for one scope, and the figures.
type pick struct {
	at, catch int // indices into the family's settings, -1 for none
	pts       []Point
	ref       Point
	cases     bool // false: the family judges none of the scope's cases
}

// curves reports every family against the reference judge.
type curves struct {
	r    *Results
	ref  int
	fams []Family
	// within[f] selects the cases that the reference and every setting
	// of family f judge.
	within []Filter
	idx    [][]int // idx[f][s]: the result index of family f's setting s
}

// applied is the set of cases judge j judges.
func (r *Results) applied(j int) map[*Case]bool {
	set := make(map[*Case]bool, len(r.Cases))
	for c, cs := range r.Cases {
		if r.Polls[j][c] >= 0 {
			set[cs] = true
		}
	}
	return set
}

// picks chooses family fi's settings on the development half of the
// cases sc selects that the reference and every setting of the family
// judge; with pooled set, it keeps the pooled picks instead (a scope
// without regressions).
func (cv *curves) picks(fi int, sc Filter, pooled *pick) pick {
	f := and(sc, cv.within[fi])
	half := func(j int) Point {
		return Point{cv.r.Tally(j, and(f, byHalf(Dev))), cv.r.Tally(j, and(f, byHalf(HeldOut)))}
	}
	p := pick{ref: half(cv.ref), at: -1, catch: -1}
	p.cases = p.ref.Dev.Applies || p.ref.Held.Applies
	for _, j := range cv.idx[fi] {
		p.pts = append(p.pts, half(j))
	}
	if pooled != nil {
		p.at, p.catch = pooled.at, pooled.catch
	} else {
		p.at, p.catch = AtRate(p.pts, p.ref.Dev), ToCatch(p.pts, p.ref.Dev)
	}
	return p
}

// rates prints a tally as caught / rolled back, in shares ("—" caught for
// no regressions).
func rates(t Tally) string {
	if t.Visible == 0 {
		return fmt.Sprintf("— / %.1f%%", 100*t.FalseRate())
	}
	return fmt.Sprintf("%.1f%% / %.1f%%", 100*t.CatchRate(), 100*t.FalseRate())
}

// cell prints a pick's setting with its development figures, and its
// held-out figures.
func (cv *curves) cell(fi, i int, p pick) string {
	if i < 0 {
		return "none | "
	}
	return fmt.Sprintf("%s (dev %s) | %s", cv.fams[fi].Settings[i].Label, rates(p.pts[i].Dev), rates(p.pts[i].Held))
}

// verdict is what one scope's table says about the peers' picks, on the
// held-out half.
type verdict struct {
	// dominant lists the peers' picks that dominate the reference.
	dominant []string
	// at is the pick at the reference's rate that catches the most, catch
	// the pick catching as much that rolls back the least ("none").
	at, catch string
}

// table prints one scope's table, each family's settings chosen on it or,
// with pooled set, the pooled ones; it returns the picks and what they
// say against the reference on the held-out half.
func (cv *curves) table(w io.Writer, sc Filter, pooled []pick) ([]pick, verdict) {
	fmt.Fprintln(w, "| family | at rollguard medium's rollback rate: setting (dev caught / rolled back) | held-out | to catch as much: setting (dev) | held-out | rollguard medium, dev | held-out |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	var picks []pick
	v := verdict{at: "none", catch: "none"}
	var at, catch *Tally
	for fi, fam := range cv.fams {
		var keep *pick
		if pooled != nil {
			keep = &pooled[fi]
		}
		p := cv.picks(fi, sc, keep)
		picks = append(picks, p)
		if !p.cases {
			fmt.Fprintf(w, "| %s | n/a | | | | | |\n", fam.Name)
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", fam.Name, cv.cell(fi, p.at, p), cv.cell(fi, p.catch, p), rates(p.ref.Dev), rates(p.ref.Held))
		if !fam.Peer {
			continue
		}
		name := func(i int) string {
			return fmt.Sprintf("%s, %s: %s", fam.Name, fam.Settings[i].Label, rates(p.pts[i].Held))
		}
		if i := p.at; i >= 0 && (at == nil || better(p.pts[i].Held, *at)) {
			at, v.at = &p.pts[i].Held, name(i)
		}
		if i := p.catch; i >= 0 && (catch == nil || careful(p.pts[i].Held, *catch)) {
			catch, v.catch = &p.pts[i].Held, name(i)
		}
		for _, i := range []int{p.at, p.catch} {
			if i >= 0 && Dominates(p.pts[i].Held, p.ref.Held) {
				d := fmt.Sprintf("%s (rollguard medium %s)", name(i), rates(p.ref.Held))
				if !slices.Contains(v.dominant, d) {
					v.dominant = append(v.dominant, d)
				}
			}
		}
	}
	fmt.Fprintln(w)
	if len(v.dominant) == 0 {
		fmt.Fprintf(w, "rollguard medium dominated on the held-out half: no.\n\n")
	} else {
		fmt.Fprintf(w, "rollguard medium dominated on the held-out half: yes, by %s.\n\n", strings.Join(v.dominant, "; "))
	}
	return picks, v
}

// PrintCurves writes, pooled and per data set and protocol, every
// family's setting chosen on the development half at the reference's
// rollback rate and to catch as much as the reference, with its held-out
// figures beside the reference's, then one line per scope saying whether
// a peer's pick dominates the reference on the held-out half. A protocol
// without regressions takes each family's pooled picks.
func (r *Results) PrintCurves(w io.Writer, fams []Family, ref Judge) {
	cv := &curves{r: r, fams: fams, ref: -1}
	for j, jd := range r.Judges {
		if jd.Name() == ref.Name() {
			cv.ref = j
		}
	}
	refSet := r.applied(cv.ref)
	for _, f := range fams {
		var js []int
		sets := []map[*Case]bool{refSet}
		for _, s := range f.Settings {
			j := slices.IndexFunc(r.Judges, func(j Judge) bool { return j.Name() == s.Judge.Name() })
			js = append(js, j)
			sets = append(sets, r.applied(j))
		}
		cv.idx = append(cv.idx, js)
		cv.within = append(cv.within, func(c *Case) bool {
			for _, s := range sets {
				if !s[c] {
					return false
				}
			}
			return true
		})
	}
	line := func(name string, f Filter, v verdict) string {
		dom := "no"
		if len(v.dominant) > 0 {
			dom = "yes: " + strings.Join(v.dominant, "; ")
		}
		return fmt.Sprintf("| %s | %s | %s | %s | %s |", name, rates(r.Tally(cv.ref, and(f, byHalf(HeldOut)))), v.at, v.catch, dom)
	}
	fmt.Fprintf(w, "#### Pooled over every data set and protocol\n\n")
	all := func(*Case) bool { return true }
	pooled, v := cv.table(w, all, nil)
	summary := []string{line("pooled", all, v)}
	for _, d := range Datasets {
		for _, p := range Protocols {
			f := and(byDataset(d), byProtocol(p))
			if slices.IndexFunc(r.Cases, f) < 0 {
				continue
			}
			name := d + ", " + p
			fmt.Fprintf(w, "#### %s\n\n", name)
			refT := r.Tally(cv.ref, f)
			if !refT.Applies {
				why, _, _ := strings.Cut(r.refusal(r.Judges[cv.ref], f), "\n")
				fmt.Fprintf(w, "rollguard medium refuses this protocol's spec: %s\n\n", why)
				summary = append(summary, fmt.Sprintf("| %s | refused | | | |", name))
				continue
			}
			var kept []pick
			if refT.Visible == 0 {
				kept = pooled // no regressions: the pooled picks
			}
			_, v := cv.table(w, f, kept)
			summary = append(summary, line(name, f, v))
		}
	}
	fmt.Fprintf(w, "#### Summary: the peers' picks on the held-out half (caught / rolled back)\n\n")
	fmt.Fprintf(w, "| data set, protocol | rollguard medium | at its rollback rate, the pick that catches the most | catching as much, the pick that rolls back the least | rollguard medium dominated |\n|---|---|---|---|---|\n%s\n\n", strings.Join(summary, "\n"))
}
