package runner

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/rollguard/rollguard/ports"
)

// Waves that follow the fleet's topology: a wave with spread_by draws its
// hosts from as many values of a meta key (zone, rack) as it can, a wave
// with by becomes one wave per value, and canary.pin keeps the canary
// inside one value. MakePlan (plan.go) calls these.

// Topology modes of a planned wave.
const (
	TopologySpread = "spread_by"
	TopologyBy     = "by"
	TopologyPin    = "pin"
)

// WaveTopology shows how a planned wave sits in the fleet's topology.
type WaveTopology struct {
	// Key is the meta key (zone, rack).
	Key string
	// Mode is how the wave was drawn: spread_by, by, pin, or "" when the
	// wave only shows how its hosts fall over the plan's key.
	Mode string
	// MaxPerValue and NeverWhole are the spread_by wave's limits (0,
	// false: none).
	MaxPerValue int
	NeverWhole  bool
	// Values are the wave's hosts by value, in value order.
	Values []ValueGroup
}

// ValueGroup is the part of a wave that has one value of the key.
type ValueGroup struct {
	// Value is the key's value; "" for hosts without one (only in a wave
	// that does not follow the key).
	Value string
	// Hosts are the wave's hosts with this value, in target order.
	Hosts []string
	// Total is the number of hosts with this value in the whole fleet, so
	// that Hosts == Total means the wave holds the whole value.
	Total int
}

// topologyValue is host h's value of a topology key: its meta (Consul node
// and service meta, Nomad node meta, static meta), else its Ansible host
// variable of that name when that is a string, number or bool (inventory
// host vars). An empty value names no failure domain and counts as none.
func topologyValue(h ports.Host, key string) (string, bool) {
	if v := h.Meta[key]; v != "" {
		return v, true
	}
	switch v := h.Vars[key].(type) {
	case string:
		return v, v != ""
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v), true
	}
	return "", false
}

// valueTotals counts the hosts of each value of key in the fleet ("":
// the hosts without one).
func valueTotals(hosts []ports.Host, key string) map[string]int {
	totals := map[string]int{}
	for _, h := range hosts {
		v, _ := topologyValue(h, key)
		totals[v]++
	}
	return totals
}

