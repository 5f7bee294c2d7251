package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/bootstrap"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/leader"
)

// warmRetryMax bounds the backoff between failed warm-ups (image, secrets).
const warmRetryMax = 30 * time.Second

// runStandby is the standby state: get warm (image resolved and pulled, secrets fetched and checked, nothing
// written), sit out a stepdown's hold, then campaign for the lock. It returns the term once the lock is held, or
// an error when ctx ends or warming up hits a failure that retrying cannot fix.
func (d *Daemon) runStandby(ctx context.Context) (Term, error) {
	d.setRole(RoleStandby, "warming up: image and secrets")
	if err := d.warmUp(ctx); err != nil {
		return nil, err
	}
	if d.election == nil {
		return foreverTerm(ctx), nil
	}
	if err := d.ensureElection(); err != nil {
		return nil, err
	}
	d.ready()
	if err := d.sitOutHold(ctx); err != nil {
		return nil, err
	}
	d.setRole(RoleStandby, "campaigning for the lock")
	type result struct {
		term Term
		err  error
	}
	acquired := make(chan result, 1)
	campaign, stopCampaign := context.WithCancel(ctx)
	defer stopCampaign()
	elector := d.currentElector()
	go func() {
		t, err := elector.Acquire(campaign)
		acquired <- result{t, err}
	}()
	tick := time.NewTicker(d.tick)
	defer tick.Stop()
	rotate := d.rotationTicker()
	defer rotate.Stop()
	rotation := make(chan rotationCheck, 1)
	checking := false // a rotation check is under way
	report := time.NewTicker(healthReportEvery)
	defer report.Stop()
	d.reportHealth(ctx)
	for {
		select {
		case <-report.C:
			d.reportHealth(ctx)
		case <-rotate.C:
			if !checking {
				checking = true
				go func() { rotation <- d.checkRotation(ctx) }()
			}
		case rc := <-rotation:
			checking = false
			if len(rc.changed) == 0 {
				continue
			}
			d.host.Log.Info("secrets rotated: the standby holds the new values", zap.Strings("secrets", rc.changed))
			d.mu.Lock()
			d.secrets = rc.fresh
			d.mu.Unlock()
			if slices.Contains(rc.changed, "database_password") {
				// The campaign logs in with the old password: start it again with the new one.
				stopCampaign()
				if r := <-acquired; r.term != nil {
					d.release(ctx, r.term)
				}
				return nil, errRecampaign
			}
		case r := <-acquired:
			if errors.Is(r.err, leader.ErrProxied) {
				// A transaction pooler between us and the database: the lock would not be session-held.
				return nil, &config.FieldError{Field: "node.database.host", Value: d.host.Config.Node.Database.Host,
					Err: fmt.Errorf("%w: %v", config.ErrInvalid, r.err)}
			}
			if r.err != nil {
				return nil, r.err
			}
			d.mu.Lock()
			peer := d.lastPeer
			d.lastPeer = ""
			d.mu.Unlock()
			if peer != "" {
				d.host.Log.Info("failover: taking over the node", zap.String("from", peer))
				d.observer.RecordFailover()
			}
			return r.term, nil
		case <-tick.C:
			d.beat()
			d.refreshHolder(ctx)
		case r := <-d.requests:
			r.reply <- d.refuse(r.kind)
		}
	}
}

// errRecampaign sends the daemon back to the start of standby (a rotated database password).
var errRecampaign = errors.New("campaign again")

// warmUp retries what a start needs until it succeeds; a terminal failure (configuration, access, a secret that
// breaks the node's rules) ends the daemon.
func (d *Daemon) warmUp(ctx context.Context) error {
	delay := time.Second
	tick := time.NewTicker(d.tick)
	defer tick.Stop()
	for {
		img, secrets, err := d.warm(ctx)
		if err == nil {
			d.mu.Lock()
			d.img, d.secrets = img, secrets
			d.status.Node.Image, d.status.Node.Digest = img.String(), img.Digest
			d.mu.Unlock()
			d.observer.SetImage(img.Repository, img.Tag, img.Digest)
			d.setProblem(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if terminal(err) {
			d.setProblem(err)
			return err
		}
		d.setProblem(err)
		d.host.Log.Warn("warming up failed; retrying", zap.Duration("in", delay), zap.Error(err))
		retry := time.After(delay)
		delay = min(2*delay, warmRetryMax)
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-retry:
				break wait
			case <-tick.C:
				d.beat()
			case r := <-d.requests:
				r.reply <- d.refuse(r.kind)
			}
		}
	}
}

