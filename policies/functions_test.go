package policies

import (
	"math"
	"strings"
	"testing"
)

func hostsWithScores(scores ...float64) []*Host {
	hs := make([]*Host, len(scores))
	for i, s := range scores {
		hs[i] = &Host{Name: "h", Score: s, Degraded: s > 5}
	}
	return hs
}

func TestTopMean(t *testing.T) {
	tests := []struct {
		name   string
		scores []float64
		share  float64
		want   float64
	}{
		{"no hosts", nil, 0.3, 0},
		{"one host, small share takes it", []float64{4}, 0.01, 4},
		{"0.3 of 10 is 3 hosts, not 4", []float64{1, 9, 2, 8, 3, 7, 4, 6, 5, 0}, 0.3, 8},
		{"0.3 of 11 rounds up to 4", []float64{1, 9, 2, 8, 3, 7, 4, 6, 5, 0, 10}, 0.3, 8.5},
		{"0.7 of 10 is 7 hosts", []float64{1, 9, 2, 8, 3, 7, 4, 6, 5, 0}, 0.7, 6},
		{"share 1 is the mean", []float64{1, 2, 3, 6}, 1, 3},
		{"ties", []float64{5, 5, 5, 1}, 0.5, 5},
		{"sorted ascending input", []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 0.2, 8.5},
		{"sorted descending input", []float64{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, 0.2, 8.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := topMean(nil, hostsWithScores(tt.scores...), tt.share)
			if err != nil || math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("top_mean(%v, %v) = %v, %v; want %v", tt.scores, tt.share, got, err, tt.want)
			}
		})
	}
	for _, share := range []float64{0, -0.1, 1.01, math.NaN()} {
		if _, _, err := topMean(nil, hostsWithScores(1), share); err == nil {
			t.Errorf("top_mean share %v: no error", share)
		}
	}
}

// TestTopMeanMatchesSort checks quickselect against a full sort on many
// sizes and shares.
func TestTopMeanMatchesSort(t *testing.T) {
	var scratch []float64
	for n := 1; n < 60; n++ {
		scores := make([]float64, n)
		for i := range scores {
			scores[i] = float64((i * 7919) % 13) // many ties
		}
		for _, share := range []float64{0.01, 0.1, 0.25, 0.3, 0.5, 0.9, 1} {
			var got float64
			var err error
			got, scratch, err = topMean(scratch, hostsWithScores(scores...), share)
			if err != nil {
				t.Fatal(err)
			}
			sorted := append([]float64(nil), scores...)
			slicesSortDesc(sorted)
			k := topCount(share, n)
			want := 0.0
			for _, v := range sorted[:k] {
				want += v
			}
			want /= float64(k)
			if math.Abs(got-want) > 1e-9 {
				t.Fatalf("n=%d share=%v: got %v want %v", n, share, got, want)
			}
		}
	}
}

func slicesSortDesc(s []float64) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] > s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestTopMeanAllocs: top_mean reuses its buffer, so what an evaluation
// allocates does not grow with the fleet.
func TestTopMeanAllocs(t *testing.T) {
	p := mustCompile(t, `top_mean(hosts, 0.3) > 5`, "")
	allocs := func(n int) float64 {
		env := &Env{Hosts: hostsWithScores(make([]float64, n)...)}
		if _, err := p.EvalFleet(env); err != nil {
			t.Fatal(err)
		}
		return testing.AllocsPerRun(100, func() { _, _ = p.EvalFleet(env) })
	}
	if small, large := allocs(10), allocs(10_000); large > small {
		t.Errorf("top_mean allocates %v times per evaluation over 10,000 hosts, %v over 10", large, small)
	}
}

// TestFunctionsInPolicies evaluates fraction and top_mean through
// compiled policies.
func TestFunctionsInPolicies(t *testing.T) {
	tests := []struct {
		expr   string
		scores []float64
		want   bool
	}{
		{`fraction(hosts, .degraded) == 0`, nil, true}, // empty list: 0, not NaN
		{`fraction(hosts, .degraded) >= 0.3`, []float64{6, 6, 6, 1, 1, 1, 1, 1, 1, 1}, true},
		{`fraction(hosts, .degraded) >= 0.3`, []float64{6, 6, 1, 1, 1, 1, 1, 1, 1, 1}, false},
		{`fraction(hosts, .score > 0) == 1`, []float64{1, 2}, true},
		{`hosts | fraction(.degraded) == 0.5`, []float64{9, 1}, true},
		{`top_mean(hosts, 0.30) > 5`, nil, false},
		{`top_mean(hosts, 0.30) > 5`, []float64{7, 7, 7.5, 0, 0, 0, 0, 0, 0, 0}, true},
		{`top_mean(hosts, 0.30) > 5`, []float64{7, 7, 0.5, 0, 0, 0, 0, 0, 0, 0}, false},
		{`top_mean(hosts, 1) == 2`, []float64{1, 3}, true},
	}
	for _, tt := range tests {
		p := mustCompile(t, tt.expr, "")
		env := &Env{Hosts: hostsWithScores(tt.scores...)}
		got, err := p.EvalFleet(env)
		if err != nil || got != tt.want {
			t.Errorf("%s over %v = %v, %v; want %v", tt.expr, tt.scores, got, err, tt.want)
		}
	}
}

func TestFractionCompileErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`fraction(hosts, .score) > 0.5`, "predicate should return boolean"},
		{`fraction(hosts) > 0.5`, "expected at least 2 arguments"},
		{`fraction(1, .degraded) > 0`, "fraction"},
		{`top_mean(hosts) > 1`, "top_mean"},
	}
	for _, tt := range tests {
		src := Source{Name: "x", File: "x.yaml", RollbackWhen: Expr{Text: tt.expr, Pos: Pos{Line: 1, Col: 1}}}
		_, err := Compile(src, testMetrics)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), fractionAlias) {
			t.Errorf("Compile(%q) = %v; want an error mentioning %q and not %q", tt.expr, err, tt.want, fractionAlias)
		}
	}
}
