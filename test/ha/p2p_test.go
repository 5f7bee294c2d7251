package ha

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// p2pChecks are the test forwarder's health checks: the template's thresholds (2 and 2), a 200 ms interval
// instead of its 10 s (see nlbChecks).
var p2pChecks = nlbChecks{Interval: 200 * time.Millisecond, Healthy: 2, Unhealthy: 2}

// Bounds of the P2P scenario.
const (
	knockBound   = 2 * time.Second         // one probe connection: connect, knock, the far end's close
	nodeLogBound = 15 * time.Second        // a line the node logs on a probe (or at boot) shows up in its log
	probeEvery   = 20 * time.Millisecond   // the failover prober's pace: a peer redialling (the node's own DeltaDial is 15 s)
	flipSlack    = time.Second             // the agent's /readyz after its node's (lbFlip's bound)
	checkSlack   = 1500 * time.Millisecond // one health check's own time and the prober's step, on a loaded machine
)

// p2pConfig is node.p2p for one host, announcing the forwarder, with OCR2 on: v2.19.0 creates its P2P key when
// P2P.V2 is enabled (core/cmd/shell_local.go:441) but starts its P2P stack, the ragep2p host that listens, only when
// OCR or OCR2 is enabled too (core/services/chainlink/application.go:502, "P2P stack not needed"), as a node of a
// DON has them.
func p2pConfig(port int, announce string) string {
	return fmt.Sprintf(`  p2p: {enabled: true, listen_port: %d, announce: %q}
  extra_toml: |
    [OCR2]
    Enabled = true
`, port, announce)
}

// TestP2PFollowsTheActive shows the P2P port answering on whichever host is active, through a TCP forwarder that
// stands in for the template's Network Load Balancer (nlb: it follows each agent's /readyz as the target group's
// health check does, with its thresholds and a shorter interval). On the real node v2.19.0, each host with its own
// P2P port (both publish on the one Docker engine here) and both announcing the forwarder's address:
//   - a ragep2p knock sent through the forwarder is forwarded to the active and read by the active's node (its log
//     names the probe's peer ID); nothing listens on the standby's P2P port;
//   - kill -9 of the active agent and its fence: the forwarder marks the old target unhealthy, the new node turns
//     ready, the forwarder marks the new target healthy and forwards a redialling peer to it, never before its
//     node was ready; the old active's P2P port stops answering, the new node has the same peer ID (its key is
//     in the shared database), the forwarder never had two healthy targets, and the node containers never ran at
//     the same time.
//
// Logged: the times from the kill to each step, with the forwarder's settings, and what the template's would give.
func TestP2PFollowsTheActive(t *testing.T) {
	c := newRealNodeCluster(t)
	ports := p2pPorts(t, c)
	targets := map[*host]*nlbTarget{}
	for i, h := range c.hosts {
		targets[h] = &nlbTarget{name: h.name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])), check: h.agentReadyz}
	}
	lb := startNLB(t, p2pChecks, targets[c.hosts[0]], targets[c.hosts[1]])
	for i, h := range c.hosts { // each agent checks its node's published P2P port on its own loopback (node_p2p)
		forwardLoopback(t, h.ns.Name, ports[i])
	}
	for i, h := range c.hosts {
		h.editConfig(t, "node:\n", "node:\n"+p2pConfig(ports[i], lb.addr()))
	}
	t.Logf("forwarder on %s (announced by both agents): %s; P2P ports %s %s, %s %s", lb.addr(), p2pChecks,
		c.hosts[0].name, targets[c.hosts[0]].addr, c.hosts[1].name, targets[c.hosts[1]].addr)
	c.firstStart(t)
	a, b := c.bringUp(t)

	peer := nodePeerID(t, a)
	t.Logf("%s's node booted its ragep2p host as peer %s", a.name, peer)
	waitHealthyTarget(t, lb, a, time.Duration(p2pChecks.Healthy)*p2pChecks.Interval+5*time.Second)
	knockThrough(t, lb, a, c.other(a), peer, "before the failover")
	if err := p2pRefused(targets[b].addr); err != nil {
		t.Errorf("the standby %s's P2P port %s: %v; want nothing listening", b.name, targets[b].addr, err)
	}

	f := c.p2pFailover(t, lb, a, b, peer)
	f.log(t, c.tag)
	if err := p2pRefused(targets[a].addr); err != nil {
		t.Errorf("the old active %s's P2P port %s after the failover: %v; want nothing listening", a.name, targets[a].addr, err)
	}
	if got := nodePeerID(t, b); got != peer {
		t.Errorf("the new active %s's node is peer %s; want %s, the key in the shared database", b.name, got, peer)
	}
	knockThrough(t, lb, b, a, peer, "after the failover")
	// The agent's own P2P check (node_p2p) on the new active: the real node's port holds a connection.
	var p2pCheck string
	testenv.WaitFor(t, 45*time.Second, "node_p2p ok on the new active "+b.name, func() bool {
		st, err := b.status()
		for _, ch := range st.Checks {
			if ch.Name == "node_p2p" {
				p2pCheck = fmt.Sprintf("ok %t: %s", ch.OK, ch.Detail)
				return err == nil && ch.OK && !ch.Skipped
			}
		}
		return false
	})
	t.Logf("the new active's node_p2p check: %s", p2pCheck)
	if where := lb.bothHealthy(); len(where) > 0 {
		t.Errorf("the forwarder had two healthy targets:\n%s", strings.Join(where, "\n"))
	}
}

