package ha

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Rotations of the node's three secrets under the agents, on the real Chainlink node v2.19.0 (README: Secrets,
// Rotating the keystore password).

// realNodeRateLimits raises the real node's request limits for the rotation cluster (node.extra_toml). By default
// the node takes 5 logins per 20 s per client and 1000 requests of any kind per minute; every request of the test
// and of both agents reaches it from one client address (the docker bridge's), so the test's login probes would
// eat the agent's logins and the 20 ms readiness sampler alone would be refused (429) after 20 s.
const realNodeRateLimits = `  extra_toml: |
    [WebServer.RateLimit]
    Authenticated = 100000
    Unauthenticated = 1000
`

// Bounds of the rotation scenarios on the real node.
const (
	// apiMoveBound: from the put of a new API password to the node's user moved to it: one poll interval, the
	// agent's login, PATCH and login again (bcrypt on the node), and slack for a loaded machine.
	apiMoveBound = rotationPoll + 20*time.Second
	// keystoreCheckBound: from the put of a keystore password to its verdict on both hosts: one poll interval and
	// the check against the key ring (the node's scrypt, 2–4 s on two cores), with the same slack.
	keystoreCheckBound = rotationPoll + 30*time.Second
	// quietBound: a rotation check that must change nothing on the node is over within this.
	quietBound = rotationPoll + 5*time.Second
	// loginBound bounds one POST /sessions (bcrypt on the node).
	loginBound = 10 * time.Second
	// restartCLIBound bounds `cl-agent restart` on the real node: the fetch, the key ring check, the stop and a
	// ready node again.
	restartCLIBound = 2 * time.Minute
)

// The agent's words (agent/daemon/rotation.go) that tests look for.
const (
	keystoreHeldWords   = "held back"                                                       // the keystore problem in status
	keystoreHeldLogLine = "the rotated keystore password does not open the node's key ring" // logged once per version
	apiNotAppliedWords  = "rotated API password not applied yet"                            // the API problem in status
	metricKeystoreHeld  = "cl_agent_keystore_rotation_held"
)

// TestRealNodeRotations rotates each of the node's secrets in Secrets Manager under two agents on the real node
// v2.19.0 (one cluster, the subtests in sequence, each ending settled): the API password moves the node's user
// through its API without a restart; a keystore password that does not open the node's key ring is held back (no
// restart, a problem in status on both hosts, the metric at 1) until the original is back; the RDS-style database
// password rotation restarts the node once. The figures are logged.
func TestRealNodeRotations(t *testing.T) {
	c := newRealNodeCluster(t)
	for _, h := range c.hosts {
		h.editConfig(t, "secrets:\n", "secrets:\n  poll_interval: "+rotationPoll.String()+"\n")
		h.editConfig(t, "node:\n", "node:\n"+realNodeRateLimits)
	}
	first := c.firstStart(t)
	t.Logf("first start on the real node %s: `cl-agent run` → node /readyz 200 %s", c.tag, first.agentToNode.Round(time.Millisecond))
	c.bringUp(t)

	api := apiPassword // the API password the node's user has now
	t.Run("APIPassword", func(t *testing.T) { api = c.rotateAPIPassword(t, api) })
	t.Run("KeystoreHeldBack", func(t *testing.T) { c.keystoreHeldBack(t) })
	t.Run("DatabasePassword", func(t *testing.T) { c.databasePasswordRealNode(t) })
}

