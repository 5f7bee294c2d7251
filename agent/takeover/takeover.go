// Package takeover is the database side of handing the node from one host to the other: proof that the previous
// active's node is gone, the end of its stale lease, and the table in which the hosts report their health to each
// other. It holds every SQL statement the daemon needs beyond the lock itself (agent/leader), so the daemon's state
// machine holds none.
//
// Each value keeps one connection (application_name "cl-agent-takeover/<instance-id>", which the proof does not
// count as the node's) and opens it again only when it breaks: a Watch polled every 100 ms while a new active
// waits for proof, and the health reports written every few seconds, cost one session each, not one per call.
package takeover

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/leader"
)

// DB answers from the node's database, logging in as the agent does (the node's own database user).
type DB struct {
	conf       *pgx.ConnConfig
	instanceID string
	guard      time.Duration
	timeout    time.Duration
	peers      conn // the health reports' connection
}

// New returns the takeover of this host. guard is leader.takeover_guard (see Watch); timeout bounds every call,
// a connect included.
func New(connConfig *pgx.ConnConfig, instanceID string, guard, timeout time.Duration) *DB {
	cfg := connConfig.Copy()
	cfg.RuntimeParams["application_name"] = leader.AgentAppNamePrefix + "-takeover/" + instanceID
	d := &DB{conf: cfg, instanceID: instanceID, guard: guard, timeout: timeout}
	d.peers = conn{conf: cfg, timeout: timeout}
	return d
}

// Watch reads the node's lease once and returns a watch that tells when the previous node is gone. It holds one
// connection until Close. The previous node is gone when either
//
//   - its lease was released while we watched (expires_at moved back: only a clean stop does that), or
//   - the lease is not held, no other host's node has a database session, and the server has been up for longer
//     than the guard.
//
// An expired lease alone proves nothing: a node cut off from the database keeps running. Its sessions stay on the
// server until the server gives up on them (minutes with PostgreSQL's and RDS's defaults), so "no sessions" is
// proof unless the server itself restarted recently and dropped every session: hence the uptime condition.
func (d *DB) Watch(ctx context.Context) (*Watch, error) {
	w := &Watch{guard: d.guard, c: conn{conf: d.conf, timeout: d.timeout}}
	err := w.c.do(ctx, func(ctx context.Context, c *pgx.Conn) (err error) {
		w.first, err = leader.LeaseState(ctx, c)
		return err
	})
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Watch is one wait for the previous node to be gone.
type Watch struct {
	guard time.Duration
	first leader.LeaseInfo
	c     conn
}

// Check reports whether the previous node is gone, and why (or why not).
func (w *Watch) Check(ctx context.Context) (gone bool, why string, err error) {
	err = w.c.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		gone, why, err = w.check(ctx, c)
		return err
	})
	return gone, why, err
}

func (w *Watch) check(ctx context.Context, c *pgx.Conn) (bool, string, error) {
	lease, err := leader.LeaseState(ctx, c)
	if err != nil {
		return false, "", err
	}
	if lease.ReleasedSince(w.first) {
		return true, "the previous node released its lease", nil
	}
	sessions, err := leader.NodeSessions(ctx, c)
	if err != nil {
		return false, "", err
	}
	var uptime time.Duration
	if err := c.QueryRow(ctx, "SELECT now() - pg_postmaster_start_time()").Scan(&uptime); err != nil {
		return false, "", fmt.Errorf("read the server's uptime: %w", err)
	}
	switch {
	case lease.Exists && !lease.Expired:
		return false, fmt.Sprintf("the node's lease is held for %s more", lease.Remaining.Round(time.Millisecond)), nil
	case sessions > 0:
		return false, fmt.Sprintf("%d database sessions of the old node (or another client) remain", sessions), nil
	case uptime < w.guard:
		return false, fmt.Sprintf("the database restarted %s ago: missing sessions prove nothing", uptime.Round(time.Second)), nil
	}
	return true, "the node's lease is not held and no other host's node has a database session", nil
}

// Close ends the watch's connection.
func (w *Watch) Close() { w.c.close() }

// ExpireStaleLease ends the lease of the previous (dead) node, so the next node need not wait it out. It uses the
// health reports' connection.
func (d *DB) ExpireStaleLease(ctx context.Context) error {
	return d.peers.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := leader.ExpireLease(ctx, c)
		return err
	})
}

// Close ends the connection of the health reports.
func (d *DB) Close() { d.peers.close() }

// conn is one connection, opened on first use and again after it broke; one call at a time.
type conn struct {
	conf    *pgx.ConnConfig
	timeout time.Duration

	mu sync.Mutex
	c  *pgx.Conn
}

// do runs fn on the connection within the timeout, connecting first if needed. A failed call closes the
// connection: the next one starts on a fresh session.
func (c *conn) do(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.c == nil || c.c.IsClosed() {
		pc, err := pgx.ConnectConfig(ctx, c.conf)
		if err != nil {
			return fmt.Errorf("connect to the node's database (bound %s): %w", c.timeout, err)
		}
		c.c = pc
	}
	if err := fn(ctx, c.c); err != nil {
		c.closeLocked()
		return err
	}
	return nil
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
}

func (c *conn) closeLocked() {
	if c.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	_ = c.c.Close(ctx) // the session ends with the socket anyway
	c.c = nil
}
