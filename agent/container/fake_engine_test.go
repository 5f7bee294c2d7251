package container

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeEngine is an Engine of function fields; a nil field fails the test that reaches it.
type fakeEngine struct {
	t                *testing.T
	PingFn           func(ctx context.Context) error
	InspectFn        func(ctx context.Context, name string) (ContainerInfo, error)
	CreateFn         func(ctx context.Context, spec ContainerSpec) (string, error)
	StartFn          func(ctx context.Context, id string) error
	StopFn           func(ctx context.Context, id string, timeout time.Duration) error
	RemoveFn         func(ctx context.Context, id string) error
	ImagePresentFn   func(ctx context.Context, ref string) (bool, error)
	PullFn           func(ctx context.Context, ref string) (io.ReadCloser, error)
	ContainerEventFn func(ctx context.Context, name string) (<-chan Event, <-chan error)
}

var _ Engine = (*fakeEngine)(nil)

func (f *fakeEngine) missing(call string) {
	f.t.Helper()
	f.t.Errorf("unexpected engine call %s", call)
}

func (f *fakeEngine) Ping(ctx context.Context) error {
	if f.PingFn == nil {
		f.missing("Ping")
		return fmt.Errorf("no Ping")
	}
	return f.PingFn(ctx)
}

func (f *fakeEngine) InspectContainer(ctx context.Context, name string) (ContainerInfo, error) {
	if f.InspectFn == nil {
		f.missing("InspectContainer")
		return ContainerInfo{}, fmt.Errorf("no InspectContainer")
	}
	return f.InspectFn(ctx, name)
}

func (f *fakeEngine) CreateContainer(ctx context.Context, spec ContainerSpec) (string, error) {
	if f.CreateFn == nil {
		f.missing("CreateContainer")
		return "", fmt.Errorf("no CreateContainer")
	}
	return f.CreateFn(ctx, spec)
}

func (f *fakeEngine) StartContainer(ctx context.Context, id string) error {
	if f.StartFn == nil {
		f.missing("StartContainer")
		return fmt.Errorf("no StartContainer")
	}
	return f.StartFn(ctx, id)
}

func (f *fakeEngine) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	if f.StopFn == nil {
		f.missing("StopContainer")
		return fmt.Errorf("no StopContainer")
	}
	return f.StopFn(ctx, id, timeout)
}

func (f *fakeEngine) RemoveContainer(ctx context.Context, id string) error {
	if f.RemoveFn == nil {
		f.missing("RemoveContainer")
		return fmt.Errorf("no RemoveContainer")
	}
	return f.RemoveFn(ctx, id)
}

func (f *fakeEngine) ImagePresent(ctx context.Context, ref string) (bool, error) {
	if f.ImagePresentFn == nil {
		f.missing("ImagePresent")
		return false, fmt.Errorf("no ImagePresent")
	}
	return f.ImagePresentFn(ctx, ref)
}

func (f *fakeEngine) PullImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	if f.PullFn == nil {
		f.missing("PullImage")
		return nil, fmt.Errorf("no PullImage")
	}
	return f.PullFn(ctx, ref)
}

func (f *fakeEngine) ContainerEvents(ctx context.Context, name string) (<-chan Event, <-chan error) {
	if f.ContainerEventFn == nil {
		f.missing("ContainerEvents")
		errc := make(chan error, 1)
		errc <- fmt.Errorf("no ContainerEvents")
		return nil, errc
	}
	return f.ContainerEventFn(ctx, name)
}

// memDocker is an in-memory engine behind a fakeEngine: containers by name, an image store, event
// subscribers, and a node "process" whose readiness the test controls through an HTTP server.
type memDocker struct {
	t *testing.T

	mu          sync.Mutex
	containers  map[string]*memContainer // by name
	images      map[string]bool
	subscribers []chan Event
	nextID      int
	calls       []string
	// onStart, when set, runs (under mu) after a container starts: e.g. make it exit at once.
	onStart func(c *memContainer)
	// onCreate, when set, runs (without mu) before a container is created.
	onCreate func(spec ContainerSpec)

	ready    atomic.Int32 // the status /readyz answers while a container runs (default 200)
	down     atomic.Bool  // the engine does not answer inspects (it is restarting)
	readyURL string
	breakEv  chan struct{} // closing it breaks every events stream once
}

type memContainer struct {
	info ContainerInfo
	spec ContainerSpec
}

