package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// stopBudget bounds the clean stop (HTTP shutdown, then lock release): well inside docker stop's 10 s.
const stopBudget = 5 * time.Second

var errExitAfter = errors.New("standin-exit-after elapsed")

// dbLock is one of the node's database locks (lease or 1.x advisory lock).
type dbLock interface {
	acquire(ctx context.Context) error
	hold(ctx context.Context, lost chan<- error)
	release(ctx context.Context) error
}

// node is one run of the stand-in after its inputs were accepted.
type node struct {
	cfg    nodeConfig
	creds  apiCredentials
	faults faults
	host   string
	id     uuid.UUID
	log    *zap.Logger
	state  *nodeState
	locks  []dbLock
	// migration is what the node records in goose_migrations once it holds its locks (release.go).
	migration int64
	// neverReady: this release's start never returns, so its HTTP port never opens (release.go).
	neverReady bool
}

// runNode validates every input, then runs the node until a signal (exit 0), a lost lease (exit 1) or an
// injected fault (exit 1). Invalid input: exit 1 with one log line naming the input and the rule.
func runNode(ctx context.Context, inv invocation, env lookupEnv, stdout io.Writer) error {
	bootLog := newLogger(stdout, true, zapcore.InfoLevel)
	cfg, creds, err := loadInputs(inv, env)
	if err != nil {
		bootLog.Error(evRefusing, zap.Error(err))
		return exitWith(1, err)
	}
	log := newLogger(stdout, cfg.JSONConsole, cfg.LogLevel)
	f, err := readFaults(cfg.RootDir)
	if err != nil {
		log.Error(evRefusing, zap.Error(err))
		return exitWith(1, err)
	}
	migration, err := migrateTo(env)
	if err != nil {
		log.Error(evRefusing, zap.Error(err))
		return exitWith(1, err)
	}
	if f.Crash {
		log.Error(evCrash, zap.String("file", faultCrash))
		return exitWith(1, errors.New("crash injected"))
	}
	host, ok := env("CL_STANDIN_HOST")
	if !ok || host == "" {
		host, _ = os.Hostname()
	}
	n := &node{cfg: cfg, creds: creds, faults: f, host: host, id: uuid.New(), log: log, state: newNodeState(),
		migration: migration, neverReady: neverReady(env)}
	version := versionOf(env)
	// Every session is named as the real node names its own; the URL's application_name goes.
	if n.cfg.DatabaseURL, err = withConsumerName(cfg.DatabaseURL, consumerName(version, n.id)); err != nil {
		log.Error(evRefusing, zap.Error(err))
		return exitWith(1, err)
	}
	log.Info(evStarting, zap.String("version", version), zap.Int("configGeneration", int(cfg.Gen)),
		zap.String("host", host), zap.String("clientID", n.id.String()), zap.String("rootDir", cfg.RootDir),
		zap.Int("httpPort", cfg.HTTPPort), zap.String("lockingMode", string(cfg.LockMode)),
		zap.String("dbHost", cfg.DB.Host), zap.String("dbName", cfg.DB.Database), zap.String("dbUser", cfg.DB.User))
	return n.run(ctx)
}

// loadInputs reads and checks the configuration, the password files and RootDir.
func loadInputs(inv invocation, env lookupEnv) (nodeConfig, apiCredentials, error) {
	var cfg nodeConfig
	var err error
	if inv.gen == gen1 {
		cfg, err = loadEnvConfig(env)
	} else {
		cfg, err = loadTOMLConfig(inv, env)
	}
	if err != nil {
		return nodeConfig{}, apiCredentials{}, err
	}
	// 1.x takes the keystore password only from -p; 2.x from secrets.toml, or from -p when it is given.
	if inv.gen == gen1 || inv.passwordFile != "" {
		pw, err := readKeystorePassword(inv.passwordFile)
		if err != nil {
			return nodeConfig{}, apiCredentials{}, err
		}
		cfg.Keystore = pw // -p wins over secrets.toml, as in the node (runNode's SetPasswords)
	}
	creds, err := readAPICredentials(inv.apiFile)
	if err != nil {
		return nodeConfig{}, apiCredentials{}, err
	}
	if err := prepareRootDir(cfg.RootDir); err != nil {
		return nodeConfig{}, apiCredentials{}, err
	}
	return cfg, creds, nil
}

