package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// errLeaseTaken: another node holds the lease this node held (the real node exits at once).
var errLeaseTaken = errors.New("another node has taken the lease")

// The real node's SQL (core/services/pg/lease_lock.go), so the stand-in and a real node exclude each other.
var leaseDDL = []string{
	`CREATE TABLE IF NOT EXISTS lease_lock (client_id uuid NOT NULL, expires_at timestamptz NOT NULL)`,
	`CREATE UNIQUE INDEX IF NOT EXISTS only_one_lease_lock ON lease_lock ((client_id IS NOT NULL))`,
	intervalsDDL,
}

const (
	leaseUpsert = `INSERT INTO lease_lock (client_id, expires_at) VALUES ($1, NOW()+$2::interval) ON CONFLICT ((client_id IS NOT NULL)) DO UPDATE SET
client_id = EXCLUDED.client_id,
expires_at = EXCLUDED.expires_at
WHERE
lease_lock.client_id = $1
OR
lease_lock.expires_at < NOW()`
	leaseRelease = `UPDATE lease_lock SET expires_at = NOW() WHERE client_id = $1 AND expires_at > NOW()`
)

// leaseLock is the node's database lease: one row in lease_lock, taken and refreshed by one upsert that only
// overwrites our own row or an expired one, on a dedicated connection. Not safe for concurrent use: acquire,
// then hold in one goroutine, then release after hold has returned.
type leaseLock struct {
	id       uuid.UUID
	duration time.Duration
	refresh  time.Duration
	dial     dialer
	record   *intervals // nil: another lock records the intervals
	log      *zap.Logger
	state    *nodeState
	conn     *pgx.Conn
}

// acquire blocks until the lease is ours, retrying every refresh interval and logging while another node holds
// it. A database error other than a dropped connection ends it, as it ends the real node.
func (l *leaseLock) acquire(ctx context.Context) error {
	initial := true
	for tries := 0; ; tries++ {
		qctx, cancel := context.WithTimeout(ctx, defaultQueryTimeout)
		got, err := l.attempt(qctx, initial)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil && initial && isSetupRace(err):
			continue // another node created the tables at the same moment
		case err != nil:
			return fmt.Errorf("take the lease: %w", err)
		case got:
			return nil
		}
		initial = false
		if tries%1000 == 0 || (tries < 1000 && tries&(tries-1) == 0) {
			l.log.Info(evWaitingLease, zap.String("clientID", l.id.String()), zap.Int("tryCount", tries),
				zap.String("detail", "another application is holding the database lease (or a previous instance exited uncleanly); waiting for it to expire"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(l.refresh):
		}
	}
}

// hold refreshes the lease every refresh interval until ctx ends. Losing the database only logs (the lease may
// still be ours when it comes back); finding another holder sends errLeaseTaken and returns.
func (l *leaseLock) hold(ctx context.Context, lost chan<- error) {
	t := time.NewTicker(l.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, l.duration)
		got, err := l.attempt(qctx, false)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			l.state.refreshFailed()
			l.log.Error("lease refresh failed", zap.Error(err))
		case !got:
			lost <- errLeaseTaken
			return
		default:
			l.state.refreshed()
		}
	}
}

// attempt runs the upsert (and, the first time, the table set-up) in one transaction and reports whether the
// lease is ours. On error the connection is dropped so the next attempt dials a new one.
func (l *leaseLock) attempt(ctx context.Context, initial bool) (got bool, err error) {
	defer func() {
		if err != nil {
			closeConn(l.conn)
			l.conn = nil
		}
	}()
	if l.conn == nil || l.conn.IsClosed() {
		if l.conn, err = l.dial(ctx); err != nil {
			return false, err
		}
	}
	tx, err := l.conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	if initial {
		for _, stmt := range leaseDDL {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return false, fmt.Errorf("create the lease tables: %w", err)
			}
		}
	}
	tag, err := tx.Exec(ctx, leaseUpsert, l.id, fmt.Sprintf("%f seconds", l.duration.Seconds()))
	if err != nil {
		return false, fmt.Errorf("upsert lease_lock: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	var rowID int64
	if l.record != nil {
		if rowID, err = l.record.extend(ctx, tx); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit the lease: %w", err)
	}
	if l.record != nil {
		l.record.id = rowID
	}
	return true, nil
}

// release ends the lease at once (expires_at = NOW()) so a waiting node takes over on its next try, and closes
// the interval at the same instant. Only after hold has returned.
func (l *leaseLock) release(ctx context.Context) error {
	defer func() {
		closeConn(l.conn)
		l.conn = nil
	}()
	if l.conn == nil || l.conn.IsClosed() {
		var err error
		if l.conn, err = l.dial(ctx); err != nil {
			return fmt.Errorf("release the lease: %w", err)
		}
	}
	tx, err := l.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("release the lease: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	tag, err := tx.Exec(ctx, leaseRelease, l.id)
	if err != nil {
		return fmt.Errorf("release the lease: %w", err)
	}
	if tag.RowsAffected() == 1 && l.record != nil && l.record.id != 0 {
		if _, err := l.record.extend(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("release the lease: commit: %w", err)
	}
	return nil
}
