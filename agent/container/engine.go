package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// ErrNotFound: the engine has no container or image by that name.
var ErrNotFound = errors.New("not found")

// Engine is the part of the Docker Engine API the supervisor and Fence use. DockerEngine implements it with a
// deadline on every call; unit tests use a fake.
type Engine interface {
	Ping(ctx context.Context) error
	// InspectContainer returns ErrNotFound (wrapped) when there is no container by that name or id.
	InspectContainer(ctx context.Context, nameOrID string) (ContainerInfo, error)
	CreateContainer(ctx context.Context, spec ContainerSpec) (id string, err error)
	StartContainer(ctx context.Context, id string) error
	// StopContainer sends the container's stop signal (SIGTERM) and kills it after timeout.
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
	// RemoveContainer removes the container (forcibly, should it still run); a missing one is not an error.
	RemoveContainer(ctx context.Context, id string) error
	// ImagePresent tells whether ref ("repo@sha256:…") is in the engine's image store.
	ImagePresent(ctx context.Context, ref string) (bool, error)
	// PullImage starts a pull and returns the engine's progress stream (JSON messages, errors included).
	// ctx bounds the whole stream; the caller bounds inactivity.
	PullImage(ctx context.Context, ref string) (io.ReadCloser, error)
	// ContainerEvents streams the lifecycle events of the containers called name until ctx ends or the
	// stream breaks; the error channel then yields one error.
	ContainerEvents(ctx context.Context, name string) (<-chan Event, <-chan error)
}

// ContainerInfo is what the supervisor reads from an inspect.
type ContainerInfo struct {
	ID     string
	Name   string // without the leading "/"
	Image  string // the reference it was created from ("repo@sha256:…")
	Labels map[string]string
	// Status is the engine's word: created, running, paused, restarting, removing, exited or dead.
	Status     string
	Running    bool
	ExitCode   int
	OOMKilled  bool
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
}

// Event is one container lifecycle event: Action is start, die, stop, kill, oom or destroy.
type Event struct {
	Action      string
	ContainerID string
	Name        string
	ExitCode    string // die only
	Time        time.Time
}

// watchedActions are the events that can mean the node stopped (or started behind the supervisor's back).
var watchedActions = []string{"start", "die", "stop", "kill", "oom", "destroy"}

// DefaultCallTimeout bounds one Docker API call of DockerEngine (a stop adds the container's stop timeout).
const DefaultCallTimeout = 30 * time.Second

// DockerEngine is Engine over the Docker Engine API (github.com/moby/moby/client). The API version is
// negotiated with the engine on the first call (the engine here speaks 1.41).
type DockerEngine struct {
	cli     *client.Client
	timeout time.Duration
}

var _ Engine = (*DockerEngine)(nil)

// NewDockerEngine connects to the engine named by the environment (DOCKER_HOST, default the local socket).
// Every call is bounded by callTimeout (DefaultCallTimeout when 0). It does not contact the engine.
func NewDockerEngine(callTimeout time.Duration) (*DockerEngine, error) {
	return newDockerEngine(callTimeout, client.FromEnv)
}

func newDockerEngine(callTimeout time.Duration, opts ...client.Opt) (*DockerEngine, error) {
	if callTimeout <= 0 {
		callTimeout = DefaultCallTimeout
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &DockerEngine{cli: cli, timeout: callTimeout}, nil
}

// Close releases the client's connections.
func (d *DockerEngine) Close() error { return d.cli.Close() }

// call runs fn under the call deadline and names the operation and the bound in its error.
func (d *DockerEngine) call(ctx context.Context, op string, bound time.Duration, fn func(ctx context.Context) error) error {
	callCtx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	err := fn(callCtx)
	switch {
	case err == nil:
		return nil
	case callCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil: // our bound, not the caller's
		return fmt.Errorf("%s timed out after %s: %w", op, bound, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %v", op, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (d *DockerEngine) Ping(ctx context.Context) error {
	return d.call(ctx, "ping docker engine", d.timeout, func(ctx context.Context) error {
		_, err := d.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		return err
	})
}

func (d *DockerEngine) InspectContainer(ctx context.Context, nameOrID string) (ContainerInfo, error) {
	var info ContainerInfo
	err := d.call(ctx, fmt.Sprintf("inspect container %q", nameOrID), d.timeout, func(ctx context.Context) error {
		res, err := d.cli.ContainerInspect(ctx, nameOrID, client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		c := res.Container
		info = ContainerInfo{ID: c.ID, Name: trimSlash(c.Name)}
		if c.Config != nil {
			info.Image, info.Labels = c.Config.Image, c.Config.Labels
		}
		if s := c.State; s != nil {
			info.Status, info.Running, info.ExitCode = string(s.Status), s.Running, s.ExitCode
			info.OOMKilled, info.Error = s.OOMKilled, s.Error
			info.StartedAt, info.FinishedAt = parseTime(s.StartedAt), parseTime(s.FinishedAt)
		}
		return nil
	})
	return info, err
}

func (d *DockerEngine) CreateContainer(ctx context.Context, spec ContainerSpec) (string, error) {
	var id string
	err := d.call(ctx, fmt.Sprintf("create container %q", spec.Name), d.timeout, func(ctx context.Context) error {
		res, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: spec.Name, Config: spec.Config, HostConfig: spec.HostConfig})
		id = res.ID
		return err
	})
	return id, err
}

func (d *DockerEngine) StartContainer(ctx context.Context, id string) error {
	return d.call(ctx, fmt.Sprintf("start container %.12s", id), d.timeout, func(ctx context.Context) error {
		_, err := d.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
		return err
	})
}

func (d *DockerEngine) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(math.Ceil(timeout.Seconds()))
	// The engine waits up to secs for the process, kills it, then waits for it to go: allow for both.
	return d.call(ctx, fmt.Sprintf("stop container %.12s", id), timeout+d.timeout, func(ctx context.Context) error {
		_, err := d.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs})
		return err
	})
}

