package runner

import (
	"context"
	"sync"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// WallClock is the real clock of a live run.
type WallClock = ports.WallClock

// SimClock is simulated time: Sleep advances it at once. A dry run replays
// hours of recorded metrics in milliseconds with it, and tests use it so
// that nothing waits on the wall clock.
type SimClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewSimClock starts simulated time at t.
func NewSimClock(t time.Time) *SimClock { return &SimClock{now: t} }

// Now returns the simulated time.
func (c *SimClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep advances the simulated time by d, unless ctx is already cancelled.
func (c *SimClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return nil
}

// ticker keeps a loop's polls on a grid of one interval from the loop's
// start, as a time.Ticker does: a poll's own work (the queries, the
// policies, a host's revert) does not push the polls after it later, so a
// 10-minute stage at 1-minute polls keeps its 10 polls on a slow metrics
// source. A poll whose work outlasts whole intervals skips the polls it
// overran instead of firing them at once, one after another. With the
// simulated clock, where work takes no time, it sleeps one interval.
type ticker struct {
	clock    ports.Clock
	interval time.Duration
	next     time.Time
}

// newTicker starts a grid of interval at clock's now.
func newTicker(clock ports.Clock, interval time.Duration) *ticker {
	return &ticker{clock: clock, interval: interval, next: clock.Now()}
}

// wait sleeps until the next poll of the grid that is still ahead.
func (t *ticker) wait(ctx context.Context) error {
	now := t.clock.Now()
	t.next = t.next.Add(t.interval)
	if late := now.Sub(t.next); late >= 0 {
		t.next = t.next.Add((late/t.interval + 1) * t.interval)
	}
	return t.clock.Sleep(ctx, t.next.Sub(now))
}
