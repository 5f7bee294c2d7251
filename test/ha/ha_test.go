package ha

import (
	"testing"
	"time"
)

// simultaneousRuns is how many times both agents are started at the same instant.
const simultaneousRuns = 20

// TestHA runs the scenarios one after the other on one pair of hosts (they share the hosts, so no t.Parallel).
// Each ends with exactly one ready node and zero overlap (see verify); the timings are asserted against the
// bounds the timing invariant gives (one run each: the benchmarks measure medians).
func TestHA(t *testing.T) {
	c := newCluster(t)
	c.bringUp(t)
	t.Logf("timings: ping %s/%s, fence_after %s, dead_peer_timeout %s, takeover_guard %s, stop_timeout %s; "+
		"kill bound (fence_after + stop_timeout + 1s) %s, cut bound (dead_peer_timeout + takeover_guard) %s",
		pingInterval, pingTimeout, fenceAfter, deadPeer, takeoverGuard, stopTimeout, killBound, cutBound)

	t.Run("KillAgent", func(t *testing.T) {
		c.bringUp(t)
		d := c.killAgent(t)
		t.Logf("kill -9 of the active agent + fence: the standby's node ready after %s", d)
		// The standby must not wait out the guard: the fence stops the old node and that is proof.
		if d > takeoverGuard {
			t.Errorf("failover took %s; with the fence's proof it must not wait out the takeover guard (%s)", d, takeoverGuard)
		}
	})

	t.Run("NodeCrash", func(t *testing.T) {
		c.bringUp(t)
		d := c.nodeCrash(t)
		t.Logf("node crash: back and ready after %s", d)
		if d > 5*time.Second {
			t.Errorf("the crashed node came back after %s; the agent expires its lease and restarts it within about 2s", d)
		}
	})

	t.Run("CutLink", func(t *testing.T) {
		c.bringUp(t)
		d, fenced := c.cutLink(t)
		t.Logf("active's link cut: old node stopped after %s (bound %s), standby's node ready after %s (target for the median: %s + 2s)",
			fenced, killBound, d, cutBound)
		// The target (bound + 2 s) is for the median (BenchmarkFailover/CutLink); one run gets the acquire
		// retry's jitter and a loaded machine's start on top.
		if limit := cutBound + 4*time.Second; d > limit {
			t.Errorf("failover after the cut took %s; want at most %s", d, limit)
		}
	})

	t.Run("StepdownAndBack", func(t *testing.T) {
		a, _ := c.bringUp(t)
		d1 := c.stepdown(t)
		d2 := c.stepdown(t)
		if now, _ := c.waitSettled(t, nil, settleBound); now != a {
			t.Errorf("after stepping down twice %s is active; want %s back", now.name, a.name)
		}
		t.Logf("stepdown: the other node ready after %s, and back after %s", d1, d2)
	})

	t.Run("PostgresRestart", func(t *testing.T) {
		c.bringUp(t)
		d := c.postgresRestart(t)
		t.Logf("PostgreSQL restarted: settled again after %s", d)
	})

	t.Run("SimultaneousStart", func(t *testing.T) {
		wins := c.simultaneousStarts(t, simultaneousRuns)
		t.Logf("%d simultaneous starts: each time exactly one active; wins %v", simultaneousRuns, wins)
	})
}
