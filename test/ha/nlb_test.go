package ha

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// nlbChecks is how the test's load balancer checks its targets.
//
// The template's P2P target group (infra/cdk-template.yaml, P2PTargetGroup) checks cl-agent's /readyz over HTTP on
// 9180 with HealthCheckIntervalSeconds 10, HealthCheckTimeoutSeconds 5, HealthyThresholdCount 2,
// UnhealthyThresholdCount 2 and Matcher 200: a target turns healthy 10–20 s after its /readyz turns 200 (the next
// check falls within one interval, the second passing one an interval later) and unhealthy in the same bound
// after it stops. The test keeps the thresholds and shortens the interval fifty-fold, so that the rest of the
// failover stays visible beside it.
type nlbChecks struct {
	Interval  time.Duration // between two checks of one target
	Healthy   int           // consecutive 200s that make an unhealthy target healthy
	Unhealthy int           // consecutive failures that make a healthy target unhealthy
}

// templateChecks are the template's settings, for the figures the test logs beside its own.
var templateChecks = nlbChecks{Interval: 10 * time.Second, Healthy: 2, Unhealthy: 2}

func (s nlbChecks) String() string {
	return fmt.Sprintf("HTTP /readyz every %s, 200 only, healthy after %d passes, unhealthy after %d failures", s.Interval, s.Healthy, s.Unhealthy)
}

// Bounds of the forwarder's own work.
const (
	nlbDialBound = time.Second      // the forwarder's connect to a target
	nlbConnBound = 30 * time.Second // the life of one forwarded connection (NLB's TCP idle timeout is 350 s)
	nlbMaxConns  = 64               // open forwarded connections; more are refused
	nlbMaxEvents = 20000            // the event log stops growing here
)

// nlbTarget is one host behind the forwarder: where its P2P port is published, and its health check.
type nlbTarget struct {
	name  string
	addr  string     // host:port of the P2P port as the host publishes it
	check func() int // the health check's HTTP status (0: no answer): the agent's /readyz

	// guarded by nlb.mu
	healthy       bool
	passes, fails int
	conns         map[net.Conn]struct{} // forwarded connections (both ends), closed when it turns unhealthy
}

// nlbEvent is something the forwarder did or saw.
type nlbEvent struct {
	at     time.Time
	kind   string // healthy | unhealthy | forwarded | refused (no healthy target) | dial-failed
	target string // "" for refused
	detail string
}

// nlb is a TCP forwarder standing in for the template's Network Load Balancer: it listens on 127.0.0.1, checks
// each target's cl-agent /readyz on a ticker with thresholds as the target group does, and forwards each new
// connection to a target it considers healthy (round robin among them; NLB hashes the flow, which is the same
// with one healthy target). With none healthy it closes the connection at once. A target that turns unhealthy has
// its forwarded connections closed (NLB's default for TCP target groups,
// target_health_state.unhealthy.connection_termination.enabled). Everything stops at the test's cleanup.
type nlb struct {
	checks  nlbChecks
	ln      net.Listener
	targets []*nlbTarget
	done    chan struct{}
	wg      sync.WaitGroup

	mu     sync.Mutex
	next   int // round-robin position
	open   int // forwarded connections open
	evs    []nlbEvent
	closed bool
}

// startNLB listens on a free port of 127.0.0.1 and starts checking the targets (each starts unhealthy, as a newly
// registered target does).
func startNLB(tb testing.TB, checks nlbChecks, targets ...*nlbTarget) *nlb {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("the forwarder's listener: %v", err)
	}
	n := &nlb{checks: checks, ln: ln, targets: targets, done: make(chan struct{})}
	for _, t := range targets {
		t.conns = map[net.Conn]struct{}{}
		n.wg.Go(func() { n.healthLoop(t) })
	}
	n.wg.Go(n.serve)
	tb.Cleanup(n.stop)
	return n
}

// addr is where peers connect: what both agents announce.
func (n *nlb) addr() string { return n.ln.Addr().String() }

