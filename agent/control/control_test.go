package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

type fakeHandler struct {
	status   Status
	restart  func(context.Context) error
	stepdown func(context.Context, bool) (string, error)
	upgrade  func(context.Context, UpgradeRequest) (string, error)
}

var _ Handler = (*fakeHandler)(nil)

func (f *fakeHandler) Status() Status                    { return f.status }
func (f *fakeHandler) Restart(ctx context.Context) error { return f.restart(ctx) }
func (f *fakeHandler) Stepdown(ctx context.Context, w bool) (string, error) {
	return f.stepdown(ctx, w)
}

func (f *fakeHandler) Upgrade(ctx context.Context, req UpgradeRequest) (string, error) {
	return f.upgrade(ctx, req)
}

// TestUpgradeCarriesTheRequest: the client's request reaches the handler whole, and a refusal comes back as the
// client's error with the exit code the daemon gave it.
func TestUpgradeCarriesTheRequest(t *testing.T) {
	var got []UpgradeRequest
	h := &fakeHandler{upgrade: func(_ context.Context, req UpgradeRequest) (string, error) {
		got = append(got, req)
		if req.To == "1.0.0" {
			return "", exitcode.New(exitcode.Terminal, errors.New("image 1.0.0 is older than 2.19.0"))
		}
		return "upgrade to " + req.To + " requested", nil
	}}
	c, _ := serve(t, h)
	want := UpgradeRequest{To: "2.20.0", AllowDowngrade: true, Wait: true}
	if msg, err := c.Upgrade(context.Background(), want); err != nil || msg != "upgrade to 2.20.0 requested" {
		t.Fatalf("upgrade: %q %v", msg, err)
	}
	_, err := c.Upgrade(context.Background(), UpgradeRequest{To: "1.0.0"})
	if err == nil || !strings.Contains(err.Error(), "older than 2.19.0") || exitcode.Of(err) != exitcode.Terminal {
		t.Fatalf("refused upgrade: %v (exit %d, want the daemon's %d)", err, exitcode.Of(err), exitcode.Terminal)
	}
	if _, err := c.Upgrade(context.Background(), UpgradeRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != want || got[1] != (UpgradeRequest{To: "1.0.0"}) || got[2] != (UpgradeRequest{}) {
		t.Fatalf("the handler got %+v", got)
	}
}

func serve(t *testing.T, h Handler) (*Client, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	return serveAt(t, path, h), path
}

func serveAt(t *testing.T, path string, h Handler) *Client {
	t.Helper()
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
	return c
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

// TestServeTakesOnlyAStaleSocket: Serve replaces a socket an earlier daemon left behind, but a file, a
// directory or a link at control.socket is not the agent's (it used to be deleted), and a socket that still
// answers is another daemon's: each is refused with exit code 2 and left where it was.
func TestServeTakesOnlyAStaleSocket(t *testing.T) {
	h := &fakeHandler{status: Status{Role: "standby"}}
	t.Run("StaleSocketIsReplaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "control.sock")
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false) // as a killed daemon leaves it
		l.Close()
		c := serveAt(t, path, h)
		if s, err := c.Status(context.Background()); err != nil || s.Role != "standby" {
			t.Fatalf("got %+v, %v", s, err)
		}
	})
	refusals := []struct {
		name  string
		setup func(t *testing.T, path string)
		says  string
	}{
		{"RegularFile", func(t *testing.T, path string) { writeFile(t, path) }, "is not a socket (a regular file)"},
		{"Directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(path, "inside"))
		}, "is not a socket (a directory)"},
		{"LinkToAFile", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "target")
			writeFile(t, target)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, "is not a socket (a symbolic link)"},
		{"LiveSocket", func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}, "answers on it"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "control.sock")
			tc.setup(t, path)
			before := describe(t, path)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := Serve(ctx, path, h)
			var se *SocketPathError
			if !errors.As(err, &se) || se.ExitCode() != 2 {
				t.Fatalf("Serve: %v (%T), want a *SocketPathError", err, err)
			}
			for _, want := range []string{path, tc.says, "did not remove it", "control.socket"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if after := describe(t, path); after != before {
				t.Errorf("the path changed: %s, then %s", before, after)
			}
		})
	}
}

func writeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("not the agent's"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// describe is what must not change: the entry's type and mode, and a file's bytes or a directory's names.
func describe(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		return err.Error()
	}
	d := fi.Mode().String()
	if fi.Mode().IsRegular() {
		b, _ := os.ReadFile(path)
		d += " " + string(b)
	}
	if fi.IsDir() {
		entries, _ := os.ReadDir(path)
		for _, e := range entries {
			d += " " + e.Name()
		}
	}
	return d
}
