package pair

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The upgrade's phases, writers that race, and the node's migrations, on real PostgreSQL (store_test.go has the
// shared server and the helpers).

// previous is the phase before p on the way to done.
func previous(p Phase) Phase {
	return map[Phase]Phase{Validated: Requested, Switching: Validated, Starting: Switching, Done: Starting}[p]
}

func TestAdvance(t *testing.T) {
	t.Parallel()
	t.Run("WrongPhaseOrCandidateChangesNothing", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		cand := mustRequest(ctx, t, c, 2, "2.20.0").Upgrade.Candidate
		before := mustRead(ctx, t, c)
		for _, tc := range []struct {
			name     string
			digest   string
			from, to Phase
		}{
			{"WrongPhase", cand.Digest, Validated, Switching},
			{"WrongPhaseToSame", cand.Digest, Starting, Done},
			{"AnotherCandidate", img("2.21.0", 3).Digest, Requested, Validated},
			{"ThePairsOwnDigest", before.Image.Digest, Requested, Validated},
		} {
			moved, err := Advance(ctx, c, tc.digest, tc.from, tc.to, "nope", "i-b", 42)
			if err != nil || moved {
				t.Errorf("%s: Advance = %v, %v; want false, nil", tc.name, moved, err)
			}
			if after := mustRead(ctx, t, c); after != before {
				t.Errorf("%s: the row changed from %+v to %+v", tc.name, before, after)
			}
		}
	})
	t.Run("NothingToAdvanceWithoutARow", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		for _, from := range []Phase{"", Requested} {
			moved, err := Advance(ctx, c, "", from, Validated, "nope", "i-b", 0)
			if err != nil || moved {
				t.Errorf("Advance from %q on no row = %v, %v; want false, nil", from, moved, err)
			}
		}
		if r := mustRead(ctx, t, c); r.Exists {
			t.Errorf("Advance without a record wrote one: %+v", r)
		}
	})
	t.Run("FullPathToDone", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		cand := mustRequest(ctx, t, c, 2, "2.20.0").Upgrade.Candidate
		for _, p := range []Phase{Validated, Switching, Starting} {
			mustAdvance(ctx, t, c, cand.Digest, previous(p), p, 1700)
			r := mustRead(ctx, t, c)
			u := r.Upgrade
			if u.Phase != p || u.Reason != "test: "+string(p) || u.By != "i-standby" || u.Candidate != cand {
				t.Errorf("after Advance to %s: %+v", p, u)
			}
			if wantBaseline := map[bool]int64{true: 1700}[p == Starting]; u.MigrationBaseline != wantBaseline {
				t.Errorf("in %s: migration baseline %d, want %d (recorded only on starting)", p, u.MigrationBaseline, wantBaseline)
			}
			if r.Ahead() != (p == Switching || p == Starting) {
				t.Errorf("in %s: Ahead %v", p, r.Ahead())
			}
			if r.Image != img("2.19.0", 1) {
				t.Errorf("in %s: the pair's image is %s, want the old one until the candidate runs", p, r.Image)
			}
		}
		r := mustRecord(ctx, t, c, 2, "2.20.0", "i-b")
		if u := r.Upgrade; u.Phase != Done || u.By != "i-b" || u.Reason != "" || u.MigrationBaseline != 1700 {
			t.Errorf("after the candidate ran: upgrade %+v, want done by i-b", u)
		}
		if r.Image != cand || r.Highest != "2.20.0" || r.RecordedBy != "i-b" {
			t.Errorf("after the candidate ran: %s highest %q by %s; want %s highest 2.20.0", r.Image, r.Highest, r.RecordedBy, cand)
		}
		// done is over: the next upgrade may be asked for
		mustRequest(ctx, t, c, 3, "2.21.0")
	})
	t.Run("UpgradeAtMovesWithThePhase", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		u := mustRequest(ctx, t, c, 2, "2.20.0").Upgrade
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		if at := mustRead(ctx, t, c).Upgrade.At; !at.Equal(u.At) {
			t.Errorf("upgrade_at moved from %s to %s without a new phase", u.At, at)
		}
		mustAdvance(ctx, t, c, u.Candidate.Digest, Requested, Validated, 0)
		if at := mustRead(ctx, t, c).Upgrade.At; !at.After(u.At) {
			t.Errorf("upgrade_at %s after a new phase, want after %s", at, u.At)
		}
	})
	for _, tc := range []struct {
		name string
		path []Phase // from requested
	}{
		{"RefusedLetsANewRequestThrough", []Phase{Refused}},
		{"RolledBackLetsANewRequestThrough", []Phase{Validated, Switching, Starting, RolledBack}},
		{"FailedLetsANewRequestThrough", []Phase{Validated, Switching, Starting, Failed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, c := conn(t)
			mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
			cand := mustRequest(ctx, t, c, 2, "2.20.0").Upgrade.Candidate
			from := Requested
			for _, p := range tc.path {
				mustAdvance(ctx, t, c, cand.Digest, from, p, 0)
				from = p
			}
			if u := mustRead(ctx, t, c).Upgrade; u.Phase.InProgress() {
				t.Fatalf("%s is still in progress", u.Phase)
			}
			// the same candidate again, or another one
			if u := mustRequest(ctx, t, c, 2, "2.20.0").Upgrade; u.Phase != Requested || u.Candidate != cand || u.MigrationBaseline != 0 {
				t.Errorf("the new request: %+v", u)
			}
		})
	}
}