// stop closes the listener and every forwarded connection and waits for the forwarder's goroutines.
func (n *nlb) stop() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	close(n.done)
	n.ln.Close()
	for _, t := range n.targets {
		closeAll(t.conns)
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// healthLoop checks one target every interval until the forwarder stops. The check's own timeout bounds it
// (agentReadyz: 300 ms, the target group's HealthCheckTimeoutSeconds); a slow check delays the next (the ticker
// drops ticks) rather than overlapping it.
func (n *nlb) healthLoop(t *nlbTarget) {
	tick := time.NewTicker(n.checks.Interval)
	defer tick.Stop()
	for {
		code := t.check()
		n.observe(t, code, time.Now())
		select {
		case <-n.done:
			return
		case <-tick.C:
		}
	}
}

// observe applies one check's result to the target's state.
func (n *nlb) observe(t *nlbTarget, code int, at time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if code == http.StatusOK {
		t.passes, t.fails = t.passes+1, 0
		if !t.healthy && t.passes >= n.checks.Healthy {
			t.healthy = true
			n.logLocked(nlbEvent{at: at, kind: "healthy", target: t.name})
		}
		return
	}
	t.passes, t.fails = 0, t.fails+1
	if t.healthy && t.fails >= n.checks.Unhealthy {
		t.healthy = false
		n.logLocked(nlbEvent{at: at, kind: "unhealthy", target: t.name, detail: fmt.Sprintf("last check %d, %d open connections closed", code, len(t.conns)/2)})
		closeAll(t.conns)
	}
}

func (n *nlb) serve() {
	for {
		conn, err := n.ln.Accept()
		if err != nil {
			return // closed by stop
		}
		n.wg.Go(func() { n.forward(conn) })
	}
}

// forward takes one peer's connection to a healthy target, or closes it.
func (n *nlb) forward(client net.Conn) {
	defer client.Close()
	t := n.pick()
	if t == nil {
		return
	}
	backend, err := net.DialTimeout("tcp", t.addr, nlbDialBound)
	if err != nil {
		n.log(nlbEvent{at: time.Now(), kind: "dial-failed", target: t.name, detail: err.Error()})
		return
	}
	defer backend.Close()
	if !n.track(t, client, backend) {
		return
	}
	defer n.untrack(t, client, backend)
	n.log(nlbEvent{at: time.Now(), kind: "forwarded", target: t.name, detail: t.addr})
	deadline := time.Now().Add(nlbConnBound)
	_ = client.SetDeadline(deadline)
	_ = backend.SetDeadline(deadline)
	var wg sync.WaitGroup
	wg.Go(func() { pipe(backend, client) })
	pipe(client, backend)
	wg.Wait()
}

// pipe copies src to dst until src ends, then half-closes dst so the other side sees the end too.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

// pick chooses the next healthy target, logging a refusal when there is none (or too many open connections).
func (n *nlb) pick() *nlbTarget {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.open >= nlbMaxConns {
		n.logLocked(nlbEvent{at: time.Now(), kind: "refused", detail: fmt.Sprintf("%d connections open", n.open)})
		return nil
	}
	for range n.targets {
		t := n.targets[n.next%len(n.targets)]
		n.next++
		if t.healthy {
			return t
		}
	}
	n.logLocked(nlbEvent{at: time.Now(), kind: "refused", detail: "no healthy target"})
	return nil
}

// track registers a forwarded pair with its target; false when the target turned unhealthy (or the forwarder
// stopped) since it was picked.
func (n *nlb) track(t *nlbTarget, a, b net.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !t.healthy || n.closed {
		return false
	}
	t.conns[a], t.conns[b] = struct{}{}, struct{}{}
	n.open++
	return true
}

func (n *nlb) untrack(t *nlbTarget, a, b net.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(t.conns, a)
	delete(t.conns, b)
	n.open--
}

func closeAll(conns map[net.Conn]struct{}) {
	for c := range conns {
		_ = c.Close()
	}
}

func (n *nlb) log(e nlbEvent) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.logLocked(e)
}

func (n *nlb) logLocked(e nlbEvent) {
	if len(n.evs) < nlbMaxEvents {
		n.evs = append(n.evs, e)
	}
}

// healthyNow names the targets the forwarder considers healthy now.
func (n *nlb) healthyNow() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var names []string
	for _, t := range n.targets {
		if t.healthy {
			names = append(names, t.name)
		}
	}
	return names
}

// first is the time of the first event of kind for target at or after since (zero when none).
func (n *nlb) first(kind, target string, since time.Time) time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.evs {
		if e.kind == kind && e.target == target && !e.at.Before(since) {
			return e.at
		}
	}
	return time.Time{}
}

// count is how many events of kind for target happened at or after since.
func (n *nlb) count(kind, target string, since time.Time) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, e := range n.evs {
		if e.kind == kind && e.target == target && !e.at.Before(since) {
			k++
		}
	}
	return k
}

// bothHealthy lists the moments at which more than one target was healthy (replayed from the health events).
func (n *nlb) bothHealthy() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	healthy := map[string]bool{}
	var where []string
	for _, e := range n.evs {
		switch e.kind {
		case "healthy":
			healthy[e.target] = true
			if len(healthy) > 1 {
				where = append(where, fmt.Sprintf("%s: %s healthy while %d targets were", e.at.Format("15:04:05.000"), e.target, len(healthy)))
			}
		case "unhealthy":
			delete(healthy, e.target)
		}
	}
	return where
}

// events is the health changes and the connections since since, for logs and failure messages: a run of
// connections with the same outcome and target is folded into one line with its count and first and last times.
func (n *nlb) events(since time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	var first, last nlbEvent
	k := 0
	flush := func() {
		if k > 0 {
			fmt.Fprintf(&b, "  %s–%s %s %s ×%d %s\n", first.at.Format("15:04:05.000"), last.at.Format("15:04:05.000"),
				first.kind, first.target, k, last.detail)
		}
		k = 0
	}
	for _, e := range n.evs {
		switch {
		case e.at.Before(since):
			continue
		case e.kind == "healthy" || e.kind == "unhealthy":
			flush()
			fmt.Fprintf(&b, "  %s %s %s %s\n", e.at.Format("15:04:05.000"), e.kind, e.target, e.detail)
			continue
		case k > 0 && (e.kind != first.kind || e.target != first.target):
			flush()
		}
		if k == 0 {
			first = e
		}
		last = e
		k++
	}
	flush()
	return b.String()
}
