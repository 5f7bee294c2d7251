package leader

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Holder is who holds the lock key now, as the server sees it.
type Holder struct {
	// Held is false when no session holds the key; the other fields are then empty.
	Held bool
	// ApplicationName of the holding session: "cl-agent/<instance-id>" for an agent.
	ApplicationName string
	// InstanceID is parsed from ApplicationName; empty when the holder is not a cl-agent session.
	InstanceID string
	// ClientAddr is the holder's address as the server sees it (empty over a unix socket).
	ClientAddr string
	// PID is the holding backend's process id (Term.PID of the holder).
	PID int
	// BackendStart is when the holding session connected.
	BackendStart time.Time
}

// holderSQL joins the granted advisory lock on the key in this database to the session that holds it. pg_locks is
// readable by every role; pg_stat_activity shows application_name to everyone and client_addr to members of the
// session's role, which the agents of one deployment share.
const holderSQL = `SELECT l.pid, COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), ''), a.backend_start
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1`

// Holder looks up who holds the key now (any host), on a short-lived connection named "cl-agent-probe/<id>",
// within CallTimeout.
func (e *Elector) Holder(ctx context.Context) (Holder, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.CallTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, e.probeConf)
	if err != nil {
		return Holder{}, fmt.Errorf("look up the lock holder: connect (bound %s): %w", e.o.CallTimeout, err)
	}
	defer conn.Close(ctx)
	h, err := HolderOf(ctx, conn, e.o.Key)
	if err != nil {
		return Holder{}, fmt.Errorf("%w (bound %s)", err, e.o.CallTimeout)
	}
	return h, nil
}

// HolderOf looks up who holds key on conn, a connection to the same database as the electors.
func HolderOf(ctx context.Context, conn *pgx.Conn, key int64) (Holder, error) {
	tag := tagOf(key)
	var h Holder
	var start *time.Time
	err := conn.QueryRow(ctx, holderSQL, tag.classid, tag.objid).Scan(&h.PID, &h.ApplicationName, &h.ClientAddr, &start)
	if errors.Is(err, pgx.ErrNoRows) {
		return Holder{}, nil
	}
	if err != nil {
		return Holder{}, fmt.Errorf("look up the holder of advisory lock %d: %w", key, err)
	}
	h.Held = true
	if start != nil {
		h.BackendStart = *start
	}
	if id, ok := strings.CutPrefix(h.ApplicationName, appNamePrefix); ok {
		h.InstanceID = id
	}
	return h, nil
}