// missingValue reports the hosts that have no value of key, for the wave
// at path: a host of unknown zone could be in any zone, so no limit could
// be kept with it.
func missingValue(hosts []ports.Host, key, path, what string) error {
	var missing []string
	for _, h := range hosts {
		if _, ok := topologyValue(h, key); !ok {
			missing = append(missing, h.Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &PlanError{Path: path, Msg: fmt.Sprintf("%s (%s): %d of the %d hosts it draws from have no meta or host variable %q: %s; give every host a %s, or plan this wave without it",
		path, what, len(missing), len(hosts), key, abbreviate(missing, 8), key)}
}

// group sorts hosts into value groups, in value order; hosts keep target
// order inside a group.
func group(hosts []ports.Host, key string, totals map[string]int) []ValueGroup {
	byValue := map[string]*ValueGroup{}
	for _, h := range hosts {
		v, _ := topologyValue(h, key)
		g := byValue[v]
		if g == nil {
			g = &ValueGroup{Value: v, Total: totals[v]}
			byValue[v] = g
		}
		g.Hosts = append(g.Hosts, h.Name)
	}
	out := make([]ValueGroup, 0, len(byValue))
	for _, v := range slices.Sorted(maps.Keys(byValue)) {
		out = append(out, *byValue[v])
	}
	return out
}

// spreadLimit is how many hosts of a value with total hosts in the fleet
// one spread_by wave may take (-1: no limit).
func spreadLimit(w Wave, total int) int {
	limit := -1
	if w.MaxPerValue > 0 {
		limit = w.MaxPerValue
	}
	if w.NeverWhole && (limit < 0 || limit > total-1) {
		limit = total - 1
	}
	return limit
}

// spread picks up to n of the remaining hosts for a spread_by wave and
// returns them in target order. Every value gives one host before any
// gives a second; after that the next host comes from the value that has
// given the smallest share of the hosts it had left (so each wave takes
// about the same share of every zone); ties go to the value with more
// hosts left, then to the lower value. No value gives more than its
// spreadLimit. Hosts of a value are taken in target order, so the same
// targets always give the same wave.
func spread(remaining []ports.Host, w Wave, n int, totals map[string]int) []ports.Host {
	type bucket struct {
		value string
		idx   []int // indexes into remaining, in target order
		taken int
		limit int
	}
	byValue := map[string]*bucket{}
	for i, h := range remaining {
		v, _ := topologyValue(h, w.SpreadBy)
		b := byValue[v]
		if b == nil {
			b = &bucket{value: v, limit: spreadLimit(w, totals[v])}
			byValue[v] = b
		}
		b.idx = append(b.idx, i)
	}
	buckets := make([]*bucket, 0, len(byValue))
	for _, v := range slices.Sorted(maps.Keys(byValue)) {
		buckets = append(buckets, byValue[v])
	}
	// before reports whether a should give the next host rather than b.
	before := func(a, b *bucket) bool {
		if (a.taken == 0) != (b.taken == 0) {
			return a.taken == 0
		}
		// a.taken/len(a.idx) < b.taken/len(b.idx), in integers.
		if l, r := a.taken*len(b.idx), b.taken*len(a.idx); l != r {
			return l < r
		}
		return len(a.idx) > len(b.idx)
	}
	picked := make([]bool, len(remaining))
	for range n {
		var best *bucket
		for _, b := range buckets {
			if b.taken == len(b.idx) || (b.limit >= 0 && b.taken >= b.limit) {
				continue
			}
			if best == nil || before(b, best) {
				best = b
			}
		}
		if best == nil {
			break // every value is used up or at its limit
		}
		picked[best.idx[best.taken]] = true
		best.taken++
	}
	var out []ports.Host
	for i, h := range remaining {
		if picked[i] {
			out = append(out, h)
		}
	}
	return out
}

// byValues splits the remaining hosts into one group per value of key, in
// value order.
func byValues(remaining []ports.Host, key string) (values []string, hosts map[string][]ports.Host) {
	hosts = map[string][]ports.Host{}
	for _, h := range remaining {
		v, _ := topologyValue(h, key)
		hosts[v] = append(hosts[v], h)
	}
	return slices.Sorted(maps.Keys(hosts)), hosts
}

// pinned keeps the hosts that have every pinned value.
func pinned(hosts []ports.Host, pin map[string]string) []ports.Host {
	return filterHosts(hosts, func(h ports.Host) bool {
		for k, want := range pin {
			if v, ok := topologyValue(h, k); !ok || v != want {
				return false
			}
		}
		return true
	})
}

// pinText writes a pin as "zone=z-a" (keys sorted).
func pinText(pin map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(pin)) {
		parts = append(parts, k+"="+pin[k])
	}
	return strings.Join(parts, ", ")
}

// leftOver explains why the last wave leaves hosts that no wave reaches,
// value by value, when it is a spread_by wave held back by its limits.
func leftOver(i int, w Wave, left []ports.Host, totals map[string]int) error {
	path := fmt.Sprintf("waves[%d]", i)
	values, hosts := byValues(left, w.SpreadBy)
	var parts []string
	for _, v := range values {
		names := hostNames(hosts[v])
		part := fmt.Sprintf("%s %s keeps %d of its %d hosts (%s), of which a wave may take %d", w.SpreadBy, v, len(names), totals[v], abbreviate(names, 4), spreadLimit(w, totals[v]))
		parts = append(parts, part)
	}
	limits := []string{}
	if w.MaxPerValue > 0 {
		limits = append(limits, fmt.Sprintf("max_per_value: %d", w.MaxPerValue))
	}
	if w.NeverWhole {
		limits = append(limits, "never_whole: true")
	}
	return &PlanError{Path: path, Msg: fmt.Sprintf("%s (%q, spread_by: %s, %s) is the last wave and leaves %d hosts that no wave reaches: %s; add a wave after it or loosen its limits",
		path, waveName(i, w), w.SpreadBy, strings.Join(limits, ", "), len(left), strings.Join(parts, "; "))}
}
