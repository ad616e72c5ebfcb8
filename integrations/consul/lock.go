package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/rollguard/rollguard/ports"
)

// LockOptions tunes a Locker. Zero values take the defaults.
type LockOptions struct {
	// KeyPrefix: the lock of rollout <name> is the key
	// <KeyPrefix><name>/lock (default "rollguard/").
	KeyPrefix string
	// TTL of the session (default 15s; Consul accepts 10s to 24h). The
	// session is renewed every TTL/2; when renewals have failed for a
	// whole TTL the lease is reported lost.
	TTL time.Duration
	// LockDelay is Consul's grace period after a holder's session is
	// invalidated before another may take the lock (default: Consul's, 15s).
	LockDelay time.Duration
	// WatchWait is the longest blocking query on the lock key (default 5m).
	WatchWait time.Duration
	// Datacenter, Namespace and Partition are passed through when set.
	Datacenter string
	Namespace  string
	Partition  string
	// Clock paces renewals and retries (default: the wall clock).
	Clock ports.Clock
	// Logger receives renewal failures and lock loss (default: discard).
	Logger *slog.Logger
}

// Locker is a ports.Locker on a Consul session lock: the lock key is
// acquired with a session that has a TTL and is renewed in the background.
// The key's value is the holder as JSON, so a refused run can name the run
// that holds it. The session's behaviour is "delete": when the session ends
// (released, expired, or destroyed by an operator) the key goes away.
type Locker struct {
	c    *Client
	opts LockOptions
}

// NewLocker returns a Locker using c.
func NewLocker(c *Client, opts LockOptions) *Locker {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "rollguard/"
	}
	if opts.TTL == 0 {
		opts.TTL = 15 * time.Second
	}
	if opts.WatchWait == 0 {
		opts.WatchWait = 5 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = ports.WallClock{}
	}
	if opts.Logger == nil {
		opts.Logger = c.logger
	}
	return &Locker{c: c, opts: opts}
}

// LockKey returns the KV key of rollout name's lock.
func (l *Locker) LockKey(name string) string { return l.opts.KeyPrefix + name + "/lock" }

func (l *Locker) queryOpts(ctx context.Context, q *api.QueryOptions) *api.QueryOptions {
	q.Datacenter, q.Namespace, q.Partition = l.opts.Datacenter, l.opts.Namespace, l.opts.Partition
	return query(ctx, q)
}

func (l *Locker) writeOpts(ctx context.Context) *api.WriteOptions {
	return write(ctx, &api.WriteOptions{Datacenter: l.opts.Datacenter, Namespace: l.opts.Namespace, Partition: l.opts.Partition})
}

