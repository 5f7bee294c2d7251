package health

import (
	"fmt"
	"time"

	"github.com/cl-agent/cl-agent/agent/state"
)

// AgentState is the daemon's state as the health endpoint and the metrics see it. The daemon supplies it through
// a func() AgentState that must be cheap and never block (a copy taken under the daemon's mutex).
type AgentState struct {
	Role        state.Role
	LockEnabled bool      // leader.enabled
	LockHeld    bool      // this host holds the advisory lock
	NodeUp      bool      // this host's node container runs
	NodeReady   bool      // the node answered /readyz 200 (as the daemon last saw it)
	LastBeat    time.Time // when the main loop last ticked
}

// serving reports whether this host is the one that should get traffic: active with a ready node. It is
// /readyz, and the ActiveNodes metric that the template sums across hosts.
func (s AgentState) serving() bool { return s.Role == state.Active && s.NodeReady }

// Live tells /healthz: the main loop ticked within bound, and the host is not fencing (an active that can no
// longer prove its lock and has not stopped its node yet). The reason is one line.
func Live(s AgentState, now time.Time, bound time.Duration) (ok bool, reason string) {
	switch {
	case s.Role == state.Fencing:
		return false, "fencing: the lock is no longer proven and the node is not stopped yet"
	case s.LastBeat.IsZero():
		return false, "the main loop has not ticked yet"
	case now.Sub(s.LastBeat) > bound:
		return false, fmt.Sprintf("the main loop last ticked %s ago (bound %s)", now.Sub(s.LastBeat).Round(time.Millisecond), bound)
	}
	return true, "ok"
}

// ready tells /readyz: 200 only on the active host with its node ready, so the load balancer sends traffic to
// the active alone. The reason is one line.
func ready(s AgentState) (ok bool, reason string) {
	switch {
	case s.serving():
		return true, "ok"
	case s.Role == state.Active:
		return false, "active, but the node is not ready"
	case s.Role == state.Standby:
		return false, "standby: another host runs the node"
	case s.Role == state.Starting:
		return false, "starting: the node is not ready yet"
	case s.Role == state.Fencing:
		return false, "fencing: stopping the node"
	case s.Role == "":
		return false, "the agent has not started"
	}
	return false, string(s.Role)
}
