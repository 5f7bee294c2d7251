package ha

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Every scenario starts from a settled cluster (one active with a ready node, one campaigning standby), does one
// thing to it, measures, and ends with verify: settled again, zero overlap by both measures. The tests assert
// each run against the invariant's bounds; the benchmarks repeat them and report medians.

// bringUp starts any agent that is not running, host1 first, and waits until the cluster is settled.
func (c *cluster) bringUp(tb testing.TB) (active, standby *host) {
	tb.Helper()
	first := c.hosts[0]
	if first.agent == nil && c.hosts[1].agent == nil {
		first.start(tb)
		// host1 alone: it takes the lock and starts its node; host2 joins as the standby.
		if !testenv.Poll(settleBound, pollEvery, func() bool {
			s, err := first.status()
			return err == nil && s.Role == "active" && s.Node.Ready
		}) {
			tb.Fatalf("%s did not become active with a ready node within %s", first.name, settleBound)
		}
	}
	for _, h := range c.hosts {
		if h.agent == nil {
			h.start(tb)
		}
	}
	return c.waitSettled(tb, nil, settleBound)
}

// killAgent is kill -9 of the active agent followed by its fence, as systemd runs ExecStopPost; then systemd's
// restart brings the agent back, as the standby. It returns the time from the kill to the standby's node answering
// /readyz 200.
func (c *cluster) killAgent(tb testing.TB) time.Duration {
	tb.Helper()
	defer c.logsOnFailure(tb)
	a, b := c.waitSettled(tb, nil, settleBound)
	rec := c.record(tb)
	defer rec.stop()
	t0 := time.Now()
	a.kill9(tb)
	fenced := make(chan error, 1)
	go func() {
		_, err := a.fence(context.Background())
		fenced <- err
	}()
	t1 := waitReadyz(tb, b.port, killBound+10*time.Second+c.nodeBoot, "after kill -9 of the active agent and its fence")
	tb.Logf("kill -9: load balancer flipped %s after the node was ready", lbFlip(tb, b, a, t1))
	if err := <-fenced; err != nil {
		tb.Fatal(err)
	}
	a.start(tb)
	c.verify(tb, rec, b)
	return t1.Sub(t0)
}

// nodeCrash kills the active's node container (SIGKILL: no lease release); the same agent starts it again after
// expiring the dead node's lease. It returns the time from the kill to the new node answering /readyz 200.
func (c *cluster) nodeCrash(tb testing.TB) time.Duration {
	tb.Helper()
	defer c.logsOnFailure(tb)
	a, _ := c.waitSettled(tb, nil, settleBound)
	_, _, _, oldID := inspectState(a.container)
	rec := c.record(tb)
	defer rec.stop()
	t0 := time.Now()
	if _, err := docker(context.Background(), "kill", a.container); err != nil {
		tb.Fatal(err)
	}
	if !testenv.Poll(10*time.Second, readyPoll, func() bool {
		running, _, _, id := inspectState(a.container)
		return !running || id != oldID
	}) {
		tb.Fatalf("the node %s still runs after docker kill", a.container)
	}
	t1 := waitReadyz(tb, a.port, 30*time.Second, "after the active's node crashed")
	c.verify(tb, rec, a)
	if _, _, _, id := inspectState(a.container); id == oldID {
		tb.Errorf("the node's container %.12s was not replaced after its crash", id)
	}
	return t1.Sub(t0)
}

// cutLink cuts the active host off the database (agent and node), waits until the standby's node is ready,
// then restores the link; the old active must have fenced itself and come back as the standby. It returns the
// failover time and the time from the cut to the old node's death.
func (c *cluster) cutLink(tb testing.TB) (failover, fenced time.Duration) {
	tb.Helper()
	defer c.logsOnFailure(tb)
	a, b := c.waitSettled(tb, nil, settleBound)
	rec := c.record(tb)
	defer rec.stop()
	t0 := time.Now()
	a.cut(tb)
	t1 := waitReadyz(tb, b.port, cutBound+10*time.Second, "after the active's link was cut")
	tb.Logf("cut link: load balancer flipped %s after the node was ready", lbFlip(tb, b, a, t1))
	died := rec.first(a.container, "die", t0)
	if err := a.uncut(); err != nil {
		tb.Fatal(err)
	}
	c.verify(tb, rec, b)
	if died.IsZero() {
		tb.Fatalf("the cut-off active's node never stopped:\n%s", rec.events())
	}
	// The invariant: an active that cannot prove its lock stops its node within fence_after + stop_timeout +
	// the kill margin.
	if d := died.Sub(t0); d > killBound {
		tb.Errorf("the cut-off active's node died %s after the cut; the invariant's bound is %s", d, killBound)
	}
	return t1.Sub(t0), died.Sub(t0)
}

