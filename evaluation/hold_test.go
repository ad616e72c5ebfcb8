package evaluation

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// The harness holds on a gap in the metrics across the whole fleet as the
// runner does: the gap is not counted towards on_no_data: fail, a stage
// that ends in it is monitored on with the following data until the data
// comes back (and then promoted, the next stage starting that much later,
// as the runner starts it), or rolled back when the hold limit passes; the
// source's data ending is a gap like any other. The canary's data alone
// stopping rolls back after no_data_ticks.
func TestRollguardHoldsOnFleetGap(t *testing.T) {
	// Two stages of 12 polls; the source runs 24 polls past them.
	const base, stage, polls, after = 48, 12, 24, 24
	tests := []struct {
		name     string
		from, to int   // monitored polls (0-based) without data
		hosts    []int // hosts without data; nil: every host
		want     int   // Decide's answer
		// double: wave-1's change doubles its host's latency (from
		// wave-1's apply, wherever the holds put it).
		double bool
	}{
		{"no gap", 0, 0, nil, 0, false},
		{"gap inside the canary", 3, 10, nil, 0, false},
		// The canary ends at 17, when the data is back; wave-1 watches
		// polls 17 to 28.
		{"gap across the canary's end, back in the next stage's window", 8, 16, nil, 0, false},
		{"gap across the canary's end past the hold limit (its monitoring period)", 8, polls, nil, 2 * stage, false},
		// wave-1 holds from 18 past its end (24) for its hold limit (12).
		{"gap to the end of the source's data", 18, polls + after, nil, polls + stage, false},
		{"the canary's data alone", 3, 10, []int{0}, 3 + 4, false},
		// wave-1 starts at 17, and its doubling is decided on its third
		// poll (the first is the warm-up, the second ends the burst, the
		// third holds it).
		{"a doubling in wave-1, after the canary held", 8, 16, nil, 17 + 3, true},
		{"a doubling in wave-1", 0, 0, nil, stage + 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			src := &Source{Metrics: []Metric{{Name: "latency", Worse: 1}}}
			for h := range 4 {
				vals := make([]float64, base+polls+after)
				for p := range vals {
					vals[p] = 100 + 3*r.NormFloat64()
					missing := tt.hosts == nil || h == tt.hosts[0]
					if i := p - base; missing && i >= tt.from && i < tt.to {
						vals[p] = math.NaN()
					}
				}
				src.Hosts = append(src.Hosts, Host{Name: string(rune('a' + h)), Values: [][]float64{vals}})
			}
			c := &Case{
				ID: tt.name, Interval: 5 * time.Minute, Baseline: base,
				Stages: []Stage{{Name: "canary", Hosts: []int{0}, Polls: stage}, {Name: "wave-1", Hosts: []int{1}, Polls: stage}},
				src:    src, metrics: []int{0}, hosts: []int{0, 1, 2, 3}, At: base,
			}
			if tt.double {
				c.effects = []effect{{Host: 1, Metric: 0, From: stage, To: polls, Mul: 2}}
			}
			if got := Reference(t.TempDir()).Decide(c.Materialize()); got != tt.want {
				t.Errorf("rolled back at poll %d, want %d (0: promoted)", got, tt.want)
			}
		})
	}
}
