package container

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestSupervisorRestartsAfterExit: a node that dies is started again with freshly rendered files, after a
// backoff; the files are back only while it starts.
func TestSupervisorRestartsAfterExit(t *testing.T) {
	t.Parallel()
	m, f := newMemDocker(t)
	var secretsDir string
	var filesAtCreate [][]string
	m.onCreate = func(ContainerSpec) { filesAtCreate = append(filesAtCreate, nodeFiles(t, secretsDir)) }
	u := startUnit(t, m, f, func(o *Options) { secretsDir = o.Config.Container.SecretsDir })
	first := u.waitState(t, StateReady)

	m.kill("chainlink", 137, false)
	var st Status
	testenv.WaitFor(t, 5*time.Second, "a new container to be ready", func() bool {
		st = u.s.Status()
		return st.State == StateReady && st.ContainerID != first.ContainerID
	})
	if st.Restarts != 1 || u.renders.Load() != 2 || len(filesAtCreate) != 2 || len(filesAtCreate[1]) != 4 {
		t.Errorf("restarts %d, renders %d, files at creates %v; want 1, 2 and the files each time", st.Restarts, u.renders.Load(), filesAtCreate)
	}
	if left := nodeFiles(t, secretsDir); len(left) != 0 {
		t.Errorf("files left after the restart: %v", left)
	}
	var backoff *Status
	for _, h := range u.history() {
		if h.State == StateBackoff {
			backoff = &h
		}
	}
	if backoff == nil || !strings.Contains(backoff.LastError, "exited with code 137") || backoff.RetryAt.IsZero() {
		t.Errorf("backoff status %+v; want one naming the exit code, with a retry time", backoff)
	}
}

// TestSupervisorNotReady: only 200 counts, a node that never gets ready is stopped, its files shredded, and
// the starts back off exponentially.
func TestSupervisorNotReady(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusMultiStatus} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			m, f := newMemDocker(t)
			m.ready.Store(int32(code))
			var secretsDir string
			u := startUnit(t, m, f, func(o *Options) {
				secretsDir = o.Config.Container.SecretsDir
				o.ReadyTimeout = 30 * time.Millisecond
				o.BackoffInitial, o.BackoffMax = 20*time.Millisecond, 160*time.Millisecond
			})
			testenv.WaitFor(t, 10*time.Second, "four failed starts", func() bool { return u.s.Status().Restarts >= 4 })
			var delays []time.Duration
			var lastErr string
			for _, h := range u.history() {
				if h.State == StateBackoff {
					delays = append(delays, h.RetryAt.Sub(h.Since))
					lastErr = h.LastError
				}
			}
			if want := fmt.Sprintf("not ready within 30ms (last %s: %d", m.readyURL, code); !strings.Contains(lastErr, want) {
				t.Errorf("last error %q; want it to name the last answer (%s)", lastErr, want)
			}
			for i, want := range []time.Duration{20, 40, 80, 160} {
				want *= time.Millisecond
				if i >= len(delays) {
					t.Fatalf("%d backoffs; want 4", len(delays))
				}
				if delays[i] < want/2-time.Millisecond || delays[i] > want {
					t.Errorf("delay %d = %s; want in [%s, %s)", i, delays[i], want/2, want)
				}
			}
			if m.count("stop") < 3 {
				t.Errorf("%d stops; want each unready container stopped", m.count("stop"))
			}
			if u.s.Status().State == StateBackoff {
				if left := nodeFiles(t, secretsDir); len(left) != 0 {
					t.Errorf("files present during backoff: %v", left)
				}
			}
		})
	}
}

// TestSupervisorExitBeforeReady: a node that exits while starting is noticed at once (its die event), not
// after the readiness timeout.
func TestSupervisorExitBeforeReady(t *testing.T) {
	t.Parallel()
	m, f := newMemDocker(t)
	m.ready.Store(http.StatusServiceUnavailable)
	m.onStart = func(c *memContainer) { m.exit(c, 1); m.emit(c, "die") }
	start := time.Now()
	u := startUnit(t, m, f, func(o *Options) {
		o.ReadyTimeout = time.Minute
		o.BackoffInitial, o.BackoffMax = time.Minute, time.Minute
	})
	st := u.waitState(t, StateBackoff)
	if !strings.Contains(st.LastError, "exited with code 1 before it was ready") || time.Since(start) > 3*time.Second {
		t.Errorf("after %s: %q; want the exit noticed at once", time.Since(start), st.LastError)
	}
}

// TestSupervisorReconciles: a missed event (the container died quietly) is caught by the periodic reconcile,
// and a broken events stream is resubscribed and followed by a reconcile.
func TestSupervisorReconciles(t *testing.T) {
	t.Parallel()
	t.Run("Timer", func(t *testing.T) {
		t.Parallel()
		m, f := newMemDocker(t)
		u := startUnit(t, m, f, func(o *Options) { o.ReconcileInterval = 20 * time.Millisecond })
		first := u.waitState(t, StateReady)
		m.kill("chainlink", 1, true)
		testenv.WaitFor(t, 5*time.Second, "the node to be started again", func() bool {
			st := u.s.Status()
			return st.State == StateReady && st.ContainerID != first.ContainerID
		})
	})
	t.Run("EventsStreamBreaks", func(t *testing.T) {
		t.Parallel()
		m, f := newMemDocker(t)
		var pings atomic.Int32
		f.PingFn = func(context.Context) error {
			pings.Add(1)
			if m.down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}
		u := startUnit(t, m, f, nil)
		first := u.waitState(t, StateReady)
		testenv.WaitFor(t, time.Second, "the events subscription", func() bool { m.mu.Lock(); defer m.mu.Unlock(); return len(m.subscribers) == 1 })
		// The engine restarts: the stream breaks, nothing answers for a while, and the node died meanwhile.
		m.down.Store(true)
		m.kill("chainlink", 143, true)
		m.breakEvents()
		testenv.WaitFor(t, 5*time.Second, "the watcher to ping the engine twice", func() bool { return pings.Load() >= 2 })
		if st := u.s.Status(); st.ContainerID != first.ContainerID || !strings.Contains(st.LastError, "connection refused") {
			t.Errorf("while the engine is down: %+v; want the node left as it was, the error noted", st)
		}
		m.down.Store(false)
		testenv.WaitFor(t, 5*time.Second, "the node to be started again", func() bool {
			st := u.s.Status()
			return st.State == StateReady && st.ContainerID != first.ContainerID
		})
		if !strings.Contains(u.logs.String(), "subscribing again") {
			t.Error("no log line about the broken stream")
		}
	})
}

// TestSupervisorRestart: Restart recreates a matching node with fresh files and returns once it is ready.
func TestSupervisorRestart(t *testing.T) {
	t.Parallel()
	m, f := newMemDocker(t)
	u := startUnit(t, m, f, nil)
	first := u.waitState(t, StateReady)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := u.s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	st := u.s.Status()
	if st.State != StateReady || st.ContainerID == first.ContainerID || u.renders.Load() != 2 || m.count("stop") != 1 {
		t.Errorf("after Restart: %+v, %d renders, calls %v", st, u.renders.Load(), m.calls)
	}
	if err := u.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := u.s.Restart(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Restart after Run = %v; want ErrNotRunning", err)
	}
}
