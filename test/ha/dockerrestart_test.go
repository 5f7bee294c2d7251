//go:build dockerrestart

// This test stops and restarts the machine's Docker daemon, which breaks every other test using Docker at the
// time: it runs alone, after the rest (go test -tags dockerrestart -run DockerdRestart ./...).

package ha

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

const (
	dockerdBin     = "/usr/sbin/dockerd"
	dockerdPIDFile = "/var/run/docker.pid"
	dockerdBound   = 90 * time.Second // for dockerd to stop, and to answer again
)

// TestDockerdRestartHA: the engine restarts under the active's node. The daemon stops the container (restart
// policy "no"); the active agent, which still holds the lock, sees its events stream break, waits for the engine
// and starts its node again; the standby stays standby. Exactly one node ends up ready, with zero overlap.
func TestDockerdRestartHA(t *testing.T) {
	c := newCluster(t)
	active, _ := c.bringUp(t)
	// Registered last, so it runs first: every other clean-up needs the daemon.
	t.Cleanup(func() {
		if err := ensureDockerd(t); err != nil {
			t.Errorf("THE DOCKER DAEMON IS NOT RUNNING: %v", err)
		}
	})
	rec := c.record(t)
	_, _, _, oldID := inspectState(active.container)
	t0 := time.Now()
	stopDockerd(t)
	if err := ensureDockerd(t); err != nil {
		t.Fatal(err)
	}
	t1 := waitReadyz(t, active.port, 2*time.Minute, "after the Docker daemon restarted")
	c.verify(t, rec, active)
	if _, _, _, id := inspectState(active.container); id == oldID {
		t.Errorf("the node's container %.12s survived the daemon's restart; want a new one", id)
	}
	t.Logf("dockerd restarted: %s's node ready again %s after the daemon was stopped", active.name, t1.Sub(t0))
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
	if !poll(dockerdBound, pollEvery, func() bool { return !isDockerd(pid) }) {
		t.Fatalf("dockerd (pid %d) did not exit within %s of SIGTERM", pid, dockerdBound)
	}
}

// ensureDockerd starts /usr/sbin/dockerd detached (its own session, output to a log file) unless it runs, and
// waits until the engine answers a ping.
func ensureDockerd(t *testing.T) error {
	if pid, err := dockerdPID(); err == nil && isDockerd(pid) {
		return waitPing()
	}
	logPath := filepath.Join(os.TempDir(), prefix+"dockerd-"+randomHex(4)+".log")
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
	if err := waitPing(); err != nil {
		b, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w\n--- %s ---\n%s", err, logPath, b)
	}
	return nil
}

func waitPing() error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer cli.Close()
	var last error
	if !poll(dockerdBound, 200*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, last = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		return last == nil
	}) {
		return fmt.Errorf("the engine did not answer within %s: %w", dockerdBound, last)
	}
	return nil
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

// isDockerd tells whether pid is a live dockerd (not another process that reused the pid, and not a zombie).
func isDockerd(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	name, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasSuffix(name, "(dockerd") && !strings.HasPrefix(rest, "Z")
}
