package leader

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/backoff"
	"github.com/cl-agent/cl-agent/agent/config"
)

// Defaults for the zero values of Options; the agent passes its configuration's values (same defaults).
const (
	DefaultPingInterval    = time.Second
	DefaultPingTimeout     = 800 * time.Millisecond
	DefaultFenceAfter      = 4 * time.Second
	DefaultDeadPeerTimeout = 10 * time.Second
	DefaultRetryInterval   = time.Second
	DefaultCallTimeout     = 5 * time.Second

	// maxRetryBackoff caps the wait after repeated errors while campaigning: it is added to a takeover after a
	// database outage, so it stays short.
	maxRetryBackoff = 5 * time.Second
	// appNamePrefix starts the application_name of the lock session: "cl-agent/<instance-id>".
	appNamePrefix = "cl-agent/"
	// probeNamePrefix starts the application_name of short-lived connections (Holder).
	probeNamePrefix = "cl-agent-probe/"
	// maxAppName is PostgreSQL's limit (NAMEDATALEN − 1); a longer name is cut silently, and the holder's instance
	// id with it.
	maxAppName = 63
)

// Options configure an Elector. The timing fields keep the invariant of the package doc; config.CheckTiming has
// already enforced it for the agent's configuration, and New checks the part it can see again.
type Options struct {
	// ConnConfig is the agent's own database connection (user and password from the database secret). It must
	// reach PostgreSQL directly: never through a transaction-pooling proxy (see ErrProxied). Not modified.
	ConnConfig *pgx.ConnConfig
	// Key is the advisory lock key (LockKey). Required; never config.NodeLockID1x.
	Key int64
	// InstanceID names this host in application_name ("cl-agent/<instance-id>"), which is how Holder tells hosts
	// apart. Required; at most 48 bytes (application_name is cut at 63).
	InstanceID string
	// PingInterval is how often a Term proves its lock. Default 1s.
	PingInterval time.Duration
	// PingTimeout is the answer time of a healthy ping; a later one is logged as late but still counts, anchored
	// at its start. Default 800ms. At most PingInterval.
	PingTimeout time.Duration
	// FenceAfter ends a Term (ErrTrustExpired) when no ping started within the last FenceAfter has proven the
	// lock. Default 4s. At least 2 × PingInterval + PingTimeout, so one lost ping never ends a Term.
	FenceAfter time.Duration
	// DeadPeerTimeout bounds how long the server keeps the session of a host it cannot reach, and the agent a
	// server it cannot reach (TCP keepalives and TCP_USER_TIMEOUT on both ends). Default 10s. At least FenceAfter,
	// so the server never frees the lock while its holder still trusts it.
	DeadPeerTimeout time.Duration
	// RetryInterval is the pause between lock attempts while another host holds the key (backoff.Jitter: ±20%),
	// and the first step of the backoff after errors (agent/backoff: doubling to max(5s, RetryInterval), each
	// delay jittered into [d/2, d)). Default 1s.
	RetryInterval time.Duration
	// CallTimeout bounds a connect, a lock attempt, a Holder lookup and the unlock of Release. Default 5s.
	CallTimeout time.Duration
	// Logger receives the elector's log; nil: none.
	Logger *zap.Logger
	// Clock is the time source; nil: clockwork.NewRealClock(). Tests pass a clockwork.FakeClock.
	Clock clockwork.Clock

	hooks *hooks // tests only
}

// Elector campaigns for the advisory lock on behalf of one host. Acquire returns a Term per period of leadership.
// An Elector may be used from several goroutines, but a host should run one Acquire at a time.
type Elector struct {
	o         Options
	log       *zap.Logger
	clock     clockwork.Clock
	hooks     *hooks
	ka        keepalive
	lockConf  *pgx.ConnConfig
	probeConf *pgx.ConnConfig
	appName   string
	// hurryUntil (unix nanoseconds) ends a window in which a campaign retries every HurryInterval; wake cuts the
	// wait of a campaign between attempts short when the window opens (Hurry).
	hurryUntil atomic.Int64
	wake       chan struct{}
}

// HurryInterval is how often a hurried campaign tries for the lock.
const HurryInterval = 50 * time.Millisecond

