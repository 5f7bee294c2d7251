package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/state"
)

const (
	// upgradeWaitPoll is how often `upgrade --wait` reads the pair's record for the outcome.
	upgradeWaitPoll = 500 * time.Millisecond
	// switchHurry is how long a standby that validated a candidate tries for the lock every leader.HurryInterval:
	// the active hands over within a read of the record (a tick) and a stop of its node.
	switchHurry = 30 * time.Second
	// rewarmRetry paces a standby's tries to warm up on the pair's moved image after one failed, and a validation
	// done again when its verdict never reached the record.
	rewarmRetry = 30 * time.Second
)

// upgrades is the loop's view of the pair's image (agent/pair) and the upgrade work under way on this host. Every
// host reads the record every tick; each acts on the phases that are its to move:
//
//   - the standby (the active itself without leader election) validates a requested candidate;
//   - the active hands a validated candidate over with one planned switchover (stepdown), and asks for upgrades
//     (a changed pinned image.tag, the auto policy);
//   - whichever host starts the node next runs the candidate while one is switching, and judges it: ready → done,
//     not ready within image.ready_timeout → rolled back (or failed, once it migrated: see agent/pair);
//   - a standby warms up again when the pair's image moved.
type upgrades struct {
	rec        pair.Record
	readErr    string
	reading    bool
	validating string // the digest of the candidate being validated here
	// validated is the candidate this host gave its verdict on last, at validatedAt: not validated again while the
	// verdict is being written (a read before it lands still says requested), only if it never landed.
	validated   string
	validatedAt time.Time
	rewarming   bool
	// rewarmFailed is when warming up on the pair's moved image last failed (retried after rewarmRetry).
	rewarmFailed time.Time
	pinAsked     string // the pinned tag this process asked an upgrade to (once)
	autoBusy     bool
	seen         string // phase and candidate last told to the observer
}

// Events of the pair's record and its upgrades.
type (
	pairRead struct {
		rec pair.Record
		err error
		own bool // the result of readPair (not a record another call returned)
	}
	pairWritten struct {
		what string
		err  error
	}
	candidateChecked struct {
		cand image.Image
		err  error
	}
	rewarmed struct {
		img image.Image
		err error
	}
	autoDue struct{}
)

// readPair reads the pair's record off the loop, unless a read is under way or there is no database yet.
func (d *Daemon) readPair() {
	t := d.takeover
	if t == nil || d.up.reading {
		return
	}
	d.up.reading = true
	d.spawn(func(ctx context.Context) event {
		rec, err := t.ReadPair(ctx)
		return pairRead{rec: rec, err: err, own: true}
	})
}

// tookPair keeps a record read (or why it could not be) for the status, and tells the observer of a new phase.
func (d *Daemon) tookPair(ev pairRead) {
	if ev.own {
		d.up.reading = false
	}
	if ev.err != nil {
		d.up.readErr = ev.err.Error()
		return
	}
	d.up.rec, d.up.readErr = ev.rec, ""
	u := ev.rec.Upgrade
	if seen := string(u.Phase) + " " + u.Candidate.String(); seen != d.up.seen {
		d.up.seen = seen
		d.o.Observer.SetUpgrade(string(u.Phase), u.Candidate.Tag)
		if u.Phase != "" {
			d.host.Log.Info("upgrade", zap.String("phase", string(u.Phase)), zap.String("candidate", u.Candidate.String()),
				zap.String("reason", u.Reason), zap.String("by", u.By))
		}
	}
}

// pairWritten logs what a write of the record did, and reads the record again.
func (d *Daemon) pairWritten(ev pairWritten) {
	if ev.err != nil {
		d.host.Log.Warn("the pair's record: "+ev.what+" failed", zap.Error(ev.err))
		return
	}
	d.readPair() // the states act on the record as it is now, without waiting for the next tick
}

// write runs a write of the record off the loop; the result comes back as pairWritten.
func (d *Daemon) write(what string, fn func(ctx context.Context, t Takeover) error) {
	t := d.takeover
	if t == nil {
		return
	}
	d.spawn(func(ctx context.Context) event {
		return pairWritten{what: what, err: fn(ctx, t)}
	})
}

