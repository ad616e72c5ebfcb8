package evaluation

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
)

// Results holds every judge's decision on every case.
type Results struct {
	Judges []Judge
	Cases  []*Case
	// Polls[j][c] is judge j's decision on case c: the poll it rolled
	// back at, 0 for promoted, -1 when the judge does not apply.
	Polls [][]int
}

// Run judges every case with every judge, on workers goroutines; judges
// makes one set of judges per worker (a judge keeps state between cases).
func Run(cases []*Case, judges func() []Judge, workers int) *Results {
	js := judges()
	r := &Results{Judges: js, Cases: cases, Polls: make([][]int, len(js))}
	for j := range js {
		r.Polls[j] = make([]int, len(cases))
	}
	var wg sync.WaitGroup
	for w := range workers {
		if w > 0 {
			js = judges()
		}
		wg.Add(1)
		go func(js []Judge) {
			defer wg.Done()
			for c := w; c < len(cases); c += workers {
				cs := cases[c]
				v := cs.Materialize()
				for j, jd := range js {
					if !jd.Applies(cs) {
						r.Polls[j][c] = -1
						continue
					}
					r.Polls[j][c] = jd.Decide(v)
				}
			}
		}(js)
	}
	wg.Wait()
	return r
}

// First returns the results of the first n judges.
func (r *Results) First(n int) *Results {
	return &Results{Judges: r.Judges[:n], Cases: r.Cases, Polls: r.Polls[:n]}
}

// Tally is one judge's figures over a set of cases.
type Tally struct {
	// Visible is the number of visible regressions, Caught how many of
	// them the judge rolled back.
	Visible, Caught int
	// NoChange is the number of rollouts with no bad change, RolledBack
	// how many of them the judge rolled back.
	NoChange, RolledBack int
	// Delays are the polls from visible to decided of the caught
	// regressions (0 when decided at or before the visible poll).
	Delays []int
	// Applies is false when the judge applies to none of the cases.
	Applies bool
}

// CatchRate and FalseRate are the shares (NaN for no cases).
func (t Tally) CatchRate() float64 { return float64(t.Caught) / float64(t.Visible) }
func (t Tally) FalseRate() float64 { return float64(t.RolledBack) / float64(t.NoChange) }

// DelayQuantile is the q-quantile of the delays (NaN for none), nearest
// rank.
func (t Tally) DelayQuantile(q float64) float64 {
	if len(t.Delays) == 0 {
		return math.NaN()
	}
	d := slices.Clone(t.Delays)
	slices.Sort(d)
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return float64(d[max(i, 0)])
}

// Filter selects cases.
type Filter func(c *Case) bool

// Tally counts judge j's figures over the cases f selects.
func (r *Results) Tally(j int, f Filter) Tally {
	var t Tally
	for c, cs := range r.Cases {
		if !f(cs) {
			continue
		}
		p := r.Polls[j][c]
		if p < 0 {
			continue
		}
		t.Applies = true
		switch {
		case cs.Regression && cs.VisibleAt > 0:
			t.Visible++
			if p > 0 {
				t.Caught++
				t.Delays = append(t.Delays, max(p-cs.VisibleAt, 0))
			}
		case !cs.Regression:
			t.NoChange++
			if p > 0 {
				t.RolledBack++
			}
		}
	}
	return t
}

// Selectors of the tables.
func byDataset(d string) Filter { return func(c *Case) bool { return d == "" || c.Dataset == d } }
func byProtocol(p string) Filter {
	return func(c *Case) bool { return p == "" || c.Protocol == p }
}
func byHalf(h Half) Filter   { return func(c *Case) bool { return c.Half == h } }
func byKind(k string) Filter { return func(c *Case) bool { return c.Kind == k } }
func and(fs ...Filter) Filter {
	return func(c *Case) bool {
		for _, f := range fs {
			if !f(c) {
				return false
			}
		}
		return true
	}
}

// Datasets in report order.
var Datasets = []string{"nab", "jumpstarter", "nezha"}

// fraction prints n/d and its share, or "—" for no cases.
func fraction(n, d int) string {
	if d == 0 {
		return "—"
	}
	return fmt.Sprintf("%d/%d (%.1f%%)", n, d, 100*float64(n)/float64(d))
}

func delays(t Tally) string {
	if len(t.Delays) == 0 {
		return "—"
	}
	return fmt.Sprintf("%g / %g", t.DelayQuantile(0.5), t.DelayQuantile(0.9))
}

