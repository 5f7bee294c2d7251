// Package state names what the daemon shares with its health endpoints, its metrics and its control socket: the
// roles of the daemon's state machine, the ids of the health checks, and the operator's requests. It is a leaf:
// it imports nothing of the agent, so every package can agree on these names without importing the daemon.
package state

import "strings"

// Role is the daemon's state, as `cl-agent status` prints it (role) and /readyz and the metrics tell apart.
//
//	standby ──lock gained──▶ starting ──node ready──▶ active
//	   ▲                        │                        │
//	   │                        └──────lock lost─────────┤──▶ fencing ──node stopped──▶ standby
//	   │                                                 │
//	   └────────stepdown (lock released, hold)───────────┘
//	any state ──SIGTERM──▶ stopping ──node stopped, lock released──▶ exit 0
type Role string

const (
	Standby  Role = "standby"  // warming up or campaigning for the lock; no node runs here
	Starting Role = "starting" // holds the lock; the node is not ready (yet)
	Active   Role = "active"   // holds the lock; the node is ready
	Fencing  Role = "fencing"  // lost the lock; stopping the node before another host may start one
	Stopping Role = "stopping" // stopping the node on purpose (SIGTERM, stepdown, handover)
)

// Roles lists every role, in the order of the diagram (the cl_agent_role gauge has one series per role).
var Roles = []Role{Standby, Starting, Active, Fencing, Stopping}

// CheckID names one health check: in `cl-agent status`, the log and the metrics' labels.
type CheckID string

const (
	NodeReadyz        CheckID = "node_readyz"         // the node's /readyz
	NodeHealth        CheckID = "node_health"         // the node's /health (207: a service fails)
	NodeWalletBalance CheckID = "node_wallet_balance" // the node's keys hold at least health.min_balance_eth
	NodeErroredRuns   CheckID = "node_errored_runs"   // recent job runs that errored
	NodeP2P           CheckID = "node_p2p"            // the node's P2P.V2 port holds a connection (node.p2p on)
	ChainHTTP         CheckID = "chain_http"          // the chain's HTTP RPC: chain id and block height
	ChainWS           CheckID = "chain_ws"            // the chain's WebSocket RPC: chain id and new heads
	Host              CheckID = "host"                // this host's disks and memory
)

// AboutNode reports whether the check looks at the node itself, which runs on the active host only; the others
// say whether this host could run the node (what a standby reports to its peer).
func (c CheckID) AboutNode() bool { return strings.HasPrefix(string(c), "node_") }

// NodeServes are the checks that decide whether the active's node serves: failing one for
// health.unhealthy_stepdown hands the node over to a healthy standby.
var NodeServes = []CheckID{NodeReadyz, NodeHealth}

// Request is an operator's command to the running daemon (the control socket).
type Request string

const (
	Restart  Request = "restart"  // fetch the secrets again, re-render and recreate the node
	Stepdown Request = "stepdown" // stop the node, release the lock, stay out of the election for a while
)
