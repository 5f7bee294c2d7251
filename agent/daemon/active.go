package daemon

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/state"
)

// takeoverPoll is how often a new active looks for proof that the previous node is gone while it waits out the
// guard. Short, because the usual proof (the killed agent's fence stopping its node) arrives within a second.
const takeoverPoll = 100 * time.Millisecond

// running is one term on this host: the starting and active roles. The first start waits for proof that the
// previous active's node is gone, or for leader.takeover_guard; then the node runs under its supervisor until
// the term ends (lock lost: fencing), the operator steps down, the node is handed over for failing, the
// supervisor gives up (a terminal failure), or SIGTERM.
type running struct {
	d    *Daemon
	gen  int
	term Term
	node Node // nil until the takeover wait is over
	stop context.CancelFunc
	// exited: the supervisor has returned, with exitErr.
	exited  bool
	exitErr error

	watch        Watch // the takeover proof, while waiting
	guard        interface{ Stop() bool }
	restarting   bool       // a restart (the operator's or a rotation's) is under way
	checking     bool       // a rotation check is under way
	asking       bool       // the standby's health is being read
	restartReply chan error // the operator waiting for that restart
	sick         sickNode

	plan         startPlan                // what the node runs (startplan.go)
	recorded     bool                     // the node was ready once since its start: its image is the pair's
	relaunch     bool                     // the node is being stopped to start on another image
	switching    bool                     // a planned switchover is being written
	judging      bool                     // an upgrade's candidate not ready in time is being stopped and judged
	upgradeTimer interface{ Stop() bool } // an upgrade's ready bound
}

func (d *Daemon) enterRunning(term Term) phase {
	d.gen++
	r := &running{d: d, gen: d.gen, term: term}
	d.lockHeld, d.holder = true, "cl-agent/"+d.host.Identity.InstanceID
	d.problems.clear(problemLock)
	go func(gen int) {
		select {
		case <-term.Done():
			d.post(termEnded{gen})
		case <-d.stopped:
		}
	}(r.gen)
	if d.o.Election == nil {
		return r.start()
	}
	d.setRole(state.Starting, "waiting for proof the previous node is gone, or the takeover guard")
	r.guard = d.after(d.clock.Until(term.AcquiredAt().Add(d.host.Config.Leader.TakeoverGuard)), guardPassed{r.gen})
	takeover := d.takeover
	d.spawn(func(ctx context.Context) event {
		w, err := takeover.Watch(ctx)
		return watchOpened{gen: r.gen, w: w, err: err}
	})
	return r
}

func (r *running) on(ev event) phase {
	if next, done := r.onTakeover(ev); done {
		return next
	}
	if next, done := r.onNode(ev); done {
		return next
	}
	switch ev := ev.(type) {
	case termEnded:
		if ev.gen == r.gen {
			return r.lost()
		}
	case shutdownEvent:
		return r.stopFor(state.Stopping, "stopping the node", nil, r.d.exit)
	case request:
		return r.request(ev)
	case rotateEvent:
		if !r.checking && !r.restarting {
			r.checking = true
			r.d.checkRotation(r)
		}
	case rotationChecked:
		r.checking = false
		r.rotated(rotationCheck(ev))
	case tickEvent:
		r.tick()
	case peerAnswered:
		r.asking = false
		if ev.gen == r.gen {
			return r.peerAnswered(ev.peerAnswer)
		}
	default:
		return r.onUpgrade(ev)
	}
	return r
}

// onUpgrade handles a start's plan and an upgrade's events (startplan.go).
func (r *running) onUpgrade(ev event) phase {
	switch ev := ev.(type) {
	case startPrepared:
		if ev.gen == r.gen {
			return r.prepared(ev)
		}
	case prepareDue:
		if ev.gen == r.gen && r.node == nil {
			r.prepare()
		}
	case upgradeDeadline:
		switch {
		case ev.gen != r.gen || !r.plan.upgrade || r.recorded:
		case r.judging && r.node == nil: // a judgement that failed, the node stopped: again
			r.judge()
		case !r.relaunch:
			r.d.host.Log.Warn("upgrade: the candidate's node is not ready within image.ready_timeout: stopping it to judge",
				zap.Duration("ready_timeout", r.d.host.Config.Image.ReadyTimeout))
			r.judging = true
			r.relaunchNode()
		}
	case upgradeJudged:
		if ev.gen == r.gen {
			return r.judged(ev)
		}
	case switchAdvanced:
		if ev.gen == r.gen {
			return r.switched(ev)
		}
	case pairRead:
		if ev.err == nil {
			return r.activePair(ev.rec)
		}
	}
	return r
}

// observe takes the node's status; its first ready of a start records its image as the pair's.
func (r *running) observe(s container.Status) {
	r.d.observe(s)
	if s.Ready && !r.recorded && r.node != nil && !r.relaunch {
		r.nodeUp()
	}
}