// rotateAPIPassword puts a new API password and checks that the active's node takes it (and refuses the old one)
// within a poll interval, on the same container, with no gap in readiness and no failover. It returns the new
// password.
func (c *cluster) rotateAPIPassword(t *testing.T, old string) string {
	defer c.logsOnFailure(t)
	a, _ := c.waitSettled(t, nil, settleBound)
	if code, err := nodeLogin(a.port, apiEmail, old); code != http.StatusOK {
		t.Fatalf("before the rotation, %s's node answers POST /sessions with the held API password %d (%v); want 200", a.name, code, err)
	}
	before, run, rec, sampler := c.baseline(t, a)
	offset := a.logOffset()

	t0 := time.Now()
	next := "Api-Rotated:/?#%@-" + testenv.RandomHex(8) // 34 bytes, no white space
	version, put := c.putSecret(t, a.secretIDs[1], next)

	var moved time.Time
	var last int
	if !testenv.Poll(apiMoveBound, 250*time.Millisecond, func() bool {
		moved = time.Now()
		last, _ = nodeLogin(a.port, apiEmail, next)
		return last == http.StatusOK
	}) {
		t.Fatalf("%s's node does not take the rotated API password (version %s) within %s of the put (last POST /sessions %d); agent log since:\n%s",
			a.name, version, apiMoveBound, last, a.logSince(offset))
	}
	if code, err := nodeLogin(a.port, apiEmail, old); code != http.StatusUnauthorized {
		t.Errorf("after the rotation, %s's node answers POST /sessions with the old API password %d (%v); want 401", a.name, code, err)
	}
	down, outages := sampler.stop()
	t.Logf("API password: secret put → the node's user takes the new password %s; node not ready for %s (%d outages)",
		moved.Sub(put).Round(time.Millisecond), down, outages)

	if outages != 0 {
		t.Errorf("%s's node /readyz went down %d times (%s) during the API password rotation; want never", a.name, outages, down)
	}
	a.sameNodeRun(t, run, "the API password rotation")
	if st := a.statusCLI(t); st.Node.Restarts != before.Node.Restarts || strings.Contains(st.LastError, apiNotAppliedWords) {
		t.Errorf("%s after the API password rotation: node.restarts %d → %d, last_error %q; want no restart and no problem",
			a.name, before.Node.Restarts, st.Node.Restarts, st.LastError)
	}
	if l := a.logSince(offset); !strings.Contains(l, "API password was changed to the rotated one") {
		t.Errorf("%s did not log the change of the node's API password; log since the put:\n%s", a.name, l)
	}
	c.noNodeStart(t, rec, t0)
	c.verify(t, rec, a)
	return next
}

