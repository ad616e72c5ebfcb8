package runner

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// shiftMetrics is flatMetrics with the hosts in hosts at factor times
// their level from from on.
type shiftMetrics struct {
	flatMetrics
	from   time.Time
	hosts  []string
	factor float64
}

func (m shiftMetrics) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if err := m.flatMetrics.Instant(ctx, q, keys, at, out); err != nil {
		return err
	}
	for i, k := range keys {
		if !at.Before(m.from) && slices.Contains(m.hosts, k) {
			out[i] *= m.factor
		}
	}
	return nil
}

// A fleet-level fire reverts revert.scope's hosts and, whatever the scope,
// the degraded hosts that carry the change, the fire's cause in whichever
// wave they were changed: a canary that degrades after it passed is
// reverted with the wave that saw it, and a fire in the bake reverts the
// last wave's hosts (it reverted none, and said "rolled back"). A scope:
// host fire that no degraded host explains reverts the wave's hosts.
func TestFleetFireRevertsItsCause(t *testing.T) {
	start := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	const zRule = "  - name: any-z\n    rollback_when: 'any(hosts, .metrics.latency.z > 12)'\n"
	tests := []struct {
		name     string
		spec     string
		from     time.Duration // when the degraded hosts degrade
		degrade  []string
		factor   float64
		reverted []string // sorted
		reason   string   // in the report's reason
	}{
		{"the canary degrades in wave-1, scope wave", execSpec, 7 * time.Minute, []string{"web-1"}, 3,
			[]string{"web-1", "web-2", "web-3", "web-4"}, "any-degraded fired in wave wave-1"},
		{"a host degrades in the bake, scope wave", execSpec + "bake: 2h\n", 40 * time.Minute, []string{"web-3"}, 3,
			[]string{"web-2", "web-3", "web-4"}, "any-degraded fired in wave bake"},
		{"the canary degrades in the bake, scope wave", execSpec + "bake: 2h\n", 40 * time.Minute, []string{"web-1"}, 3,
			[]string{"web-1", "web-2", "web-3", "web-4"}, "any-degraded fired in wave bake"},
		{"scope all", strings.Replace(execSpec, "verify: 1m}", "verify: 1m, scope: all}", 1), 7 * time.Minute, []string{"web-1"}, 3,
			[]string{"web-1", "web-2", "web-3", "web-4"}, "any-degraded fired in wave wave-1"},
		{"scope host: only the degraded one", strings.Replace(execSpec, "verify: 1m}", "verify: 1m, scope: host}", 1), 7 * time.Minute, []string{"web-3"}, 3,
			[]string{"web-3"}, "any-degraded fired in wave wave-1"},
		{"scope host, a rule on z that no degraded host explains", strings.Replace(execSpec, "verify: 1m}", "verify: 1m, scope: host}", 1) + zRule, 30 * time.Second, []string{"web-1"}, 1.5,
			[]string{"web-1"}, "any-z fired in wave canary: any(hosts, .metrics.latency.z > 12) is true; no host is degraded or failed, so scope host reverts canary's hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro, _, _ := execRollout(t, tt.spec, changedAll)
			ro.Applier = nil // a dry run: each stage ends its monitoring period after its start
			ro.Metrics = shiftMetrics{from: start.Add(tt.from), hosts: tt.degrade, factor: tt.factor}
			res, err := ro.Execute(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			r := res.Report
			if r.Outcome != report.OutcomeRolledBack || !strings.Contains(r.Reason, tt.reason) {
				t.Fatalf("outcome %s (%s), want rolled_back with %q", r.Outcome, r.Reason, tt.reason)
			}
			if r.Rollback == nil {
				t.Fatal("no rollback")
			}
			if got := slices.Sorted(slices.Values(r.Rollback.Hosts)); !slices.Equal(got, tt.reverted) {
				t.Errorf("reverted %v, want %v", got, tt.reverted)
			}
			for _, h := range r.Hosts {
				if want := slices.Contains(tt.reverted, h.Name); h.Reverted != want {
					t.Errorf("%s: reverted %v in hosts[], want %v", h.Name, h.Reverted, want)
				}
			}
		})
	}
}

// revert.mode: freeze is for changes that must not be undone: a host
// policy's fire halts the rollout too, and reverts nothing (it reverted
// its host, and the rollout went on to promote).
func TestFreezeHaltsOnAHostPolicy(t *testing.T) {
	start := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	spec := strings.Replace(execSpec, "verify: 1m}", "verify: 1m, mode: freeze}", 1) +
		"  - name: extreme\n    host_rollback_when: 'host.metrics.latency.z > 12'\n"
	ro, _, _ := execRollout(t, spec, changedAll)
	ro.Applier = nil
	ro.Metrics = shiftMetrics{from: start.Add(7 * time.Minute), hosts: []string{"web-3"}, factor: 3}
	res, err := ro.Execute(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if r.Outcome != report.OutcomeHalted || res.ExitCode != 4 || !strings.Contains(r.Reason, "extreme fired: on web-3: ") || !strings.Contains(r.Reason, "revert.mode: freeze") {
		t.Errorf("outcome %s, exit %d (%s): want halted (exit 4) on extreme's fire on web-3, frozen", r.Outcome, res.ExitCode, r.Reason)
	}
	for _, h := range r.Hosts {
		if h.Reverted {
			t.Errorf("%s reverted under revert.mode: freeze", h.Name)
		}
	}
}
