package ansible

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Every playbook run works in a private directory of its own,
// $TMPDIR/rollguard-ansible-*, holding what must not outlive it: the extra
// vars and the generated inventory (values a user may consider secret),
// the callback plugin, Ansible's local temporary files (templates rendered
// with vault values pass through them) and the SSH control sockets of the
// run's persistent connections. The run removes it when it ends; a run
// that was killed cannot, so the next run sweeps what a dead run left.
//
// Whether a directory's run is alive is told by an flock on its owner
// file, held for the whole run and dropped by the kernel when the process
// dies: no pid that could be reused, no clock.

const (
	workspacePattern = "rollguard-ansible-*"
	ownerFile        = "owner.lock"
	// controlDir holds the run's SSH control sockets (ControlPath).
	controlDir = "cp"
	// localTempDir is Ansible's local temporary directory (local_tmp).
	localTempDir = "tmp"
	// unownedAge is how old a directory without an owner file must be to
	// be swept: younger, it may be a run between creating its directory
	// and locking it.
	unownedAge = time.Minute
)

// workspace is one run's private directory.
type workspace struct {
	dir   string
	owner *os.File
}

// newWorkspace creates the directory (mode 0700) and takes its owner lock.
func newWorkspace(ctx context.Context, log *slog.Logger) (*workspace, error) {
	dir, err := os.MkdirTemp("", workspacePattern)
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	w := &workspace{dir: dir}
	w.owner, err = os.OpenFile(filepath.Join(dir, ownerFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(w.owner.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
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
	if w.owner != nil {
		_ = w.owner.Close()
	}
}

// sweepWorkspaces removes the directories of runs that died without
// removing theirs (rollguard was killed), after ending the SSH connections
// they left open. A directory whose owner still holds its lock is a live
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
		f, err := os.OpenFile(filepath.Join(dir, ownerFile), os.O_RDWR, 0)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if time.Since(fi.ModTime()) < unownedAge {
				continue
			}
		case err != nil:
			continue
		default:
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
				f.Close()
				continue // a live run
			}
		}
		stopControlMasters(ctx, filepath.Join(dir, controlDir), log)
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("ansible: could not remove a dead run's temporary directory", "dir", dir, "err", err)
		} else {
			log.Info("ansible: removed a dead run's temporary directory", "dir", dir)
		}
		if f != nil {
			f.Close()
		}
	}
}

// stopControlMasters asks every SSH master connection with a socket in
// dir to exit (`ssh -O exit`). A master outlives ansible-playbook by
// ControlPersist and leaves the process group, so stopping the group does
// not reach it; a master left running would keep the host's connection
// (and its host-key check) open for anyone who finds the socket.
func stopControlMasters(ctx context.Context, dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return
	}
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, e := range entries {
		if e.Type()&fs.ModeSocket == 0 {
			continue
		}
		sock := filepath.Join(dir, e.Name())
		// The host name is only used to expand %-tokens of a ControlPath,
		// which -S gives literally.
		cmd := exec.CommandContext(ctx, ssh, "-S", sock, "-O", "exit", "rollguard-control-master")
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Debug("ansible: ssh -O exit", "socket", sock, "err", err, "output", string(out))
		}
	}
}
