package leader

import (
	"context"
	"testing"
	"time"
)

// TestHurryTakesTheLockSoonAfterItsRelease: a standby whose RetryInterval is long takes a released lock within a
// few HurryIntervals once it is hurried (a planned switchover), where it would otherwise wait out its retry; the
// hurry also cuts short the wait it is in.
func TestHurryTakesTheLockSoonAfterItsRelease(t *testing.T) {
	pg := sharedPostgres(t)
	db := newDB(t, pg)
	slow := fast
	slow.retry = time.Minute
	holder, _ := newElector(t, db, "i-aaaa", fast)
	standby, hooks := newElector(t, db, "i-bbbb", slow)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	held := waitAcquired(t, acquireAsync(t, ctx, holder), 10*time.Second, "the holder")
	ch := acquireAsync(t, ctx, standby)
	wait(t, &hooks.denied, 5*time.Second, "the standby's first try") // it now waits a minute
	standby.Hurry(30 * time.Second)
	wait(t, &hooks.denied, 5*time.Second, "the hurried standby's next try")

	relCtx, relCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer relCancel()
	released := time.Now()
	if err := held.term.Release(relCtx); err != nil {
		t.Fatal(err)
	}
	got := waitAcquired(t, ch, 10*time.Second, "the hurried standby")
	releaseAtCleanup(t, got.term)
	if d := got.at.Sub(released); d > 2*time.Second {
		t.Errorf("the hurried standby took the lock %s after its release; its retry is %s, the hurry's %s", d, slow.retry, HurryInterval)
	} else {
		t.Logf("the hurried standby took the lock %s after its release", d.Round(time.Millisecond))
	}
}
