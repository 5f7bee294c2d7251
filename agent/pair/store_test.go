package pair

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// The package's tests share one cluster; each test gets its own database, owned by its own login role as the
// agent's database is (the agents are no superusers).
var shared = testenv.SharedPostgres{Name: "pair"}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

func sharedPostgres(t testing.TB) *testenv.Postgres {
	t.Helper()
	return shared.Get(t)
}

// testDB is a fresh database of the shared cluster; connect opens a session on it as its owner.
type testDB struct {
	dsn string
}

func newDB(t testing.TB) testDB {
	t.Helper()
	pg := sharedPostgres(t)
	suffix := testenv.RandomHex(6)
	name, user, password := "pair_"+suffix, "agent_"+suffix, testenv.RandomHex(16)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pg.CreateDatabase(ctx, name, user, password); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return testDB{dsn: pg.RoleURL(name, user, password)}
}

func (d testDB) connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// conn is a session on a fresh database, and a context that bounds the test.
func conn(t *testing.T) (context.Context, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx, newDB(t).connect(t)
}

func mustRead(ctx context.Context, t *testing.T, c *pgx.Conn) Record {
	t.Helper()
	r, err := Read(ctx, c)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return r
}

func mustRecord(ctx context.Context, t *testing.T, c *pgx.Conn, i int, tag string, by string) Record {
	t.Helper()
	r, err := RecordRunning(ctx, c, img(tag, i), by)
	if err != nil {
		t.Fatalf("RecordRunning(%s): %v", tag, err)
	}
	return r
}

func mustRequest(ctx context.Context, t *testing.T, c *pgx.Conn, i int, tag string) Record {
	t.Helper()
	r, err := Request(ctx, c, img(tag, i), false, "i-active")
	if err != nil {
		t.Fatalf("Request(%s): %v", tag, err)
	}
	return r
}

func mustAdvance(ctx context.Context, t *testing.T, c *pgx.Conn, digest string, from, to Phase, baseline int64) {
	t.Helper()
	moved, err := Advance(ctx, c, digest, from, to, "test: "+string(to), "i-standby", baseline)
	if err != nil || !moved {
		t.Fatalf("Advance(%s → %s) = %v, %v; want true", from, to, moved, err)
	}
}

func TestReadFreshDatabase(t *testing.T) {
	t.Parallel()
	ctx, c := conn(t)
	r, err := Read(ctx, c)
	if err != nil || r.Exists {
		t.Fatalf("Read on a database without the table = %+v, %v; want Exists false and no error", r, err)
	}
}

func TestRecordRunning(t *testing.T) {
	t.Parallel()
	t.Run("CreatesTheRow", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		got := mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		r := mustRead(ctx, t, c)
		if got != r {
			t.Errorf("RecordRunning returned %+v, Read %+v", got, r)
		}
		if !r.Exists || r.Image != img("2.19.0", 1) || r.Highest != "2.19.0" || r.RecordedBy != "i-a" {
			t.Errorf("got %+v; want image 2.19.0 by i-a, highest 2.19.0", r)
		}
		if r.RecordedAt.IsZero() || time.Since(r.RecordedAt).Abs() > time.Minute {
			t.Errorf("recorded_at %s is not now", r.RecordedAt)
		}
		if r.Upgrade != (Upgrade{}) {
			t.Errorf("upgrade %+v, want none", r.Upgrade)
		}
	})
	t.Run("TagThatIsNoReleaseHasNoHighest", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "develop", "i-a")
		if r := mustRead(ctx, t, c); r.Image.Tag != "develop" || r.Highest != "" {
			t.Errorf("got tag %q highest %q; want develop and no highest", r.Image.Tag, r.Highest)
		}
		// and a release after it is the highest; a non-release after that keeps it
		mustRecord(ctx, t, c, 2, "2.19.0", "i-a")
		mustRecord(ctx, t, c, 3, "2.19.0-rc.1", "i-a")
		if r := mustRead(ctx, t, c); r.Image.Tag != "2.19.0-rc.1" || r.Highest != "2.19.0" {
			t.Errorf("got tag %q highest %q; want 2.19.0-rc.1 with highest 2.19.0", r.Image.Tag, r.Highest)
		}
	})
	t.Run("LowerReleaseKeepsHighest", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		mustRecord(ctx, t, c, 2, "2.18.0", "i-a")
		if r := mustRead(ctx, t, c); r.Image != img("2.18.0", 2) || r.Highest != "2.19.0" {
			t.Errorf("got %s highest %q; want 2.18.0 with highest 2.19.0", r.Image, r.Highest)
		}
	})
	t.Run("HigherReleaseRaisesHighest", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.9.0", "i-a")
		mustRecord(ctx, t, c, 2, "2.10.0", "i-a")
		if r := mustRead(ctx, t, c); r.Image != img("2.10.0", 2) || r.Highest != "2.10.0" {
			t.Errorf("got %s highest %q; want 2.10.0 with highest 2.10.0", r.Image, r.Highest)
		}
	})
	t.Run("RecordedAtMovesOnlyWhenHostOrDigestChanges", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		first := mustRecord(ctx, t, c, 1, "2.19.0", "i-a").RecordedAt
		if again := mustRecord(ctx, t, c, 1, "2.19.0", "i-a").RecordedAt; !again.Equal(first) {
			t.Errorf("same host, same digest: recorded_at moved from %s to %s", first, again)
		}
		otherHost := mustRecord(ctx, t, c, 1, "2.19.0", "i-b").RecordedAt
		if !otherHost.After(first) {
			t.Errorf("another host: recorded_at %s, want after %s", otherHost, first)
		}
		otherDigest := mustRecord(ctx, t, c, 2, "2.19.0", "i-b").RecordedAt
		if !otherDigest.After(otherHost) {
			t.Errorf("another digest: recorded_at %s, want after %s", otherDigest, otherHost)
		}
	})
	t.Run("LeavesAnUpgradeForAnotherImageAlone", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		before := mustRequest(ctx, t, c, 2, "2.20.0").Upgrade
		mustRecord(ctx, t, c, 1, "2.19.0", "i-b") // a failover runs the pair's image again
		if after := mustRead(ctx, t, c).Upgrade; after != before {
			t.Errorf("upgrade changed from %+v to %+v", before, after)
		}
	})
}