// advance moves the upgrade to cand from one phase to the next, off the loop.
func (d *Daemon) advance(cand image.Image, from, to pair.Phase, reason string) {
	d.write("moving the upgrade to "+string(to), func(ctx context.Context, t Takeover) error {
		_, err := t.AdvanceUpgrade(ctx, cand.Digest, from, to, reason, 0)
		return err
	})
}

// standbyPair is the standby's part: validate a requested candidate, warm up again on a moved pair image.
func (d *Daemon) standbyPair(rec pair.Record) {
	if u := rec.Upgrade; d.shouldValidate(u) {
		d.validateCandidate(u.Candidate)
	}
	if rec.Exists && !rec.Ahead() && rec.Image.Digest != d.img.Digest && !d.up.rewarming &&
		d.clock.Since(d.up.rewarmFailed) >= rewarmRetry {
		d.up.rewarming = true
		d.host.Log.Info("the pair's image moved: warming up on it", zap.String("image", rec.Image.String()))
		s := d.secrets
		d.spawn(func(ctx context.Context) event {
			img, err := d.o.Warm(ctx, s, rec)
			return rewarmed{img: img, err: err}
		})
	}
}

// shouldValidate reports whether u is a requested candidate this host should validate now.
func (d *Daemon) shouldValidate(u pair.Upgrade) bool {
	return u.Phase == pair.Requested && d.up.validating == "" &&
		(d.up.validated != u.Candidate.Digest || d.clock.Since(d.up.validatedAt) >= rewarmRetry)
}

// validateCandidate pulls cand and has its node validate the files a start would write, off the loop.
func (d *Daemon) validateCandidate(cand image.Image) {
	d.up.validating = cand.Digest
	d.host.Log.Info("upgrade: pulling and validating the candidate", zap.String("candidate", cand.String()))
	s := d.secrets
	d.spawn(func(ctx context.Context) event {
		return candidateChecked{cand: cand, err: d.o.Validate(ctx, cand, s)}
	})
}

// tookCandidate writes the validation's verdict: validated (without leader election: switching at once, this host
// restarts its own node on it), or refused with the node's reason.
func (d *Daemon) tookCandidate(ev candidateChecked) {
	d.up.validating, d.up.validated, d.up.validatedAt = "", ev.cand.Digest, d.clock.Now()
	if ev.err != nil {
		d.host.Log.Warn("upgrade refused: the candidate does not take this configuration", zap.String("candidate", ev.cand.String()),
			zap.Error(ev.err))
		d.advance(ev.cand, pair.Requested, pair.Refused, "validation failed on "+d.host.Identity.InstanceID+": "+ev.err.Error())
		return
	}
	if d.o.Election == nil {
		d.advance(ev.cand, pair.Requested, pair.Switching, "validated: the node restarts on it")
		return
	}
	d.advance(ev.cand, pair.Requested, pair.Validated, "validated by the standby: the active hands over")
	// The active stops its node at its next read of the record: take the lock as soon as it lets go of it.
	d.elector.Hurry(switchHurry)
}

// tookRewarm takes the image a standby warmed up on again.
func (d *Daemon) tookRewarm(ev rewarmed) {
	d.up.rewarming = false
	if d.role != state.Standby {
		return // this host took the lock meanwhile: its start reads the record itself
	}
	if ev.err != nil {
		d.up.rewarmFailed = d.clock.Now()
		d.host.Log.Warn("warming up on the pair's image failed; trying again", zap.Duration("in", rewarmRetry), zap.Error(ev.err))
		return
	}
	d.img = ev.img
	d.o.Observer.SetImage(ev.img.Repository, ev.img.Tag, ev.img.Digest)
}

