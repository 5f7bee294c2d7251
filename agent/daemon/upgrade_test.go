package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// candidate is the release the tests upgrade to (the harness's Resolve gives "2.11.0" for "").
var candidate = image.Image{Repository: "r", Tag: "2.11.0", Digest: "sha256:" + strings.Repeat("0", 64)}

// singleHost starts a daemon without leader election whose nodes on the candidate's image behave as node says.
func singleHost(t *testing.T, node func(n *fakeNode)) *harness {
	t.Helper()
	return startWith(t, setup{config: func(c *config.Config) { c.Image.ReadyTimeout = 300 * time.Millisecond }, node: node})
}

// activeOn waits for the node of a start and for it to be active on that node's image.
func activeOn(t *testing.T, h *harness, tag string) *fakeNode {
	t.Helper()
	var n *fakeNode
	select {
	case n = <-h.nodes:
	case <-time.After(5 * time.Second):
		t.Fatalf("no node started on %s", tag)
	}
	if n.img.Tag != tag {
		t.Fatalf("the node started on %s, want %s", n.img, tag)
	}
	return n
}

// phaseIs waits for the pair's record to reach phase.
func phaseIs(t *testing.T, h *harness, phase pair.Phase) pair.Record {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, "upgrade "+string(phase), func() bool { return h.takeover.pairNow().Upgrade.Phase == phase })
	return h.takeover.pairNow()
}

// TestFirstHostRecordsThePairImage: the first host of a new pair records the image it warmed up on before its node
// starts, and its highest release.
func TestFirstHostRecordsThePairImage(t *testing.T) {
	h := singleHost(t, nil)
	activeOn(t, h, warmImage.Tag)
	rec := h.takeover.pairNow()
	if !rec.Exists || rec.Image != warmImage || rec.Highest != warmImage.Tag {
		t.Fatalf("record %+v, want %s with highest %s", rec, warmImage, warmImage.Tag)
	}
	testenv.WaitFor(t, 5*time.Second, "the status shows the pair's image", func() bool {
		return h.d.Status().Image.Pair == warmImage.String() && h.d.Status().Image.Highest == "2.10.0"
	})
}

// TestSingleHostUpgrade: without leader election the active validates the candidate itself, stops its node and
// starts the candidate's; once that is ready the candidate is the pair's image and the highest release.
func TestSingleHostUpgrade(t *testing.T) {
	h := singleHost(t, nil)
	old := activeOn(t, h, "2.10.0")
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	msg, err := h.d.Upgrade(context.Background(), control.UpgradeRequest{})
	if err != nil || !strings.Contains(msg, "2.11.0") {
		t.Fatalf("upgrade: %q %v", msg, err)
	}
	if tag := <-h.validated; tag != "2.11.0" {
		t.Fatalf("validated %s", tag)
	}
	activeOn(t, h, "2.11.0")
	if old.running.Load() {
		t.Error("the old node still runs beside the new one")
	}
	rec := phaseIs(t, h, pair.Done)
	if rec.Image.Tag != "2.11.0" || rec.Highest != "2.11.0" {
		t.Fatalf("after the upgrade the record is %+v", rec)
	}
	testenv.WaitFor(t, 5*time.Second, "active on the new image", func() bool {
		st := h.d.Status()
		return h.role() == state.Active && strings.Contains(st.Node.Image, "2.11.0") && st.Image.Upgrade != nil &&
			st.Image.Upgrade.Phase == "done" && st.Image.Upgrade.Finished
	})
}

