package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
)

// Term is one period of leadership on one dedicated session. Its Context is cancelled the moment the lock can no
// longer be proven: at once on a definitive loss (ErrLockLost), at the trust deadline when pings stop proving it
// (ErrTrustExpired), or by Release (ErrReleased). A Term never comes back; Acquire again for the next one.
type Term struct {
	o          Options
	log        *zap.Logger
	clock      clockwork.Clock
	hooks      *hooks
	sess       lockSession
	acquiredAt time.Time

	ctx    context.Context
	cancel context.CancelCauseFunc

	events      chan sessionEvent // session goroutine → keeper
	releaseReq  chan struct{}     // Release → keeper
	sessionDone chan struct{}     // closed when the session goroutine has returned
	closed      chan struct{}     // closed when the session is closed (and, for Release, unlocked)

	mu           sync.Mutex
	trustedUntil time.Time
}

type eventKind int

const (
	pingStarted eventKind = iota
	pingDone
	sessionLost
)

// sessionEvent is what the session goroutine tells the keeper.
type sessionEvent struct {
	kind  eventKind
	n     int
	start time.Time
	err   error
}

// newTerm starts keeping the lock that sess took in an attempt started at start. The first trust window is
// anchored there: the lock was proven at some instant after it.
func newTerm(e *Elector, sess lockSession, start time.Time) *Term {
	ctx, cancel := context.WithCancelCause(context.Background())
	t := &Term{
		o:            e.o,
		log:          e.log.With(zap.Int("lockPID", sess.pid())),
		clock:        e.clock,
		hooks:        e.hooks,
		sess:         sess,
		acquiredAt:   start,
		ctx:          ctx,
		cancel:       cancel,
		events:       make(chan sessionEvent),
		releaseReq:   make(chan struct{}),
		sessionDone:  make(chan struct{}),
		closed:       make(chan struct{}),
		trustedUntil: start.Add(e.o.FenceAfter),
	}
	t.log.Info("leader: acquired the lock", zap.Time("trustedUntil", t.trustedUntil))
	go t.runSession()
	go t.keep()
	return t
}

// Context is cancelled the moment the lock can no longer be proven; context.Cause gives the reason (as Err).
// Run the node's work under it.
func (t *Term) Context() context.Context { return t.ctx }

// Done is closed when the Term ends (the Context's Done).
func (t *Term) Done() <-chan struct{} { return t.ctx.Done() }

// Err is nil while the Term lasts, then why it ended: an error wrapping ErrLockLost, ErrTrustExpired or
// ErrReleased.
func (t *Term) Err() error {
	if t.ctx.Err() == nil {
		return nil
	}
	return context.Cause(t.ctx)
}

// AcquiredAt is when the lock attempt that won this Term started (the Clock's time).
func (t *Term) AcquiredAt() time.Time { return t.acquiredAt }

// PID is the PostgreSQL backend of the lock session, as Holder reports it.
func (t *Term) PID() int { return t.sess.pid() }

// TrustedUntil is the current trust deadline: the start of the last ping that proved the lock, plus FenceAfter.
func (t *Term) TrustedUntil() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trustedUntil
}

// Closed is closed once the session is closed after the Term ended: from then on this host holds nothing.
func (t *Term) Closed() <-chan struct{} { return t.closed }

// Release hands the lock over on purpose: it ends the Term (ErrReleased), unlocks (pg_advisory_unlock, within
// CallTimeout even when ctx is already cancelled) and closes the session, so another host's next attempt wins.
// Stop the node before calling it. If the Term had already ended, Release only waits for its session to close.
// It returns an error only when ctx ends before the session is closed; a failed unlock is logged, since closing
// the session frees the lock as well.
func (t *Term) Release(ctx context.Context) error {
	select {
	case t.releaseReq <- struct{}{}:
	case <-t.closed:
		return nil
	case <-t.ctx.Done(): // ended meanwhile; the keeper is tearing down
	case <-ctx.Done():
		return fmt.Errorf("release the lock: %w", ctx.Err())
	}
	select {
	case <-t.closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("release the lock: %w", ctx.Err())
	}
}

// runSession owns the connection while the Term lasts: it idles on the socket until the next ping is due (a closed
// session ends the wait at once), pings, reports, and so on, one ping in flight at a time. The next ping is due
// PingInterval after the start of the previous one, or at once if that one took longer.
func (t *Term) runSession() {
	defer close(t.sessionDone)
	next := t.acquiredAt.Add(t.o.PingInterval)
	for n := 1; ; n++ {
		if err := t.sess.watch(t.ctx, next); err != nil {
			if t.ctx.Err() == nil {
				t.report(sessionEvent{kind: sessionLost, err: err})
			}
			return
		}
		start := t.clock.Now()
		t.report(sessionEvent{kind: pingStarted, n: n, start: start})
		err := t.sess.prove(t.ctx, n)
		if t.ctx.Err() != nil {
			return
		}
		t.report(sessionEvent{kind: pingDone, n: n, start: start, err: err})
		if errors.Is(err, ErrLockLost) {
			return
		}
		next = start.Add(t.o.PingInterval)
	}
}

