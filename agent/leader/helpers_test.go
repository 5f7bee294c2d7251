package leader

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// The package's tests share one cluster (each test gets its own database, and advisory locks are per database),
// except those that restart the server or need it to listen on a namespace's link.
var shared = testenv.SharedPostgres{Name: "leader"}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

// sharedPostgres starts the shared cluster on first use; TestMain stops it.
func sharedPostgres(t testing.TB) *testenv.Postgres {
	t.Helper()
	return shared.Get(t)
}

// testDB is a database owned by its own login role, as the agent's database is.
type testDB struct {
	pg                   *testenv.Postgres
	name, user, password string
}

func newDB(t testing.TB, pg *testenv.Postgres) testDB {
	t.Helper()
	suffix := testenv.RandomHex(6)
	db := testDB{pg: pg, name: "leader_" + suffix, user: "agent_" + suffix, password: testenv.RandomHex(16)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pg.CreateDatabase(ctx, db.name, db.user, db.password); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return db
}

// dsn is the agent role's URL for the database through host.
func (d testDB) dsn(host string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(d.user, d.password),
		Host:     net.JoinHostPort(host, strconv.Itoa(d.pg.Port)),
		Path:     "/" + d.name,
		RawQuery: "sslmode=require",
	}
	return u.String()
}

func (d testDB) connConfig(t testing.TB, host string) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(d.dsn(host))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return cfg
}

// conn opens a connection as the agent role with the given application_name, closed at cleanup.
func (d testDB) conn(t testing.TB, appName string) *pgx.Conn {
	t.Helper()
	cfg := d.connConfig(t, d.pg.Host)
	cfg.RuntimeParams["application_name"] = appName
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", appName, err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// admin opens a superuser connection to the database, closed at cleanup.
func (d testDB) admin(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, d.pg.URL(d.name))
	if err != nil {
		t.Fatalf("connect as superuser: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// timing is a set of Options timings; fast keeps the integration tests short while keeping the invariant.
type timing struct {
	ping, pingTimeout, fenceAfter, deadPeer, retry time.Duration
}

var (
	fast        = timing{ping: 200 * time.Millisecond, pingTimeout: 150 * time.Millisecond, fenceAfter: time.Second, deadPeer: 2 * time.Second, retry: 100 * time.Millisecond}
	defaultTime = timing{ping: DefaultPingInterval, pingTimeout: DefaultPingTimeout, fenceAfter: DefaultFenceAfter, deadPeer: DefaultDeadPeerTimeout, retry: 100 * time.Millisecond}
)

func (tm timing) options(cfg *pgx.ConnConfig, key int64, id string) Options {
	return Options{
		ConnConfig: cfg, Key: key, InstanceID: id,
		PingInterval: tm.ping, PingTimeout: tm.pingTimeout, FenceAfter: tm.fenceAfter,
		DeadPeerTimeout: tm.deadPeer, RetryInterval: tm.retry, CallTimeout: 5 * time.Second,
	}
}

// newHooks returns hooks with every signal listening.
func newHooks() *hooks {
	h := &hooks{}
	h.denied.init()
	h.pingStarted.init()
	h.pingDone.init()
	h.pingLate.init()
	h.ended.init()
	return h
}

// newElector makes an elector for instance id on db (through 127.0.0.1) with signals on.
func newElector(t *testing.T, db testDB, id string, tm timing) (*Elector, *hooks) {
	t.Helper()
	return newElectorWith(t, db, id, tm, nil)
}

// newElectorWith is newElector with a change to the options.
func newElectorWith(t *testing.T, db testDB, id string, tm timing, change func(*Options)) (*Elector, *hooks) {
	t.Helper()
	h := newHooks()
	o := tm.options(db.connConfig(t, db.pg.Host), LockKey(0, db.name), id)
	o.Logger = zaptest.NewLogger(t).Named(id)
	o.hooks = h
	if change != nil {
		change(&o)
	}
	e, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e, h
}

type acquired struct {
	term *Term
	err  error
	at   time.Time
}

// acquireAsync runs Acquire until ctx ends; the result arrives on the channel. Terms still held at cleanup are
// released.
func acquireAsync(t *testing.T, ctx context.Context, e *Elector) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		term, err := e.Acquire(ctx)
		ch <- acquired{term: term, err: err, at: time.Now()}
	}()
	return ch
}

func waitAcquired(t *testing.T, ch <-chan acquired, bound time.Duration, who string) acquired {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("%s: Acquire: %v", who, a.err)
		}
		releaseAtCleanup(t, a.term)
		return a
	case <-time.After(bound):
		t.Fatalf("%s did not acquire the lock within %s", who, bound)
	}
	return acquired{}
}

func releaseAtCleanup(t *testing.T, term *Term) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = term.Release(ctx)
	})
}

// wait returns the next value of a test signal, or fails the test after bound.
func wait[T any](t *testing.T, s *testSignal[T], bound time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-s.ch:
		return v
	case <-time.After(bound):
		t.Fatalf("no %s within %s", what, bound)
	}
	var zero T
	return zero
}

// waitDone waits for a Term to end and returns when that was observed.
func waitDone(t *testing.T, term *Term, bound time.Duration, who string) time.Time {
	t.Helper()
	select {
	case <-term.Done():
		return time.Now()
	case <-time.After(bound):
		t.Fatalf("%s: the term did not end within %s", who, bound)
	}
	return time.Time{}
}

func holderOf(t *testing.T, e *Elector) Holder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := e.Holder(ctx)
	if err != nil {
		t.Fatalf("Holder: %v", err)
	}
	return h
}

// isCause reports whether the term ended for reason.
func isCause(term *Term, reason error) bool { return errors.Is(term.Err(), reason) }
