package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent"
	"github.com/cl-agent/cl-agent/agent/bootstrap"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// fakeTerm is a term the test ends by hand.
type fakeTerm struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	at       time.Time
	released atomic.Bool
}

var _ Term = (*fakeTerm)(nil)

func newFakeTerm() *fakeTerm {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &fakeTerm{ctx: ctx, cancel: cancel, at: time.Now()}
}
func (t *fakeTerm) Context() context.Context { return t.ctx }
func (t *fakeTerm) Done() <-chan struct{}    { return t.ctx.Done() }
func (t *fakeTerm) Err() error               { return context.Cause(t.ctx) }
func (t *fakeTerm) AcquiredAt() time.Time    { return t.at }
func (t *fakeTerm) Release(context.Context) error {
	t.released.Store(true)
	t.cancel(errors.New("released"))
	return nil
}

// fakeElector hands out the terms the test sends on grant.
type fakeElector struct {
	now      func() time.Time // the daemon's clock
	grant    chan *fakeTerm
	acquires atomic.Int32
	lastCall atomic.Int64 // unix nanos of the last Acquire call
}

var _ Elector = (*fakeElector)(nil)

func (e *fakeElector) Acquire(ctx context.Context, _ func(leader.Holder)) (Term, error) {
	e.acquires.Add(1)
	e.lastCall.Store(time.Now().UnixNano())
	select {
	case t := <-e.grant:
		t.at = e.now()
		return t, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *fakeElector) Holder(context.Context) (leader.Holder, error) { return leader.Holder{}, nil }

// fakeNode plays the supervisor: it calls beforeStart, is ready at once, and stops when its context ends.
type fakeNode struct {
	beforeStart func(context.Context) error
	onStatus    func(container.Status)
	// stopGate and stopErr play a node that stops only when the test closes the gate, or an engine that cannot
	// prove it stopped.
	stopGate chan struct{}
	stopErr  error
	// startErr plays a start that keeps failing: the node never gets ready, with this as its last error.
	startErr string
	// stopTakes plays a node slow to stop, on clock; stopTimed is closed once that wait began.
	stopTakes time.Duration
	clock     clockwork.Clock
	stopTimed chan struct{}
	mu        sync.Mutex
	status    container.Status
	restarts  int
	running   atomic.Bool
}

var _ Node = (*fakeNode)(nil)

func (n *fakeNode) Run(ctx context.Context) error {
	n.running.Store(true)
	defer n.running.Store(false)
	if n.beforeStart != nil {
		if err := n.beforeStart(ctx); err != nil {
			return err
		}
	}
	if n.startErr != "" {
		n.set(container.Status{State: container.StateBackoff, LastError: n.startErr})
	} else {
		n.set(container.Status{State: container.StateReady, Ready: true})
	}
	<-ctx.Done()
	if n.stopGate != nil {
		<-n.stopGate
	}
	if n.stopTakes > 0 {
		stopped := n.clock.After(n.stopTakes)
		close(n.stopTimed)
		<-stopped
	}
	n.set(container.Status{State: container.StateStopped})
	return n.stopErr
}
func (n *fakeNode) Restart(context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.restarts++
	return nil
}
func (n *fakeNode) Status() container.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.status
}
func (n *fakeNode) set(s container.Status) {
	n.mu.Lock()
	n.status = s
	n.mu.Unlock()
	if n.onStatus != nil {
		n.onStatus(s)
	}
}

type fakeTakeover struct {
	gone      atomic.Bool
	expired   atomic.Int32
	peerReady atomic.Bool
	asked     atomic.Int32
	reports   atomic.Int32
	checks    atomic.Int32
	// lastReport is the last health published ("healthy: detail"); expiredBy the password version of the
	// takeover that expired the stale lease last.
	lastReport atomic.Pointer[string]
	expiredBy  atomic.Pointer[string]
}

