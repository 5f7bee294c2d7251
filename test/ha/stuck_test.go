package ha

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// unhealthyStepdown is health.unhealthy_stepdown in the stuck-active scenario: short, but above the stand-in
// node's start (about a second), so that a healthy start is never handed over.
const unhealthyStepdown = 4 * time.Second

// agentTick is the daemon's main-loop tick, at which the unhealthy-stepdown policy looks at the node (agent/daemon
// Options.Tick's default); lockRetry is a standby's pause between lock attempts (agent/leader
// DefaultRetryInterval, +20% jitter).
const (
	agentTick = time.Second
	lockRetry = 1200 * time.Millisecond
)

// handoverBound is how long a host that took the lock but cannot start its node may keep it. The policy asks the
// standby's health once the node has failed for unhealthy_stepdown (checked at each tick), and again every
// unhealthy_stepdown while no healthy standby has reported; the standby here reports as one once its stepdown
// hold is over. Then the stuck host stops (nothing runs: within the kill bound) and releases the lock, and the
// standby takes it at its next attempt.
const handoverBound = stepdownHold + 2*unhealthyStepdown + agentTick + killBound + lockRetry

// TestStuckActiveHandsOverHA is issue 12 item 2 on two hosts: a host that holds the lock but cannot start its node
// hands the node over to the healthy standby within handoverBound, and says why. Each case makes host1's node
// unable to start while host2 is the active, then steps host2 down so host1 takes the lock:
//
//	ForeignContainer  a container with the node's name that is not the agent's (no cl-agent.managed label):
//	                  the agent must not touch it, so it can create no node
//	FullSecretsTmpfs  the secrets tmpfs is full: the node's files cannot be written
//
// After the handover, host2's node is ready, host1 is a standby again, and once the cause is removed the cluster
// settles with zero overlap.
func TestStuckActiveHandsOverHA(t *testing.T) {
	c := newCluster(t)
	for _, h := range c.hosts {
		h.editConfig(t, "health: {listen: ", fmt.Sprintf("health: {unhealthy_stepdown: %s, listen: ", unhealthyStepdown))
	}
	stuck, healthy := c.hosts[0], c.hosts[1]
	// host2 first, so that it is the active and host1 the standby.
	healthy.start(t)
	if !testenv.Poll(settleBound, pollEvery, func() bool {
		s, err := healthy.status()
		return err == nil && s.Role == "active" && s.Node.Ready
	}) {
		t.Fatalf("%s did not become active with a ready node within %s", healthy.name, settleBound)
	}
	stuck.start(t)
	c.waitSettled(t, healthy, settleBound)
	t.Logf("health.unhealthy_stepdown %s; handover bound %s (stepdown_hold %s + 2 × unhealthy_stepdown + tick %s + kill bound %s + lock retry %s)",
		unhealthyStepdown, handoverBound, stepdownHold, agentTick, killBound, lockRetry)

	for _, tc := range []struct {
		name   string
		stick  func(t *testing.T) (repair func())
		reason string // what the stuck host must say
	}{
		{"ForeignContainer", func(t *testing.T) func() { return c.foreignContainer(t, stuck.container) }, "not managed by cl-agent"},
		{"FullSecretsTmpfs", func(t *testing.T) func() { return stuck.fillSecretsTmpfs(t) }, "no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer c.logsOnFailure(t)
			c.waitSettled(t, healthy, settleBound)
			repair := tc.stick(t)
			defer repair()
			c.stuckHandsOver(t, stuck, healthy, tc.reason)
			repair()
			c.waitSettled(t, healthy, settleBound)
		})
	}
}

// stuckHandsOver steps the healthy active down so that stuck, which cannot start its node, takes the lock; stuck
// must hand the node back within handoverBound, saying why, and the healthy host's node must become ready.
func (c *cluster) stuckHandsOver(t *testing.T, stuck, healthy *host, reason string) {
	t.Helper()
	rec := c.record(t)
	defer rec.stop()
	stuckLog := stuck.logOffset()
	done := make(chan error, 1)
	go func() {
		_, err := healthy.cli(context.Background(), cmdBound, "stepdown")
		done <- err
	}()

	// Stuck: from the moment host1 holds the lock with no node behind it.
	var seen statusLog
	var tStuck time.Time
	if !testenv.Poll(30*time.Second, readyPoll, func() bool {
		s, err := stuck.status()
		if err != nil {
			return false
		}
		seen.add(s)
		tStuck = time.Now()
		return s.Lock.Held
	}) {
		t.Fatalf("%s did not take the lock within 30s of %s's stepdown:\n%s", stuck.name, healthy.name, seen.String())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Handed over: host2 holds the lock again.
	var tBack time.Time
	wait := handoverBound + 20*time.Second // to measure a late handover, not only to see it missed
	if !testenv.Poll(wait, readyPoll, func() bool {
		if s, err := stuck.status(); err == nil {
			seen.add(s)
		}
		s, err := healthy.status()
		tBack = time.Now()
		return err == nil && s.Lock.Held
	}) {
		t.Fatalf("%s, stuck without a node, did not hand over within %s; its statuses:\n%s", stuck.name, wait, seen.String())
	}
	handover := tBack.Sub(tStuck)
	t1 := waitReadyz(t, healthy.port, 30*time.Second, "after the stuck host handed over")
	t.Logf("stuck active (%s): held the lock without a node for %.1fs before %s took it (bound %s); %s's node ready %.1fs after the stuck host took the lock",
		reason, handover.Seconds(), healthy.name, handoverBound, healthy.name, t1.Sub(tStuck).Seconds())
	if handover > handoverBound {
		t.Errorf("the stuck host handed over after %s; the bound is %s", handover, handoverBound)
	}

	// It said why, in its status and in its log.
	if !seen.contains(reason) {
		t.Errorf("%s's status never said why its node could not start (want %q); its statuses:\n%s", stuck.name, reason, seen.String())
	}
	log := stuck.logSince(stuckLog)
	if !strings.Contains(log, "handing over") || !strings.Contains(log, reason) {
		t.Errorf("%s's log does not say it hands over a node that cannot start (%q); log since the stepdown:\n%s", stuck.name, reason, log)
	}
	if !rec.first(stuck.container, "start", tStuck).IsZero() {
		t.Errorf("%s's node started although it could not:\n%s", stuck.name, rec.events())
	}
	rec.noOverlap(t)
	if s := stuck.statusCLI(t); s.Role != "standby" || s.Lock.Held {
		t.Errorf("cl-agent status on %s after the handover: %s; want a standby", stuck.name, brief(s))
	}
}
