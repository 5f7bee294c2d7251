package container

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/backoff"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// Supervision defaults.
const (
	DefaultReadyTimeout      = 2 * time.Minute
	DefaultReadyPoll         = 100 * time.Millisecond
	DefaultReadyRequest      = 2 * time.Second
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = time.Minute
	DefaultStableAfter       = 10 * time.Minute
	DefaultReconcileInterval = 30 * time.Second
	// shutdownMargin is the budget beyond the stop timeout for stopping and removing the node at the end.
	shutdownMargin = 30 * time.Second
)

// ErrNotRunning: Restart was called while Run is not running.
var ErrNotRunning = errors.New("the node supervisor is not running")

// Options configure a Supervisor. Config, Identity, Image, Engine and Render are required.
type Options struct {
	Engine Engine
	Logger *zap.Logger // default: none
	// Config supplies container.* (name, port, user, directories, stop timeout, log driver) and
	// node.database.sslrootcert.
	Config   *config.Config
	Identity identity.Identity
	// Image is what runs, by digest.
	Image image.Image
	// Render produces the node's files for one start. It is called before every start (and to check a
	// running container against the desired spec); the supervisor writes the files, and shreds them once
	// the node is ready or the start failed. It never sees the configuration's secret ids.
	Render func(ctx context.Context) (*nodefiles.Rendered, error)
	// BeforeStart runs before each container start, after the image is present (the leader waits out its
	// takeover guard there). An error fails the start. Nil: none.
	BeforeStart func(ctx context.Context) error
	// OnStatus is told every status change, from the supervisor's goroutine; it must not block.
	OnStatus func(Status)

	// ReadyURL is polled until it answers 200 (only 200: /health's 207 means sick). Default
	// http://127.0.0.1:<container.host_port>/readyz.
	ReadyURL string
	// ReadyTimeout bounds the wait for readiness after a start (default 2m); ReadyPoll is the interval of
	// the polls (default 100ms) and ReadyRequest bounds each (default 2s).
	ReadyTimeout, ReadyPoll, ReadyRequest time.Duration
	// BackoffInitial and BackoffMax bound the delay before a start after a failure (default 1s and 1m; it
	// doubles, jittered as agent/backoff does; BackoffMax below BackoffInitial is refused). A node that stayed
	// up StableAfter (default 10m) starts over from BackoffInitial.
	BackoffInitial, BackoffMax, StableAfter time.Duration
	// ReconcileInterval is how often the container is checked against the desired state besides on Docker
	// events (default 30s).
	ReconcileInterval time.Duration
	// PullInactivity and PullTimeout bound an image pull (defaults DefaultPullInactivity, DefaultPullTimeout).
	PullInactivity, PullTimeout time.Duration
}

// Supervisor keeps the node's container up on this host, one start at a time:
//
//	       ┌──────────── Restart ─────────────┐
//	       ▼                                  │
//	┌─► starting ──► running ──► ready ───────┤ (watch: Docker events, and a reconcile every interval)
//	│   render,      created,    /readyz 200, │
//	│   pull, write  started     files        │ node exited, container gone, replaced or changed;
//	│   files                    shredded     │ start failed or never ready (files shredded)
//	│                                         ▼
//	└──────────── after the delay ──────── backoff (1s, 2s, 4s … 1m with jitter; reset after 10m up)
//
// A running container under the node's name that carries the managed label and the desired config hash and
// image is adopted (a restart of the agent does not restart the node); any other managed container is
// replaced; a container without the label is never touched (ErrNotManaged, retried with backoff). The files
// exist only between the write before a create and the node's first 200 on /readyz, or the failure of that
// start. Engine errors while watching are logged, not acted on: a node is only restarted on evidence that it
// stopped. A broken events stream (the engine restarted) is resubscribed once the engine answers again,
// followed by a reconcile. When Run's context ends, the node is stopped (SIGTERM, SIGKILL after
// container.stop_timeout) and removed and the files shredded, whatever state it was in. A failure that
// retrying cannot fix (a configuration error, a secret that breaks the node's rules) ends Run with that error
// in StateFailed.
type Supervisor struct {
	o     Options
	log   *zap.Logger
	name  string
	owner fsutil.Owner
	http  *http.Client

	wake      chan struct{}   // buffered to 1 so that bursts of events coalesce into one check
	restartRq chan chan error // Restart's requests, served by the Run loop
	running   atomic.Bool
	done      chan struct{} // closed when Run ends

	// onFiles, when set (tests), is told when the node's files were written and shredded.
	onFiles func(written, shredded time.Time)

	started int // containers started by this Run; the Run loop's own

	mu     sync.Mutex
	status Status
}