// Acquire creates a session and acquires the lock key with it, without
// waiting. When another session holds the key it returns a
// *ports.LockedError naming the holder stored in the key. Cancelling ctx
// aborts the attempt (the session is destroyed, or expires by its TTL).
func (l *Locker) Acquire(ctx context.Context, name string, holder ports.Holder) (ports.Lease, error) {
	key := l.LockKey(name)
	value, err := json.Marshal(holder)
	if err != nil {
		return nil, fmt.Errorf("consul lock %q: encode holder: %w", key, err)
	}
	id, _, err := l.c.api.Session().Create(&api.SessionEntry{
		Name:      "rollguard " + name + " run " + holder.RunID,
		TTL:       l.opts.TTL.String(),
		LockDelay: l.opts.LockDelay,
		Behavior:  api.SessionBehaviorDelete,
		Namespace: l.opts.Namespace,
	}, l.writeOpts(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul lock %q: create session: %w", key, err)
	}
	ok, _, err := l.c.api.KV().Acquire(&api.KVPair{Key: key, Value: value, Session: id, Flags: api.LockFlagValue}, l.writeOpts(ctx))
	if err != nil || !ok {
		refused := l.refusal(ctx, name, key, err)
		l.destroy(ctx, id)
		return nil, refused
	}
	leaseCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	lease := &sessionLease{l: l, key: key, session: id, lost: make(chan struct{}), cancel: cancel}
	lease.wg.Add(2)
	go lease.renew(leaseCtx)
	go lease.watch(leaseCtx)
	l.opts.Logger.Info("consul lock acquired", "key", key, "session", id, "run_id", holder.RunID)
	return lease, nil
}

// refusal explains why the key could not be acquired: the holder stored in
// it, or the request error.
func (l *Locker) refusal(ctx context.Context, name, key string, acquireErr error) error {
	if acquireErr != nil {
		return fmt.Errorf("consul lock %q: acquire: %w", key, acquireErr)
	}
	pair, _, err := l.c.api.KV().Get(key, l.queryOpts(ctx, &api.QueryOptions{}))
	if err != nil {
		return fmt.Errorf("consul lock %q is held; reading its holder: %w", key, err)
	}
	locked := &ports.LockedError{Name: name}
	if pair != nil && len(pair.Value) > 0 {
		if err := json.Unmarshal(pair.Value, &locked.Holder); err != nil {
			return fmt.Errorf("consul lock %q is held by a value that is not a rollguard holder: %w", key, err)
		}
	}
	if pair == nil || pair.Session == "" {
		// Consul refuses acquisition during the lock-delay after a
		// holder's session ended: the previous holder is still the answer.
		return fmt.Errorf("consul lock %q is in its lock-delay after a holder's session ended: %w", key, locked)
	}
	return locked
}

// destroy ends a session, on a context that outlives a cancelled caller
// for a short while so that the session does not linger until its TTL.
func (l *Locker) destroy(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := l.c.api.Session().Destroy(id, l.writeOpts(ctx)); err != nil {
		return fmt.Errorf("consul session %s: destroy: %w", id, err)
	}
	return nil
}

// sessionLease is a held Consul lock.
type sessionLease struct {
	l       *Locker
	key     string
	session string

	lost     chan struct{}
	lostOnce sync.Once
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Lost is closed when the session was invalidated, the key changed hands,
// or renewals failed for a whole TTL.
func (s *sessionLease) Lost() <-chan struct{} { return s.lost }

// Release stops renewing and destroys the session, which deletes the key.
func (s *sessionLease) Release(ctx context.Context) error {
	s.cancel()
	s.wg.Wait()
	if err := s.l.destroy(ctx, s.session); err != nil {
		return fmt.Errorf("consul lock %q: release: %w", s.key, err)
	}
	s.l.opts.Logger.Info("consul lock released", "key", s.key)
	return nil
}

func (s *sessionLease) markLost(reason string) {
	s.lostOnce.Do(func() {
		s.l.opts.Logger.Warn("consul lock lost", "key", s.key, "session", s.session, "reason", reason)
		close(s.lost)
		s.cancel()
	})
}

// renew renews the session every TTL/2 until the lease ends.
func (s *sessionLease) renew(ctx context.Context) {
	defer s.wg.Done()
	clock, ttl := s.l.opts.Clock, s.l.opts.TTL
	lastOK := clock.Now()
	for {
		if clock.Sleep(ctx, ttl/2) != nil {
			return
		}
		// A renewal that Consul does not answer is given up after half a
		// TTL, so that a hanging agent is seen like a failing one.
		rctx, cancel := context.WithTimeout(ctx, ttl/2)
		entry, _, err := s.l.c.api.Session().Renew(s.session, s.l.writeOpts(rctx))
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			s.l.opts.Logger.Warn("consul session renewal failed", "key", s.key, "err", err)
			if clock.Now().Sub(lastOK) >= ttl {
				s.markLost("renewals failed for a whole TTL")
				return
			}
		case entry == nil:
			s.markLost("session invalidated")
			return
		default:
			lastOK = clock.Now()
		}
	}
}

// watch follows the lock key with blocking queries and reports the lease
// lost as soon as the key no longer belongs to the session.
func (s *sessionLease) watch(ctx context.Context) {
	defer s.wg.Done()
	var index uint64
	for {
		pair, meta, err := s.l.c.api.KV().Get(s.key, s.l.queryOpts(ctx, &api.QueryOptions{WaitIndex: index, WaitTime: s.l.opts.WatchWait}))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.l.opts.Logger.Warn("consul lock watch failed", "key", s.key, "err", err)
			if s.l.opts.Clock.Sleep(ctx, time.Second) != nil {
				return
			}
			continue
		}
		if pair == nil || pair.Session != s.session {
			s.markLost("lock key deleted or taken over")
			return
		}
		// Consul's rule for blocking queries: an index going backwards
		// means a reset; start over from 0.
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
	}
}

var _ ports.Locker = (*Locker)(nil)
var _ ports.StateStore = (*KVStore)(nil)
