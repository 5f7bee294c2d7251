package ha

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// rotationPoll is secrets.poll_interval in the rotation scenario: the smallest the configuration accepts.
const rotationPoll = 10 * time.Second

// TestDatabasePasswordRotationHA is issue 12 item 1 on two hosts: RDS-style rotation of the database password
// (ALTER ROLE on the server, then a new version of the secret) while host1 is the active. The active must stay
// the active and restart its node exactly once with the new password, the standby must stay a campaigning standby
// that logs in with the new password, every login of both agents (lock session, takeover proof, health reports)
// must follow it, and `cl-agent restart` must still work afterwards. Before the fix, the next start of the node
// failed with "password authentication failed (28P01)" for good.
//
// Restarts are counted two ways: the active agent's `node.restarts` (container starts after the first, this term)
// and the Docker start events of the active's node container (a restart recreates it: the id changes).
func TestDatabasePasswordRotationHA(t *testing.T) {
	c := newCluster(t)
	for _, h := range c.hosts {
		h.editConfig(t, "secrets:\n", "secrets:\n  poll_interval: "+rotationPoll.String()+"\n")
	}
	active, standby := c.bringUp(t)
	before := active.statusCLI(t)
	_, _, _, oldID := inspectState(active.container)
	rec := c.record(t)
	sampler := sampleReadyz(active.port)
	defer sampler.stop()
	standbyLog := standby.logOffset()

	t0 := time.Now()
	altered, put := c.rotateDBPassword(t)

	// The active notices the new version within a poll interval and restarts its node once.
	var st = before
	if !testenv.Poll(rotationPoll+settleBound, pollEvery, func() bool {
		s, err := active.status()
		if err == nil {
			st = s
		}
		return err == nil && s.Node.Restarts > before.Node.Restarts && s.Node.Ready
	}) {
		t.Fatalf("%s did not restart its node with the rotated password within %s: %s", active.name, rotationPoll+settleBound, brief(st))
	}
	readyAgain := waitReadyz(t, active.port, settleBound, "after the rotation's restart")
	down, outages := sampler.stop()
	restarted := rec.first(active.container, "start", t0)
	t.Logf("rotation: node not ready for %.1fs, %d restart (node.restarts %d → %d; secret put to node ready again %.1fs, to its new container's start %.1fs)",
		down.Seconds(), st.Node.Restarts-before.Node.Restarts, before.Node.Restarts, st.Node.Restarts,
		readyAgain.Sub(put).Seconds(), restarted.Sub(put).Seconds())
	if outages != 1 {
		t.Errorf("the active's /readyz went down %d times around the rotation; want once (one restart)", outages)
	}
	if _, _, _, id := inspectState(active.container); id == oldID {
		t.Errorf("the node's container %.12s was not recreated after the rotation", id)
	}

	// Exactly once: one more rotation check finds nothing new, and nothing else restarts the node.
	_, _, _, rotatedID := inspectState(active.container)
	var why string
	if testenv.Poll(rotationPoll+3*time.Second, pollEvery, func() bool {
		s, err := active.status()
		_, _, _, id := inspectState(active.container)
		switch {
		case err != nil:
			return false
		case s.Role != "active" || !s.Lock.Held:
			why = "the active is no longer the active: " + brief(s)
		case s.Node.Restarts != st.Node.Restarts || id != rotatedID:
			why = "the node restarted again: " + brief(s)
		default:
			return false
		}
		return true
	}) {
		t.Errorf("within a poll interval after the rotation's restart: %s", why)
	}
	if n := countStarts(rec, active.container, t0); n != 1 {
		t.Errorf("the active's node container started %d times after the rotation; want 1:\n%s", n, rec.events())
	}
	if !rec.first(standby.container, "start", t0).IsZero() {
		t.Errorf("the standby started a node during the rotation (a failover):\n%s", rec.events())
	}

	// The standby took the new value and campaigns with it: its lock session was opened after the ALTER ROLE.
	if !testenv.Poll(rotationPoll+10*time.Second, pollEvery, func() bool {
		n, err := c.sessionsSince(standby.appName(), altered)
		return err == nil && n > 0 && strings.Contains(standby.logSince(standbyLog), "the standby holds the new values")
	}) {
		t.Errorf("%s: no lock session opened with the rotated password within %s (log since the rotation:\n%s)",
			standby.name, rotationPoll+10*time.Second, standby.logSince(standbyLog))
	}
	c.waitSettled(t, active, settleBound)
	// Both hosts hold the new password now: no login of theirs may fail from here on.
	taken := [2]int64{c.hosts[0].logOffset(), c.hosts[1].logOffset()}

	// Health reports and the takeover proof log in again with the new password once their sessions end.
	cut := time.Now()
	if n := c.terminateTakeoverSessions(t); n == 0 {
		t.Errorf("no takeover session (cl-agent-takeover/…) to end: the agents hold none")
	}
	reportBound := 3 * healthReportEvery
	for _, h := range c.hosts {
		if !testenv.Poll(reportBound, pollEvery, func() bool {
			ok, err := c.reportedSince(h, cut)
			return err == nil && ok
		}) {
			t.Errorf("%s wrote no health report within %s after its takeover session was ended: it cannot log in with the rotated password", h.name, reportBound)
		}
	}

	// The operator's restart still works, with the new password.
	out, err := active.cli(context.Background(), cmdBound, "restart")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "restarted") {
		t.Errorf("cl-agent restart on %s said %q; want \"node restarted …\"", active.name, out)
	}
	if s := active.statusCLI(t); s.Role != "active" || !s.Node.Ready || s.Node.Restarts != st.Node.Restarts+1 {
		t.Errorf("after cl-agent restart: %s, node.restarts %d; want active, ready, restarts %d", brief(s), s.Node.Restarts, st.Node.Restarts+1)
	}
	if readyz(active.port) != http.StatusOK {
		t.Errorf("after cl-agent restart, the node's /readyz is not 200")
	}
	c.verify(t, rec, active)
	for i, h := range c.hosts {
		if l := h.logSince(taken[i]); strings.Contains(l, "28P01") || strings.Contains(l, "password authentication failed") {
			t.Errorf("%s logged a failed login after taking the rotated password", h.name)
		}
	}

	// The standby can run the node with the new password: hand it over and back.
	c.stepdown(t)
	c.stepdown(t)
}

// healthReportEvery is how often each agent writes its health report (agent/daemon's healthReportEvery).
const healthReportEvery = 5 * time.Second

// countStarts is how many times the container started at or after t.
func countStarts(r *recorder, name string, t time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.evs {
		if e.name == name && e.action == "start" && !e.at.Before(t) {
			n++
		}
	}
	return n
}