func (f *fakeTakeover) PublishHealth(_ context.Context, _ state.Role, healthy bool, detail string) error {
	f.reports.Add(1)
	r := fmt.Sprintf("%v: %s", healthy, detail)
	f.lastReport.Store(&r)
	return nil
}
func (f *fakeTakeover) PeerReady(context.Context) (bool, string, error) {
	f.asked.Add(1)
	return f.peerReady.Load(), "test", nil
}

func (f *fakeTakeover) Watch(context.Context) (Watch, error)   { return fakeWatch{f}, nil }
func (f *fakeTakeover) ExpireStaleLease(context.Context) error { f.expired.Add(1); return nil }
func (f *fakeTakeover) Close()                                 {}

type fakeWatch struct{ f *fakeTakeover }

func (w fakeWatch) Check(context.Context) (bool, string, error) {
	w.f.checks.Add(1)
	return w.f.gone.Load(), "test", nil
}
func (w fakeWatch) Close() {}

// versionedTakeover is the harness's takeover as built for one database password version.
type versionedTakeover struct {
	*fakeTakeover
	version string
}

func (v versionedTakeover) ExpireStaleLease(ctx context.Context) error {
	v.expiredBy.Store(&v.version)
	return v.fakeTakeover.ExpireStaleLease(ctx)
}

type recorder struct {
	mu    sync.Mutex
	notes []string
}

func (r *recorder) Notify(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, s)
}
func (r *recorder) has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.notes {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

func (r *recorder) contains(text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.notes {
		if strings.Contains(n, text) {
			return true
		}
	}
	return false
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.notes...)
}

func (r *recorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, note := range r.notes {
		if strings.HasPrefix(note, prefix) {
			n++
		}
	}
	return n
}

type harness struct {
	nodeSick  atomic.Bool  // the health checks say the node fails
	elections atomic.Int32 // how often the daemon built an elector
	version   atomic.Int32 // the secrets' version id that fetch returns
	fetches   atomic.Int32
	fetchErr  atomic.Pointer[error]
	// fenceFails is how many more fence attempts fail; fences counts them all.
	fenceFails atomic.Int32
	fences     atomic.Int32
	// apiVersion, when set, is the API password's version alone (a rotation of that secret only); apiChanges
	// records the node-side changes asked for ("held->rotated"), apiChangeErr fails them.
	apiVersion   atomic.Int32
	apiChanges   chan string
	apiChangeErr atomic.Pointer[error]
	d            *Daemon
	elector      *fakeElector
	takeover     *fakeTakeover
	notes        *recorder
	nodes        chan *fakeNode
	cancel       context.CancelFunc
	done         chan error
}

// setup is what a test changes before the daemon starts.
type setup struct {
	leader bool
	config func(*config.Config)
	warm   error
	node   func(*fakeNode) // applied to every node the daemon makes
	clock  clockwork.Clock // nil: the real clock
}

func start(t *testing.T, leaderEnabled bool, edit func(*config.Config), warmErr error) *harness {
	t.Helper()
	return startWith(t, setup{leader: leaderEnabled, config: edit, warm: warmErr})
}

