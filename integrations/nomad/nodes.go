package nomad

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/ports"
)

// ErrNoNodes is wrapped by DiscoverNodes when no node matches.
var ErrNoNodes = errors.New("no ready, eligible nodes")

// NodeQuery selects Nomad client nodes. Empty fields do not filter.
type NodeQuery struct {
	// NodePool keeps nodes of this pool.
	NodePool string
	// NodeClass keeps nodes of this class.
	NodeClass string
	// Meta keeps nodes whose metadata has all these pairs.
	Meta map[string]string
}

func (q NodeQuery) describe() string {
	parts := []string{"status ready", "eligible", "not draining"}
	if q.NodePool != "" {
		parts = append(parts, "node_pool "+q.NodePool)
	}
	if q.NodeClass != "" {
		parts = append(parts, "node_class "+q.NodeClass)
	}
	if len(q.Meta) > 0 {
		keys := slices.Sorted(maps.Keys(q.Meta))
		pairs := make([]string, len(keys))
		for i, k := range keys {
			pairs[i] = k + "=" + q.Meta[k]
		}
		parts = append(parts, "meta "+strings.Join(pairs, ","))
	}
	return strings.Join(parts, ", ")
}

// DiscoverNodes returns the Nomad client nodes that are ready, eligible for
// scheduling and not draining, filtered by q, sorted by name.
//
// The node list (/v1/nodes) carries status, pool and class but not node
// metadata, so the list is filtered first and each remaining node is then
// read (/v1/node/<id>) for its metadata: one request per candidate node.
// A host's Name is the node name; Address is the node's
// unique.network.ip-address (the list's Address), else the host part of
// its HTTP address; Meta is the node metadata; Vars carry nomad_node_id,
// nomad_node_pool, nomad_node_class and nomad_datacenter. No match is an
// error wrapping ErrNoNodes that names every filter. Cancelling ctx aborts.
func DiscoverNodes(ctx context.Context, c *Client, q NodeQuery) ([]ports.Host, error) {
	stubs, _, err := c.api.Nodes().List(query(ctx, nil))
	if err != nil {
		return nil, fmt.Errorf("nomad nodes list: %w", err)
	}
	var hosts []ports.Host
	for _, s := range stubs {
		if s.Status != "ready" || s.SchedulingEligibility != "eligible" || s.Drain {
			continue
		}
		if (q.NodePool != "" && s.NodePool != q.NodePool) || (q.NodeClass != "" && s.NodeClass != q.NodeClass) {
			continue
		}
		node, _, err := c.api.Nodes().Info(s.ID, query(ctx, nil))
		if err != nil {
			return nil, fmt.Errorf("nomad node %s (%s): %w", s.Name, s.ID, err)
		}
		if !hasMeta(node.Meta, q.Meta) {
			continue
		}
		hosts = append(hosts, hostOf(s, node))
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("nomad nodes (%s) among %d nodes: %w", q.describe(), len(stubs), ErrNoNodes)
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	c.logger.Debug("nomad discovery", "nodes", len(hosts))
	return hosts, nil
}

func hasMeta(meta, want map[string]string) bool {
	for k, v := range want {
		if got, ok := meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func hostOf(s *api.NodeListStub, n *api.Node) ports.Host {
	addr := s.Address
	if addr == "" {
		addr = n.Attributes["unique.network.ip-address"]
	}
	if addr == "" && n.HTTPAddr != "" {
		if h, _, err := net.SplitHostPort(n.HTTPAddr); err == nil {
			addr = h
		}
	}
	var meta map[string]string
	if len(n.Meta) > 0 {
		meta = maps.Clone(n.Meta)
	}
	return ports.Host{
		Name:    s.Name,
		Address: addr,
		Meta:    meta,
		Vars: map[string]any{
			"nomad_node_id":    s.ID,
			"nomad_node_pool":  s.NodePool,
			"nomad_node_class": s.NodeClass,
			"nomad_datacenter": s.Datacenter,
		},
	}
}