func (n *node) run(parent context.Context) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	if d := n.faults.ExitAfter; d > 0 {
		t := time.AfterFunc(time.Until(n.state.started.Add(d)), func() { cancel(errExitAfter) })
		defer t.Stop()
	}
	conn, err := n.takeLocks(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	lost, stopHolding := n.startHolding()
	if err := n.migrate(ctx, conn); err != nil {
		stopHolding()
		n.releaseLocks(parent, n.locks)
		return n.stopEarly(ctx, "failed to migrate database", err)
	}
	if err := n.unlockKeyRing(ctx, conn); err != nil {
		stopHolding()
		n.releaseLocks(parent, n.locks)
		return n.stopEarly(ctx, "error authenticating keystore", err) // the node's words, then exit 1
	}
	stopChain := n.startChain()
	defer stopChain()
	var srv *http.Server
	var served <-chan error // nil while nothing serves: never ready
	if n.neverReady {
		err = n.neverListen()
	} else {
		srv, served, err = n.listen()
	}
	if err != nil {
		stopHolding()
		n.releaseLocks(parent, n.locks)
		return n.fail("cannot listen", err)
	}
	switch {
	case n.neverReady:
		n.log.Warn(evNeverReady, zap.String("release", envNeverReady), zap.String("detail", "the HTTP port stays closed"))
	case n.faults.Unready:
		n.log.Warn(evNeverReady, zap.String("file", faultUnready))
	default:
		n.state.ready.Store(true)
		n.log.Info(evReady)
	}
	select {
	case err := <-lost:
		n.log.Error(evLeaseLost, zap.Error(err), zap.String("clientID", n.id.String()),
			zap.String("detail", "another node has taken the lease, exiting immediately"))
		return exitWith(1, err)
	case err := <-served:
		return n.fail("HTTP server failed", err)
	case <-ctx.Done():
	}
	if errors.Is(context.Cause(ctx), errExitAfter) {
		n.log.Error(evExitAfter, zap.String("file", faultExitAfter), zap.Duration("after", n.faults.ExitAfter))
		return exitWith(1, errExitAfter)
	}
	n.stop(parent, srv, stopHolding)
	return nil
}

// migrate records this release's migration, on the node's own connection, as the real node migrates once it holds
// its lease and before it opens the key ring.
func (n *node) migrate(ctx context.Context, conn *pgx.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, defaultQueryTimeout)
	defer cancel()
	return migrate(qctx, conn, n.migration)
}

// unlockKeyRing opens (or first seals) the key ring with the keystore password, on the node's own connection.
func (n *node) unlockKeyRing(ctx context.Context, conn *pgx.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, defaultQueryTimeout)
	defer cancel()
	sealed, err := unlockKeyRing(qctx, conn, n.cfg.Keystore)
	if err == nil && sealed {
		n.log.Info("key ring sealed with the keystore password")
	}
	return err
}

// startChain runs the modelled chain client (standin-dial-chain) until the returned func is called, which waits
// for it to close its connections. Without the file it does nothing: the chain counts as connected.
func (n *node) startChain() (stop func()) {
	if !n.faults.DialChain {
		return func() {}
	}
	n.state.chainModelled.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	c := &chainClient{urls: n.cfg.ChainWSURLs, state: n.state, log: n.log}
	done := make(chan struct{})
	go func() { c.run(ctx); close(done) }()
	return func() {
		cancel()
		<-done
	}
}

// takeLocks connects (the node's own connection, returned open) and blocks until every lock is held.
func (n *node) takeLocks(ctx context.Context) (*pgx.Conn, error) {
	dial, err := newDialer(n.cfg.DatabaseURL, defaultQueryTimeout)
	if err != nil {
		return nil, n.fail("database URL rejected by the driver", err)
	}
	conn, err := dial(ctx)
	if err != nil {
		return nil, n.stopEarly(ctx, "database connection failed", err)
	}
	if err := n.buildLocks(ctx, conn); err != nil {
		closeConn(conn)
		return nil, n.fail("database set-up failed", err)
	}
	for i, l := range n.locks {
		if err := l.acquire(ctx); err != nil {
			n.releaseLocks(ctx, n.locks[:i])
			closeConn(conn)
			return nil, n.stopEarly(ctx, "cannot take the database lock", err)
		}
	}
	if len(n.locks) > 0 {
		n.state.lockHeld.Store(true)
		n.log.Info(evLeaseAcq, zap.String("clientID", n.id.String()), zap.String("lockingMode", string(n.cfg.LockMode)))
	}
	return conn, nil
}

// startHolding runs every lock's hold loop; the returned func stops them and waits until they have returned.
func (n *node) startHolding() (<-chan error, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	lost := make(chan error, len(n.locks))
	var holding sync.WaitGroup
	for _, l := range n.locks {
		holding.Go(func() { l.hold(ctx, lost) })
	}
	return lost, func() {
		cancel()
		holding.Wait()
	}
}

// stop is the clean stop of a signal: HTTP first, then the locks, within stopBudget.
func (n *node) stop(parent context.Context, srv *http.Server, stopHolding func()) {
	n.log.Info(evStopping)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), stopBudget)
	defer cancel()
	n.state.ready.Store(false)
	if srv != nil {
		if err := srv.Shutdown(ctx); err != nil {
			n.log.Warn("HTTP shutdown incomplete", zap.Error(err))
		}
	}
	stopHolding()
	n.releaseLocks(ctx, n.locks)
	n.log.Info(evStopped)
}

