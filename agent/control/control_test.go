package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

type fakeHandler struct {
	status   Status
	restart  func(context.Context) error
	stepdown func(context.Context, bool) (string, error)
}

var _ Handler = (*fakeHandler)(nil)

func (f *fakeHandler) Status() Status                    { return f.status }
func (f *fakeHandler) Restart(ctx context.Context) error { return f.restart(ctx) }
func (f *fakeHandler) Stepdown(ctx context.Context, w bool) (string, error) {
	return f.stepdown(ctx, w)
}

func serve(t *testing.T, h Handler) (*Client, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left behind: %v", err)
		}
	})
	c := NewClient(path)
	testenv.WaitFor(t, 5*time.Second, "the control socket to answer", func() bool {
		_, err := c.Status(ctx)
		return err == nil
	})
	return c, path
}

func TestStatusRoundTripAndSocketMode(t *testing.T) {
	h := &fakeHandler{status: Status{Role: "active", InstanceID: "i-0abc", Lock: Lock{Held: true, Holder: "cl-agent/i-0abc"}, Node: Node{Container: "chainlink", Ready: true}}}
	c, path := serve(t, h)
	s, err := c.Status(context.Background())
	if err != nil || s.Role != "active" || !s.Lock.Held || s.Lock.Holder != "cl-agent/i-0abc" || !s.Node.Ready {
		t.Fatalf("got %+v, %v", s, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600 (%v)", fi.Mode().Perm(), err)
	}
}

func TestCommandsCarryTheDaemonsAnswer(t *testing.T) {
	var gotWait bool
	h := &fakeHandler{
		restart: func(context.Context) error { return errors.New("this host is standby: the active host runs the node") },
		stepdown: func(_ context.Context, wait bool) (string, error) {
			gotWait = wait
			return "handed over to cl-agent/i-0def", nil
		},
	}
	c, _ := serve(t, h)
	if _, err := c.Restart(context.Background()); err == nil || err.Error() != "this host is standby: the active host runs the node" {
		t.Errorf("restart: %v", err)
	}
	msg, err := c.Stepdown(context.Background(), true)
	if err != nil || msg != "handed over to cl-agent/i-0def" || !gotWait {
		t.Errorf("stepdown: %q %v wait=%v", msg, err, gotWait)
	}
}

func TestClientSaysWhenTheDaemonIsNotRunning(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "absent.sock"))
	if _, err := c.Status(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("got %v", err)
	}
}