// startWith starts a daemon on fakes, as set up.
func startWith(t *testing.T, su setup) *harness {
	t.Helper()
	cfg := config.Default()
	cfg.Leader.Enabled = su.leader
	cfg.Leader.TakeoverGuard = 300 * time.Millisecond
	cfg.Leader.StepdownHold = 300 * time.Millisecond
	cfg.Secrets.PollInterval = 0
	if su.config != nil {
		su.config(&cfg)
	}
	h := &harness{notes: &recorder{}, nodes: make(chan *fakeNode, 10), done: make(chan error, 1), apiChanges: make(chan string, 10)}
	o := Options{
		Host:   &agent.Host{Config: &cfg, Log: zap.NewNop(), Identity: bootstrap.Identity{InstanceID: "i-0aaa"}},
		Notify: h.notes,
		Tick:   10 * time.Millisecond,
		Clock:  su.clock,
		Warm: func(context.Context) (image.Image, bootstrap.NodeSecrets, error) {
			return image.Image{Repository: "r", Tag: "2.10.0", Digest: "sha256:" + strings.Repeat("a", 64)}, h.secrets(), su.warm
		},
		Fetch: func(context.Context) (bootstrap.NodeSecrets, error) {
			h.fetches.Add(1)
			if err := h.fetchErr.Load(); err != nil {
				return bootstrap.NodeSecrets{}, *err
			}
			return h.secrets(), nil
		},
		Checks: func() []control.Check {
			return []control.Check{{Name: string(state.NodeHealth), OK: !h.nodeSick.Load(), Detail: "207: EVM.1 failing"}}
		},
		NewNode: func(_ image.Image, hooks NodeHooks) (Node, error) {
			n := &fakeNode{beforeStart: hooks.BeforeStart, onStatus: hooks.OnStatus}
			if su.node != nil {
				su.node(n)
			}
			h.nodes <- n
			return n, nil
		},
		ChangeAPIPassword: func(_ context.Context, held, rotated bootstrap.Secret) error {
			if err := h.apiChangeErr.Load(); err != nil {
				return *err
			}
			h.apiChanges <- held.VersionID + "->" + rotated.VersionID
			return nil
		},
		Fence: func(context.Context) error {
			h.fences.Add(1)
			if h.fenceFails.Add(-1) >= 0 {
				return errors.New("docker engine unreachable")
			}
			return nil
		},
	}
	if su.leader {
		h.elector = &fakeElector{grant: make(chan *fakeTerm), now: time.Now}
		if su.clock != nil {
			h.elector.now = su.clock.Now
		}
		h.takeover = &fakeTakeover{}
		o.Election = func(pw bootstrap.Secret) (Elector, Takeover, error) {
			h.elections.Add(1)
			return h.elector, versionedTakeover{h.takeover, pw.VersionID}, nil
		}
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("daemon did not stop within 5s")
		}
	})
	return h
}

// secrets are the fake Secrets Manager's current values: every version id is "v<version>".
func (h *harness) secrets() bootstrap.NodeSecrets {
	v := fmt.Sprintf("v%d", h.version.Load())
	api := v
	if n := h.apiVersion.Load(); n != 0 {
		api = fmt.Sprintf("v%d", n)
	}
	return bootstrap.NodeSecrets{
		DatabasePassword: bootstrap.NewSecret("db-password-0123456789", v),
		APIPassword:      bootstrap.NewSecret("api-password-0123456789-"+api, api),
		KeystorePassword: bootstrap.NewSecret("keystore-password-0123456789", v),
	}
}

// held is the secrets the daemon holds, as its loop last published them.
func (h *harness) held() bootstrap.NodeSecrets {
	h.d.pub.mu.Lock()
	defer h.d.pub.mu.Unlock()
	return h.d.pub.secrets
}

func (h *harness) role() state.Role { return state.Role(h.d.Status().Role) }

func TestLeaderDisabledRunsTheNodeAndStopsCleanly(t *testing.T) {
	h := start(t, false, nil, nil)
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	testenv.WaitFor(t, 5*time.Second, "systemd told READY=1 and WATCHDOG=1", func() bool {
		return h.notes.has("READY=1") && h.notes.has("WATCHDOG=1")
	})
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatalf("Run after SIGTERM: %v", err)
	}
	h.done <- nil // for Cleanup
	if node.running.Load() {
		t.Error("node still running after the daemon returned")
	}
	if !h.notes.has("STOPPING=1") {
		t.Error("no STOPPING=1")
	}
}

func TestGainLoseRegain(t *testing.T) {
	h := start(t, true, nil, nil)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	if h.role() != state.Standby || !h.notes.has("READY=1") {
		t.Fatalf("a warm standby is %s and READY must be sent: %v", h.role(), h.notes.notes)
	}
	h.takeover.gone.Store(true)
	term := newFakeTerm()
	h.elector.grant <- term
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active && h.d.Status().Lock.Held })

	term.cancel(errors.New("lock session closed"))
	testenv.WaitFor(t, 5*time.Second, "back to standby and campaigning", func() bool {
		return h.role() == state.Standby && h.elector.acquires.Load() == 2
	})
	if node.running.Load() {
		t.Error("the node of a lost term still runs")
	}
	if st := h.d.Status(); st.Lock.Held || st.Node.Ready || st.Node.State != string(container.StateStopped) {
		t.Errorf("after losing the lock the status says lock held %v, node %s ready %v", st.Lock.Held, st.Node.State, st.Node.Ready)
	}
	h.elector.grant <- newFakeTerm()
	<-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active again", func() bool { return h.role() == state.Active })
}

