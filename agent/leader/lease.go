package leader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// leaseCallTimeout bounds each lease helper's query (on top of the caller's context).
const leaseCallTimeout = 5 * time.Second

// undefinedTable is SQLSTATE 42P01: the node has not created lease_lock yet.
const undefinedTable = "42P01"

// LeaseInfo is the node's own database lease (the lease_lock row of Chainlink 2.x; see doc.go), read on the
// server's clock.
type LeaseInfo struct {
	// Exists is false when there is no lease_lock table (no node has run on this database yet) or no row.
	Exists bool
	// ClientID is the uuid of the node process that wrote the row.
	ClientID string
	// ExpiresAt is when the lease lapses unless that node refreshes it (every second by default).
	ExpiresAt time.Time
	// Expired: expires_at ≤ now(). No node holds the lease: its holder released it on a clean stop (which sets
	// expires_at = now()) or stopped refreshing it. A node cut off from the database also stops refreshing while
	// it keeps running, so Expired alone does not prove the old node dead; see the package doc.
	Expired bool
	// Remaining is how long until the lease lapses; 0 when Expired.
	Remaining time.Duration
}

// ReleasedSince reports whether the lease was given back after prev was read: the same node's row, live in prev,
// now ends earlier than it did then. A refresh only moves expires_at forward and a lapse leaves it where it was; only
// a release (the node's clean stop, or ExpireLease) moves it back. A node releases its lease as the last step of a
// clean stop, so this proves that node has stopped; an Expired lease alone does not (a node cut off from the
// database lets its lease lapse and keeps running).
func (li LeaseInfo) ReleasedSince(prev LeaseInfo) bool {
	return prev.Exists && !prev.Expired && li.Exists && li.Expired && li.ClientID == prev.ClientID &&
		li.ExpiresAt.Before(prev.ExpiresAt)
}

const leaseStateSQL = `SELECT client_id::text, expires_at, expires_at <= now(),
  GREATEST(0, (EXTRACT(EPOCH FROM (expires_at - now())) * 1000000)::bigint)
FROM lease_lock LIMIT 1`

// LeaseState reads the node's lease on conn. A missing table or row is not an error (Exists is false).
func LeaseState(ctx context.Context, conn *pgx.Conn) (LeaseInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	defer cancel()
	var li LeaseInfo
	var remainingUS int64
	err := conn.QueryRow(ctx, leaseStateSQL).Scan(&li.ClientID, &li.ExpiresAt, &li.Expired, &remainingUS)
	switch {
	case errors.Is(err, pgx.ErrNoRows), IsUndefinedTable(err):
		return LeaseInfo{}, nil
	case err != nil:
		return LeaseInfo{}, fmt.Errorf("read the node's lease (bound %s): %w", leaseCallTimeout, err)
	}
	li.Exists = true
	li.Remaining = time.Duration(remainingUS) * time.Microsecond
	return li, nil
}

// ExpireLease ends the node's lease now (expires_at = now(), what a clean stop of the node does), so the next node
// takes it on its first try instead of waiting out the lease. It reports whether there was a live lease to end;
// no table or no row is a no-op. Only for a lease whose node is known to be dead: a live node renews its own row
// anyway, and one that finds another node's lease on refresh exits at once.
func ExpireLease(ctx context.Context, conn *pgx.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	defer cancel()
	tag, err := conn.Exec(ctx, `UPDATE lease_lock SET expires_at = now() WHERE expires_at > now()`)
	switch {
	case IsUndefinedTable(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("expire the node's lease (bound %s): %w", leaseCallTimeout, err)
	}
	return tag.RowsAffected() > 0, nil
}

// AgentAppNamePrefix starts the application_name of every session the agents open (the lock's "cl-agent/<id>",
// the takeover's "cl-agent-takeover/<id>").
const AgentAppNamePrefix = "cl-agent"

// NodeSessions counts the sessions in this database that are not an agent's (application_name starting with
// AgentAppNamePrefix) nor conn's own: while this host's node is not running, those are the old node's. The node
// cannot be told by its name: the real node replaces the URL's application_name with its own
// ("Chainlink <version> |App|<uuid>", cut to 63 characters), the same on both hosts. Any other client of the node's
// database (an operator's psql) counts too, which only makes the takeover wait out its guard. 0 means the old
// node's connections are gone.
func NodeSessions(ctx context.Context, conn *pgx.Conn) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	defer cancel()
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND NOT starts_with(coalesce(application_name, ''), $1)`, AgentAppNamePrefix).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the node's sessions (bound %s): %w", leaseCallTimeout, err)
	}
	return n, nil
}

// IsUndefinedTable reports SQLSTATE 42P01: a table the query reads does not exist (yet).
func IsUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == undefinedTable
}