func (d *DockerEngine) RemoveContainer(ctx context.Context, id string) error {
	err := d.call(ctx, fmt.Sprintf("remove container %.12s", id), d.timeout, func(ctx context.Context) error {
		_, err := d.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// ManagedContainers lists the ids of every container, running or not, that carries the cl-agent.managed label.
func (d *DockerEngine) ManagedContainers(ctx context.Context) ([]string, error) {
	var ids []string
	err := d.call(ctx, "list managed containers", d.timeout, func(ctx context.Context) error {
		res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{
			All: true, Filters: make(client.Filters).Add("label", LabelManaged+"=true")})
		for _, c := range res.Items {
			ids = append(ids, c.ID)
		}
		return err
	})
	return ids, err
}

// WaitContainer waits until the container is no longer running and returns its exit code. bound limits the
// wait (a container runs as long as its process does: the caller says how long that may be).
func (d *DockerEngine) WaitContainer(ctx context.Context, id string, bound time.Duration) (int, error) {
	var code int
	err := d.call(ctx, fmt.Sprintf("wait for container %.12s", id), bound, func(ctx context.Context) error {
		res := d.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		select {
		case r := <-res.Result:
			if r.Error != nil && r.Error.Message != "" {
				return errors.New(r.Error.Message)
			}
			code = int(r.StatusCode)
			return nil
		case err := <-res.Error:
			return err
		case <-ctx.Done(): // the client only watches ctx while it sends the request
			return ctx.Err()
		}
	})
	return code, err
}

// maxLogBytes caps what ContainerLogs reads, whatever tail asks for.
const maxLogBytes = 64 << 10

// ContainerLogs returns the last tail lines the container wrote to stdout and stderr (the engine's own log, as
// `docker logs` shows it), at most 64 KiB of them; with both streams, each stream's lines keep their order.
func (d *DockerEngine) ContainerLogs(ctx context.Context, id string, tail int) (string, error) {
	var out limitedBuffer
	err := d.call(ctx, fmt.Sprintf("read the log of container %.12s", id), d.timeout, func(ctx context.Context) error {
		rc, err := d.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{
			ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(tail)})
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = stdcopy.StdCopy(&out, &out, io.LimitReader(rc, maxLogBytes+4<<10)) // + the frames' headers
		return err
	})
	return out.String(), err
}

func (d *DockerEngine) ImagePresent(ctx context.Context, ref string) (bool, error) {
	err := d.call(ctx, fmt.Sprintf("inspect image %s", ref), d.timeout, func(ctx context.Context) error {
		_, err := d.cli.ImageInspect(ctx, ref)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// PullImage starts the pull. The engine must answer the request within the call timeout; the stream then
// lives as long as ctx, which the caller bounds (with an inactivity bound of its own).
func (d *DockerEngine) PullImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(d.timeout, cancel)
	rc, err := d.cli.ImagePull(ctx, ref, client.ImagePullOptions{})
	answered := t.Stop()
	switch {
	case err != nil && !answered:
		cancel()
		return nil, fmt.Errorf("pull %s: the engine did not answer within %s: %w", ref, d.timeout, err)
	case err != nil:
		cancel()
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	case !answered: // the answer and the deadline crossed: the stream is already cancelled
		_ = rc.Close()
		return nil, fmt.Errorf("pull %s: the engine did not answer within %s", ref, d.timeout)
	}
	return &cancelOnClose{ReadCloser: rc, cancel: cancel}, nil
}

// ContainerEvents subscribes to the events of containers called name. Connecting is bounded by the call
// timeout; the stream itself has no deadline (the supervisor's periodic reconcile covers a silent one).
func (d *DockerEngine) ContainerEvents(ctx context.Context, name string) (<-chan Event, <-chan error) {
	out := make(chan Event)
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(d.timeout, cancel)
	filters := make(client.Filters).Add("type", "container").Add("container", name).Add("event", watchedActions...)
	res := d.cli.Events(ctx, client.EventsListOptions{Filters: filters}) // returns once the engine answered
	timedOut := !t.Stop()
	go func() {
		defer cancel()
		for {
			select {
			case m := <-res.Messages:
				ev := toEvent(m)
				if ev.Name != name { // the filter also matches id prefixes
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					errc <- fmt.Errorf("events of container %q: %w", name, ctx.Err())
					return
				}
			case err := <-res.Err:
				if timedOut {
					err = fmt.Errorf("subscribe to events of container %q timed out after %s: %w", name, d.timeout, err)
				} else {
					err = fmt.Errorf("events of container %q: %w", name, err)
				}
				errc <- err
				return
			}
		}
	}()
	return out, errc
}

func toEvent(m events.Message) Event {
	ev := Event{Action: string(m.Action), ContainerID: m.Actor.ID, Name: m.Actor.Attributes["name"],
		ExitCode: m.Actor.Attributes["exitCode"]}
	if m.TimeNano != 0 {
		ev.Time = time.Unix(0, m.TimeNano)
	}
	return ev
}

// cancelOnClose ends the pull request's context when the stream is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// limitedBuffer keeps the first maxLogBytes written to it and drops the rest.
type limitedBuffer struct{ strings.Builder }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxLogBytes - b.Len(); room > 0 {
		b.Builder.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func trimSlash(name string) string {
	if len(name) > 0 && name[0] == '/' {
		return name[1:]
	}
	return name
}

// parseTime reads the engine's RFC 3339 times; the zero time ("0001-01-01T00:00:00Z") stays zero.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}
