package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// PlannedWave is one wave of a plan: the canary is wave 0.
type PlannedWave struct {
	Name    string
	Index   int
	Hosts   []ports.Host
	Monitor time.Duration
	// Topology shows the wave's hosts by value of the plan's topology key
	// (nil when no wave follows one).
	Topology *WaveTopology
}

// Plan is the order in which hosts receive the change.
type Plan struct {
	// Hosts are every target, in target order.
	Hosts []ports.Host
	Waves []PlannedWave
	// Bake is the final monitoring period after the last wave.
	Bake time.Duration
	// Check is the pre-flight check's result, when plan --diff ran it.
	Check *report.Preflight
	// judging says how each stage is judged (polls, baseline, warm-up),
	// for WriteText.
	judging string
	// empty are the spec's waves that got no host: at run time they are
	// dropped (discovery decides how many hosts there are); with a static
	// target list validate reports them.
	empty []emptyWave
}

// emptyWave is a spec wave that can never contain a host, and why.
type emptyWave struct{ path, why string }

// PlanError is a plan that cannot be made from the hosts. Path is the
// spec key it is about ("canary.pin", "waves[1]"), so that validate can
// point at it; Msg names the wave, the value and the numbers.
type PlanError struct {
	Path string
	Msg  string
}

func (e *PlanError) Error() string { return e.Msg }

// MakePlan splits hosts into the canary and the waves. A count or share
// takes hosts in target order, so the same targets always give the same
// plan. Wave shares are of the hosts remaining after the canary; a wave
// never takes more than what is left, and empty waves are dropped. A
// spread_by wave draws from as many values of its key as it can (spread,
// topology.go), a by wave becomes one wave per value. The error is a
// *PlanError when the hosts do not fit the spec.
func MakePlan(spec *Spec, hosts []ports.Host) (*Plan, error) {
	p, err := makePlan(spec, hosts)
	if err != nil {
		return nil, fmt.Errorf("rollout %q: %w", spec.Name, err)
	}
	return p, nil
}

