package ha

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Upgrades of the pair's image (agent/pair) on two hosts: the stand-in node in two releases, each its own image
// with its own digest in the cluster's registry. The hosts' image.tag is empty, so a host that chose by itself
// would take the newest release in the registry: the tests show that only an upgrade moves the pair.

const (
	newRelease   = "2.11.0"
	upgradeBound = 90 * time.Second // `cl-agent upgrade --wait` with the stand-in: pull, validate, one switchover
	readyTimeout = 8 * time.Second  // image.ready_timeout of these tests
)

// newUpgradeCluster is a cluster whose hosts choose the newest stable release (image.tag empty) and give a new
// image's node readyTimeout to become ready; the registry holds standinTag only.
func newUpgradeCluster(tb testing.TB) *cluster {
	tb.Helper()
	c := newCluster(tb)
	for _, h := range c.hosts {
		h.editConfig(tb, fmt.Sprintf("image: {repository: %q, tag: %q}", c.repo, c.tag),
			fmt.Sprintf("image: {repository: %q, ready_timeout: %s}", c.repo, readyTimeout))
	}
	return c
}

// pushRelease builds the stand-in as release r, pushes it as repo:r.Version and returns its digest.
func (c *cluster) pushRelease(tb testing.TB, r standin.Release) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupBound)
	defer cancel()
	ref := c.repo + ":" + r.Version
	if err := standin.BuildRelease(ctx, r, ref); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _, _ = docker(context.Background(), "rmi", ref) })
	if _, err := runWithin(ctx, pushBound, "docker", "push", ref); err != nil {
		tb.Fatal(err)
	}
	return c.digestOf(tb, ref)
}

// digestOf is the registry digest of a pushed reference.
func (c *cluster) digestOf(tb testing.TB, ref string) string {
	tb.Helper()
	out, err := docker(context.Background(), "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", ref)
	if err != nil {
		tb.Fatal(err)
	}
	for _, d := range strings.Fields(out) {
		if strings.HasPrefix(d, c.repo+"@") {
			return strings.TrimPrefix(d, c.repo+"@")
		}
	}
	tb.Fatalf("no digest of %s in the registry: %q", ref, out)
	return ""
}

// runsDigest waits until h's status says its node (running, or warm for a standby) is digest.
func (h *host) runsDigest(tb testing.TB, digest string, bound time.Duration) control.Status {
	tb.Helper()
	var st control.Status
	if !testenv.Poll(bound, pollEvery, func() bool {
		s, err := h.status()
		st = s
		return err == nil && s.Node.Digest == digest
	}) {
		tb.Fatalf("%s is not on %s within %s: %s, node image %s, upgrade %+v", h.name, digest, bound, brief(st), st.Node.Image, st.Image.Upgrade)
	}
	return st
}

// upgradePhase waits until h's status shows the pair's upgrade in phase (each agent reads the record every tick).
func (h *host) upgradePhase(tb testing.TB, phase string) control.Status {
	tb.Helper()
	var st control.Status
	if !testenv.Poll(cmdBound, pollEvery, func() bool {
		st, _ = h.status()
		return st.Image.Upgrade != nil && st.Image.Upgrade.Phase == phase
	}) {
		tb.Fatalf("%s's status does not show the upgrade %s within %s: %+v", h.name, phase, cmdBound, st.Image)
	}
	return st
}

// upgrade is `cl-agent upgrade --wait` on h, with args.
func (h *host) upgrade(args ...string) (string, error) {
	return h.cli(context.Background(), upgradeBound, append([]string{"upgrade", "--wait", "--timeout", upgradeBound.String()}, args...)...)
}

