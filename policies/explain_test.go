package policies

import (
	"maps"
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
