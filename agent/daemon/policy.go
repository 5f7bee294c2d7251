package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/state"
)

// healthReportEvery is how often each host writes its health for the other one to read (agent/takeover).
const healthReportEvery = 5 * time.Second

// selfHealth is what this host reports to its peer: could it run the node now? A past problem (a lost lock) does
// not count; one that would stop a start does (no image, no secrets).
func (d *Daemon) selfHealth() (healthy bool, detail string) {
	if d.role == state.Active {
		return d.node.Ready, "node " + string(d.node.State)
	}
	for _, p := range []problem{problemWarm, problemSecrets} {
		if d.problems[p] != "" {
			return false, "problem: " + d.problems[p]
		}
	}
	var failing []string
	for _, c := range d.o.Checks() {
		if !c.OK && !c.Skipped && !state.CheckID(c.Name).AboutNode() {
			failing = append(failing, c.Name)
		}
	}
	if len(failing) > 0 {
		return false, "failing: " + strings.Join(failing, ", ")
	}
	return d.img.Digest != "", "warm"
}

// reportHealth writes this host's health off the loop, at most one write in flight.
func (d *Daemon) reportHealth() {
	t := d.takeover
	if d.o.Election == nil || t == nil || d.reporting {
		return
	}
	d.reporting = true
	role := d.role
	healthy, detail := d.selfHealth()
	d.spawn(func(ctx context.Context) event {
		if err := t.PublishHealth(ctx, role, healthy, detail); err != nil {
			d.host.Log.Debug("publishing this host's health", zap.Error(err))
		}
		return reported{}
	})
}

// failing reports whether this term's node cannot serve: not ready (a start that keeps failing — a foreign
// container under its name, a full tmpfs — holds the lock with no node behind it), or failing its checks.
func (r *running) failing() (bool, string) {
	if st := r.node.Status(); !st.Ready {
		why := "node not ready: " + string(st.State)
		if st.LastError != "" {
			why += ": " + st.LastError
		}
		return true, why
	}
	for _, c := range r.d.o.Checks() {
		if slices.Contains(state.NodeServes, state.CheckID(c.Name)) && !c.OK && !c.Skipped {
			return true, c.Name + ": " + c.Detail
		}
	}
	return false, ""
}

// sickNode follows how long the active's node has failed, and when the peer was last asked.
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

// askPeer reads, off the loop, whether a healthy standby has reported.
func (d *Daemon) askPeer(gen int) {
	t := d.takeover
	d.spawn(func(ctx context.Context) event {
		ready, why, err := t.PeerReady(ctx)
		if err != nil {
			why = fmt.Sprintf("cannot read the standby's health: %v", err)
		}
		return peerAnswered{gen: gen, peerAnswer: peerAnswer{ready: ready && err == nil, why: why}}
	})
}

// peerAnswered decides, once the standby has answered, whether a node that keeps failing goes to it.
func (r *running) peerAnswered(pa peerAnswer) phase {
	log := r.d.host.Log
	failing, why := r.failing()
	switch {
	case !failing:
		return r // it recovered while we asked
	case !pa.ready:
		log.Warn("the node keeps failing, but there is no healthy standby to hand over to: staying active",
			zap.String("node", why), zap.String("standby", pa.why))
		return r
	}
	log.Warn("the node keeps failing: handing over to the healthy standby", zap.String("node", why), zap.String("standby", pa.why))
	return r.stopFor(state.Stopping, "handing over a node that keeps failing ("+why+"): stopping it", nil, r.d.holdThenWarm)
}

// render gives the supervisor the node's files from the secrets published by the loop.
func (d *Daemon) render(context.Context) (*nodefiles.Rendered, error) {
	d.pub.mu.Lock()
	img, held := d.pub.img, d.pub.secrets
	d.pub.mu.Unlock()
	return d.host.Render(img, held)
}

// beforeStart runs before every start of the node. The node gets only a keystore password that opens its key
// ring (or, for an empty key ring, one that passes the node's strength rule). The previous node is known dead by
// then (the peer's, after the takeover wait, or our own, which the supervisor just removed), so its lease is
// expired and the new node does not wait it out. It logs in with the current database password.
func (d *Daemon) beforeStart(ctx context.Context) error {
	d.pub.mu.Lock()
	t, keystore := d.pub.takeover, d.pub.secrets.KeystorePassword
	d.pub.mu.Unlock()
	if t == nil {
		return nil
	}
	if err := checkKeystore(ctx, t, keystore, d.host.Config.Secrets.KeystorePassword.ID); err != nil {
		return err
	}
	return t.ExpireStaleLease(ctx)
}
