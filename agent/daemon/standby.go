package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/backoff"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/state"
)

// warmRetryMax bounds the backoff between failed warm-ups (image, secrets).
const warmRetryMax = 30 * time.Second

// warming is the standby getting warm: secrets fetched and checked, the pair's record read with the database
// password among them, the image it names (or, for a new pair, the one resolved) pulled and the files a start would
// write validated by its node; nothing written. A failure worth retrying is retried with backoff; one that is not
// (configuration, access, a secret that breaks the node's rules, a pinned downgrade) ends the daemon.
type warming struct {
	d     *Daemon
	retry *backoff.Backoff
}

func (d *Daemon) enterWarming() phase {
	d.setRole(state.Standby, "warming up: image and secrets")
	w := &warming{d: d, retry: backoff.New(time.Second, warmRetryMax)}
	w.start()
	return w
}

// start fetches the secrets; the rest of the warm-up follows with them (fetched).
func (w *warming) start() {
	w.d.spawn(func(ctx context.Context) event {
		s, err := w.d.o.Fetch(ctx)
		return fetched{secrets: s, err: err}
	})
}

// warmOn reads the pair's record with the database password just fetched and warms up on the pair's image (or,
// for the first host of a pair, the one it resolves).
func (w *warming) warmOn(s secrets.NodeSecrets) phase {
	d := w.d
	d.secrets = s
	if err := d.ensureElection(); err != nil {
		return d.exit(err)
	}
	t := d.takeover
	d.spawn(func(ctx context.Context) event {
		var rec pair.Record
		if t != nil {
			var err error
			if rec, err = t.ReadPair(ctx); err != nil {
				return warmed{err: fmt.Errorf("read the pair's image from the database: %w", err)}
			}
		}
		img, err := d.o.Warm(ctx, s, rec)
		return warmed{img: img, secrets: s, rec: rec, err: err}
	})
	return w
}

func (w *warming) on(ev event) phase {
	d := w.d
	switch ev := ev.(type) {
	case fetched:
		if ev.err != nil {
			return w.failed(ev.err)
		}
		return w.warmOn(ev.secrets)
	case warmed:
		if ev.err != nil {
			return w.failed(ev.err)
		}
		d.img, d.secrets = ev.img, ev.secrets
		d.tookPair(pairRead{rec: ev.rec})
		d.problems.clear(problemWarm)
		d.o.Observer.SetImage(ev.img.Repository, ev.img.Tag, ev.img.Digest)
		return d.warm()
	case warmDue:
		if !d.shuttingDown {
			w.start()
		}
	case shutdownEvent:
		return d.exit(nil) // a warm-up still running ends with Run's context
	case request:
		d.refuse(ev)
	}
	return w
}

// failed retries a failed warm-up with backoff, or ends the daemon when retrying cannot help.
func (w *warming) failed(err error) phase {
	d := w.d
	d.problems.set(problemWarm, err)
	if d.shuttingDown || exitcode.IsTerminal(err) {
		return d.exit(err)
	}
	delay := w.retry.Next()
	d.host.Log.Warn("warming up failed; retrying", zap.Duration("in", delay), zap.Error(err))
	d.after(delay, warmDue{})
	return w
}

// warm is where a warm host goes: straight to the node without leader election, else to the election (after a
// stepdown's hold).
func (d *Daemon) warm() phase {
	if err := d.ensureElection(); err != nil {
		return d.exit(err)
	}
	if d.o.Election == nil {
		return d.enterRunning(foreverTerm(d.ctx, d.clock.Now()))
	}
	d.ready()
	if d.clock.Until(d.holdUntil) > 0 {
		return d.enterHolding()
	}
	return d.enterCampaigning()
}

// holding keeps a host that stepped down out of the election for leader.stepdown_hold.
type holding struct{ d *Daemon }

func (d *Daemon) enterHolding() phase {
	d.setRole(state.Standby, "stepped down: out of the election until "+d.holdUntil.Format(time.RFC3339))
	d.after(d.clock.Until(d.holdUntil), holdOver{})
	return holding{d}
}

func (h holding) on(ev event) phase {
	switch ev := ev.(type) {
	case holdOver:
		return h.d.enterCampaigning()
	case shutdownEvent:
		return h.d.exit(nil)
	case request:
		h.d.refuse(ev)
	}
	return h
}

// campaigning is the warm standby: it campaigns for the lock, reports its health, and holds rotated secrets.
type campaigning struct {
	d        *Daemon
	cancel   context.CancelFunc
	checking bool // a rotation check is under way
	// again: the campaign was cancelled to start over with a rotated database password; exiting: for SIGTERM.
	again, exiting bool
}

func (d *Daemon) enterCampaigning() phase {
	d.setRole(state.Standby, "campaigning for the lock")
	ctx, cancel := context.WithCancel(d.ctx)
	elector := d.elector
	go func() {
		t, err := elector.Acquire(ctx, func(h leader.Holder) { d.post(holderSeen(h)) })
		d.post(acquired{term: t, err: err})
	}()
	d.reportHealth()
	d.primeKeyRing(ctx)
	return &campaigning{d: d, cancel: cancel}
}

