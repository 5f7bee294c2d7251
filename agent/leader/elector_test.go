package leader

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

func TestElector(t *testing.T) {
	pg := sharedPostgres(t)

	t.Run("CompetingElectors", func(t *testing.T) {
		t.Parallel()
		db := newDB(t, pg)
		a, aHooks := newElector(t, db, "i-aaaa", fast)
		b, bHooks := newElector(t, db, "i-bbbb", fast)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)

		aCh, bCh := acquireAsync(t, ctx, a), acquireAsync(t, ctx, b)
		var win, lose *Elector
		var winHooks, loseHooks *hooks
		var winID, loseID string
		var loseCh <-chan acquired
		var won acquired
		select {
		case won = <-aCh:
			win, winHooks, winID, lose, loseHooks, loseID, loseCh = a, aHooks, "i-aaaa", b, bHooks, "i-bbbb", bCh
		case won = <-bCh:
			win, winHooks, winID, lose, loseHooks, loseID, loseCh = b, bHooks, "i-bbbb", a, aHooks, "i-aaaa", aCh
		case <-time.After(10 * time.Second):
			t.Fatal("neither elector acquired the lock")
		}
		if won.err != nil {
			t.Fatalf("Acquire: %v", won.err)
		}
		term := won.term
		releaseAtCleanup(t, term)

		// The loser keeps being denied while the winner keeps proving its lock.
		for range 3 {
			wait(t, &loseHooks.denied, 5*time.Second, "denial of the second elector")
			if p := wait(t, &winHooks.pingDone, 5*time.Second, "ping of the leader"); p.Err != nil {
				t.Fatalf("ping %d of the leader failed: %v", p.N, p.Err)
			}
		}
		select {
		case r := <-loseCh:
			t.Fatalf("both electors hold the lock (second: %+v)", r)
		default:
		}
		if term.Err() != nil {
			t.Fatalf("the leader's term ended: %v", term.Err())
		}

		// Either elector names the holder.
		for _, e := range []*Elector{win, lose} {
			h := holderOf(t, e)
			if !h.Held || h.ApplicationName != "cl-agent/"+winID || h.InstanceID != winID || h.PID != term.PID() ||
				h.ClientAddr != "127.0.0.1" || h.BackendStart.IsZero() || h.BackendStart.After(time.Now()) {
				t.Fatalf("Holder = %+v, want cl-agent/%s with pid %d from 127.0.0.1", h, winID, term.PID())
			}
		}

		// A release hands over: the other elector's next try wins.
		relCtx, relCancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer relCancel()
		releasedAt := time.Now()
		if err := term.Release(relCtx); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if !isCause(term, ErrReleased) {
			t.Fatalf("released term: Err = %v, want ErrReleased", term.Err())
		}
		select {
		case <-term.Closed():
		default:
			t.Fatal("Release returned before the session was closed")
		}
		next := waitAcquired(t, loseCh, 5*time.Second, loseID)
		t.Logf("handover: %s acquired %s after the release", loseID, next.at.Sub(releasedAt).Round(time.Millisecond))
		if h := holderOf(t, win); h.InstanceID != loseID || h.PID != next.term.PID() {
			t.Fatalf("after the handover Holder = %+v, want %s", h, loseID)
		}
		if err := term.Release(relCtx); err != nil { // a second Release is a no-op
			t.Fatalf("second Release: %v", err)
		}
	})

	t.Run("BackendTerminatedEndsTermAtOnce", func(t *testing.T) {
		t.Parallel()
		db := newDB(t, pg)
		e, _ := newElector(t, db, "i-term", defaultTime) // production timings: FenceAfter 4s
		got := waitAcquired(t, acquireAsync(t, context.Background(), e), 10*time.Second, "i-term")
		admin := db.admin(t)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		killedAt := time.Now()
		var ok bool
		if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", got.term.PID()).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d) = %t, %v", got.term.PID(), ok, err)
		}
		endedAt := waitDone(t, got.term, DefaultFenceAfter, "i-term")
		took := endedAt.Sub(killedAt)
		t.Logf("term ended %s after pg_terminate_backend (FenceAfter %s): %v", took.Round(time.Millisecond), DefaultFenceAfter, got.term.Err())
		if !isCause(got.term, ErrLockLost) {
			t.Fatalf("Err = %v, want ErrLockLost", got.term.Err())
		}
		if took > 500*time.Millisecond {
			t.Fatalf("the term ended %s after its backend was terminated, want well under FenceAfter (%s)", took, DefaultFenceAfter)
		}
		var lastErr error
		if !testenv.Poll(5*time.Second, 20*time.Millisecond, func() bool {
			h, err := e.Holder(ctx)
			lastErr = err
			return err == nil && !h.Held
		}) {
			t.Fatalf("the lock is not free within 5s (last error: %v)", lastErr)
		}
	})

	t.Run("SlowSuccessfulCheckDoesNotExtendTrust", func(t *testing.T) {
		t.Parallel()
		db := newDB(t, pg)
		const slowPing, slowBy = 3, 600 * time.Millisecond // late (PingTimeout 150ms) but within FenceAfter (1s)
		h := newHooks()
		h.pingDelay = func(n int) time.Duration {
			switch {
			case n < slowPing:
				return 0
			case n == slowPing:
				return slowBy
			default:
				return 5 * time.Second // never answers in time
			}
		}
		o := fast.options(db.connConfig(t, pg.Host), LockKey(0, db.name), "i-slow")
		o.hooks = h
		e, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		got := waitAcquired(t, acquireAsync(t, context.Background(), e), 10*time.Second, "i-slow")

		var slow pingInfo
		for slow.N != slowPing {
			slow = wait(t, &h.pingDone, 5*time.Second, "ping")
			if slow.Err != nil {
				t.Fatalf("ping %d failed: %v", slow.N, slow.Err)
			}
		}
		if late := wait(t, &h.pingLate, time.Second, "late ping"); late.N != slowPing {
			t.Fatalf("ping %d reported late, want %d", late.N, slowPing)
		}
		anchored := slow.Start.Add(fast.fenceAfter)
		if until := got.term.TrustedUntil(); !until.Equal(anchored) {
			t.Fatalf("after the slow success TrustedUntil = %s, want its start + FenceAfter = %s", until, anchored)
		}
		endedAt := waitDone(t, got.term, 3*time.Second, "i-slow")
		t.Logf("slow ping started %s, answered after ~%s; term ended %s after its start (FenceAfter %s): %v",
			slow.Start.Format("15:04:05.000"), slowBy, endedAt.Sub(slow.Start).Round(time.Millisecond), fast.fenceAfter, got.term.Err())
		if !isCause(got.term, ErrTrustExpired) {
			t.Fatalf("Err = %v, want ErrTrustExpired", got.term.Err())
		}
		if endedAt.Before(anchored) || endedAt.After(anchored.Add(250*time.Millisecond)) {
			t.Fatalf("term ended at +%s from the slow ping's start, want +%s (anchor + FenceAfter, not answer + FenceAfter = +%s)",
				endedAt.Sub(slow.Start), fast.fenceAfter, slowBy+fast.fenceAfter)
		}
	})

	t.Run("SessionSettings", func(t *testing.T) {
		t.Parallel()
		db := newDB(t, pg)
		e, _ := newElector(t, db, "i-settings", defaultTime)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := e.dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close(ctx)

		// The server's end: the keepalives derived from DeadPeerTimeout 10s, and the agent's application_name.
		want := map[string]string{
			"application_name": "cl-agent/i-settings", "tcp_keepalives_idle": "4", "tcp_keepalives_interval": "2",
			"tcp_keepalives_count": "3", "tcp_user_timeout": "10000",
		}
		for name, v := range want {
			var got string
			if err := s.conn.QueryRow(ctx, "SELECT setting FROM pg_settings WHERE name = $1", name).Scan(&got); err != nil {
				t.Fatalf("read %s: %v", name, err)
			}
			if got != v {
				t.Errorf("%s = %q, want %q", name, got, v)
			}
		}

		// The client's end: the same keepalives and TCP_USER_TIMEOUT on the socket under TLS.
		nc := s.conn.PgConn().Conn()
		if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
			nc = u.NetConn()
		}
		tcp, ok := nc.(*net.TCPConn)
		if !ok {
			t.Fatalf("the session's socket is a %T, want *net.TCPConn", nc)
		}
		raw, err := tcp.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		opts := map[string][2]int{
			"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
			"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
			"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
			"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
		}
		wantOpt := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 3, "TCP_USER_TIMEOUT": 10000}
		for name, lvlOpt := range opts {
			var v int
			var gerr error
			if err := raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), lvlOpt[0], lvlOpt[1]) }); err != nil || gerr != nil {
				t.Fatalf("getsockopt %s: %v %v", name, err, gerr)
			}
			if v != wantOpt[name] {
				t.Errorf("client socket %s = %d, want %d", name, v, wantOpt[name])
			}
		}
	})

	t.Run("HolderWhenFree", func(t *testing.T) {
		t.Parallel()
		db := newDB(t, pg)
		e, _ := newElector(t, db, "i-free", fast)
		if h := holderOf(t, e); h != (Holder{}) {
			t.Fatalf("Holder of a free key = %+v, want the zero Holder", h)
		}
		// A lock on the same key in another database is not ours.
		other := newDB(t, pg)
		o, _ := newElectorWith(t, other, "i-other", fast, func(o *Options) { o.Key = e.o.Key })
		waitAcquired(t, acquireAsync(t, context.Background(), o), 10*time.Second, "i-other")
		if h := holderOf(t, e); h.Held {
			t.Fatalf("Holder sees a lock of another database: %+v", h)
		}
	})
}