// p2pFigures are the times of one failover seen through the forwarder, from the kill -9.
type p2pFigures struct {
	oldUnhealthy time.Duration // the forwarder marks the old active unhealthy
	oldDied      time.Duration // the old active's node container dies (fenced): its P2P port stops answering
	nodeReady    time.Duration // the new active's node answers /readyz 200
	agentReady   time.Duration // the new active's agent /readyz 200 (what the health check asks)
	newHealthy   time.Duration // the forwarder marks the new active healthy
	reached      time.Duration // the forwarder's first connection forwarded to the new active's P2P port
	toOld        int           // connections forwarded to the old active after the kill (before it was unhealthy)
	dialFailed   int           // of which the forwarder could not connect to the old active's port
	refused      int           // probe connections closed at once for want of a healthy target
}

// p2pFailover is the KillAgent scenario (kill -9 of the active agent, its fence as systemd's ExecStopPost, the
// agent back as the standby) with a peer redialling through the forwarder every probeEvery, a knock each time.
func (c *cluster) p2pFailover(t *testing.T, lb *nlb, a, b *host, peer string) p2pFigures {
	t.Helper()
	defer c.logsOnFailure(t)
	c.waitSettled(t, a, settleBound)
	rec := c.record(t)
	defer rec.stop()
	probe := newKnock(t, peer)
	stopProbing := probeLoop(lb.addr(), probe)
	defer stopProbing()

	t0 := time.Now()
	a.kill9(t)
	fenced := make(chan error, 1)
	go func() {
		_, err := a.fence(context.Background())
		fenced <- err
	}()
	nodeReady := waitReadyz(t, b.port, killBound+10*time.Second+c.nodeBoot, "after kill -9 of the active agent and its fence")
	flip := lbFlip(t, b, a, nodeReady)
	var reached time.Time
	bound := flipSlack + time.Duration(p2pChecks.Healthy)*p2pChecks.Interval + checkSlack
	if !testenv.Poll(bound+5*time.Second, readyPoll, func() bool {
		reached = lb.first("forwarded", b.name, t0)
		return !reached.IsZero()
	}) {
		t.Fatalf("the forwarder forwarded no connection to %s within %s of its node's /readyz 200; forwarder since the kill:\n%s",
			b.name, bound+5*time.Second, lb.events(t0))
	}
	stopProbing()
	if err := <-fenced; err != nil {
		t.Fatal(err)
	}
	a.start(t)
	c.verify(t, rec, b)
	t.Logf("forwarder since the kill:\n%s", lb.events(t0))

	f := p2pFigures{
		oldUnhealthy: lb.first("unhealthy", a.name, t0).Sub(t0),
		oldDied:      rec.first(a.container, "die", t0).Sub(t0),
		nodeReady:    nodeReady.Sub(t0),
		agentReady:   nodeReady.Add(flip).Sub(t0),
		newHealthy:   lb.first("healthy", b.name, t0).Sub(t0),
		reached:      reached.Sub(t0),
		toOld:        lb.count("forwarded", a.name, t0),
		dialFailed:   lb.count("dial-failed", a.name, t0),
		refused:      lb.count("refused", "", t0),
	}
	switch {
	case reached.Before(nodeReady):
		t.Errorf("the forwarder sent a peer to %s %s before its node answered /readyz 200", b.name, nodeReady.Sub(reached))
	case reached.Sub(nodeReady) > bound:
		t.Errorf("the forwarder reached %s %s after its node was ready; its health checks (%s) bound that by %s",
			b.name, reached.Sub(nodeReady), p2pChecks, bound)
	}
	if f.oldUnhealthy < 0 {
		t.Errorf("the forwarder never marked the killed active %s unhealthy:\n%s", a.name, lb.events(t0))
	}
	// The probes that reached the new node are knocks it read: its log names the prober's peer ID.
	waitNodeLog(t, b, reached.Add(-time.Second), "the failover prober's knock read by "+b.name+"'s node", func(line string) bool {
		return strings.Contains(line, "unknown peer") && strings.Contains(line, probe.id)
	})
	return f
}

