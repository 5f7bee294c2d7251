package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/moby/moby/client"

	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// pollEvery is how often the harness looks at a condition it waits for; readyPoll is finer, because its first
// success is a measurement.
const (
	pollEvery   = 100 * time.Millisecond
	readyPoll   = 20 * time.Millisecond
	readyBound  = 500 * time.Millisecond // one /readyz request
	statusBound = 2 * time.Second        // one status request over the control socket
)

// ---- container states: Docker events ----

// cEvent is one start or die of a watched container.
type cEvent struct {
	name   string
	id     string
	action string // start | die
	at     time.Time
}

// recorder follows the start and die events of the given containers from the moment it is created, through
// broken event streams (a restarted engine), and answers how long they ran at the same time.
type recorder struct {
	names  []string
	since  time.Time
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	evs  []cEvent
	seen map[string]bool
	errs []error
}

// record starts a recorder for the node containers of both hosts (or the given names).
func (c *cluster) record(tb testing.TB, names ...string) *recorder {
	tb.Helper()
	if len(names) == 0 {
		names = []string{c.hosts[0].container, c.hosts[1].container}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{names: names, since: time.Now(), cancel: cancel, done: make(chan struct{}), seen: map[string]bool{}}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		tb.Fatal(err)
	}
	subscribed := make(chan struct{})
	go func() {
		defer close(r.done)
		defer cli.Close()
		r.follow(ctx, cli, subscribed)
	}()
	select {
	case <-subscribed:
	case <-time.After(cmdBound):
		tb.Fatalf("subscribing to Docker events took more than %s", cmdBound)
	}
	// Containers that already ran before the subscription: their start is before since.
	for _, n := range names {
		if running, started, _, id := inspectState(n); running && started.Before(r.since) {
			r.add(cEvent{name: n, id: id, action: "start", at: started})
		}
	}
	tb.Cleanup(r.stop)
	return r
}

// follow subscribes (again, after a break) from the last event seen, until ctx ends.
func (r *recorder) follow(ctx context.Context, cli *client.Client, subscribed chan struct{}) {
	filters := make(client.Filters).Add("type", "container").Add("event", "start", "die").Add("container", r.names...)
	from := r.since
	for first := true; ctx.Err() == nil; first = false {
		res := cli.Events(ctx, client.EventsListOptions{Filters: filters, Since: unixNano(from)})
		if first {
			close(subscribed)
		} else {
			r.reconcile() // what the stream missed while the engine was away
		}
		r.read(ctx, res) // returns when the stream breaks (the engine restarted) or ctx ends
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		if n := len(r.evs); n > 0 {
			from = r.evs[n-1].at
		}
		r.mu.Unlock()
		r.waitEngine(ctx, cli)
	}
}

func (r *recorder) read(ctx context.Context, res client.EventsResult) {
	for {
		select {
		case m := <-res.Messages:
			name := m.Actor.Attributes["name"]
			if !r.watched(name) {
				continue
			}
			r.add(cEvent{name: name, id: m.Actor.ID, action: string(m.Action), at: time.Unix(0, m.TimeNano)})
		case <-res.Err:
			return
		case <-ctx.Done():
			return
		}
	}
}

// waitEngine waits until the engine answers again after the stream broke.
func (r *recorder) waitEngine(ctx context.Context, cli *client.Client) {
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollEvery):
		}
	}
}

// reconcile closes, at the container's own finish time, a run whose die event the broken stream lost.
func (r *recorder) reconcile() {
	for _, n := range r.names {
		running, _, finished, id := inspectState(n)
		r.mu.Lock()
		open, openID := r.openRun(n)
		r.mu.Unlock()
		if open && (!running || id != openID) {
			if finished.IsZero() || finished.Before(r.since) {
				finished = time.Now()
			}
			r.add(cEvent{name: n, id: openID, action: "die", at: finished})
		}
	}
}

