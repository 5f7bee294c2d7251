package testenv

import (
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it holds, and fails the test when bound passes first. It is how tests wait
// for a condition: never a sleep of a guessed length.
func WaitFor(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", bound, what)
		}
		<-tick.C
	}
}
