package ports

import "context"

// SnapshotResult is one host's outcome of a snapshot hook.
type SnapshotResult struct {
	// Host is the host's name.
	Host string `json:"host"`
	// Snapshot is the snapshot's name as the hook saw it ({{.Snapshot}}).
	Snapshot string `json:"snapshot"`
	// OK is true when the hook exited 0 within its timeout.
	OK bool `json:"ok"`
	// Output is the tail of the hook's combined stdout and stderr.
	Output string `json:"output,omitempty"`
	// Err says why the hook failed (nil when OK): it names the hook and
	// the host, and wraps ctx.Err() when the hook was cancelled or timed
	// out.
	Err error `json:"-"`
}

// Snapshotter takes, restores and deletes a snapshot of each host before it
// is changed, through hooks (libvirt, qcow2, LVM, ZFS, a cloud CLI).
//
// Each method runs its hook for every host in hosts, at most a configured
// number at once, each bounded by the hook's timeout, and returns one
// result per host in the order of hosts. A failure on one host does not
// stop the others. Cancelling ctx stops the running hooks (their whole
// process groups) and fails the hooks not yet started; their results wrap
// ctx.Err().
type Snapshotter interface {
	// Create takes the snapshot of run runID on each host.
	Create(ctx context.Context, hosts []Host, runID string) []SnapshotResult
	// Restore reverts each host to run runID's snapshot.
	Restore(ctx context.Context, hosts []Host, runID string) []SnapshotResult
	// Delete removes run runID's snapshot from each host. It returns nil
	// when no delete hook is configured.
	Delete(ctx context.Context, hosts []Host, runID string) []SnapshotResult
}
