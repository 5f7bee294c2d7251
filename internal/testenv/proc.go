package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds shared by every service. They are generous for a loaded CI machine running several test binaries at once;
// a healthy start takes well under a second (PostgreSQL's initdb about one).
const (
	startTimeout = 60 * time.Second // from exec to "answers"
	stopGrace    = 5 * time.Second  // after the polite signal, before SIGKILL of the group
	probeTimeout = 2 * time.Second  // one readiness probe
	pollInterval = 25 * time.Millisecond
	bindAttempts = 3 // a free port can be taken between our probe and the child's bind
	logTailBytes = 4096
)

// errAddrInUse marks a start that lost the race for its port; the caller picks another port and tries again.
var errAddrInUse = errors.New("address already in use")

// proc is one child process: its own process group, killed with SIGKILL if this process dies (Pdeathsig), stdout and
// stderr appended to a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been reaped
	waitErr error         // valid after done is closed

	stopOnce sync.Once
	stopErr  error
}

// startProc starts cmd as name. cmd.SysProcAttr may carry a Credential; the process-group and parent-death settings
// are added here.
func startProc(name, logPath string, cmd *exec.Cmd) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer logFile.Close() // the child holds its own copy of the descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// The kernel kills the child when the thread that started it dies, so a panicking or killed test binary
	// leaves nothing running. Go only retires threads of goroutines that exit while locked to them.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, cmd.Path, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id of the group leader.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process group, waits up to grace for the leader to exit, then SIGKILLs the group. Members
// that outlive the leader (PostgreSQL backends, a shim's children) are SIGKILLed either way. Only the first call acts
// (a later one could hit a recycled process group id); later calls return its result.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	p.stopOnce.Do(func() { p.stopErr = p.stopGroup(sig, grace) })
	return p.stopErr
}

func (p *proc) stopGroup(sig syscall.Signal, grace time.Duration) error {
	pgid := p.Pid()
	if !p.exited() {
		_ = syscall.Kill(-pgid, sig)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(stopGrace):
				return fmt.Errorf("stop %s (pid %d): still running %s after SIGKILL", p.name, pgid, stopGrace)
			}
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // stragglers; ESRCH when the group is already empty
	return nil
}

// logTail returns the last few KiB of the process's log, for error messages.
func (p *proc) logTail() string { return fileTail(p.logPath) }

func fileTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(log empty)"
	}
	return s
}

// waitReady polls probe until it succeeds, the process exits, ctx ends or startTimeout passes. A probe only counts
// once the process itself listens on port, so a neighbour that grabbed the same port cannot pass for our service.
// The error carries the log tail; it wraps errAddrInUse when the process lost the race for its port.
func (p *proc) waitReady(ctx context.Context, port int, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		if p.exited() {
			return p.startFailure(fmt.Errorf("exited before it was ready (%v)", p.waitErr))
		}
		lastErr = p.probeOnce(ctx, port, probe)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.startFailure(fmt.Errorf("not ready within %s: %w (last probe: %v)", startTimeout, ctx.Err(), lastErr))
		case <-p.done:
		case <-tick.C:
		}
	}
}

func (p *proc) probeOnce(ctx context.Context, port int, probe func(context.Context) error) error {
	owns, err := listensOn(p.Pid(), port)
	if err != nil {
		return err
	}
	if !owns {
		return fmt.Errorf("pid %d does not listen on port %d yet", p.Pid(), port)
	}
	return probeWithTimeout(ctx, probe)
}

// startFailure stops whatever is left of the process and describes the failure with the log tail.
func (p *proc) startFailure(cause error) error {
	_ = p.stop(syscall.SIGKILL, stopGrace)
	tail := p.logTail()
	err := fmt.Errorf("%s %w\n--- %s (tail) ---\n%s", p.name, cause, p.logPath, tail)
	if strings.Contains(strings.ToLower(tail), "address already in use") {
		return fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

// freePort asks the kernel for a TCP port free on every address (a wildcard bind), hence on loopback too. Another
// process may take it before our child binds it; starters retry on errAddrInUse.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// withFreePort runs start with fresh ports until it does not fail on a port race.
func withFreePort[T any](start func(port int) (T, error)) (T, error) {
	var zero T
	var err error
	for range bindAttempts {
		var port int
		if port, err = freePort(); err != nil {
			return zero, err
		}
		var v T
		if v, err = start(port); err == nil || !errors.Is(err, errAddrInUse) {
			return v, err
		}
	}
	return zero, fmt.Errorf("%d attempts: %w", bindAttempts, err)
}
