package leader

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"
)

// keepalive is the TCP configuration of a lock session, derived from DeadPeerTimeout so that the server drops the
// session of a host it can no longer reach within that bound, and the agent notices a server it can no longer reach
// within it too. The same numbers go to both ends: the server through the session's settings (tcp_keepalives_idle,
// tcp_keepalives_interval, tcp_keepalives_count, tcp_user_timeout), the client through its socket options.
type keepalive struct {
	Idle, Interval time.Duration // whole seconds: the server's settings have a resolution of one second
	Count          int
	UserTimeout    time.Duration
}

// keepaliveFor derives the settings from the dead-peer bound D (see the package doc, "Dead peers"):
//
//	interval = max(1s, ⌊D/5⌋)            whole seconds
//	idle     = max(1s, ⌊D⌋ − 3·interval)  whole seconds
//	count    = max(1, ⌈(D − idle)/interval⌉)
//	tcp_user_timeout = D
//
// Linux drops the connection at the first keepalive tick (idle + k·interval after the last segment received) at
// which D has elapsed, so the bound is D itself when D is a whole number of seconds, and less than D + interval
// otherwise. The count makes idle + count·interval ≥ D, so a kernel without TCP_USER_TIMEOUT never drops earlier.
func keepaliveFor(d time.Duration) keepalive {
	interval := max(time.Second, (d / 5).Truncate(time.Second))
	idle := max(time.Second, d.Truncate(time.Second)-3*interval)
	count := 1
	if rest := d - idle; rest > 0 {
		count = max(1, int((rest+interval-1)/interval))
	}
	return keepalive{Idle: idle, Interval: interval, Count: count, UserTimeout: d}
}

// dropBound is when the kernel drops a silent peer at the latest: the first keepalive tick at or after UserTimeout.
func (k keepalive) dropBound() time.Duration {
	t := k.Idle
	for t < k.UserTimeout {
		t += k.Interval
	}
	return t
}

// runtimeParams are the session settings sent in the startup packet, so they hold from the first byte on (no
// window between connect and a SET, no extra round trip). Over a unix socket PostgreSQL ignores them.
func (k keepalive) runtimeParams() map[string]string {
	return map[string]string{
		"tcp_keepalives_idle":     strconv.Itoa(int(k.Idle / time.Second)),
		"tcp_keepalives_interval": strconv.Itoa(int(k.Interval / time.Second)),
		"tcp_keepalives_count":    strconv.Itoa(k.Count),
		"tcp_user_timeout":        strconv.FormatInt(k.UserTimeout.Milliseconds(), 10),
	}
}

// dialer makes the client's end of a session: the same keepalives, and TCP_USER_TIMEOUT so that a ping whose bytes
// are never acknowledged fails the socket within the bound instead of the kernel's default of about 15 minutes.
func (k keepalive) dialer() *net.Dialer {
	ms := int(k.UserTimeout.Milliseconds())
	return &net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: k.Idle, Interval: k.Interval, Count: k.Count},
		Control: func(network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil // a unix socket: nothing to time out
			}
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set TCP_USER_TIMEOUT: %w", serr)
			}
			return nil
		},
	}
}

// sessionConfig is the pgx configuration of a connection the elector opens: the agent's own settings with
// application_name and the keepalives above. Contexts are watched by deadline only (pgx's default, made explicit):
// an idle wait that reaches its deadline leaves the connection usable, and a cancelled query closes it.
func sessionConfig(base *pgx.ConnConfig, appName string, k keepalive) *pgx.ConnConfig {
	cfg := base.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = appName
	for name, v := range k.runtimeParams() {
		cfg.RuntimeParams[name] = v
	}
	cfg.DialFunc = k.dialer().DialContext
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	return cfg
}

// lockSession is what a Term needs of its connection; the real one is *session, tests use a fake.
type lockSession interface {
	// pid is the session's backend process id.
	pid() int
	// watch waits until the clock reaches until, reading the idle socket meanwhile: a closed or reset session
	// returns an error at once. It returns ctx.Err() when ctx ends first.
	watch(ctx context.Context, until time.Time) error
	// prove checks that the session still holds the lock: nil when it does, an error wrapping ErrLockLost when it
	// provably does not, another error when the check failed without telling. n counts the Term's pings.
	prove(ctx context.Context, n int) error
	// unlock gives the lock back.
	unlock(ctx context.Context) error
	// close ends the session (and with it the lock, if still held).
	close(ctx context.Context)
}

