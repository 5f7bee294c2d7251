package leader

import (
	"context"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestPostgresRestart: a restart ends the leader's term at once (both hosts lose every session); afterwards exactly
// one elector holds the lock again.
func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	db := newDB(t, pg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// Each host runs the daemon's loop: acquire, hold until the term ends, acquire again.
	type hostState struct {
		id    string
		e     *Elector
		terms chan *Term
	}
	hosts := []*hostState{{id: "i-first"}, {id: "i-second"}}
	for _, h := range hosts {
		h.e, _ = newElector(t, db, h.id, fast)
		h.terms = make(chan *Term, 10)
	}
	run := func(h *hostState) {
		for ctx.Err() == nil {
			term, err := h.e.Acquire(ctx)
			if err != nil {
				return
			}
			releaseAtCleanup(t, term)
			h.terms <- term
			<-term.Done()
		}
	}
	go run(hosts[0])
	first := waitTerm(t, hosts[0].terms, 10*time.Second, hosts[0].id)
	go run(hosts[1])
	wait(t, &hosts[1].e.hooks.denied, 5*time.Second, "denial of the second host")

	endedCh := make(chan time.Time, 1)
	go func() {
		<-first.Done()
		endedCh <- time.Now()
	}()
	restartAt := time.Now()
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	if err := pg.Restart(rctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	restarted := time.Since(restartAt)
	var endedAt time.Time
	select {
	case endedAt = <-endedCh:
	case <-time.After(5 * time.Second):
		t.Fatal("the leader's term outlived the restart by 5s")
	}
	t.Logf("restart (fast shutdown + start) took %s; the leader's term ended %s after it began: %v",
		restarted.Round(time.Millisecond), endedAt.Sub(restartAt).Round(time.Millisecond), first.Err())
	if !isCause(first, ErrLockLost) {
		t.Fatalf("Err = %v, want ErrLockLost", first.Err())
	}
	if endedAt.Sub(restartAt) > restarted+fast.fenceAfter/2 {
		t.Fatalf("the term outlived the restart by %s", endedAt.Sub(restartAt)-restarted)
	}

	// Exactly one host holds the lock again.
	var next *Term
	var nextHost *hostState
	select {
	case next = <-hosts[0].terms:
		nextHost = hosts[0]
	case next = <-hosts[1].terms:
		nextHost = hosts[1]
	case <-time.After(15 * time.Second):
		t.Fatal("nobody acquired the lock after the restart")
	}
	t.Logf("%s acquired the lock %s after the restart began", nextHost.id, time.Since(restartAt).Round(time.Millisecond))
	other := hosts[0]
	if nextHost == hosts[0] {
		other = hosts[1]
	}
	for range 3 {
		wait(t, &other.e.hooks.denied, 10*time.Second, "denial of "+other.id)
	}
	select {
	case term := <-other.terms:
		t.Fatalf("both hosts hold the lock (%s too, pid %d)", other.id, term.PID())
	default:
	}
	if next.Err() != nil {
		t.Fatalf("the new term ended: %v", next.Err())
	}
	if h := holderOf(t, other.e); h.InstanceID != nextHost.id || h.PID != next.PID() {
		t.Fatalf("Holder = %+v, want %s pid %d", h, nextHost.id, next.PID())
	}
}

func waitTerm(t *testing.T, ch <-chan *Term, bound time.Duration, who string) *Term {
	t.Helper()
	select {
	case term := <-ch:
		return term
	case <-time.After(bound):
		t.Fatalf("%s did not acquire the lock within %s", who, bound)
	}
	return nil
}