func makePlan(spec *Spec, hosts []ports.Host) (*Plan, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no target hosts")
	}
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if seen[h.Name] {
			return nil, &PlanError{Path: "targets", Msg: fmt.Sprintf("host %q is listed twice in the targets", h.Name)}
		}
		seen[h.Name] = true
	}
	canary, err := selectCanary(spec.Canary, hosts)
	if err != nil {
		return nil, err
	}
	inCanary := make(map[string]bool, len(canary))
	for _, h := range canary {
		inCanary[h.Name] = true
	}
	var rest []ports.Host
	for _, h := range hosts {
		if !inCanary[h.Name] {
			rest = append(rest, h)
		}
	}
	p := &Plan{Hosts: hosts, Bake: spec.Bake.D(), judging: judging(spec)}
	p.Waves = append(p.Waves, PlannedWave{Name: "canary", Index: 0, Hosts: canary, Monitor: spec.Canary.Monitor.D()})
	if len(spec.Canary.Pin) > 0 {
		p.Waves[0].Topology = &WaveTopology{Key: slices.Min(slices.Collect(maps.Keys(spec.Canary.Pin))), Mode: TopologyPin}
	}
	waves := spec.Waves
	if len(waves) == 0 {
		waves = []Wave{{Size: Size{Percent: 100}}}
	}
	totals := map[string]map[string]int{} // key -> value -> hosts in the fleet
	total := func(key string) map[string]int {
		if totals[key] == nil {
			totals[key] = valueTotals(hosts, key)
		}
		return totals[key]
	}
	remaining := rest
	for i, w := range waves {
		path := fmt.Sprintf("waves[%d]", i)
		if len(remaining) == 0 {
			if i < len(spec.Waves) {
				why := fmt.Sprintf("the canary takes all %d hosts", len(hosts))
				if len(rest) > 0 {
					why = fmt.Sprintf("the waves before it take all %d hosts after the canary", len(rest))
				}
				p.empty = append(p.empty, emptyWave{path, why})
			}
			break
		}
		monitor := w.Monitor.D()
		if monitor == 0 {
			monitor = spec.Canary.Monitor.D()
		}
		if w.By != "" {
			if err := missingValue(remaining, w.By, path, "by: "+w.By); err != nil {
				return nil, err
			}
			values, byValue := byValues(remaining, w.By)
			for _, v := range values {
				p.Waves = append(p.Waves, PlannedWave{Name: waveName(i, w) + "-" + v, Index: len(p.Waves), Hosts: byValue[v], Monitor: monitor,
					Topology: &WaveTopology{Key: w.By, Mode: TopologyBy}})
			}
			remaining = nil
			continue
		}
		n := w.Size.Count
		if w.Size.Percent > 0 {
			n = int(math.Ceil(w.Size.Percent / 100 * float64(len(rest))))
		}
		n = min(max(n, 1), len(remaining))
		var take []ports.Host
		var topo *WaveTopology
		if w.SpreadBy != "" {
			if err := missingValue(remaining, w.SpreadBy, path, "spread_by: "+w.SpreadBy); err != nil {
				return nil, err
			}
			take = spread(remaining, w, n, total(w.SpreadBy))
			topo = &WaveTopology{Key: w.SpreadBy, Mode: TopologySpread, MaxPerValue: w.MaxPerValue, NeverWhole: w.NeverWhole}
			if len(take) == 0 {
				p.empty = append(p.empty, emptyWave{path, fmt.Sprintf("every %s left is at its limit", w.SpreadBy)})
				continue
			}
		} else {
			take = remaining[:n]
		}
		p.Waves = append(p.Waves, PlannedWave{Name: waveName(i, w), Index: len(p.Waves), Hosts: take, Monitor: monitor, Topology: topo})
		remaining = without(remaining, take)
	}
	if len(remaining) > 0 {
		last := len(waves) - 1
		if w := waves[last]; w.SpreadBy != "" && (w.MaxPerValue > 0 || w.NeverWhole) {
			return nil, leftOver(last, w, remaining, total(w.SpreadBy))
		}
		return nil, &PlanError{Path: "waves", Msg: fmt.Sprintf("waves cover %d of the %d hosts after the canary; %d would never receive the change (make the last wave's size 100%%)",
			len(rest)-len(remaining), len(rest), len(remaining))}
	}
	if err := uniqueWaveNames(p, waves); err != nil {
		return nil, err
	}
	p.showTopology(total)
	return p, nil
}

// waveName is the name of the spec's wave i: its own, else "wave-<i+1>",
// or for a by wave the key (its waves are "<name>-<value>").
func waveName(i int, w Wave) string {
	switch {
	case w.Name != "":
		return w.Name
	case w.By != "":
		return w.By
	}
	return fmt.Sprintf("wave-%d", i+1)
}

// uniqueWaveNames reports a wave name that a by wave's values made twice
// (a wave "zone-a" and the by: zone wave of value a).
func uniqueWaveNames(p *Plan, waves []Wave) error {
	seen := map[string]bool{}
	for _, w := range p.Waves {
		if seen[w.Name] {
			path := "waves"
			for i, sw := range waves {
				if sw.By != "" {
					path = fmt.Sprintf("waves[%d].by", i)
				}
			}
			return &PlanError{Path: path, Msg: fmt.Sprintf("%s: two waves would be named %q; rename the wave that is not a by wave", path, w.Name)}
		}
		seen[w.Name] = true
	}
	return nil
}

// showTopology fills in how every wave's hosts fall over the plan's
// topology key (the first key the spec uses), so that plan can show it.
func (p *Plan) showTopology(total func(string) map[string]int) {
	key := ""
	for _, w := range p.Waves {
		if w.Topology != nil {
			key = w.Topology.Key
			break
		}
	}
	if key == "" {
		return
	}
	for i := range p.Waves {
		w := &p.Waves[i]
		if w.Topology == nil {
			w.Topology = &WaveTopology{Key: key}
		}
		w.Topology.Values = group(w.Hosts, w.Topology.Key, total(w.Topology.Key))
	}
}

