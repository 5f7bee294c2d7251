package container

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with jitter: each delay is drawn from [d/2, d) where d doubles from initial
// up to max. Reset starts over. It is a plain value owned by one goroutine.
type backoff struct {
	initial, max time.Duration
	next         time.Duration // the d of the next delay; 0: initial
	jitter       func(time.Duration) time.Duration
}

func newBackoff(initial, max time.Duration) *backoff {
	return &backoff{initial: initial, max: max, jitter: halfJitter}
}

// Delay returns the next delay and doubles the one after it.
func (b *backoff) Delay() time.Duration {
	if b.next == 0 {
		b.next = b.initial
	}
	d := b.next
	b.next = min(2*b.next, b.max)
	return b.jitter(d)
}

// Reset makes the next delay the initial one again.
func (b *backoff) Reset() { b.next = 0 }

// halfJitter draws uniformly from [d/2, d), so hosts that fail together do not retry together.
func halfJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2)
}