// onTakeover handles the wait before the first start.
func (r *running) onTakeover(ev event) (phase, bool) {
	d := r.d
	switch ev := ev.(type) {
	case watchOpened:
		switch {
		case ev.gen != r.gen || r.node != nil:
			if ev.w != nil {
				go ev.w.Close()
			}
		case ev.err != nil:
			d.host.Log.Warn("cannot watch for the previous node; waiting out the guard", zap.Error(ev.err))
		default:
			r.watch = ev.w
			r.checkTakeover()
		}
	case takeoverPollDue:
		if ev.gen == r.gen && r.node == nil && r.watch != nil {
			r.checkTakeover()
		}
	case takeoverChecked:
		if ev.gen != r.gen || r.node != nil {
			return r, true
		}
		switch {
		case ev.err != nil:
			d.host.Log.Warn("cannot check for the previous node; waiting out the guard", zap.Error(ev.err))
		case ev.gone:
			d.host.Log.Info("previous node gone; starting without waiting out the guard", zap.String("proof", ev.why),
				zap.Duration("after", d.clock.Since(r.term.AcquiredAt())))
			return r.start(), true
		}
		d.after(takeoverPoll, takeoverPollDue{r.gen})
	case guardPassed:
		if ev.gen == r.gen && r.node == nil {
			d.host.Log.Info("takeover guard passed; the previous active has fenced itself by now",
				zap.Duration("guard", d.host.Config.Leader.TakeoverGuard))
			return r.start(), true
		}
	default:
		return nil, false
	}
	return r, true
}

func (r *running) checkTakeover() {
	w, gen := r.watch, r.gen
	r.d.spawn(func(ctx context.Context) event {
		gone, why, err := w.Check(ctx)
		return takeoverChecked{gen: gen, gone: gone, why: why, err: err}
	})
}

// start ends the takeover wait and starts the node: on the image the pair's record decides (prepare).
func (r *running) start() phase {
	if r.guard != nil {
		r.guard.Stop()
	}
	if r.watch != nil {
		go r.watch.Close()
		r.watch = nil
	}
	r.prepare()
	return r
}

// onNode handles what the node's supervisor and restarts report.
func (r *running) onNode(ev event) (phase, bool) {
	d := r.d
	switch ev := ev.(type) {
	case nodeChanged:
		if ev.gen == r.gen {
			r.observe(ev.status)
		}
	case nodeExited:
		if ev.gen != r.gen {
			break
		}
		r.exited, r.exitErr = true, ev.err
		if r.term.Err() != nil { // the lock's end stopped the node before its own event reached us
			return r.lost(), true
		}
		if r.relaunch {
			return r.relaunched(ev.err), true
		}
		err := ev.err
		if err == nil {
			err = errors.New("the node's supervisor ended on its own")
		}
		// The supervisor gave up: a failure it cannot fix.
		return d.enterStopping(stop{role: state.Stopping, why: "the node failed", term: r.term, exited: true,
			err: err, then: d.exit}), true
	case restartFetched:
		if ev.gen == r.gen {
			r.restartWith(ev)
		}
	case restarted:
		if ev.gen == r.gen {
			r.restartDone(ev)
		}
	default:
		return nil, false
	}
	return r, true
}

// request serves the operator's restart or stepdown.
func (r *running) request(req request) phase {
	switch {
	case req.kind == state.Stepdown:
		return r.stopFor(state.Stopping, "stepping down: stopping the node", req.reply, r.d.holdThenWarm)
	case req.kind != state.Restart:
		req.reply <- errors.New("unknown request " + string(req.kind))
	case r.node == nil:
		req.reply <- errors.New("the node is not started yet: waiting for proof the previous node is gone")
	case r.restarting:
		req.reply <- errors.New("a restart is already in progress")
	default:
		r.restarting, r.restartReply = true, req.reply
		fetch, gen := r.d.fetcher(""), r.gen // the operator's restart checks a refused keystore password again
		r.d.spawn(func(ctx context.Context) event {
			return restartFetched{gen: gen, reply: req.reply, rc: fetch(ctx)}
		})
	}
	return r
}

// lost is the fencing state: the lock can no longer be proven, so the node stops now.
func (r *running) lost() phase {
	d := r.d
	if d.shuttingDown {
		return r.stopFor(state.Stopping, "stopping the node", nil, d.exit) // SIGTERM took the lock down with it
	}
	err := r.term.Err()
	d.problems.set(problemLock, errors.New("lost the lock: "+errString(err)))
	d.host.Log.Warn("the lock is no longer proven: stopping the node", zap.Error(err))
	return r.stopFor(state.Fencing, "lock no longer proven ("+errString(err)+"): stopping the node", nil, d.afterFence)
}

// stopFor stops this term's node and releases the lock, then goes on with then.
func (r *running) stopFor(role state.Role, why string, reply chan error, then func(error) phase) phase {
	if r.guard != nil {
		r.guard.Stop()
	}
	if r.watch != nil {
		go r.watch.Close()
	}
	if r.restartReply != nil && reply == nil {
		r.restartReply <- errors.New(why)
	}
	s := stop{role: role, why: why, term: r.term, reply: reply, then: then, exited: r.node == nil || r.exited, gen: r.gen}
	if r.exited {
		s.err = dropCanceled(r.exitErr)
	}
	if r.node != nil {
		r.stop()
	}
	return r.d.enterStopping(s)
}

// tick is the heartbeat of a term: the node's status, and the clock of a node that keeps failing.
func (r *running) tick() {
	d := r.d
	d.readPair()
	if r.node == nil {
		return
	}
	r.observe(r.node.Status())
	failing, _ := r.failing()
	if r.plan.upgrade && !r.recorded {
		failing = false // an upgrade's new node is judged by image.ready_timeout, not handed over for failing
	}
	if d.o.Election != nil && !r.asking && r.sick.due(failing, d.host.Config.Health.UnhealthyStepdown, d.clock.Now()) {
		r.asking = true
		d.askPeer(r.gen)
	}
}

func dropCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func errString(err error) string {
	if err == nil {
		return "released"
	}
	return err.Error()
}