// NewSupervisor checks the options, fills the defaults and returns a supervisor in StateStopped.
func NewSupervisor(o Options) (*Supervisor, error) {
	switch {
	case o.Engine == nil:
		return nil, errors.New("node supervisor: no Docker engine")
	case o.Config == nil:
		return nil, errors.New("node supervisor: no configuration")
	case o.Render == nil:
		return nil, errors.New("node supervisor: no Render function")
	case !o.Image.Pinned():
		return nil, fmt.Errorf("node supervisor: image %s is not pinned to a digest", o.Image)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.ReadyURL == "" {
		o.ReadyURL = "http://127.0.0.1:" + strconv.Itoa(o.Config.Container.HostPort) + "/readyz"
	}
	setDefault(&o.ReadyTimeout, DefaultReadyTimeout)
	setDefault(&o.ReadyPoll, DefaultReadyPoll)
	setDefault(&o.ReadyRequest, DefaultReadyRequest)
	setDefault(&o.BackoffInitial, DefaultBackoffInitial)
	setDefault(&o.BackoffMax, DefaultBackoffMax)
	setDefault(&o.StableAfter, DefaultStableAfter)
	if o.BackoffMax < o.BackoffInitial {
		return nil, fmt.Errorf("node supervisor: BackoffMax %s is below BackoffInitial %s", o.BackoffMax, o.BackoffInitial)
	}
	setDefault(&o.ReconcileInterval, DefaultReconcileInterval)
	setDefault(&o.PullInactivity, DefaultPullInactivity)
	setDefault(&o.PullTimeout, DefaultPullTimeout)
	name := o.Config.Container.Name
	s := &Supervisor{
		o:         o,
		log:       o.Logger.With(zap.String("container", name)),
		name:      name,
		owner:     nodefiles.Owner(o.Config.Container),
		http:      readyClient(o.ReadyRequest),
		wake:      make(chan struct{}, 1),
		restartRq: make(chan chan error),
		done:      make(chan struct{}),
		status:    Status{State: StateStopped, Container: name, Image: o.Image.String(), Digest: o.Image.Digest, Since: time.Now()},
	}
	return s, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Run keeps the node up until ctx is cancelled, then stops it (SIGTERM, killed after container.stop_timeout),
// removes it and shreds its files (with a budget of its own: ctx is cancelled by then) and returns nil, or
// the clean-up's error (the node may still run: `cl-agent fence` should follow). It returns early only for a
// failure that retrying cannot fix (the configuration, a secret that breaks the node's rules), after the same
// clean-up. Run may be called once.
func (s *Supervisor) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("node supervisor: Run called twice")
	}
	defer close(s.done)
	watchCtx, stopWatching := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.watchEvents(watchCtx) })

	err := s.loop(ctx)

	stopWatching()
	wg.Wait()
	stopTimeout := s.o.Config.Container.StopTimeout
	cleanCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout+shutdownMargin)
	defer cancel()
	if ferr := Fence(cleanCtx, s.o.Engine, s.name, s.o.Config.Container.SecretsDir, stopTimeout); ferr != nil {
		s.log.Error("stopping the node failed", zap.Error(ferr))
		err = errors.Join(err, ferr)
	} else {
		s.log.Info("node stopped and removed; files shredded")
	}
	if exitcode.IsTerminal(err) {
		s.update(func(st *Status) { st.State, st.LastError = StateFailed, err.Error() })
		return err
	}
	s.update(func(st *Status) { st.State, st.ContainerID = StateStopped, "" })
	return err // nil, or the clean-up failed and the node may still run
}

