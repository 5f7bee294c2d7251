package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// healthReportEvery is how often each host writes its health for the other one to read (see peers.go).
const healthReportEvery = 5 * time.Second

// nodeChecks are the checks that say whether the active's node works.
var nodeChecks = []string{"node_readyz", "node_health"}

// selfHealth is what this host reports to its peer: could it run the node now?
func (d *Daemon) selfHealth() (healthy bool, detail string) {
	st := d.Status()
	if st.LastError != "" {
		return false, "problem: " + st.LastError
	}
	if Role(st.Role) == RoleActive {
		return st.Node.Ready, "node " + st.Node.State
	}
	var failing []string
	for _, c := range st.Checks {
		if !c.OK && !c.Skipped && !strings.HasPrefix(c.Name, "node_") {
			failing = append(failing, c.Name)
		}
	}
	if len(failing) > 0 {
		return false, "failing: " + strings.Join(failing, ", ")
	}
	return d.warmed(), "warm"
}

func (d *Daemon) warmed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.img.Digest != ""
}

// reportHealth writes this host's health, at most one write in flight, never blocking the loop.
func (d *Daemon) reportHealth(ctx context.Context) {
	t := d.currentTakeover()
	if t == nil || !d.reporting.CompareAndSwap(false, true) {
		return
	}
	role := d.Status().Role
	healthy, detail := d.selfHealth()
	go func() {
		defer d.reporting.Store(false)
		if err := t.PublishHealth(ctx, role, healthy, detail); err != nil {
			d.host.Log.Debug("publishing this host's health", zap.Error(err))
		}
	}()
}

// nodeFailing reports whether one of the node's checks fails now, and which.
func (d *Daemon) nodeFailing() (bool, string) {
	for _, c := range d.checks() {
		for _, n := range nodeChecks {
			if c.Name == n && !c.OK && !c.Skipped {
				return true, c.Name + ": " + c.Detail
			}
		}
	}
	return false, ""
}

// sickNode follows how long the active's node has failed its checks, and when the peer was last asked.
type sickNode struct {
	since, asked time.Time
}

// due reports whether the node has failed for the configured time and the peer should be asked (again).
func (s *sickNode) due(failing bool, bound time.Duration, now time.Time) bool {
	if !failing || bound <= 0 {
		s.since, s.asked = time.Time{}, time.Time{}
		return false
	}
	if s.since.IsZero() {
		s.since = now
	}
	if now.Sub(s.since) < bound || now.Sub(s.asked) < bound {
		return false
	}
	s.asked = now
	return true
}

// peerAnswer is whether a healthy standby can take the node over.
type peerAnswer struct {
	ready bool
	why   string
}

// askPeer asks the database whether a healthy standby has reported.
func (d *Daemon) askPeer(ctx context.Context) peerAnswer {
	ready, why, err := d.currentTakeover().PeerReady(ctx)
	if err != nil {
		return peerAnswer{why: fmt.Sprintf("cannot read the standby's health: %v", err)}
	}
	return peerAnswer{ready: ready, why: why}
}