// TestUpgradeMovesThePairWithOneSwitchover: a newer release in the registry changes nothing by itself — a crash of
// the active fails over to the pair's image — and `cl-agent upgrade` moves both hosts to the new digest with one
// switchover, the longest time with no ready node within the target. A downgrade after it is refused, naming both
// versions.
func TestUpgradeMovesThePairWithOneSwitchover(t *testing.T) {
	c := newUpgradeCluster(t)
	defer c.logsOnFailure(t)
	oldDigest := c.digestOf(t, c.repo+":"+c.tag)
	a, b := c.bringUp(t)
	newDigest := c.pushRelease(t, standin.Release{Version: newRelease})

	// A crash after a newer release appeared does not upgrade.
	c.killAgent(t)
	a, b = c.waitSettled(t, nil, settleBound)
	a.runsDigest(t, oldDigest, cmdBound)
	b.runsDigest(t, oldDigest, cmdBound)

	rec := c.record(t)
	defer rec.stop()
	t0 := time.Now()
	gap := samplePair(a.port, b.port)
	out, err := b.upgrade() // on the standby: any host may ask
	longest := gap.stop()
	if err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	if !strings.Contains(out, "upgraded: the pair runs") || !strings.Contains(out, newRelease) {
		t.Fatalf("upgrade said %q", out)
	}
	// One switchover: the standby is the active now, and the old active warms up on the new digest.
	na, ns := c.verify(t, rec, b)
	na.runsDigest(t, newDigest, cmdBound)
	st := ns.runsDigest(t, newDigest, settleBound)
	if st.Image.Upgrade == nil || st.Image.Upgrade.Phase != "done" || st.Image.Highest != newRelease {
		t.Fatalf("the old active's status after the upgrade: %+v", st.Image)
	}
	if starts := rec.starts(b.container, t0); starts != 1 {
		t.Errorf("the new active's node started %d times during the upgrade, want 1:\n%s", starts, rec.events())
	}
	if starts := rec.starts(a.container, t0); starts != 0 {
		t.Errorf("the old active's node started %d times during the upgrade, want 0:\n%s", starts, rec.events())
	}
	t.Logf("upgrade: the longest time with no ready node was %s", longest)
	if longest > 2*time.Second {
		t.Errorf("the longest time with no ready node during the upgrade was %s; the target is 2s", longest)
	}

	// No downgrade: not by `upgrade`, and not by a host that starts with an older pinned tag (exit 5, naming both).
	out, err = na.cli(context.Background(), cmdBound, "upgrade", "--to", c.tag)
	if err == nil || !strings.Contains(err.Error(), "older than "+newRelease) || !strings.Contains(err.Error(), c.tag) ||
		exitCode(err) != 5 {
		t.Fatalf("a downgrade to %s: %v (exit %d)\n%s", c.tag, err, exitCode(err), out)
	}
	ns.stop(t)
	ns.editConfig(t, fmt.Sprintf("image: {repository: %q,", c.repo), fmt.Sprintf("image: {repository: %q, tag: %q,", c.repo, c.tag))
	from := ns.logOffset()
	ns.start(t)
	select {
	case <-ns.agent.done:
	case <-time.After(settleBound):
		t.Fatalf("%s started with image.tag %s, older than the highest release %s, and did not exit", ns.name, c.tag, newRelease)
	}
	if code := exitCode(ns.agent.err); code != 5 || !strings.Contains(ns.logSince(from), "image 2.10.0 is older than 2.11.0") {
		t.Fatalf("%s with an older pinned tag exited %d (want 5); its log:\n%s", ns.name, code, ns.logSince(from))
	}
	ns.agent = nil
	if st, err := na.status(); err != nil || st.Role != "active" || st.Node.Digest != newDigest {
		t.Fatalf("the active after its peer refused to start: %s (%v)", brief(st), err)
	}
}

// TestPinnedTagChangeUpgrades: a changed pinned image.tag is an upgrade as any other. The standby restarted with the
// new tag warms up on the pair's image, not the new tag; the active restarted with it fails over to that standby,
// which then asks for the upgrade; the pair moves with one more switchover.
func TestPinnedTagChangeUpgrades(t *testing.T) {
	c := newCluster(t)
	defer c.logsOnFailure(t)
	oldDigest := c.digestOf(t, c.repo+":"+c.tag)
	a, b := c.bringUp(t)
	newDigest := c.pushRelease(t, standin.Release{Version: newRelease})
	pin := func(h *host) {
		h.stop(t)
		h.editConfig(t, fmt.Sprintf("tag: %q}", c.tag), fmt.Sprintf("tag: %q, ready_timeout: %s}", newRelease, readyTimeout))
		h.start(t)
	}
	pin(b)
	c.waitSettled(t, a, settleBound)
	b.runsDigest(t, oldDigest, settleBound)

	pin(a) // its node stops with it: b takes over, on the pair's image, and asks for the pinned tag
	for _, h := range c.hosts {
		h.runsDigest(t, newDigest, upgradeBound)
	}
	active, _ := c.waitSettled(t, nil, settleBound)
	if st := active.upgradePhase(t, "done"); st.Image.Highest != newRelease {
		t.Fatalf("after the pinned tag's upgrade: %+v", st.Image)
	}
}