// loop alternates bringing the node up, watching it, and backing off after a failure.
func (s *Supervisor) loop(ctx context.Context) error {
	b := backoff.New(s.o.BackoffInitial, s.o.BackoffMax)
	var reply chan error // a Restart waiting for the outcome of the next start
	for ctx.Err() == nil {
		node, err := s.bringUp(ctx, reply != nil)
		if reply != nil {
			reply <- err
			reply = nil
		}
		if err == nil {
			upSince := time.Now()
			reply, err = s.watch(ctx, node)
			if reply != nil {
				continue // recreate at once: the operator asked for it
			}
			if time.Since(upSince) >= s.o.StableAfter {
				b.Reset()
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if exitcode.IsTerminal(err) {
			s.log.Error("the node cannot start until the configuration or secrets are fixed", zap.Error(err))
			return err
		}
		reply = s.backOff(ctx, b.Next(), err)
	}
	return nil
}

// backOff records the failure and waits delay; a Restart request cuts the wait short.
func (s *Supervisor) backOff(ctx context.Context, delay time.Duration, cause error) chan error {
	s.shred()
	s.log.Warn("node down; starting it again after a delay", zap.Error(cause), zap.Duration("delay", delay))
	s.update(func(st *Status) {
		st.State, st.LastError = StateBackoff, cause.Error()
		st.RetryAt = time.Now().Add(delay)
	})
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case reply := <-s.restartRq:
		return reply
	}
	return nil
}

// watch follows the running node until it stops or drifts from the desired state (returning why), ctx ends
// (nil, nil) or a Restart arrives (its reply channel, nil). Docker events wake it at once; the ticker is the
// safety net for a broken events stream. An engine that does not answer is no reason to touch the node.
func (s *Supervisor) watch(ctx context.Context, node ContainerSpec) (chan error, error) {
	tick := time.NewTicker(s.o.ReconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case reply := <-s.restartRq:
			return reply, nil
		case <-s.wake:
		case <-tick.C:
		}
		down, err := s.check(ctx, node)
		if down != nil {
			return nil, down
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("cannot check the node", zap.Error(err))
			s.update(func(st *Status) { st.LastError = err.Error() })
		}
	}
}

// check compares the container with the desired spec. down says why the node must be started again; err
// says the engine could not answer.
func (s *Supervisor) check(ctx context.Context, want ContainerSpec) (down, err error) {
	c, err := s.o.Engine.InspectContainer(ctx, s.name)
	switch {
	case errors.Is(err, ErrNotFound):
		return errors.New("the node's container is gone"), nil
	case err != nil:
		return nil, err
	case c.ID != s.Status().ContainerID:
		return fmt.Errorf("the node's container was replaced (now %.12s)", c.ID), nil
	case !c.Running:
		return exitError(c), nil
	case c.Labels[LabelConfigHash] != want.Hash || c.Image != want.Config.Image:
		return fmt.Errorf("the node's container no longer matches the desired state (image %s)", c.Image), nil
	}
	return nil, nil
}

// exitError describes a container that is not running.
func exitError(c ContainerInfo) error {
	msg := fmt.Sprintf("the node exited with code %d", c.ExitCode)
	if c.Status != "exited" {
		msg = fmt.Sprintf("the node's container is %s (exit code %d)", c.Status, c.ExitCode)
	}
	if c.OOMKilled {
		msg += " (out of memory)"
	}
	if c.Error != "" {
		msg += ": " + c.Error
	}
	return errors.New(msg)
}

// Restart renders the files again, recreates the node's container and waits until it is ready (or the
// start failed: the supervisor then backs off and retries as after any failure).
func (s *Supervisor) Restart(ctx context.Context) error {
	if !s.running.Load() {
		return ErrNotRunning
	}
	reply := make(chan error, 1)
	select {
	case s.restartRq <- reply:
	case <-s.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shred destroys the node's files; a failure is logged (the next write shreds again).
func (s *Supervisor) shred() {
	if err := nodefiles.Shred(s.o.Config.Container.SecretsDir); err != nil {
		s.log.Error("shredding the node's files failed", zap.Error(err))
	}
}
