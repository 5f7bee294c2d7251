package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/bootstrap"
	"github.com/cl-agent/cl-agent/agent/container"
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

// runActive is the starting and active states of one term: it runs the node under the supervisor until the term
// ends (lock lost: fencing), the operator steps down, the node is handed over for failing its checks, or ctx ends
// (stopping). The node is always stopped before it returns: the supervisor's Run does that on every path. A nil
// error means "back to standby".
func (d *Daemon) runActive(ctx context.Context, term Term) error {
	d.setLockHeld(true)
	defer d.setLockHeld(false)
	defer d.observe(container.Status{State: container.StateStopped}) // whatever ended the term, the node is gone
	d.setRole(RoleStarting, "starting the node")

	d.mu.Lock()
	img := d.img
	d.mu.Unlock()
	node, err := d.newNode(img, NodeHooks{Render: d.render, BeforeStart: d.beforeStart(term), OnStatus: d.observe})
	if err != nil {
		d.release(ctx, term)
		return err
	}
	a := &activeTerm{d: d, ctx: ctx, term: term, node: node,
		nodeDone: make(chan error, 1), restarted: make(chan error, 1), rotation: make(chan rotationCheck, 1), peer: make(chan peerAnswer, 1)}
	a.runCtx, a.stopNode = context.WithCancel(term.Context())
	defer a.stopNode()
	go func() { a.nodeDone <- node.Run(a.runCtx) }()

	tick := time.NewTicker(d.tick)
	defer tick.Stop()
	rotate := d.rotationTicker()
	defer rotate.Stop()
	report := time.NewTicker(healthReportEvery)
	defer report.Stop()
	for {
		select {
		case err := <-a.nodeDone: // a failure the supervisor cannot fix (terminal)
			d.release(ctx, term)
			return err
		case <-term.Done():
			return a.lost()
		case <-ctx.Done():
			return a.stopping()
		case r := <-d.requests:
			if r.kind == "stepdown" {
				err := a.stepDown("stepping down: stopping the node")
				r.reply <- err
				return err
			}
			a.startRestart(r.reply)
		case err := <-a.restarted:
			a.restartDone(err)
		case <-rotate.C:
			if !a.busy && !a.checking {
				a.checking = true
				go func() { a.rotation <- a.checkRotation() }()
			}
		case rc := <-a.rotation:
			a.rotated(rc)
		case <-report.C:
			d.reportHealth(ctx)
		case pa := <-a.peer:
			if handOver, why := a.shouldHandOver(pa); handOver {
				return a.stepDown(why)
			}
		case <-tick.C:
			a.tick()
		}
	}
}

// activeTerm is the state of one term on the active host, with one method per event of runActive's loop.
type activeTerm struct {
	d        *Daemon
	ctx      context.Context // the daemon's: SIGTERM
	term     Term
	node     Node
	runCtx   context.Context // the node's: ends with the term or when we stop the node
	stopNode context.CancelFunc
	nodeDone chan error

	busy         bool       // a restart (the operator's or a rotation's) is under way
	checking     bool       // a rotation check is under way
	restartReply chan error // the operator waiting for that restart; nil for a rotation's
	restarted    chan error
	rotation     chan rotationCheck
	sick         sickNode
	peer         chan peerAnswer
}

// lost is the fencing state: the lock can no longer be proven, so the node stops now.
func (a *activeTerm) lost() error {
	if a.ctx.Err() != nil {
		return a.stopping() // SIGTERM took the lock down with it
	}
	err := a.term.Err()
	a.d.setRole(RoleFencing, "lock no longer proven ("+errString(err)+"): stopping the node")
	a.d.setProblem(fmt.Errorf("lost the lock: %w", err))
	stopped := a.stopAndRelease()
	a.d.host.Log.Warn("fenced: node stopped after losing the lock", zap.Error(err))
	return stopped
}

// stopping is SIGTERM on the active: stop the node within its bound, then release the lock.
func (a *activeTerm) stopping() error {
	a.d.setRole(RoleStopping, "stopping the node")
	return a.stopAndRelease()
}

// stepDown hands over: stop the node, release the lock, and stay out of the election for leader.stepdown_hold so
// the peer takes it.
func (a *activeTerm) stepDown(why string) error {
	a.d.setRole(RoleStopping, why)
	err := a.stopAndRelease()
	a.d.mu.Lock()
	a.d.holdUntil = time.Now().Add(a.d.host.Config.Leader.StepdownHold)
	a.d.mu.Unlock()
	return err
}

