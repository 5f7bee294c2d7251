package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/bootstrap"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/agent/leader"
)

// Role is the daemon's state. The state machine:
//
//	standby ──lock gained──▶ starting ──node ready──▶ active
//	   ▲                        │                        │
//	   │                        └──────lock lost─────────┤──▶ fencing ──node stopped──▶ standby
//	   │                                                 │
//	   └────────stepdown (lock released, hold)───────────┘
//	any state ──SIGTERM──▶ stopping ──node stopped, lock released──▶ exit 0
type Role string

const (
	RoleStandby  Role = "standby"
	RoleStarting Role = "starting"
	RoleActive   Role = "active"
	RoleFencing  Role = "fencing"
	RoleStopping Role = "stopping"
)

// Node is the part of the container supervisor the daemon drives: one per term of leadership.
type Node interface {
	Run(ctx context.Context) error
	Restart(ctx context.Context) error
	Status() container.Status
}

// NodeHooks are what the daemon gives each term's supervisor: the files to write, the wait before a start, and a
// callback for every status change (so /readyz follows the node at once, not at the next tick).
type NodeHooks struct {
	Render      func(context.Context) (*bootstrap.Rendered, error)
	BeforeStart func(context.Context) error
	OnStatus    func(container.Status)
}

// Elector is the part of the leader election the daemon uses.
type Elector interface {
	Acquire(ctx context.Context) (Term, error)
	Holder(ctx context.Context) (leader.Holder, error)
}

// Term is one period of holding the lock.
type Term interface {
	Context() context.Context
	Done() <-chan struct{}
	Err() error
	AcquiredAt() time.Time
	Release(ctx context.Context) error
}

// Takeover is the database side of handing the node between hosts (see takeover.go, peers.go): proof that the
// previous node is gone, its stale lease, and the hosts' health reports.
type Takeover interface {
	// Watch starts looking for proof that the previous active's node is gone; check reports whether it is.
	Watch(ctx context.Context) (check func(context.Context) (gone bool, why string, err error), err error)
	// ExpireStaleLease ends the lease of a node known to be dead, so the next node need not wait it out.
	ExpireStaleLease(ctx context.Context) error
	// PublishHealth records this host's role and whether it could run the node.
	PublishHealth(ctx context.Context, role string, healthy bool, detail string) error
	// PeerReady reports whether another host is a healthy standby that reported recently.
	PeerReady(ctx context.Context) (ready bool, why string, err error)
}

// Observer is told what the daemon does, for metrics.
type Observer interface {
	RecordFailover()
	SetImage(repository, tag, digest string)
}

// Notifier tells systemd how the daemon is doing (sd_notify); tests record it.
type Notifier interface {
	Notify(state string)
}

// Daemon is the cl-agent main loop: one explicit state machine, one function per state.
type Daemon struct {
	host *Host
	// election builds the elector and takeover for a database password; nil: leader.enabled is false and this
	// host is always active.
	election func(dbPassword bootstrap.Secret) (Elector, Takeover, error)
	notify   Notifier
	// newNode builds the supervisor of one term: it runs img with the daemon's hooks.
	newNode func(img container.Image, hooks NodeHooks) (Node, error)
	// warm prepares what a start needs (image resolved and pulled, secrets fetched and checked).
	warm func(ctx context.Context) (container.Image, bootstrap.NodeSecrets, error)
	// fetch gets the secrets again (restart, rotation).
	fetch func(ctx context.Context) (bootstrap.NodeSecrets, error)
	// fence stops and removes the node without its supervisor (see DaemonOptions.Fence).
	fence func(ctx context.Context) error
	// changeAPIPassword moves the node's API user to a rotated password (see DaemonOptions.ChangeAPIPassword).
	changeAPIPassword func(ctx context.Context, held, rotated bootstrap.Secret) error
	observer          Observer
	checks            func() []control.Check

	requests chan request // from the control socket, served by the state functions
	tick     time.Duration

	mu              sync.Mutex
	elector         Elector  // built by election for the password version electionVersion
	takeover        Takeover // goes with elector
	electionVersion string
	status          control.Status
	secrets         bootstrap.NodeSecrets // read by the supervisor's Render, written by the loop
	img             container.Image
	holdUntil       time.Time   // after a stepdown: stay out of the election until then
	reporting       atomic.Bool // a health report is being written
	readySent       bool
	lastBeat        time.Time
	// lastPeer is the last other host seen holding the lock while this one waited: taking the lock after that is
	// a failover.
	lastPeer string
}

// request is an operator's command, answered on reply.
type request struct {
	kind  string // "restart" | "stepdown"
	reply chan error
}

