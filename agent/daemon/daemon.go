// Package daemon is cl-agent's main loop: one state machine that decides whether this host runs the node.
//
// The states are the roles of agent/state (standby, starting, active, fencing, stopping). Run is a short driver
// loop: it waits for the next event (a tick, an operator's request, SIGTERM, or the result of work running
// elsewhere) and hands it to the current state, which returns the state that follows. Everything that can block
// — warming up, campaigning for the lock, the node's supervisor, the takeover proof, secrets fetches, fences,
// releasing the lock — runs on a goroutine of its own and reports back with an event, so the loop is never held
// up: it beats systemd's watchdog and /healthz every tick, whatever the node or the engine is doing.
//
// The loop is the only writer of the daemon's state (role, node state, problems, the secrets held). Readers — the
// control socket, the health endpoints, the supervisor's render — see a snapshot published under a mutex after
// every event.
//
// The image a start runs is the pair's, as the shared database records it (agent/pair): every start reads the
// record first (startplan.go), and the upgrades that move it are phases the hosts write there and act on at every
// tick (upgrade.go).
package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cl-agent/cl-agent/agent"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/keyring"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/state"
)

// Node is the part of the container supervisor the daemon drives: one per term of leadership.
type Node interface {
	Run(ctx context.Context) error
	Restart(ctx context.Context) error
	Status() container.Status
}

// NodeHooks are what the daemon gives each term's supervisor: the files to write, the work before every start,
// and a callback for every status change (so /readyz follows the node at once, not at the next tick).
type NodeHooks struct {
	Render      func(context.Context) (*nodefiles.Rendered, error)
	BeforeStart func(context.Context) error
	OnStatus    func(container.Status)
}

// Elector is the part of the leader election the daemon uses.
type Elector interface {
	// Acquire campaigns until the lock is held; onHolder learns who holds it meanwhile (it must not block).
	Acquire(ctx context.Context, onHolder func(leader.Holder)) (Term, error)
	// Holder looks up who holds the lock now (stepdown --wait).
	Holder(ctx context.Context) (leader.Holder, error)
	// Hurry makes the campaign try for the lock often for a while: a planned switchover is coming.
	Hurry(d time.Duration)
}

// Term is one period of holding the lock.
type Term interface {
	Context() context.Context
	Done() <-chan struct{}
	Err() error
	AcquiredAt() time.Time
	Release(ctx context.Context) error
}

// Takeover is the database side of handing the node between hosts and of starting it (agent/takeover): proof that
// the previous node is gone, its stale lease, the hosts' health reports, and the node's key ring.
type Takeover interface {
	// Watch starts looking for proof that the previous active's node is gone.
	Watch(ctx context.Context) (Watch, error)
	// ExpireStaleLease ends the lease of a node known to be dead, so the next node need not wait it out.
	ExpireStaleLease(ctx context.Context) error
	// PublishHealth records this host's role and whether it could run the node.
	PublishHealth(ctx context.Context, role state.Role, healthy bool, detail string) error
	// PeerReady reports whether another host is a healthy standby that reported recently.
	PeerReady(ctx context.Context) (ready bool, why string, err error)
	// KeyRing tells whether a keystore password opens the node's key ring (agent/keyring), as the node decides.
	KeyRing(ctx context.Context, password string) (keyring.Verdict, error)
	// The pair's image and its upgrades (agent/pair): read the record, record the image this host's node runs,
	// ask for an upgrade, move one to its next phase, and read the node's highest applied migration.
	ReadPair(ctx context.Context) (pair.Record, error)
	RecordImage(ctx context.Context, img image.Image) (pair.Record, error)
	RequestUpgrade(ctx context.Context, candidate image.Image, allowDowngrade bool) (pair.Record, error)
	AdvanceUpgrade(ctx context.Context, candidateDigest string, from, to pair.Phase, reason string, baseline int64) (bool, error)
	MigrationVersion(ctx context.Context) (int64, error)
	// Close ends its connections (the daemon built a new one for a rotated password).
	Close()
}

// Watch is one wait for the previous node to be gone.
type Watch interface {
	Check(ctx context.Context) (gone bool, why string, err error)
	Close()
}

// Observer is told what the daemon does, for metrics.
type Observer interface {
	RecordFailover()
	SetImage(repository, tag, digest string)
	SetKeystoreHeld(held bool)
	SetUpgrade(phase, candidate string)
}

