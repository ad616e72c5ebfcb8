package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/rollguard/rollguard/ports"
)

// Host naming for Query.NameFrom.
const (
	// NameFromNode names each host after its Consul node (the default).
	NameFromNode = "node"
	// NameFromServiceID names each host after its service instance ID, for
	// services with several instances per node.
	NameFromServiceID = "service_id"
)

// ErrNoInstances is wrapped by Discover when no instance matches the query.
var ErrNoInstances = errors.New("no instances")

// Query selects the instances of one Consul service.
type Query struct {
	// Service is the Consul service name. Required.
	Service string
	// Tags keeps instances carrying every one of these tags.
	Tags []string
	// Datacenter to query (default: the agent's).
	Datacenter string
	// PassingOnly keeps instances whose checks (node and service) all pass.
	PassingOnly bool
	// NodeMeta keeps instances whose node carries all these pairs.
	NodeMeta map[string]string
	// Namespace and Partition are passed through when set (Consul Enterprise).
	Namespace string
	Partition string
	// NameFrom names each host: NameFromNode (default) or NameFromServiceID.
	NameFrom string
}

// describe lists the service and every filter, for errors.
func (q Query) describe() string {
	parts := []string{fmt.Sprintf("service %q", q.Service)}
	if len(q.Tags) > 0 {
		parts = append(parts, fmt.Sprintf("tags %v", q.Tags))
	}
	if q.PassingOnly {
		parts = append(parts, "passing only")
	}
	if q.Datacenter != "" {
		parts = append(parts, "datacenter "+q.Datacenter)
	}
	if len(q.NodeMeta) > 0 {
		keys := slices.Sorted(maps.Keys(q.NodeMeta))
		pairs := make([]string, len(keys))
		for i, k := range keys {
			pairs[i] = k + "=" + q.NodeMeta[k]
		}
		parts = append(parts, "node_meta "+strings.Join(pairs, ","))
	}
	if q.Namespace != "" {
		parts = append(parts, "namespace "+q.Namespace)
	}
	if q.Partition != "" {
		parts = append(parts, "partition "+q.Partition)
	}
	return strings.Join(parts, ", ")
}

// Discover returns the hosts of q's service through the health API
// (/v1/health/service/<service>), one host per service instance, sorted by
// name then service ID so that a plan is reproducible.
//
// A host's Address is the service address, or the node address when the
// service registered none; Port is the service port; Tags the service tags.
// Meta is the node's metadata with the service's metadata merged over it
// (a service key wins over a node key of the same name). Vars carry
// consul_node, consul_node_address, consul_service, consul_service_id,
// consul_port and consul_datacenter for playbooks.
//
// With NameFrom "node", two instances on the same node would give two hosts
// of the same name: that is an error suggesting NameFrom "service_id". No
// match is an error wrapping ErrNoInstances that names the service and
// every filter. Cancelling ctx aborts the request.
func Discover(ctx context.Context, c *Client, q Query) ([]ports.Host, error) {
	if q.Service == "" {
		return nil, errors.New("consul discovery: service name is required")
	}
	switch q.NameFrom {
	case "", NameFromNode, NameFromServiceID:
	default:
		return nil, fmt.Errorf("consul discovery of service %q: name_from %q is not one of %q, %q",
			q.Service, q.NameFrom, NameFromNode, NameFromServiceID)
	}
	opts := &api.QueryOptions{
		Datacenter: q.Datacenter,
		NodeMeta:   q.NodeMeta,
		Namespace:  q.Namespace,
		Partition:  q.Partition,
	}
	entries, _, err := c.api.Health().ServiceMultipleTags(q.Service, q.Tags, q.PassingOnly, query(ctx, opts))
	if err != nil {
		return nil, fmt.Errorf("consul health of %s: %w", q.describe(), err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("consul %s: %w", q.describe(), ErrNoInstances)
	}
	hosts := make([]ports.Host, 0, len(entries))
	for _, e := range entries {
		if e.Node == nil || e.Service == nil {
			continue
		}
		hosts = append(hosts, hostOf(e, q.NameFrom))
	}
	sort.SliceStable(hosts, func(i, j int) bool {
		if hosts[i].Name != hosts[j].Name {
			return hosts[i].Name < hosts[j].Name
		}
		return hosts[i].Vars["consul_service_id"].(string) < hosts[j].Vars["consul_service_id"].(string)
	})
	for i := 1; i < len(hosts); i++ {
		if hosts[i].Name == hosts[i-1].Name {
			return nil, fmt.Errorf("consul %s: node %s runs several instances (%s, %s); set name_from: %s",
				q.describe(), hosts[i].Name, hosts[i-1].Vars["consul_service_id"], hosts[i].Vars["consul_service_id"], NameFromServiceID)
		}
	}
	c.logger.Debug("consul discovery", "service", q.Service, "hosts", len(hosts))
	return hosts, nil
}

// hostOf turns one health entry into a host.
func hostOf(e *api.ServiceEntry, nameFrom string) ports.Host {
	name := e.Node.Node
	if nameFrom == NameFromServiceID {
		name = e.Service.ID
	}
	addr := e.Service.Address
	if addr == "" {
		addr = e.Node.Address
	}
	var meta map[string]string
	if len(e.Node.Meta)+len(e.Service.Meta) > 0 {
		meta = make(map[string]string, len(e.Node.Meta)+len(e.Service.Meta))
		maps.Copy(meta, e.Node.Meta)
		maps.Copy(meta, e.Service.Meta)
	}
	return ports.Host{
		Name:    name,
		Address: addr,
		Port:    e.Service.Port,
		Tags:    slices.Clone(e.Service.Tags),
		Meta:    meta,
		Vars: map[string]any{
			"consul_node":         e.Node.Node,
			"consul_node_address": e.Node.Address,
			"consul_service":      e.Service.Service,
			"consul_service_id":   e.Service.ID,
			"consul_port":         e.Service.Port,
			"consul_datacenter":   e.Node.Datacenter,
		},
	}
}
