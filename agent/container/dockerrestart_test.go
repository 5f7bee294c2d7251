//go:build dockerrestart

// This test stops and restarts the machine's Docker daemon, which breaks every other test using Docker at
// the time: it runs alone, after the rest (go test -tags dockerrestart -run TestDockerdRestart).

package container

import (
	"context"
	"errors"
	"fmt"
	"github.com/cl-agent/cl-agent/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	dockerdBin     = "/usr/sbin/dockerd"
	dockerdPIDFile = "/var/run/docker.pid"
	dockerdBound   = 90 * time.Second // for dockerd to stop, and to answer again
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
		if err := ensureDockerd(t); err != nil {
			t.Errorf("THE DOCKER DAEMON IS NOT RUNNING: %v", err)
		}
	})

	stopDockerd(t)
	if err := ensureDockerd(t); err != nil {
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

// stopDockerd sends the daemon SIGTERM and waits until its process is gone.
func stopDockerd(t *testing.T) {
	t.Helper()
	pid, err := dockerdPID()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM dockerd (pid %d): %v", pid, err)
	}
	testenv.WaitFor(t, dockerdBound, fmt.Sprintf("dockerd (pid %d) to exit", pid), func() bool {
		return !isDockerd(pid)
	})
}

// ensureDockerd starts /usr/sbin/dockerd detached (its own session, output to a log file) unless it runs,
// and waits until the engine answers a ping.
func ensureDockerd(t *testing.T) error {
	if pid, err := dockerdPID(); err == nil && isDockerd(pid) {
		return waitPing(t)
	}
	logPath := filepath.Join(os.TempDir(), testPrefix+"dockerd-"+randomHex(4)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(dockerdBin)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", dockerdBin, err)
	}
	go func() { _ = cmd.Wait() }() // reap it should it exit while the test runs
	t.Logf("started %s (pid %d), log %s", dockerdBin, cmd.Process.Pid, logPath)
	if err := waitPing(t); err != nil {
		b, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w\n--- %s ---\n%s", err, logPath, b)
	}
	return nil
}

func waitPing(t *testing.T) error {
	engine, err := NewDockerEngine(5 * time.Second)
	if err != nil {
		return err
	}
	defer engine.Close()
	ctx, cancel := context.WithTimeout(context.Background(), dockerdBound)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := engine.Ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the engine did not answer within %s: %w", dockerdBound, err)
		case <-tick.C:
		}
	}
}

func dockerdPID() (int, error) {
	b, err := os.ReadFile(dockerdPIDFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, errors.New("bad " + dockerdPIDFile)
	}
	return pid, nil
}

// isDockerd tells whether pid is a live dockerd (not another process that reused the pid, and not a zombie:
// a dockerd this process started and that exited may linger unreaped for a moment).
func isDockerd(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	name, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasSuffix(name, "(dockerd") && !strings.HasPrefix(rest, "Z")
}
