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
// comes back (and then promoted), or rolled back when the hold limit or
// the case's data ends first. The canary's data alone stopping rolls back
// after no_data_ticks.
func TestRollguardHoldsOnFleetGap(t *testing.T) {
	const base, stage, polls = 48, 12, 24 // two stages of 12 polls
	tests := []struct {
		name     string
		from, to int   // monitored polls (0-based) without data
		hosts    []int // hosts without data; nil: every host
		want     int   // Decide's answer
	}{
		{"no gap", 0, 0, nil, 0},
		{"gap inside the canary", 3, 10, nil, 0},
		{"gap across the canary's end, back in the next stage's window", 8, 16, nil, 0},
		{"gap across the canary's end past the hold limit (its monitoring period)", 8, polls, nil, 2 * stage},
		{"gap to the end of the case's data", 18, polls, nil, polls + 1},
		{"the canary's data alone", 3, 10, []int{0}, 3 + 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			src := &Source{Metrics: []Metric{{Name: "latency", Worse: 1}}}
			for h := range 4 {
				vals := make([]float64, base+polls)
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
			if got := Reference(t.TempDir()).Decide(c.Materialize()); got != tt.want {
				t.Errorf("rolled back at poll %d, want %d (0: promoted)", got, tt.want)
			}
		})
	}
}
