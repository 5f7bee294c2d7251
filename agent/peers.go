package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The agents of one deployment tell each other how they are through one small table in the node's database:
// the active reads it before handing an unhealthy node over, so it never hands over to a standby that could not
// run the node either.
const (
	peersDDL = `CREATE TABLE IF NOT EXISTS cl_agent_peers (
  instance_id text PRIMARY KEY,
  role        text NOT NULL,
  healthy     boolean NOT NULL,
  detail      text NOT NULL,
  updated_at  timestamptz NOT NULL)`
	peersUpsert = `INSERT INTO cl_agent_peers (instance_id, role, healthy, detail, updated_at) VALUES ($1, $2, $3, $4, now())
ON CONFLICT (instance_id) DO UPDATE SET role = EXCLUDED.role, healthy = EXCLUDED.healthy, detail = EXCLUDED.detail,
  updated_at = EXCLUDED.updated_at`
	// peerFresh: a row older than this is a peer that stopped reporting (dead, cut off, or stopped).
	peerFresh = 15 * time.Second
)

// PublishHealth records this host's role and health.
func (t *dbTakeover) PublishHealth(ctx context.Context, role string, healthy bool, detail string) error {
	return t.withConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		if !t.peersTable.Load() {
			if _, err := conn.Exec(ctx, peersDDL); err != nil {
				return fmt.Errorf("create cl_agent_peers: %w", err)
			}
			t.peersTable.Store(true)
		}
		_, err := conn.Exec(ctx, peersUpsert, t.instanceID, role, healthy, detail)
		return err
	})
}

// PeerReady reports whether another host is a standby that is healthy and reported within peerFresh.
func (t *dbTakeover) PeerReady(ctx context.Context) (ready bool, why string, err error) {
	err = t.withConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		var id, detail string
		qerr := conn.QueryRow(ctx, `SELECT instance_id, detail FROM cl_agent_peers
WHERE instance_id <> $1 AND role = 'standby' AND healthy AND updated_at > now() - $2::interval
ORDER BY updated_at DESC LIMIT 1`, t.instanceID, peerFresh.String()).Scan(&id, &detail)
		switch {
		case qerr == pgx.ErrNoRows, isUndefinedTable(qerr):
			why = "no healthy standby has reported in the last " + peerFresh.String()
			return nil
		case qerr != nil:
			return fmt.Errorf("read cl_agent_peers: %w", qerr)
		}
		ready, why = true, "standby "+id+" is healthy ("+detail+")"
		return nil
	})
	return ready, why, err
}
