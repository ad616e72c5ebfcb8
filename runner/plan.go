package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// PlannedWave is one wave of a plan: the canary is wave 0.
type PlannedWave struct {
	Name    string
	Index   int
	Hosts   []ports.Host
	Monitor time.Duration
}

// Plan is the order in which hosts receive the change.
type Plan struct {
	// Hosts are every target, in target order.
	Hosts []ports.Host
	Waves []PlannedWave
	// Bake is the final monitoring period after the last wave.
	Bake time.Duration
}

// MakePlan splits hosts into the canary and the waves. A count or share
// takes hosts in target order, so the same targets always give the same
// plan. Wave shares are of the hosts remaining after the canary; a wave
// never takes more than what is left, and empty waves are dropped.
func MakePlan(spec *Spec, hosts []ports.Host) (*Plan, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("rollout %q: no target hosts", spec.Name)
	}
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if seen[h.Name] {
			return nil, fmt.Errorf("rollout %q: host %q is listed twice in the targets", spec.Name, h.Name)
		}
		seen[h.Name] = true
	}
	canary, err := selectCanary(spec.Canary.Hosts, hosts)
	if err != nil {
		return nil, fmt.Errorf("rollout %q: canary: %w", spec.Name, err)
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
	p := &Plan{Hosts: hosts, Bake: spec.Bake.D()}
	p.Waves = append(p.Waves, PlannedWave{Name: "canary", Index: 0, Hosts: canary, Monitor: spec.Canary.Monitor.D()})
	remaining := rest
	for i, w := range spec.Waves {
		if len(remaining) == 0 {
			break
		}
		n := w.Size.Count
		if w.Size.Percent > 0 {
			n = int(math.Ceil(w.Size.Percent / 100 * float64(len(rest))))
		}
		n = min(max(n, 1), len(remaining))
		name := w.Name
		if name == "" {
			name = fmt.Sprintf("wave-%d", i+1)
		}
		monitor := w.Monitor.D()
		if monitor == 0 {
			monitor = spec.Canary.Monitor.D()
		}
		p.Waves = append(p.Waves, PlannedWave{Name: name, Index: len(p.Waves), Hosts: remaining[:n], Monitor: monitor})
		remaining = remaining[n:]
	}
	if len(remaining) > 0 {
		return nil, fmt.Errorf("rollout %q: the waves cover %d of the %d hosts after the canary; %d would never receive the change (make the last wave size 100%%)",
			spec.Name, len(rest)-len(remaining), len(rest), len(remaining))
	}
	return p, nil
}

func selectCanary(sel HostSelector, hosts []ports.Host) ([]ports.Host, error) {
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
				return nil, fmt.Errorf("host %q is not among the targets", n)
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
			return nil, fmt.Errorf("no target host has the tag %q", sel.Tag)
		}
		return out, nil
	case len(sel.Meta) > 0:
		out := filterHosts(hosts, func(h ports.Host) bool {
			for k, v := range sel.Meta {
				if h.Meta[k] != v {
					return false
				}
			}
			return true
		})
		if len(out) == 0 {
			return nil, fmt.Errorf("no target host has the meta %v", sel.Meta)
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
	return hosts[:n], nil
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
	Waves []PlanJSONWave `json:"waves"`
}

// PlanJSONWave is one wave in `plan --json`.
type PlanJSONWave struct {
	Name    string   `json:"name"`
	Hosts   []string `json:"hosts"`
	Monitor string   `json:"monitor"`
}

// WriteJSON writes the plan in the `plan --json` contract form.
func (p *Plan) WriteJSON(w io.Writer) error {
	out := PlanJSON{Waves: []PlanJSONWave{}}
	for _, wv := range p.Waves {
		out.Waves = append(out.Waves, PlanJSONWave{Name: wv.Name, Hosts: hostNames(wv.Hosts), Monitor: fmtDuration(wv.Monitor)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteText writes the plan for a person.
func (p *Plan) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%d hosts in %d waves\n", len(p.Hosts), len(p.Waves))
	for _, wv := range p.Waves {
		fmt.Fprintf(w, "  %-10s %3d hosts, monitor %-6s %s\n", wv.Name, len(wv.Hosts), fmtDuration(wv.Monitor), abbreviate(hostNames(wv.Hosts), 8))
	}
	if p.Bake > 0 {
		fmt.Fprintf(w, "  then bake for %s over the whole fleet\n", fmtDuration(p.Bake))
	}
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
