package bootstrap

import (
	"math/rand/v2"
	"time"
)

// jitter returns a duration drawn uniformly from [d/2, d), so hosts that fail together do not retry together.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}