// keystoreHeldBack puts a keystore password that does not open the node's key ring: both agents hold it back (no
// restart, a problem naming the version in status, the metric at 1); then the original value again as a new
// version: the problem and the metric clear, still no restart; then `cl-agent restart` restarts the node once.
func (c *cluster) keystoreHeldBack(t *testing.T) {
	defer c.logsOnFailure(t)
	a, s := c.waitSettled(t, nil, settleBound)
	if n, err := c.keyRings(); err != nil || n == 0 {
		t.Fatalf("the node's database holds %d key rings (%v); want the one the node made at its first start", n, err)
	}
	before, run, rec, sampler := c.baseline(t, a)
	offsets := [2]int64{c.hosts[0].logOffset(), c.hosts[1].logOffset()}
	id := a.secretIDs[2]

	// A value the node's rules take (not empty, no white space at either end) that is not the key ring's.
	t0 := time.Now()
	wrong, put := c.putSecret(t, id, "Keystore-wrong-"+testenv.RandomHex(8))
	var shown [2]time.Duration
	for i, h := range []*host{a, s} {
		var st control.Status
		if !testenv.Poll(keystoreCheckBound, pollEvery, func() bool {
			var err error
			st, err = h.status()
			return err == nil && strings.Contains(st.LastError, keystoreHeldWords) && strings.Contains(st.LastError, wrong)
		}) {
			t.Errorf("%s shows no problem naming keystore password version %s held back within %s of the put (last_error %q); log since:\n%s",
				h.name, wrong, keystoreCheckBound, st.LastError, h.logSince(offsets[indexOf(c, h)]))
			continue
		}
		shown[i] = time.Since(put)
		if cli := h.statusCLI(t); !strings.Contains(cli.LastError, keystoreHeldWords) || !strings.Contains(cli.LastError, wrong) {
			t.Errorf("cl-agent status --json on %s: last_error %q; want the keystore password version %s held back", h.name, cli.LastError, wrong)
		}
		c.waitMetric(t, h, metricKeystoreHeld, 1, 10*time.Second)
	}
	t.Logf("keystore password held back: secret put → problem in status on the active %s, on the standby %s",
		shown[0].Round(time.Millisecond), shown[1].Round(time.Millisecond))

	// The node keeps running on the held password: no restart, also not at the next check (the refused version
	// is not checked again, and not logged again).
	if why := a.restartWithin(quietBound, run, before.Node.Restarts); why != "" {
		t.Errorf("with the keystore password held back: %s", why)
	}
	for i, h := range c.hosts {
		if n := strings.Count(h.logSince(offsets[i]), keystoreHeldLogLine); n != 1 {
			t.Errorf("%s logged %q %d times for version %s; want once", h.name, keystoreHeldLogLine, n, wrong)
		}
	}

	// The original value back, as a new version: the problem clears, the node keeps running.
	back, putBack := c.putSecret(t, id, keystore)
	var cleared [2]time.Duration
	for i, h := range []*host{a, s} {
		var st control.Status
		if !testenv.Poll(keystoreCheckBound, pollEvery, func() bool {
			var err error
			st, err = h.status()
			return err == nil && !strings.Contains(st.LastError, keystoreHeldWords) && h.metricValue(metricKeystoreHeld) == 0
		}) {
			t.Errorf("%s: the keystore problem did not clear within %s of the original value's put as version %s (last_error %q, %s %v)",
				h.name, keystoreCheckBound, back, st.LastError, metricKeystoreHeld, h.metricValue(metricKeystoreHeld))
			continue
		}
		cleared[i] = time.Since(putBack)
	}
	t.Logf("original keystore password back (version %s): put → problem cleared on the active %s, on the standby %s",
		back, cleared[0].Round(time.Millisecond), cleared[1].Round(time.Millisecond))
	if why := a.restartWithin(quietBound, run, before.Node.Restarts); why != "" {
		t.Errorf("after the original keystore password came back as version %s: %s; agent log since the put of version %s:\n%s",
			back, why, wrong, a.logSince(offsets[indexOf(c, a)]))
	}
	down, outages := sampler.stop()
	if outages != 0 {
		t.Errorf("%s's node /readyz went down %d times (%s) while the keystore password was held back and put back; want never", a.name, outages, down)
	}
	c.noNodeStart(t, rec, t0)

	// The operator's restart: once, and the node is ready again with the password its key ring takes.
	prior := a.statusCLI(t)
	runBefore := a.nodeRun(t)
	t1 := time.Now()
	out, err := a.cli(context.Background(), restartCLIBound, "restart")
	if err != nil {
		t.Fatalf("%v; agent log since the put of version %s:\n%s", err, wrong, a.logSince(offsets[indexOf(c, a)]))
	}
	readyAgain := waitReadyz(t, a.port, settleBound+c.nodeBoot, "after cl-agent restart")
	t.Logf("cl-agent restart → node /readyz 200 %s (%q)", readyAgain.Sub(t1).Round(time.Millisecond), strings.TrimSpace(out))
	if !strings.Contains(out, "restarted") {
		t.Errorf("cl-agent restart on %s said %q; want \"node restarted …\"", a.name, out)
	}
	if st := a.statusCLI(t); st.Role != "active" || !st.Node.Ready || st.Node.Restarts != prior.Node.Restarts+1 {
		t.Errorf("after cl-agent restart: %s, node.restarts %d; want active, ready, restarts %d", brief(st), st.Node.Restarts, prior.Node.Restarts+1)
	}
	oneRestartNoFailover(t, rec, a, s, runBefore, t1, t0, "cl-agent restart")
	c.verify(t, rec, a)
	for _, h := range c.hosts {
		if v := h.metricValue(metricKeystoreHeld); v != 0 {
			t.Errorf("%s: %s is %v after the restart; want 0", h.name, metricKeystoreHeld, v)
		}
	}
}

