package nomad

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/go-version"
	"github.com/hashicorp/nomad/api"
)

// Nomad versions that bring what the job uses.
var (
	// VersionCrons is the first version that reads periodic `crons`.
	VersionCrons = version.Must(version.NewVersion("1.6.2"))
	// VersionIdentity is the first version whose workload identities the
	// job relies on for the Nomad API (identity blocks, the task API).
	VersionIdentity = version.Must(version.NewVersion("1.7.0"))
)

// Cluster is what `nomad register` reads of the cluster before it renders.
type Cluster struct {
	// Readable is false when the token may not list nodes (403): nothing
	// is known of the clients.
	Readable bool
	// Nodes is the number of client nodes.
	Nodes int
	// Oldest is the lowest Nomad version among them, and OldestNode a
	// node that runs it; nil when there is no node.
	Oldest     *version.Version
	OldestNode string
}

// ReadCluster lists the client nodes (GET /v1/nodes) and finds the oldest
// Nomad version among them: a job must work on every node it may land
// on. A token without node read (403) is not an error: Readable is then
// false. Cancelling ctx aborts the request.
func ReadCluster(ctx context.Context, c *Client) (Cluster, error) {
	nodes, _, err := c.api.Nodes().List(query(ctx, nil))
	if err != nil {
		var ue api.UnexpectedResponseError
		if errors.As(err, &ue) && ue.StatusCode() == http.StatusForbidden {
			return Cluster{}, nil
		}
		return Cluster{}, fmt.Errorf("nomad: list nodes: %w", err)
	}
	cl := Cluster{Readable: true, Nodes: len(nodes)}
	for _, n := range nodes {
		v, err := version.NewVersion(n.Version)
		if err != nil {
			continue
		}
		if cl.Oldest == nil || v.LessThan(cl.Oldest) {
			cl.Oldest, cl.OldestNode = v, n.Name
		}
	}
	return cl, nil
}

// Supports says whether every node runs at least v. Without nodes (or
// versions) nothing is known, and it says yes: the operator chose.
func (cl Cluster) Supports(v *version.Version) bool {
	return cl.Oldest == nil || !cl.Oldest.LessThan(v)
}
