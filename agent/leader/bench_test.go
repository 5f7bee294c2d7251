package leader

import (
	"context"
	"testing"
	"time"
)

// BenchmarkPing compares a bare round trip with the proof the Term runs (pg_locks for our backend and key), on a
// session that holds the lock, over TLS to a local server. The numbers are in the package doc.
func BenchmarkPing(b *testing.B) {
	db := newDB(b, sharedPostgres(b))
	cfg := db.connConfig(b, db.pg.Host)
	e, err := New(Options{ConnConfig: cfg, Key: LockKey(0, db.name), InstanceID: "i-bench"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := e.dial(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close(ctx)
	if got, err := s.tryLock(ctx, time.Second); err != nil || !got {
		b.Fatalf("tryLock = %t, %v", got, err)
	}
	b.Run("Select1", func(b *testing.B) {
		for b.Loop() {
			var one int
			if err := s.conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ProveLock", func(b *testing.B) {
		for b.Loop() {
			if err := s.prove(ctx, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