// databasePasswordRealNode is the RDS-style rotation of the database password on the real node: one restart
// with the new value, ready again, no failover; the gap without a ready node is measured.
func (c *cluster) databasePasswordRealNode(t *testing.T) {
	defer c.logsOnFailure(t)
	a, s := c.waitSettled(t, nil, settleBound)
	before, run, rec, sampler := c.baseline(t, a)
	offset := a.logOffset()

	t0 := time.Now()
	_, put := c.rotateDBPassword(t)
	bound := rotationPoll + settleBound + c.nodeBoot
	st := before
	if !testenv.Poll(bound, pollEvery, func() bool {
		cur, err := a.status()
		if err == nil {
			st = cur
		}
		return err == nil && cur.Node.Restarts > before.Node.Restarts && cur.Node.Ready
	}) {
		t.Fatalf("%s did not restart its node with the rotated database password within %s: %s; agent log since:\n%s",
			a.name, bound, brief(st), a.logSince(offset))
	}
	readyAgain := waitReadyz(t, a.port, settleBound+c.nodeBoot, "after the database password rotation's restart")
	started := rec.first(a.container, "start", t0)
	// One more check finds nothing new: exactly one restart.
	if why := a.restartWithin(quietBound, a.nodeRun(t), st.Node.Restarts); why != "" {
		t.Errorf("after the database password rotation's restart: %s", why)
	}
	down, outages := sampler.stop()
	t.Logf("database password (real node): secret put → new node container started %s, → node /readyz 200 again %s; "+
		"node not ready for %s (%d outage, node.restarts %d → %d)",
		started.Sub(put).Round(time.Millisecond), readyAgain.Sub(put).Round(time.Millisecond), down.Round(time.Millisecond),
		outages, before.Node.Restarts, st.Node.Restarts)
	if outages != 1 {
		t.Errorf("%s's node /readyz went down %d times around the rotation; want once (one restart)", a.name, outages)
	}
	oneRestartNoFailover(t, rec, a, s, run, t0, t0, "the database password rotation")
	c.verify(t, rec, a)
}

// baseline is what a rotation scenario records of the active a before it acts: its status and node run, the
// container events from now on, and its node's /readyz sampled (stopped at the end of the test at the latest).
func (c *cluster) baseline(t *testing.T, a *host) (control.Status, nodeRunID, *recorder, *readySampler) {
	t.Helper()
	before, run := a.statusCLI(t), a.nodeRun(t)
	rec := c.record(t)
	sampler := sampleReadyz(a.port)
	t.Cleanup(func() { sampler.stop() })
	return before, run, rec, sampler
}

// oneRestartNoFailover checks that what recreated the active a's node container once (started once since
// since, not the container of before) and that the standby s started no node since noFailoverSince.
func oneRestartNoFailover(t *testing.T, rec *recorder, a, s *host, before nodeRunID, since, noFailoverSince time.Time, what string) {
	t.Helper()
	if r := a.nodeRun(t); r.id == before.id {
		t.Errorf("%s did not recreate %s's node container (%.12s)", what, a.name, r.id)
	}
	if n := countStarts(rec, a.container, since); n != 1 {
		t.Errorf("%s's node container started %d times after %s; want 1:\n%s", a.name, n, what, rec.events())
	}
	if !rec.first(s.container, "start", noFailoverSince).IsZero() {
		t.Errorf("the standby started a node during %s (a failover):\n%s", what, rec.events())
	}
}

// ---- helpers of the real-node rotations ----

// putSecret stores value as a new version of secret id in moto and returns the version id and when the put
// returned. The value never reaches a log line.
func (c *cluster) putSecret(tb testing.TB, id, value string) (version string, at time.Time) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdBound)
	defer cancel()
	out, err := c.secretsManager().PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(id), SecretString: aws.String(value)})
	if err != nil {
		tb.Fatalf("PutSecretValue %s in moto: %v", id, err)
	}
	at = time.Now()
	version = aws.ToString(out.VersionId)
	tb.Logf("secret %s: new version %s", id, version)
	return version, at
}

