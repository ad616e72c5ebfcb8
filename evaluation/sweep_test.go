package evaluation

import (
	"fmt"
	"os"
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
		if v.setup != nil {
			v.setup()
		}
		pol := v.policy
		if pol == "" {
			pol = "top_mean(hosts, 0.30) > 5"
		}
		res := Run(cs, func() []Judge {
			r := NewRollguard("medium", pol, dir)
			r.Tweak = v.tweak
			return []Judge{r}
		}, 2)
		printSweep(res, v.name)
	}
}

func printSweep(res *Results, name string) {
	dev, held := res.Tally(0, byHalf(Dev)), res.Tally(0, byHalf(HeldOut))
	st := res.Tally(0, byKind(stepKind(2)))
	fmt.Printf("== %s: dev %.1f%% / %.2f%%  held %.1f%% / %.2f%%  step2 delay %s (%d/%d)\n", name,
		100*dev.CatchRate(), 100*dev.FalseRate(), 100*held.CatchRate(), 100*held.FalseRate(), delays(st), st.Caught, st.Visible)
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
	)
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