// log writes the figures, and what the template's health checks would add in production.
func (f p2pFigures) log(t *testing.T, tag string) {
	t.Helper()
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("P2P failover through the forwarder (real node %s; %s), from kill -9 of the active agent: "+
		"old target unhealthy %s, old node dead (its P2P port closed) %s, new node /readyz 200 %s, its agent /readyz 200 %s, "+
		"new target healthy %s, first peer forwarded to the new active's P2P port %s; "+
		"new node ready → forwarder reaching it %s; after the kill %d connections went to the old active (%d of them failed to connect), %d were refused for want of a healthy target",
		tag, p2pChecks, ms(f.oldUnhealthy), ms(f.oldDied), ms(f.nodeReady), ms(f.agentReady), ms(f.newHealthy), ms(f.reached),
		ms(f.reached-f.nodeReady), f.toOld, f.dialFailed, f.refused)
	lo := time.Duration(templateChecks.Healthy-1) * templateChecks.Interval
	hi := time.Duration(templateChecks.Healthy) * templateChecks.Interval
	t.Logf("with the template's checks (%s): the new target turns healthy %s–%s after its agent's /readyz 200, so peers reach the new active "+
		"%s–%s after the kill (here %s); the old target stays in service %s–%s after the kill, its connections refused once its node is fenced (here %s)",
		templateChecks, lo, hi, ms(f.agentReady+lo), ms(f.agentReady+hi), ms(f.reached), lo, hi, ms(f.oldDied))
}

// ---- ragep2p probes ----

// knock is a ragep2p knock (libocr v0.0.0-20241007185508 ragep2p/internal/knock: version 0x02 || the dialer's
// Ed25519 public key || its signature over "ragep2p 1.0.0 knock knock" and the dialed peer's ID) from a fresh key.
// A node reads it, finds the signature good and the dialer not among its peers, logs "Received incoming connection
// from an unknown peer, closing" with remotePeerID = id, and closes (ragep2p.go handleIncomingConnection). That log
// line proves the node itself read the connection: on the host, the engine's docker-proxy accepts on a published
// port whenever the container runs, listening or not.
type knock struct {
	id    string // the dialer's peer ID (12D3KooW…)
	bytes []byte
}

func newKnock(tb testing.TB, nodePeer string) knock {
	tb.Helper()
	to, err := peerIDKey(nodePeer)
	if err != nil {
		tb.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sig := ed25519.Sign(priv, append([]byte("ragep2p 1.0.0 knock knock"), to...))
	return knock{id: peerIDOf(pub), bytes: slices.Concat([]byte{0x02}, pub, sig)}
}

// send connects to addr, knocks and reads until the far end closes (the node, after reading the knock; the
// forwarder at once when it has no healthy target), within knockBound.
func (k knock) send(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, knockBound)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(knockBound)); err != nil {
		return err
	}
	if _, err := conn.Write(k.bytes); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, conn)
	return err
}

// probeLoop knocks through addr every probeEvery until the returned function is called (safe to call twice).
func probeLoop(addr string, k knock) (stop func()) {
	stopc, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for {
			_ = k.send(addr) // refusals are the forwarder's to record
			select {
			case <-stopc:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		select {
		case <-stopc:
		default:
			close(stopc)
		}
		<-done
	}
}

// knockThrough knocks once through the forwarder and checks that it forwarded the connection to want (and not to
// other) and that want's node read the knock.
func knockThrough(t *testing.T, lb *nlb, want, other *host, peer, when string) {
	t.Helper()
	k := newKnock(t, peer)
	since := time.Now()
	if err := k.send(lb.addr()); err != nil {
		t.Fatalf("%s: a knock through the forwarder %s: %v", when, lb.addr(), err)
	}
	if lb.first("forwarded", want.name, since).IsZero() || lb.count("forwarded", other.name, since) > 0 {
		t.Fatalf("%s: the forwarder did not forward the knock to the active %s:\n%s", when, want.name, lb.events(since))
	}
	waitNodeLog(t, want, since.Add(-time.Second), when+": the knock read by "+want.name+"'s node", func(line string) bool {
		return strings.Contains(line, "unknown peer") && strings.Contains(line, k.id)
	})
	t.Logf("%s: a knock through the forwarder reached %s's node (its log names the probe's peer %s)", when, want.name, k.id)
}

// p2pRefused checks that nothing listens on a published P2P port: a connect is refused (without a container the
// engine has no docker-proxy there either).
func p2pRefused(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, knockBound)
	switch {
	case err == nil:
		conn.Close()
		return errors.New("a connect succeeded")
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connect: %w; want connection refused", err)
	}
	return nil
}

