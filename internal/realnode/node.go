package realnode

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Where a node's files are inside its container, and who it runs as: as agent/container.Spec has them.
const (
	// User is the published images' chainlink uid:gid.
	User = "14933:14933"
	// UID and GID are User's numbers, for chown-ing host directories the node writes.
	UID, GID = 14933, 14933
)

// Bounds of the docker calls and of the node's own steps.
const (
	dockerTimeout   = 2 * time.Minute  // one docker CLI call (run -d, stop, rm, port, logs)
	validateTimeout = 2 * time.Minute  // `chainlink node … validate` in a throwaway container
	stopTimeout     = 10 * time.Second // docker stop -t: the node's grace after SIGTERM, as the agent's default
	probeTimeout    = 2 * time.Second  // one GET /readyz
)

// Files is what a node container gets from the host.
type Files struct {
	// SecretsDir holds the rendered files (config.toml, secrets.toml, .password, .api), mounted read-only at
	// nodefiles.SecretsMount.
	SecretsDir string
	// DataDir is the node's RootDir, mounted read-write at nodefiles.DataMount; it must be writable by UID.
	// Validate makes a throwaway one when it is empty.
	DataDir string
	// ReadOnly are host paths mounted read-only at the same path (e.g. the database CA of sslrootcert).
	ReadOnly []string
}

func (f Files) mountArgs() []string {
	args := []string{
		"--mount", "type=bind,source=" + f.SecretsDir + ",target=" + nodefiles.SecretsMount + ",readonly",
		"--mount", "type=bind,source=" + f.DataDir + ",target=" + nodefiles.DataMount,
	}
	for _, p := range f.ReadOnly {
		args = append(args, "--mount", "type=bind,source="+p+",target="+p+",readonly")
	}
	return args
}

// DataDir makes an empty directory owned by the node's user under t.TempDir, for Files.DataDir.
func DataDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node-data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("realnode: data dir: %v", err)
	}
	if err := os.Chown(dir, UID, GID); err != nil {
		t.Fatalf("realnode: chown data dir to %s: %v", User, err)
	}
	return dir
}

// Validate runs `chainlink node -config … -secrets … validate` on the files in f.SecretsDir in a throwaway
// container and returns what the node printed. err is non-nil when the node refused them (exit status non-zero)
// or the container could not run. validate writes a log file under RootDir: with an empty f.DataDir a throwaway
// one is mounted there.
func Validate(t testing.TB, image string, f Files) (output string, err error) {
	t.Helper()
	if f.DataDir == "" {
		f.DataDir = DataDir(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), validateTimeout)
	defer cancel()
	name := containerName("validate")
	t.Cleanup(func() { removeContainer(name) })
	args := append([]string{"run", "--rm", "--name", name, "--network", "bridge", "--user", User}, f.mountArgs()...)
	args = append(args, image, "node",
		"-config", nodefiles.SecretsMount+"/"+nodefiles.ConfigFile,
		"-secrets", nodefiles.SecretsMount+"/"+nodefiles.SecretsFile, "validate")
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("node validate timed out after %s: %w", validateTimeout, ctx.Err())
	}
	if err != nil {
		return string(out), fmt.Errorf("node validate: %w", err)
	}
	return string(out), nil
}

// Node is a running real node container.
type Node struct {
	Name string
	// URL is the node's HTTP server as this host reaches it: http://127.0.0.1:PORT.
	URL string
	// Started is when the container was started (docker run returned): the origin of start → ready.
	Started time.Time

	t      testing.TB
	client *http.Client
}

// Start runs the real node: image with cmd (the arguments after the `chainlink` entrypoint, e.g. a rendered
// nodefiles.Rendered.Cmd) on the files in f, detached, and returns once the container runs. It does not wait
// for the node: see WaitReady. The container is removed at cleanup; if the test failed, its log is attached.
func Start(t testing.TB, image string, f Files, cmd []string) *Node {
	t.Helper()
	name := containerName("node")
	n := &Node{Name: name, t: t, client: &http.Client{Timeout: probeTimeout}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("realnode: log of %s (tail):\n%s", name, n.logTail(200))
		}
		removeContainer(name)
	})
	args := append([]string{"run", "-d", "--name", name, "--network", "bridge", "--user", User,
		"--stop-timeout", strconv.Itoa(int(stopTimeout.Seconds())),
		"--publish", "127.0.0.1::" + strconv.Itoa(nodefiles.NodePort)}, f.mountArgs()...)
	args = append(append(args, image), cmd...)
	if _, err := docker(args...); err != nil {
		t.Fatalf("realnode: start node: %v", err)
	}
	n.Started = time.Now()
	hostPort, err := docker("port", name, strconv.Itoa(nodefiles.NodePort)+"/tcp")
	if err != nil {
		t.Fatalf("realnode: published port of %s: %v", name, err)
	}
	// One line per address family; the first is 127.0.0.1:PORT, the only address it was published on.
	addr := strings.TrimSpace(strings.SplitN(hostPort, "\n", 2)[0])
	if _, _, err := net.SplitHostPort(addr); err != nil {
		t.Fatalf("realnode: docker port %s printed %q: %v", name, hostPort, err)
	}
	n.URL = "http://" + addr
	return n
}

