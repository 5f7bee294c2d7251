package leader

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
)

// The elector's time source is a clockwork.Clock (Options.Clock): the real one in production, a
// clockwork.FakeClock in the tests that drive the trust window.

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
