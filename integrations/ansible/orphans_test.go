package ansible_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/rollguard/rollguard/integrations/ansible"
)

// orphan starts a process in its own process group, as Apply starts
// ansible-playbook, and returns it; the test kills it at the end.
func orphan(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

// waitExec waits until pid runs the command line want (NUL-separated, as
// /proc shows it): a process in the middle of exec shows neither its old
// nor its new command line, and a stop aimed at it then would find no
// playbook.
func waitExec(t *testing.T, pid int, want string) {
	t.Helper()
	for range 500 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && string(b) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d never ran %q", pid, want)
}

// signalOf waits for cmd and returns the signal that ended it.
func signalOf(t *testing.T, cmd *exec.Cmd) syscall.Signal {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the process ended with %v, not by a signal", err)
	}
	return ee.Sys().(syscall.WaitStatus).Signal()
}

func TestStopOrphans(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	a := ansible.New(ansible.Config{})

	// A playbook left running gets SIGTERM; a process that is no
	// playbook (a reused pid) is left alone.
	playbook := orphan(t, &exec.Cmd{Path: sleep, Args: []string{"ansible-playbook", "300"}})
	other := orphan(t, exec.Command(sleep, "300"))
	stopped := a.StopOrphans(t.Context(), []int{playbook.Process.Pid, other.Process.Pid})
	if !slices.Equal(stopped, []int{playbook.Process.Pid}) {
		t.Errorf("stopped %v, want only the playbook %d", stopped, playbook.Process.Pid)
	}
	if sig := signalOf(t, playbook); sig != syscall.SIGTERM {
		t.Errorf("the playbook ended by %v, want SIGTERM", sig)
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the process that is no playbook was stopped: %v", err)
	}

	// A playbook that ignores SIGTERM is killed once the wait ends; a
	// cancelled context ends it at once.
	stubborn := exec.Command("bash", "-c", `trap '' TERM; exec -a ansible-playbook sleep 300`)
	orphan(t, stubborn)
	waitExec(t, stubborn.Process.Pid, "ansible-playbook\x00300\x00")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if stopped := a.StopOrphans(ctx, []int{stubborn.Process.Pid}); len(stopped) != 1 {
		t.Errorf("stopped %v, want the playbook that ignores SIGTERM", stopped)
	}
	if sig := signalOf(t, stubborn); sig != syscall.SIGKILL {
		t.Errorf("the playbook that ignores SIGTERM ended by %v, want SIGKILL", sig)
	}
}
