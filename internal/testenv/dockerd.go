package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const dockerdPIDFile = "/var/run/docker.pid"

// StopDockerd sends the machine's dockerd SIGTERM and waits, within ctx, until its process is gone. Only for tests
// of an engine restart, which run alone (build tag dockerrestart); EnsureDocker starts it again.
func StopDockerd(ctx context.Context) error {
	pid, err := dockerdPID()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM dockerd (pid %d): %w", pid, err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for isDockerd(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("dockerd (pid %d) did not exit after SIGTERM: %w", pid, ctx.Err())
		case <-tick.C:
		}
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

// isDockerd tells whether pid is a live dockerd (not another process that reused the pid, and not a zombie: a
// dockerd this process started and that exited may linger unreaped for a moment).
func isDockerd(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	name, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasSuffix(name, "(dockerd") && !strings.HasPrefix(rest, "Z")
}
