package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// defaultQueryTimeout bounds every database call (the node's Database.DefaultQueryTimeout).
const defaultQueryTimeout = 10 * time.Second

// dialer opens one dedicated database connection.
type dialer func(ctx context.Context) (*pgx.Conn, error)

// newDialer parses the URL with pgx (sslmode, sslrootcert and the rest honoured as libpq does) and returns a
// dialer whose every attempt is bounded by timeout. setup runs on each new connection.
func newDialer(databaseURL string, timeout time.Duration, setup ...string) (dialer, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		// pgconn redacts the password in its message.
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cfg.ConnectTimeout = timeout
	return func(ctx context.Context) (*pgx.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("connect to the database (bound %s): %w", timeout, err)
		}
		for _, stmt := range setup {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				closeConn(conn)
				return nil, fmt.Errorf("set up the session (%s): %w", stmt, err)
			}
		}
		return conn, nil
	}, nil
}

// closeConn closes a connection within a small budget of its own.
func closeConn(conn *pgx.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// querier is what both a connection and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// intervals records in standin_lease_intervals when this process held the lock: a row on gaining it
// (started_at = ended_at = NOW()), ended_at = NOW() on every proof of holding it and on release, so a kill -9
// leaves the last proven time. Tests compare rows of different client_ids for overlap.
type intervals struct {
	host     string
	clientID uuid.UUID
	id       int64 // 0 until the first row is committed
}

const intervalsDDL = `CREATE TABLE IF NOT EXISTS standin_lease_intervals (
	id bigserial PRIMARY KEY,
	host text NOT NULL,
	client_id uuid NOT NULL,
	started_at timestamptz NOT NULL,
	ended_at timestamptz NOT NULL)`

// extend inserts this holding's row or moves its ended_at to NOW(), and returns the row id; the caller stores
// it in iv.id once the statement is committed.
func (iv *intervals) extend(ctx context.Context, q querier) (int64, error) {
	if iv.id != 0 {
		if _, err := q.Exec(ctx, `UPDATE standin_lease_intervals SET ended_at = NOW() WHERE id = $1`, iv.id); err != nil {
			return 0, fmt.Errorf("extend lease interval: %w", err)
		}
		return iv.id, nil
	}
	var id int64
	err := q.QueryRow(ctx, `INSERT INTO standin_lease_intervals (host, client_id, started_at, ended_at)
		VALUES ($1, $2, NOW(), NOW()) RETURNING id`, iv.host, iv.clientID).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("record lease interval: %w", err)
	}
	return id, nil
}

// isSetupRace tells the harmless error of two nodes creating the same table at once.
func isSetupRace(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P07")
}
