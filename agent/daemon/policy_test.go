package daemon

import (
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

func TestUnhealthyNodeHandover(t *testing.T) {
	cases := []struct {
		name         string
		peerHealthy  bool
		wantHandover bool
	}{
		{"HandsOverToAHealthyStandby", true, true},
		{"StaysWithoutAHealthyStandby", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, true, func(c *config.Config) { c.Health.UnhealthyStepdown = 50 * time.Millisecond }, nil)
			h.takeover.gone.Store(true)
			h.takeover.peerReady.Store(tc.peerHealthy)
			testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
			term := newFakeTerm()
			h.elector.grant <- term
			node := <-h.nodes
			testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
			h.nodeSick.Store(true)
			testenv.WaitFor(t, 5*time.Second, "the standby's health asked twice", func() bool { return h.takeover.asked.Load() >= 2 || term.released.Load() })
			if term.released.Load() != tc.wantHandover {
				t.Fatalf("handed over = %v, want %v", term.released.Load(), tc.wantHandover)
			}
			if tc.wantHandover && node.running.Load() {
				t.Error("the unhealthy node still runs after the handover")
			}
			if !tc.wantHandover && h.role() != state.Active {
				t.Errorf("role %s, want active: there is nobody to hand over to", h.role())
			}
		})
	}
}

// TestStuckStartHandsOver: a host that holds the lock but cannot start its node (a foreign container under its
// name) hands over to a healthy standby once the bound has passed, and says why.
func TestStuckStartHandsOver(t *testing.T) {
	h := startWith(t, setup{leader: true, config: func(c *config.Config) { c.Health.UnhealthyStepdown = 50 * time.Millisecond },
		node: func(n *fakeNode) { n.startErr = `container "chainlink" is not managed by cl-agent` }})
	h.takeover.gone.Store(true)
	h.takeover.peerReady.Store(true)
	testenv.WaitFor(t, 5*time.Second, "campaigning", func() bool { return h.elector.acquires.Load() == 1 })
	term := newFakeTerm()
	h.elector.grant <- term
	<-h.nodes
	testenv.WaitFor(t, 5*time.Second, "the stuck host to hand over", term.released.Load)
	if !h.notes.contains("handing over a node that keeps failing (node not ready: backoff: container \"chainlink\" is not managed") {
		t.Errorf("systemd's status line never said why the host handed over: %q", h.notes.all())
	}
}

func TestSickNodeClock(t *testing.T) {
	var s sickNode
	t0 := time.Now()
	bound := time.Minute
	steps := []struct {
		at      time.Duration
		failing bool
		want    bool
	}{
		{0, true, false},                // starts the clock
		{59 * time.Second, true, false}, // not yet
		{61 * time.Second, true, true},  // due: ask the peer
		{90 * time.Second, true, false}, // asked 29s ago: wait a whole bound before asking again
		{122 * time.Second, true, true}, // ask again
		{123 * time.Second, false, false},
		{124 * time.Second, true, false}, // recovered in between: the clock starts over
	}
	for _, st := range steps {
		if got := s.due(st.failing, bound, t0.Add(st.at)); got != st.want {
			t.Errorf("at %s failing=%v: due=%v, want %v", st.at, st.failing, got, st.want)
		}
	}
}

func TestHostsReportTheirHealth(t *testing.T) {
	h := start(t, true, nil, nil)
	testenv.WaitFor(t, 5*time.Second, "a health report", func() bool { return h.takeover.reports.Load() >= 1 })
}

// TestStandbyLearnsTheHolderFromItsCampaign: the standby knows who holds the lock from its campaign's own attempts,
// with no lookup (no connection) of its own per tick, and counts the takeover after it as a failover.
func TestStandbyLearnsTheHolderFromItsCampaign(t *testing.T) {
	h := startWith(t, setup{leader: true, peer: &leader.Holder{Held: true, ApplicationName: "cl-agent/i-0bbb", InstanceID: "i-0bbb"}})
	h.takeover.gone.Store(true)
	testenv.WaitFor(t, 5*time.Second, "the peer seen holding the lock", func() bool { return h.d.Status().Lock.Holder == "cl-agent/i-0bbb" })
	beats := h.notes.count("WATCHDOG=1")
	testenv.WaitFor(t, 5*time.Second, "twenty ticks", func() bool { return h.notes.count("WATCHDOG=1") >= beats+20 })
	if n := h.elector.holderLookups.Load(); n != 0 {
		t.Fatalf("the standby looked the holder up %d times; its campaign already knows", n)
	}
	h.elector.grant <- newFakeTerm()
	<-h.nodes
	testenv.WaitFor(t, 5*time.Second, "active", func() bool { return h.role() == state.Active })
	if n := h.observer.failovers.Load(); n != 1 {
		t.Fatalf("%d failovers counted after taking over from i-0bbb, want 1", n)
	}
}
