package leader

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap/zaptest"
)

// newFakeClock is a clock that moves only when the test advances it.
func newFakeClock() *clockwork.FakeClock {
	return clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// fakeSession answers pings with what the test sends on proofs, and loses the session when the test sends on lost.
type fakeSession struct {
	clock    *clockwork.FakeClock
	proofs   chan error
	lost     chan error
	unlocked atomic.Bool
	closed   atomic.Bool
}

var _ lockSession = (*fakeSession)(nil)

func newFakeSession(c *clockwork.FakeClock) *fakeSession {
	return &fakeSession{clock: c, proofs: make(chan error), lost: make(chan error)}
}

func (f *fakeSession) pid() int { return 4242 }

func (f *fakeSession) watch(ctx context.Context, until time.Time) error {
	t := f.clock.NewTimer(until.Sub(f.clock.Now()))
	defer t.Stop()
	select {
	case <-t.Chan():
		return nil
	case err := <-f.lost:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeSession) prove(ctx context.Context, _ int) error {
	select {
	case err := <-f.proofs:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeSession) unlock(context.Context) error {
	f.unlocked.Store(true)
	return nil
}

func (f *fakeSession) close(context.Context) { f.closed.Store(true) }

// fakeTerm starts a Term on a fake session and clock with the default timings: ping 1s, ping timeout 800ms,
// fence after 4s.
func fakeTerm(t *testing.T) (*Term, *fakeSession, *clockwork.FakeClock, *hooks) {
	t.Helper()
	cfg, err := pgx.ParseConfig("postgres://agent@127.0.0.1:5432/chainlink")
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	h := newHooks()
	e, err := New(Options{ConnConfig: cfg, Key: 7, InstanceID: "i-fake", Clock: clock, hooks: h, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := newFakeSession(clock)
	term := newTerm(e, s, clock.Now())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = term.Release(ctx)
	})
	return term, s, clock, h
}

const signalBound = 5 * time.Second

// ping advances the clock to the next ping, waits for it to start and returns its start.
func ping(t *testing.T, clock *clockwork.FakeClock, h *hooks, d time.Duration) pingInfo {
	t.Helper()
	clock.Advance(d)
	return wait(t, &h.pingStarted, signalBound, "ping start")
}

func answer(t *testing.T, s *fakeSession, h *hooks, err error) pingInfo {
	t.Helper()
	select {
	case s.proofs <- err:
	case <-time.After(signalBound):
		t.Fatal("no ping waiting for an answer")
	}
	return wait(t, &h.pingDone, signalBound, "ping done")
}

func TestTrustWindow(t *testing.T) {
	t.Parallel()
	const fence = DefaultFenceAfter // ping 1s, ping timeout 800ms

	t.Run("SlowSuccessfulCheckDoesNotExtendTrust", func(t *testing.T) {
		t.Parallel()
		term, s, clock, h := fakeTerm(t)
		t0 := term.AcquiredAt()
		p1 := ping(t, clock, h, time.Second)
		answer(t, s, h, nil)
		if want := p1.Start.Add(fence); !term.TrustedUntil().Equal(want) {
			t.Fatalf("TrustedUntil = %s, want %s", term.TrustedUntil(), want)
		}
		// Ping 2 starts at t0+2s and answers 2.5s later: late, but before the deadline (t0+5s).
		p2 := ping(t, clock, h, time.Second)
		clock.Advance(2500 * time.Millisecond)
		if late := wait(t, &h.pingLate, signalBound, "late ping"); late.N != 2 {
			t.Fatalf("late ping %d, want 2", late.N)
		}
		answer(t, s, h, nil)
		if want := p2.Start.Add(fence); !term.TrustedUntil().Equal(want) {
			t.Fatalf("after a slow success TrustedUntil = t0+%s, want its start + FenceAfter = t0+%s (not the answer + FenceAfter)",
				term.TrustedUntil().Sub(t0), want.Sub(t0))
		}
		// Ping 3 was due at t0+3s: it starts at once and never answers.
		if p3 := wait(t, &h.pingStarted, signalBound, "ping 3"); !p3.Start.Equal(clock.Now()) {
			t.Fatalf("ping 3 started at t0+%s, want at once (t0+%s)", p3.Start.Sub(t0), clock.Now().Sub(t0))
		}
		clock.Advance(p2.Start.Add(fence).Sub(clock.Now()) - time.Millisecond)
		if term.Err() != nil {
			t.Fatalf("the term ended before its deadline: %v", term.Err())
		}
		clock.Advance(time.Millisecond)
		if err := wait(t, &h.ended, signalBound, "end"); !errors.Is(err, ErrTrustExpired) {
			t.Fatalf("ended with %v, want ErrTrustExpired", err)
		}
		if !errors.Is(term.Err(), ErrTrustExpired) || !errors.Is(context.Cause(term.Context()), ErrTrustExpired) {
			t.Fatalf("Err = %v, Cause = %v", term.Err(), context.Cause(term.Context()))
		}
		if !s.closed.Load() || s.unlocked.Load() {
			t.Fatalf("session closed %t unlocked %t, want closed without unlock", s.closed.Load(), s.unlocked.Load())
		}
	})

	t.Run("OneFailedPingDoesNotFence", func(t *testing.T) {
		t.Parallel()
		term, s, clock, h := fakeTerm(t)
		t0 := term.AcquiredAt()
		ping(t, clock, h, time.Second)
		answer(t, s, h, nil) // trusted until t0+5s
		// Ping 2 (t0+2s) fails at the ping timeout; ping 3 (t0+3s) answers at its ping timeout, t0+3.8s < t0+5s.
		ping(t, clock, h, time.Second)
		clock.Advance(800 * time.Millisecond)
		answer(t, s, h, errors.New("canceling statement due to user request"))
		p3 := ping(t, clock, h, 200*time.Millisecond)
		clock.Advance(800 * time.Millisecond)
		answer(t, s, h, nil)
		if term.Err() != nil {
			t.Fatalf("the term ended: %v", term.Err())
		}
		if want := p3.Start.Add(fence); !term.TrustedUntil().Equal(want) {
			t.Fatalf("TrustedUntil = t0+%s, want t0+%s", term.TrustedUntil().Sub(t0), want.Sub(t0))
		}
	})

	t.Run("NoProofEndsAtFenceAfter", func(t *testing.T) {
		t.Parallel()
		term, _, clock, h := fakeTerm(t)
		ping(t, clock, h, time.Second) // never answered
		clock.Advance(fence - time.Second - time.Millisecond)
		if term.Err() != nil {
			t.Fatalf("the term ended before FenceAfter: %v", term.Err())
		}
		clock.Advance(time.Millisecond)
		if err := wait(t, &h.ended, signalBound, "end"); !errors.Is(err, ErrTrustExpired) {
			t.Fatalf("ended with %v, want ErrTrustExpired", err)
		}
	})

	t.Run("ClosedSessionEndsTermAtOnce", func(t *testing.T) {
		t.Parallel()
		term, s, clock, h := fakeTerm(t)
		ping(t, clock, h, time.Second)
		answer(t, s, h, nil)
		// Idle between pings: the session goroutine reads the socket, which reports the close. The clock stands.
		select {
		case s.lost <- errors.Join(ErrLockLost, errors.New("FATAL: terminating connection due to administrator command")):
		case <-time.After(signalBound):
			t.Fatal("the session is not watching its socket between pings")
		}
		if err := wait(t, &h.ended, signalBound, "end"); !errors.Is(err, ErrLockLost) {
			t.Fatalf("ended with %v, want ErrLockLost", err)
		}
		if !term.TrustedUntil().After(clock.Now()) {
			t.Fatal("the clock reached the trust deadline: the end was not immediate")
		}
	})

	t.Run("LockMissingEndsTermAtOnce", func(t *testing.T) {
		t.Parallel()
		_, s, clock, h := fakeTerm(t)
		ping(t, clock, h, time.Second)
		answer(t, s, h, errors.Join(ErrLockLost, errors.New("pg_locks shows no advisory lock")))
		if err := wait(t, &h.ended, signalBound, "end"); !errors.Is(err, ErrLockLost) {
			t.Fatalf("ended with %v, want ErrLockLost", err)
		}
	})

	t.Run("ReleaseEndsTermThenUnlocks", func(t *testing.T) {
		t.Parallel()
		term, s, _, h := fakeTerm(t)
		ctx, cancel := context.WithTimeout(context.Background(), signalBound)
		defer cancel()
		if err := term.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := wait(t, &h.ended, signalBound, "end"); !errors.Is(err, ErrReleased) {
			t.Fatalf("ended with %v, want ErrReleased", err)
		}
		if !s.unlocked.Load() || !s.closed.Load() {
			t.Fatalf("unlocked %t closed %t, want both", s.unlocked.Load(), s.closed.Load())
		}
		if err := term.Release(ctx); err != nil {
			t.Fatalf("second Release: %v", err)
		}
	})
}
