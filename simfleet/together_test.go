package simfleet

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// The hosts move together: over 20 minutes of simulated time, a host's
// CPU and mean latency (15 s windows, as the demo's queries) move within a
// minute by at most 10 % (the detector's default tolerance) more or less
// than the fleet's median host, at the 99th percentile. A good change
// must not read as a regression because a host swung on its own while a
// stage was watched; how long the stage took (a loaded machine runs slower
// playbooks) then does not decide the outcome.
func TestHostsMoveTogether(t *testing.T) {
	clock := &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := startFleet(t, 6, 11, clock)
	const window, horizon, span = 15, 60, 1200
	// counters[h][s] after s seconds: CPU busy and idle, latency sum and count.
	counters := make([][][4]float64, len(f.sims))
	for s := 0; s <= span+horizon; s++ {
		for i, h := range f.sims {
			h.mu.Lock()
			h.advance(clock.Now())
			counters[i] = append(counters[i], [4]float64{h.user, h.idle, h.sum, h.count})
			h.mu.Unlock()
		}
		clock.Advance(time.Second)
	}
	value := func(i, metric, s int) float64 {
		a, b := counters[i][s-window], counters[i][s]
		if metric == 0 {
			return (b[0] - a[0]) / (b[0] - a[0] + b[1] - a[1])
		}
		return (b[2] - a[2]) / (b[3] - a[3])
	}
	for metric, name := range []string{"cpu", "latency"} {
		var excess []float64
		for s := window; s+horizon <= span+horizon; s++ {
			moves := make([]float64, len(f.sims))
			for i := range f.sims {
				moves[i] = value(i, metric, s+horizon) / value(i, metric, s)
			}
			med := median(moves)
			for _, m := range moves {
				excess = append(excess, math.Abs(m/med-1))
			}
		}
		slices.Sort(excess)
		p50, p99 := excess[len(excess)/2], excess[len(excess)*99/100]
		t.Logf("%s: a host's move in %d s beside the fleet's median: p50 %.1f %%, p99 %.1f %%", name, horizon, 100*p50, 100*p99)
		if p99 > 0.10 {
			t.Errorf("%s: hosts swing on their own: p99 %s beside the fleet's median move", name, fmt.Sprintf("%.1f %%", 100*p99))
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