// openRun reports whether the model has name running, and in which container. Callers hold r.mu.
func (r *recorder) openRun(name string) (bool, string) {
	open, id := false, ""
	for _, e := range r.sorted() {
		if e.name == name {
			open, id = e.action == "start", e.id
		}
	}
	return open, id
}

func (r *recorder) watched(name string) bool {
	for _, n := range r.names {
		if n == name {
			return true
		}
	}
	return false
}

func (r *recorder) add(e cEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := fmt.Sprintf("%s/%s/%d", e.id, e.action, e.at.UnixNano())
	if r.seen[key] {
		return // a resubscription from the last event's time repeats it
	}
	r.seen[key] = true
	r.evs = append(r.evs, e)
}

// stop ends the subscription. Safe to call twice.
func (r *recorder) stop() {
	r.cancel()
	<-r.done
}

// sorted is the events in time order. Callers hold r.mu.
func (r *recorder) sorted() []cEvent {
	evs := append([]cEvent(nil), r.evs...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	return evs
}

// interval is one run of a container.
type interval struct{ from, to time.Time }

// runs are each watched container's running intervals up to until (a container still running ends there).
func (r *recorder) runs(until time.Time) map[string][]interval {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]interval{}
	open := map[string]time.Time{}
	for _, e := range r.sorted() {
		switch from, running := open[e.name]; {
		case e.action == "start" && !running:
			open[e.name] = e.at
		case e.action == "die" && running:
			out[e.name] = append(out[e.name], interval{from, e.at})
			delete(open, e.name)
		}
	}
	for n, from := range open {
		out[n] = append(out[n], interval{from, until})
	}
	return out
}

// overlap is how long the first two watched containers ran at the same time, up to until, with a description
// of each overlapping stretch.
func (r *recorder) overlap(until time.Time) (time.Duration, []string) {
	runs := r.runs(until)
	var total time.Duration
	var where []string
	for _, a := range runs[r.names[0]] {
		for _, b := range runs[r.names[1]] {
			from, to := later(a.from, b.from), earlier(a.to, b.to)
			if to.After(from) {
				total += to.Sub(from)
				where = append(where, fmt.Sprintf("%s and %s both running from %s to %s (%s)", r.names[0], r.names[1],
					from.Format("15:04:05.000000"), to.Format("15:04:05.000000"), to.Sub(from)))
			}
		}
	}
	return total, where
}

// events is the log of what was recorded, for failure messages.
func (r *recorder) events() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.sorted() {
		fmt.Fprintf(&b, "  %s %-5s %s (%.12s)\n", e.at.Format("15:04:05.000000"), e.action, e.name, e.id)
	}
	return b.String()
}

// first is the first event of name with action at or after t (zero when none).
func (r *recorder) first(name, action string, t time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.sorted() {
		if e.name == name && e.action == action && !e.at.Before(t) {
			return e.at
		}
	}
	return time.Time{}
}

