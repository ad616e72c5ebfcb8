package evaluation

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBaselineLength prints what the baseline's length does to every judge
// (ROLLGUARD_BASELINES=1): the cases are built with a longer history than
// the tables' (72 polls at 5-minute polls, 60 at 1-minute polls), so that
// the same rollouts, with the same regressions visible to the oracle, are
// judged with a baseline of the last n polls of it for each n. The
// metrics.baseline default (48 polls, at least 30 minutes) comes from
// this table.
func TestBaselineLength(t *testing.T) {
	if os.Getenv("ROLLGUARD_BASELINES") == "" {
		t.Skip("set ROLLGUARD_BASELINES=1 to print every judge's figures by baseline length")
	}
	srcs, err := LoadAll("testdata")
	if err != nil {
		t.Fatal(err)
	}
	history := func(iv time.Duration) int {
		if iv >= 5*time.Minute {
			return 72
		}
		return 60
	}
	built := buildCases(srcs, history)
	lengths := []int{6, 12, 24, 30, 48, 72}
	dir := t.TempDir()
	judges := func() []Judge {
		return append(Judges(dir)[:7], NewRollguard("low", seedRule, dir), Reference(dir), NewRollguard("high", seedRule, dir))
	}
	var res []*Results
	for _, n := range lengths {
		cs := make([]*Case, len(built))
		for i, c := range built {
			cp := *c
			cp.Judged = n
			cs[i] = &cp
		}
		res = append(res, Run(cs, judges, 2))
	}
	var head strings.Builder
	for _, n := range lengths {
		fmt.Fprintf(&head, " %d polls |", n)
	}
	fmt.Printf("### Baseline length: caught / no-change rolled back, every data set and protocol, both halves\n\n")
	fmt.Printf("(a baseline of n polls: the last n of %d at 5-minute polls, of %d at 1-minute polls)\n\n", history(5*time.Minute), history(time.Minute))
	fmt.Printf("| judge |%s\n|---|%s\n", head.String(), strings.Repeat("---|", len(lengths)))
	for j, jd := range res[0].Judges {
		fmt.Printf("| %s |", jd.Name())
		for _, r := range res {
			fmt.Printf(" %s |", rates(r.Tally(j, byDataset(""))))
		}
		fmt.Println()
	}
	ref := len(res[0].Judges) - 2
	fmt.Printf("\n### Baseline length: %s, per data set and half\n\n", res[0].Judges[ref].Name())
	fmt.Printf("| data set, half |%s\n|---|%s\n", head.String(), strings.Repeat("---|", len(lengths)))
	for _, d := range Datasets {
		for _, h := range []Half{Dev, HeldOut} {
			fmt.Printf("| %s, %s |", d, h)
			for _, r := range res {
				fmt.Printf(" %s |", rates(r.Tally(ref, and(byDataset(d), byHalf(h)))))
			}
			fmt.Println()
		}
	}
	fmt.Println()
}
