package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

var errAdvisoryLost = errors.New("the advisory lock was lost")

// advisoryLock is the 1.x session advisory lock (DATABASE_LOCKING_MODE advisorylock or dual): held by one
// dedicated connection for as long as the server keeps that session. Same usage rules as leaseLock.
type advisoryLock struct {
	id     int64
	check  time.Duration
	dial   dialer
	record *intervals // non-nil only when it is the only lock
	log    *zap.Logger
	state  *nodeState
	conn   *pgx.Conn
}

const advisoryHeld = `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
	AND granted AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1)`

// acquire blocks until pg_try_advisory_lock succeeds, retrying every check interval.
func (a *advisoryLock) acquire(ctx context.Context) error {
	for tries := 0; ; tries++ {
		qctx, cancel := context.WithTimeout(ctx, defaultQueryTimeout)
		got, err := a.try(qctx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			return fmt.Errorf("take the advisory lock %d: %w", a.id, err)
		case got:
			return nil
		}
		if tries%1000 == 0 || (tries < 1000 && tries&(tries-1) == 0) {
			a.log.Info(evWaitingLease, zap.Int64("advisoryLockID", a.id), zap.Int("tryCount", tries),
				zap.String("detail", "another application holds the advisory lock; waiting"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(a.check):
		}
	}
}

// try takes the lock on the dedicated session (dialling one if needed) and records the interval.
func (a *advisoryLock) try(ctx context.Context) (got bool, err error) {
	if a.conn == nil || a.conn.IsClosed() {
		if a.conn, err = a.dial(ctx); err != nil {
			return false, err
		}
	}
	if err := a.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, a.id).Scan(&got); err != nil {
		closeConn(a.conn)
		a.conn = nil
		return false, err
	}
	if got {
		a.mark(ctx)
	}
	return got, nil
}

// hold checks every interval that the session still holds the lock. An error only logs; when the session is
// gone (the lock with it) it dials again and retakes the lock if it is free, else reports the loss.
func (a *advisoryLock) hold(ctx context.Context, lost chan<- error) {
	t := time.NewTicker(a.check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, defaultQueryTimeout)
		held, err := a.stillHeld(qctx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			a.state.refreshFailed()
			a.log.Error("advisory lock check failed", zap.Error(err))
		case !held:
			lost <- errAdvisoryLost
			return
		default:
			a.state.refreshed()
		}
	}
}

func (a *advisoryLock) stillHeld(ctx context.Context) (bool, error) {
	if a.conn == nil || a.conn.IsClosed() {
		return a.try(ctx) // the session, and the lock, are gone: only a free lock may be retaken
	}
	var held bool
	if err := a.conn.QueryRow(ctx, advisoryHeld, a.id).Scan(&held); err != nil {
		closeConn(a.conn)
		a.conn = nil
		return false, err
	}
	if held {
		a.mark(ctx)
	}
	return held, nil
}

func (a *advisoryLock) mark(ctx context.Context) {
	if a.record == nil {
		return
	}
	id, err := a.record.extend(ctx, a.conn)
	if err != nil {
		a.log.Error("record lease interval failed", zap.Error(err))
		return
	}
	a.record.id = id
}

// release unlocks and closes the session (closing alone would free it too).
func (a *advisoryLock) release(ctx context.Context) error {
	defer func() {
		closeConn(a.conn)
		a.conn = nil
	}()
	if a.conn == nil || a.conn.IsClosed() {
		return nil
	}
	if a.record != nil && a.record.id != 0 {
		a.mark(ctx)
	}
	if _, err := a.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, a.id); err != nil {
		return fmt.Errorf("release the advisory lock: %w", err)
	}
	return nil
}