// stopAndRelease stops the node and then gives the lock back, but only once the node is proven stopped: a node the
// engine could not stop (dockerd down, restarting or hung) may still run under containerd, and releasing the lock
// then would let the peer start a second node. The loop keeps beating meanwhile (systemd's watchdog, /healthz).
func (a *activeTerm) stopAndRelease() error {
	a.stopNode()
	err := dropCanceled(a.waitNode())
	if err != nil && a.term.Err() == nil {
		err = a.fenceBeforeRelease(err)
	}
	a.d.release(a.ctx, a.term)
	return err
}

// waitNode waits for the supervisor to end, beating.
func (a *activeTerm) waitNode() error {
	beat := time.NewTicker(a.d.tick)
	defer beat.Stop()
	for {
		select {
		case err := <-a.nodeDone:
			return err
		case <-beat.C:
			a.d.beat()
		}
	}
}

// fenceBeforeRelease keeps the lock while it retries the fence: until the fence succeeds, the lock is lost anyway,
// or, once the agent is stopping, stopHoldBudget has passed (systemd's stop timeout would kill it next, and its
// ExecStopPost fence tries again). Each attempt runs off the loop (a hung engine holds a call for its whole bound),
// so the loop beats throughout.
func (a *activeTerm) fenceBeforeRelease(stopErr error) error {
	a.d.host.Log.Error("the node could not be proven stopped: keeping the lock until it is", zap.Error(stopErr))
	a.d.setProblem(fmt.Errorf("node not proven stopped, lock kept: %w", stopErr))
	var deadline <-chan time.Time
	retry := time.NewTicker(fenceRetryInterval)
	defer retry.Stop()
	beat := time.NewTicker(a.d.tick)
	defer beat.Stop()
	stopping := a.ctx.Done()
	fenced := make(chan error, 1) // buffered: an attempt still running when we give up can end
	inFlight := false
	for {
		select {
		case <-retry.C:
			if !inFlight {
				inFlight = true
				go func() { fenced <- a.d.fence(context.WithoutCancel(a.ctx)) }()
			}
		case err := <-fenced:
			inFlight = false
			if err == nil {
				a.d.host.Log.Info("node fenced; releasing the lock")
				return nil
			}
			a.d.host.Log.Warn("fencing the node failed; retrying with the lock held", zap.Error(err))
		case <-beat.C:
			a.d.beat()
		case <-a.term.Done():
			return fmt.Errorf("lost the lock while the node was not proven stopped: %w", stopErr)
		case <-stopping:
			stopping, deadline = nil, time.After(stopHoldBudget)
		case <-deadline:
			return fmt.Errorf("stopping with the node not proven stopped (ExecStopPost fences again): %w", stopErr)
		}
	}
}

// startRestart begins the operator's restart, unless one is under way.
func (a *activeTerm) startRestart(reply chan error) {
	if a.busy {
		reply <- errors.New("a restart is already in progress")
		return
	}
	a.busy, a.restartReply = true, reply
	go func() { a.restarted <- a.d.restart(a.runCtx, a.node) }()
}

func (a *activeTerm) restartDone(err error) {
	a.d.observe(a.node.Status()) // the operator's next status must show the restart
	if a.restartReply != nil {
		a.restartReply <- err
	} else if err != nil {
		a.d.host.Log.Error("restart after a secret rotation failed", zap.Error(err))
	}
	a.busy, a.restartReply = false, nil
}

// checkRotation is the active's rotation check: a rotated API password is carried over to the node through its
// API before it is held (the node ignores .api once its user exists, so holding it alone would lock the agent out).
// Off the loop: it makes network calls.
func (a *activeTerm) checkRotation() rotationCheck {
	rc := a.d.checkRotation(a.runCtx)
	if !slices.Contains(rc.changed, apiPasswordKey) {
		return rc
	}
	a.d.mu.Lock()
	held := a.d.secrets.APIPassword
	a.d.mu.Unlock()
	err := errors.New("the node is not ready")
	if a.node.Status().Ready {
		err = a.d.changeAPIPassword(a.runCtx, held, rc.fresh.APIPassword)
	}
	if err != nil {
		rc.fresh.APIPassword, rc.apiErr = held, err
		rc.changed = slices.DeleteFunc(rc.changed, func(k string) bool { return k == apiPasswordKey })
	}
	return rc
}

// apiNotApplied starts the problem of a rotated API password not yet carried over to the node.
const apiNotApplied = "rotated API password not applied yet"

