package leader

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
)

// The elector's time source is a clockwork.Clock (Options.Clock): the real one in production, a
// clockwork.FakeClock in the tests that drive the trust window.

// sleep waits d on clock, or until ctx ends.
func sleep(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}

// untilContext is ctx, also cancelled when clock reaches deadline.
func untilContext(ctx context.Context, clock clockwork.Clock, deadline time.Time) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	t := clock.NewTimer(deadline.Sub(clock.Now()))
	go func() {
		defer t.Stop()
		select {
		case <-t.Chan():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