// nodeLogin is POST /sessions on the node's published port with the API e-mail and a password: the status code.
func nodeLogin(port int, email, password string) (int, error) {
	body, err := json.Marshal(map[string]string{"email": email, "password": password})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), loginBound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(port)+"/sessions", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := readyClientFor(loginBound).Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST /sessions: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// readyClientFor is a client like readyClient's (no proxy, no reuse of connections) with another timeout.
func readyClientFor(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
}

// metricValue is the value of an unlabelled metric on the host's agent /metrics (health.listen); -1 when the
// endpoint does not answer or has no such sample.
func (h *host) metricValue(name string) float64 {
	resp, err := readyClientFor(2 * time.Second).Get(fmt.Sprintf("http://%s:%d/metrics", h.ns.IP, healthPort))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

// waitMetric waits until the host's agent exposes want for the metric.
func (c *cluster) waitMetric(tb testing.TB, h *host, name string, want float64, bound time.Duration) {
	tb.Helper()
	if !testenv.Poll(bound, pollEvery, func() bool { return h.metricValue(name) == want }) {
		tb.Errorf("%s: %s is %v on its /metrics after %s; want %v", h.name, name, h.metricValue(name), bound, want)
	}
}

// nodeRunID is one run of a node container: its id and Docker's StartedAt.
type nodeRunID struct {
	id      string
	started time.Time
}

// nodeRun is the host's running node container; the test fails when none runs.
func (h *host) nodeRun(tb testing.TB) nodeRunID {
	tb.Helper()
	running, started, _, id := inspectState(h.container)
	if !running {
		tb.Fatalf("%s: the node container %s does not run", h.name, h.container)
	}
	return nodeRunID{id: id, started: started}
}

// sameNodeRun fails the test when the host's node container is not the same run as before (recreated or
// restarted in place).
func (h *host) sameNodeRun(tb testing.TB, before nodeRunID, what string) {
	tb.Helper()
	running, started, _, id := inspectState(h.container)
	if !running || id != before.id || !started.Equal(before.started) {
		tb.Errorf("%s: the node container after %s is %.12s started %s (running %t); want the same run %.12s started %s",
			h.name, what, id, started.Format(time.RFC3339Nano), running, before.id, before.started.Format(time.RFC3339Nano))
	}
}

// restartWithin watches the host's node for bound and says how it restarted ("" when it did not): a different
// container, another StartedAt, more node.restarts, or the agent no longer the active.
func (h *host) restartWithin(bound time.Duration, run nodeRunID, restarts int) string {
	var why string
	testenv.Poll(bound, pollEvery, func() bool {
		s, err := h.status()
		running, started, _, id := inspectState(h.container)
		switch {
		case err != nil:
			return false
		case s.Role != "active" || !s.Lock.Held:
			why = "the active is no longer the active: " + brief(s)
		case s.Node.Restarts != restarts:
			why = fmt.Sprintf("the agent restarted its node (node.restarts %d → %d)", restarts, s.Node.Restarts)
		case !running || id != run.id || !started.Equal(run.started):
			why = fmt.Sprintf("the node container changed: %.12s started %s, was %.12s started %s", id,
				started.Format(time.RFC3339Nano), run.id, run.started.Format(time.RFC3339Nano))
		default:
			return false
		}
		return true
	})
	return why
}

// noNodeStart fails the test when either host's node container started at or after t.
func (c *cluster) noNodeStart(tb testing.TB, rec *recorder, t time.Time) {
	tb.Helper()
	for _, h := range c.hosts {
		if n := countStarts(rec, h.container, t); n != 0 {
			tb.Errorf("%s's node container started %d times; want none:\n%s", h.name, n, rec.events())
		}
	}
}

// keyRings counts the node's key rings (encrypted_key_rings): the one it made at its first start.
func (c *cluster) keyRings() (int, error) {
	var n int
	err := c.superQuery(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT count(*) FROM encrypted_key_rings`).Scan(&n)
	})
	return n, err
}