// TestTakeoverWaitsForProofOrGuard: the first start of a term waits for proof that the previous node is gone, or
// for the takeover guard, on the daemon's clock (a fake one here: no wall-time windows).
func TestTakeoverWaitsForProofOrGuard(t *testing.T) {
	t.Run("ProofStartsAtOnce", func(t *testing.T) {
		clock := clockwork.NewFakeClock()
		h := startWith(t, setup{leader: true, clock: clock, config: func(c *config.Config) { c.Leader.TakeoverGuard = time.Hour }})
		testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
		h.takeover.gone.Store(true)
		h.elector.grant <- newFakeTerm()
		node := <-h.nodes
		testenv.WaitFor(t, 5*time.Second, "node ready", func() bool { return node.Status().Ready })
		if h.takeover.expired.Load() != 1 {
			t.Errorf("stale lease expired %d times before the start, want 1", h.takeover.expired.Load())
		}
	})
	t.Run("ProofArrivesLater", func(t *testing.T) {
		clock := clockwork.NewFakeClock()
		h := startWith(t, setup{leader: true, clock: clock, config: func(c *config.Config) { c.Leader.TakeoverGuard = time.Hour }})
		testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
		h.elector.grant <- newFakeTerm()
		testenv.WaitFor(t, 5*time.Second, "three checks without proof", func() bool {
			clock.Advance(takeoverPoll)
			return h.takeover.checks.Load() >= 3
		})
		if len(h.nodes) != 0 {
			t.Fatal("the node started without proof, before the guard")
		}
		h.takeover.gone.Store(true)
		testenv.WaitFor(t, 5*time.Second, "the node started on proof", func() bool {
			clock.Advance(takeoverPoll)
			return len(h.nodes) == 1
		})
	})
	t.Run("NoProofWaitsOutTheGuard", func(t *testing.T) {
		clock := clockwork.NewFakeClock()
		h := startWith(t, setup{leader: true, clock: clock})
		testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
		h.elector.grant <- newFakeTerm()
		testenv.WaitFor(t, 5*time.Second, "the first check", func() bool { return h.takeover.checks.Load() >= 1 })
		clock.Advance(h.d.host.Config.Leader.TakeoverGuard - time.Millisecond)
		testenv.WaitFor(t, 5*time.Second, "a check just before the guard", func() bool { return h.takeover.checks.Load() >= 2 })
		if len(h.nodes) != 0 {
			t.Fatal("the node started before the guard passed, without proof")
		}
		clock.Advance(time.Millisecond)
		select {
		case <-h.nodes:
		case <-time.After(5 * time.Second):
			t.Fatal("the node did not start once the guard passed")
		}
	})
}

// TestStepdownReleasesAndHolds: a stepdown stops the node, releases the lock, and keeps this host out of the
// election for leader.stepdown_hold on the daemon's clock.
func TestStepdownReleasesAndHolds(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := startWith(t, setup{leader: true, clock: clock})
	h.takeover.gone.Store(true)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	term := newFakeTerm()
	h.elector.grant <- term
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.d.Stepdown(ctx, false); err != nil {
		t.Fatal(err)
	}
	if !term.released.Load() || node.running.Load() {
		t.Fatalf("stepdown: released=%v node running=%v", term.released.Load(), node.running.Load())
	}
	testenv.WaitFor(t, 5*time.Second, "holding", func() bool { return strings.Contains(h.d.Status().Message, "out of the election") })
	clock.Advance(h.d.host.Config.Leader.StepdownHold - time.Millisecond)
	testenv.WaitFor(t, 5*time.Second, "a beat just before the hold ends", func() bool { return h.d.HealthState().LastBeat.Equal(clock.Now()) })
	if got := h.elector.acquires.Load(); got != 1 {
		t.Fatalf("campaigned again (%d campaigns) before the hold passed", got)
	}
	clock.Advance(time.Millisecond)
	testenv.WaitFor(t, 5*time.Second, "campaigning again after the hold", func() bool { return h.elector.acquires.Load() == 2 })
}

