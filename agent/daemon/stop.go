package daemon

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/state"
)

const (
	// releaseBudget bounds giving the lock back during shutdown or stepdown; closing the session frees it anyway.
	releaseBudget = 5 * time.Second
	// fenceRetryInterval paces fence attempts while the engine cannot stop the node (dockerd restarts in seconds).
	fenceRetryInterval = time.Second
	// stopHoldBudget bounds holding the lock for an unproven node once the agent is stopping: within the unit's
	// TimeoutStopSec (60s) with room for the release.
	stopHoldBudget = 40 * time.Second
)

// stop says how a term ends: why, and what follows once the node is stopped and the lock released.
type stop struct {
	role   state.Role
	why    string
	term   Term
	gen    int        // the term's number, to know its node's exit
	exited bool       // the node has stopped already (or never started)
	err    error      // what ended the term, if it failed; passed to then
	reply  chan error // the operator waiting for a stepdown
	then   func(error) phase
}

// stopping stops the node and then gives the lock back, but only once the node is proven stopped: a node the
// engine could not stop (dockerd down, restarting or hung) may still run under containerd, and releasing the lock
// then would let the peer start a second node. The fence is retried with the lock held until it succeeds, the
// lock is lost anyway, or — once the agent is stopping — stopHoldBudget has passed (systemd's stop timeout would
// kill it next, and its ExecStopPost fences again). All of it runs off the loop, which keeps beating.
type stopping struct {
	d       *Daemon
	s       stop
	fencing bool // the node is not proven stopped: fence attempts under way
	inFence bool // one attempt is running
	giveUp  interface{ Stop() bool }
}

func (d *Daemon) enterStopping(s stop) phase {
	d.setRole(s.role, s.why)
	st := &stopping{d: d, s: s}
	if s.exited {
		return st.release()
	}
	return st
}

func (st *stopping) on(ev event) phase {
	d := st.d
	switch ev := ev.(type) {
	case nodeExited:
		if ev.gen == st.s.gen {
			return st.nodeStopped(ev.err)
		}
	case nodeChanged:
		if ev.gen == st.s.gen {
			d.node = ev.status
		}
	case fenceDue:
		if st.fencing && !st.inFence {
			st.inFence = true
			fence := d.o.Fence
			d.spawn(func(ctx context.Context) event { return fenced{fence(context.WithoutCancel(ctx))} })
		}
	case fenced:
		return st.fenced(ev.err)
	case termEnded:
		if ev.gen == st.s.gen && st.fencing {
			st.s.err = fmt.Errorf("lost the lock while the node was not proven stopped: %w", st.s.err)
			return st.release()
		}
	case shutdownEvent:
		if st.fencing && st.giveUp == nil {
			st.giveUp = d.after(stopHoldBudget, stopDeadline{})
		}
		st.s.then = d.exit
	case stopDeadline:
		if st.fencing {
			st.s.err = fmt.Errorf("stopping with the node not proven stopped (ExecStopPost fences again): %w", st.s.err)
			return st.release()
		}
	case released:
		return st.done()
	case request:
		d.refuse(ev)
	}
	return st
}

// nodeStopped follows the supervisor's end: proven stopped, or not (then fence before the release).
func (st *stopping) nodeStopped(err error) phase {
	d := st.d
	err = dropCanceled(err)
	if err == nil || st.s.term.Err() != nil {
		if err != nil {
			st.s.err = err
		}
		return st.release()
	}
	st.s.err, st.fencing = err, true
	d.host.Log.Error("the node could not be proven stopped: keeping the lock until it is", zap.Error(err))
	d.problems.set(problemFence, fmt.Errorf("node not proven stopped, lock kept: %w", err))
	d.after(fenceRetryInterval, fenceDue{})
	if d.shuttingDown {
		st.giveUp = d.after(stopHoldBudget, stopDeadline{})
	}
	return st
}

func (st *stopping) fenced(err error) phase {
	d := st.d
	st.inFence = false
	if !st.fencing {
		return st
	}
	if err != nil {
		d.host.Log.Warn("fencing the node failed; retrying with the lock held", zap.Error(err))
		d.after(fenceRetryInterval, fenceDue{})
		return st
	}
	d.host.Log.Info("node fenced; releasing the lock")
	st.s.err = nil
	d.problems.clear(problemFence)
	return st.release()
}

// release gives the lock back (a no-op when it is lost already) within releaseBudget, off the loop.
func (st *stopping) release() phase {
	d, term := st.d, st.s.term
	st.fencing = false
	if st.giveUp != nil {
		st.giveUp.Stop()
	}
	d.spawn(func(ctx context.Context) event {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseBudget)
		defer cancel()
		if err := term.Release(rctx); err != nil {
			d.host.Log.Warn("releasing the lock", zap.Error(err))
		}
		return released{}
	})
	return st
}

// done is the end of the term: the node stopped, the lock released.
func (st *stopping) done() phase {
	d := st.d
	d.lockHeld, d.holder = false, ""
	d.node = container.Status{State: container.StateStopped}
	if st.s.reply != nil {
		st.s.reply <- st.s.err
	}
	return st.s.then(st.s.err)
}

// afterFence follows a term that ended with the lock lost: back to standby, or out when the node could not be
// proven stopped (exit 1: systemd restarts the agent and its ExecStopPost fences again).
func (d *Daemon) afterFence(err error) phase {
	if err != nil {
		return d.exit(err)
	}
	d.host.Log.Warn("fenced: node stopped after losing the lock")
	return d.enterWarming()
}

// holdThenWarm follows a stepdown or a handover: stay out of the election for leader.stepdown_hold so the peer
// takes the lock, then warm up again.
func (d *Daemon) holdThenWarm(err error) phase {
	if err != nil {
		return d.exit(err)
	}
	d.holdUntil = d.clock.Now().Add(d.host.Config.Leader.StepdownHold)
	return d.enterWarming()
}
