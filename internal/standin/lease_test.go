package standin

import (
	"context"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// TestSecondNodeWaitsAndTakesOverOnRelease: the second node waits for the lease without opening its port; a
// SIGTERM makes the first release (exit 0) and the second takes over long before the lease would have expired.
// Both connect with a password holding @:/?#% percent-encoded, verifying the server with sslrootcert.
func TestSecondNodeWaitsAndTakesOverOnRelease(t *testing.T) {
	t.Parallel()
	db := newDatabase(t, testenv.PostgresT(t))
	const lease = 30 * time.Second // a takeover well before this proves the release
	dbURL := db.url("127.0.0.1", db.pg.CAFile)

	portA, portB := testenv.FreePort(t), testenv.FreePort(t)
	filesA := tomlFiles(t, dbURL, "", portA, lease, 200*time.Millisecond)
	filesB := tomlFiles(t, dbURL, "", portB, lease, 200*time.Millisecond)
	a := startNode(t, "node-a", portA, nil, args2x(filesA.Secrets)...)
	a.waitLog(t, "ready", 20*time.Second)
	if code := httpGet("http://127.0.0.1:" + strconv.Itoa(portA) + "/readyz"); code != http.StatusOK {
		t.Fatalf("node A /readyz = %d; want 200", code)
	}

	b := startNode(t, "node-b", portB, nil, args2x(filesB.Secrets)...)
	b.waitLog(t, "waiting for lease", 20*time.Second)
	if portOpen(portB) {
		t.Fatalf("node B opened port %d while waiting for the lease", portB)
	}
	if b.out.find("listening") != nil {
		t.Fatal("node B logged listening while waiting for the lease")
	}

	released := time.Now()
	a.signal(t, syscall.SIGTERM)
	if code := a.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("node A exit code after SIGTERM = %d; want 0", code)
	}
	a.waitLog(t, "stopping", time.Second)
	b.waitLog(t, "ready", 10*time.Second)
	if took := time.Since(released); took >= lease/2 {
		t.Errorf("takeover took %s; a released lease should go at the next try", took)
	}
	if code := httpGet("http://127.0.0.1:" + strconv.Itoa(portB) + "/readyz"); code != http.StatusOK {
		t.Errorf("node B /readyz = %d; want 200", code)
	}
	if portOpen(portA) {
		t.Errorf("node A's port %d still open after it stopped", portA)
	}

	b.signal(t, syscall.SIGINT)
	if code := b.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("node B exit code after SIGINT = %d; want 0", code)
	}
	ivs := db.intervals(t)
	if len(ivs) != 2 || ivs[0].Host != "node-a" || ivs[1].Host != "node-b" || ivs[0].ClientID == ivs[1].ClientID {
		t.Fatalf("intervals = %+v; want node-a then node-b", ivs)
	}
	assertNoOverlap(t, ivs)
	var released2 bool
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.superuser(t).QueryRow(ctx, `SELECT expires_at <= NOW() FROM lease_lock`).Scan(&released2); err != nil || !released2 {
		t.Errorf("lease after node B stopped: released=%v err=%v; want expired", released2, err)
	}
}

