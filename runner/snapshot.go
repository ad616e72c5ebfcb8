package runner

import (
	"context"
	"fmt"

	"github.com/rollguard/rollguard/ports"
)

// This file takes each host's snapshot before its wave changes it, and
// deletes the run's snapshots once the change is final. Restoring one is
// a revert method (revert.go).

// takeSnapshots snapshots the wave's hosts and returns those the apply
// may change.
func (x *execution) takeSnapshots(ctx context.Context, w PlannedWave, hosts []ports.Host) ([]ports.Host, error) {
	if err := x.journalMust(ctx, JournalEntry{Step: JournalSnapshot, Wave: w.Name, Hosts: hostNames(hosts)}); err != nil {
		return nil, err
	}
	x.logf("   snapshot of %d hosts", len(hosts))
	var keep []ports.Host
	for i, res := range x.Snapshots.Create(ctx, hosts, x.RunID) {
		h := hosts[i]
		hi := x.index[h.Name]
		if res.OK {
			x.hosts[hi].snapshot = res.Snapshot
			keep = append(keep, h)
			continue
		}
		x.logf("   snapshot of %s FAILED: %v", h.Name, res.Err)
		if !x.SnapshotSkipHost {
			keep = append(keep, h)
			continue
		}
		x.exclude(hi)
		x.hosts[hi].revertReason = fmt.Sprintf("snapshot failed (%v): not changed (snapshot.on_failure: skip_host)", res.Err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return keep, nil
}

// deleteSnapshots removes the run's snapshots once the change is final.
func (x *execution) deleteSnapshots(ctx context.Context) {
	if x.Snapshots == nil || x.dry() {
		return
	}
	var hosts []ports.Host
	for i := range x.hosts {
		if x.hosts[i].snapshot != "" {
			hosts = append(hosts, x.hosts[i].Host)
		}
	}
	if len(hosts) == 0 {
		return
	}
	for _, res := range x.Snapshots.Delete(context.WithoutCancel(ctx), hosts, x.RunID) {
		if !res.OK {
			x.logf("   snapshot delete on %s failed: %v", res.Host, res.Err)
		}
	}
}
