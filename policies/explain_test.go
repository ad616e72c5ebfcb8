package policies

import (
	"maps"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	env := &Env{Hosts: hostsWithScores(9, 8.5, 4.73, 0, 0, 0, 0, 0, 0, 0), Fleet: Fleet{Size: 12, MaxScore: 9}}
	host := &Host{Name: "web-1", Metrics: map[string]*Metric{"error_rate": {Z: 14.25}}}
	tests := []struct {
		fleet, host string
		h           *Host
		reason      string
		values      map[string]float64
	}{
		{fleet: `top_mean(hosts, 0.30) > 5`, reason: "top_mean(hosts, 0.30) = 7.41 > 5",
			values: map[string]float64{"top_mean(hosts, 0.30)": 7.41}},
		{fleet: `top_mean(hosts, 0.30) > 8`, reason: "top_mean(hosts, 0.30) = 7.41 <= 8",
			values: map[string]float64{"top_mean(hosts, 0.30)": 7.41}},
		{fleet: `fraction(hosts, .degraded) >= 0.3 && fleet.size > 20`, reason: "fraction(hosts, .degraded) = 0.2 < 0.3",
			values: map[string]float64{"fraction(hosts, .degraded)": 0.2}},
		{fleet: `fraction(hosts, .degraded) >= 0.1 && fleet.size > 20`, reason: "fleet.size = 12 <= 20",
			values: map[string]float64{"fraction(hosts, .degraded)": 0.2, "fleet.size": 12}},
		{fleet: `fraction(hosts, .degraded) >= 0.1 and fleet.size > 10`, reason: "fraction(hosts, .degraded) = 0.2 >= 0.1 and fleet.size = 12 > 10",
			values: map[string]float64{"fraction(hosts, .degraded)": 0.2, "fleet.size": 12}},
		{fleet: `count(hosts, .score > 5) > 3 || fleet.max_score > 8`, reason: "fleet.max_score = 9 > 8",
			values: map[string]float64{"count(hosts, .score > 5)": 2, "fleet.max_score": 9}},
		{fleet: `any(hosts, .score > 100) or fleet.max_score > fleet.size`, reason: "any(hosts, .score > 100) is false and fleet.max_score = 9 <= fleet.size = 12",
			values: map[string]float64{"any(hosts, .score > 100)": 0, "fleet.max_score": 9, "fleet.size": 12}},
		{fleet: `len(map(hosts, .name)) > 20 || hosts[0].name startsWith "web"`,
			reason: `len(map(hosts, .name)) = 10 <= 20 and hosts[0].name startsWith "web" is false`,
			values: map[string]float64{"len(map(hosts, .name))": 10, `hosts[0].name startsWith "web"`: 0}},
		// Quoted as written, though expr's optimizer folds 10 + 10.
		{fleet: `fleet.size > 10 + 10`, reason: "fleet.size = 12 <= 10 + 10 = 20",
			values: map[string]float64{"fleet.size": 12, "10 + 10": 20}},
		{host: `host.metrics.error_rate.z > 12`, h: host, reason: "host.metrics.error_rate.z = 14.25 > 12",
			values: map[string]float64{"host.metrics.error_rate.z": 14.25}},
	}
	for _, tt := range tests {
		p := mustCompile(t, tt.fleet, tt.host)
		reason, values := p.Explain(env, tt.h)
		if reason != tt.reason {
			t.Errorf("Explain(%q%q) reason = %q, want %q", tt.fleet, tt.host, reason, tt.reason)
		}
		for k, v := range tt.values {
			if got, ok := values[k]; !ok || got < v-1e-9 || got > v+1e-9 {
				t.Errorf("Explain(%q%q) values = %v, want %v", tt.fleet, tt.host, values, tt.values)
				break
			}
		}
		// Deterministic: a second call says the same.
		r2, v2 := p.Explain(env, tt.h)
		if r2 != reason || !maps.Equal(v2, values) {
			t.Errorf("Explain(%q%q) is not deterministic", tt.fleet, tt.host)
		}
	}
}

// TestExplainCompilesNothing: everything Explain evaluates was compiled
// with the policy. With every allocation sampled by the memory profile,
// calls of Explain add no allocation in expr's parser, checker or
// compiler.
func TestExplainCompilesNothing(t *testing.T) {
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	// Sub-expressions of every kind Explain quotes: comparisons of
	// builtins, a boolean operator, arithmetic, a fraction, a method-like
	// operator (startsWith), on the fleet and on a host.
	p := mustCompile(t, `len(map(hosts, .name)) > 2 && hosts[0].name startsWith "web" || fleet.size % 5 == fraction(hosts, .degraded)`,
		`host.metrics.cpu.z > 1 && host.name endsWith "3" || not host.applied`)
	env := randomEnv(rand.New(rand.NewPCG(3, 4)), 10)
	before := compileAllocs(t)
	for range 10 {
		p.Explain(env, nil)
		p.Explain(env, env.Hosts[3])
	}
	if n := compileAllocs(t) - before; n != 0 {
		t.Errorf("20 calls of Explain allocated %d objects in expr's parser, checker or compiler; want 0", n)
	}
}

// compileAllocs counts the objects expr's parser, checker and compiler
// have allocated so far, as the memory profile has recorded them.
func compileAllocs(t *testing.T) int64 {
	t.Helper()
	for range 3 { // the profile is as of the last completed collections
		runtime.GC()
	}
	n, _ := runtime.MemProfile(nil, true)
	records := make([]runtime.MemProfileRecord, n+100)
	n, ok := runtime.MemProfile(records, true)
	if !ok {
		t.Fatal("memory profile grew while read")
	}
	var total int64
	for _, r := range records[:n] {
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if strings.HasPrefix(f.Function, "github.com/expr-lang/expr/parser.") ||
				strings.HasPrefix(f.Function, "github.com/expr-lang/expr/checker.") ||
				strings.HasPrefix(f.Function, "github.com/expr-lang/expr/compiler.") {
				total += r.AllocObjects
				break
			}
			if !more {
				break
			}
		}
	}
	return total
}