func TestCommandsOnStandbyAreRefused(t *testing.T) {
	h := start(t, true, nil, nil)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := h.d.Restart(ctx)
	if err == nil || !strings.Contains(err.Error(), "standby") {
		t.Errorf("restart on standby: %v", err)
	}
}

func TestRestartOnActive(t *testing.T) {
	h := start(t, false, nil, nil)
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	denied := error(&bootstrap.SecretError{Key: "api_password", ID: "ApiSecret", Terminal: true, Err: bootstrap.ErrAccessDenied})
	h.fetchErr.Store(&denied)
	if err := h.d.Restart(ctx); err == nil || !strings.Contains(err.Error(), "fetch the secrets again") {
		t.Fatalf("restart without fresh secrets must say so, got %v", err)
	}
	if node.restarts != 0 {
		t.Error("node restarted without fresh secrets")
	}
	h.fetchErr.Store(nil)
	h.version.Store(2)
	if err := h.d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if node.restarts != 1 {
		t.Errorf("node restarted %d times, want 1", node.restarts)
	}
	if h.held().APIPassword.VersionID != "v2" {
		t.Errorf("the restart did not take the fresh secrets")
	}
}

func TestRotatedSecretRestartsTheActiveNode(t *testing.T) {
	h := start(t, false, func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }, nil)
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	polled := h.fetches.Load()
	testenv.WaitFor(t, 5*time.Second, "three rotation checks with unchanged versions", func() bool { return h.fetches.Load() >= polled+3 })
	node.mu.Lock()
	restarts := node.restarts
	node.mu.Unlock()
	if restarts != 0 {
		t.Fatalf("restarted %d times without a rotation", restarts)
	}
	h.version.Store(7)
	testenv.WaitFor(t, 5*time.Second, "node restarted after the rotation", func() bool {
		node.mu.Lock()
		defer node.mu.Unlock()
		return node.restarts == 1
	})
	if got := h.held().KeystorePassword.VersionID; got != "v7" {
		t.Errorf("held version %s after the rotation, want v7", got)
	}
}

