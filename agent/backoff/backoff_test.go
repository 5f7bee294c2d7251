package backoff

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// fixed is a jitter source that always returns r.
func fixed(r float64) func() float64 { return func() float64 { return r } }

// top is the largest value below 1: the longest delay a real source can give.
var top = math.Nextafter(1, 0)

func TestNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		min, max time.Duration
		rand     func() float64
		want     []time.Duration
	}{
		{"DoublesFromMinHalvedByLowestJitter", 100 * time.Millisecond, 10 * time.Second, fixed(0),
			[]time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}},
		{"HalfJitterIsThreeQuarters", 100 * time.Millisecond, 10 * time.Second, fixed(0.5),
			[]time.Duration{75 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond}},
		{"CappedAtMax", 100 * time.Millisecond, 300 * time.Millisecond, fixed(0),
			[]time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond}},
		{"MinEqualsMaxIsFixed", time.Second, time.Second, fixed(0),
			[]time.Duration{500 * time.Millisecond, 500 * time.Millisecond}},
		{"HugeMaxDoesNotOverflow", time.Duration(math.MaxInt64 / 2), time.Duration(math.MaxInt64), fixed(0),
			[]time.Duration{math.MaxInt64 / 4, math.MaxInt64 / 2, math.MaxInt64 / 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := New(tt.min, tt.max).WithRand(tt.rand)
			for i, want := range tt.want {
				if got := b.Next(); got != want {
					t.Fatalf("delay %d = %s, want %s", i, got, want)
				}
			}
		})
	}
}

func TestJitterBounds(t *testing.T) {
	t.Parallel()
	const d = time.Second
	b := New(d, d)
	for range 1000 {
		if got := b.Next(); got < d/2 || got >= d {
			t.Fatalf("Next() = %s, want within [%s, %s)", got, d/2, d)
		}
	}
	if got := New(d, d).WithRand(fixed(top)).Next(); got >= d {
		t.Fatalf("Next() with the largest jitter = %s, want below %s", got, d)
	}
	for range 1000 {
		if got := Jitter(d); got < 800*time.Millisecond || got >= 1200*time.Millisecond {
			t.Fatalf("Jitter(%s) = %s, want within [800ms, 1.2s)", d, got)
		}
	}
	if got := jitter(d, fixed(0)); got != 800*time.Millisecond {
		t.Fatalf("jitter(%s) with the smallest jitter = %s, want 800ms", d, got)
	}
	if got := jitter(d, fixed(top)); got >= 1200*time.Millisecond {
		t.Fatalf("jitter(%s) with the largest jitter = %s, want below 1.2s", d, got)
	}
}

func TestResetStartsAgainAtMin(t *testing.T) {
	t.Parallel()
	b := New(time.Second, time.Minute).WithRand(fixed(0))
	for range 5 {
		b.Next()
	}
	b.Reset()
	if got := b.Next(); got != 500*time.Millisecond {
		t.Fatalf("Next() after Reset = %s, want 500ms", got)
	}
	if got := b.Next(); got != time.Second {
		t.Fatalf("second Next() after Reset = %s, want 1s", got)
	}
}

func TestNewPanicsOnBadBounds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		min, max time.Duration
	}{
		{"ZeroMin", 0, time.Second},
		{"NegativeMin", -time.Second, time.Second},
		{"MaxBelowMin", time.Second, time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Fatalf("New(%s, %s) did not panic", tt.min, tt.max)
				}
			}()
			New(tt.min, tt.max)
		})
	}
}

// waitAsync runs b.Wait in a goroutine and returns its result channel.
func waitAsync(ctx context.Context, b *Backoff, clock clockwork.Clock) <-chan error {
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx, clock) }()
	return done
}

// blockUntilWaiting waits, with a deadline, until the Wait under test has set its timer on clock.
func blockUntilWaiting(t *testing.T, clock *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("Wait never set its timer: %v", err)
	}
}

func receive(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return within 5s")
		return nil
	}
}

func TestWait(t *testing.T) {
	t.Parallel()

	t.Run("ReturnsWhenTheDelayPasses", func(t *testing.T) {
		t.Parallel()
		clock := clockwork.NewFakeClock()
		b := New(time.Second, time.Minute).WithRand(fixed(0))
		done := waitAsync(t.Context(), b, clock)
		blockUntilWaiting(t, clock)
		clock.Advance(499 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Wait returned %v before its 500ms delay", err)
		default:
		}
		clock.Advance(time.Millisecond)
		if err := receive(t, done); err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
		// The next wait is the doubled delay.
		done = waitAsync(t.Context(), b, clock)
		blockUntilWaiting(t, clock)
		clock.Advance(time.Second)
		if err := receive(t, done); err != nil {
			t.Fatalf("second Wait = %v, want nil", err)
		}
	})

	t.Run("ReturnsTheContextErrorWhenCancelled", func(t *testing.T) {
		t.Parallel()
		clock := clockwork.NewFakeClock()
		ctx, cancel := context.WithCancel(t.Context())
		done := waitAsync(ctx, New(time.Second, time.Minute), clock)
		blockUntilWaiting(t, clock)
		cancel()
		if err := receive(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
	})

	t.Run("AnEndedContextDoesNotUseUpADelay", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		b := New(time.Second, time.Minute).WithRand(fixed(0))
		if err := b.Wait(ctx, clockwork.NewFakeClock()); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
		if got := b.Next(); got != 500*time.Millisecond {
			t.Fatalf("Next() after a cancelled Wait = %s, want the first delay 500ms", got)
		}
	})
}

// TestSpread: the retry client's delays follow the same [d/2, d) rule as Next.
func TestSpread(t *testing.T) {
	for range 1000 {
		if got := Spread(time.Second); got < 500*time.Millisecond || got >= time.Second {
			t.Fatalf("Spread(1s) = %s; want within [500ms, 1s)", got)
		}
	}
}
