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
