// Package backoff spaces out retries: an exponential Backoff for work that fails repeatedly, and Jitter for
// fixed retry intervals. It owns no goroutines and never sleeps on its own: Next hands out the delay for a
// caller that has its own select loop, and Wait waits on an injected clock so tests drive it with a fake one.
//
// One jitter rule for exponential backoff: a delay d is drawn uniformly from [d/2, d). Half the delay is
// guaranteed, so a failing dependency is never hammered, and the other half is spread so hosts that fail
// together do not retry together. Jitter (±20%) is only for fixed intervals, which must stay close to their
// configured value (a lock campaign's RetryInterval bounds how fast a standby takes over).
package backoff

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jonboulle/clockwork"
)

// Backoff is an exponential backoff: the first delay is min, each one after doubles, capped at max, and every
// delay handed out is jittered into [d/2, d). Reset starts again at min after a success. A Backoff is a small
// value owned by one retry loop; it is not safe for concurrent use.
type Backoff struct {
	min, max time.Duration
	next     time.Duration
	rand     func() float64 // uniform in [0, 1)
}

// New returns exponential backoff from min doubling to max, each delay jittered into [d/2, d). It panics when
// min is not positive or max is below min: those are programmer bugs, not configuration to report.
func New(min, max time.Duration) *Backoff {
	if min <= 0 || max < min {
		panic(fmt.Sprintf("backoff.New: need 0 < min <= max, got min %s, max %s", min, max))
	}
	return &Backoff{min: min, max: max, next: min, rand: rand.Float64}
}

// WithRand replaces the jitter's source of uniform values in [0, 1) and returns b. Tests use it for
// deterministic delays: a source that returns 0 gives d/2, one close to 1 gives almost d.
func (b *Backoff) WithRand(rand func() float64) *Backoff {
	b.rand = rand
	return b
}

// Next returns the next delay (jittered), then doubles the one after, capped at max.
func (b *Backoff) Next() time.Duration {
	d := b.next
	if d > b.max/2 {
		b.next = b.max // doubling would pass the cap, or overflow for a max near the largest Duration
	} else {
		b.next = 2 * d
	}
	return spread(d, b.rand)
}

// Spread draws a delay from [d/2, d): the jitter rule of every exponential backoff of the agent, for a caller whose
// doubling is done elsewhere (go-retryablehttp's attempts).
func Spread(d time.Duration) time.Duration { return spread(d, rand.Float64) }

func spread(d time.Duration, rand func() float64) time.Duration {
	return d/2 + time.Duration(rand()*float64(d/2))
}

// Reset makes the next delay min again; call it after a success.
func (b *Backoff) Reset() {
	b.next = b.min
}

// Wait waits Next() on clock, or until ctx ends and then returns ctx.Err(). A ctx that has already ended
// returns at once without using up a delay.
func (b *Backoff) Wait(ctx context.Context, clock clockwork.Clock) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return Sleep(ctx, clock, b.Next())
}

// Sleep waits d on clock, or until ctx ends and then returns ctx.Err().
func Sleep(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}

// Jitter spreads d uniformly over [0.8d, 1.2d), so hosts that retry on a fixed interval drift apart instead
// of retrying in step. Use it for fixed retry intervals only; exponential backoff uses Backoff.
func Jitter(d time.Duration) time.Duration {
	return jitter(d, rand.Float64)
}

func jitter(d time.Duration, rand func() float64) time.Duration {
	// In integers around the random part, so the largest rand() stays below 1.2d after rounding.
	return d - d/5 + time.Duration(rand()*float64(d/5*2))
}