// DaemonOptions wires a Daemon. Host, Notify, NewNode and Warm are required.
type DaemonOptions struct {
	Host *Host
	// Election builds the elector and takeover logging in with the database password given; it is called again
	// when that secret rotates. Nil: no leader election (leader.enabled: false).
	Election func(dbPassword bootstrap.Secret) (Elector, Takeover, error)
	Notify   Notifier
	NewNode  func(img container.Image, hooks NodeHooks) (Node, error)
	Warm     func(ctx context.Context) (container.Image, bootstrap.NodeSecrets, error)
	// Fetch gets the secrets again for a restart or a rotation check. Default Host.FetchSecrets.
	Fetch func(ctx context.Context) (bootstrap.NodeSecrets, error)
	// Fence stops and removes this host's node container without its supervisor, within its own bound: the
	// active retries it, holding the lock, when the supervisor could not prove the node stopped. Required with
	// Election.
	Fence func(ctx context.Context) error
	// ChangeAPIPassword moves the node's API user from the held password to the rotated one (the node reads .api
	// only into an empty database). The active calls it when api_password rotates; until it succeeds the agent
	// keeps the held password, which the node still takes. Nil: a rotated API password is only held.
	ChangeAPIPassword func(ctx context.Context, held, rotated bootstrap.Secret) error
	// Observer records failovers and the image (metrics). Nil: nobody.
	Observer Observer
	// Checks gives the health checks' last results for the status. Nil: none.
	Checks func() []control.Check
	// Tick is the main loop's heartbeat: status refresh and the systemd watchdog. Default 1s.
	Tick time.Duration
}

// NewDaemon checks the options and returns a daemon in standby.
func NewDaemon(o DaemonOptions) (*Daemon, error) {
	if o.Host == nil || o.Notify == nil || o.NewNode == nil || o.Warm == nil {
		return nil, errors.New("daemon: Host, Notify, NewNode and Warm are required")
	}
	if o.Election != nil && o.Fence == nil {
		return nil, errors.New("daemon: Fence is required with Election")
	}
	if o.Fence == nil {
		o.Fence = func(context.Context) error { return errors.New("no fence configured") }
	}
	if o.ChangeAPIPassword == nil {
		o.ChangeAPIPassword = func(context.Context, bootstrap.Secret, bootstrap.Secret) error { return nil }
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
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
	d := &Daemon{
		host: o.Host, election: o.Election, notify: o.Notify, newNode: o.NewNode, warm: o.Warm, fetch: o.Fetch, fence: o.Fence,
		changeAPIPassword: o.ChangeAPIPassword, observer: o.Observer, checks: o.Checks,
		requests: make(chan request), tick: o.Tick, lastBeat: time.Now(),
	}
	d.status = control.Status{
		Role: string(RoleStandby), InstanceID: o.Host.Identity.InstanceID, Since: time.Now(),
		Lock: control.Lock{Enabled: o.Election != nil},
		Node: control.Node{Container: o.Host.Config.Container.Name, State: string(container.StateStopped)},
	}
	if o.Election != nil {
		c := o.Host.Config
		d.status.Lock.Key = leader.LockKey(c.Leader.LockKey, c.Node.Database.Name)
	}
	return d, nil
}

// Run drives the state machine until ctx is cancelled (SIGTERM), then stops the node, releases the lock and
// returns nil. It returns early only with a failure restarting cannot fix (exit 2 or 5).
func (d *Daemon) Run(ctx context.Context) error {
	for {
		term, err := d.runStandby(ctx)
		if errors.Is(err, errRecampaign) {
			continue
		}
		if err != nil {
			return d.exit(ctx, err)
		}
		if err := d.runActive(ctx, term); err != nil || ctx.Err() != nil {
			return d.exit(ctx, err)
		}
	}
}

// exit turns the end of the loop into the daemon's result: a cancelled context is a clean stop.
func (d *Daemon) exit(ctx context.Context, err error) error {
	d.setRole(RoleStopping, "stopped")
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		d.notify.Notify("STOPPING=1")
		return nil
	}
	return err
}

// setRole enters a role and tells systemd.
func (d *Daemon) setRole(r Role, message string) {
	d.mu.Lock()
	if d.status.Role != string(r) {
		d.status.Since = time.Now()
	}
	d.status.Role, d.status.Message = string(r), message
	d.mu.Unlock()
	d.host.Log.Info("role", zap.String("role", string(r)), zap.String("doing", message))
	d.notify.Notify("STATUS=" + statusLine(d.Status()))
}

func (d *Daemon) setProblem(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.status.LastError = ""
		return
	}
	d.status.LastError = err.Error()
}

// clearProblem clears the last problem if it is the one that starts with prefix.
func (d *Daemon) clearProblem(prefix string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if strings.HasPrefix(d.status.LastError, prefix) {
		d.status.LastError = ""
	}
}