// Notifier tells systemd how the daemon is doing (sd_notify); tests record it.
type Notifier interface {
	Notify(state string)
}

// Options wire a Daemon. Host, Notify, NewNode, Warm, Validate, Pull and Resolve are required.
type Options struct {
	Host *agent.Host
	// Election builds the elector and takeover logging in with the database password given; it is called again
	// when that secret rotates. Nil: no leader election (leader.enabled: false).
	Election func(dbPassword secrets.Secret) (Elector, Takeover, error)
	// Database builds the database side alone, for a host without leader election (the key ring checks). Nil
	// with Election.
	Database func(dbPassword secrets.Secret) (Takeover, error)
	Notify   Notifier
	// NewNode builds the supervisor of one term: it runs img with the daemon's hooks.
	NewNode func(img image.Image, hooks NodeHooks) (Node, error)
	// Warm prepares what a start needs once the secrets are fetched and the pair's record read: the image chosen
	// (the pair's, or resolved by the first host of a pair), pulled, and the files a start would write validated.
	Warm func(ctx context.Context, s secrets.NodeSecrets, rec pair.Record) (image.Image, error)
	// Validate pulls an upgrade's candidate and has its node validate the files a start would write. Required.
	Validate func(ctx context.Context, img image.Image, s secrets.NodeSecrets) error
	// Pull makes sure an image is on this host (a start on the pair's image, when it moved since the warm-up).
	// Required.
	Pull func(ctx context.Context, img image.Image) error
	// Resolve resolves an upgrade's target afresh: a tag, or "" for the pinned tag or the newest stable release.
	// Required.
	Resolve func(ctx context.Context, tag string) (image.Image, error)
	// Fetch gets the secrets again for a restart or a rotation check. Default Host.FetchSecrets.
	Fetch func(ctx context.Context) (secrets.NodeSecrets, error)
	// Fence stops and removes this host's node container without its supervisor, within its own bound: the
	// active retries it, holding the lock, when the supervisor could not prove the node stopped. Required with
	// Election.
	Fence func(ctx context.Context) error
	// ChangeAPIPassword moves the node's API user from the held password to the rotated one (the node reads .api
	// only into an empty database). The active calls it when api_password rotates; until it succeeds the agent
	// keeps the held password, which the node still takes. Nil: a rotated API password is only held.
	ChangeAPIPassword func(ctx context.Context, held, rotated secrets.Secret) error
	// Observer records failovers and the image (metrics). Nil: nobody.
	Observer Observer
	// Checks gives the health checks' last results for the status. Nil: none.
	Checks func() []control.Check
	// Tick is the main loop's heartbeat: status refresh and the systemd watchdog. Default 1s.
	Tick time.Duration
	// Clock is the time source of every timer of the daemon. Nil: the real clock.
	Clock clockwork.Clock
}

// Daemon is the cl-agent main loop. Its fields below "loop" belong to Run's goroutine alone.
type Daemon struct {
	o      Options
	host   *agent.Host
	clock  clockwork.Clock
	events chan event // results of work off the loop
	// requests carries the operator's commands to the loop.
	requests chan request
	// stopped is closed when Run returns, so late results are dropped instead of blocking their goroutine.
	stopped chan struct{}
	pub     published

	// loop
	ctx          context.Context // Run's: cancelled by SIGTERM
	shuttingDown bool
	result       error // what Run returns once the state machine ends
	role         state.Role
	since        time.Time
	message      string
	problems     problems
	node         container.Status // this host's node as its supervisor last said
	lockHeld     bool
	holder       string // who holds the lock, as last seen ("" none)
	lastPeer     string // the last other host seen holding the lock: taking it after that is a failover
	img          image.Image
	secrets      secrets.NodeSecrets
	elector      Elector
	takeover     Takeover
	electionFor  string // the database password version the elector logs in with
	holdUntil    time.Time
	// refusedKeystore is the version of a rotated keystore password that does not open the node's key ring: it is
	// held back, and not checked again (a check costs the node's scrypt) until another version appears.
	refusedKeystore string
	readySent       bool
	up              upgrades // the pair's record as last read, and the upgrade work under way on this host
	reporting       bool     // a health report is being written
	gen             int      // the current term's number: events of an earlier term are ignored
}