// table prints one Markdown table: every judge over the cases f selects,
// development and held-out halves side by side.
func (r *Results) table(w io.Writer, f Filter) {
	fmt.Fprintln(w, "| judge | caught, dev | caught, held-out | no-change rolled back, dev | no-change rolled back, held-out | polls visible→decided (median / p90) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for j, jd := range r.Judges {
		dev, held, all := r.Tally(j, and(f, byHalf(Dev))), r.Tally(j, and(f, byHalf(HeldOut))), r.Tally(j, f)
		if !all.Applies {
			why := "n/a"
			if msg := r.refusal(jd, f); msg != "" {
				why = "refused: " + msg
			}
			fmt.Fprintf(w, "| %s | %s | | | | |\n", jd.Name(), why)
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", jd.Name(),
			fraction(dev.Caught, dev.Visible), fraction(held.Caught, held.Visible),
			fraction(dev.RolledBack, dev.NoChange), fraction(held.RolledBack, held.NoChange), delays(all))
	}
	fmt.Fprintln(w)
}

// Print writes every table: pooled, then per data set and protocol.
func (r *Results) Print(w io.Writer) {
	fmt.Fprintf(w, "### Pooled over every data set and protocol\n\n")
	r.table(w, func(*Case) bool { return true })
	fmt.Fprintf(w, "Steps of twice the tolerance (+20%%), every data set and protocol:\n\n")
	r.table(w, byKind(stepKind(2)))
	for _, d := range Datasets {
		for _, p := range Protocols {
			f := and(byDataset(d), byProtocol(p))
			n, reg := 0, 0
			for _, c := range r.Cases {
				if f(c) {
					n++
					if c.Regression && c.VisibleAt > 0 {
						reg++
					}
				}
			}
			if n == 0 {
				continue
			}
			fmt.Fprintf(w, "### %s, %s (%d rollouts, %d visible regressions)\n\n", d, p, n, reg)
			r.table(w, f)
		}
	}
}

// Summary is one line per judge of the pooled figures, for logs.
func (r *Results) Summary() string {
	var b strings.Builder
	for j, jd := range r.Judges {
		t := r.Tally(j, func(*Case) bool { return true })
		fmt.Fprintf(&b, "%-70s caught %s, rolled back %s, delay %s\n", jd.Name(),
			fraction(t.Caught, t.Visible), fraction(t.RolledBack, t.NoChange), delays(t))
	}
	return b.String()
}

// PrintMatrix writes, per data set, one table of every judge's figures
// per protocol, then one of every data set and protocol pooled: visible
// regressions caught / no-change rollouts rolled back, both halves
// together; a judge that refuses a protocol's spec
// reads "refused".
func (r *Results) PrintMatrix(w io.Writer) {
	for _, d := range Datasets {
		var cols []Filter
		var names []string
		for _, p := range Protocols {
			f := and(byDataset(d), byProtocol(p))
			if slices.IndexFunc(r.Cases, f) >= 0 {
				cols, names = append(cols, f), append(names, p)
			}
		}
		r.matrix(w, d+" — caught / rolled back:", names, cols)
	}
	r.matrix(w, "every data set and protocol, both halves — caught / rolled back:", []string{"pooled"}, []Filter{byDataset("")})
}

// matrix writes one table: a row per judge, a column per filter.
func (r *Results) matrix(w io.Writer, title string, names []string, cols []Filter) {
	fmt.Fprintf(w, "%s\n\n| judge |", title)
	for _, n := range names {
		fmt.Fprintf(w, " %s |", n)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(cols)))
	for j, jd := range r.Judges {
		fmt.Fprintf(w, "| %s |", jd.Name())
		for _, f := range cols {
			t := r.Tally(j, f)
			switch {
			case !t.Applies && r.refused(jd, f):
				fmt.Fprint(w, " refused |")
			case !t.Applies:
				fmt.Fprint(w, " n/a |")
			default:
				fmt.Fprintf(w, " %s |", rates(t))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// PrintHalves writes one table of every judge's figures per data set and
// half: visible regressions caught / no-change rollouts rolled back, over
// every protocol the judge does not refuse.
func (r *Results) PrintHalves(w io.Writer) {
	fmt.Fprintf(w, "| judge |")
	for _, d := range Datasets {
		fmt.Fprintf(w, " %s, dev | %s, held-out |", d, d)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", 2*len(Datasets)))
	for j, jd := range r.Judges {
		fmt.Fprintf(w, "| %s |", jd.Name())
		for _, d := range Datasets {
			for _, h := range []Half{Dev, HeldOut} {
				if t := r.Tally(j, and(byDataset(d), byHalf(h))); t.Applies {
					fmt.Fprintf(w, " %s |", rates(t))
				} else {
					fmt.Fprint(w, " n/a |")
				}
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// refusal is why judge jd refuses the first case f selects ("" when it
// does not, or cannot refuse).
func (r *Results) refusal(jd Judge, f Filter) string {
	ref, ok := jd.(interface{ Refusal(*Case) string })
	if !ok {
		return ""
	}
	if i := slices.IndexFunc(r.Cases, f); i >= 0 {
		return ref.Refusal(r.Cases[i])
	}
	return ""
}

func (r *Results) refused(jd Judge, f Filter) bool { return r.refusal(jd, f) != "" }
