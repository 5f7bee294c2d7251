//go:build dockerrestart

// This test stops and restarts the machine's Docker daemon, which breaks every other test using Docker at the
// time: it runs alone, after the rest (go test -tags dockerrestart -run DockerdRestart ./...).

package ha

import (
	"context"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

const (
	dockerdBound = 90 * time.Second // for dockerd to stop, and to answer again
)

// TestDockerdRestartHA: the engine restarts under the active's node. The daemon stops the container (restart
// policy "no"); the active agent, which still holds the lock, sees its events stream break, waits for the engine
// and starts its node again; the standby stays standby. Exactly one node ends up ready, with zero overlap.
func TestDockerdRestartHA(t *testing.T) {
	c := newCluster(t)
	active, _ := c.bringUp(t)
	// Registered last, so it runs first: every other clean-up needs the daemon.
	t.Cleanup(func() {
		if err := testenv.EnsureDocker(dockerdCtx(t)); err != nil {
			t.Errorf("THE DOCKER DAEMON IS NOT RUNNING: %v", err)
		}
	})
	rec := c.record(t)
	_, _, _, oldID := inspectState(active.container)
	t0 := time.Now()
	if err := testenv.StopDockerd(dockerdCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := testenv.EnsureDocker(dockerdCtx(t)); err != nil {
		t.Fatal(err)
	}
	t1 := waitReadyz(t, active.port, 2*time.Minute, "after the Docker daemon restarted")
	c.verify(t, rec, active)
	if _, _, _, id := inspectState(active.container); id == oldID {
		t.Errorf("the node's container %.12s survived the daemon's restart; want a new one", id)
	}
	t.Logf("dockerd restarted: %s's node ready again %s after the daemon was stopped", active.name, t1.Sub(t0))
}

// dockerdCtx bounds one stop or start of the engine.
func dockerdCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), dockerdBound)
	t.Cleanup(cancel)
	return ctx
}