// noOverlap fails the test when the two containers ever ran at the same time.
func (r *recorder) noOverlap(tb testing.TB) {
	tb.Helper()
	if d, where := r.overlap(time.Now()); d != 0 {
		tb.Errorf("container states: both hosts ran a node for %s:\n%s\nevents:\n%s", d, strings.Join(where, "\n"), r.events())
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func unixNano(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }

// inspectState is a container's state; a missing container is not running.
func inspectState(name string) (running bool, started, finished time.Time, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdBound)
	defer cancel()
	out, err := docker(ctx, "inspect", "--format", "{{.State.Running}} {{.State.StartedAt}} {{.State.FinishedAt}} {{.Id}}", name)
	if err != nil {
		return false, time.Time{}, time.Time{}, ""
	}
	f := strings.Fields(out)
	if len(f) != 4 {
		return false, time.Time{}, time.Time{}, ""
	}
	started, _ = time.Parse(time.RFC3339Nano, f[1])
	finished, _ = time.Parse(time.RFC3339Nano, f[2])
	return f[0] == "true", started, finished, f[3]
}

// ---- the stand-in node's lease intervals ----

// leaseOverlaps lists every pair of lease holdings of different hosts that overlap in time, from the stand-in's
// table standin_lease_intervals, and counts the rows it looked at.
func (c *cluster) leaseOverlaps(ctx context.Context, db string) (overlaps []string, rows int, err error) {
	ctx, cancel := context.WithTimeout(ctx, cmdBound)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.pg.URL(db))
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM standin_lease_intervals`).Scan(&rows); err != nil {
		return nil, 0, fmt.Errorf("count lease intervals: %w", err)
	}
	q, err := conn.Query(ctx, `SELECT a.host, a.started_at, a.ended_at, b.host, b.started_at, b.ended_at
FROM standin_lease_intervals a JOIN standin_lease_intervals b
  ON a.host < b.host AND a.started_at < b.ended_at AND b.started_at < a.ended_at`)
	if err != nil {
		return nil, 0, err
	}
	defer q.Close()
	for q.Next() {
		var ah, bh string
		var as, ae, bs, be time.Time
		if err := q.Scan(&ah, &as, &ae, &bh, &bs, &be); err != nil {
			return nil, 0, err
		}
		overlaps = append(overlaps, fmt.Sprintf("%s held [%s, %s] while %s held [%s, %s]", ah, as.Format(time.StampMicro),
			ae.Format(time.StampMicro), bh, bs.Format(time.StampMicro), be.Format(time.StampMicro)))
	}
	return overlaps, rows, q.Err()
}

// noLeaseOverlap fails the test when the stand-in's recorded holdings of the two hosts overlap, or when there are
// none to look at (the recording itself would be broken).
func (c *cluster) noLeaseOverlap(tb testing.TB) {
	tb.Helper()
	overlaps, rows, err := c.leaseOverlaps(context.Background(), c.db)
	switch {
	case err != nil:
		tb.Errorf("lease intervals: %v", err)
	case rows == 0:
		tb.Errorf("lease intervals: no rows in standin_lease_intervals; the stand-in recorded nothing")
	case len(overlaps) > 0:
		tb.Errorf("lease intervals: the nodes of both hosts held the lease at once:\n%s", strings.Join(overlaps, "\n"))
	}
}

// ---- readiness and status ----

var readyClient = &http.Client{Timeout: readyBound, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// readyz is the status code of the node's /readyz on its published port (0 when nothing answers).
func readyz(port int) int {
	resp, err := readyClient.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReadyz polls /readyz on port until it answers 200 and returns the time it first did.
func waitReadyz(tb testing.TB, port int, bound time.Duration, what string) time.Time {
	tb.Helper()
	var at time.Time
	if !testenv.Poll(bound, readyPoll, func() bool {
		at = time.Now()
		return readyz(port) == http.StatusOK
	}) {
		tb.Fatalf("%s: /readyz on port %d did not answer 200 within %s", what, port, bound)
	}
	return at
}

// healthPort is where each agent serves /healthz, /readyz and /metrics, on its namespace's own address: what the
// load balancer's target check reaches.
const healthPort = 9180

// agentReadyz is the load balancer's view of h: the status of the agent's /readyz (0 when it does not answer).
func (h *host) agentReadyz() int {
	c := http.Client{Timeout: 300 * time.Millisecond}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d/readyz", h.ns.IP, healthPort))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// lbFlip waits until the load balancer would send traffic only to the new active (its agent's /readyz 200, the old
// one's not) and fails when that takes more than a second after the new node answered.
func lbFlip(tb testing.TB, newActive, old *host, nodeReady time.Time) time.Duration {
	tb.Helper()
	var at time.Time
	if !testenv.Poll(5*time.Second, readyPoll, func() bool {
		at = time.Now()
		return newActive.agentReadyz() == http.StatusOK && old.agentReadyz() != http.StatusOK
	}) {
		tb.Fatalf("/readyz of the agents did not flip to %s within 5s (new %d, old %d)", newActive.name, newActive.agentReadyz(), old.agentReadyz())
	}
	flip := max(0, at.Sub(nodeReady))
	if flip > time.Second {
		tb.Errorf("/readyz flipped to %s %s after its node was ready; want within 1s", newActive.name, flip)
	}
	return flip
}

// status asks the host's agent over its control socket.
func (h *host) status() (control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statusBound)
	defer cancel()
	return control.NewClient(h.socket).Status(ctx)
}

// statusCLI is `cl-agent status --json` on the host, as an operator runs it.
func (h *host) statusCLI(tb testing.TB) control.Status {
	tb.Helper()
	out, err := h.cli(context.Background(), cmdBound, "status", "--json")
	if err != nil {
		tb.Fatal(err)
	}
	var s control.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		tb.Fatalf("cl-agent status --json on %s: %v\n%s", h.name, err, out)
	}
	return s
}

// brief is the part of a status the scenarios look at.
func brief(s control.Status) string {
	return fmt.Sprintf("role %s (%s), lock held %t by %q, node %s ready %t", s.Role, s.Message, s.Lock.Held, s.Lock.Holder, s.Node.State, s.Node.Ready)
}

// settled describes why the cluster is not (yet) in the state "exactly one host active with a ready node, the
// other a campaigning standby without a node"; "" when it is. want, if not nil, must be the active one.
func (c *cluster) settled(want *host) (active *host, why string) {
	var st [2]control.Status
	for i, h := range c.hosts {
		if h.agent == nil {
			return nil, h.name + ": agent not running"
		}
		s, err := h.status()
		if err != nil {
			return nil, fmt.Sprintf("%s: status: %v", h.name, err)
		}
		st[i] = s
	}
	for i, h := range c.hosts {
		if st[i].Role == "active" {
			if active != nil {
				return nil, "both agents report role active"
			}
			active = h
		}
	}
	if active == nil {
		return nil, fmt.Sprintf("no agent is active (roles %s/%s: %s / %s)", st[0].Role, st[1].Role, st[0].Message, st[1].Message)
	}
	if want != nil && active != want {
		return nil, fmt.Sprintf("%s is active; want %s", active.name, want.name)
	}
	standby := c.other(active)
	a, s := st[indexOf(c, active)], st[indexOf(c, standby)]
	switch {
	case !a.Node.Ready || !a.Lock.Held:
		return nil, fmt.Sprintf("%s active but node ready=%t lock held=%t", active.name, a.Node.Ready, a.Lock.Held)
	case s.Role != "standby" || !strings.Contains(s.Message, "campaigning"):
		return nil, fmt.Sprintf("%s is %s (%s); want a campaigning standby", standby.name, s.Role, s.Message)
	case s.Lock.Held || s.Lock.Holder != active.appName():
		return nil, fmt.Sprintf("%s sees the lock held by %q (held here: %t); want %s", standby.name, s.Lock.Holder, s.Lock.Held, active.appName())
	case readyz(active.port) != http.StatusOK:
		return nil, fmt.Sprintf("%s node's /readyz is not 200", active.name)
	case readyz(standby.port) != 0:
		return nil, fmt.Sprintf("%s: something answers on the standby's node port", standby.name)
	}
	if running, _, _, _ := inspectState(standby.container); running {
		return nil, fmt.Sprintf("%s: the standby's node container runs", standby.name)
	}
	if n, err := c.nodeSessions(active); err != nil || n != 0 {
		return nil, fmt.Sprintf("%s: %d database sessions of its node remain (%v)", standby.name, n, err)
	}
	return active, ""
}

// waitSettled waits until exactly one host is active with a ready node and the other is a campaigning standby
// without a node (and without sessions of an old node), and returns them.
func (c *cluster) waitSettled(tb testing.TB, want *host, bound time.Duration) (active, standby *host) {
	tb.Helper()
	var why string
	if !testenv.Poll(bound, pollEvery, func() bool {
		active, why = c.settled(want)
		return why == ""
	}) {
		tb.Fatalf("not settled within %s: %s", bound, why)
	}
	return active, c.other(active)
}

// verify is the end of every scenario: settled (checked once more through `cl-agent status --json`), zero
// overlap from the container states and from the node's lease intervals.
func (c *cluster) verify(tb testing.TB, rec *recorder, want *host) (active, standby *host) {
	tb.Helper()
	active, standby = c.waitSettled(tb, want, settleBound)
	a, s := active.statusCLI(tb), standby.statusCLI(tb)
	if a.Role != "active" || !a.Node.Ready || a.Node.State != "ready" || !a.Lock.Held || a.InstanceID != active.id.InstanceID {
		tb.Errorf("cl-agent status --json on the active %s: %s; want role active, lock held, node ready", active.name, brief(a))
	}
	if s.Role != "standby" || s.Lock.Held || s.Lock.Holder != active.appName() || s.InstanceID != standby.id.InstanceID {
		tb.Errorf("cl-agent status --json on the standby %s: %s; want role standby, lock held by %s", standby.name, brief(s), active.appName())
	}
	if s.Node.Ready || s.Node.State != "stopped" {
		tb.Errorf("cl-agent status --json on the standby %s reports node.state %q, node.ready %t, but it runs no node (no container %s); want stopped, false",
			standby.name, s.Node.State, s.Node.Ready, standby.container)
	}
	rec.noOverlap(tb)
	// The lease intervals are the stand-in's own record (table standin_lease_intervals); the real node keeps no
	// such history, so for it the container states are the measure of overlap.
	if c.realImage == "" {
		c.noLeaseOverlap(tb)
	}
	if _, isTest := tb.(*testing.T); isTest { // benchmarks print every log line: keep `make bench` readable
		tb.Logf("container events:\n%s", rec.events())
	}
	return active, standby
}

func indexOf(c *cluster, h *host) int {
	if c.hosts[0] == h {
		return 0
	}
	return 1
}

// nodeSessions counts the database sessions of the standby's node that remain. The node (the real one, and the
// stand-in as it does) names its sessions `Chainlink <version> |App|<uuid>` on both hosts alike, so they are the
// node sessions in the node's database that began before the active's node container started: the active's own
// node opened every one of its sessions after that.
func (c *cluster) nodeSessions(active *host) (int, error) {
	running, started, _, _ := inspectState(active.container)
	if !running {
		return -1, fmt.Errorf("the active's node container %s is not running", active.container)
	}
	return c.realNodeSessions(started)
}

// realNodeSessions counts the node's sessions in the node's database that began before t, whichever host's.
func (c *cluster) realNodeSessions(t time.Time) (int, error) {
	return c.countSessions(`SELECT count(*) FROM pg_stat_activity
WHERE datname = $1 AND application_name LIKE 'Chainlink %|App|%' AND backend_start < $2`, c.db, t)
}

// countSessions runs a count(*) query as the superuser.
func (c *cluster) countSessions(query string, args ...any) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statusBound)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.pg.URL("postgres"))
	if err != nil {
		return -1, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// clearLease removes the node's lease row (between runs of the simultaneous start, when no node runs).
func (c *cluster) clearLease(tb testing.TB) {
	tb.Helper()
	err := c.superExecErr(context.Background(), c.db, "DELETE FROM lease_lock")
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P01") { // no table yet: no node ever ran
		tb.Fatal(err)
	}
}

// ---- commands ----

// docker runs the docker CLI with a deadline and returns its stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "docker", args...)
}

// containerLogs is `docker logs ARGS… NAME`: what the container wrote to stdout and to stderr (the real node logs
// to stderr, the stand-in to stdout), interleaved as the CLI prints them.
func containerLogs(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append(append([]string{"logs"}, args...), name)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker logs %s (bound %s): %w", name, cmdBound, err)
	}
	return string(out), nil
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	return runWithin(ctx, cmdBound, name, args...)
}

// runWithin is run with another bound than cmdBound.
func runWithin(ctx context.Context, bound time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s (bound %s): %w: %s", name, strings.Join(args, " "), bound, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}