// bootedRE finds the node's peer ID in the line libocr logs once its ragep2p host listens
// (networking/peer_v2.go NewPeer: "PeerV2: ragep2p host booted", with field peerID).
var bootedRE = regexp.MustCompile(`ragep2p host booted.*"peerID":\s*"(12D3KooW[1-9A-HJ-NP-Za-km-z]+)"|"peerID":\s*"(12D3KooW[1-9A-HJ-NP-Za-km-z]+)".*ragep2p host booted`)

// nodePeerID is the peer ID the host's node booted its ragep2p host with.
func nodePeerID(t *testing.T, h *host) string {
	t.Helper()
	line := waitNodeLog(t, h, time.Time{}, h.name+"'s node booting its ragep2p host", bootedRE.MatchString)
	m := bootedRE.FindStringSubmatch(line)
	id := m[1] + m[2]
	if _, err := peerIDKey(id); err != nil {
		t.Fatalf("%s's node logged peer ID %q: %v", h.name, id, err)
	}
	return id
}

// waitNodeLog waits up to nodeLogBound for a line of the host's node log (since since; all of it when zero) that
// matches, and returns it.
func waitNodeLog(t *testing.T, h *host, since time.Time, what string, match func(string) bool) string {
	t.Helper()
	args := []string{}
	if !since.IsZero() {
		args = append(args, "--since", since.Format(time.RFC3339Nano))
	}
	var found, last string
	if !testenv.Poll(nodeLogBound, 200*time.Millisecond, func() bool {
		out, err := containerLogs(context.Background(), h.container, args...)
		if err != nil {
			last = err.Error()
			return false
		}
		for line := range strings.SplitSeq(out, "\n") {
			if match(line) {
				found = line
				return true
			}
		}
		last = lastLines(out, 20)
		return false
	}) {
		t.Fatalf("%s: no such line in %s's node log within %s; its last lines:\n%s", what, h.name, nodeLogBound, last)
	}
	return found
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitHealthyTarget waits until the forwarder considers h, and only h, healthy.
func waitHealthyTarget(t *testing.T, lb *nlb, h *host, bound time.Duration) {
	t.Helper()
	if !testenv.Poll(bound, pollEvery, func() bool { return slices.Equal(lb.healthyNow(), []string{h.name}) }) {
		t.Fatalf("the forwarder's healthy targets are %v %s after settling; want [%s]:\n%s", lb.healthyNow(), bound, h.name, lb.events(time.Time{}))
	}
}

// p2pPorts are two free ports for the hosts' P2P.V2, distinct from each other and from the ports the hosts use.
func p2pPorts(tb testing.TB, c *cluster) [2]int {
	tb.Helper()
	used := map[int]bool{healthPort: true, 6688: true, c.hosts[0].port: true, c.hosts[1].port: true}
	var ports [2]int
	for i := range ports {
		for range 10 {
			if p := testenv.FreePort(tb); !used[p] {
				ports[i], used[p] = p, true
				break
			}
		}
		if ports[i] == 0 {
			tb.Fatal("no free port for P2P.V2 in 10 tries")
		}
	}
	return ports
}

// ---- peer IDs: libp2p's Ed25519 form in base58 (libocr ragep2p/types/types.go) ----

var (
	libp2pEd25519 = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}
	base58Digits  = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
)

// peerIDOf is the peer ID (12D3KooW…) of an Ed25519 public key.
func peerIDOf(pub ed25519.PublicKey) string {
	b := slices.Concat(libp2pEd25519, pub)
	n, radix, digit := new(big.Int).SetBytes(b), big.NewInt(58), new(big.Int)
	var out []byte
	for n.Sign() > 0 {
		n.DivMod(n, radix, digit)
		out = append(out, base58Digits[digit.Int64()])
	}
	for _, x := range b {
		if x != 0 {
			break
		}
		out = append(out, '1')
	}
	slices.Reverse(out)
	return string(out)
}

// peerIDKey is the 32-byte Ed25519 public key inside a peer ID, which a knock to that peer signs.
func peerIDKey(id string) ([]byte, error) {
	n := new(big.Int)
	for _, r := range id {
		i := strings.IndexRune(base58Digits, r)
		if i < 0 {
			return nil, fmt.Errorf("peer ID %q: %q is not a base58 digit", id, r)
		}
		n.Mul(n, big.NewInt(58)).Add(n, big.NewInt(int64(i)))
	}
	zeros := len(id) - len(strings.TrimLeft(id, "1"))
	b := append(make([]byte, zeros), n.Bytes()...)
	if len(b) != len(libp2pEd25519)+ed25519.PublicKeySize || !strings.HasPrefix(string(b), string(libp2pEd25519)) {
		return nil, fmt.Errorf("peer ID %q is not a libp2p Ed25519 peer ID", id)
	}
	key := b[len(libp2pEd25519):]
	if peerIDOf(key) != id {
		return nil, fmt.Errorf("peer ID %q does not encode back to itself", id)
	}
	return key, nil
}