// Hurry makes a campaign try for the lock every HurryInterval for the next d, instead of every RetryInterval: for a
// handover that is known to come (a planned switchover), so the standby takes the lock within HurryInterval of its
// release rather than within RetryInterval. A campaign that is waiting tries at once.
func (e *Elector) Hurry(d time.Duration) {
	e.hurryUntil.Store(e.clock.Now().Add(d).UnixNano())
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// retryWait is the wait after an attempt another session won.
func (e *Elector) retryWait() time.Duration {
	if e.clock.Now().UnixNano() < e.hurryUntil.Load() {
		return HurryInterval
	}
	return backoff.Jitter(e.o.RetryInterval)
}

// New checks o, fills in defaults and returns an Elector. It opens no connection.
func New(o Options) (*Elector, error) {
	o = withDefaults(o)
	if err := validate(o); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	e := &Elector{
		o:       o,
		log:     o.Logger,
		clock:   o.Clock,
		hooks:   o.hooks,
		ka:      keepaliveFor(o.DeadPeerTimeout),
		appName: appNamePrefix + o.InstanceID,
		wake:    make(chan struct{}, 1),
	}
	e.lockConf = sessionConfig(o.ConnConfig, e.appName, e.ka)
	e.probeConf = sessionConfig(o.ConnConfig, probeNamePrefix+o.InstanceID, e.ka)
	e.log = e.log.With(zap.String("instance", o.InstanceID), zap.Int64("lockKey", o.Key))
	return e, nil
}

func withDefaults(o Options) Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.PingInterval, DefaultPingInterval)
	def(&o.PingTimeout, DefaultPingTimeout)
	def(&o.FenceAfter, DefaultFenceAfter)
	def(&o.DeadPeerTimeout, DefaultDeadPeerTimeout)
	def(&o.RetryInterval, DefaultRetryInterval)
	def(&o.CallTimeout, DefaultCallTimeout)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.hooks == nil {
		o.hooks = &hooks{}
	}
	return o
}

func validate(o Options) error {
	switch {
	case o.ConnConfig == nil:
		return errors.New("ConnConfig is required")
	case o.InstanceID == "":
		return errors.New("InstanceID is required")
	case len(probeNamePrefix+o.InstanceID) > maxAppName:
		return fmt.Errorf("InstanceID %q is too long for application_name (%d bytes at most)", o.InstanceID, maxAppName-len(probeNamePrefix))
	case o.Key == 0:
		return errors.New("Key is required (see LockKey)")
	case o.Key == config.NodeLockID1x:
		return fmt.Errorf("Key %d is the advisory lock Chainlink 1.x nodes take themselves", o.Key)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"PingInterval", o.PingInterval}, {"PingTimeout", o.PingTimeout}, {"FenceAfter", o.FenceAfter},
		{"DeadPeerTimeout", o.DeadPeerTimeout}, {"RetryInterval", o.RetryInterval}, {"CallTimeout", o.CallTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s (%s) must be positive", d.name, d.v)
		}
	}
	switch {
	case o.PingTimeout > o.PingInterval:
		return fmt.Errorf("PingTimeout (%s) must not exceed PingInterval (%s)", o.PingTimeout, o.PingInterval)
	case o.FenceAfter < 2*o.PingInterval+o.PingTimeout:
		return fmt.Errorf("FenceAfter (%s) must be at least 2 × PingInterval (%s) + PingTimeout (%s)", o.FenceAfter, o.PingInterval, o.PingTimeout)
	case o.DeadPeerTimeout < o.FenceAfter:
		return fmt.Errorf("DeadPeerTimeout (%s) must be at least FenceAfter (%s)", o.DeadPeerTimeout, o.FenceAfter)
	}
	return nil
}

// Acquire campaigns until this host holds the lock, then returns the Term that holds it. It tries at once, then
// every RetryInterval (jittered) while another session holds the key, backing off after errors; every attempt is
// bounded by CallTimeout. It returns ctx.Err() when ctx ends first, and ErrProxied without retrying.
//
// Cancelling ctx later does not end the returned Term: the caller stops its node first and then calls Release
// (a process that exits frees the lock anyway, when the server sees its socket close).
func (e *Elector) Acquire(ctx context.Context) (*Term, error) { return e.AcquireWatching(ctx, nil) }