func TestRequest(t *testing.T) {
	t.Parallel()
	t.Run("RefusedBeforeAnyRecord", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		if _, err := Request(ctx, c, img("2.20.0", 2), false, "i-a"); err == nil || !strings.Contains(err.Error(), "nothing to upgrade") {
			t.Fatalf("Request before any record: %v, want nothing to upgrade", err)
		}
		if r := mustRead(ctx, t, c); r.Exists {
			t.Errorf("a refused request left a row: %+v", r)
		}
	})
	t.Run("RefusedForThePairsDigest", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		// the same digest under another tag is still the pair's image
		same := img("2.19-latest", 1)
		if _, err := Request(ctx, c, same, false, "i-a"); err == nil || !strings.Contains(err.Error(), "already runs") {
			t.Fatalf("Request for the pair's digest: %v, want already runs", err)
		}
		if u := mustRead(ctx, t, c).Upgrade; u != (Upgrade{}) {
			t.Errorf("a refused request wrote %+v", u)
		}
	})
	t.Run("RefusedAsDowngrade", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.20.0", "i-a")
		mustRecord(ctx, t, c, 2, "2.19.0", "i-a") // the pair runs 2.19.0 but 2.20.0 ran
		_, err := Request(ctx, c, img("2.19.5", 3), false, "i-a")
		var de *DowngradeError
		if !errors.As(err, &de) || de.Image != "2.19.5" || de.Highest != "2.20.0" {
			t.Fatalf("Request(2.19.5) with highest 2.20.0: %v, want a DowngradeError naming both", err)
		}
		if u := mustRead(ctx, t, c).Upgrade; u != (Upgrade{}) {
			t.Errorf("a refused request wrote %+v", u)
		}
	})
	t.Run("DowngradeAllowed", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.20.0", "i-a")
		r, err := Request(ctx, c, img("2.19.0", 2), true, "i-a")
		if err != nil {
			t.Fatalf("Request(2.19.0, allowDowngrade): %v", err)
		}
		if r.Upgrade.Phase != Requested || !r.Upgrade.AllowDowngrade || r.Upgrade.Candidate != img("2.19.0", 2) {
			t.Errorf("upgrade %+v, want requested to 2.19.0 with allow_downgrade", r.Upgrade)
		}
	})
	t.Run("Accepted", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		got, err := Request(ctx, c, img("2.20.0", 2), false, "i-b")
		if err != nil {
			t.Fatalf("Request: %v", err)
		}
		r := mustRead(ctx, t, c)
		if got != r {
			t.Errorf("Request returned %+v, Read %+v", got, r)
		}
		u := r.Upgrade
		if u.Phase != Requested || u.Candidate != img("2.20.0", 2) || u.AllowDowngrade || u.By != "i-b" || u.Reason == "" {
			t.Errorf("upgrade %+v, want requested to 2.20.0 by i-b with a reason", u)
		}
		if u.At.IsZero() || time.Since(u.At).Abs() > time.Minute {
			t.Errorf("upgrade_at %s is not now", u.At)
		}
		if r.Image != img("2.19.0", 1) || r.Highest != "2.19.0" {
			t.Errorf("a request changed the pair's image: %s, highest %q", r.Image, r.Highest)
		}
	})
	t.Run("SecondWhileInProgress", func(t *testing.T) {
		t.Parallel()
		ctx, c := conn(t)
		mustRecord(ctx, t, c, 1, "2.19.0", "i-a")
		before := mustRequest(ctx, t, c, 2, "2.20.0").Upgrade
		for _, p := range []Phase{Requested, Validated, Switching, Starting} {
			if p != Requested {
				mustAdvance(ctx, t, c, before.Candidate.Digest, previous(p), p, 0)
			}
			_, err := Request(ctx, c, img("2.21.0", 3), false, "i-a")
			if !errors.Is(err, ErrInProgress) {
				t.Fatalf("second Request in %s: %v, want ErrInProgress", p, err)
			}
			if !strings.Contains(err.Error(), "2.20.0") {
				t.Errorf("%q does not name the upgrade under way", err)
			}
			if u := mustRead(ctx, t, c).Upgrade; u.Phase != p || u.Candidate != before.Candidate {
				t.Errorf("a refused request changed the upgrade to %+v", u)
			}
		}
	})
}
