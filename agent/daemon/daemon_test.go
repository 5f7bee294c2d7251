package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

func TestLeaderDisabledRunsTheNodeAndStopsCleanly(t *testing.T) {
	h := start(t, false, nil, nil)
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	testenv.WaitFor(t, 5*time.Second, "systemd told READY=1 and WATCHDOG=1", func() bool {
		return h.notes.has("READY=1") && h.notes.has("WATCHDOG=1")
	})
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatalf("Run after SIGTERM: %v", err)
	}
	h.done <- nil // for Cleanup
	if node.running.Load() {
		t.Error("node still running after the daemon returned")
	}
	if !h.notes.has("STOPPING=1") {
		t.Error("no STOPPING=1")
	}
}

func TestGainLoseRegain(t *testing.T) {
	h := start(t, true, nil, nil)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	if h.role() != state.Standby || !h.notes.has("READY=1") {
		t.Fatalf("a warm standby is %s and READY must be sent: %v", h.role(), h.notes.notes)
	}
	h.takeover.gone.Store(true)
	term := newFakeTerm()
	h.elector.grant <- term
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active && h.d.Status().Lock.Held })

	term.cancel(errors.New("lock session closed"))
	testenv.WaitFor(t, 5*time.Second, "back to standby and campaigning", func() bool {
		return h.role() == state.Standby && h.elector.acquires.Load() == 2
	})
	if node.running.Load() {
		t.Error("the node of a lost term still runs")
	}
	if st := h.d.Status(); st.Lock.Held || st.Node.Ready || st.Node.State != string(container.StateStopped) {
		t.Errorf("after losing the lock the status says lock held %v, node %s ready %v", st.Lock.Held, st.Node.State, st.Node.Ready)
	}
	h.elector.grant <- newFakeTerm()
	<-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active again", func() bool { return h.role() == state.Active })
}

// TestTakeoverWaitsForProofOrGuard: the first start of a term waits for proof that the previous node is gone, or
// for the takeover guard, on the daemon's clock (a fake one here: no wall-time windows).
func TestTakeoverWaitsForProofOrGuard(t *testing.T) {
	t.Run("ProofStartsAtOnce", func(t *testing.T) {
		clock := clockwork.NewFakeClock()
		h := startWith(t, setup{leader: true, clock: clock, config: func(c *config.Config) { c.Leader.TakeoverGuard = time.Hour }})
		testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
		h.takeover.gone.Store(true)
		h.elector.grant <- newFakeTerm()
		node := <-h.nodes
		testenv.WaitFor(t, 5*time.Second, "node ready", func() bool { return node.Status().Ready })
		if h.takeover.expired.Load() != 1 {
			t.Errorf("stale lease expired %d times before the start, want 1", h.takeover.expired.Load())
		}
	})
	t.Run("ProofArrivesLater", func(t *testing.T) {
		clock := clockwork.NewFakeClock()
		h := startWith(t, setup{leader: true, clock: clock, config: func(c *config.Config) { c.Leader.TakeoverGuard = time.Hour }})
		testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
		h.elector.grant <- newFakeTerm()
		testenv.WaitFor(t, 5*time.Second, "three checks without proof", func() bool {
			clock.Advance(takeoverPoll)
			return h.takeover.checks.Load() >= 3
		})
		if len(h.nodes) != 0 {
			t.Fatal("the node started without proof, before the guard")
		}
		h.takeover.gone.Store(true)
		testenv.WaitFor(t, 5*time.Second, "the node started on proof", func() bool {
			clock.Advance(takeoverPoll)
			return len(h.nodes) == 1
		})
	})
	t.Run("NoProofWaitsOutTheGuard", func(t *testing.T) {
		clock := clockwork.NewFakeClock()
		h := startWith(t, setup{leader: true, clock: clock})
		testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
		h.elector.grant <- newFakeTerm()
		testenv.WaitFor(t, 5*time.Second, "the first check", func() bool { return h.takeover.checks.Load() >= 1 })
		clock.Advance(h.d.host.Config.Leader.TakeoverGuard - time.Millisecond)
		testenv.WaitFor(t, 5*time.Second, "a check just before the guard", func() bool { return h.takeover.checks.Load() >= 2 })
		if len(h.nodes) != 0 {
			t.Fatal("the node started before the guard passed, without proof")
		}
		clock.Advance(time.Millisecond)
		select {
		case <-h.nodes:
		case <-time.After(5 * time.Second):
			t.Fatal("the node did not start once the guard passed")
		}
	})
}

// TestStepdownReleasesAndHolds: a stepdown stops the node, releases the lock, and keeps this host out of the
// election for leader.stepdown_hold on the daemon's clock.
func TestStepdownReleasesAndHolds(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h, term, node := activateWith(t, setup{clock: clock})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.d.Stepdown(ctx, false); err != nil {
		t.Fatal(err)
	}
	if !term.released.Load() || node.running.Load() {
		t.Fatalf("stepdown: released=%v node running=%v", term.released.Load(), node.running.Load())
	}
	testenv.WaitFor(t, 5*time.Second, "holding", func() bool { return strings.Contains(h.d.Status().Message, "out of the election") })
	clock.Advance(h.d.host.Config.Leader.StepdownHold - time.Millisecond)
	testenv.WaitFor(t, 5*time.Second, "a beat just before the hold ends", func() bool { return h.d.HealthState().LastBeat.Equal(clock.Now()) })
	if got := h.elector.acquires.Load(); got != 1 {
		t.Fatalf("campaigned again (%d campaigns) before the hold passed", got)
	}
	clock.Advance(time.Millisecond)
	testenv.WaitFor(t, 5*time.Second, "campaigning again after the hold", func() bool { return h.elector.acquires.Load() == 2 })
}

