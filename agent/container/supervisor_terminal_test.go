package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

// TestSupervisorTerminal: a failure retrying cannot fix (a secret that breaks the node's rules) ends Run with
// that error and state failed; a retryable one (BeforeStart) backs off.
func TestSupervisorTerminal(t *testing.T) {
	t.Parallel()
	m, f := newMemDocker(t)
	terminal := &secrets.Error{Key: "api_password", ID: "ApiSecret", Terminal: true, Err: errors.New("too short")}
	var calls atomic.Int32
	u := startUnit(t, m, f, func(o *Options) {
		o.BeforeStart = func(context.Context) error { return errors.New("the takeover guard is not over") }
		o.Render = func(context.Context) (*nodefiles.Rendered, error) {
			if calls.Add(1) >= 3 {
				return nil, terminal
			}
			return tomlRendered(), nil
		}
	})
	select {
	case err := <-u.done:
		u.done <- err
		var se *secrets.Error
		if !errors.As(err, &se) || se.ExitCode() != 5 {
			t.Errorf("Run = %v; want the terminal secret error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return on a terminal error")
	}
	if st := u.s.Status(); st.State != StateFailed || !strings.Contains(st.LastError, "api_password") {
		t.Errorf("status %+v; want failed naming the secret", st)
	}
	backoffs := 0
	for _, h := range u.history() {
		if h.State == StateBackoff && strings.Contains(h.LastError, "takeover guard") {
			backoffs++
		}
	}
	if backoffs < 2 || m.count("create") != 0 {
		t.Errorf("%d backoffs on BeforeStart errors, %d creates; want 2 and none", backoffs, m.count("create"))
	}
}

// TestSupervisorRefusesAForeignDataDir: a non-empty data_dir of another uid is never taken over (chowned and
// mounted): the start fails at once as a configuration error (exit 2), nothing is created, and its owner stays.
func TestSupervisorRefusesAForeignDataDir(t *testing.T) {
	t.Parallel()
	m, f := newMemDocker(t)
	var dataDir string
	u := startUnit(t, m, f, func(o *Options) {
		dataDir = o.Config.Container.DataDir
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dataDir, "someone-elses"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dataDir, 12345, 12345); err != nil {
			t.Fatal(err)
		}
	})
	select {
	case err := <-u.done:
		u.done <- err
		if exitcode.Of(err) != exitcode.Config || !strings.Contains(err.Error(), "data directory") {
			t.Errorf("Run = %v (exit %d); want the data directory refused, exit 2", err, exitcode.Of(err))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return on a foreign data directory")
	}
	if m.count("create") != 0 {
		t.Errorf("%d creates; want none", m.count("create"))
	}
	if fi, err := os.Stat(dataDir); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 12345 {
		t.Errorf("the data directory changed owner: %v", err)
	}
}