// TestUpgradeWaitReportsTheOutcome: `upgrade --wait` returns once the upgrade is done.
func TestUpgradeWaitReportsTheOutcome(t *testing.T) {
	h := singleHost(t, nil)
	activeOn(t, h, "2.10.0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, err := h.d.Upgrade(ctx, control.UpgradeRequest{To: "2.12.0", Wait: true})
	if err != nil || !strings.HasPrefix(msg, "upgraded: the pair runs r:2.12.0@") {
		t.Fatalf("upgrade --wait: %q %v", msg, err)
	}
}

// TestValidationFailureLeavesThePairOnItsImage: a candidate whose node refuses the configuration is refused with
// the node's reason; the node keeps running on the pair's image, and --wait exits 2.
func TestValidationFailureLeavesThePairOnItsImage(t *testing.T) {
	h := singleHost(t, nil)
	old := activeOn(t, h, "2.10.0")
	refusal := errors.New("invalid configuration: Feature.Removed: unknown key")
	h.validateErr.Store(&refusal)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.d.Upgrade(ctx, control.UpgradeRequest{Wait: true})
	if err == nil || !strings.Contains(err.Error(), "Feature.Removed: unknown key") || exitcode.Of(err) != exitcode.Config {
		t.Fatalf("upgrade --wait: %v (exit %d)", err, exitcode.Of(err))
	}
	rec := h.takeover.pairNow()
	if rec.Upgrade.Phase != pair.Refused || rec.Image != warmImage || !old.running.Load() {
		t.Fatalf("after a refused upgrade: phase %s, image %s, old node running %v", rec.Upgrade.Phase, rec.Image, old.running.Load())
	}
	select {
	case n := <-h.nodes:
		t.Fatalf("a node started on %s after a refused upgrade", n.img)
	default:
	}
}

// TestNeverReadyRollsBack: a candidate's node that is not ready within image.ready_timeout and applied no migration
// is stopped, and the pair's image runs again.
func TestNeverReadyRollsBack(t *testing.T) {
	h := singleHost(t, func(n *fakeNode) {
		if n.img.Tag == candidate.Tag {
			n.startErr = "the node's HTTP server never answered"
		}
	})
	activeOn(t, h, "2.10.0")
	if _, err := h.d.Upgrade(context.Background(), control.UpgradeRequest{}); err != nil {
		t.Fatal(err)
	}
	bad := activeOn(t, h, "2.11.0")
	activeOn(t, h, "2.10.0")
	if bad.running.Load() {
		t.Error("the candidate's node still runs after the roll-back")
	}
	rec := phaseIs(t, h, pair.RolledBack)
	if rec.Image != warmImage || rec.Highest != "2.10.0" || !strings.Contains(rec.Upgrade.Reason, "applied no migration") {
		t.Fatalf("after the roll-back: %+v", rec)
	}
	testenv.WaitFor(t, 5*time.Second, "active on the old image", func() bool {
		return h.role() == state.Active && strings.Contains(h.d.Status().Node.Image, "2.10.0")
	})
}

// TestNeverReadyAfterMigratingStays: past the point of no return (the candidate's node applied a migration) the
// agent does not roll back: the upgrade failed, the candidate stays the pair's image, and its node runs again.
func TestNeverReadyAfterMigratingStays(t *testing.T) {
	var h *harness
	h = singleHost(t, func(n *fakeNode) {
		if n.img.Tag == candidate.Tag {
			n.startErr = "the node's HTTP server never answered"
			h.takeover.migration.Add(1) // it migrates as it starts
		}
	})
	activeOn(t, h, "2.10.0")
	if _, err := h.d.Upgrade(context.Background(), control.UpgradeRequest{}); err != nil {
		t.Fatal(err)
	}
	first := activeOn(t, h, "2.11.0")
	rec := phaseIs(t, h, pair.Failed)
	if rec.Image.Tag != "2.11.0" || rec.Highest != "2.11.0" || !strings.Contains(rec.Upgrade.Reason, "point of no return") {
		t.Fatalf("after the failed upgrade: %+v", rec)
	}
	// Stopped to be judged (so it could migrate no further), it starts again: the old release cannot run any more.
	again := activeOn(t, h, "2.11.0")
	if first.running.Load() || !again.running.Load() {
		t.Errorf("past the point of no return: first node running %v, the next %v", first.running.Load(), again.running.Load())
	}
}

// TestDowngradeRefusedNamingBothVersions: an upgrade to an older release than the highest is refused with exit 5
// naming both, unless the operator allows it for that one upgrade.
func TestDowngradeRefusedNamingBothVersions(t *testing.T) {
	h := singleHost(t, nil)
	activeOn(t, h, "2.10.0")
	_, err := h.d.Upgrade(context.Background(), control.UpgradeRequest{To: "2.9.0"})
	if err == nil || exitcode.Of(err) != exitcode.Terminal || !strings.Contains(err.Error(), "2.9.0") || !strings.Contains(err.Error(), "2.10.0") {
		t.Fatalf("downgrade: %v (exit %d)", err, exitcode.Of(err))
	}
	if _, err := h.d.Upgrade(context.Background(), control.UpgradeRequest{To: "2.9.0", AllowDowngrade: true}); err != nil {
		t.Fatalf("allowed downgrade: %v", err)
	}
	activeOn(t, h, "2.9.0")
	if rec := phaseIs(t, h, pair.Done); rec.Highest != "2.10.0" {
		t.Fatalf("the highest release after a downgrade is %s, want 2.10.0", rec.Highest)
	}
}

// TestActiveHandsAValidatedCandidateOver: with leader election the active that sees a validated candidate moves it
// to switching, stops its node and steps down; the next start (here: its own, after the hold) runs the candidate.
func TestActiveHandsAValidatedCandidateOver(t *testing.T) {
	h := startWith(t, setup{leader: true})
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	h.takeover.gone.Store(true)
	h.elector.grant <- newFakeTerm()
	old := activeOn(t, h, "2.10.0")
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	if _, err := h.takeover.RequestUpgrade(context.Background(), candidate, false); err != nil {
		t.Fatal(err)
	}
	if _, err := h.takeover.AdvanceUpgrade(context.Background(), candidate.Digest, pair.Requested, pair.Validated, "", 0); err != nil {
		t.Fatal(err)
	}
	phaseIs(t, h, pair.Switching)
	testenv.WaitFor(t, 5*time.Second, "stepped down", func() bool { return h.role() == state.Standby && !old.running.Load() })
	testenv.WaitFor(t, 5*time.Second, "campaigning again after the hold", func() bool { return h.elector.acquires.Load() == 2 })
	h.elector.grant <- newFakeTerm()
	activeOn(t, h, "2.11.0")
	rec := phaseIs(t, h, pair.Done)
	if rec.Image.Digest != candidate.Digest {
		t.Fatalf("the pair's image after the switchover: %s", rec.Image)
	}
}

// TestStandbyValidatesAndWarmsOnTheNewImage: a standby validates a requested candidate, and warms up again when
// the pair's image moves; a crash of the active (a failover) then runs the pair's image, not a newer release.
func TestStandbyValidatesAndWarmsOnTheNewImage(t *testing.T) {
	h := startWith(t, setup{leader: true})
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	// The peer is the active: it recorded 2.10.0 and asks for 2.11.0.
	if _, err := h.takeover.RecordImage(context.Background(), warmImage); err != nil {
		t.Fatal(err)
	}
	if _, err := h.takeover.RequestUpgrade(context.Background(), candidate, false); err != nil {
		t.Fatal(err)
	}
	if tag := <-h.validated; tag != "2.11.0" {
		t.Fatalf("validated %s", tag)
	}
	phaseIs(t, h, pair.Validated)
	testenv.WaitFor(t, 5*time.Second, "the campaign hurried for the switchover", func() bool { return h.elector.hurried.Load() == 1 })
	// The peer switched and its new node recorded the candidate: this standby warms up on it.
	if _, err := h.takeover.RecordImage(context.Background(), candidate); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "warm on the new image", func() bool { return h.d.Status().Node.Digest == candidate.Digest })
	h.takeover.gone.Store(true)
	h.elector.grant <- newFakeTerm()
	activeOn(t, h, "2.11.0")
}