func (t *Term) report(ev sessionEvent) {
	select {
	case t.events <- ev:
	case <-t.ctx.Done():
	}
}

// keep judges the Term until it ends, then tears the session down.
func (t *Term) keep() {
	defer close(t.closed)
	cause := t.judge()
	t.cancel(cause) // first of all: whoever runs under the Term stops now
	if errors.Is(cause, ErrReleased) {
		t.log.Info("leader: releasing the lock")
	} else {
		t.log.Warn("leader: the term ended; the lock can no longer be proven", zap.Error(cause))
	}
	t.teardown(cause)
	t.hooks.ended.signal(cause)
}

// judge returns why the Term ends. Trust runs until the start of the last proving ping + FenceAfter; the deadline
// always wins over a success that arrives after it.
func (t *Term) judge() error {
	var late clockwork.Timer // set while a ping is in flight and not yet late
	defer func() {
		if late != nil {
			late.Stop()
		}
	}()
	var inFlight sessionEvent
	for {
		until := t.TrustedUntil()
		now := t.clock.Now()
		if !now.Before(until) {
			return fmt.Errorf("%w: no ping proved the lock since %s (fence_after %s)",
				ErrTrustExpired, until.Add(-t.o.FenceAfter).Format(time.RFC3339Nano), t.o.FenceAfter)
		}
		trust := t.clock.NewTimer(until.Sub(now))
		var lateC <-chan time.Time
		if late != nil {
			lateC = late.Chan()
		}
		var ev sessionEvent
		select {
		case <-trust.Chan():
			continue // re-checked at the top
		case <-t.releaseReq:
			trust.Stop()
			return ErrReleased
		case <-lateC:
			trust.Stop()
			late = nil
			t.log.Warn("leader: ping is late", zap.Int("ping", inFlight.n), zap.Duration("pingTimeout", t.o.PingTimeout),
				zap.Time("trustedUntil", until))
			t.hooks.pingLate.signal(pingInfo{N: inFlight.n, Start: inFlight.start})
			continue
		case ev = <-t.events:
			trust.Stop()
		}
		switch ev.kind {
		case pingStarted:
			inFlight = ev
			late = t.clock.NewTimer(ev.start.Add(t.o.PingTimeout).Sub(t.clock.Now()))
			t.hooks.pingStarted.signal(pingInfo{N: ev.n, Start: ev.start})
		case pingDone:
			if late != nil {
				late.Stop()
				late = nil
			}
			err := t.judgePing(ev)
			t.hooks.pingDone.signal(pingInfo{N: ev.n, Start: ev.start, Err: ev.err}) // after the trust moved
			if err != nil {
				return err
			}
		case sessionLost:
			return ev.err
		}
	}
}

// judgePing applies one finished ping: a success moves the deadline to its start + FenceAfter (never back, and not
// when the deadline has already passed); a definitive loss ends the Term; another failure only logs.
func (t *Term) judgePing(ev sessionEvent) error {
	switch {
	case errors.Is(ev.err, ErrLockLost):
		return ev.err
	case ev.err != nil:
		t.log.Warn("leader: ping failed", zap.Int("ping", ev.n), zap.Error(ev.err), zap.Time("trustedUntil", t.TrustedUntil()))
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.clock.Now().Before(t.trustedUntil) {
		return nil // too late to count: the loop ends the Term
	}
	if next := ev.start.Add(t.o.FenceAfter); next.After(t.trustedUntil) {
		t.trustedUntil = next
	}
	return nil
}

// teardown stops the session goroutine (its operations watch the Term's context, which is cancelled by now) and
// closes the session; a Release unlocks first. Both run outside the cancelled context, within CallTimeout.
func (t *Term) teardown(cause error) {
	<-t.sessionDone
	ctx, cancel := context.WithTimeout(context.Background(), t.o.CallTimeout)
	defer cancel()
	if errors.Is(cause, ErrReleased) {
		if err := t.sess.unlock(ctx); err != nil {
			t.log.Warn("leader: unlock failed; closing the session frees the lock", zap.Error(err))
		} else {
			t.log.Info("leader: released the lock")
		}
	}
	t.sess.close(ctx)
}