// session is one dedicated connection that tries for and then holds the lock.
type session struct {
	conn    *pgx.Conn
	backend int // pg_backend_pid() as the connection's BackendKeyData told it
	key     int64
	tag     lockTag
	clock   clockwork.Clock
	hooks   *hooks
}

var _ lockSession = (*session)(nil)

func (s *session) pid() int { return s.backend }

// tryLock runs pg_try_advisory_lock on the session, within bound. It also checks that the query ran on the backend
// the connection was opened to (a transaction pooler would run it elsewhere).
func (s *session) tryLock(ctx context.Context, bound time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var got bool
	var pid int
	if err := s.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1), pg_backend_pid()", s.key).Scan(&got, &pid); err != nil {
		return false, fmt.Errorf("pg_try_advisory_lock(%d) (bound %s): %w", s.key, bound, err)
	}
	if pid != s.backend {
		return false, fmt.Errorf("%w: connected to backend %d, query ran on %d", ErrProxied, s.backend, pid)
	}
	return got, nil
}

// proveSQL proves the lock, not just the session: the row for our backend's granted advisory lock on the key, in
// this database (advisory locks are per database). It also returns the backend pid, which must not change.
const proveSQL = `SELECT pg_backend_pid(), EXISTS (
  SELECT 1 FROM pg_locks
  WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND classid = $1 AND objid = $2 AND objsubid = 1)`

// proveSlowSQL is proveSQL after a server-side sleep of $3 seconds; tests only (hooks.pingDelay).
const proveSlowSQL = `WITH slow AS MATERIALIZED (SELECT pg_sleep($3)) SELECT pg_backend_pid(), EXISTS (
  SELECT 1 FROM pg_locks
  WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND classid = $1 AND objid = $2 AND objsubid = 1) FROM slow`

// prove runs without a deadline of its own: pgx closes a connection whose query context ends, and a ping that
// merely runs late must not kill a session that still holds the lock. The Term bounds it from outside: ctx ends
// at the trust deadline at the latest, and the socket's TCP_USER_TIMEOUT ends a ping whose bytes go nowhere.
func (s *session) prove(ctx context.Context, n int) error {
	var pid int
	var held bool
	var err error
	if d := s.delay(n); d > 0 {
		err = s.conn.QueryRow(ctx, proveSlowSQL, s.tag.classid, s.tag.objid, d.Seconds()).Scan(&pid, &held)
	} else {
		err = s.conn.QueryRow(ctx, proveSQL, s.tag.classid, s.tag.objid).Scan(&pid, &held)
	}
	switch {
	case err != nil && s.conn.IsClosed():
		return fmt.Errorf("%w: the lock session closed: %w", ErrLockLost, err)
	case err != nil:
		return fmt.Errorf("prove the lock: %w", err)
	case pid != s.backend:
		return fmt.Errorf("%w: the session's backend changed from %d to %d", ErrLockLost, s.backend, pid)
	case !held:
		return fmt.Errorf("%w: pg_locks shows no advisory lock %d held by backend %d", ErrLockLost, s.key, pid)
	}
	return nil
}

func (s *session) delay(n int) time.Duration {
	if s.hooks == nil || s.hooks.pingDelay == nil {
		return 0
	}
	return s.hooks.pingDelay(n)
}

// watch blocks in WaitForNotification, which reads the socket: PostgreSQL's FATAL on pg_terminate_backend or a
// shutdown, a reset or an EOF end it at once. Reaching until is a read deadline, which pgx does not treat as fatal.
func (s *session) watch(ctx context.Context, until time.Time) error {
	if !until.After(s.clock.Now()) {
		return ctx.Err()
	}
	wctx, cancel := untilContext(ctx, s.clock, until)
	defer cancel()
	for {
		err := s.conn.PgConn().WaitForNotification(wctx)
		switch {
		case err == nil:
			continue // a NOTIFY; nobody LISTENs on this session, so ignore it
		case s.conn.IsClosed():
			return fmt.Errorf("%w: the lock session closed: %w", ErrLockLost, err)
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil:
			return nil // until reached; the connection is intact
		default:
			return fmt.Errorf("%w: reading the lock session: %w", ErrLockLost, err)
		}
	}
}

func (s *session) unlock(ctx context.Context) error {
	var released bool
	if err := s.conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", s.key).Scan(&released); err != nil {
		return fmt.Errorf("pg_advisory_unlock(%d): %w", s.key, err)
	}
	if !released {
		return fmt.Errorf("pg_advisory_unlock(%d): the session did not hold the lock", s.key)
	}
	return nil
}

func (s *session) close(ctx context.Context) {
	_ = s.conn.Close(ctx) // a failed Terminate still closes the socket, which is what frees the lock
}
