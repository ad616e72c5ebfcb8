package consul

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// tickClock is a ports.Clock whose Sleep returns only when the test ticks
// it, advancing Now by the slept duration.
type tickClock struct {
	mu    sync.Mutex
	now   time.Time
	ticks chan struct{}
}

func newTickClock() *tickClock {
	return &tickClock{now: time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC), ticks: make(chan struct{})}
}

func (c *tickClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *tickClock) Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-c.ticks:
		c.mu.Lock()
		c.now = c.now.Add(d)
		c.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// within fails the test when ch does not deliver in a generous time: a
// guard against a hang, not a timing assumption.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

var (
	holderA = ports.Holder{Host: "ci-runner-1", PID: 4242, RunID: "run-a", Since: time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC), Where: "https://ci.example/job/1"}
	holderB = ports.Holder{Host: "ci-runner-2", PID: 77, RunID: "run-b", Since: time.Date(2026, 11, 26, 6, 1, 0, 0, time.UTC)}
)

func TestLockContentionNamesTheHolder(t *testing.T) {
	ctx := context.Background()
	fake, srv := newFakeConsul(t, testToken)
	a := NewLocker(fake.client(srv), LockOptions{Clock: newTickClock()})
	b := NewLocker(fake.client(srv), LockOptions{Clock: newTickClock()})

	lease, err := a.Acquire(ctx, "web-nginx", holderA)
	if err != nil {
		t.Fatalf("first Acquire: %v", err)
	}
	_, err = b.Acquire(ctx, "web-nginx", holderB)
	var locked *ports.LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second Acquire = %v, want a *ports.LockedError", err)
	}
	if locked.Name != "web-nginx" || locked.Holder.RunID != "run-a" || locked.Holder.Host != "ci-runner-1" ||
		locked.Holder.PID != 4242 || !locked.Holder.Since.Equal(holderA.Since) || locked.Holder.Where != holderA.Where {
		t.Errorf("LockedError = %+v, want holder %+v", locked, holderA)
	}
	if ids := fake.sessionIDs(); len(ids) != 1 {
		t.Errorf("sessions after a refused acquire = %v, want only the holder's (the loser destroys its own)", ids)
	}

	if err := lease.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	select {
	case <-lease.Lost():
		t.Error("Lost closed by an orderly Release")
	default:
	}
	leaseB, err := b.Acquire(ctx, "web-nginx", holderB)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := leaseB.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if ids := fake.sessionIDs(); len(ids) != 0 {
		t.Errorf("sessions left after both released: %v", ids)
	}
}

func TestLockLostWhenSessionInvalidated(t *testing.T) {
	ctx := context.Background()
	fake, srv := newFakeConsul(t, testToken)
	l := NewLocker(fake.client(srv), LockOptions{Clock: newTickClock()})
	lease, err := l.Acquire(ctx, "web-nginx", holderA)
	if err != nil {
		t.Fatal(err)
	}
	ids := fake.sessionIDs()
	if len(ids) != 1 {
		t.Fatalf("sessions = %v, want one", ids)
	}
	// An operator runs `consul session destroy`, or the TTL lapsed.
	fake.invalidate(ids[0])
	within(t, lease.Lost(), "Lost after the session was invalidated")
	if err := lease.Release(ctx); err != nil {
		t.Errorf("Release after loss: %v", err)
	}
	// The lock is free again for the next run.
	lease2, err := l.Acquire(ctx, "web-nginx", holderB)
	if err != nil {
		t.Fatalf("Acquire after loss: %v", err)
	}
	_ = lease2.Release(ctx)
}

func TestLockRenewsAndNoticesAFailedRenewal(t *testing.T) {
	ctx := context.Background()
	fake, srv := newFakeConsul(t, testToken)
	clock := newTickClock()
	l := NewLocker(fake.client(srv), LockOptions{Clock: clock, TTL: 20 * time.Second})
	lease, err := l.Acquire(ctx, "web-nginx", holderA)
	if err != nil {
		t.Fatal(err)
	}
	id := fake.sessionIDs()[0]

	clock.ticks <- struct{}{} // TTL/2 passes
	if got := within(t, fake.renewed, "the first renewal"); got != id {
		t.Errorf("renewed session %q, want %q", got, id)
	}
	select {
	case <-lease.Lost():
		t.Fatal("lease lost after a successful renewal")
	default:
	}
	if got := clock.Now().Sub(holderA.Since); got != 10*time.Second {
		t.Errorf("renewal slept %v, want TTL/2 = 10s", got)
	}

	// The session disappears without the key changing (a Consul restart
	// without persistence): only the renewal can tell.
	fake.forget(id)
	clock.ticks <- struct{}{}
	within(t, fake.renewed, "the second renewal")
	within(t, lease.Lost(), "Lost after the renewal found no session")
	_ = lease.Release(ctx)
}

func TestLockCancelledAcquire(t *testing.T) {
	fake, srv := newFakeConsul(t, testToken)
	l := NewLocker(fake.client(srv), LockOptions{Clock: newTickClock()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Acquire(ctx, "web-nginx", holderA); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a cancelled context = %v, want context.Canceled", err)
	}
}