func newMemDocker(t *testing.T) (*memDocker, *fakeEngine) {
	m := &memDocker{t: t, containers: map[string]*memContainer{}, images: map[string]bool{}, breakEv: make(chan struct{})}
	m.ready.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusServiceUnavailable
		if m.anyRunning() {
			code = int(m.ready.Load())
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	m.readyURL = srv.URL + "/readyz"
	f := &fakeEngine{
		t:      t,
		PingFn: func(context.Context) error { return nil },
		InspectFn: func(_ context.Context, name string) (ContainerInfo, error) {
			if m.down.Load() {
				return ContainerInfo{}, fmt.Errorf("inspect container %q: connection refused", name)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			m.calls = append(m.calls, "inspect")
			c, ok := m.containers[name]
			if !ok {
				return ContainerInfo{}, fmt.Errorf("inspect container %q: %w", name, ErrNotFound)
			}
			info := c.info
			info.Labels = maps.Clone(info.Labels)
			return info, nil
		},
		CreateFn: func(_ context.Context, spec ContainerSpec) (string, error) {
			if m.onCreate != nil {
				m.onCreate(spec)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			m.calls = append(m.calls, "create")
			if _, ok := m.containers[spec.Name]; ok {
				return "", fmt.Errorf("create container %q: name in use", spec.Name)
			}
			if !m.images[spec.Config.Image] {
				return "", fmt.Errorf("create container %q: no such image %s", spec.Name, spec.Config.Image)
			}
			m.nextID++
			id := fmt.Sprintf("%012d%052x", m.nextID, 0)
			m.containers[spec.Name] = &memContainer{spec: spec, info: ContainerInfo{ID: id, Name: spec.Name,
				Image: spec.Config.Image, Labels: maps.Clone(spec.Config.Labels), Status: "created"}}
			return id, nil
		},
		StartFn: func(_ context.Context, id string) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.calls = append(m.calls, "start")
			c := m.byID(id)
			if c == nil {
				return fmt.Errorf("start container %.12s: %w", id, ErrNotFound)
			}
			c.info.Running, c.info.Status, c.info.StartedAt = true, "running", time.Now()
			m.emit(c, "start")
			if m.onStart != nil {
				m.onStart(c)
			}
			return nil
		},
		StopFn: func(_ context.Context, id string, _ time.Duration) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.calls = append(m.calls, "stop")
			c := m.byID(id)
			if c == nil {
				return fmt.Errorf("stop container %.12s: %w", id, ErrNotFound)
			}
			if c.info.Running {
				m.exit(c, 0)
				m.emit(c, "stop")
			}
			return nil
		},
		RemoveFn: func(_ context.Context, id string) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.calls = append(m.calls, "remove")
			if c := m.byID(id); c != nil {
				delete(m.containers, c.info.Name)
				m.emit(c, "destroy")
			}
			return nil
		},
		ImagePresentFn: func(_ context.Context, ref string) (bool, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.images[ref], nil
		},
		PullFn: func(_ context.Context, ref string) (io.ReadCloser, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.calls = append(m.calls, "pull")
			m.images[ref] = true
			return io.NopCloser(strings.NewReader(`{"status":"Pulling"}` + "\n" + `{"status":"Downloaded newer image"}` + "\n")), nil
		},
		ContainerEventFn: func(ctx context.Context, name string) (<-chan Event, <-chan error) {
			ch := make(chan Event, 64)
			errc := make(chan error, 1)
			m.mu.Lock()
			m.subscribers = append(m.subscribers, ch)
			broken := m.breakEv
			m.mu.Unlock()
			go func() {
				select {
				case <-ctx.Done():
					errc <- ctx.Err()
				case <-broken:
					errc <- fmt.Errorf("events: unexpected EOF")
				}
				m.mu.Lock()
				for i, s := range m.subscribers {
					if s == ch {
						m.subscribers = append(m.subscribers[:i], m.subscribers[i+1:]...)
						break
					}
				}
				m.mu.Unlock()
			}()
			return ch, errc
		},
	}
	return m, f
}

func (m *memDocker) byID(id string) *memContainer {
	for _, c := range m.containers {
		if c.info.ID == id {
			return c
		}
	}
	return nil
}

// exit ends the container's process (mu held).
func (m *memDocker) exit(c *memContainer, code int) {
	c.info.Running, c.info.Status, c.info.ExitCode, c.info.FinishedAt = false, "exited", code, time.Now()
}

// emit sends an event to every subscriber (mu held); a full subscriber misses it, as a slow one would.
func (m *memDocker) emit(c *memContainer, action string) {
	ev := Event{Action: action, ContainerID: c.info.ID, Name: c.info.Name, Time: time.Now()}
	if action == "die" || action == "stop" {
		ev.ExitCode = fmt.Sprint(c.info.ExitCode)
	}
	for _, s := range m.subscribers {
		select {
		case s <- ev:
		default:
		}
	}
}

// kill makes the named container exit with code; with quiet, no event is sent (a missed event).
func (m *memDocker) kill(name string, code int, quiet bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.containers[name]
	if !ok {
		m.t.Fatalf("kill: no container %q", name)
	}
	m.exit(c, code)
	if !quiet {
		m.emit(c, "die")
	}
}

// breakEvents ends every current events stream once.
func (m *memDocker) breakEvents() {
	m.mu.Lock()
	defer m.mu.Unlock()
	close(m.breakEv)
	m.breakEv = make(chan struct{})
}

func (m *memDocker) anyRunning() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.containers {
		if c.info.Running {
			return true
		}
	}
	return false
}

func (m *memDocker) container(name string) (ContainerInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.containers[name]
	if !ok {
		return ContainerInfo{}, false
	}
	return c.info, true
}

// put adds a container as if an earlier run had created it.
func (m *memDocker) put(spec ContainerSpec, running bool) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	id := fmt.Sprintf("%012d%052x", 1000+m.nextID, 0)
	info := ContainerInfo{ID: id, Name: spec.Name, Image: spec.Config.Image, Labels: maps.Clone(spec.Config.Labels), Status: "exited"}
	if running {
		info.Running, info.Status = true, "running"
	}
	m.containers[spec.Name] = &memContainer{spec: spec, info: info}
	return id
}

func (m *memDocker) count(call string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, c := range m.calls {
		if c == call {
			n++
		}
	}
	return n
}
