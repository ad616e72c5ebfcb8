package nomad

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/ports"
)

// Items of a lock variable.
const (
	itemHolder  = "holder"  // ports.Holder as JSON
	itemExpires = "expires" // RFC 3339 time after which the lease is stale
)

// VarLockOptions tunes a VarLocker. Zero values take the defaults.
type VarLockOptions struct {
	// PathPrefix: the lock of rollout <name> is the variable
	// <PathPrefix><name>/lock (default "rollguard/").
	PathPrefix string
	// Namespace of the variable (default: the client's).
	Namespace string
	// TTL is how long a lease lasts without renewal (default 1m). Hosts'
	// clocks must agree to well within it: expiry is a wall-clock time.
	TTL time.Duration
	// RenewEvery is the renewal period (default TTL/3).
	RenewEvery time.Duration
	// Clock paces renewals and judges expiry (default: the wall clock).
	Clock ports.Clock
	// Logger receives renewal failures and loss (default: the client's).
	Logger *slog.Logger
}

// VarLocker is a ports.Locker on one Nomad variable holding the holder and
// an expiry time. It is acquired with check-and-set (create when absent,
// take over when expired), renewed every RenewEvery by a check-and-set that
// pushes the expiry forward, and lost when a renewal's check-and-set fails
// (someone took the stale lease over) or when the expiry passes without a
// successful renewal. It works on every Nomad version with Variables (1.4+)
// and does not use Nomad 1.7's native variable locks.
type VarLocker struct {
	c    *Client
	opts VarLockOptions
}

// NewVarLocker returns a VarLocker using c.
func NewVarLocker(c *Client, opts VarLockOptions) *VarLocker {
	if opts.PathPrefix == "" {
		opts.PathPrefix = "rollguard/"
	}
	if opts.TTL == 0 {
		opts.TTL = time.Minute
	}
	if opts.RenewEvery == 0 {
		opts.RenewEvery = opts.TTL / 3
	}
	if opts.Clock == nil {
		opts.Clock = ports.WallClock{}
	}
	if opts.Logger == nil {
		opts.Logger = c.logger
	}
	return &VarLocker{c: c, opts: opts}
}

// LockPath returns the variable path of rollout name's lock.
func (l *VarLocker) LockPath(name string) string {
	return l.opts.PathPrefix + escapePath(name) + "/lock"
}

func (l *VarLocker) items(holder []byte, expires time.Time) api.VariableItems {
	return api.VariableItems{itemHolder: string(holder), itemExpires: expires.UTC().Format(time.RFC3339Nano)}
}

// Acquire takes the lock for holder, or returns a *ports.LockedError naming
// the current holder when an unexpired lease exists or another run won the
// race. It does not wait. Cancelling ctx aborts the attempt.
func (l *VarLocker) Acquire(ctx context.Context, name string, holder ports.Holder) (ports.Lease, error) {
	path := l.LockPath(name)
	hj, err := json.Marshal(holder)
	if err != nil {
		return nil, fmt.Errorf("nomad lock %q: encode holder: %w", path, err)
	}
	cur, _, err := l.c.api.Variables().Peek(path, query(ctx, &api.QueryOptions{Namespace: l.opts.Namespace}))
	if err != nil {
		return nil, fmt.Errorf("nomad lock %q: read: %w", path, err)
	}
	var version uint64
	if cur != nil {
		current, expires, err := parseLock(cur)
		if err != nil {
			return nil, fmt.Errorf("nomad lock %q: %w", path, err)
		}
		if l.opts.Clock.Now().Before(expires) {
			return nil, &ports.LockedError{Name: name, Holder: current}
		}
		l.opts.Logger.Warn("nomad lock is stale, taking it over", "path", path, "stale_run_id", current.RunID, "expired", expires)
		version = cur.ModifyIndex
	}
	expires := l.opts.Clock.Now().Add(l.opts.TTL)
	v, err := checkedWrite(ctx, l.c, &api.Variable{Namespace: l.opts.Namespace, Path: path, Items: l.items(hj, expires), ModifyIndex: version})
	if errors.Is(err, ports.ErrConflict) {
		// Another run created or took over the lock between our read and write.
		return nil, l.refusal(ctx, name, path)
	}
	if err != nil {
		return nil, fmt.Errorf("nomad lock %q: acquire: %w", path, err)
	}
	leaseCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	lease := &varLease{l: l, path: path, holder: hj, index: v.ModifyIndex, expires: expires, lost: make(chan struct{}), cancel: cancel}
	lease.wg.Add(1)
	go lease.renew(leaseCtx)
	l.opts.Logger.Info("nomad lock acquired", "path", path, "run_id", holder.RunID, "expires", expires)
	return lease, nil
}

