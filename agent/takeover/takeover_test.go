package takeover

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestTakeoverProof runs the production Takeover against a real PostgreSQL with the node's lease table.
func TestTakeoverProof(t *testing.T) {
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The test's own session plays the agents' (any other client of the database counts as the old node).
	admin := func() *pgx.Conn {
		cfg, err := pgx.ParseConfig(pg.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = "cl-agent-test/admin"
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}()
	for _, q := range []string{
		`CREATE TABLE lease_lock (client_id uuid NOT NULL, expires_at timestamptz NOT NULL)`,
		`CREATE UNIQUE INDEX only_one_lease_lock ON lease_lock ((client_id IS NOT NULL))`,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	setLease := func(expires string) {
		t.Helper()
		if _, err := admin.Exec(ctx, `DELETE FROM lease_lock`); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(ctx, `INSERT INTO lease_lock VALUES ('11111111-1111-1111-1111-111111111111', `+expires+`)`); err != nil {
			t.Fatal(err)
		}
	}
	connConfig, err := pgx.ParseConfig(pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	// A session of the other host's node, named as the real node names them (whatever the URL asked for).
	peerNode := func() *pgx.Conn {
		cfg := connConfig.Copy()
		cfg.RuntimeParams["application_name"] = "Chainlink 2.19.0 |App|0b7e5a62-3f4c-4e8e-9a51-5a0c2b8e7d11"
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	check := func(guard time.Duration) *Watch {
		t.Helper()
		w, err := New(connConfig, "i-0self", guard, 5*time.Second).Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		return w
	}
	expect := func(name string, w *Watch, want bool) {
		t.Helper()
		gone, why, err := w.Check(ctx)
		if err != nil || gone != want {
			t.Errorf("%s: gone=%v (%s), %v; want gone=%v", name, gone, why, err, want)
		}
	}

	setLease("now() + interval '10 seconds'")
	c := check(time.Millisecond)
	expect("LeaseHeld", c, false)
	if _, err := admin.Exec(ctx, `UPDATE lease_lock SET expires_at = now()`); err != nil { // the node's clean stop
		t.Fatal(err)
	}
	expect("ReleasedWhileWatching", c, true)

	setLease("now() - interval '1 second'")
	node := peerNode()
	expect("LapsedButPeerNodeStillConnected", check(time.Millisecond), false)
	node.Close(ctx)
	expect("LapsedAndNoSessions", check(time.Millisecond), true)
	expect("ServerRestartedWithinTheGuard", check(time.Hour), false)

	if err := New(connConfig, "i-0self", time.Second, 5*time.Second).ExpireStaleLease(ctx); err != nil {
		t.Fatal(err)
	}
	setLease("now() + interval '10 seconds'")
	if err := New(connConfig, "i-0self", time.Second, 5*time.Second).ExpireStaleLease(ctx); err != nil {
		t.Fatal(err)
	}
	var expired bool
	if err := admin.QueryRow(ctx, `SELECT expires_at <= now() FROM lease_lock`).Scan(&expired); err != nil || !expired {
		t.Errorf("ExpireStaleLease left the lease live: %v %v", expired, err)
	}

	// Health reports: the active sees a healthy standby only while it reports, healthy, within peerFresh.
	self := New(connConfig, "i-0self", time.Second, 5*time.Second)
	other := New(connConfig, "i-0peer", time.Second, 5*time.Second)
	if ready, why, err := self.PeerReady(ctx); err != nil || ready {
		t.Errorf("PeerReady before any report = %v (%s), %v", ready, why, err)
	}
	if err := self.PublishHealth(ctx, state.Active, false, "node backoff"); err != nil {
		t.Fatal(err)
	}
	if err := other.PublishHealth(ctx, state.Standby, false, "failing: chain_http"); err != nil {
		t.Fatal(err)
	}
	if ready, _, _ := self.PeerReady(ctx); ready {
		t.Error("an unhealthy standby counted as ready")
	}
	if err := other.PublishHealth(ctx, state.Standby, true, "warm"); err != nil {
		t.Fatal(err)
	}
	if ready, why, err := self.PeerReady(ctx); err != nil || !ready || !strings.Contains(why, "i-0peer") {
		t.Errorf("PeerReady = %v (%s), %v; want the healthy standby i-0peer", ready, why, err)
	}
	if ready, _, _ := other.PeerReady(ctx); ready {
		t.Error("the standby sees its active (unhealthy) as a ready standby")
	}
	if _, err := admin.Exec(ctx, `UPDATE cl_agent_peers SET updated_at = now() - interval '1 minute' WHERE instance_id = 'i-0peer'`); err != nil {
		t.Fatal(err)
	}
	if ready, _, _ := self.PeerReady(ctx); ready {
		t.Error("a standby that stopped reporting counted as ready")
	}
}

// TestWatchHoldsOneConnection: a new active polls its watch every 100 ms for up to the takeover guard; every poll
// runs on the one session the watch opened, and the health reports on one session of their own. Measured on the
// server: the backends named for this host's takeover, and their pids, across many calls.
func TestWatchHoldsOneConnection(t *testing.T) {
	pg := testenv.PostgresT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connConfig, err := pgx.ParseConfig(pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("i-0%x", time.Now().UnixNano()) // its own sessions, whatever else runs
	sessions := func() map[int]bool {
		t.Helper()
		rows, err := pgx.ConnectConfig(ctx, connConfig)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close(ctx)
		pids := map[int]bool{}
		r, err := rows.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, "cl-agent-takeover/"+id)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var pid int
			if err := r.Scan(&pid); err != nil {
				t.Fatal(err)
			}
			pids[pid] = true
		}
		return pids
	}
	db := New(connConfig, id, time.Millisecond, 5*time.Second)
	defer db.Close()
	w, err := db.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 50 {
		if _, _, err := w.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.PublishHealth(ctx, state.Standby, true, "warm"); err != nil {
			t.Fatal(err)
		}
		for pid := range sessions() {
			seen[pid] = true
		}
	}
	if len(seen) != 2 {
		t.Fatalf("50 checks and 50 reports used %d sessions %v; want 2: the watch's and the reports'", len(seen), seen)
	}
	w.Close()
	db.Close()
	testenv.WaitFor(t, 5*time.Second, "the sessions to end after Close", func() bool { return len(sessions()) == 0 })
}