// TestConcurrentRequests: the agents of both hosts (and the operator's CLI through either) may ask at once; the
// row lock lets exactly one through.
func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	const n = 8
	db := newDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i] = db.connect(t)
	}
	mustRecord(ctx, t, conns[0], 1, "2.19.0", "i-a")
	errs := race(conns, func(i int, c *pgx.Conn) error {
		_, err := Request(ctx, c, img(fmt.Sprintf("2.%d.0", 20+i), 100+i), false, fmt.Sprintf("i-%d", i))
		return err
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("both requests %d and %d were accepted", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrInProgress):
			t.Errorf("request %d: %v, want ErrInProgress", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no request was accepted")
	}
	u := mustRead(ctx, t, conns[0]).Upgrade
	if u.Phase != Requested || u.Candidate != img(fmt.Sprintf("2.%d.0", 20+winner), 100+winner) || u.By != fmt.Sprintf("i-%d", winner) {
		t.Errorf("upgrade %+v, want the winner's (%d)", u, winner)
	}
}

// TestConcurrentFirstRecord: both hosts of a new pair record their image at once on a database without the table.
// Neither may fail (CREATE TABLE IF NOT EXISTS alone races on the catalog), and the highest release is the
// higher of the two whatever the order.
func TestConcurrentFirstRecord(t *testing.T) {
	t.Parallel()
	const rounds, n = 3, 4
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := range rounds {
		db := newDB(t)
		conns := make([]*pgx.Conn, n)
		for i := range conns {
			conns[i] = db.connect(t)
		}
		errs := race(conns, func(i int, c *pgx.Conn) error {
			_, err := RecordRunning(ctx, c, img(fmt.Sprintf("2.%d.0", 19+i), 100+i), fmt.Sprintf("i-%d", i))
			return err
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: RecordRunning %d: %v", round, i, err)
			}
		}
		if r := mustRead(ctx, t, conns[0]); r.Highest != fmt.Sprintf("2.%d.0", 19+n-1) {
			t.Errorf("round %d: highest %q after recording 2.19.0 … 2.%d.0 at once (last written %s)", round, r.Highest, 19+n-1, r.Image.Tag)
		}
	}
}

// race runs f on every connection at once (each goroutine released by one close) and returns their errors.
func race(conns []*pgx.Conn, f func(int, *pgx.Conn) error) []error {
	errs := make([]error, len(conns))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			<-start
			errs[i] = f(i, c)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func TestMigrationVersion(t *testing.T) {
	t.Parallel()
	ctx, c := conn(t)
	check := func(name string, want int64) {
		t.Helper()
		if v, err := MigrationVersion(ctx, c); err != nil || v != want {
			t.Errorf("%s: MigrationVersion = %d, %v; want %d", name, v, err, want)
		}
	}
	check("no goose_migrations", 0)
	exec := func(q string) {
		t.Helper()
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE goose_migrations (id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL,
  tstamp timestamp DEFAULT now())`)
	check("empty goose_migrations", 0)
	exec(`INSERT INTO goose_migrations (version_id, is_applied) VALUES (0, true), (1, true), (195, true), (20240910, true)`)
	check("applied", 20240910)
	exec(`INSERT INTO goose_migrations (version_id, is_applied) VALUES (20250101, false)`)
	check("a rolled-back migration is ignored", 20240910)
}