// New checks the options and returns a daemon in standby.
func New(o Options) (*Daemon, error) {
	if o.Host == nil || o.Notify == nil || o.NewNode == nil || o.Warm == nil || o.Validate == nil || o.Pull == nil || o.Resolve == nil {
		return nil, errors.New("daemon: Host, Notify, NewNode, Warm, Validate, Pull and Resolve are required")
	}
	if o.Election != nil && o.Fence == nil {
		return nil, errors.New("daemon: Fence is required with Election")
	}
	if o.ChangeAPIPassword == nil {
		o.ChangeAPIPassword = func(context.Context, secrets.Secret, secrets.Secret) error { return nil }
	}
	if o.Fetch == nil {
		o.Fetch = o.Host.FetchSecrets
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Checks == nil {
		o.Checks = func() []control.Check { return nil }
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	d := &Daemon{o: o, host: o.Host, clock: o.Clock, events: make(chan event, 16), requests: make(chan request),
		stopped: make(chan struct{}), role: state.Standby, since: o.Clock.Now()}
	d.pub.lastBeat = o.Clock.Now()
	d.publish()
	return d, nil
}

// Run drives the state machine until ctx is cancelled (SIGTERM), then stops the node, releases the lock and
// returns nil. It returns early only with a failure restarting the agent cannot fix (exit 2 or 5), or one it
// might (exit 1: the node could not be proven stopped, the election failed).
func (d *Daemon) Run(ctx context.Context) error {
	defer close(d.stopped)
	d.ctx = ctx
	tick := d.clock.NewTicker(d.o.Tick)
	defer tick.Stop()
	report := d.clock.NewTicker(healthReportEvery)
	defer report.Stop()
	rotate := d.rotationTicker()
	defer rotate.Stop()
	sigterm := ctx.Done()
	d.scheduleAuto()
	for st := d.enterWarming(); st != nil; d.publish() {
		var ev event
		select {
		case <-tick.Chan():
			d.beat()
			ev = tickEvent{}
		case <-report.Chan():
			d.reportHealth()
			continue
		case <-rotate.Chan():
			ev = rotateEvent{}
		case ev = <-d.events:
		case ev = <-d.requests:
		case <-sigterm:
			sigterm, d.shuttingDown = nil, true
			ev = shutdownEvent{}
		}
		if d.common(ev) {
			continue
		}
		st = st.on(ev)
	}
	return d.result
}

// common handles the events every state treats alike; it reports whether ev is done with.
func (d *Daemon) common(ev event) bool {
	switch ev := ev.(type) {
	case holderSeen:
		d.sawHolder(leader.Holder(ev))
	case reported:
		d.reporting = false
	case pairRead:
		d.tookPair(ev)
		return false // the state acts on it too
	case pairWritten:
		d.pairWritten(ev)
	case autoDue:
		d.autoUpgrade()
		d.scheduleAuto()
	case autoLooked:
		d.tookAuto(ev)
	case candidateChecked:
		d.tookCandidate(ev)
	case rewarmed:
		d.tookRewarm(ev)
	default:
		return false
	}
	return true
}

// exit ends the state machine with err; a SIGTERM with nothing wrong is a clean stop.
func (d *Daemon) exit(err error) phase {
	d.setRole(state.Stopping, "stopped")
	if d.shuttingDown && (err == nil || errors.Is(err, context.Canceled)) {
		d.o.Notify.Notify("STOPPING=1")
		err = nil
	}
	d.result = err
	return nil
}

// spawn runs work off the loop and posts its result as an event. The work gets Run's context; what must outlive
// SIGTERM (stopping the node, releasing the lock) detaches from it itself.
func (d *Daemon) spawn(work func(ctx context.Context) event) {
	ctx := d.ctx
	go func() { d.post(work(ctx)) }()
}

// post hands an event to the loop; once Run has returned it is dropped.
func (d *Daemon) post(ev event) {
	select {
	case d.events <- ev:
	case <-d.stopped:
	}
}

// after posts ev to the loop once d has passed on the daemon's clock.
func (d *Daemon) after(dur time.Duration, ev event) clockwork.Timer {
	return d.clock.AfterFunc(dur, func() { d.post(ev) })
}

type nopObserver struct{}

func (nopObserver) RecordFailover()                 {}
func (nopObserver) SetImage(string, string, string) {}
func (nopObserver) SetKeystoreHeld(bool)            {}
func (nopObserver) SetUpgrade(string, string)       {}
