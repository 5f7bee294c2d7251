// Package control is the operator's channel to a running daemon: HTTP over a unix socket that only the daemon's
// user can open (mode 0600 in a 0700 runtime directory). `cl-agent status`, `restart` and `stepdown` are its
// clients. The daemon implements Handler; the package knows nothing of its state machine.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cl-agent/cl-agent/agent/exitcode"
)

// Status is what `cl-agent status --json` prints. Field names are part of the public interface (README, Commands: `status --json`).
type Status struct {
	Role       string    `json:"role"` // standby | starting | active | fencing | stopping
	InstanceID string    `json:"instance_id"`
	Since      time.Time `json:"since"` // when the role began
	Lock       Lock      `json:"lock"`
	Node       Node      `json:"node"`
	Message    string    `json:"message,omitempty"` // what the agent is doing or waiting for
	LastError  string    `json:"last_error,omitempty"`
	Checks     []Check   `json:"checks,omitempty"` // each health check's last result
	Image      Image     `json:"image"`
}

// Image is the pair's image as this host last read it from the database, and the upgrade under way or last done.
type Image struct {
	Pair    string   `json:"pair,omitempty"`            // the pair's recorded image, repository:tag@digest ("" none yet)
	Highest string   `json:"highest_release,omitempty"` // the highest release that ever ran against the database
	Policy  string   `json:"policy"`                    // image.upgrade: manual | auto
	Upgrade *Upgrade `json:"upgrade,omitempty"`
	// ReadError says why the record could not be read, when it could not (the rest is then the last read).
	ReadError string `json:"read_error,omitempty"`
}

// Upgrade is one upgrade of the pair's image (agent/pair).
type Upgrade struct {
	Phase     string    `json:"phase"` // requested validated switching starting | done refused rolled_back failed
	Candidate string    `json:"candidate"`
	Reason    string    `json:"reason,omitempty"`
	By        string    `json:"by,omitempty"` // the instance that wrote the phase
	At        time.Time `json:"at"`
	Finished  bool      `json:"finished"` // the phase is an outcome (done, refused, rolled_back, failed)
}

// UpgradeRequest is `cl-agent upgrade`.
type UpgradeRequest struct {
	To             string // a tag; "" the newest stable release within image.major
	AllowDowngrade bool
	Wait           bool // answer once the upgrade has an outcome
}

