package agent

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/leader"
)

// takeoverPoll is how often a new active looks for proof that the previous node is gone while it waits out the
// guard. Short, because the usual proof (the killed agent's fence stopping its node) arrives within a second.
const takeoverPoll = 100 * time.Millisecond

// waitTakeover holds the first start of a term until the previous active's node is known to be gone: proof (see
// dbTakeover.Watch) or the takeover guard passed since the lock was taken. The guard is the invariant's bound
// (leader.takeover_guard > fence_after + stop_timeout + 1s): by then an old active that lost the lock has fenced
// itself.
func (d *Daemon) waitTakeover(ctx context.Context, term Term) error {
	guard := d.host.Config.Leader.TakeoverGuard
	deadline := term.AcquiredAt().Add(guard)
	d.setRole(RoleStarting, "waiting for proof the previous node is gone, or the takeover guard")
	check, err := d.currentTakeover().Watch(ctx)
	if err != nil {
		d.host.Log.Warn("cannot watch for the previous node; waiting out the guard", zap.Error(err))
		check = func(context.Context) (bool, string, error) { return false, "", nil }
	}
	for {
		gone, why, err := check(ctx)
		switch {
		case err != nil:
			d.host.Log.Warn("cannot check for the previous node; waiting out the guard", zap.Error(err))
		case gone:
			d.host.Log.Info("previous node gone; starting without waiting out the guard", zap.String("proof", why),
				zap.Duration("after", time.Since(term.AcquiredAt())))
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			d.host.Log.Info("takeover guard passed; the previous active has fenced itself by now", zap.Duration("guard", guard))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(takeoverPoll, left)):
		}
	}
}

// currentTakeover is the takeover logging in with the database password held now. On the active too: after a
// rotation (RDS managed rotation: ALTER ROLE, then the new secret) a takeover built for the old password could not
// log in for the proof that runs before every start, and the node would never start again. The term's own lock
// session is unaffected: an open session survives a password change.
func (d *Daemon) currentTakeover() Takeover {
	if err := d.ensureElection(); err != nil {
		d.host.Log.Warn("rebuilding the database logins for the current password", zap.Error(err))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.takeover
}

// dbTakeover answers from the node's database: the node's lease row, the sessions of clients other than the
// agents (the node's) and the server's start time.
type dbTakeover struct {
	connect    func(ctx context.Context) (*pgx.Conn, error)
	instanceID string
	guard      time.Duration
	timeout    time.Duration
	// peersTable: cl_agent_peers exists (created once by this process, not on every report).
	peersTable atomic.Bool
}

// NewTakeover returns the production Takeover, connecting with connConfig (the agent's own database login).
func NewTakeover(connConfig *pgx.ConnConfig, instanceID string, guard, timeout time.Duration) Takeover {
	cfg := connConfig.Copy()
	cfg.RuntimeParams["application_name"] = leader.AgentAppNamePrefix + "-takeover/" + instanceID
	return &dbTakeover{
		connect:    func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg) },
		instanceID: instanceID,
		guard:      guard,
		timeout:    timeout,
	}
}

func (t *dbTakeover) withConn(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	conn, err := t.connect(ctx)
	if err != nil {
		return fmt.Errorf("connect to the node's database (bound %s): %w", t.timeout, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(ctx, conn)
}

// Watch reads the node's lease once and returns the check. The previous node is gone when either
//
//   - its lease was released while we watched (expires_at moved back: only a clean stop does that), or
//   - the lease is not held, no other host's node has a database session, and the server has been up for longer
//     than the guard.
//
// An expired lease alone proves nothing: a node cut off from the database keeps running. Its sessions stay on the
// server until the server gives up on them (minutes with PostgreSQL's and RDS's defaults), so "no sessions" is
// proof unless the server itself restarted recently and dropped every session: hence the uptime condition.
func (t *dbTakeover) Watch(ctx context.Context) (func(context.Context) (bool, string, error), error) {
	var first leader.LeaseInfo
	if err := t.withConn(ctx, func(ctx context.Context, conn *pgx.Conn) (err error) {
		first, err = leader.LeaseState(ctx, conn)
		return err
	}); err != nil {
		return nil, err
	}
	return func(ctx context.Context) (gone bool, why string, err error) {
		err = t.withConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
			lease, err := leader.LeaseState(ctx, conn)
			if err != nil {
				return err
			}
			if lease.ReleasedSince(first) {
				gone, why = true, "the previous node released its lease"
				return nil
			}
			sessions, err := leader.NodeSessions(ctx, conn)
			if err != nil {
				return err
			}
			var uptime time.Duration
			if err := conn.QueryRow(ctx, "SELECT now() - pg_postmaster_start_time()").Scan(&uptime); err != nil {
				return fmt.Errorf("read the server's uptime: %w", err)
			}
			switch {
			case lease.Exists && !lease.Expired:
				why = fmt.Sprintf("the node's lease is held for %s more", lease.Remaining.Round(time.Millisecond))
			case sessions > 0:
				why = fmt.Sprintf("%d database sessions of the old node (or another client) remain", sessions)
			case uptime < t.guard:
				why = fmt.Sprintf("the database restarted %s ago: missing sessions prove nothing", uptime.Round(time.Second))
			default:
				gone, why = true, "the node's lease is not held and no other host's node has a database session"
			}
			return nil
		})
		return gone, why, err
	}, nil
}

// ExpireStaleLease ends the lease of the previous (dead) node.
func (t *dbTakeover) ExpireStaleLease(ctx context.Context) error {
	return t.withConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := leader.ExpireLease(ctx, conn)
		return err
	})
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

// ElectorFrom adapts the leader package's elector to the daemon's interface.
func ElectorFrom(e *leader.Elector) Elector { return electorAdapter{e} }

type electorAdapter struct{ *leader.Elector }

func (a electorAdapter) Acquire(ctx context.Context) (Term, error) {
	t, err := a.Elector.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return t, nil
}