func TestCommandsOnStandbyAreRefused(t *testing.T) {
	h := start(t, true, nil, nil)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := h.d.Restart(ctx)
	if err == nil || !strings.Contains(err.Error(), "standby") {
		t.Errorf("restart on standby: %v", err)
	}
}

func TestTerminalWarmUpFailureEndsTheDaemon(t *testing.T) {
	bad := &secrets.Error{Key: "api_password", ID: "ApiSecret", Terminal: true, Err: secrets.ErrPasswordRule}
	h := start(t, true, nil, bad)
	err := <-h.done
	h.done <- nil
	if !errors.Is(err, secrets.ErrPasswordRule) {
		t.Fatalf("Run returned %v", err)
	}
	if h.elector.acquires.Load() != 0 {
		t.Error("a host that cannot start a node must not campaign for the lock")
	}
}

// TestNodeNotProvenStoppedKeepsTheLock: when the engine cannot prove the node stopped (dockerd down), a stepdown
// keeps the lock, beating, until a fence succeeds; only then may the peer take over.
func TestNodeNotProvenStoppedKeepsTheLock(t *testing.T) {
	h, term, _ := activate(t, func(n *fakeNode) { n.stopErr = errors.New("stop container: engine unreachable") })
	h.fenceFails.Store(2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := h.d.Stepdown(ctx, false); done <- err }()

	testenv.WaitFor(t, 5*time.Second, "a failed fence", func() bool { return h.fences.Load() >= 1 })
	if term.released.Load() {
		t.Fatal("the lock was released while the node was not proven stopped")
	}
	beats := h.notes.count("WATCHDOG=1")
	testenv.WaitFor(t, 5*time.Second, "beats while holding the lock", func() bool { return h.notes.count("WATCHDOG=1") > beats+5 })
	if err := <-done; err != nil {
		t.Fatalf("stepdown: %v", err)
	}
	if got := h.fences.Load(); got != 3 || !term.released.Load() {
		t.Fatalf("after the stepdown: %d fence attempts, released=%v; want 3 attempts, then the release", got, term.released.Load())
	}
}

// TestLoopBeatsWhileTheNodeStops: a planned stop of a slow node never starves systemd's watchdog or /healthz.
func TestLoopBeatsWhileTheNodeStops(t *testing.T) {
	gate := make(chan struct{})
	h, term, _ := activate(t, func(n *fakeNode) { n.stopGate = gate })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := h.d.Stepdown(ctx, false); done <- err }()
	testenv.WaitFor(t, 5*time.Second, "the stop under way", func() bool { return h.role() == state.Stopping })
	beats := h.notes.count("WATCHDOG=1")
	testenv.WaitFor(t, 5*time.Second, "beats while the node stops", func() bool { return h.notes.count("WATCHDOG=1") > beats+5 })
	if term.released.Load() {
		t.Fatal("the lock was released before the node stopped")
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !term.released.Load() {
		t.Fatal("the lock was not released after the node stopped")
	}
}

// TestLostTheLockSurvivesTheFence: the problem that the lock was lost stays in the status after the fence stopped
// the node (the supervisor's status used to overwrite it), until the next term.
func TestLostTheLockSurvivesTheFence(t *testing.T) {
	h, term, node := activate(t, nil)
	term.cancel(errors.New("lock session closed"))
	testenv.WaitFor(t, 5*time.Second, "fenced and campaigning again", func() bool {
		return h.role() == state.Standby && h.elector.acquires.Load() == 2
	})
	if node.running.Load() {
		t.Fatal("the node of a lost term still runs")
	}
	if got := h.d.Status().LastError; got != "lost the lock: lock session closed" {
		t.Fatalf("last_error after the fence = %q, want the lost lock", got)
	}
	h.elector.grant <- newFakeTerm()
	<-h.nodes
	testenv.WaitFor(t, 5*time.Second, "the next term clears it", func() bool { return h.d.Status().LastError == "" })
}

// TestHealthzStaysUpThroughASlowStop: a planned stop of a node that takes 20 s to stop keeps the loop beating, so
// /healthz answers 200 throughout and systemd's watchdog is fed; the lock is released only once the node stopped.
func TestHealthzStaysUpThroughASlowStop(t *testing.T) {
	clock := clockwork.NewFakeClock()
	const stopTakes = 20 * time.Second
	timed := make(chan struct{})
	h, term, _ := activateWith(t, setup{clock: clock, node: func(n *fakeNode) { n.clock, n.stopTakes, n.stopTimed = clock, stopTakes, timed }})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := h.d.Stepdown(ctx, false); done <- err }()
	<-timed
	bound := h.d.host.Config.Health.BeatBound
	for elapsed := time.Second; elapsed <= stopTakes; elapsed += time.Second {
		clock.Advance(time.Second)
		testenv.WaitFor(t, 5*time.Second, "a beat", func() bool { return h.d.HealthState().LastBeat.Equal(clock.Now()) })
		if ok, why := health.Live(h.d.HealthState(), clock.Now(), bound); !ok {
			t.Fatalf("/healthz %s into the stop: %s", elapsed, why)
		}
		if elapsed < stopTakes && term.released.Load() {
			t.Fatalf("the lock was released %s into the stop, before the node stopped", elapsed)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !term.released.Load() {
		t.Fatal("the lock was not released after the node stopped")
	}
}
