// Package ha holds the active/standby proof: integration tests and benchmarks that run two real `cl-agent run`
// processes as two "hosts" against one real PostgreSQL, the real Docker engine and the stand-in Chainlink node (or
// the real one), and show that exactly one node runs and is ready after every failure the design names, with no
// moment in which both hosts ran a node. The package has no code outside its tests.
//
// # The two hosts
//
// Each agent runs inside its own network namespace (internal/netns), so the link between a host and the database
// can be cut without closing a socket: packets vanish and only TCP's own timers end the connections, as when a
// switch port dies. The database is reached over that link (host n's agent and node use 10.211.n.1, the root end
// of its link), and a cut also drops the node container's packets to that address (the node runs on the docker
// bridge, which does not cross the namespace), so the whole host, agent and node, loses the database. The other
// services a host needs (moto for Secrets Manager, its own EC2 metadata mock, the image registry, a simulated chain
// client for the health checks, and its node's published port for the readiness probe) listen on the root
// namespace's loopback; small forwarders in the test process make them reachable on the same 127.0.0.1 ports
// inside the namespace, and a cut leaves them alone.
//
// # Scenarios (TestHA, TestDockerdRestartHA behind the dockerrestart build tag)
//
//	KillAgent          kill -9 of the active agent, then `cl-agent fence` (systemd's ExecStopPost)
//	NodeCrash          docker kill of the active's node: the same agent brings it back
//	CutLink            the active host's link to PostgreSQL cut, then restored
//	PostgresRestart    the database restarted: both hosts lose the lock at once
//	StepdownAndBack    `cl-agent stepdown` on the active, then on the new active
//	SimultaneousStart  both agents started at the same instant, twenty times
//	DockerdRestart     the Docker engine restarted under the active's node (alone: it breaks other tests)
//
// After each one, exactly one agent reports role active with a ready node (`cl-agent status --json`), its node
// answers /readyz 200, the other agent is a campaigning standby without a container, and the overlap is zero by
// two measures: the container states (Docker start/die events of both hosts' node containers, with nanosecond
// times) and the stand-in node's recorded lease intervals (table standin_lease_intervals, one row per holding,
// per host = instance id).
//
// # The real node (TestRealNodeFailover)
//
// The same harness runs the real Chainlink node v2.19.0 instead of the stand-in (withRealNode: the image that
// internal/realnode builds, pushed to the cluster's registry and pulled by digest by the agents): the first active's
// start → ready, KillAgent, and the old model's failover after a SIGKILL of the lease holder, with the figures
// logged side by side. The overlap is measured by the container states alone (the real node records no lease
// intervals), and the standby's leftover node sessions by their start before the active's node container (the
// real node names its sessions alike on both hosts).
//
// # Benchmarks (make bench)
//
// BenchmarkFailover reports the median failover time of each scenario over repeated runs (s/failover-median),
// and the old model's (both hosts run the node; only the node's own 10 s lease decides) for comparison; then the
// KillAgent and old-model crash figures again on the real node (RealNodeKillAgent, RealNodeOldModelNodeCrash).
// BenchmarkAgentResources reports the agents' resident memory and CPU while standby and while active.
//
// The agents run with fast but valid timings (see timings below): the configuration loader checks the invariant
// takeover_guard > fence_after + stop_timeout + 1s, and the tests assert the bounds it implies.
//
// Needs root (namespaces, iptables, tmpfs mounts), the Docker engine, PostgreSQL 15, moto_server and the tools
// pinned in go.mod, like the rest of the integration tests.
package ha