// askPinned asks for the upgrade a changed pinned image.tag means, once per process: the active does, once its
// node runs the pair's image.
func (d *Daemon) askPinned(rec pair.Record) {
	tag := d.host.Config.Image.Tag
	if tag == "" || !rec.Exists || rec.Image.Tag == tag || rec.Upgrade.Phase.InProgress() || d.up.pinAsked == tag {
		return
	}
	d.up.pinAsked = tag
	if err := pair.CheckDowngrade(rec.Highest, image.Image{Tag: tag}); err != nil {
		d.host.Log.Warn("image.tag pins an older release than the pair's: not asked for; change image.tag, or downgrade "+
			"on purpose with `cl-agent upgrade --allow-downgrade`", zap.Error(err))
		return
	}
	d.host.Log.Info("image.tag differs from the pair's image: asking for the upgrade", zap.String("pinned", tag),
		zap.String("pair", rec.Image.String()))
	d.write("asking for the upgrade to the pinned image.tag "+tag, func(ctx context.Context, t Takeover) error {
		target, err := d.o.Resolve(ctx, tag)
		if err == nil {
			_, err = t.RequestUpgrade(ctx, target, false)
		}
		return err
	})
}

// scheduleAuto arms the next look for a newer release (image.upgrade: auto).
func (d *Daemon) scheduleAuto() {
	if c := d.host.Config.Image; c.Upgrade == config.UpgradeAuto {
		d.after(c.PollInterval, autoDue{})
	}
}

// autoUpgrade is the auto policy's poll, every image.poll_interval and when a node of this host first becomes
// ready: the active, inside the window, asks for the newest stable release when it is newer than the pair's, unless
// that very candidate was refused or rolled back before.
func (d *Daemon) autoUpgrade() {
	c := d.host.Config.Image
	rec := d.up.rec
	switch {
	case c.Upgrade != config.UpgradeAuto || d.role != state.Active || d.up.autoBusy || !rec.Exists || rec.Upgrade.Phase.InProgress():
		return
	case !c.UpgradeWindow.IsZero() && !c.UpgradeWindow.Contains(d.clock.Now()):
		d.host.Log.Info("auto upgrade: outside image.upgrade_window; looking again later", zap.Stringer("window", c.UpgradeWindow),
			zap.Duration("poll_interval", c.PollInterval))
		return
	}
	d.up.autoBusy = true
	t := d.takeover
	d.spawn(func(ctx context.Context) event {
		if err := d.standbyToValidate(ctx, t); err != nil {
			return autoLooked{err: err}
		}
		target, err := d.o.Resolve(ctx, "")
		switch {
		case err != nil:
			return autoLooked{err: err}
		case !pair.Newer(target.Tag, rec.Image.Tag):
			return autoLooked{}
		case rec.Upgrade.Candidate.Digest == target.Digest && rec.Upgrade.Phase != pair.Done:
			return autoLooked{note: "the newest release " + target.Tag + " was " + string(rec.Upgrade.Phase) + " before: not asked again"}
		}
		_, err = t.RequestUpgrade(ctx, target, false)
		return autoLooked{asked: target, err: err}
	})
}

// autoLooked is the result of one auto poll.
type autoLooked struct {
	asked image.Image
	note  string
	err   error
}

func (d *Daemon) tookAuto(ev autoLooked) {
	d.up.autoBusy = false
	switch {
	case ev.err != nil:
		d.host.Log.Warn("auto upgrade: looking for a newer release failed", zap.Error(ev.err))
	case ev.asked.Digest != "":
		d.host.Log.Info("auto upgrade: a newer stable release is out: upgrade requested", zap.String("candidate", ev.asked.String()))
		d.readPair()
	case ev.note != "":
		d.host.Log.Info("auto upgrade: " + ev.note)
	}
}

// takeoverNow is the database side as published (for work off the loop).
func (d *Daemon) takeoverNow() Takeover {
	d.pub.mu.Lock()
	defer d.pub.mu.Unlock()
	return d.pub.takeover
}

