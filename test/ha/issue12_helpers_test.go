package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Helpers of the issue-12 scenarios (rotation of the database password, an active that cannot start its node).

// editConfig replaces old, which must occur exactly once, with new in the host's agent configuration. The agent
// reads it at start: call it before starting the agent.
func (h *host) editConfig(tb testing.TB, old, new string) {
	tb.Helper()
	b, err := os.ReadFile(h.cfgPath)
	if err != nil {
		tb.Fatal(err)
	}
	if n := strings.Count(string(b), old); n != 1 {
		tb.Fatalf("%s: %q occurs %d times in the configuration; want once", h.name, old, n)
	}
	if err := os.WriteFile(h.cfgPath, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// secretsManager is a client of moto's Secrets Manager, with the credentials moto accepts.
func (c *cluster) secretsManager() *secretsmanager.Client {
	return secretsmanager.NewFromConfig(aws.Config{
		Region: "us-east-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
	}, func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(c.moto.URL) })
}

// rotateDBPassword does what RDS managed rotation does: ALTER ROLE on the server (from then on only the new
// password logs in; sessions already open stay), then the new value as a new version of the secret. It returns
// the time of each step. Neither the statement nor the value ever reaches an error or a log line.
func (c *cluster) rotateDBPassword(tb testing.TB) (altered, put time.Time) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdBound)
	defer cancel()
	next := "Db@:/?#%-" + testenv.RandomHex(10) // the same shape as the first one: every URL-breaking character, 29 bytes
	conn, err := pgx.Connect(ctx, c.pg.URL("postgres"))
	if err != nil {
		tb.Fatalf("connect as superuser to rotate the password (bound %s): %v", cmdBound, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	stmt := fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", pgx.Identifier{dbUser}.Sanitize(), strings.ReplaceAll(next, "'", "''"))
	if _, err := conn.Exec(ctx, stmt); err != nil {
		tb.Fatalf("ALTER ROLE %s PASSWORD …: %s", dbUser, pgErrorCode(err))
	}
	altered = time.Now()
	value, err := json.Marshal(map[string]string{"username": dbUser, "password": next})
	if err != nil {
		tb.Fatal(err)
	}
	id := c.hosts[0].secretIDs[0]
	out, err := c.secretsManager().PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(id), SecretString: aws.String(string(value))})
	if err != nil {
		tb.Fatalf("PutSecretValue %s in moto: %v", id, err)
	}
	put = time.Now()
	c.dbPassword = next
	tb.Logf("database password rotated: ALTER ROLE %s, then secret %s version %s", dbUser, id, aws.ToString(out.VersionId))
	return altered, put
}

// pgErrorCode names a failed statement's error without its text (which could quote the statement).
func pgErrorCode(err error) string {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return "SQLSTATE " + pe.SQLState()
	}
	return fmt.Sprintf("%T", err)
}

// sessionsSince counts the database sessions named app that were opened after t: a session opened after the
// ALTER ROLE proves a login with the new password.
func (c *cluster) sessionsSince(app string, t time.Time) (int, error) {
	var n int
	err := c.superQuery(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND backend_start > $2`,
			app, t).Scan(&n)
	})
	return n, err
}

// terminateTakeoverSessions ends every agent's takeover connection (proof of the previous node, the health
// reports): their next use must log in again, with the password the agent holds now.
func (c *cluster) terminateTakeoverSessions(tb testing.TB) int {
	tb.Helper()
	var n int
	if err := c.superQuery(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'cl-agent-takeover/%'`).Scan(&n)
	}); err != nil {
		tb.Fatal(err)
	}
	return n
}