// without returns hosts minus taken, keeping order.
func without(hosts, taken []ports.Host) []ports.Host {
	drop := make(map[string]bool, len(taken))
	for _, h := range taken {
		drop[h.Name] = true
	}
	return filterHosts(hosts, func(h ports.Host) bool { return !drop[h.Name] })
}

func selectCanary(c Canary, hosts []ports.Host) ([]ports.Host, error) {
	sel := c.Hosts
	fail := func(path, format string, args ...any) error {
		return &PlanError{Path: path, Msg: "canary: " + fmt.Sprintf(format, args...)}
	}
	switch {
	case len(sel.Names) > 0:
		byName := make(map[string]ports.Host, len(hosts))
		for _, h := range hosts {
			byName[h.Name] = h
		}
		var out []ports.Host
		for _, n := range sel.Names {
			h, ok := byName[n]
			if !ok {
				return nil, fail("canary.hosts", "host %q is not among the targets", n)
			}
			out = append(out, h)
		}
		return out, nil
	case sel.Tag != "":
		out := filterHosts(hosts, func(h ports.Host) bool {
			for _, t := range h.Tags {
				if t == sel.Tag {
					return true
				}
			}
			return false
		})
		if len(out) == 0 {
			return nil, fail("canary.hosts.tag", "no target host has the tag %q", sel.Tag)
		}
		return out, nil
	case len(sel.Meta) > 0:
		out := filterHosts(hosts, func(h ports.Host) bool { return metaMatch(h, sel.Meta) })
		if len(out) == 0 {
			return nil, fail("canary.hosts.meta", "no target host has the meta %v", sel.Meta)
		}
		return out, nil
	}
	n := 1
	if sel.Size != nil {
		n = sel.Size.Count
		if sel.Size.Percent > 0 {
			n = int(math.Ceil(sel.Size.Percent / 100 * float64(len(hosts))))
		}
	}
	n = min(max(n, 1), len(hosts))
	if len(c.Pin) == 0 {
		return hosts[:n], nil
	}
	in := pinned(hosts, c.Pin)
	if len(in) < n {
		return nil, fail("canary.pin", "pinned to %s, which %d of the %d targets have; the canary takes %d", pinText(c.Pin), len(in), len(hosts), n)
	}
	return in[:n], nil
}

func filterHosts(hosts []ports.Host, keep func(ports.Host) bool) []ports.Host {
	var out []ports.Host
	for _, h := range hosts {
		if keep(h) {
			out = append(out, h)
		}
	}
	return out
}

// PlanJSON is the `plan --json` contract.
type PlanJSON struct {
	// Rollout is the spec's name.
	Rollout string         `json:"rollout"`
	Waves   []PlanJSONWave `json:"waves"`
	// Bake is the final monitoring period over the whole fleet (absent
	// when none).
	Bake string `json:"bake,omitempty"`
	// Check, an extension of the contract, is the pre-flight check of
	// plan --diff, in report.json's "preflight" form.
	Check *report.Preflight `json:"check,omitempty"`
}

// PlanJSONWave is one wave in `plan --json`. Topology, an extension of
// the contract, is there when a wave follows a meta key.
type PlanJSONWave struct {
	Name     string            `json:"name"`
	Hosts    []string          `json:"hosts"`
	Monitor  string            `json:"monitor"`
	Topology *PlanJSONTopology `json:"topology,omitempty"`
}

// PlanJSONTopology is a wave's hosts by value of the plan's meta key.
type PlanJSONTopology struct {
	Key         string          `json:"key"`
	Mode        string          `json:"mode,omitempty"`
	MaxPerValue int             `json:"max_per_value,omitempty"`
	NeverWhole  bool            `json:"never_whole,omitempty"`
	Values      []PlanJSONValue `json:"values"`
}

// PlanJSONValue is the part of a wave with one value; total is the
// value's hosts in the whole fleet.
type PlanJSONValue struct {
	Value string   `json:"value"`
	Hosts []string `json:"hosts"`
	Total int      `json:"total"`
}