// postgresRestart restarts the database: both agents lose their sessions at once. It returns the time from the
// restart to a settled cluster.
func (c *cluster) postgresRestart(tb testing.TB) time.Duration {
	tb.Helper()
	defer c.logsOnFailure(tb)
	c.waitSettled(tb, nil, settleBound)
	rec := c.record(tb)
	defer rec.stop()
	ctx, cancel := context.WithTimeout(context.Background(), setupBound)
	defer cancel()
	t0 := time.Now()
	if err := c.pg.Restart(ctx); err != nil {
		tb.Fatal(err)
	}
	c.verify(tb, rec, nil)
	return time.Since(t0)
}

// stepdown is `cl-agent stepdown` on the active: it stops its node and releases the lock, the standby takes over.
// It returns the time from the command to the new node answering /readyz 200.
func (c *cluster) stepdown(tb testing.TB) time.Duration {
	tb.Helper()
	defer c.logsOnFailure(tb)
	a, b := c.waitSettled(tb, nil, settleBound)
	rec := c.record(tb)
	defer rec.stop()
	t0 := time.Now()
	done := make(chan error, 1)
	go func() {
		out, err := a.cli(context.Background(), cmdBound, "stepdown")
		if err == nil && !strings.Contains(out, "stepped down") {
			err = fmt.Errorf("cl-agent stepdown said %q; want \"stepped down …\"", out)
		}
		done <- err
	}()
	var cliErr error
	var t1 time.Time
	if !testenv.Poll(30*time.Second, readyPoll, func() bool {
		select {
		case cliErr = <-done:
			done <- cliErr // for the wait below
		default:
		}
		t1 = time.Now()
		return cliErr != nil || readyz(b.port) == http.StatusOK
	}) {
		tb.Fatalf("after stepdown of %s: /readyz of %s did not answer 200 within 30s", a.name, b.name)
	}
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	tb.Logf("stepdown: load balancer flipped %s after the node was ready", lbFlip(tb, b, a, t1))
	c.verify(tb, rec, b)
	return t1.Sub(t0)
}

// simultaneousStarts stops both agents and then, n times: starts both at the same instant, waits until exactly one
// is active with a ready node, checks the overlap, and stops both (SIGTERM: each exits 0 with its node removed).
// It returns how often each host won.
func (c *cluster) simultaneousStarts(tb testing.TB, n int) map[string]int {
	tb.Helper()
	defer c.logsOnFailure(tb)
	for _, h := range c.hosts {
		h.stop(tb)
	}
	rec := c.record(tb)
	defer rec.stop()
	wins := map[string]int{}
	for i := range n {
		c.clearLease(tb)
		c.startTogether(tb)
		active, _ := c.verify(tb, rec, nil)
		wins[active.name]++
		c.stopTogether(tb)
		for _, h := range c.hosts {
			if _, err := docker(context.Background(), "inspect", h.container); err == nil {
				tb.Fatalf("run %d: %s's node container still exists after its agent stopped", i+1, h.name)
			}
		}
		if tb.Failed() {
			tb.Fatalf("run %d of %d failed", i+1, n)
		}
	}
	return wins
}

// startTogether launches both agents from two goroutines released by one barrier.
func (c *cluster) startTogether(tb testing.TB) {
	tb.Helper()
	barrier := make(chan struct{})
	var wg sync.WaitGroup
	var procs [2]*agentProc
	var errs [2]error
	for i, h := range c.hosts {
		wg.Go(func() {
			<-barrier
			procs[i], errs[i] = h.launch()
		})
	}
	close(barrier)
	wg.Wait()
	for i, h := range c.hosts {
		if errs[i] != nil {
			tb.Fatal(errs[i])
		}
		h.agent = procs[i]
	}
}

// stopTogether sends both agents SIGTERM at once; each must exit 0.
func (c *cluster) stopTogether(tb testing.TB) {
	tb.Helper()
	var wg sync.WaitGroup
	var errs [2]error
	for i, h := range c.hosts {
		a := h.agent
		h.agent = nil
		wg.Go(func() { errs[i] = a.terminate(agentStopWait) })
	}
	wg.Wait()
	for i, h := range c.hosts {
		if errs[i] != nil {
			tb.Errorf("%s: agent after SIGTERM: %v; want exit 0", h.name, errs[i])
		}
	}
}
