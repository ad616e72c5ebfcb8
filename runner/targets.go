package runner

import "github.com/rollguard/rollguard/ports"

// StaticHosts turns targets.static into hosts, in the order written.
func StaticHosts(spec *Spec) []ports.Host {
	hosts := make([]ports.Host, 0, len(spec.Targets.Static))
	for _, t := range spec.Targets.Static {
		addr := t.Address
		if addr == "" {
			addr = t.Name
		}
		hosts = append(hosts, ports.Host{Name: t.Name, Address: addr, Port: t.Port, Vars: t.Vars, Tags: t.Tags, Meta: t.Meta})
	}
	return hosts
}
