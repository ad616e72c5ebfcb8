package localstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"

	"github.com/rollguard/rollguard/ports"
)

// holderReadTries bounds how often Acquire, finding the lock held, retries
// to read the holder file (or take the lock), holderReadDelay apart.
const (
	holderReadTries = 50
	holderReadDelay = 10 * time.Millisecond
)

// Locker is a ports.Locker on flock(2): rollout <name>'s lock is an
// exclusive flock on <dir>/locks/<name>.lock, and the run holding it is
// written to <dir>/locks/<name>.holder so that a refused run can name it.
//
// The operating system releases a flock when its holder dies, however it
// dies, so a lock is never left held by a crashed run. A holder file whose
// flock is free is therefore stale: Acquire takes it over, logs a warning
// and reports the previous holder through Lease.TookOver.
//
// Lock files are never removed: removing a lock file while another process
// has it open would let two processes hold locks on two different files of
// the same name.
type Locker struct {
	dir string
	log *slog.Logger
}

var _ ports.Locker = (*Locker)(nil)

// NewLocker returns the locker on dir's locks/ directory. logger receives
// stale-lock takeovers (nil: discard).
func NewLocker(dir string, logger *slog.Logger) (*Locker, error) {
	if dir == "" {
		return nil, errors.New("local lock: directory is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(dir, locksDir), 0o700); err != nil {
		return nil, fmt.Errorf("local lock directory %s: %w", dir, err)
	}
	return &Locker{dir: dir, log: logger}, nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("lock name %q: must be a file name not starting with a dot", name)
	}
	return nil
}

// Acquire takes rollout name's lock for holder without waiting. When
// another run (in this process or another) holds it, it returns a
// *ports.LockedError naming the holder. Cancelling ctx aborts the attempt.
func (l *Locker) Acquire(ctx context.Context, name string, holder ports.Holder) (ports.Lease, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("local lock: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local lock %q: %w", name, err)
	}
	lockPath := filepath.Join(l.dir, locksDir, name+".lock")
	holderPath := filepath.Join(l.dir, locksDir, name+".holder")
	f := flock.New(lockPath)
	for attempt := 1; ; attempt++ {
		ok, err := f.TryLock()
		if err != nil {
			return nil, fmt.Errorf("local lock %q: %w", name, err)
		}
		if ok {
			break
		}
		// Held: name the holder. A holder that has just taken the lock
		// may not have written its file yet, and one that is releasing
		// it removes the file first, so try again for a short while.
		h, err := readHolder(holderPath)
		if err == nil {
			return nil, &ports.LockedError{Name: name, Holder: h}
		}
		if attempt == holderReadTries {
			return nil, fmt.Errorf("local lock %q is held by a run that did not say who it is (%v): %w", name, err, &ports.LockedError{Name: name})
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("local lock %q is held; reading its holder: %w", name, ctx.Err())
		case <-time.After(holderReadDelay):
		}
	}

	lease := &Lease{name: name, flock: f, holderPath: holderPath, lost: make(chan struct{})}
	if prev, err := readHolder(holderPath); err == nil {
		lease.previous, lease.tookOver = prev, true
		l.log.Warn("taking over a stale lock: its holder is gone",
			"lock", name, "stale_run_id", prev.RunID, "stale_host", prev.Host, "stale_pid", prev.PID, "stale_since", prev.Since)
	}
	data, err := json.Marshal(holder)
	if err == nil {
		err = writeAtomic(holderPath, append(data, '\n'))
	}
	if err != nil {
		f.Unlock()
		return nil, fmt.Errorf("local lock %q: write holder: %w", name, err)
	}
	return lease, nil
}

func readHolder(p string) (ports.Holder, error) {
	var h ports.Holder
	data, err := os.ReadFile(p)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("holder file %s: %w", p, err)
	}
	return h, nil
}

// Lease is a held local lock.
type Lease struct {
	name       string
	flock      *flock.Flock
	holderPath string
	lost       chan struct{}

	previous ports.Holder
	tookOver bool

	once sync.Once
	err  error
}

// Lost never closes: nobody can take a local lock from a living process.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// TookOver returns the previous holder when Acquire took over a stale lock
// (its holder had died without releasing it).
func (l *Lease) TookOver() (ports.Holder, bool) { return l.previous, l.tookOver }

// Release removes the holder file and releases the flock. Calling it again
// returns the first call's result.
func (l *Lease) Release(ctx context.Context) error {
	l.once.Do(func() {
		var errs []error
		if err := os.Remove(l.holderPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		if err := l.flock.Unlock(); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			l.err = fmt.Errorf("local lock %q: release: %w", l.name, err)
		}
	})
	return l.err
}