// buildLocks sets up the locks of the configured mode; the first one records the holding intervals.
func (n *node) buildLocks(ctx context.Context, conn querier) error {
	rec := &intervals{host: n.host, clientID: n.id}
	lease := func(record *intervals) (dbLock, error) {
		ms := n.cfg.LeaseDuration.Milliseconds()
		dial, err := newDialer(n.cfg.DatabaseURL, defaultQueryTimeout,
			"SET SESSION lock_timeout = "+strconv.FormatInt(ms, 10),
			"SET SESSION idle_in_transaction_session_timeout = "+strconv.FormatInt(ms, 10))
		return &leaseLock{id: n.id, duration: n.cfg.LeaseDuration, refresh: n.cfg.LeaseRefresh, dial: dial,
			record: record, log: n.log, state: n.state}, err
	}
	advisory := func(record *intervals) (dbLock, error) {
		dial, err := newDialer(n.cfg.DatabaseURL, defaultQueryTimeout)
		return &advisoryLock{id: n.cfg.AdvisoryID, check: n.cfg.AdvisoryCheck, dial: dial, record: record,
			log: n.log, state: n.state}, err
	}
	var makers []func(*intervals) (dbLock, error)
	switch n.cfg.LockMode {
	case lockLease:
		makers = append(makers, lease)
	case lockAdvisory:
		makers = append(makers, advisory)
		// The lease path creates the intervals table in its first transaction; alone, the advisory lock needs it.
		qctx, cancel := context.WithTimeout(ctx, defaultQueryTimeout)
		defer cancel()
		if _, err := conn.Exec(qctx, intervalsDDL); err != nil && !isSetupRace(err) {
			return fmt.Errorf("create standin_lease_intervals: %w", err)
		}
	case lockDual:
		makers = append(makers, lease, advisory) // lease first, as 1.x does
	}
	for i, mk := range makers {
		r := rec
		if i > 0 {
			r = nil
		}
		l, err := mk(r)
		if err != nil {
			return err
		}
		n.locks = append(n.locks, l)
	}
	return nil
}

// listen opens the HTTP port, only once the lock is held.
func (n *node) listen() (*http.Server, <-chan error, error) {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(n.cfg.HTTPPort))
	if err != nil {
		return nil, nil, err
	}
	u, err := n.seedUser()
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	srv := &http.Server{Handler: newServer(n.state, n.cfg, n.creds, u, n.log).handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			served <- err
		}
	}()
	n.log.Info(evListening, zap.Int("port", n.cfg.HTTPPort))
	return srv, served, nil
}

// neverListen is listen for a release that never becomes ready: the API user is created as the node creates it
// before it starts its services, and no port opens.
func (n *node) neverListen() error {
	_, err := n.seedUser()
	return err
}

// seedUser creates the API user from .api when the users table is empty, as the node does.
func (n *node) seedUser() (*users, error) {
	dial, err := newDialer(n.cfg.DatabaseURL, defaultQueryTimeout)
	if err != nil {
		return nil, err
	}
	u := &users{dial: dial}
	ctx, cancel := context.WithTimeout(context.Background(), defaultQueryTimeout)
	created, err := u.seed(ctx, n.creds)
	cancel()
	if err != nil {
		return nil, err
	}
	if !created {
		n.log.Info("Defaulted to assume single DB API User") // .api is ignored once the user exists, as in the node
	}
	return u, nil
}

// releaseLocks releases in reverse order of acquisition, within its own budget.
func (n *node) releaseLocks(parent context.Context, locks []dbLock) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), stopBudget)
	defer cancel()
	for i := len(locks) - 1; i >= 0; i-- {
		if err := locks[i].release(ctx); err != nil {
			n.log.Warn("lock release failed", zap.Error(err))
		}
	}
	n.state.lockHeld.Store(false)
}

// stopEarly ends a run stopped before it serves (taking the lock, opening the key ring): a signal is a clean
// stop, an injected exit or an error (logged as msg) is a failure.
func (n *node) stopEarly(ctx context.Context, msg string, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), errExitAfter):
		n.log.Error(evExitAfter, zap.String("file", faultExitAfter), zap.Duration("after", n.faults.ExitAfter))
		return exitWith(1, errExitAfter)
	case ctx.Err() != nil:
		n.log.Info(evStopping)
		n.log.Info(evStopped)
		return nil
	}
	return n.fail(msg, err)
}

func (n *node) fail(msg string, err error) error {
	n.log.Error(msg, zap.Error(err))
	return exitWith(1, err)
}