// Ready reports whether GET /readyz answers 200 now.
func (n *Node) Ready() bool {
	code, _ := n.Get("/readyz")
	return code == http.StatusOK
}

// Get sends one GET to the node's HTTP server (bound probeTimeout) and returns the status code (0 when there was
// no answer) and the error.
func (n *Node) Get(path string) (int, error) {
	resp, err := n.client.Get(n.URL + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// WaitReady polls /readyz until it answers 200 and returns the time since Started. It fails the test when bound
// passes first or the container stops, with the node's log.
func (n *Node) WaitReady(bound time.Duration) time.Duration {
	n.t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(20 * time.Millisecond) // the probe's pace: the resolution of start → ready
	defer tick.Stop()
	var lastAlive time.Time
	for !n.Ready() {
		if time.Since(lastAlive) > 500*time.Millisecond { // a docker CLI call each time: not at the probe's pace
			if !n.Running() {
				n.t.Fatalf("realnode: %s exited before /readyz answered 200:\n%s", n.Name, n.logTail(60))
			}
			lastAlive = time.Now()
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("realnode: %s: /readyz not 200 within %s:\n%s", n.Name, bound, n.logTail(60))
		}
		<-tick.C
	}
	return time.Since(n.Started)
}

// WaitLog polls the node's log (every 100 ms) until a line satisfies match and returns that line. It fails the
// test when bound passes first.
func (n *Node) WaitLog(bound time.Duration, what string, match func(line string) bool) string {
	n.t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, line := range strings.Split(n.Logs(), "\n") {
			if match(line) {
				return line
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("realnode: %s: no log line %s within %s:\n%s", n.Name, what, bound, n.logTail(60))
		}
		<-tick.C
	}
}

// Running reports whether the container is running.
func (n *Node) Running() bool {
	out, err := docker("inspect", "-f", "{{.State.Running}}", n.Name)
	return err == nil && strings.TrimSpace(out) == "true"
}

// Stop stops the node the way the agent does (SIGTERM, then SIGKILL after stopTimeout) and returns how long the
// stop took. The container stays until cleanup, so its log can still be read.
func (n *Node) Stop() time.Duration {
	n.t.Helper()
	start := time.Now()
	if _, err := docker("stop", "-t", strconv.Itoa(int(stopTimeout.Seconds())), n.Name); err != nil {
		n.t.Fatalf("realnode: stop %s: %v", n.Name, err)
	}
	return time.Since(start)
}

// ExitCode is the container's exit status once it has stopped.
func (n *Node) ExitCode() int {
	n.t.Helper()
	out, err := docker("inspect", "-f", "{{.State.ExitCode}}", n.Name)
	if err != nil {
		n.t.Fatalf("realnode: inspect %s: %v", n.Name, err)
	}
	code, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		n.t.Fatalf("realnode: exit code of %s: %q", n.Name, out)
	}
	return code
}

// Logs is everything the node wrote to stdout and stderr so far.
func (n *Node) Logs() string {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "logs", n.Name).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(docker logs %s: %v: %s)", n.Name, err, out)
	}
	return string(out)
}

func (n *Node) logTail(lines int) string {
	all := strings.Split(strings.TrimRight(n.Logs(), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// docker runs one docker CLI command, bounded by dockerTimeout, and returns its standard output.
func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return "", fmt.Errorf("docker %s timed out after %s", args[0], dockerTimeout)
	}
	if err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func removeContainer(name string) { _, _ = docker("rm", "-f", "-v", name) }

func containerName(kind string) string {
	return "cl-agent-realnode-" + kind + "-" + testenv.RandomHex(6)
}
