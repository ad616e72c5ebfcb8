package ports

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrConflict is returned by StateStore.Put and Delete when the stored
// version is no longer the one the caller read: another writer won the
// race. It is never retried silently.
var ErrConflict = errors.New("state changed concurrently (check-and-set lost)")

// StateStore keeps a rollout's history and journal: the local state
// directory, Consul KV or Nomad Variables. Keys are relative to the
// rollout's prefix (e.g. "history/web-1", "journal").
type StateStore interface {
	// Get returns the value and its version; version 0 and a nil value
	// when the key does not exist. Cancelling ctx aborts the call.
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// Put writes value if the stored version is still version (0: the
	// key must not exist yet) and returns the new version; an error
	// wrapping ErrConflict otherwise.
	Put(ctx context.Context, key string, value []byte, version uint64) (uint64, error)
	// List returns the keys under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes key if its version is still version (ErrConflict
	// otherwise).
	Delete(ctx context.Context, key string, version uint64) error
}

// Holder says who holds a lock, so a refused run can name it.
type Holder struct {
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	RunID string    `json:"run_id"`
	Since time.Time `json:"since"`
	// Where is extra context (CI job URL, Nomad allocation ID).
	Where string `json:"where,omitempty"`
}

// LockedError is returned by Locker.Acquire when another run holds the lock.
type LockedError struct {
	Name   string
	Holder Holder
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("rollout %q is locked by run %s on host %s (pid %d) since %s",
		e.Name, e.Holder.RunID, e.Holder.Host, e.Holder.PID, e.Holder.Since.Format(time.RFC3339))
}

// Locker takes the one-run-per-rollout lock.
type Locker interface {
	// Acquire takes the lock named name for holder, or returns a
	// *LockedError naming the current holder. It does not wait.
	// Cancelling ctx aborts the attempt.
	Acquire(ctx context.Context, name string, holder Holder) (Lease, error)
}

// Lease is a held lock.
type Lease interface {
	// Lost is closed when the lock is lost (session invalidated, lease
	// expired): the run must stop changing hosts and go to a safe state.
	Lost() <-chan struct{}
	// Release gives the lock up.
	Release(ctx context.Context) error
}
