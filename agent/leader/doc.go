// Package leader elects the active host with a PostgreSQL session-level advisory lock and tells the holder, at once
// or by a local deadline, when it can no longer prove that it holds it, so that the agent fences itself (stops its
// node) before the other host can start one.
//
// It owns: the lock session (one dedicated connection per period of leadership), the campaign for it, the proof
// that it is still held, who holds it (Holder), the derivation of the lock key (LockKey), and small helpers on the
// node's own database lease (LeaseState, ExpireLease, NodeSessions) that let a new active start its node without
// waiting out the guard or the lease when the old node is provably gone. It does not stop containers: the daemon
// does that when a Term ends.
//
// # States
//
//	        start
//	          │
//	          ▼
//	┌───────────────────────────┐  pg_try_advisory_lock = false: wait RetryInterval (±20%)
//	│  standby / campaigning    │◄──┐ error: back off RetryInterval … 5s
//	│  Elector.Acquire          │───┘ (keeps one standby session between tries)
//	└─────────────┬─────────────┘
//	              │ pg_try_advisory_lock = true on a session whose backend is its own
//	              ▼
//	┌───────────────────────────┐  every PingInterval: prove the lock (pg_locks)
//	│  leader: a Term           │  success: trust until its start + FenceAfter
//	│  Term.Context() live      │  between pings: read the idle socket
//	└─────────────┬─────────────┘
//	              │ ErrLockLost:     session closed/reset, or the lock missing from pg_locks   (at once)
//	              │ ErrTrustExpired: no proof started within the last FenceAfter               (at the deadline)
//	              │ ErrReleased:     Term.Release (planned handover)
//	              ▼
//	┌───────────────────────────┐  Term.Context() cancelled first, then the session is closed
//	│  lost                     │  (Release unlocks before closing). The daemon stops its node
//	│                           │  (SIGTERM, kill after container.stop_timeout) and calls Acquire again.
//	└───────────────────────────┘
//
// A Term is one period of leadership on one session; it never comes back. Cancelling the context given to Acquire
// does not end a Term already returned: the daemon stops its node first, then calls Release (a process that exits
// frees the lock anyway, when the server sees its socket close).
//
// # The lock session
//
// A session-level lock is held exactly as long as the server keeps the session, so the session is a dedicated
// pgx.Conn, never a pool and never through a transaction-pooling proxy (Acquire checks that pg_backend_pid() is the
// backend the connection was opened to, and returns ErrProxied otherwise). Its startup packet carries
// application_name "cl-agent/<instance-id>" and the keepalive settings below, so they hold from the first byte
// (tcp_user_timeout needs PostgreSQL 12 or later).
//
// The key is a bigint; pg_locks shows it as classid (high 32 bits), objid (low 32 bits), objsubid 1, in the
// database of the session (advisory locks are per database). LockKey derives it from the database name unless it
// is configured, and never returns Chainlink 1.x's own lock id.
//
// # Proving the lock
//
// The leader proves the lock, not only the session: every PingInterval it runs
//
//	SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
//	  AND pid = pg_backend_pid() AND database = <this database> AND classid = … AND objid = … AND objsubid = 1)
//
// and a different pid or a missing row ends the Term (ErrLockLost). A bare SELECT 1 would prove only that some
// backend answers. Measured on a local PostgreSQL 15 over TLS (BenchmarkPing): SELECT 1 about 90µs a round trip,
// the proof about 135µs; against RDS the network round trip (0.5–1ms) dominates either way, once a second.
//
// One ping is in flight at a time, and it runs without a deadline of its own: pgx closes a connection whose query
// context ends, and a ping that is merely late must not kill a session that still holds the lock. A ping
// unanswered after PingTimeout is reported late (logged); if it then succeeds it still counts, anchored at its
// start. Nothing waits on it forever: the Term's context ends it at the trust deadline, and the socket's
// TCP_USER_TIMEOUT fails it when its bytes go unacknowledged for DeadPeerTimeout. The next ping is due PingInterval
// after the start of the previous one (at once if that one took longer).
//
// Between pings the session goroutine blocks reading the idle socket (pgconn WaitForNotification with a deadline at
// the next ping), so PostgreSQL's FATAL on pg_terminate_backend or a shutdown, a reset or an EOF ends the Term at
// once rather than at the next ping. Measured: 5ms from pg_terminate_backend to a cancelled Term context.
//
// # Trust window
//
// As in River's elector, leadership is trusted until a local deadline anchored at the start of the last check that
// succeeded:
//
//	trustedUntil = start of the last proving ping + FenceAfter      (the first: start of the winning attempt)
//
// A slow success moves it only to its own start + FenceAfter, never to its answer + FenceAfter, and a success that
// arrives after the deadline does not revive the Term. The deadline always wins: the Term's context is cancelled
// when the Clock reaches it, whatever the in-flight ping is doing.
//
// # Dead peers
//
// The server frees the lock of a host it can no longer reach only when it notices the dead peer; PostgreSQL's
// defaults (the kernel's two hours, minutes on RDS) are far too long. Each lock session therefore sets, from
// DeadPeerTimeout D:
//
//	tcp_keepalives_interval = max(1s, ⌊D/5⌋)                 D = 10s:  2s
//	tcp_keepalives_idle     = max(1s, ⌊D⌋ − 3·interval)                4s
//	tcp_keepalives_count    = ⌈(D − idle) / interval⌉                  3
//	tcp_user_timeout        = D                                        10000 (ms)
//
// Linux drops a connection whose peer is silent at the first keepalive probe tick (idle, idle + interval, … after
// the last segment it received) at which tcp_user_timeout has elapsed; with unacknowledged data in flight,
// tcp_user_timeout alone decides. For D = 10s the ticks fall at 4, 6, 8, 10s: the session is dropped 10s after the
// host went silent (D itself whenever D is whole seconds; below D + interval otherwise). The count alone would
// reach idle + 3·interval = 10s too, for kernels without TCP_USER_TIMEOUT. The client's socket gets the same
// keepalives and TCP_USER_TIMEOUT (net.Dialer KeepAliveConfig and a setsockopt in Control), so the agent also
// learns of a dead server within D, though the trust deadline ends its Term sooner.
//
// Measured with a real cut (a network namespace whose packets are dropped, sockets left open;
// TestNetworkPartition), from the moment of the cut, the leader's last good ping being a few ms earlier:
//
//	timings                        leader's Term ends    server drops session    other host acquires
//	ping 1s, fence 4s, D 10s       +4.0s  (trust)        +10.2s                  +10.24s
//	ping 200ms, fence 1s, D 2s     +0.99s (trust)        +2.03s                  +2.08s
//
// # Failure cases
//
//   - Agent crash or clean exit: the kernel closes the socket, the server frees the lock at once and the standby
//     takes it on its next try (15ms after a Release in the tests). The old node may still run: systemd's
//     ExecStopPost (`cl-agent fence`) stops it, which is what the takeover guard waits for.
//   - Backend terminated (pg_terminate_backend): the leader reads the FATAL on its idle socket; ErrLockLost at once.
//   - Host freeze or network cut: nothing reaches either side. The leader's Term ends at its trust deadline
//     (FenceAfter after its last proof) and the daemon fences; the server drops the session after D ≥ FenceAfter
//     and only then can the other host acquire. A host that thaws finds its deadline passed and fences at once.
//   - Database restart or RDS failover: every session ends, both hosts lose the lock at the same moment (the leader
//     with ErrLockLost, as soon as the server's FATAL or the reset arrives); both campaign again and exactly one
//     wins. Measured (TestPostgresRestart, a fast shutdown and start taking ~115ms): the Term ended 8ms after the
//     restart began, and a new holder had the lock ~140ms after it began.
//   - Who holds it: Holder joins pg_locks (advisory, granted, this key and database) to pg_stat_activity, on a
//     short-lived connection named "cl-agent-probe/<instance-id>"; InstanceID comes from application_name.
//     pg_stat_activity shows client_addr only to members of the session's role; both hosts use the same role.
//
// # The invariant
//
// The configuration is checked when it loads (config.CheckTiming; exit 2 naming the values that break it):
//
//	ping_timeout ≤ ping_interval                         800ms ≤ 1s    a ping ends before the next is due
//	fence_after  ≥ 2·ping_interval + ping_timeout          4s ≥ 2.8s   one lost ping never fences
//	dead_peer_timeout ≥ fence_after                       10s ≥ 4s     the server never frees the lock while its
//	                                                                   holder still trusts it
//	takeover_guard > fence_after + stop_timeout + 1s      16s > 15s    the old node is dead before the new starts
//
// Worked through with the defaults. Let L be the start of the old leader's last proving ping.
//
//   - One lost ping: the ping at L+1s fails by L+1.8s; the next starts on schedule at L+2s and answers by L+2.8s,
//     before L+4s. A ping that fails outright does not delay the next, so with the defaults the Term survives until
//     no ping started in [L, L+4s) has answered by L+4s; a ping that hangs holds back those after it, and then
//     the deadline alone decides.
//   - The old leader: trusts until L+4s, then its daemon sends SIGTERM; SIGKILL at L+14s; the process is gone by
//     L+15s (KillMargin, 1s).
//   - The lock: the server holds it until it drops the old session, at L+10s at the earliest when the cut came
//     right after the ping (its last segment from the old host is no earlier than L), so the new leader's Term
//     begins at A ≥ L+10s > L+4s: two Terms never overlap (in the test: acquired 6.2s after the old Term ended).
//   - The node: the new active waits the guard from its acquisition before it starts its node, at A+16s. In every
//     case A ≥ L (the lock was proven held at L), so A+16s > L+15s: the old node is dead. The guard does not rely on
//     D: if the old session is closed early (a crash, a terminated backend), the old side either learns it at once
//     and fences sooner, or does not and fences by L+15s as above; after an agent crash ExecStopPost stops the node
//     within stop_timeout + 1s of the crash, and A is after the crash.
//
// # Starting early, and the node's own lease
//
// The node's lease (lease_lock, 10s, refreshed every second) is a second, slower layer: a node that died without
// releasing it makes the next node wait up to 10s. The new active may skip the rest of the guard with a proof that
// the old node is gone, and then clears its stale lease:
//
//   - Released lease: LeaseInfo.ReleasedSince(earlier reading) — the old node's row, live before, now ends
//     earlier: only a release moves expires_at back, and a node releases as the last step of a clean stop (what
//     ExecStopPost's fence or a stepdown does). A standby that reads LeaseState every RetryInterval sees it. This
//     proof needs no guard at all. (An Expired lease alone is no proof: a node cut off from the database lets it
//     lapse and keeps running.)
//   - Sessions gone: NodeSessions(conn) == 0 — no client but the agents is connected to the node's database, so
//     the old host's node has no session left (the real node names its sessions "Chainlink <version> |App|<uuid>"
//     on either host, so they are told apart from the agents', not by host). A stopped process closes its sockets, so after a crash this turns 0 within moments.
//     It proves the node dead only while the server keeps a silent node's sessions longer than the guard (the node's
//     sessions carry no keepalive settings: PostgreSQL and RDS defaults are minutes to hours), so use it together
//     with an Expired lease, or after the guard.
//   - After the guard the old node is dead by the invariant.
//
// With any of these, the new active calls ExpireLease (expires_at = now(), what the node's own clean stop does) and
// starts its node, which takes the lease on its first try instead of waiting out up to 10s. The same applies on one
// host when the agent's own node container crashed: Docker says it exited, so its lease is stale. ExpireLease is
// only for a dead node's lease: a live node would just renew its own row, and one that finds another node's lease
// on refresh exits at once.
//
// # Testing
//
// Options.Clock takes a clockwork.FakeClock (the trust window is tested with one and a fake session). Test-only hooks (River
// style test signals, no-ops in production) report denials, pings, late pings and ends, and can make a ping sleep on
// the server. The integration tests run real PostgreSQL (internal/testenv) and a real network cut
// (internal/netns).
package leader