// TestHolderExitsWhenAnotherTookTheLease: a holder that finds another client_id on refresh exits 1 at once.
func TestHolderExitsWhenAnotherTookTheLease(t *testing.T) {
	t.Parallel()
	db := newDatabase(t, testenv.PostgresT(t))
	port := testenv.FreePort(t)
	files := tomlFiles(t, db.url("127.0.0.1", db.pg.CAFile), "", port, 30*time.Second, 200*time.Millisecond)
	n := startNode(t, "node-a", port, nil, args2x(files.Secrets)...)
	n.waitLog(t, "ready", 20*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.superuser(t).Exec(ctx, `UPDATE lease_lock SET client_id = gen_random_uuid(), expires_at = NOW() + interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if code := n.exitCode(t, 5*time.Second); code != 1 {
		t.Errorf("exit code after the lease was taken = %d; want 1", code)
	}
	if line := n.out.find("lease lost"); line == nil || line["level"] != "error" {
		t.Errorf("no error line \"lease lost\": %v", line)
	}
	if n.out.find("stopping") != nil {
		t.Error("a node that lost its lease went through the clean stop; it must exit at once")
	}
}

// TestKilledHolderLeavesLastProvenTime: after kill -9 the lease expires on its own; the waiting node takes it
// no earlier than a full lease after the killed node's last proven refresh, and the intervals do not overlap.
func TestKilledHolderLeavesLastProvenTime(t *testing.T) {
	t.Parallel()
	db := newDatabase(t, testenv.PostgresT(t))
	const lease, refresh = 2 * time.Second, 400 * time.Millisecond
	dbURL := db.url("127.0.0.1", db.pg.CAFile)
	portA, portB := testenv.FreePort(t), testenv.FreePort(t)
	a := startNode(t, "node-a", portA, nil, args2x(tomlFiles(t, dbURL, "", portA, lease, refresh).Secrets)...)
	a.waitLog(t, "ready", 20*time.Second)
	b := startNode(t, "node-b", portB, nil, args2x(tomlFiles(t, dbURL, "", portB, lease, refresh).Secrets)...)
	b.waitLog(t, "waiting for lease", 20*time.Second)

	a.signal(t, syscall.SIGKILL)
	a.exitCode(t, 5*time.Second)
	b.waitLog(t, "ready", 10*time.Second)

	ivs := db.intervals(t)
	if len(ivs) != 2 || ivs[0].Host != "node-a" || ivs[1].Host != "node-b" {
		t.Fatalf("intervals = %+v; want node-a then node-b", ivs)
	}
	assertNoOverlap(t, ivs)
	if gap := ivs[1].Started.Sub(ivs[0].Ended); gap < lease {
		t.Errorf("node B took the lease %s after node A's last proven refresh; want at least the lease duration %s", gap, lease)
	}
}

// TestLegacyNodeWithEnvironment runs the 1.x command line with its configuration in the environment, in lease
// mode and in the default dual mode (lease plus advisory lock): the second node waits in both.
func TestLegacyNodeWithEnvironment(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	for _, mode := range []string{"lease", "dual", "advisorylock"} {
		t.Run(mode, func(t *testing.T) {
			db := newDatabase(t, pg)
			env := func(port int, root string) []string {
				e := []string{"DATABASE_URL=" + db.url("127.0.0.1", pg.CAFile), "ROOT=" + root,
					"CHAINLINK_PORT=" + strconv.Itoa(port), "LEASE_LOCK_DURATION=4s", "LEASE_LOCK_REFRESH_INTERVAL=200ms",
					"ADVISORY_LOCK_CHECK_INTERVAL=200ms", "JSON_CONSOLE=true"}
				if mode != "dual" {
					e = append(e, "DATABASE_LOCKING_MODE="+mode) // dual is the default
				}
				return e
			}
			portA, portB := testenv.FreePort(t), testenv.FreePort(t)
			filesA := tomlFiles(t, "", "", portA, time.Second, time.Second/2)
			filesB := tomlFiles(t, "", "", portB, time.Second, time.Second/2)
			args := func(f nodeFiles) []string {
				return []string{"local", "n", "-p", f.path(".password"), "-a", f.path(".api")}
			}
			a := startNode(t, "legacy-a", portA, env(portA, filesA.Data), args(filesA)...)
			a.waitLog(t, "ready", 20*time.Second)
			b := startNode(t, "legacy-b", portB, env(portB, filesB.Data), args(filesB)...)
			b.waitLog(t, "waiting for lease", 20*time.Second)
			if portOpen(portB) {
				t.Fatalf("node B opened port %d while waiting", portB)
			}
			a.signal(t, syscall.SIGTERM)
			if code := a.exitCode(t, 10*time.Second); code != 0 {
				t.Fatalf("node A exit code = %d; want 0", code)
			}
			b.waitLog(t, "ready", 10*time.Second)
			b.signal(t, syscall.SIGTERM)
			if code := b.exitCode(t, 10*time.Second); code != 0 {
				t.Fatalf("node B exit code = %d; want 0", code)
			}
			ivs := db.intervals(t)
			if len(ivs) != 2 {
				t.Fatalf("intervals = %+v; want two", ivs)
			}
			assertNoOverlap(t, ivs)
		})
	}
}

// TestHolderSurvivesDatabaseRestart: a holder that loses the database only logs, keeps serving, and holds the
// lease again once the database is back.
func TestHolderSurvivesDatabaseRestart(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgresT(t)
	db := newDatabase(t, pg)
	port := testenv.FreePort(t)
	n := startNode(t, "node-a", port, nil, args2x(tomlFiles(t, db.url("127.0.0.1", pg.CAFile), "", port, 30*time.Second, 200*time.Millisecond).Secrets)...)
	clientID, _ := n.waitLog(t, "lease acquired", 20*time.Second)["clientID"].(string)
	n.waitLog(t, "ready", 5*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	n.waitLog(t, "lease refresh failed", 10*time.Second)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if code := httpGet(base + "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after losing the database = %d; want 200 (the node keeps running)", code)
	}
	// Back: a refresh succeeds on a new connection (the Database check passes again) and the row is still ours.
	testenv.WaitFor(t, 15*time.Second, "a successful refresh after the restart", func() bool { return httpGet(base+"/health") == http.StatusOK })
	var ours bool
	if err := db.superuser(t).QueryRow(ctx, `SELECT client_id::text = $1 AND expires_at > NOW() FROM lease_lock`, clientID).Scan(&ours); err != nil || !ours {
		t.Errorf("lease after the restart: ours=%v err=%v; want still held by %s", ours, err, clientID)
	}
	select {
	case <-n.done:
		t.Fatalf("the node exited:\n%s", n.out.String())
	default:
	}
}
