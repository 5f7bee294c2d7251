package ha

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// oldModel is what the agent replaces: both hosts run the node all the time (docker run, as the shell approach
// did) and only the node's own database lease (default 10 s, refreshed every second) keeps the second one
// waiting. It runs on a database of its own, with the agents stopped, on the cluster's node image (the stand-in or
// the real node: the same docker run, the same command line).
type oldModel struct {
	c     *cluster
	nodes [2]oldNode
}

type oldNode struct {
	name string // container name
	port int
	// What its docker run mounts: the data directory, the rendered files (on the tmpfs), the database CA.
	data, files, ca string
	hostname        string
}

// newOldModel stops the agents (their nodes go with them), renders each host's node files once with
// `cl-agent render` (the replacement of the old create-env scripts) and starts both nodes with docker run.
func (c *cluster) newOldModel(tb testing.TB) *oldModel {
	tb.Helper()
	for _, h := range c.hosts {
		h.stop(tb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupBound)
	defer cancel()
	db := c.db + "_old"
	if err := c.pg.CreateDatabase(ctx, db, dbUser, c.dbPassword); err != nil {
		tb.Fatal(err)
	}
	o := &oldModel{c: c}
	for i, h := range c.hosts {
		name := h.container + "-old"
		port := testenv.FreePort(tb)
		dir := filepath.Join(h.dir, "old")
		cfg := filepath.Join(dir, "config.yaml")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			tb.Fatal(err)
		}
		text := h.config(h.imdsURL, h.ca, h.secretIDs, db, name, port, false)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
		files := filepath.Join(h.dir, "secrets", "old") // on the tmpfs
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o700); err != nil {
			tb.Fatal(err)
		}
		// The published images' user, which the stand-in's image uses too.
		if err := os.Chown(data, realnode.UID, realnode.GID); err != nil {
			tb.Fatal(err)
		}
		if out, err := h.cli(ctx, cmdBound, "render", "--out", files, "--config", cfg); err != nil {
			tb.Fatalf("%v\n%s", err, out)
		}
		tb.Cleanup(func() { _, _ = docker(context.Background(), "rm", "--force", name) })
		o.nodes[i] = oldNode{name: name, port: port, data: data, files: files, ca: h.ca, hostname: h.id.InstanceID}
		if err := o.nodes[i].run(ctx, c.repo+":"+c.tag); err != nil {
			tb.Fatal(err)
		}
	}
	return o
}

// run is the old model's docker run of the node on image ref.
func (n oldNode) run(ctx context.Context, ref string) error {
	_, err := docker(ctx, "run", "--detach", "--name", n.name, "--hostname", n.hostname,
		"--user", realnode.User, "--publish", strconv.Itoa(n.port)+":6688",
		"--mount", "type=bind,src="+n.data+",dst=/chainlink",
		"--mount", "type=bind,src="+n.files+",dst=/run/chainlink,readonly",
		"--mount", "type=bind,src="+n.ca+",dst="+n.ca+",readonly",
		"--log-driver", "json-file", "--log-opt", "max-size=1m",
		ref,
		"node", "-config", "/run/chainlink/config.toml", "-secrets", "/run/chainlink/secrets.toml", "start",
		"-p", "/run/chainlink/.password", "-a", "/run/chainlink/.api")
	return err
}

// roles waits until one node is ready (it holds the lease) and the other runs and waits for the lease.
func (o *oldModel) roles(tb testing.TB) (holder, waiter oldNode) {
	tb.Helper()
	var why string
	bound := settleBound + o.c.nodeBoot
	if !testenv.Poll(bound, pollEvery, func() bool {
		a, b := readyz(o.nodes[0].port), readyz(o.nodes[1].port)
		switch {
		case a == http.StatusOK && b != http.StatusOK:
			holder, waiter = o.nodes[0], o.nodes[1]
		case b == http.StatusOK && a != http.StatusOK:
			holder, waiter = o.nodes[1], o.nodes[0]
		default:
			why = fmt.Sprintf("/readyz %d and %d", a, b)
			return false
		}
		for _, n := range o.nodes {
			if running, _, _, _ := inspectState(n.name); !running {
				why = n.name + " is not running"
				return false
			}
		}
		return true
	}) {
		tb.Fatalf("old model: not one holder and one waiting node within %s: %s%s", bound, why, o.logs())
	}
	return holder, waiter
}

// failover stops the node holding the lease with `docker <verb>` (kill: a crash, SIGKILL, the lease is left to
// expire; stop: SIGTERM, the node releases it) and returns the time until the other node answers /readyz 200.
// Until then both containers ran (roles checks it): in this model the overlap is the steady state. The stopped
// node is started again and waits for the lease, for the next run.
func (o *oldModel) failover(tb testing.TB, verb string) time.Duration {
	tb.Helper()
	holder, waiter := o.roles(tb)
	t0 := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := docker(context.Background(), verb, holder.name)
		done <- err
	}()
	t1 := waitReadyz(tb, waiter.port, 30*time.Second+o.c.nodeBoot, "old model: after docker "+verb+" of the lease holder")
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	restarted := time.Now()
	if _, err := docker(context.Background(), "start", holder.name); err != nil {
		tb.Fatal(err)
	}
	// Both nodes log it: the stand-in "… waiting for lease", the real one "Another application is currently holding
	// the database lease (or a previous instance exited uncleanly), waiting for lease to expire...".
	if !testenv.Poll(30*time.Second+o.c.nodeBoot, pollEvery, func() bool {
		out, _ := containerLogs(context.Background(), holder.name, "--since", restarted.Add(-time.Second).Format(time.RFC3339Nano))
		return strings.Contains(out, "waiting for lease")
	}) {
		tb.Fatalf("old model: %s did not wait for the lease after its restart", holder.name)
	}
	return t1.Sub(t0)
}

// stop removes both nodes: the old model is over (cleanup would remove them at the end of the test anyway).
func (o *oldModel) stop(tb testing.TB) {
	tb.Helper()
	for _, n := range o.nodes {
		if _, err := docker(context.Background(), "rm", "--force", n.name); err != nil {
			tb.Errorf("old model: remove %s: %v", n.name, err)
		}
	}
}

// logs is the tail of both nodes' logs, for failure messages.
func (o *oldModel) logs() string {
	var b strings.Builder
	for _, n := range o.nodes {
		out, err := containerLogs(context.Background(), n.name, "--tail", "30")
		fmt.Fprintf(&b, "\n--- %s log (tail; %v) ---\n%s", n.name, err, out)
	}
	return b.String()
}
