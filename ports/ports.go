// Package ports declares what a rollout needs from the outside world, as
// small interfaces with their cancellation contracts: metrics
// (MetricsSource), playbooks (Applier), snapshots (Snapshotter), alerts
// (Alerter), state and locks (StateStore, Locker) and time (Clock), with
// the types that cross them (Host, Query, ApplyRequest, ...) and the
// template fields a snapshot hook may use. Adapters in integrations/
// implement them; the runner consumes them. It imports nothing of ours.
package ports

import (
	"context"
	"time"
)

// Host is one target host as the runner and the adapters see it.
type Host struct {
	// Name is the inventory name.
	Name string `json:"name"`
	// Address is how to reach the host (ansible_host); default Name.
	Address string `json:"address,omitempty"`
	// Port is the service port when the source knows one.
	Port int `json:"port,omitempty"`
	// Vars are Ansible host variables.
	Vars map[string]any `json:"vars,omitempty"`
	// Tags and Meta come from the inventory source (Consul, Nomad, static).
	Tags []string          `json:"tags,omitempty"`
	Meta map[string]string `json:"meta,omitempty"`
}

// Query is one metric to watch: its name in policies and recordings, and
// the PromQL/MetricsQL expression giving one series per host.
type Query struct {
	Name string
	Expr string
}

// MetricsSource reads metrics for all the hosts of a rollout at once: one
// request per query, never one per host. Keys are the hosts' values of the
// host label (metrics.host_value rendered per host), in the caller's order.
type MetricsSource interface {
	// Instant writes q's value at t for each key into out (len(out) ==
	// len(keys)); NaN where the source has no value. Cancelling ctx aborts
	// the request and returns an error wrapping ctx.Err().
	Instant(ctx context.Context, q Query, keys []string, at time.Time, out []float64) error
	// Range returns, for each key, q's samples in [from, to] at step
	// (len == len(keys); empty Samples where the source has none), in at
	// most two requests. Cancelling ctx aborts the request and returns an
	// error wrapping ctx.Err().
	Range(ctx context.Context, q Query, keys []string, from, to time.Time, step time.Duration) ([]Samples, error)
}

// Samples is one key's samples from a range query, in time order, with
// the times they were taken (the report draws a baseline at its times).
type Samples struct {
	// Timestamps are unix milliseconds, one per value.
	Timestamps []int64
	Values     []float64
}

// Host outcomes of an apply, from the play recap.
const (
	// HostOK: the play ran to its end on the host and changed nothing (it
	// already carried the change).
	HostOK = "ok"
	// HostChanged: the play ran to its end and changed something.
	HostChanged = "changed"
	// HostFailed: a task failed on the host; ChangedTasks says whether
	// something was changed before.
	HostFailed = "failed"
	// HostUnreachable: the host could not be reached (connection refused,
	// timed out, host key rejected): its state is unknown.
	HostUnreachable = "unreachable"
	// HostSkipped: a play was meant for the host but no task ran on it
	// (every task skipped, or the play stopped before the host's turn).
	HostSkipped = "skipped"
	// HostUnmatched: no play of the playbook matched the host: its
	// `hosts:` pattern and the limit have no host in common, so nothing
	// ran there.
	HostUnmatched = "unmatched"
)

// ApplyRequest is one playbook run over some hosts.
type ApplyRequest struct {
	// Playbook is the playbook's path.
	Playbook string
	// Inventory is every target host. When the targets come from an
	// inventory of the user's, the adapter runs the playbook against that
	// inventory and Inventory only says which hosts Limit may name;
	// otherwise the adapter generates an inventory holding them all, so
	// that playbooks can see the fleet. Limit restricts the run (--limit).
	Inventory []Host
	Limit     []string
	// ExtraVars are passed as --extra-vars (JSON).
	ExtraVars map[string]any
	// Forks is --forks (0: Ansible's default).
	Forks int
	// VaultPasswordFile is --vault-password-file (never logged).
	VaultPasswordFile string
	// Check runs the playbook in check mode with --diff (the pre-flight
	// diff gate): nothing is changed on the hosts; each HostResult's
	// ChangedTasks and Changes say what the run would change.
	Check bool
	// OnStart, when set, is called with the playbook's process id, which
	// is also its process group id, once it started: the runner journals
	// it so that a resumed run can stop a playbook its killed predecessor
	// left running before it applies again.
	OnStart func(pid int)
}

// HostResult is one host's outcome of a playbook run.
type HostResult struct {
	Host string `json:"host"`
	// Status: ok | changed | failed | unreachable | skipped | unmatched.
	Status string `json:"status"`
	// ChangedTasks names the tasks that changed something, in order.
	ChangedTasks []string `json:"changed_tasks,omitempty"`
	// Changes says, for a check run (ApplyRequest.Check), what each
	// changed task would change: one entry per changed task, in order.
	Changes []TaskChange `json:"changes,omitempty"`
	// Message says why a host failed, was unreachable, skipped or
	// unmatched, in words a person can act on (for unmatched: the plays'
	// patterns and the limit).
	Message string `json:"message,omitempty"`
}

// TaskChange is what one task changes (or, in check mode, would change)
// on a host: the files it writes, when the module says which.
type TaskChange struct {
	Task  string       `json:"task"`
	Files []FileChange `json:"files,omitempty"`
}

// FileChange is one file a task changes: its path on the host and the
// lines its diff adds and removes (0 and 0 when the module gave no text
// diff, as for a copy with remote_src or a change of mode).
type FileChange struct {
	Path    string `json:"path"`
	Added   int    `json:"added"`
	Removed int    `json:"removed"`
}

// Applied reports whether the play ran to its end on the host (ok or
// changed): only then does the host carry the change.
func (r HostResult) Applied() bool {
	return r.Status == HostOK || r.Status == HostChanged
}

// ApplyResult is the outcome of a playbook run, per host.
type ApplyResult struct {
	Hosts []HostResult
}

// ApplyEvent is progress while a playbook runs.
type ApplyEvent struct {
	Host   string
	Task   string
	Status string
}

// Applier runs playbooks.
type Applier interface {
	// Apply runs req and returns each host's outcome. Progress, when not
	// nil, is called as tasks finish. Cancelling ctx stops the playbook's
	// whole process group and returns an error wrapping ctx.Err(), with
	// the outcomes known so far.
	Apply(ctx context.Context, req ApplyRequest, progress func(ApplyEvent)) (ApplyResult, error)
	// StopOrphans stops the playbooks that a killed run started on this
	// machine and that still run; pids are what ApplyRequest.OnStart
	// reported. A resumed run calls it before it acts, so that two
	// playbooks never write the same hosts at once. A pid that no longer
	// runs a playbook (it ended, or the pid was reused) is left alone. It
	// returns the pids it stopped. Cancelling ctx ends the wait for a
	// playbook to exit: it is then killed.
	StopOrphans(ctx context.Context, pids []int) []int
}

// Clock is the time source of a rollout: the wall clock in a live run, a
// simulated one in a dry run and in tests.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is cancelled (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// WallClock is the real clock of a live run.
type WallClock struct{}

// Now returns the current time.
func (WallClock) Now() time.Time { return time.Now() }

// Sleep waits for d; cancelling ctx ends the wait early with ctx.Err().
func (WallClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
