package nomad

import (
	"context"
	"encoding/json"
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

var t0 = time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)

func newTickClock() *tickClock { return &tickClock{now: t0, ticks: make(chan struct{})} }

func (c *tickClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *tickClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *tickClock) Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-c.ticks:
		c.advance(d)
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

func notLost(t *testing.T, l ports.Lease) {
	t.Helper()
	select {
	case <-l.Lost():
		t.Fatal("lease reported lost")
	default:
	}
}

var (
	holderA = ports.Holder{Host: "vm", PID: 11, RunID: "run-a", Since: t0, Where: "nomad alloc 5b3c9a1e job web/periodic-1"}
	holderB = ports.Holder{Host: "vm-2", PID: 22, RunID: "run-b", Since: t0.Add(time.Minute)}
)

const lockPath = "rollguard/web-nginx/lock"

func TestVarLockContentionAndStaleTakeover(t *testing.T) {
	ctx := context.Background()
	fake, c := newFakeVars(t)
	// Each run has its own clock (so a tick wakes one renewal loop), and
	// the two agree on the time.
	clock, clockB := newTickClock(), newTickClock()
	a := NewVarLocker(c, VarLockOptions{Clock: clock, TTL: time.Minute})
	b := NewVarLocker(c, VarLockOptions{Clock: clockB, TTL: time.Minute})

	leaseA, err := a.Acquire(ctx, "web-nginx", holderA)
	if err != nil {
		t.Fatal(err)
	}
	<-fake.puts
	v := fake.get(lockPath)
	if v == nil || v.Items["expires"] != "2026-11-26T06:01:00Z" {
		t.Fatalf("lock variable = %+v, want expiry at now+TTL", v)
	}
	var stored ports.Holder
	if err := json.Unmarshal([]byte(v.Items["holder"]), &stored); err != nil || stored.RunID != "run-a" {
		t.Fatalf("holder item = %q (%v), want run-a", v.Items["holder"], err)
	}

	_, err = b.Acquire(ctx, "web-nginx", holderB)
	var locked *ports.LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("contended Acquire = %v, want *ports.LockedError", err)
	}
	if locked.Name != "web-nginx" || locked.Holder.RunID != "run-a" || locked.Holder.Host != "vm" || locked.Holder.Where != holderA.Where {
		t.Errorf("LockedError = %+v, want holder run-a on vm", locked)
	}

	// A's process dies: it stops renewing and the lease goes stale.
	clock.advance(61 * time.Second)
	clockB.advance(61 * time.Second)
	leaseB, err := b.Acquire(ctx, "web-nginx", holderB)
	if err != nil {
		t.Fatalf("Acquire of a stale lease: %v", err)
	}
	<-fake.puts
	// A's renewal loop wakes up past its expiry: it gives the lease up
	// without writing.
	clock.ticks <- struct{}{}
	within(t, leaseA.Lost(), "A's loss")
	select {
	case p := <-fake.puts:
		t.Errorf("A wrote %s after its lease expired", p)
	default:
	}
	notLost(t, leaseB)
	if err := leaseA.Release(ctx); err != nil {
		t.Errorf("Release after loss: %v", err)
	}
	if fake.get(lockPath) == nil {
		t.Fatal("A's Release after loss deleted B's lock")
	}
	if err := leaseB.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if fake.get(lockPath) != nil {
		t.Error("lock variable still exists after Release")
	}
}

func TestVarLockRenewal(t *testing.T) {
	ctx := context.Background()
	fake, c := newFakeVars(t)
	clock := newTickClock()
	l := NewVarLocker(c, VarLockOptions{Clock: clock, TTL: 30 * time.Second})
	lease, err := l.Acquire(ctx, "web-nginx", holderA)
	if err != nil {
		t.Fatal(err)
	}
	<-fake.puts
	for i := 1; i <= 3; i++ {
		clock.ticks <- struct{}{} // RenewEvery = TTL/3 = 10s
		within(t, fake.puts, "a renewal")
		want := t0.Add(time.Duration(i)*10*time.Second + 30*time.Second).Format(time.RFC3339Nano)
		if got := fake.get(lockPath).Items["expires"]; got != want {
			t.Errorf("after renewal %d expires = %s, want %s", i, got, want)
		}
	}
	notLost(t, lease)
	// Someone else overwrites the variable: the next renewal's CAS fails.
	fake.set(lockPath, map[string]string{"holder": `{"run_id":"intruder"}`, "expires": "2099-01-01T00:00:00Z"})
	clock.ticks <- struct{}{}
	within(t, lease.Lost(), "loss on a failed renewal CAS")
	if fake.get(lockPath).Items["holder"] != `{"run_id":"intruder"}` {
		t.Error("the lost lease overwrote the new holder")
	}
}

func TestVarLockLostWhenRenewalsFailUntilExpiry(t *testing.T) {
	ctx := context.Background()
	fake, c := newFakeVars(t)
	clock := newTickClock()
	l := NewVarLocker(c, VarLockOptions{Clock: clock, TTL: 30 * time.Second})
	lease, err := l.Acquire(ctx, "web-nginx", holderA)
	if err != nil {
		t.Fatal(err)
	}
	<-fake.puts
	// The Nomad servers fail for longer than the TTL: renewals fail, and
	// once the expiry passes the lease must be given up.
	fake.setFailing(true)
	for range 2 { // at 10s and 20s: renewal errors, still within the lease
		clock.ticks <- struct{}{}
		within(t, fake.puts, "a failing renewal")
	}
	notLost(t, lease)
	clock.advance(10 * time.Second)
	select { // at 40s: expired without a renewal
	case clock.ticks <- struct{}{}:
	case <-lease.Lost(): // the failed renewal at 20s came back after the expiry
	}
	within(t, lease.Lost(), "loss at expiry")
}

// A Nomad that stops answering (a partition, not an error) must not keep a
// lease looking held: the hanging renewal is given up at the lease's
// expiry and the lease is lost; and a release does not hold the run's
// exit, it gives up and leaves the lock to its TTL.
func TestVarLockWhenNomadHangs(t *testing.T) {
	ctx := context.Background()
	fake, c := newFakeVars(t)
	clock := newTickClock()
	l := NewVarLocker(c, VarLockOptions{Clock: clock, TTL: 3 * time.Second, RenewEvery: time.Second})
	lease, err := l.Acquire(ctx, "web-nginx", holderA)
	if err != nil {
		t.Fatal(err)
	}
	<-fake.puts
	fake.srv.SetHanging(true)
	defer fake.srv.SetHanging(false)
	clock.ticks <- struct{}{} // at 1s: the renewal hangs, given up at the expiry (2 s on)
	clock.advance(3 * time.Second)
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		select { // at 5s: past the expiry
		case clock.ticks <- struct{}{}:
		case <-lease.Lost(): // the hanging renewal came back after it
		}
	}()
	within(t, ticked, "the renewal loop to come back from a hanging renewal")
	within(t, lease.Lost(), "loss at expiry while Nomad hangs")

	fake.srv.SetHanging(false)
	lease, err = NewVarLocker(c, VarLockOptions{}).Acquire(ctx, "other", holderA)
	if err != nil {
		t.Fatal(err)
	}
	fake.srv.SetHanging(true)
	defer func(d time.Duration) { releaseTimeout = d }(releaseTimeout)
	releaseTimeout = 200 * time.Millisecond
	released := make(chan error, 1)
	go func() { released <- lease.Release(ctx) }()
	if err := within(t, released, "a release while Nomad hangs"); err == nil {
		t.Error("release reported success while Nomad did not answer")
	}
}