// primeKeyRing decides the held keystore password against the node's key ring off the loop, so that the check
// before a start after a takeover finds its verdict remembered (agent/keyring: one query) instead of paying the
// node's scrypt (seconds, 256 MiB) on the takeover's critical path. It changes nothing: the check before the start
// still decides. A standby does it when it starts to campaign and after every rotation check (the active's node
// seals a new database's key ring after the standby warmed up).
func (d *Daemon) primeKeyRing(ctx context.Context) {
	t, pw := d.takeover, d.secrets.KeystorePassword
	if t == nil || pw.Empty() {
		return
	}
	go func() {
		if _, err := t.KeyRing(ctx, pw.Reveal()); err != nil && ctx.Err() == nil {
			d.host.Log.Debug("the key ring check ahead of a takeover failed; the start will check again", zap.Error(err))
		}
	}()
}

func (c *campaigning) on(ev event) phase {
	d := c.d
	switch ev := ev.(type) {
	case acquired:
		c.cancel()
		return c.acquired(ev)
	case rotateEvent:
		if !c.checking {
			c.checking = true
			d.checkRotation(nil)
		}
	case rotationChecked:
		c.checking = false
		c.rotated(rotationCheck(ev))
	case tickEvent:
		d.readPair()
	case pairRead:
		if ev.err == nil {
			d.standbyPair(ev.rec)
		}
	case shutdownEvent:
		c.exiting = true
		c.cancel()
	case request:
		d.refuse(ev)
	}
	return c
}

// acquired ends the campaign: with the lock, a failure, or after it was cancelled on purpose.
func (c *campaigning) acquired(ev acquired) phase {
	d := c.d
	switch {
	case ev.term != nil && (c.exiting || c.again):
		// The lock came just as we gave up on it: give it back before going on.
		return d.enterStopping(stop{role: state.Standby, why: "giving the lock back", term: ev.term, then: c.next})
	case ev.term != nil:
		if d.lastPeer != "" {
			d.host.Log.Info("failover: taking over the node", zap.String("from", d.lastPeer))
			d.o.Observer.RecordFailover()
			d.lastPeer = ""
		}
		return d.enterRunning(ev.term)
	case errors.Is(ev.err, leader.ErrProxied):
		// A transaction pooler between us and the database: the lock would not be session-held.
		return d.exit(&config.FieldError{Field: "node.database.host", Value: d.host.Config.Node.Database.Host,
			Err: fmt.Errorf("%w: %v", config.ErrInvalid, ev.err)})
	case c.exiting || c.again:
		return c.next(nil)
	}
	return d.exit(ev.err)
}

// next follows a campaign cancelled on purpose: exit, or campaign again with the rotated password.
func (c *campaigning) next(err error) phase {
	if c.exiting || c.d.shuttingDown || err != nil {
		return c.d.exit(err)
	}
	if err := c.d.ensureElection(); err != nil {
		return c.d.exit(err)
	}
	return c.d.enterCampaigning()
}

// rotated takes a rotation check's result on the standby: it holds the fresh values, and campaigns again when
// the database password changed (the campaign logs in with the old one).
func (c *campaigning) rotated(rc rotationCheck) {
	d := c.d
	d.tookRotation(rc)
	if len(rc.changed) == 0 {
		d.primeKeyRing(d.ctx)
		return
	}
	d.host.Log.Info("secrets rotated: the standby holds the new values", zap.Strings("secrets", rc.changed))
	d.secrets = rc.fresh
	if slices.Contains(rc.changed, databasePasswordKey) && !c.exiting {
		c.again = true
		c.cancel()
	}
}

// ensureElection builds the elector and the takeover for the database password held now, and again only when its
// version changed: every login the agent holds follows the current password (a rotated one locks a stale login
// out of every new session).
func (d *Daemon) ensureElection() error {
	pw := d.secrets.DatabasePassword
	if d.takeover != nil && d.electionFor == pw.VersionID {
		return nil
	}
	var e Elector
	var t Takeover
	var err error
	switch {
	case d.o.Election != nil:
		e, t, err = d.o.Election(pw)
	case d.o.Database != nil:
		t, err = d.o.Database(pw)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if d.takeover != nil {
		d.takeover.Close()
	}
	d.elector, d.takeover, d.electionFor = e, t, pw.VersionID
	d.publish()
	return nil
}

// foreverTerm is the term of a host without leader election: it ends only with ctx.
func foreverTerm(ctx context.Context, at time.Time) Term { return &alwaysTerm{ctx: ctx, at: at} }

type alwaysTerm struct {
	ctx context.Context
	at  time.Time
}

func (t *alwaysTerm) Context() context.Context      { return t.ctx }
func (t *alwaysTerm) Done() <-chan struct{}         { return t.ctx.Done() }
func (t *alwaysTerm) Err() error                    { return t.ctx.Err() }
func (t *alwaysTerm) AcquiredAt() time.Time         { return t.at }
func (t *alwaysTerm) Release(context.Context) error { return nil }
