package ansible

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// orphanGrace is how long an orphaned playbook's process group has
// between SIGTERM and SIGKILL.
const orphanGrace = 30 * time.Second

// orphanPoll is how often StopOrphans looks whether a signalled playbook
// ended: it is not our child, so there is nothing to wait on.
const orphanPoll = 100 * time.Millisecond

// StopOrphans stops the playbooks that a killed rollguard started on this
// machine and that still run: pids are the process ids (each also its
// process group id) that ApplyRequest.OnStart reported. Each is signalled
// only while /proc shows that pid still running ansible-playbook, so a
// playbook that ended, or a recycled pid, is left alone: SIGTERM to the
// process group, then SIGKILL after 30 s. It returns the pids it stopped.
// Cancelling ctx ends the wait at once: the group is then killed.
func (a *Applier) StopOrphans(ctx context.Context, pids []int) []int {
	var stopped []int
	for _, pid := range pids {
		if !isPlaybook(pid) {
			continue
		}
		a.log.Info("stopping a playbook left running by a killed run", "pid", pid)
		syscall.Kill(-pid, syscall.SIGTERM)
		waitGone(ctx, pid)
		if isPlaybook(pid) {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		stopped = append(stopped, pid)
	}
	return stopped
}

// waitGone polls until pid no longer runs a playbook, orphanGrace passed
// or ctx is cancelled.
func waitGone(ctx context.Context, pid int) {
	deadline := time.NewTimer(orphanGrace)
	defer deadline.Stop()
	tick := time.NewTicker(orphanPoll)
	defer tick.Stop()
	for isPlaybook(pid) {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// isPlaybook reports whether pid is a running ansible-playbook.
func isPlaybook(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil && strings.Contains(string(stat), ") Z ") {
		return false // a zombie waits for its parent; it changes nothing
	}
	return strings.Contains(string(cmdline), "ansible-playbook")
}