// beat is the main loop's heartbeat: systemd's watchdog and /healthz look at it.
func (d *Daemon) beat() {
	d.mu.Lock()
	d.lastBeat = time.Now()
	d.mu.Unlock()
	d.notify.Notify("WATCHDOG=1\nSTATUS=" + statusLine(d.Status()))
}

// ready sends READY=1 once: on a standby once it is warm and campaigning, on the active once the node is up.
func (d *Daemon) ready() {
	d.mu.Lock()
	sent := d.readySent
	d.readySent = true
	d.mu.Unlock()
	if !sent {
		d.notify.Notify("READY=1")
	}
}

// statusLine is systemd's one-line story: role, node state, image, last problem.
func statusLine(s control.Status) string {
	line := fmt.Sprintf("%s; node %s", s.Role, s.Node.State)
	if s.Node.Image != "" {
		line += "; " + s.Node.Image
	}
	if s.Message != "" {
		line += "; " + s.Message
	}
	for _, c := range s.Checks {
		if c.Name == "node_wallet_balance" && !c.Skipped && c.Detail != "" {
			line += "; wallet " + c.Detail
		}
	}
	if s.LastError != "" {
		line += "; problem: " + s.LastError
	} else if failing := failingChecks(s.Checks); failing != "" {
		line += "; failing: " + failing
	}
	return line
}

func failingChecks(cs []control.Check) string {
	var names []string
	for _, c := range cs {
		if !c.OK && !c.Skipped {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}

// Status is the snapshot `cl-agent status` prints.
func (d *Daemon) Status() control.Status {
	d.mu.Lock()
	st := d.status
	d.mu.Unlock()
	st.Checks = d.checks()
	return st
}

// HealthState is what /healthz, /readyz and the metrics need; cheap and never blocking.
func (d *Daemon) HealthState() health.AgentState {
	d.mu.Lock()
	defer d.mu.Unlock()
	state := container.State(d.status.Node.State)
	return health.AgentState{
		Role: d.status.Role, LockEnabled: d.status.Lock.Enabled, LockHeld: d.status.Lock.Held,
		NodeUp:    state == container.StateRunning || state == container.StateReady,
		NodeReady: d.status.Node.Ready, LastBeat: d.lastBeat,
	}
}

// APICredentials is the node API login the health checks use: held in memory, never written again.
func (d *Daemon) APICredentials() (email, password string, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.secrets.APIPassword.Empty() {
		return "", "", false
	}
	return d.host.Config.Node.APIEmail, d.secrets.APIPassword.Reveal(), true
}

// SetObserver sets who is told about failovers and the image; call it before Run.
func (d *Daemon) SetObserver(o Observer) { d.observer = o }

type nopObserver struct{}

func (nopObserver) RecordFailover()                 {}
func (nopObserver) SetImage(string, string, string) {}

// ask hands a command to the state machine and waits for its answer.
func (d *Daemon) ask(ctx context.Context, kind string) error {
	r := request{kind: kind, reply: make(chan error, 1)}
	select {
	case d.requests <- r:
	case <-ctx.Done():
		return fmt.Errorf("the daemon did not take the %s request: %w", kind, ctx.Err())
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", kind, ctx.Err())
	}
}

// Restart implements control.Handler.
func (d *Daemon) Restart(ctx context.Context) error { return d.ask(ctx, "restart") }

// Stepdown implements control.Handler.
func (d *Daemon) Stepdown(ctx context.Context, wait bool) (string, error) {
	if d.election == nil {
		return "", errors.New("leader election is disabled (leader.enabled: false): there is no peer to hand over to")
	}
	if err := d.ask(ctx, "stepdown"); err != nil {
		return "", err
	}
	if !wait {
		return "stepped down: node stopped, lock released", nil
	}
	for {
		h, err := d.currentElector().Holder(ctx)
		if err == nil && h.Held && h.InstanceID != d.host.Identity.InstanceID {
			return "stepped down: " + h.ApplicationName + " holds the lock", nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("stepped down, but no other host took the lock in time: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond): // poll interval
		}
	}
}

var _ control.Handler = (*Daemon)(nil)

// ensureElection builds the elector for the database password held now, and again only when its version
// changed (a rotated password would lock a stale elector out of every new session).
func (d *Daemon) ensureElection() error {
	if d.election == nil {
		return nil
	}
	d.mu.Lock()
	pw, have, built := d.secrets.DatabasePassword, d.electionVersion, d.elector != nil
	d.mu.Unlock()
	if built && have == pw.VersionID {
		return nil
	}
	e, t, err := d.election(pw)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.elector, d.takeover, d.electionVersion = e, t, pw.VersionID
	d.mu.Unlock()
	return nil
}

func (d *Daemon) currentElector() Elector {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.elector
}