// AcquireWatching is Acquire that also tells onHolder who holds the lock after every attempt another session won,
// from the campaign's own session: the standby learns the holder without a connection of its own. onHolder runs on
// the campaign's goroutine and must not block.
func (e *Elector) AcquireWatching(ctx context.Context, onHolder func(Holder)) (*Term, error) {
	c := campaign{e: e, onHolder: onHolder, retry: backoff.New(e.o.RetryInterval, max(maxRetryBackoff, e.o.RetryInterval))}
	defer c.closeSession(ctx)
	for {
		t, wait, err := c.attempt(ctx)
		switch {
		case t != nil:
			return t, nil
		case errors.Is(err, ErrProxied):
			return nil, err
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		if err := e.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// sleep waits d between attempts, or less when Hurry wakes it.
func (e *Elector) sleep(ctx context.Context, d time.Duration) error {
	t := e.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
	case <-e.wake:
	}
	return nil
}

// campaign is the state of one Acquire: the standby session it keeps between attempts, the backoff, and the last
// holder it logged.
type campaign struct {
	e          *Elector
	sess       *session
	retry      *backoff.Backoff // after errors; reset by an attempt the server answered
	lastHolder string
	onHolder   func(Holder) // nil: nobody
}

// attempt makes one try. It returns the Term when the lock was taken, else how long to wait before the next try.
func (c *campaign) attempt(ctx context.Context) (*Term, time.Duration, error) {
	e := c.e
	reused := c.sess != nil
	if !reused {
		s, err := e.dial(ctx)
		if err != nil {
			e.log.Warn("leader: cannot open the lock session", zap.Error(err))
			return nil, c.retry.Next(), err
		}
		c.sess = s
	}
	start := e.clock.Now() // the lock is proven at some instant after this: the anchor of the first trust window
	got, err := c.sess.tryLock(ctx, e.o.CallTimeout)
	if err != nil {
		c.closeSession(ctx)
		switch {
		case errors.Is(err, ErrProxied):
		case reused:
			// The standby session died while idle (a database restart, say): try a fresh one at once, since the
			// lock is likely free right now.
			e.log.Info("leader: the standby session is gone; reconnecting", zap.Error(err))
			return nil, 0, err
		default:
			e.log.Warn("leader: lock attempt failed", zap.Error(err))
		}
		return nil, c.retry.Next(), err
	}
	c.retry.Reset()
	if !got {
		e.hooks.denied.signal(struct{}{})
		c.logHolder(ctx)
		return nil, e.retryWait(), nil
	}
	t := newTerm(e, c.sess, start)
	c.sess = nil // the Term owns it now
	return t, 0, nil
}

// logHolder tells onHolder who holds the key, and logs it when that changes (standby's view; errors skip both).
func (c *campaign) logHolder(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.e.o.CallTimeout)
	defer cancel()
	h, err := HolderOf(ctx, c.sess.conn, c.e.o.Key)
	if err != nil {
		return
	}
	if c.onHolder != nil {
		c.onHolder(h)
	}
	if h.ApplicationName == c.lastHolder {
		return
	}
	c.lastHolder = h.ApplicationName
	c.e.log.Info("leader: standby, the lock is held elsewhere", zap.String("holder", h.ApplicationName),
		zap.String("holderAddr", h.ClientAddr), zap.Int("holderPID", h.PID))
}

func (c *campaign) closeSession(ctx context.Context) {
	if c.sess == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.e.o.CallTimeout)
	defer cancel()
	c.sess.close(cctx)
	c.sess = nil
}

// dial opens a lock session within CallTimeout.
func (e *Elector) dial(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.CallTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, e.lockConf)
	if err != nil {
		return nil, fmt.Errorf("connect the lock session (bound %s): %w", e.o.CallTimeout, err)
	}
	return &session{
		conn:    conn,
		backend: int(conn.PgConn().PID()),
		key:     e.o.Key,
		tag:     tagOf(e.o.Key),
		clock:   e.clock,
		hooks:   e.hooks,
	}, nil
}