// TestRotatedDatabasePasswordReachesTheActiveLogins: after a rotation on the active, the takeover that runs before
// the node's next start logs in with the new password (RDS managed rotation locked it out before).
func TestRotatedDatabasePasswordReachesTheActiveLogins(t *testing.T) {
	h, _, _ := activate(t, nil)
	if got := h.elections.Load(); got != 1 {
		t.Fatalf("%d elections built before the rotation, want 1", got)
	}
	h.version.Store(3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.d.Restart(ctx); err != nil { // fetches the rotated secrets and starts the node again
		t.Fatal(err)
	}
	if err := h.d.beforeStart(ctx); err != nil { // what the supervisor runs before that start
		t.Fatal(err)
	}
	if got := h.elections.Load(); got != 2 {
		t.Fatalf("%d elections built after the rotation, want 2: the takeover still logs in with the old password", got)
	}
	if by := h.takeover.expiredBy.Load(); by == nil || *by != "v3" {
		t.Fatalf("the stale lease was expired by the takeover of password version %v, want v3", by)
	}
}

// TestRotatedAPIPasswordGoesThroughTheNode: the active moves the node's API user to a rotated password (the node
// ignores .api once its user exists) and only then holds it, without restarting the node; a failed change keeps
// the held password, says so in the status, and is tried again.
func TestRotatedAPIPasswordGoesThroughTheNode(t *testing.T) {
	h := start(t, false, func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }, nil)
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	held := func() string { return h.held().APIPassword.VersionID }

	failure := errors.New("PATCH /v2/user/password answered 500")
	h.apiChangeErr.Store(&failure)
	h.apiVersion.Store(5)
	testenv.WaitFor(t, 5*time.Second, "the failed change in the status", func() bool {
		return strings.Contains(h.d.Status().LastError, "rotated API password not applied yet: PATCH")
	})
	if got := held(); got != "v0" {
		t.Fatalf("held API password %s after a failed change; want the old v0, which the node still takes", got)
	}

	h.apiChangeErr.Store(nil)
	select {
	case got := <-h.apiChanges:
		if got != "v0->v5" {
			t.Fatalf("change asked %s, want v0->v5", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the change was not tried again")
	}
	testenv.WaitFor(t, 5*time.Second, "the rotated password held", func() bool { return held() == "v5" })
	testenv.WaitFor(t, 5*time.Second, "the problem cleared", func() bool { return h.d.Status().LastError == "" })
	node.mu.Lock()
	defer node.mu.Unlock()
	if node.restarts != 0 {
		t.Fatalf("the node restarted %d times for an API password rotation; want none", node.restarts)
	}
}

func TestRotatedSecretRefreshesTheStandby(t *testing.T) {
	h := start(t, true, func(c *config.Config) { c.Secrets.PollInterval = 20 * time.Millisecond }, nil)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	if h.elections.Load() != 1 {
		t.Fatalf("elector built %d times before any rotation", h.elections.Load())
	}
	h.version.Store(3)
	testenv.WaitFor(t, 5*time.Second, "standby holds the rotated secrets", func() bool {
		return h.held().DatabasePassword.VersionID == "v3"
	})
	testenv.WaitFor(t, 5*time.Second, "campaigning again with an elector for the new database password", func() bool {
		return h.elections.Load() == 2 && h.elector.acquires.Load() == 2
	})
}

func TestTerminalWarmUpFailureEndsTheDaemon(t *testing.T) {
	bad := &bootstrap.SecretError{Key: "api_password", ID: "ApiSecret", Terminal: true, Err: bootstrap.ErrPasswordRule}
	h := start(t, true, nil, bad)
	err := <-h.done
	h.done <- nil
	if !errors.Is(err, bootstrap.ErrPasswordRule) {
		t.Fatalf("Run returned %v", err)
	}
	if h.elector.acquires.Load() != 0 {
		t.Error("a host that cannot start a node must not campaign for the lock")
	}
}

func TestUnhealthyNodeHandover(t *testing.T) {
	cases := []struct {
		name         string
		peerHealthy  bool
		wantHandover bool
	}{
		{"HandsOverToAHealthyStandby", true, true},
		{"StaysWithoutAHealthyStandby", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, true, func(c *config.Config) { c.Health.UnhealthyStepdown = 50 * time.Millisecond }, nil)
			h.takeover.gone.Store(true)
			h.takeover.peerReady.Store(tc.peerHealthy)
			testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
			term := newFakeTerm()
			h.elector.grant <- term
			node := <-h.nodes
			testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
			h.nodeSick.Store(true)
			testenv.WaitFor(t, 5*time.Second, "the standby's health asked twice", func() bool { return h.takeover.asked.Load() >= 2 || term.released.Load() })
			if term.released.Load() != tc.wantHandover {
				t.Fatalf("handed over = %v, want %v", term.released.Load(), tc.wantHandover)
			}
			if tc.wantHandover && node.running.Load() {
				t.Error("the unhealthy node still runs after the handover")
			}
			if !tc.wantHandover && h.role() != state.Active {
				t.Errorf("role %s, want active: there is nobody to hand over to", h.role())
			}
		})
	}
}