// TestUpgradeRefusedByValidation: a release whose node refuses a key the agent's config.toml still has is
// refused by the standby's validation; the pair stays on its image, nothing restarts, and the reason is the node's.
func TestUpgradeRefusedByValidation(t *testing.T) {
	c := newUpgradeCluster(t)
	defer c.logsOnFailure(t)
	oldDigest := c.digestOf(t, c.repo+":"+c.tag)
	a, b := c.bringUp(t)
	c.pushRelease(t, standin.Release{Version: newRelease, RefuseKey: "WebServer.SecureCookies"})
	rec := c.record(t)
	defer rec.stop()
	t0 := time.Now()
	out, err := a.upgrade("--to", newRelease)
	if err == nil || !strings.Contains(err.Error(), "SecureCookies") || exitCode(err) != 2 {
		t.Fatalf("upgrade to a release that refuses the config: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	c.verify(t, rec, a)
	a.runsDigest(t, oldDigest, cmdBound)
	b.runsDigest(t, oldDigest, cmdBound)
	if n := rec.starts(a.container, t0) + rec.starts(b.container, t0); n != 0 {
		t.Errorf("%d node starts after a refused upgrade, want 0:\n%s", n, rec.events())
	}
	if st := a.upgradePhase(t, "refused"); !strings.Contains(st.Image.Upgrade.Reason, "SecureCookies") {
		t.Fatalf("the active's status after a refused upgrade: %+v", st.Image.Upgrade)
	}
}

// TestUpgradeNeverReadyRollsBack: a release whose node never becomes ready (and migrates nothing) is rolled back
// after image.ready_timeout: the new active runs the pair's image again, and the upgrade says why.
func TestUpgradeNeverReadyRollsBack(t *testing.T) {
	c := newUpgradeCluster(t)
	defer c.logsOnFailure(t)
	oldDigest := c.digestOf(t, c.repo+":"+c.tag)
	a, b := c.bringUp(t)
	c.pushRelease(t, standin.Release{Version: newRelease, NeverReady: true})
	out, err := a.upgrade()
	if err == nil || !strings.Contains(err.Error(), "rolled back") || !strings.Contains(err.Error(), "applied no migration") ||
		exitCode(err) != 1 {
		t.Fatalf("upgrade to a release that never becomes ready: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	na, ns := c.waitSettled(t, b, settleBound)
	na.runsDigest(t, oldDigest, settleBound)
	ns.runsDigest(t, oldDigest, settleBound)
	if st := na.upgradePhase(t, "rolled_back"); st.Image.Highest != c.tag {
		t.Fatalf("the status after the roll-back: %+v", st.Image)
	}
}

// pairSampler measures the longest run of samples in which no host's node answered /readyz 200.
type pairSampler struct {
	stopc, done chan struct{}
	mu          sync.Mutex
	longest     time.Duration
}

func samplePair(ports ...int) *pairSampler {
	s := &pairSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(readyPoll)
		defer tick.Stop()
		var downSince time.Time
		for {
			up := false
			for _, p := range ports {
				up = up || readyz(p) == http.StatusOK
			}
			now := time.Now()
			switch {
			case !up && downSince.IsZero():
				downSince = now
			case up && !downSince.IsZero():
				s.mu.Lock()
				s.longest = max(s.longest, now.Sub(downSince))
				s.mu.Unlock()
				downSince = time.Time{}
			}
			select {
			case <-s.stopc:
				if !downSince.IsZero() {
					s.mu.Lock()
					s.longest = max(s.longest, now.Sub(downSince))
					s.mu.Unlock()
				}
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the longest gap.
func (s *pairSampler) stop() time.Duration {
	close(s.stopc)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.longest
}

// starts counts the start events of container name at or after since.
func (r *recorder) starts(name string, since time.Time) int {
	n := 0
	for _, e := range r.sorted() {
		if e.name == name && e.action == "start" && !e.at.Before(since) {
			n++
		}
	}
	return n
}

// exitCode is the exit status of a failed `cl-agent` command (-1: it did not exit with one).
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// BenchmarkUpgrade is the longest time with no ready node while the node moves to a new release (a new release
// each iteration), polled every 20 ms on both hosts' node ports:
//
//	Upgrade                `cl-agent upgrade --wait` on the pair (stand-in releases): pull and validate on the
//	                       standby, one planned switchover
//	OldWayUpgrade          the old Quick Start's way, on one host: docker stop and rm, docker pull, docker run
//	RealNodeUpgrade        Upgrade on the real node v2.19.0 (rebuilt under new tags: new digests, the same binary)
//	RealNodeOldWayUpgrade  OldWayUpgrade on the real node
//
// A cluster is built only when -bench selects one of its sub-benchmarks.
func BenchmarkUpgrade(b *testing.B) {
	if benchSelected("Upgrade", "OldWayUpgrade") {
		c := newUpgradeCluster(b)
		benchUpgrades(b, c, "", targetUpgradeGap, func(tb testing.TB, v string) { c.pushRelease(tb, standin.Release{Version: v}) })
	}
	if benchSelected("RealNodeUpgrade", "RealNodeOldWayUpgrade") {
		c := newRealNodeCluster(b)
		for _, h := range c.hosts {
			h.editConfig(b, fmt.Sprintf("image: {repository: %q, tag: %q}", c.repo, c.tag),
				fmt.Sprintf("image: {repository: %q, ready_timeout: 2m}", c.repo))
		}
		benchUpgrades(b, c, "RealNode", noTarget, func(tb testing.TB, v string) { c.pushRebuild(tb, c.realImage, v) })
	}
}

// benchUpgrades is BenchmarkUpgrade's two sub-benchmarks on c, named with prefix; push publishes release v.
func benchUpgrades(b *testing.B, c *cluster, prefix string, target time.Duration, push func(testing.TB, string)) {
	c.bringUp(b)
	minor := 30
	release := func(tb testing.TB) string {
		minor++
		v := fmt.Sprintf("2.%d.0", minor)
		push(tb, v)
		return v
	}
	benchMedian(b, prefix+"Upgrade", "gap", target, nil, func(tb testing.TB) time.Duration {
		v := release(tb)
		a, s := c.waitSettled(tb, nil, settleBound)
		gap := samplePair(a.port, s.port)
		out, err := s.upgrade("--to", v)
		longest := gap.stop()
		if err != nil {
			tb.Fatalf("upgrade to %s: %v\n%s", v, err, out)
		}
		c.waitSettled(tb, s, settleBound+c.nodeBoot)
		a.runsDigest(tb, c.digestOf(tb, c.repo+":"+v), settleBound+c.nodeBoot)
		return longest
	})

	old := c.newOldModel(b)
	if _, err := docker(context.Background(), "rm", "--force", old.nodes[1].name); err != nil { // one host
		b.Fatal(err)
	}
	node := old.nodes[0]
	benchMedian(b, prefix+"OldWayUpgrade", "gap", noTarget, nil, func(tb testing.TB) time.Duration {
		ref := c.repo + ":" + release(tb)
		if _, err := docker(context.Background(), "rmi", ref); err != nil { // only in the registry now: the pull is real
			tb.Fatal(err)
		}
		waitReadyz(tb, node.port, settleBound+c.nodeBoot, "old way: the node before its upgrade")
		gap := samplePair(node.port)
		ctx, cancel := context.WithTimeout(context.Background(), setupBound)
		defer cancel()
		for _, args := range [][]string{{"stop", node.name}, {"rm", node.name}, {"pull", ref}} {
			if _, err := docker(ctx, args...); err != nil {
				tb.Fatal(err)
			}
		}
		if err := node.run(ctx, ref); err != nil {
			tb.Fatal(err)
		}
		waitReadyz(tb, node.port, settleBound+c.nodeBoot, "old way: the node after docker run of "+ref)
		return gap.stop()
	})
}

// TestSingleHostUpgrade: without leader election (leader.enabled: false) the host validates the candidate while its
// node runs, then restarts its node on it: one restart, the pair's record moved, and a release that never becomes
// ready rolled back on the same host.
func TestSingleHostUpgrade(t *testing.T) {
	c := newUpgradeCluster(t)
	defer c.logsOnFailure(t)
	h := c.hosts[0]
	h.editConfig(t, "leader:\n  enabled: true", "leader:\n  enabled: false")
	oldDigest := c.digestOf(t, c.repo+":"+c.tag)
	h.start(t)
	h.runsDigest(t, oldDigest, settleBound)
	waitReadyz(t, h.port, settleBound, "the single host's node")

	newDigest := c.pushRelease(t, standin.Release{Version: newRelease})
	rec := c.record(t, h.container)
	defer rec.stop()
	t0 := time.Now()
	gap := samplePair(h.port)
	out, err := h.upgrade()
	longest := gap.stop()
	if err != nil || !strings.Contains(out, "upgraded") {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	st := h.runsDigest(t, newDigest, cmdBound)
	if st.Role != "active" || st.Image.Highest != newRelease {
		t.Fatalf("after the upgrade: %s, highest %q", brief(st), st.Image.Highest)
	}
	if n := rec.starts(h.container, t0); n != 1 {
		t.Errorf("the node started %d times during the upgrade, want 1:\n%s", n, rec.events())
	}
	t.Logf("single host upgrade: not ready for %s (the node's restart on the new image)", longest)

	c.pushRelease(t, standin.Release{Version: "2.12.0", NeverReady: true})
	if out, err := h.upgrade(); err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("upgrade to a release that never becomes ready: %v\n%s", err, out)
	}
	h.runsDigest(t, newDigest, settleBound)
	waitReadyz(t, h.port, settleBound, "the single host's node after the roll-back")
}

// TestAutoUpgradeOnlyInsideItsWindow: with image.upgrade auto a new active looks for a newer release at once (then
// every image.poll_interval); outside image.upgrade_window it asks nothing, inside it the pair upgrades with one
// switchover.
func TestAutoUpgradeOnlyInsideItsWindow(t *testing.T) {
	c := newUpgradeCluster(t)
	defer c.logsOnFailure(t)
	now := time.Now().UTC()
	window := func(from, to time.Duration) string {
		return now.Add(from).Format("15:04") + "-" + now.Add(to).Format("15:04")
	}
	outside, inside := window(2*time.Hour, 3*time.Hour), window(-time.Hour, time.Hour)
	for _, h := range c.hosts {
		h.editConfig(t, fmt.Sprintf("ready_timeout: %s}", readyTimeout),
			fmt.Sprintf("ready_timeout: %s, upgrade: auto, upgrade_window: %q}", readyTimeout, outside))
	}
	a, b := c.bringUp(t)
	newDigest := c.pushRelease(t, standin.Release{Version: newRelease})

	// The standby becomes the active: outside its window, its first look asks for nothing.
	from := b.logOffset()
	c.stepdown(t)
	c.waitSettled(t, b, settleBound)
	if !testenv.Poll(settleBound, pollEvery, func() bool {
		return strings.Contains(b.logSince(from), "auto upgrade: outside image.upgrade_window")
	}) {
		t.Fatalf("%s never looked for a newer release outside its window", b.name)
	}
	if st, _ := b.status(); st.Image.Upgrade != nil || st.Node.Digest == newDigest {
		t.Fatalf("outside the window: upgrade %+v, node %s", st.Image.Upgrade, st.Node.Image)
	}

	// The other host, its window around now, becomes the active: it asks for the newest release, and the pair moves.
	a.stop(t)
	a.editConfig(t, fmt.Sprintf("upgrade_window: %q", outside), fmt.Sprintf("upgrade_window: %q", inside))
	a.start(t)
	c.waitSettled(t, b, settleBound)
	if out, err := b.cli(context.Background(), cmdBound, "stepdown"); err != nil {
		t.Fatalf("stepdown: %v\n%s", err, out)
	}
	for _, h := range c.hosts {
		h.runsDigest(t, newDigest, upgradeBound)
	}
	c.waitSettled(t, nil, settleBound)
	if st := a.upgradePhase(t, "done"); st.Image.Highest != newRelease {
		t.Fatalf("inside the window: %+v", st.Image)
	}
}