// sitOutHold keeps a host that stepped down out of the election for leader.stepdown_hold.
func (d *Daemon) sitOutHold(ctx context.Context) error {
	d.mu.Lock()
	until := d.holdUntil
	d.mu.Unlock()
	if time.Until(until) <= 0 {
		return nil
	}
	d.setRole(RoleStandby, "stepped down: out of the election until "+until.Format(time.RFC3339))
	tick := time.NewTicker(d.tick)
	defer tick.Stop()
	hold := time.NewTimer(time.Until(until))
	defer hold.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hold.C:
			return nil
		case <-tick.C:
			d.beat()
			d.refreshHolder(ctx)
		case r := <-d.requests:
			r.reply <- d.refuse(r.kind)
		}
	}
}

// refuse answers a command this state cannot carry out.
func (d *Daemon) refuse(kind string) error {
	holder := d.Status().Lock.Holder
	if holder == "" {
		holder = "no host"
	}
	return fmt.Errorf("this host is %s (%s holds the lock): %s applies to the active host", d.Status().Role, holder, kind)
}

// refreshHolder records who holds the lock, for status and to count a failover. It runs every tick, so that a peer
// that held the lock only briefly is still seen (a failover from it is then counted); each lookup is a short
// connection of its own. It is bounded and never fatal.
func (d *Daemon) refreshHolder(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, d.tick)
	defer cancel()
	h, err := d.currentElector().Holder(ctx)
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status.Lock.Held = h.Held && h.InstanceID == d.host.Identity.InstanceID
	d.status.Lock.Holder = ""
	if h.Held {
		d.status.Lock.Holder = h.ApplicationName
	}
	if h.Held && h.InstanceID != d.host.Identity.InstanceID {
		d.lastPeer = h.ApplicationName
	}
}

// terminal reports a failure that restarting the agent cannot fix: its exit code is 2 or 5.
func terminal(err error) bool {
	var coded interface{ ExitCode() int }
	return errors.As(err, &coded) && coded.ExitCode() != 1
}

// foreverTerm is the term of a host without leader election: it ends only with ctx.
func foreverTerm(ctx context.Context) Term { return &alwaysTerm{ctx: ctx, at: time.Now()} }

type alwaysTerm struct {
	ctx context.Context
	at  time.Time
}

func (t *alwaysTerm) Context() context.Context      { return t.ctx }
func (t *alwaysTerm) Done() <-chan struct{}         { return t.ctx.Done() }
func (t *alwaysTerm) Err() error                    { return t.ctx.Err() }
func (t *alwaysTerm) AcquiredAt() time.Time         { return t.at }
func (t *alwaysTerm) Release(context.Context) error { return nil }

// Warm is the production warm-up: resolve the image, pull it, fetch and check the secrets.
func (h *Host) Warm(engine container.Engine) func(ctx context.Context) (container.Image, bootstrap.NodeSecrets, error) {
	return func(ctx context.Context) (container.Image, bootstrap.NodeSecrets, error) {
		img, err := h.ResolveImage(ctx)
		if err != nil {
			return container.Image{}, bootstrap.NodeSecrets{}, err
		}
		if err := container.EnsureImage(ctx, engine, img.Ref(), container.DefaultPullInactivity, container.DefaultPullTimeout, h.Log); err != nil {
			return container.Image{}, bootstrap.NodeSecrets{}, err
		}
		s, err := h.FetchSecrets(ctx)
		return img, s, err
	}
}