// Upgrade implements control.Handler: resolve the target, ask for the upgrade in the pair's record, and with Wait,
// follow it to its outcome. Any host may be asked; the hosts do the rest through the record.
func (d *Daemon) Upgrade(ctx context.Context, req control.UpgradeRequest) (string, error) {
	t := d.takeoverNow()
	if t == nil {
		return "", errors.New("this host is not connected to the node's database yet (warming up): try again shortly")
	}
	if pin := d.host.Config.Image.Tag; pin != "" && req.To != "" && req.To != pin {
		// The hosts would warm up on the pinned tag again at their next start: change the pin instead.
		return "", exitcode.New(exitcode.Config, fmt.Errorf("image.tag pins %s: set image.tag to %s and restart the hosts "+
			"(the active asks for the upgrade), or leave image.tag empty to upgrade with --to", pin, req.To))
	}
	if err := d.standbyToValidate(ctx, t); err != nil {
		return "", err
	}
	target, err := d.o.Resolve(ctx, req.To)
	if err != nil {
		return "", fmt.Errorf("resolve the upgrade's target: %w", err)
	}
	rec, err := t.RequestUpgrade(ctx, target, req.AllowDowngrade)
	if err != nil {
		return "", err
	}
	d.post(pairRead{rec: rec})
	d.host.Log.Info("upgrade requested", zap.String("from", rec.Image.String()), zap.String("to", target.String()),
		zap.Bool("allow_downgrade", req.AllowDowngrade))
	if !req.Wait {
		return fmt.Sprintf("upgrade from %s to %s requested: the standby validates it, then the pair switches over "+
			"(follow it with `cl-agent status`)", rec.Image.Tag, target.String()), nil
	}
	return d.waitUpgrade(ctx, t, target)
}

// standbyToValidate refuses an upgrade asked of the active of a pair whose standby is not healthy and reporting:
// nobody would validate the candidate or take the node over, and the request would wait for ever. Asked of the
// standby (it validates), or of a host without leader election, it lets the request through.
func (d *Daemon) standbyToValidate(ctx context.Context, t Takeover) error {
	if d.o.Election == nil || d.Status().Role == string(state.Standby) {
		return nil
	}
	ready, why, err := t.PeerReady(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("cannot tell whether the standby is healthy: %w", err)
	case !ready:
		return fmt.Errorf("no standby to validate the candidate and take the node over (%s): bring the standby up first", why)
	}
	return nil
}

// waitUpgrade reads the record until the upgrade to target has an outcome.
func (d *Daemon) waitUpgrade(ctx context.Context, t Takeover, target image.Image) (string, error) {
	for {
		rec, err := t.ReadPair(ctx)
		u := rec.Upgrade
		switch {
		case err != nil:
			d.host.Log.Debug("upgrade --wait: reading the pair's record failed; trying again", zap.Error(err))
		case u.Candidate.Digest != target.Digest:
			return "", errors.New("another upgrade replaced this one: to " + u.Candidate.String())
		case u.Phase == pair.Done:
			return "upgraded: the pair runs " + target.String(), nil
		case u.Phase == pair.Refused:
			return "", exitcode.New(exitcode.Config, errors.New("upgrade refused, the pair stays on "+rec.Image.String()+": "+u.Reason))
		case u.Phase == pair.RolledBack:
			return "", errors.New("upgrade rolled back, the pair runs " + rec.Image.String() + " again: " + u.Reason)
		case u.Phase == pair.Failed:
			return "", exitcode.New(exitcode.Terminal, errors.New("upgrade failed past the point of no return: "+u.Reason))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the upgrade to %s is %s: no outcome in time: %w", target.Tag, u.Phase, ctx.Err())
		case <-d.clock.After(upgradeWaitPoll):
		}
	}
}

// imageStatus is the status's view of the pair's image.
func (d *Daemon) imageStatus() control.Image {
	rec := d.up.rec
	st := control.Image{Highest: rec.Highest, Policy: d.host.Config.Image.Upgrade, ReadError: d.up.readErr}
	if rec.Exists {
		st.Pair = rec.Image.String()
	}
	if u := rec.Upgrade; u.Phase != "" {
		st.Upgrade = &control.Upgrade{Phase: string(u.Phase), Candidate: u.Candidate.String(), Reason: u.Reason, By: u.By,
			At: u.At, Finished: !u.Phase.InProgress()}
	}
	return st
}
