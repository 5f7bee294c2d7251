package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/keyring"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/state"
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

func (t *fakeTerm) Done() <-chan struct{} { return t.ctx.Done() }

func (t *fakeTerm) Err() error { return context.Cause(t.ctx) }

func (t *fakeTerm) AcquiredAt() time.Time { return t.at }

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
	// peer, when set, is who the campaign sees holding the lock; holderLookups counts Holder calls (connections).
	peer          atomic.Pointer[leader.Holder]
	holderLookups atomic.Int32
	hurried       atomic.Int32 // Hurry calls
}

var _ Elector = (*fakeElector)(nil)

func (e *fakeElector) Acquire(ctx context.Context, onHolder func(leader.Holder)) (Term, error) {
	e.acquires.Add(1)
	e.lastCall.Store(time.Now().UnixNano())
	if h := e.peer.Load(); h != nil {
		onHolder(*h) // the campaign's first attempt found the peer holding the lock
	}
	select {
	case t := <-e.grant:
		t.at = e.now()
		return t, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *fakeElector) Hurry(time.Duration) { e.hurried.Add(1) }

func (e *fakeElector) Holder(context.Context) (leader.Holder, error) {
	e.holderLookups.Add(1)
	return leader.Holder{}, nil
}

// fakeNode plays the supervisor: it calls beforeStart, is ready at once, and stops when its context ends.

type fakeNode struct {
	img         image.Image
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

func (n *fakeNode) restartCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.restarts
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
	// keyRingVersion is the keystore password version the node's key ring opens with; keyRingChecks counts checks.
	keyRingVersion atomic.Pointer[string]
	keyRingChecks  atomic.Int32
	// pair is the pair's record (agent/pair, in memory); migration the node's highest applied migration.
	pairMu    sync.Mutex
	pair      pair.Record
	migration atomic.Int64
}

func (f *fakeTakeover) ReadPair(context.Context) (pair.Record, error) {
	f.pairMu.Lock()
	defer f.pairMu.Unlock()
	return f.pair, nil
}

func (f *fakeTakeover) RecordImage(_ context.Context, img image.Image) (pair.Record, error) {
	f.pairMu.Lock()
	defer f.pairMu.Unlock()
	f.pair.Exists, f.pair.Image, f.pair.Highest = true, img, pair.Higher(f.pair.Highest, img.Tag)
	if u := &f.pair.Upgrade; u.Phase.InProgress() && u.Candidate.Digest == img.Digest {
		u.Phase = pair.Done
	}
	return f.pair, nil
}

func (f *fakeTakeover) RequestUpgrade(_ context.Context, cand image.Image, allow bool) (pair.Record, error) {
	f.pairMu.Lock()
	defer f.pairMu.Unlock()
	if f.pair.Upgrade.Phase.InProgress() {
		return pair.Record{}, pair.ErrInProgress
	}
	if err := pair.CheckDowngrade(f.pair.Highest, cand); err != nil && !allow {
		return pair.Record{}, err
	}
	f.pair.Upgrade = pair.Upgrade{Phase: pair.Requested, Candidate: cand, AllowDowngrade: allow}
	return f.pair, nil
}

func (f *fakeTakeover) AdvanceUpgrade(_ context.Context, digest string, from, to pair.Phase, reason string, baseline int64) (bool, error) {
	f.pairMu.Lock()
	defer f.pairMu.Unlock()
	u := &f.pair.Upgrade
	if u.Phase != from || u.Candidate.Digest != digest {
		return false, nil
	}
	u.Phase, u.Reason = to, reason
	if to == pair.Starting {
		u.MigrationBaseline = baseline
	}
	return true, nil
}

func (f *fakeTakeover) MigrationVersion(context.Context) (int64, error) {
	return f.migration.Load(), nil
}

// pairNow is the record as it is now.
func (f *fakeTakeover) pairNow() pair.Record {
	f.pairMu.Lock()
	defer f.pairMu.Unlock()
	return f.pair
}

// fakeObserver records what the daemon tells the metrics.
type fakeObserver struct {
	failovers    atomic.Int32
	keystoreHeld atomic.Bool
}

func (o *fakeObserver) RecordFailover()                 { o.failovers.Add(1) }
func (o *fakeObserver) SetImage(string, string, string) {}
func (o *fakeObserver) SetKeystoreHeld(held bool)       { o.keystoreHeld.Store(held) }
func (o *fakeObserver) SetUpgrade(string, string)       {}

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

// KeyRing plays the node's key ring: encrypted with the keystore password of version keyRingVersion ("" empty).
func (f *fakeTakeover) KeyRing(_ context.Context, password string) (keyring.Verdict, error) {
	f.keyRingChecks.Add(1)
	v := f.keyRingVersion.Load()
	switch {
	case v == nil || *v == "":
		return keyring.Empty, nil
	case strings.HasSuffix(password, "-"+*v):
		return keyring.Opens, nil
	}
	return keyring.DoesNotOpen, nil
}

func (f *fakeTakeover) Watch(context.Context) (Watch, error) { return fakeWatch{f}, nil }

func (f *fakeTakeover) ExpireStaleLease(context.Context) error { f.expired.Add(1); return nil }

func (f *fakeTakeover) Close() {}

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
