package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/bootstrap"
	"github.com/cl-agent/cl-agent/agent/container"
)

// releaseBudget bounds giving the lock back during shutdown or stepdown; closing the session frees it anyway.
const releaseBudget = 5 * time.Second

// runActive is the starting and active states of one term: it runs the node under the supervisor until the term
// ends (lock lost: fencing), the operator steps down, or ctx ends (stopping). The node is always stopped before it
// returns: the supervisor's Run does that on every path. A nil error means "back to standby".
func (d *Daemon) runActive(ctx context.Context, term Term) error {
	d.setLockHeld(true)
	defer d.setLockHeld(false)
	d.setRole(RoleStarting, "starting the node")

	d.mu.Lock()
	img := d.img
	d.mu.Unlock()
	node, err := d.newNode(img, d.render, d.beforeStart(term))
	if err != nil {
		d.release(ctx, term)
		return err
	}
	runCtx, stopNode := context.WithCancel(term.Context())
	defer stopNode()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(runCtx) }()

	tick := time.NewTicker(d.tick)
	defer tick.Stop()
	rotate := d.rotationTicker()
	defer rotate.Stop()
	restarting := make(chan error, 1)
	rotation := make(chan rotationCheck, 1)
	var restartReply chan error // the operator waiting for a restart; nil for a rotation's
	busy := false               // a restart (operator's or rotation's) is under way
	report := time.NewTicker(healthReportEvery)
	defer report.Stop()
	var sick sickNode
	peer := make(chan peerAnswer, 1)
	for {
		select {
		case err := <-nodeDone:
			// The supervisor stopped the node: a failure it cannot fix (terminal), or runCtx ended below.
			d.release(ctx, term)
			return err
		case <-term.Done():
			if ctx.Err() != nil {
				return d.stopping(ctx, term, stopNode, nodeDone) // SIGTERM took the lock down with it
			}
			d.setRole(RoleFencing, "lock no longer proven ("+errString(term.Err())+"): stopping the node")
			d.setProblem(fmt.Errorf("lost the lock: %w", term.Err()))
			stopNode()
			err := <-nodeDone
			d.release(ctx, term)
			d.host.Log.Warn("fenced: node stopped after losing the lock", zap.Error(term.Err()))
			return dropCanceled(err)
		case <-ctx.Done():
			return d.stopping(ctx, term, stopNode, nodeDone)
		case r := <-d.requests:
			switch {
			case r.kind == "stepdown":
				err := d.stepDown(ctx, term, stopNode, nodeDone, "stepping down: stopping the node")
				r.reply <- err
				return err
			case busy:
				r.reply <- errors.New("a restart is already in progress")
			default:
				busy, restartReply = true, r.reply
				go func() { restarting <- d.restart(runCtx, node) }()
			}
		case err := <-restarting:
			d.observe(node.Status()) // the operator's next status must show the restart
			if restartReply != nil {
				restartReply <- err
			} else if err != nil {
				d.host.Log.Error("restart after a secret rotation failed", zap.Error(err))
			}
			busy, restartReply = false, nil
		case <-rotate.C:
			if !busy {
				go func() { rotation <- d.checkRotation(runCtx) }()
			}
		case rc := <-rotation:
			if len(rc.changed) == 0 || busy {
				continue
			}
			d.host.Log.Info("secrets rotated: restarting the node with the new values", zap.Strings("secrets", rc.changed))
			d.mu.Lock()
			d.secrets = rc.fresh
			d.mu.Unlock()
			busy = true
			go func() { restarting <- node.Restart(runCtx) }()
		case <-report.C:
			d.reportHealth(ctx)
		case pa := <-peer:
			failing, why := d.nodeFailing()
			if !failing {
				continue // it recovered while we asked
			}
			if !pa.ready {
				d.host.Log.Warn("the node keeps failing its checks, but there is no healthy standby to hand over to: staying active",
					zap.String("node", why), zap.String("standby", pa.why))
				continue
			}
			d.host.Log.Warn("the node keeps failing its checks: handing over to the healthy standby",
				zap.String("node", why), zap.String("standby", pa.why))
			return d.stepDown(ctx, term, stopNode, nodeDone, "handing over an unhealthy node: stopping it")
		case <-tick.C:
			d.beat()
			d.observe(node.Status())
			failing, _ := d.nodeFailing()
			if d.election != nil && sick.due(failing, d.host.Config.Health.UnhealthyStepdown, time.Now()) {
				go func() { peer <- d.askPeer(runCtx) }()
			}
		}
	}
}

// stepDown hands over: stop the node, release the lock, and stay out of the election for leader.stepdown_hold so
// the peer takes it.
func (d *Daemon) stepDown(ctx context.Context, term Term, stopNode context.CancelFunc, nodeDone <-chan error, why string) error {
	d.setRole(RoleStopping, why)
	stopNode()
	err := <-nodeDone
	d.release(ctx, term)
	d.mu.Lock()
	d.holdUntil = time.Now().Add(d.host.Config.Leader.StepdownHold)
	d.mu.Unlock()
	return dropCanceled(err)
}

// stopping is SIGTERM on the active: stop the node within its bound, then release the lock.
func (d *Daemon) stopping(ctx context.Context, term Term, stopNode context.CancelFunc, nodeDone <-chan error) error {
	d.setRole(RoleStopping, "stopping the node")
	stopNode()
	err := <-nodeDone
	d.release(ctx, term)
	return dropCanceled(err)
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
