package testenv

import (
	"testing"
	"time"
)

// waitEvery is how often WaitFor checks its condition.
const waitEvery = 10 * time.Millisecond

// WaitFor polls cond every 10 ms until it holds, and fails the test when bound passes first. It is how tests wait
// for a condition: never a sleep of a guessed length.
func WaitFor(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(bound, waitEvery, cond) {
		t.Fatalf("timed out after %s waiting for %s", bound, what)
	}
}

// Poll calls cond every interval until it holds (true) or bound passes (false), checking once more at the bound.
// It is WaitFor for a caller that reports the failure itself, with what it knows by then (a container's logs), or
// that asserts something does not happen within a bound.
func Poll(bound, every time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}
