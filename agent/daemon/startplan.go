package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/state"
)

// prepareRetry paces another look at the pair's record when it could not be read before a start.
const prepareRetry = time.Second

// startPlan is what a start runs, as the pair's record decides just before it.
type startPlan struct {
	img image.Image
	// upgrade: img is an upgrade's candidate; from is the pair's image, what a roll-back runs again.
	upgrade  bool
	from     image.Image
	baseline int64 // the database's highest migration before the candidate's node started
}

// Events of a start and of an upgrade's new node.
type (
	startPrepared struct {
		gen  int
		plan startPlan
		err  error
	}
	prepareDue      struct{ gen int }
	upgradeDeadline struct{ gen int }
	// upgradeJudged: the candidate's node was not ready in time; migrated says whether it was past the point of
	// no return (rolled back otherwise).
	upgradeJudged struct {
		gen      int
		migrated bool
		err      error
	}
	// switchAdvanced: the active moved a validated upgrade to switching (moved), so it now hands over.
	switchAdvanced struct {
		gen   int
		moved bool
		err   error
	}
)

// prepare reads the pair's record off the loop and decides what this start runs (planStart), then launches it.
func (r *running) prepare() {
	d, gen := r.d, r.gen
	t, warm := d.takeover, d.img
	d.setRole(state.Starting, "starting the node: reading the pair's image")
	d.spawn(func(ctx context.Context) event {
		plan, err := planStart(ctx, t, warm, d.o.Pull, d.host.Local)
		return startPrepared{gen: gen, plan: plan, err: err}
	})
}

// planStart decides what a start runs: the candidate of an upgrade that is switching (its baseline recorded and
// the phase moved to starting first), else the pair's image, else — the first host of a new pair — the image this
// host warmed up on, recorded as the pair's before its node starts. Whatever it is, it is on this host (pulled from
// its image.repository: local) when planStart returns.
func planStart(ctx context.Context, t Takeover, warm image.Image, pull func(context.Context, image.Image) error,
	local func(image.Image) image.Image) (startPlan, error) {
	if t == nil {
		return startPlan{img: warm}, nil
	}
	rec, err := t.ReadPair(ctx)
	if err != nil {
		return startPlan{}, fmt.Errorf("read the pair's image: %w", err)
	}
	var plan startPlan
	switch u := rec.Upgrade; {
	case rec.Ahead():
		plan = startPlan{img: local(u.Candidate), upgrade: true, from: local(rec.Image), baseline: u.MigrationBaseline}
		if u.Phase == pair.Switching {
			if plan.baseline, err = t.MigrationVersion(ctx); err != nil {
				return startPlan{}, err
			}
			reason := fmt.Sprintf("the candidate's node is starting (migrations applied so far: %d)", plan.baseline)
			if _, err := t.AdvanceUpgrade(ctx, u.Candidate.Digest, pair.Switching, pair.Starting, reason, plan.baseline); err != nil {
				return startPlan{}, err
			}
		}
	case rec.Exists:
		plan = startPlan{img: local(rec.Image)}
	default:
		if _, err := t.RecordImage(ctx, warm); err != nil {
			return startPlan{}, err
		}
		plan = startPlan{img: warm}
	}
	if plan.img.Digest != warm.Digest {
		if err := pull(ctx, plan.img); err != nil {
			return startPlan{}, err
		}
	}
	return plan, nil
}

// prepared launches the plan, or looks at the record again shortly.
func (r *running) prepared(ev startPrepared) phase {
	d := r.d
	if ev.err != nil {
		d.host.Log.Warn("cannot decide the image to start; trying again", zap.Duration("in", prepareRetry), zap.Error(ev.err))
		d.after(prepareRetry, prepareDue{r.gen})
		return r
	}
	r.plan, r.recorded = ev.plan, false
	d.img = ev.plan.img
	d.o.Observer.SetImage(d.img.Repository, d.img.Tag, d.img.Digest)
	if ev.plan.upgrade {
		bound := d.host.Config.Image.ReadyTimeout
		d.host.Log.Info("upgrade: starting the candidate's node", zap.String("candidate", d.img.String()),
			zap.String("from", ev.plan.from.String()), zap.Duration("ready_within", bound))
		r.upgradeTimer = d.after(bound, upgradeDeadline{r.gen})
	}
	return r.launch()
}

// launch creates this term's supervisor for d.img and runs the node under it.
func (r *running) launch() phase {
	d := r.d
	d.setRole(state.Starting, "starting the node")
	gen := r.gen
	node, err := d.o.NewNode(d.img, NodeHooks{Render: d.render, BeforeStart: d.beforeStart,
		OnStatus: func(s container.Status) { d.post(nodeChanged{gen: gen, status: s}) }})
	if err != nil {
		return d.enterStopping(stop{role: state.Stopping, why: "the node cannot be created", term: r.term, err: err, then: d.exit})
	}
	r.node, r.exited = node, false
	ctx, cancel := context.WithCancel(r.term.Context())
	r.stop = cancel
	go func() { d.post(nodeExited{gen: gen, err: node.Run(ctx)}) }()
	return r
}

