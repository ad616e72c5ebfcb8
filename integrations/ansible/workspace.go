package ansible

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Every playbook run works in a private directory of its own,
// $TMPDIR/rollguard-ansible-*, holding what must not outlive it: the extra
// vars and the generated inventory (values a user may consider secret),
// the callback plugin, Ansible's local temporary files (templates rendered
// with vault values pass through them) and the SSH control sockets of the
// run's persistent connections. The run removes it when it ends; a run
// that was killed cannot, so the next run sweeps what a dead run left.
//
// Whether a directory's run is alive is told by an flock on the directory,
// held for the whole run and dropped by the kernel when the process dies:
// no pid that could be reused, no clock. The run writes an owner file once
// it holds the lock, so a sweeper that gets the lock of a directory
// without one has come between its creation and its locking (the run is
// waiting for the lock) and leaves it; directories of rollguard versions
// that wrote no owner file are left alone too.

const (
	workspacePattern = "rollguard-ansible-*"
	ownerFile        = "owner"
	// controlDir holds the run's SSH control sockets (ControlPath).
	controlDir = "cp"
	// localTempDir is Ansible's local temporary directory (local_tmp).
	localTempDir = "tmp"
)

// workspace is one run's private directory.
type workspace struct {
	dir string
	// lock is the directory, open, holding its flock.
	lock *os.File
}

// newWorkspace creates the directory (mode 0700) and takes its lock.
func newWorkspace(ctx context.Context, log *slog.Logger) (*workspace, error) {
	dir, err := os.MkdirTemp("", workspacePattern)
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	w := &workspace{dir: dir}
	w.lock, err = os.Open(dir)
	if err == nil {
		err = syscall.Flock(int(w.lock.Fd()), syscall.LOCK_EX)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0o600)
	}
	for _, sub := range []string{controlDir, localTempDir} {
		if err == nil {
			err = os.Mkdir(filepath.Join(dir, sub), 0o700)
		}
	}
	if err != nil {
		w.remove(ctx, log)
		return nil, fmt.Errorf("temporary directory %s: %w", dir, err)
	}
	return w, nil
}

func (w *workspace) path(name string) string { return filepath.Join(w.dir, name) }

// remove ends the run's persistent SSH connections and deletes the
// directory. It uses its own short deadline, since it must run after a
// cancelled run too.
func (w *workspace) remove(ctx context.Context, log *slog.Logger) {
	stopControlMasters(ctx, filepath.Join(w.dir, controlDir), log)
	if err := os.RemoveAll(w.dir); err != nil {
		log.Warn("ansible: temporary directory left behind", "dir", w.dir, "err", err)
	}
	if w.lock != nil {
		_ = w.lock.Close()
	}
}

// sweepWorkspaces removes the directories of runs that died without
// removing theirs (rollguard was killed), after ending the SSH connections
// they left open. A directory whose run still holds its lock is a live
// run, of this process or another, and is left alone.
func sweepWorkspaces(ctx context.Context, log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), workspacePattern))
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			continue // another user's run
		}
		sweepWorkspace(ctx, dir, log)
	}
}

func sweepWorkspace(ctx context.Context, dir string, log *slog.Logger) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return // a live run
	}
	if _, err := os.Stat(filepath.Join(dir, ownerFile)); err != nil {
		return
	}
	stopControlMasters(ctx, filepath.Join(dir, controlDir), log)
	if err := os.RemoveAll(dir); err != nil {
		log.Warn("ansible: could not remove a dead run's temporary directory", "dir", dir, "err", err)
		return
	}
	log.Info("ansible: removed a dead run's temporary directory", "dir", dir)
}

// stopControlMasters asks every SSH master connection with a socket in
// dir to exit (`ssh -O exit`) and waits until it has. A master outlives
// ansible-playbook by ControlPersist and leaves the process group, so
// stopping the group does not reach it; a master left running would keep
// the host's connection (and its host-key check) open for anyone who finds
// the socket. `-O exit` returns once the master has the request, before it
// has closed its connection and exited, so the wait is on the master's
// process itself (a pidfd, which becomes readable when it exits), within
// the same short deadline.
func stopControlMasters(ctx context.Context, dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return
	}
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	for _, e := range entries {
		if e.Type()&fs.ModeSocket == 0 {
			continue
		}
		sock := filepath.Join(dir, e.Name())
		master := openMaster(ctx, ssh, sock)
		// The host name is only used to expand %-tokens of a ControlPath,
		// which -S gives literally.
		cmd := exec.CommandContext(ctx, ssh, "-S", sock, "-O", "exit", "rollguard-control-master")
		out, err := cmd.CombinedOutput()
		if err != nil {
			log.Debug("ansible: ssh -O exit", "socket", sock, "err", err, "output", string(out))
		}
		if master >= 0 {
			if err == nil && !waitExit(master, deadline) {
				log.Warn("ansible: an SSH master connection did not exit in time", "socket", sock)
			}
			_ = unix.Close(master)
		}
	}
}

var masterRunning = regexp.MustCompile(`Master running \(pid=(\d+)\)`)

// openMaster returns a pidfd of the master process listening on sock, or
// -1 when there is none or the kernel has no pidfds (the wait is then
// skipped).
func openMaster(ctx context.Context, ssh, sock string) int {
	out, _ := exec.CommandContext(ctx, ssh, "-S", sock, "-O", "check", "rollguard-control-master").CombinedOutput()
	m := masterRunning.FindSubmatch(out)
	if m == nil {
		return -1
	}
	pid, err := strconv.Atoi(string(m[1]))
	if err != nil || pid <= 0 {
		return -1
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1
	}
	return fd
}

// waitExit waits until the process of pidfd fd has exited or deadline
// has passed, and tells whether it exited.
func waitExit(fd int, deadline time.Time) bool {
	for {
		ms := max(int(time.Until(deadline).Milliseconds()), 0)
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return false
		default:
			return n > 0
		}
	}
}
