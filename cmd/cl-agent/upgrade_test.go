package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// fakeDaemon answers on the control socket with its function fields; a nil field panics (not called there).
type fakeDaemon struct {
	status   func() control.Status
	restart  func(ctx context.Context) error
	stepdown func(ctx context.Context, wait bool) (string, error)
	upgrade  func(ctx context.Context, req control.UpgradeRequest) (string, error)
}

var _ control.Handler = (*fakeDaemon)(nil)

func (f *fakeDaemon) Status() control.Status            { return f.status() }
func (f *fakeDaemon) Restart(ctx context.Context) error { return f.restart(ctx) }
func (f *fakeDaemon) Stepdown(ctx context.Context, wait bool) (string, error) {
	return f.stepdown(ctx, wait)
}
func (f *fakeDaemon) Upgrade(ctx context.Context, req control.UpgradeRequest) (string, error) {
	return f.upgrade(ctx, req)
}

// serveFake serves h on a control socket of its own and returns a configuration that names it.
func serveFake(t *testing.T, h control.Handler) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "control.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, socket, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control.Serve: %v", err)
		}
	})
	testenv.WaitFor(t, 5*time.Second, "the fake daemon's socket", func() bool {
		_, err := control.NewClient(socket).Status(context.Background())
		return err == nil
	})
	return writeConfig(t, "toml", "control: {socket: "+socket+"}")
}

// TestUpgradeCommand: the flags reach the daemon's request, its message is printed, and a refusal exits with the
// code it carries over the socket (1 when it carries none).
func TestUpgradeCommand(t *testing.T) {
	t.Parallel()
	downgrade := &pair.DowngradeError{Image: "2.18.0", Highest: "2.19.0"}
	cases := []struct {
		name   string
		args   []string
		want   control.UpgradeRequest
		answer error
		code   int
		says   string
	}{
		{"NewestRelease", nil, control.UpgradeRequest{}, nil, 0, "upgrade requested"},
		{"EveryFlag", []string{"--to", "2.18.0", "--allow-downgrade", "--wait"},
			control.UpgradeRequest{To: "2.18.0", AllowDowngrade: true, Wait: true}, nil, 0, "upgrade requested"},
		{"ADowngradeExitsFive", []string{"--to", "2.18.0"}, control.UpgradeRequest{To: "2.18.0"}, downgrade, exitcode.Terminal,
			"older than 2.19.0"},
		{"ARefusedValidationExitsTwo", []string{"--wait"}, control.UpgradeRequest{Wait: true},
			exitcode.New(exitcode.Config, errors.New("upgrade refused, the pair stays on 2.19.0")), exitcode.Config, "upgrade refused"},
		{"ARollbackIsWorthRetrying", []string{"--wait"}, control.UpgradeRequest{Wait: true},
			errors.New("upgrade rolled back"), exitcode.Retry, "rolled back"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var got []control.UpgradeRequest
			cfg := serveFake(t, &fakeDaemon{
				status: func() control.Status { return control.Status{Role: "active"} },
				upgrade: func(_ context.Context, req control.UpgradeRequest) (string, error) {
					mu.Lock()
					got = append(got, req)
					mu.Unlock()
					if tc.answer != nil {
						return "", tc.answer
					}
					return "upgrade requested", nil
				},
			})
			code, stdout, stderr := cli(t, append([]string{"upgrade", "--config", cfg}, tc.args...)...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.says) {
				t.Errorf("exit %d, want %d, saying %q:\n%s\n%s", code, tc.code, tc.says, stdout, stderr)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("the daemon was asked %+v; want once %+v", got, tc.want)
			}
		})
	}
}

// TestUpgradeWaitIsBounded: --wait ends at --timeout with an error that says the upgrade goes on (exit 1), and
// the daemon's side of the call is cancelled.
func TestUpgradeWaitIsBounded(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{})
	cfg := serveFake(t, &fakeDaemon{
		status: func() control.Status { return control.Status{} },
		upgrade: func(ctx context.Context, _ control.UpgradeRequest) (string, error) {
			<-ctx.Done()
			close(cancelled)
			return "", ctx.Err()
		},
	})
	start := time.Now()
	code, stdout, stderr := cli(t, "upgrade", "--config", cfg, "--wait", "--timeout", "300ms")
	if code != exitcode.Retry || !strings.Contains(stderr, "within 300ms (--timeout)") || !strings.Contains(stderr, "cl-agent status") {
		t.Errorf("exit %d:\n%s\n%s", code, stdout, stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("upgrade --wait --timeout 300ms took %s", took)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the daemon's side of the call was not cancelled")
	}
}

func TestUpgradeBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		wait    bool
		timeout time.Duration
		want    time.Duration
	}{
		{"AskingIsShort", false, 0, upgradeAskTimeout},
		{"WaitingAllowsAFirstBootsMigrations", true, 0, 30 * time.Minute},
		{"TimeoutWins", true, time.Hour, time.Hour},
		{"TimeoutWinsWithoutWait", false, 10 * time.Second, 10 * time.Second},
	} {
		if got, err := upgradeBound(tc.wait, tc.timeout); err != nil || got != tc.want {
			t.Errorf("%s: upgradeBound(%t, %s) = %s, %v; want %s", tc.name, tc.wait, tc.timeout, got, err, tc.want)
		}
	}
	if _, err := upgradeBound(true, -time.Second); exitcode.Of(err) != exitcode.Config {
		t.Errorf("a negative --timeout: %v; want a usage error", err)
	}
}

// TestUpgradeNoDaemon: with nothing on the socket, upgrade says the daemon is not running (exit 1).
func TestUpgradeNoDaemon(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, "toml", "control: {socket: "+filepath.Join(t.TempDir(), "none.sock")+"}")
	code, _, stderr := cli(t, "upgrade", "--config", cfg, "--to", "2.20.0")
	if code != exitcode.Retry || !strings.Contains(stderr, control.ErrNotRunning.Error()) {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// TestUpgradeInHelp: --help lists upgrade with its one line.
func TestUpgradeInHelp(t *testing.T) {
	t.Parallel()
	code, stdout, _ := cli(t, "--help")
	if code != 0 || !strings.Contains(stdout, "\n  upgrade        move the pair to a newer image with one switchover (any host)\n") {
		t.Errorf("--help (exit %d) lacks upgrade:\n%s", code, stdout)
	}
}
