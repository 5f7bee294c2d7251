package takeover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/state"
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
	peerReadySQL = `SELECT instance_id, detail FROM cl_agent_peers
WHERE instance_id <> $1 AND role = $2 AND healthy AND updated_at > now() - $3::interval
ORDER BY updated_at DESC LIMIT 1`
	// PeerFresh: a row older than this is a peer that stopped reporting (dead, cut off, or stopped).
	PeerFresh = 15 * time.Second
)

// PublishHealth records this host's role and whether it could run the node now. It creates the table on the first
// report of the connection (IF NOT EXISTS: both hosts may).
func (d *DB) PublishHealth(ctx context.Context, role state.Role, healthy bool, detail string) error {
	return d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, peersUpsert, d.instanceID, string(role), healthy, detail); err == nil {
			return nil
		} else if !leader.IsUndefinedTable(err) {
			return fmt.Errorf("write cl_agent_peers: %w", err)
		}
		if _, err := c.Exec(ctx, peersDDL); err != nil {
			return fmt.Errorf("create cl_agent_peers: %w", err)
		}
		_, err := c.Exec(ctx, peersUpsert, d.instanceID, string(role), healthy, detail)
		return err
	})
}

// PeerReady reports whether another host is a standby that is healthy and reported within PeerFresh.
func (d *DB) PeerReady(ctx context.Context) (ready bool, why string, err error) {
	err = d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var id, detail string
		err := c.QueryRow(ctx, peerReadySQL, d.instanceID, string(state.Standby), PeerFresh.String()).Scan(&id, &detail)
		switch {
		case errors.Is(err, pgx.ErrNoRows), leader.IsUndefinedTable(err):
			why = "no healthy standby has reported in the last " + PeerFresh.String()
			return nil
		case err != nil:
			return fmt.Errorf("read cl_agent_peers: %w", err)
		}
		ready, why = true, "standby "+id+" is healthy ("+detail+")"
		return nil
	})
	return ready, why, err
}
