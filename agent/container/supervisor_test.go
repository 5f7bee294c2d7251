package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// unitRun is a supervisor over a memDocker, running in the background.
type unitRun struct {
	s       *Supervisor
	m       *memDocker
	cancel  context.CancelFunc
	done    chan error
	renders atomic.Int32
	mu      sync.Mutex
	states  []Status
	logs    *syncBuffer
}

// startUnit builds a supervisor with fast timings (changed by tweak) and runs it until the test ends.
func startUnit(t *testing.T, m *memDocker, f *fakeEngine, tweak func(o *Options)) *unitRun {
	t.Helper()
	u := &unitRun{m: m, done: make(chan error, 1), logs: &syncBuffer{}}
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(u.logs), zap.DebugLevel))
	o := Options{
		Engine:   f,
		Logger:   logger,
		Config:   unitConfig(t),
		Identity: testIdentity,
		Image:    testImage,
		Render: func(context.Context) (*nodefiles.Rendered, error) {
			u.renders.Add(1)
			return tomlRendered(), nil
		},
		OnStatus: func(st Status) {
			u.mu.Lock()
			u.states = append(u.states, st)
			u.mu.Unlock()
		},
		ReadyURL:          m.readyURL,
		ReadyTimeout:      5 * time.Second,
		ReadyPoll:         5 * time.Millisecond,
		BackoffInitial:    10 * time.Millisecond,
		BackoffMax:        80 * time.Millisecond,
		ReconcileInterval: time.Hour, // events drive these tests unless one says otherwise
	}
	if tweak != nil {
		tweak(&o)
	}
	s, err := NewSupervisor(o)
	if err != nil {
		t.Fatal(err)
	}
	u.s = s
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	go func() { u.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-u.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of the cancel")
		}
		if t.Failed() {
			t.Logf("supervisor log:\n%s", u.logs.String())
		}
	})
	return u
}

// stop cancels Run and returns its error.
func (u *unitRun) stop(t *testing.T) error {
	t.Helper()
	u.cancel()
	select {
	case err := <-u.done:
		u.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the cancel")
		return nil
	}
}

func (u *unitRun) waitState(t *testing.T, want State) Status {
	t.Helper()
	var st Status
	testenv.WaitFor(t, 5*time.Second, "state "+string(want), func() bool {
		st = u.s.Status()
		return st.State == want
	})
	return st
}

func (u *unitRun) history() []Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.states)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSupervisorStartsAndStops: files are in place when the container is created, gone once the node is
// ready; cancelling Run stops and removes the container and Run returns nil.
func TestSupervisorStartsAndStops(t *testing.T) {
	t.Parallel()
	m, f := newMemDocker(t)
	var filesAtCreate []string
	var secretsDir string
	m.onCreate = func(ContainerSpec) { filesAtCreate = nodeFiles(t, secretsDir) }
	var beforeStart atomic.Int32
	u := startUnit(t, m, f, func(o *Options) {
		secretsDir = o.Config.Container.SecretsDir
		o.BeforeStart = func(context.Context) error { beforeStart.Add(1); return nil }
	})
	st := u.waitState(t, StateReady)
	if !st.Ready || st.ContainerID == "" || st.Digest != testImage.Digest || st.Image != testImage.String() || st.Restarts != 0 {
		t.Errorf("status %+v", st)
	}
	if len(filesAtCreate) != 4 {
		t.Errorf("files at create: %v; want the four 2.x files", filesAtCreate)
	}
	if left := nodeFiles(t, secretsDir); len(left) != 0 {
		t.Errorf("files left after ready: %v", left)
	}
	if m.count("pull") != 1 || beforeStart.Load() != 1 {
		t.Errorf("%d pulls, %d BeforeStart calls; want 1 and 1", m.count("pull"), beforeStart.Load())
	}
	if err := u.stop(t); err != nil {
		t.Fatalf("Run = %v; want nil", err)
	}
	if _, ok := m.container("chainlink"); ok {
		t.Error("the container is still there after Run returned")
	}
	if st := u.s.Status(); st.State != StateStopped || st.Ready {
		t.Errorf("status after Run %+v; want stopped", st)
	}
	var seen []State
	for _, s := range u.history() {
		if len(seen) == 0 || seen[len(seen)-1] != s.State {
			seen = append(seen, s.State)
		}
	}
	if want := []State{StateStarting, StateRunning, StateReady, StateStopped}; !slices.Equal(seen, want) {
		t.Errorf("states %v; want %v", seen, want)
	}
}

// TestSupervisorAdoptsOrReplaces: a managed container left from an earlier run is adopted when it matches
// the desired spec and replaced when not; a container that is not managed is never touched.
func TestSupervisorAdoptsOrReplaces(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t)
	desired, err := Spec(cfg, testIdentity, testImage, tomlRendered())
	if err != nil {
		t.Fatal(err)
	}
	otherDigest := desired
	otherDigest.Config = ptr(*desired.Config)
	otherDigest.Config.Image = "smartcontract/chainlink@sha256:" + strings.Repeat("ee", 32)
	otherDigest.Config.Labels = map[string]string{LabelManaged: "true", LabelConfigHash: "0123"}
	unmanaged := desired
	unmanaged.Config = ptr(*desired.Config)
	unmanaged.Config.Labels = nil

	cases := []struct {
		name    string
		left    ContainerSpec
		running bool
		adopt   bool
	}{
		{"MatchingRunningIsAdopted", desired, true, true},
		{"MatchingStoppedIsReplaced", desired, false, false},
		{"OtherImageIsReplaced", otherDigest, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, f := newMemDocker(t)
			m.images[testImage.Ref()] = true
			oldID := m.put(tc.left, tc.running)
			u := startUnit(t, m, f, func(o *Options) { o.Config = cfg })
			st := u.waitState(t, StateReady)
			if adopted := st.ContainerID == oldID; adopted != tc.adopt {
				t.Errorf("adopted = %t; want %t", adopted, tc.adopt)
			}
			if tc.adopt && (m.count("create") != 0 || m.count("stop") != 0) {
				t.Errorf("adoption created or stopped containers: %v", m.calls)
			}
			if !tc.adopt && (m.count("remove") != 1 || m.count("create") != 1) {
				t.Errorf("replacement: %d removes, %d creates; want 1 and 1", m.count("remove"), m.count("create"))
			}
		})
	}

	t.Run("NotManagedIsLeftAlone", func(t *testing.T) {
		t.Parallel()
		m, f := newMemDocker(t)
		id := m.put(unmanaged, true)
		u := startUnit(t, m, f, func(o *Options) { o.Config = cfg })
		st := u.waitState(t, StateBackoff)
		if !strings.Contains(st.LastError, "not managed by cl-agent") {
			t.Errorf("last error %q; want one saying the container is not managed", st.LastError)
		}
		if err := u.stop(t); err != nil {
			t.Errorf("Run = %v; want nil: no node of this agent runs, the foreign container is not ours", err)
		}
		if c, ok := m.container("chainlink"); !ok || c.ID != id || !c.Running || m.count("stop")+m.count("remove") != 0 {
			t.Errorf("the unmanaged container was touched: %+v, calls %v", c, m.calls)
		}
	})
}

func ptr[T any](v T) *T { return &v }

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