// TestAutoUpgradesOnlyInsideItsWindow: with image.upgrade auto the active asks for the newest release at its poll,
// only inside image.upgrade_window, and once.
func TestAutoUpgradesOnlyInsideItsWindow(t *testing.T) {
	now := time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(now)
	window, err := config.ParseWindow("11:00-12:00")
	if err != nil {
		t.Fatal(err)
	}
	h := startWith(t, setup{clock: clock, config: func(c *config.Config) {
		c.Image.Upgrade, c.Image.PollInterval, c.Image.UpgradeWindow = config.UpgradeAuto, time.Hour/2, window
		c.Image.ReadyTimeout = time.Hour
	}})
	activeOn(t, h, "2.10.0")
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	clock.Advance(30 * time.Minute) // 10:30, outside the window: nothing is asked
	select {
	case n := <-h.nodes:
		t.Fatalf("an auto upgrade outside the window started %s", n.img)
	case <-time.After(300 * time.Millisecond):
	}
	if p := h.takeover.pairNow().Upgrade.Phase; p != "" {
		t.Fatalf("outside the window the upgrade is %q", p)
	}
	clock.Advance(30 * time.Minute) // 11:00, inside
	activeOn(t, h, "2.11.0")
	phaseIs(t, h, pair.Done)
	clock.Advance(30 * time.Minute) // 11:30: the pair runs the newest release already
	select {
	case n := <-h.nodes:
		t.Fatalf("a second auto upgrade started %s", n.img)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestPinnedTagChangeIsAnUpgrade: an active whose configuration pins another tag than the pair's asks for the
// upgrade to it, which runs as any other.
func TestPinnedTagChangeIsAnUpgrade(t *testing.T) {
	h := startWith(t, setup{config: func(c *config.Config) { c.Image.Tag = "2.12.0" }})
	// The pair ran 2.10.0 before this host restarted with image.tag 2.12.0.
	if _, err := h.takeover.RecordImage(context.Background(), warmImage); err != nil {
		t.Fatal(err)
	}
	activeOn(t, h, "2.10.0")
	activeOn(t, h, "2.12.0")
	if rec := phaseIs(t, h, pair.Done); rec.Image.Tag != "2.12.0" {
		t.Fatalf("the pair's image after the pinned change: %s", rec.Image)
	}
}

// TestUpgradeNeedsAStandby: an active with leader election refuses an upgrade while no healthy standby reports (it
// would wait for ever for a validation and a takeover), and takes it once one does.
func TestUpgradeNeedsAStandby(t *testing.T) {
	h := startWith(t, setup{leader: true})
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	h.takeover.gone.Store(true)
	h.elector.grant <- newFakeTerm()
	activeOn(t, h, "2.10.0")
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	if _, err := h.d.Upgrade(context.Background(), control.UpgradeRequest{}); err == nil || !strings.Contains(err.Error(), "no standby") {
		t.Fatalf("upgrade without a standby: %v", err)
	}
	if p := h.takeover.pairNow().Upgrade.Phase; p != "" {
		t.Fatalf("a refused request left the upgrade %q", p)
	}
	h.takeover.peerReady.Store(true)
	if _, err := h.d.Upgrade(context.Background(), control.UpgradeRequest{}); err != nil {
		t.Fatalf("upgrade with a standby: %v", err)
	}
	phaseIs(t, h, pair.Requested)
}
