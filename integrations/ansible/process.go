package ansible

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	goexec "github.com/apenella/go-ansible/v2/pkg/execute/exec"
)

// groupExec is the go-ansible Executabler of one run. It starts
// ansible-playbook as the leader of a new session (and so of a new process
// group), so that a cancelled run can stop the forks Ansible makes and the
// commands they run, not only ansible-playbook itself, and so that nothing
// it starts has a controlling terminal to prompt on (ssh's host-key
// question, a passphrase, a become password): a prompt fails at once
// instead of hanging the rollout. It hands the process the event pipe, and
// records its start and exit, which go-ansible's error text (holding the
// command line and the environment) is not used for.
//
// It returns its own Cmder rather than an *exec.Cmd so that go-ansible does
// not hand the process rollguard's stdin, where a prompt would wait for an
// answer: its stdin is /dev/null.
type groupExec struct {
	env       func() []string
	dir       string
	extra     *os.File
	onStarted func()
	// onPID receives the playbook's pid (= its process group id).
	onPID func(int)
	grace time.Duration

	mu          sync.Mutex
	cmd         *groupCmd
	startCalled bool
	started     error
}

// Command is part of go-ansible's Executabler; runs always go through
// CommandContext, so this one cannot be cancelled.
func (g *groupExec) Command(name string, arg ...string) goexec.Cmder {
	return g.newCmd(exec.Command(name, arg...))
}

// CommandContext returns the command that go-ansible starts; cancelling
// ctx sends SIGTERM to its process group, then SIGKILL after the grace
// period.
func (g *groupExec) CommandContext(ctx context.Context, name string, arg ...string) goexec.Cmder {
	return g.newCmd(exec.CommandContext(ctx, name, arg...))
}

func (g *groupExec) newCmd(cmd *exec.Cmd) *groupCmd {
	cmd.Env = g.env()
	cmd.Dir = g.dir
	cmd.ExtraFiles = []*os.File{g.extra}
	// Its own session, so a cancel reaches every worker and no terminal
	// is there to prompt on; and SIGTERM when rollguard dies (kill -9, a
	// lost runner), so a playbook does not go on changing hosts behind a
	// resumed run's back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	c := &groupCmd{cmd: cmd, owner: g}
	cmd.Cancel = c.cancel
	// If a process outside the group kept stdout open, Wait would hang;
	// after the grace period and this much more, it gives up on the pipes.
	cmd.WaitDelay = g.grace + 2*time.Second
	g.mu.Lock()
	g.cmd = c
	g.mu.Unlock()
	return c
}

// startErr reports whether the process started, and if it did not, why
// (nil when go-ansible never asked for a command).
func (g *groupExec) startErr() (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.startCalled {
		return false, nil
	}
	return g.started == nil, g.started
}

// finish waits for the process if go-ansible returned without doing so (it
// does on cancellation), sweeps what is left of a cancelled process group,
// and returns the process's exit error.
func (g *groupExec) finish() error {
	g.mu.Lock()
	c := g.cmd
	g.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.finish()
}

// groupCmd is one ansible-playbook process, as a go-ansible Cmder.
type groupCmd struct {
	cmd   *exec.Cmd
	owner *groupExec

	mu        sync.Mutex
	startedOK bool
	waited    bool
	waitErr   error
	cancelled bool
	killTimer *time.Timer
}

func (c *groupCmd) Start() error {
	err := c.cmd.Start()
	c.mu.Lock()
	c.startedOK = err == nil
	c.mu.Unlock()
	c.owner.mu.Lock()
	c.owner.startCalled, c.owner.started = true, err
	c.owner.mu.Unlock()
	if c.owner.onStarted != nil {
		c.owner.onStarted()
	}
	if err == nil && c.owner.onPID != nil {
		c.owner.onPID(c.cmd.Process.Pid)
	}
	return err
}

func (c *groupCmd) Wait() error {
	err := c.cmd.Wait()
	c.mu.Lock()
	c.waited, c.waitErr = true, err
	c.mu.Unlock()
	return err
}

// cancel is exec.Cmd.Cancel: SIGTERM to the group now, SIGKILL to it after
// the grace period unless the group is gone by then.
func (c *groupCmd) cancel() error {
	pgid := c.cmd.Process.Pid
	c.mu.Lock()
	c.cancelled = true
	c.killTimer = time.AfterFunc(c.owner.grace, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	c.mu.Unlock()
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func (c *groupCmd) finish() error {
	c.mu.Lock()
	started, waited := c.startedOK, c.waited
	c.mu.Unlock()
	if !started {
		return nil
	}
	if !waited {
		_ = c.Wait()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled {
		// The leader is gone; forks or commands that outlived it still
		// carry its group id, which the kernel keeps reserved while they
		// do.
		c.killTimer.Stop()
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	}
	return c.waitErr
}

func (c *groupCmd) CombinedOutput() ([]byte, error)    { return c.cmd.CombinedOutput() }
func (c *groupCmd) Environ() []string                  { return c.cmd.Environ() }
func (c *groupCmd) Output() ([]byte, error)            { return c.cmd.Output() }
func (c *groupCmd) Run() error                         { return c.cmd.Run() }
func (c *groupCmd) StderrPipe() (io.ReadCloser, error) { return c.cmd.StderrPipe() }
func (c *groupCmd) StdinPipe() (io.WriteCloser, error) { return c.cmd.StdinPipe() }
func (c *groupCmd) StdoutPipe() (io.ReadCloser, error) { return c.cmd.StdoutPipe() }
func (c *groupCmd) String() string                     { return c.cmd.String() }