// WriteJSON writes the plan of rollout in the `plan --json` contract
// form.
func (p *Plan) WriteJSON(w io.Writer, rollout string) error {
	out := PlanJSON{Rollout: rollout, Waves: []PlanJSONWave{}, Check: p.Check}
	if p.Bake > 0 {
		out.Bake = fmtDuration(p.Bake)
	}
	for _, wv := range p.Waves {
		jw := PlanJSONWave{Name: wv.Name, Hosts: hostNames(wv.Hosts), Monitor: fmtDuration(wv.Monitor)}
		if t := wv.Topology; t != nil {
			jt := &PlanJSONTopology{Key: t.Key, Mode: t.Mode, MaxPerValue: t.MaxPerValue, NeverWhole: t.NeverWhole, Values: []PlanJSONValue{}}
			for _, g := range t.Values {
				jt.Values = append(jt.Values, PlanJSONValue(g))
			}
			jw.Topology = jt
		}
		out.Waves = append(out.Waves, jw)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteText writes the plan for a person: a line per wave, and under it
// the wave's hosts by value of the topology key ("zone: a 2/4" is 2 of
// zone a's 4 hosts).
func (p *Plan) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%d hosts in %d waves\n", len(p.Hosts), len(p.Waves))
	width := 10
	for _, wv := range p.Waves {
		width = max(width, len(wv.Name))
	}
	for _, wv := range p.Waves {
		fmt.Fprintf(w, "  %-*s %3d hosts, monitor %-6s %s\n", width, wv.Name, len(wv.Hosts), fmtDuration(wv.Monitor), abbreviate(hostNames(wv.Hosts), 8))
		if t := wv.Topology; t != nil {
			fmt.Fprintf(w, "  %-*s %s\n", width+2, "", t.text())
		}
	}
	if p.Bake > 0 {
		fmt.Fprintf(w, "  then bake for %s over the whole fleet\n", fmtDuration(p.Bake))
	}
	if p.judging != "" {
		fmt.Fprintf(w, "  %s\n", p.judging)
	}
	if p.Check != nil {
		for _, line := range report.CheckLines(p.Check) {
			fmt.Fprintln(w, line)
		}
		fmt.Fprintln(w, p.Check.Reason)
	}
}

// judging is "judged on metrics every 1m, against each host's 1h
// baseline (60 polls) before its wave's apply; warm-up 2m (2 polls)".
func judging(spec *Spec) string {
	iv, base, warm := spec.Metrics.Interval.D(), spec.Metrics.Baseline.D(), spec.Detection.Warmup.D()
	if iv <= 0 {
		return ""
	}
	s := fmt.Sprintf("judged on metrics every %s, against each host's %s baseline (%s) before its wave's apply",
		fmtDuration(iv), fmtDuration(base), report.Count(int(base/iv), "poll"))
	if warm > 0 {
		s += fmt.Sprintf("; warm-up %s (%s)", fmtDuration(warm), report.Count(warmupPolls(warm, iv), "poll"))
	}
	return s
}

// text is "zone: a 2/4, b 2/4 (spread_by, at most 2 per zone, never a whole zone)".
func (t *WaveTopology) text() string {
	var parts []string
	for _, g := range t.Values {
		v := g.Value
		if v == "" {
			v = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d", v, len(g.Hosts), g.Total))
	}
	s := t.Key + ": " + strings.Join(parts, ", ")
	var how []string
	if t.Mode != "" {
		how = append(how, t.Mode)
	}
	if t.MaxPerValue > 0 {
		how = append(how, fmt.Sprintf("at most %d per %s", t.MaxPerValue, t.Key))
	}
	if t.NeverWhole {
		how = append(how, "never a whole "+t.Key)
	}
	if len(how) > 0 {
		s += " (" + strings.Join(how, ", ") + ")"
	}
	return s
}

func hostNames(hs []ports.Host) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

func abbreviate(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, … (%d more)", strings.Join(names[:n], ", "), len(names)-n)
}

// FormatDuration prints "5m" rather than "5m0s", "4h" rather than "4h0m0s".
func FormatDuration(d time.Duration) string { return fmtDuration(d) }

// fmtDuration prints "5m" rather than "5m0s".
func fmtDuration(d time.Duration) string {
	if d >= time.Second {
		d = d.Round(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