// Check is the last result of one health check.
type Check struct {
	Name    string    `json:"name"`
	OK      bool      `json:"ok"`
	Skipped bool      `json:"skipped,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

// Lock describes the advisory lock as this host sees it.
type Lock struct {
	Enabled bool   `json:"enabled"`
	Held    bool   `json:"held"`
	Holder  string `json:"holder"` // the holder's application_name (cl-agent/<instance-id>), "" if none
	Key     int64  `json:"key"`
}

// Node describes this host's node container.
type Node struct {
	Container string `json:"container"`
	State     string `json:"state"`
	Image     string `json:"image"`
	Digest    string `json:"digest"`
	Ready     bool   `json:"ready"`
	Restarts  int    `json:"restarts"`
}

// Handler is what the daemon offers its operator.
type Handler interface {
	Status() Status
	// Restart re-fetches the secrets and recreates the node; an error says why it cannot (e.g. standby).
	Restart(ctx context.Context) error
	// Stepdown hands over: stop the node, release the lock, stay out for the hold period. With wait, it returns
	// once the peer holds the lock.
	Stepdown(ctx context.Context, wait bool) (string, error)
	// Upgrade asks for the pair to move to another image (agent/pair); with Wait it returns its outcome.
	Upgrade(ctx context.Context, req UpgradeRequest) (string, error)
}

// Serve answers on the unix socket at path until ctx is done.
func Serve(ctx context.Context, path string, h Handler) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return err
	}
	old := syscall.Umask(0o177) // the socket is born 0600: no window in which others could connect
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, h.Status()) })
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		if err := h.Restart(r.Context()); err != nil {
			reply(w, http.StatusConflict, errorBody{Error: err.Error(), Code: exitcode.Of(err)})
			return
		}
		reply(w, http.StatusOK, message{"node restarted and ready"})
	})
	mux.HandleFunc("POST /stepdown", func(w http.ResponseWriter, r *http.Request) {
		msg, err := h.Stepdown(r.Context(), r.URL.Query().Get("wait") == "1")
		if err != nil {
			reply(w, http.StatusConflict, errorBody{Error: err.Error(), Code: exitcode.Of(err)})
			return
		}
		reply(w, http.StatusOK, message{msg})
	})
	mux.HandleFunc("POST /upgrade", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		msg, err := h.Upgrade(r.Context(), UpgradeRequest{To: q.Get("to"), AllowDowngrade: q.Get("allow_downgrade") == "1",
			Wait: q.Get("wait") == "1"})
		if err != nil {
			reply(w, http.StatusConflict, errorBody{Error: err.Error(), Code: exitcode.Of(err)})
			return
		}
		reply(w, http.StatusOK, message{msg})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err = srv.Serve(l)
	_ = os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// SocketPathError is a control.socket path the daemon will not take: something other than a socket is there,
// or another daemon still answers on it. Nothing was removed. Exit code 2: the configuration must change.
type SocketPathError struct {
	Path   string
	Reason string
}

func (e *SocketPathError) Error() string {
	return fmt.Sprintf("control socket %s: %s; cl-agent did not remove it: set control.socket to a path of its own", e.Path, e.Reason)
}

// ExitCode is 2 (bad configuration): restarting cannot help.
func (e *SocketPathError) ExitCode() int { return exitcode.Config }

// removeStaleSocket removes the socket an earlier daemon left at path. Anything else there (a file, a
// directory, a link) is not the agent's, and a socket that still answers belongs to a running daemon: both are
// refused with a *SocketPathError and left alone.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return &SocketPathError{Path: path, Reason: fmt.Sprintf("the path exists and is not a socket (%s)", describeMode(fi.Mode()))}
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = conn.Close()
		return &SocketPathError{Path: path, Reason: "another process (a running cl-agent?) answers on it"}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the stale control socket %s: %w", path, err)
	}
	return nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "mode " + m.String()
}

type message struct {
	Message string `json:"message"`
}

type errorBody struct {
	Error string `json:"error"`
	Code  int    `json:"code,omitempty"` // the exit code the refusal carries (agent/exitcode)
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrNotRunning means nothing answers on the socket: the daemon is not running (or runs with another socket).
var ErrNotRunning = errors.New("the cl-agent daemon is not running")

// Client talks to the daemon.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client for the socket at path. Each call is bounded by its context.
func NewClient(path string) *Client {
	return &Client{path: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Status asks for the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.call(ctx, http.MethodGet, "/status", &s)
}

// Restart asks the daemon to recreate its node and returns its answer.
func (c *Client) Restart(ctx context.Context) (string, error) {
	var m message
	err := c.call(ctx, http.MethodPost, "/restart", &m)
	return m.Message, err
}

// Stepdown asks the daemon to hand over.
func (c *Client) Stepdown(ctx context.Context, wait bool) (string, error) {
	var m message
	path := "/stepdown"
	if wait {
		path += "?wait=1"
	}
	err := c.call(ctx, http.MethodPost, path, &m)
	return m.Message, err
}

// Upgrade asks the daemon to upgrade the pair's image.
func (c *Client) Upgrade(ctx context.Context, req UpgradeRequest) (string, error) {
	q := url.Values{}
	if req.To != "" {
		q.Set("to", req.To)
	}
	if req.AllowDowngrade {
		q.Set("allow_downgrade", "1")
	}
	if req.Wait {
		q.Set("wait", "1")
	}
	path := "/upgrade"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var m message
	err := c.call(ctx, http.MethodPost, path, &m)
	return m.Message, err
}

func (c *Client) call(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://cl-agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no answer on %s)", ErrNotRunning, c.path)
		}
		if errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("cannot open the control socket %s: permission denied (run as the daemon's user, e.g. with sudo)", c.path)
		}
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the daemon's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if e.Code > exitcode.Retry { // a refusal the daemon gave an exit code (2, 5): the command exits with it
				return exitcode.New(e.Code, errors.New(e.Error))
			}
			return errors.New(e.Error)
		}
		return fmt.Errorf("the daemon answered %s", resp.Status)
	}
	return json.Unmarshal(body, out)
}