// reportedSince reports whether the host's agent wrote its health report (table cl_agent_peers) after t.
func (c *cluster) reportedSince(h *host, t time.Time) (bool, error) {
	var ok bool
	err := c.superQuery(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT coalesce(bool_or(updated_at > $2), false) FROM cl_agent_peers WHERE instance_id = $1`,
			h.id.InstanceID, t).Scan(&ok)
	})
	return ok, err
}

// superQuery runs fn as the superuser on the node's database, within statusBound.
func (c *cluster) superQuery(fn func(ctx context.Context, conn *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), statusBound)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.pg.URL(c.db))
	if err != nil {
		return fmt.Errorf("connect as superuser (bound %s): %w", statusBound, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(ctx, conn)
}

// logOffset is the current size of the host's agent log: what is written later starts there.
func (h *host) logOffset() int64 {
	fi, err := os.Stat(h.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince is what the host's agent logged from offset on.
func (h *host) logSince(offset int64) string {
	f, err := os.Open(h.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// readySampler polls a node's /readyz every readyPoll and adds up the time it did not answer 200: from each
// sample that was not 200 to the next sample.
type readySampler struct {
	stopc chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	down     time.Duration
	outages  int // runs of consecutive samples that were not 200
	samples  int
	lastDown time.Time
}

func sampleReadyz(port int) *readySampler {
	s := &readySampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(readyPoll)
		defer tick.Stop()
		prevDown, prevAt := false, time.Time{}
		for {
			ok := readyz(port) == http.StatusOK
			now := time.Now()
			s.mu.Lock()
			if prevDown {
				s.down += now.Sub(prevAt)
			}
			if !ok && !prevDown {
				s.outages++
			}
			if !ok {
				s.lastDown = now
			}
			s.samples++
			s.mu.Unlock()
			prevDown, prevAt = !ok, now
			select {
			case <-s.stopc:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the time not ready and the number of outages.
func (s *readySampler) stop() (time.Duration, int) {
	select {
	case <-s.stopc:
	default:
		close(s.stopc)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down, s.outages
}

// ---- an active that cannot start its node ----

// foreignContainer creates, without starting it, a container named name that is not labelled as the agent's:
// the agent must leave it alone (it could be an operator's), so a node of that name cannot be created. The
// returned function removes it; it also runs at the end of the test, before the cluster's clean-up fences.
func (c *cluster) foreignContainer(tb testing.TB, name string) (remove func()) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdBound)
	defer cancel()
	if _, err := docker(ctx, "create", "--name", name, "--label", "owner=someone-else", c.repo+":"+c.tag); err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	remove = func() {
		once.Do(func() {
			if _, err := docker(context.Background(), "rm", "--force", name); err != nil {
				tb.Errorf("remove the foreign container %s: %v", name, err)
			}
		})
	}
	tb.Cleanup(remove)
	return remove
}

// fillSecretsTmpfs fills the host's secrets tmpfs with a file of its own, so that the node's files cannot be
// written (ENOSPC), as a tmpfs filled by something else on the host would. The returned function frees it; it
// also runs at the end of the test.
func (h *host) fillSecretsTmpfs(tb testing.TB) (free func()) {
	tb.Helper()
	path := filepath.Join(h.dir, "secrets", "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		tb.Fatalf("filling %s: %v; want ENOSPC", path, err)
	}
	var once sync.Once
	free = func() {
		once.Do(func() {
			if err := os.Remove(path); err != nil {
				tb.Errorf("free the secrets tmpfs: %v", err)
			}
		})
	}
	tb.Cleanup(free)
	return free
}

// statusLog keeps the distinct statuses an agent showed while the test watched it.
type statusLog struct{ seen []string }

func (l *statusLog) add(s control.Status) {
	line := fmt.Sprintf("%s lock=%t node=%s: %s (last_error: %s)", s.Role, s.Lock.Held, s.Node.State, s.Message, s.LastError)
	if n := len(l.seen); n == 0 || l.seen[n-1] != line {
		l.seen = append(l.seen, line)
	}
}

func (l *statusLog) contains(s string) bool {
	for _, line := range l.seen {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (l *statusLog) String() string { return "  " + strings.Join(l.seen, "\n  ") }