func (l *VarLocker) refusal(ctx context.Context, name, path string) error {
	cur, _, err := l.c.api.Variables().Peek(path, query(ctx, &api.QueryOptions{Namespace: l.opts.Namespace}))
	if err != nil {
		return fmt.Errorf("nomad lock %q was taken concurrently; reading its holder: %w", path, err)
	}
	locked := &ports.LockedError{Name: name}
	if cur != nil {
		if h, _, err := parseLock(cur); err == nil {
			locked.Holder = h
		}
	}
	return locked
}

func parseLock(v *api.Variable) (ports.Holder, time.Time, error) {
	var h ports.Holder
	if err := json.Unmarshal([]byte(v.Items[itemHolder]), &h); err != nil {
		return h, time.Time{}, fmt.Errorf("holder item is not a rollguard holder: %w", err)
	}
	expires, err := time.Parse(time.RFC3339Nano, v.Items[itemExpires])
	if err != nil {
		return h, time.Time{}, fmt.Errorf("expires item: %w", err)
	}
	return h, expires, nil
}

// varLease is a held variable lock.
type varLease struct {
	l      *VarLocker
	path   string
	holder []byte

	mu      sync.Mutex
	index   uint64 // ModifyIndex of our last write
	expires time.Time

	lost     chan struct{}
	lostOnce sync.Once
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Lost is closed when a renewal's check-and-set failed or the lease
// expired without a successful renewal.
func (s *varLease) Lost() <-chan struct{} { return s.lost }

func (s *varLease) markLost(reason string) {
	s.lostOnce.Do(func() {
		s.l.opts.Logger.Warn("nomad lock lost", "path", s.path, "reason", reason)
		close(s.lost)
		s.cancel()
	})
}

func (s *varLease) renew(ctx context.Context) {
	defer s.wg.Done()
	clock := s.l.opts.Clock
	for {
		if clock.Sleep(ctx, s.l.opts.RenewEvery) != nil {
			return
		}
		s.mu.Lock()
		index, expires := s.index, s.expires
		s.mu.Unlock()
		if !clock.Now().Before(expires) {
			s.markLost("lease expired before it could be renewed")
			return
		}
		next := clock.Now().Add(s.l.opts.TTL)
		// A renewal that Nomad does not answer is given up when the
		// lease expires: a store that hangs must not keep a lost lock
		// looking held.
		wctx, cancel := context.WithTimeout(ctx, max(expires.Sub(clock.Now()), time.Second))
		v, err := checkedWrite(wctx, s.l.c, &api.Variable{Namespace: s.l.opts.Namespace, Path: s.path, Items: s.l.items(s.holder, next), ModifyIndex: index})
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, ports.ErrConflict):
			s.markLost("renewal check-and-set failed: the lock changed hands")
			return
		case err != nil && !clock.Now().Before(expires):
			s.markLost(fmt.Sprintf("lease expired while its renewal failed: %v", err))
			return
		case err != nil:
			s.l.opts.Logger.Warn("nomad lock renewal failed", "path", s.path, "err", err)
		default:
			s.mu.Lock()
			s.index, s.expires = v.ModifyIndex, next
			s.mu.Unlock()
		}
	}
}

// Release stops renewing and deletes the variable if it is still ours.
// After a loss there is nothing to release and it returns nil.
func (s *varLease) Release(ctx context.Context) error {
	s.cancel()
	s.wg.Wait()
	select {
	case <-s.lost:
		return nil
	default:
	}
	s.mu.Lock()
	index := s.index
	s.mu.Unlock()
	// Like the Consul lock's session destroy: a release outlives a
	// cancelled caller for a while, and a Nomad that does not answer does
	// not hold the run's exit (the lock then lapses at its TTL).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := checkedDelete(ctx, s.l.c, s.l.opts.Namespace, s.path, index); err != nil {
		return fmt.Errorf("nomad lock %q: release: %w", s.path, err)
	}
	s.l.opts.Logger.Info("nomad lock released", "path", s.path)
	return nil
}

// releaseTimeout bounds the release of a lock (a variable for the tests).
var releaseTimeout = 10 * time.Second

var (
	_ ports.Locker     = (*VarLocker)(nil)
	_ ports.StateStore = (*VarStore)(nil)
)
