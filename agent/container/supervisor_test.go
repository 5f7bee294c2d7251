package container

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
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