// nodeUp is the node's first ready of a start: its image is the pair's now (for an upgrade: the upgrade is done).
func (r *running) nodeUp() {
	d := r.d
	r.recorded = true
	if r.upgradeTimer != nil {
		r.upgradeTimer.Stop()
	}
	img, upgrade := r.plan.img, r.plan.upgrade
	if upgrade {
		d.host.Log.Info("upgrade done: the candidate's node is ready", zap.String("image", img.String()))
	}
	d.write("recording the image the node runs", func(ctx context.Context, t Takeover) error {
		_, err := t.RecordImage(ctx, img)
		return err
	})
	d.autoUpgrade() // a new active looks for a newer release at once, not an image.poll_interval later
}

// judge is the upgrade's bound passing with the candidate's node not ready, once that node is stopped (so it can
// migrate no further): roll back if it applied no migration, else keep the candidate (there is no way back) and
// say so. The start that follows reads the verdict from the record.
func (r *running) judge() {
	d, gen, plan, t := r.d, r.gen, r.plan, r.d.takeover
	bound := d.host.Config.Image.ReadyTimeout
	d.spawn(func(ctx context.Context) event {
		v, err := t.MigrationVersion(ctx)
		if err != nil {
			return upgradeJudged{gen: gen, err: err}
		}
		if v == plan.baseline {
			reason := fmt.Sprintf("the node on %s was not ready within image.ready_timeout (%s) and applied no migration: "+
				"back on %s", plan.img.Tag, bound, plan.from.String())
			_, err = t.AdvanceUpgrade(ctx, plan.img.Digest, pair.Starting, pair.RolledBack, reason, 0)
			return upgradeJudged{gen: gen, err: err}
		}
		reason := fmt.Sprintf("the node on %s was not ready within image.ready_timeout (%s), but it migrated the database "+
			"(%d → %d): past the point of no return, the pair stays on %s; look at the node's log", plan.img.Tag, bound,
			plan.baseline, v, plan.img.Tag)
		if _, err = t.AdvanceUpgrade(ctx, plan.img.Digest, pair.Starting, pair.Failed, reason, 0); err == nil {
			_, err = t.RecordImage(ctx, plan.img)
		}
		return upgradeJudged{gen: gen, migrated: true, err: err}
	})
}

// judged acts on the verdict: the next start runs what the record now says (the pair's image after a roll-back,
// the candidate past the point of no return).
func (r *running) judged(ev upgradeJudged) phase {
	d := r.d
	switch {
	case ev.err != nil:
		d.host.Log.Warn("upgrade: cannot judge the candidate's node; trying again", zap.Duration("in", prepareRetry), zap.Error(ev.err))
		r.upgradeTimer = d.after(prepareRetry, upgradeDeadline{r.gen})
		return r
	case ev.migrated:
		d.host.Log.Error("upgrade failed past the point of no return: the candidate's node migrated the database and was "+
			"not ready in time; it starts again", zap.String("image", r.plan.img.String()))
	default:
		d.host.Log.Warn("upgrade rolled back: the candidate's node was not ready in time", zap.String("candidate", r.plan.img.String()),
			zap.String("back_on", r.plan.from.String()))
	}
	r.prepare()
	return r
}

// relaunchNode stops this term's node; once it is stopped, the start is planned again from the record (an
// upgrade without leader election, a roll-back).
func (r *running) relaunchNode() {
	if r.node == nil || r.relaunch {
		return
	}
	r.relaunch = true
	r.d.setRole(state.Starting, "stopping the node to start it on another image")
	r.stop()
}

// relaunched follows the node's stop for relaunchNode: judge an upgrade's candidate that was not ready in time, or
// start again from the record.
func (r *running) relaunched(err error) phase {
	r.relaunch, r.node, r.exited = false, nil, true
	if err != nil && !errors.Is(err, context.Canceled) {
		return r.d.enterStopping(stop{role: state.Stopping, why: "the node could not be stopped to change its image",
			term: r.term, exited: true, err: err, then: r.d.exit})
	}
	if r.judging {
		r.judge()
		return r
	}
	r.prepare()
	return r
}

// activePair is the active's part of an upgrade: hand a validated candidate over with one planned switchover
// (with leader election), validate and switch itself (without), and ask for the pinned tag's upgrade.
func (r *running) activePair(rec pair.Record) phase {
	d := r.d
	if r.node == nil || r.relaunch || !r.recorded {
		return r // not started, changing image, or not up yet
	}
	u := rec.Upgrade
	switch {
	case d.o.Election != nil && u.Phase == pair.Validated && !r.switching:
		r.switching = true
		t, gen := d.takeover, r.gen
		d.spawn(func(ctx context.Context) event {
			moved, err := t.AdvanceUpgrade(ctx, u.Candidate.Digest, pair.Validated, pair.Switching,
				"the active stopped its node: the standby starts the candidate", 0)
			return switchAdvanced{gen: gen, moved: moved, err: err}
		})
	case d.o.Election == nil && d.shouldValidate(u):
		d.validateCandidate(u.Candidate)
	case d.o.Election == nil && rec.Ahead() && r.plan.img.Digest != u.Candidate.Digest:
		r.relaunchNode()
	}
	d.askPinned(rec)
	return r
}

// switched hands the node over for a planned switchover.
func (r *running) switched(ev switchAdvanced) phase {
	r.switching = false
	if ev.err != nil || !ev.moved {
		if ev.err != nil {
			r.d.host.Log.Warn("upgrade: cannot start the switchover; trying at the next read", zap.Error(ev.err))
		}
		return r
	}
	r.d.host.Log.Info("upgrade: planned switchover: stopping the node and stepping down")
	return r.stopFor(state.Stopping, "upgrade: handing the node to the standby, which starts the new image", nil, r.d.holdThenWarm)
}
