package leader

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// The node's own SQL (core/services/pg/lease_lock.go, as internal/standin/cmd/chainlink/lease.go runs it).
var nodeLeaseDDL = []string{
	`CREATE TABLE IF NOT EXISTS lease_lock (client_id uuid NOT NULL, expires_at timestamptz NOT NULL)`,
	`CREATE UNIQUE INDEX IF NOT EXISTS only_one_lease_lock ON lease_lock ((client_id IS NOT NULL))`,
}

const nodeLeaseUpsert = `INSERT INTO lease_lock (client_id, expires_at) VALUES ($1, NOW()+$2::interval) ON CONFLICT ((client_id IS NOT NULL)) DO UPDATE SET
client_id = EXCLUDED.client_id,
expires_at = EXCLUDED.expires_at
WHERE
lease_lock.client_id = $1
OR
lease_lock.expires_at < NOW()`

const nodeLeaseRelease = `UPDATE lease_lock SET expires_at = NOW() WHERE client_id = $1 AND expires_at > NOW()`

func TestLease(t *testing.T) {
	t.Parallel()
	db := newDB(t, sharedPostgres(t))
	conn := db.conn(t, "cl-agent/i-self")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// takeLease runs the node's upsert for client id; it reports whether the node got the lease.
	takeLease := func(id uuid.UUID) bool {
		t.Helper()
		tag, err := conn.Exec(ctx, nodeLeaseUpsert, id, "10 seconds")
		if err != nil {
			t.Fatalf("node upsert: %v", err)
		}
		return tag.RowsAffected() == 1
	}

	t.Run("NoTable", func(t *testing.T) {
		if li, err := LeaseState(ctx, conn); err != nil || li != (LeaseInfo{}) {
			t.Fatalf("LeaseState = %+v, %v; want nothing", li, err)
		}
		if expired, err := ExpireLease(ctx, conn); err != nil || expired {
			t.Fatalf("ExpireLease = %t, %v; want a no-op", expired, err)
		}
	})
	for _, stmt := range nodeLeaseDDL {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("create the node's lease table: %v", err)
		}
	}
	t.Run("NoRow", func(t *testing.T) {
		if li, err := LeaseState(ctx, conn); err != nil || li.Exists {
			t.Fatalf("LeaseState = %+v, %v; want nothing", li, err)
		}
		if expired, err := ExpireLease(ctx, conn); err != nil || expired {
			t.Fatalf("ExpireLease = %t, %v; want a no-op", expired, err)
		}
	})

	old, next := uuid.New(), uuid.New()
	t.Run("StaleLeaseExpiredForTheNextNode", func(t *testing.T) {
		if !takeLease(old) {
			t.Fatal("the first node did not get the lease")
		}
		li, err := LeaseState(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		if !li.Exists || li.ClientID != old.String() || li.Expired || li.Remaining <= 9*time.Second || li.Remaining > 10*time.Second {
			t.Fatalf("held lease: %+v", li)
		}
		// The old node died without releasing: the next node would wait out the lease.
		if takeLease(next) {
			t.Fatal("the next node took a live lease")
		}
		expired, err := ExpireLease(ctx, conn)
		if err != nil || !expired {
			t.Fatalf("ExpireLease = %t, %v; want true", expired, err)
		}
		li, err = LeaseState(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		if !li.Exists || li.ClientID != old.String() || !li.Expired || li.Remaining != 0 {
			t.Fatalf("expired lease: %+v", li)
		}
		if expired, err := ExpireLease(ctx, conn); err != nil || expired {
			t.Fatalf("second ExpireLease = %t, %v; want a no-op", expired, err)
		}
		// The next node's first try wins now.
		if !takeLease(next) {
			t.Fatal("the next node did not get the expired lease")
		}
		if li, err := LeaseState(ctx, conn); err != nil || li.ClientID != next.String() || li.Expired {
			t.Fatalf("after the takeover: %+v, %v", li, err)
		}
	})

	t.Run("ReleasedSince", func(t *testing.T) {
		// A clean stop of the node moves expires_at back to now(): a release.
		live, err := LeaseState(ctx, conn)
		if err != nil || !live.Exists || live.Expired {
			t.Fatalf("live lease: %+v, %v", live, err)
		}
		if _, err := conn.Exec(ctx, nodeLeaseRelease, next); err != nil {
			t.Fatalf("node release: %v", err)
		}
		released, err := LeaseState(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		if !released.ReleasedSince(live) {
			t.Fatalf("a released lease (%+v after %+v) does not read as released", released, live)
		}
		if released.ReleasedSince(released) || live.ReleasedSince(live) {
			t.Fatal("ReleasedSince is true without a release in between")
		}

		// A node that stops refreshing lets its lease lapse: expired, but not released.
		third := uuid.New()
		if tag, err := conn.Exec(ctx, nodeLeaseUpsert, third, "0.3 seconds"); err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("short lease: %v", err)
		}
		short, err := LeaseState(ctx, conn)
		if err != nil || short.Expired {
			t.Fatalf("short lease: %+v, %v", short, err)
		}
		var lapsed LeaseInfo
		if !testenv.Poll(5*time.Second, 20*time.Millisecond, func() bool {
			lapsed, err = LeaseState(ctx, conn)
			return err == nil && lapsed.Expired
		}) {
			t.Fatalf("the short lease did not lapse within 5s (last: %+v, %v)", lapsed, err)
		}
		if lapsed.ReleasedSince(short) {
			t.Fatalf("a lapsed lease (%+v after %+v) reads as released", lapsed, short)
		}
	})

	t.Run("NodeSessions", func(t *testing.T) {
		// The real node's names (measured on v2.19.0: test/realnode), one uuid per node process.
		others := []interface{ Close(context.Context) error }{
			db.conn(t, "Chainlink 2.19.0 |App|0b7e5a62-3f4c-4e8e-9a51-5a0c2b8e7d11"),
			db.conn(t, "Chainlink 2.19.0 |App|0b7e5a62-3f4c-4e8e-9a51-5a0c2b8e7d11"),
		}
		db.conn(t, "cl-agent/i-other")          // the other host's agent
		db.conn(t, "cl-agent-takeover/i-other") // and its takeover watch
		n, err := NodeSessions(ctx, conn)
		if err != nil || n != 2 {
			t.Fatalf("NodeSessions = %d, %v; want 2", n, err)
		}
		for _, c := range others {
			_ = c.Close(ctx)
		}
		if !testenv.Poll(5*time.Second, 20*time.Millisecond, func() bool {
			n, err = NodeSessions(ctx, conn)
			return err == nil && n == 0
		}) {
			t.Fatalf("the old node's sessions not gone within 5s (last: %d, %v)", n, err)
		}
	})
}
