package ha

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealNodeUpgrade is `cl-agent upgrade` on the real node v2.19.0: the pair moves to another image with one
// switchover, the standby's validation being the real node's own `validate` of the candidate, and the new active's
// start the real node's boot (keystore check, migrations already applied, key ring opened). Only one real release
// is buildable here, so the candidate is the same node rebuilt under a newer tag: its own digest, the same binary.
func TestRealNodeUpgrade(t *testing.T) {
	c := newRealNodeCluster(t)
	defer c.logsOnFailure(t)
	for _, h := range c.hosts {
		h.editConfig(t, fmt.Sprintf("image: {repository: %q, tag: %q}", c.repo, c.tag),
			fmt.Sprintf("image: {repository: %q, ready_timeout: 2m}", c.repo))
	}
	a, b := c.bringUp(t)
	tag := "2.19.1"
	digest := c.pushRebuild(t, c.realImage, tag)

	rec := c.record(t)
	defer rec.stop()
	t0 := time.Now()
	gap := samplePair(a.port, b.port)
	out, err := a.upgrade("--to", tag)
	longest := gap.stop()
	if err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	na, ns := c.verify(t, rec, b)
	na.runsDigest(t, digest, cmdBound)
	ns.runsDigest(t, digest, settleBound+c.nodeBoot)
	if n := rec.starts(b.container, t0); n != 1 {
		t.Errorf("the new active's node started %d times, want 1:\n%s", n, rec.events())
	}
	if n := rec.starts(a.container, t0); n != 0 {
		t.Errorf("the old active's node started %d times, want 0:\n%s", n, rec.events())
	}
	t.Logf("real node upgrade: the longest time with no ready node was %s (one switchover; the new node's boot included)", longest)
}

// pushRebuild pushes image rebuilt with one label more (a new digest, the same layers) as repo:tag, and returns
// the digest.
func (c *cluster) pushRebuild(tb testing.TB, image, tag string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupBound)
	defer cancel()
	dir := tb.TempDir()
	df := fmt.Sprintf("FROM %s\nLABEL cl-agent.test.rebuild=%q\n", image, tag)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		tb.Fatal(err)
	}
	ref := c.repo + ":" + tag
	if _, err := docker(ctx, "build", "--quiet", "--tag", ref, dir); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _, _ = docker(context.Background(), "rmi", ref) })
	if _, err := runWithin(ctx, pushBound, "docker", "push", ref); err != nil {
		tb.Fatal(err)
	}
	d := c.digestOf(tb, ref)
	if strings.HasSuffix(d, strings.TrimPrefix(c.digestOf(tb, c.repo+":"+c.tag), "sha256:")) {
		tb.Fatalf("the rebuild %s has the digest of %s", ref, c.tag)
	}
	return d
}