// TestStuckStartHandsOver: a host that holds the lock but cannot start its node (a foreign container under its
// name) hands over to a healthy standby once the bound has passed, and says why.
func TestStuckStartHandsOver(t *testing.T) {
	h := startWith(t, setup{leader: true, config: func(c *config.Config) { c.Health.UnhealthyStepdown = 50 * time.Millisecond },
		node: func(n *fakeNode) { n.startErr = `container "chainlink" is not managed by cl-agent` }})
	h.takeover.gone.Store(true)
	h.takeover.peerReady.Store(true)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	term := newFakeTerm()
	h.elector.grant <- term
	<-h.nodes
	testenv.WaitFor(t, 5*time.Second, "the stuck host to hand over", term.released.Load)
	if !h.notes.contains("handing over a node that keeps failing (node not ready: backoff: container \"chainlink\" is not managed") {
		t.Errorf("systemd's status line never said why the host handed over: %q", h.notes.all())
	}
}

func TestSickNodeClock(t *testing.T) {
	var s sickNode
	t0 := time.Now()
	bound := time.Minute
	steps := []struct {
		at      time.Duration
		failing bool
		want    bool
	}{
		{0, true, false},                // starts the clock
		{59 * time.Second, true, false}, // not yet
		{61 * time.Second, true, true},  // due: ask the peer
		{90 * time.Second, true, false}, // asked 29s ago: wait a whole bound before asking again
		{122 * time.Second, true, true}, // ask again
		{123 * time.Second, false, false},
		{124 * time.Second, true, false}, // recovered in between: the clock starts over
	}
	for _, st := range steps {
		if got := s.due(st.failing, bound, t0.Add(st.at)); got != st.want {
			t.Errorf("at %s failing=%v: due=%v, want %v", st.at, st.failing, got, st.want)
		}
	}
}

func TestHostsReportTheirHealth(t *testing.T) {
	h := start(t, true, nil, nil)
	testenv.WaitFor(t, 5*time.Second, "a health report", func() bool { return h.takeover.reports.Load() >= 1 })
}

// activate starts a leader-enabled daemon and makes it active with a fresh term; it returns the term's node too.
func activate(t *testing.T, nodeSetup func(*fakeNode)) (*harness, *fakeTerm, *fakeNode) {
	t.Helper()
	h := startWith(t, setup{leader: true, node: nodeSetup})
	h.takeover.gone.Store(true)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	term := newFakeTerm()
	h.elector.grant <- term
	node := <-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	return h, term, node
}

// TestNodeNotProvenStoppedKeepsTheLock: when the engine cannot prove the node stopped (dockerd down), a stepdown
// keeps the lock, beating, until a fence succeeds; only then may the peer take over.
func TestNodeNotProvenStoppedKeepsTheLock(t *testing.T) {
	h, term, _ := activate(t, func(n *fakeNode) { n.stopErr = errors.New("stop container: engine unreachable") })
	h.fenceFails.Store(2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := h.d.Stepdown(ctx, false); done <- err }()

	testenv.WaitFor(t, 5*time.Second, "a failed fence", func() bool { return h.fences.Load() >= 1 })
	if term.released.Load() {
		t.Fatal("the lock was released while the node was not proven stopped")
	}
	beats := h.notes.count("WATCHDOG=1")
	testenv.WaitFor(t, 5*time.Second, "beats while holding the lock", func() bool { return h.notes.count("WATCHDOG=1") > beats+5 })
	if err := <-done; err != nil {
		t.Fatalf("stepdown: %v", err)
	}
	if got := h.fences.Load(); got != 3 || !term.released.Load() {
		t.Fatalf("after the stepdown: %d fence attempts, released=%v; want 3 attempts, then the release", got, term.released.Load())
	}
}

// TestLoopBeatsWhileTheNodeStops: a planned stop of a slow node never starves systemd's watchdog or /healthz.
func TestLoopBeatsWhileTheNodeStops(t *testing.T) {
	gate := make(chan struct{})
	h, term, _ := activate(t, func(n *fakeNode) { n.stopGate = gate })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := h.d.Stepdown(ctx, false); done <- err }()
	testenv.WaitFor(t, 5*time.Second, "the stop under way", func() bool { return h.role() == state.Stopping })
	beats := h.notes.count("WATCHDOG=1")
	testenv.WaitFor(t, 5*time.Second, "beats while the node stops", func() bool { return h.notes.count("WATCHDOG=1") > beats+5 })
	if term.released.Load() {
		t.Fatal("the lock was released before the node stopped")
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !term.released.Load() {
		t.Fatal("the lock was not released after the node stopped")
	}
}

