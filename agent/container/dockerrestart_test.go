//go:build dockerrestart

// This test stops and restarts the machine's Docker daemon, which breaks every other test using Docker at
// the time: it runs alone, after the rest (go test -tags dockerrestart -run TestDockerdRestart).

package container

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

const (
	dockerdBound = 90 * time.Second // for dockerd to stop, and to answer again
)

// TestDockerdRestart: the daemon restarts under a supervised node (restart policy "no", so the engine
// stops the container and does not bring it back); the supervisor's events stream breaks, it waits for the
// engine, resubscribes, finds the node stopped and starts it again with fresh files.
func TestDockerdRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	e := newNodeEnv(t, ctx, envOptions{})
	o := e.options()
	o.ReconcileInterval = time.Hour // the events stream's break and resubscription must do it alone
	s, err := NewSupervisor(o)
	if err != nil {
		t.Fatal(err)
	}
	runSupervisor(t, s)
	first := waitNodeReady(t, s, 90*time.Second, "")
	// Registered last, so it runs first: every other clean-up needs the daemon.
	t.Cleanup(func() {
		if err := testenv.EnsureDocker(dockerdCtx(t)); err != nil {
			t.Errorf("THE DOCKER DAEMON IS NOT RUNNING: %v", err)
		}
	})

	if err := testenv.StopDockerd(dockerdCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := testenv.EnsureDocker(dockerdCtx(t)); err != nil {
		t.Fatal(err)
	}
	second := waitNodeReady(t, s, 2*time.Minute, first.ContainerID)
	// While the daemon shuts down it stops the node and refuses new starts for a moment: the supervisor may
	// try (and back off) more than once before the daemon is back.
	if second.Restarts < 1 {
		t.Errorf("restarts = %d; want at least 1", second.Restarts)
	}
	if c, err := e.engine.InspectContainer(ctx, e.cfg.Container.Name); err != nil || !c.Running || c.ID != second.ContainerID {
		t.Errorf("after the daemon restart: %+v, %v; want the supervisor's new container running", c, err)
	}
	if left := nodeFiles(t, e.cfg.Container.SecretsDir); len(left) != 0 {
		t.Errorf("files left after the node came back: %v", left)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "subscribing again") {
		t.Errorf("the agent's log does not show the events stream breaking:\n%s", logs)
	}
}

// dockerdCtx bounds one stop or start of the engine.
func dockerdCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), dockerdBound)
	t.Cleanup(cancel)
	return ctx
}
