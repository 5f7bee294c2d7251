package leader

import "time"

// testSignal is a River-style test signal: a no-op until a test initialises it, then a buffered channel the test
// waits on with a deadline. Sends never block the elector (a full buffer drops the value).
type testSignal[T any] struct {
	ch chan T
}

func (s *testSignal[T]) init() { s.ch = make(chan T, 1000) }

func (s *testSignal[T]) signal(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
	}
}

// pingInfo describes one ping of a Term's session.
type pingInfo struct {
	N     int       // 1 for the first ping of the Term
	Start time.Time // when it was sent (the anchor of the trust it earns)
	Err   error     // for a finished ping: nil when it proved the lock
}

// hooks are test-only: signals the elector raises and a latency injection. The zero value does nothing.
type hooks struct {
	denied      testSignal[struct{}] // a lock attempt found the key held by another session
	pingStarted testSignal[pingInfo]
	pingDone    testSignal[pingInfo]
	pingLate    testSignal[pingInfo] // a ping passed PingTimeout without an answer
	ended       testSignal[error]    // a Term ended, with its cause

	// pingDelay, when set, makes ping n sleep that long on the server (pg_sleep) before it proves the lock, so
	// the proof is genuinely slow on the wire.
	pingDelay func(n int) time.Duration
}