// TestStandbyProblemClearsAfterAGoodFetch: one throttled Secrets Manager call on the standby is a problem until the
// next good fetch, and the health it publishes says healthy again then (it used to stay unhealthy for the term,
// which disabled the unhealthy-active handover).
func TestStandbyProblemClearsAfterAGoodFetch(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := startWith(t, setup{leader: true, clock: clock, config: func(c *config.Config) { c.Secrets.PollInterval = time.Minute }})
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	report := func() string {
		if r := h.takeover.lastReport.Load(); r != nil {
			return *r
		}
		return ""
	}
	throttled := error(errors.New("ThrottlingException: Rate exceeded"))
	h.fetchErr.Store(&throttled)
	testenv.WaitFor(t, 5*time.Second, "the failed fetch published as unhealthy", func() bool {
		clock.Advance(healthReportEvery)
		return strings.Contains(h.d.Status().LastError, "ThrottlingException") && strings.HasPrefix(report(), "false: problem: ")
	})
	h.fetchErr.Store(nil)
	testenv.WaitFor(t, 5*time.Second, "the next good fetch clears it and the standby reports healthy", func() bool {
		clock.Advance(healthReportEvery)
		return h.d.Status().LastError == "" && report() == "true: warm"
	})
}

// TestLostTheLockSurvivesTheFence: the problem that the lock was lost stays in the status after the fence stopped
// the node (the supervisor's status used to overwrite it), until the next term.
func TestLostTheLockSurvivesTheFence(t *testing.T) {
	h, term, node := activate(t, nil)
	term.cancel(errors.New("lock session closed"))
	testenv.WaitFor(t, 5*time.Second, "fenced and campaigning again", func() bool {
		return h.role() == state.Standby && h.elector.acquires.Load() == 2
	})
	if node.running.Load() {
		t.Fatal("the node of a lost term still runs")
	}
	if got := h.d.Status().LastError; got != "lost the lock: lock session closed" {
		t.Fatalf("last_error after the fence = %q, want the lost lock", got)
	}
	h.elector.grant <- newFakeTerm()
	<-h.nodes
	testenv.WaitFor(t, 5*time.Second, "the next term clears it", func() bool { return h.d.Status().LastError == "" })
}

// TestHealthzStaysUpThroughASlowStop: a planned stop of a node that takes 20 s to stop keeps the loop beating, so
// /healthz answers 200 throughout and systemd's watchdog is fed; the lock is released only once the node stopped.
func TestHealthzStaysUpThroughASlowStop(t *testing.T) {
	clock := clockwork.NewFakeClock()
	const stopTakes = 20 * time.Second
	timed := make(chan struct{})
	h := startWith(t, setup{leader: true, clock: clock, node: func(n *fakeNode) { n.clock, n.stopTakes, n.stopTimed = clock, stopTakes, timed }})
	h.takeover.gone.Store(true)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	term := newFakeTerm()
	h.elector.grant <- term
	<-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := h.d.Stepdown(ctx, false); done <- err }()
	<-timed
	bound := h.d.host.Config.Health.BeatBound
	for elapsed := time.Second; elapsed <= stopTakes; elapsed += time.Second {
		clock.Advance(time.Second)
		testenv.WaitFor(t, 5*time.Second, "a beat", func() bool { return h.d.HealthState().LastBeat.Equal(clock.Now()) })
		if ok, why := health.Live(h.d.HealthState(), clock.Now(), bound); !ok {
			t.Fatalf("/healthz %s into the stop: %s", elapsed, why)
		}
		if elapsed < stopTakes && term.released.Load() {
			t.Fatalf("the lock was released %s into the stop, before the node stopped", elapsed)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !term.released.Load() {
		t.Fatal("the lock was not released after the node stopped")
	}
}