// rotated takes rotated secrets: the API password alone is only held (the node's user was moved to it); the
// database or keystore password restarts the node with the new values.
func (a *activeTerm) rotated(rc rotationCheck) {
	a.checking = false
	if rc.apiErr != nil {
		a.d.host.Log.Warn("the API password was rotated in Secrets Manager, but the node's user is not moved to it yet: "+
			"keeping the held one, which the node still takes; trying again at the next check", zap.Error(rc.apiErr))
		a.d.setProblem(fmt.Errorf("%s: %w", apiNotApplied, rc.apiErr))
	}
	if len(rc.changed) == 0 || a.busy {
		return
	}
	a.d.mu.Lock()
	a.d.secrets = rc.fresh
	a.d.mu.Unlock()
	if slices.Equal(rc.changed, []string{apiPasswordKey}) {
		a.d.host.Log.Info("the node's API password was changed to the rotated one; no restart needed")
		a.d.clearProblem(apiNotApplied)
		return
	}
	a.d.host.Log.Info("secrets rotated: restarting the node with the new values", zap.Strings("secrets", rc.changed))
	a.busy = true
	go func() { a.restarted <- a.node.Restart(a.runCtx) }()
}

// tick is the heartbeat: status, and the clock of a node failing its checks.
func (a *activeTerm) tick() {
	a.d.beat()
	a.d.observe(a.node.Status())
	failing, _ := a.failing()
	if a.d.election != nil && a.sick.due(failing, a.d.host.Config.Health.UnhealthyStepdown, time.Now()) {
		go func() { a.peer <- a.d.askPeer(a.runCtx) }()
	}
}

// failing reports whether this term's node cannot serve: not ready (a start that keeps failing — a foreign
// container under its name, a full tmpfs — holds the lock with no node behind it), or failing its checks.
func (a *activeTerm) failing() (bool, string) {
	if st := a.node.Status(); !st.Ready {
		why := "node not ready: " + string(st.State)
		if st.LastError != "" {
			why += ": " + st.LastError
		}
		return true, why
	}
	return a.d.nodeFailing()
}

// shouldHandOver decides, once the standby has answered, whether a node that keeps failing goes to it.
func (a *activeTerm) shouldHandOver(pa peerAnswer) (bool, string) {
	failing, why := a.failing()
	switch {
	case !failing:
		return false, "" // it recovered while we asked
	case !pa.ready:
		a.d.host.Log.Warn("the node keeps failing, but there is no healthy standby to hand over to: staying active",
			zap.String("node", why), zap.String("standby", pa.why))
		return false, ""
	}
	a.d.host.Log.Warn("the node keeps failing: handing over to the healthy standby",
		zap.String("node", why), zap.String("standby", pa.why))
	return true, "handing over a node that keeps failing (" + why + "): stopping it"
}

// observe mirrors the supervisor's status into the daemon's: starting until the node is ready, then active.
func (d *Daemon) observe(s container.Status) {
	d.mu.Lock()
	d.status.Node.State, d.status.Node.Ready, d.status.Node.Restarts = string(s.State), s.Ready, s.Restarts
	d.status.Node.Image, d.status.Node.Digest = s.Image, s.Digest
	d.status.LastError = s.LastError
	role := Role(d.status.Role)
	d.mu.Unlock()
	switch {
	case s.Ready && role != RoleActive:
		d.setRole(RoleActive, "node ready")
		d.ready()
	case !s.Ready && role == RoleActive:
		d.setRole(RoleStarting, "node not ready: "+string(s.State))
	}
}

// restart is the operator's restart: fetch the secrets again, then re-render and recreate the node.
func (d *Daemon) restart(ctx context.Context, node Node) error {
	secrets, err := d.fetch(ctx)
	if err != nil {
		return fmt.Errorf("restart: fetch the secrets again: %w", err)
	}
	d.mu.Lock()
	d.secrets = secrets
	d.mu.Unlock()
	return node.Restart(ctx)
}

// render gives the supervisor the node's files from the secrets held in memory.
func (d *Daemon) render(context.Context) (*bootstrap.Rendered, error) {
	d.mu.Lock()
	img, secrets := d.img, d.secrets
	d.mu.Unlock()
	return d.host.Render(img, secrets)
}

// beforeStart runs before every start of the node in this term. Before the first, the previous active's node may
// still run: wait for proof that it is gone, or for the takeover guard. Before every start, the previous node is
// known dead (the peer's after that wait, or our own the supervisor just removed), so its lease is expired and the
// new node does not wait it out.
func (d *Daemon) beforeStart(term Term) func(context.Context) error {
	if d.election == nil {
		return nil
	}
	first := true
	return func(ctx context.Context) error {
		if first {
			if err := d.waitTakeover(ctx, term); err != nil {
				return err
			}
			first = false
		}
		return d.currentTakeover().ExpireStaleLease(ctx)
	}
}

// release gives the lock back (no-op when it is already lost) with a budget of its own.
func (d *Daemon) release(ctx context.Context, term Term) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseBudget)
	defer cancel()
	if err := term.Release(rctx); err != nil {
		d.host.Log.Warn("releasing the lock", zap.Error(err))
	}
}

func (d *Daemon) setLockHeld(held bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status.Lock.Held = held
	if held {
		d.status.Lock.Holder = "cl-agent/" + d.host.Identity.InstanceID
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
