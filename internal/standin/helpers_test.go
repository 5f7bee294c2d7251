package standin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// binary is the stand-in built once for this test binary by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cl-agent-standin-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), goBuildBound)
	binary, err = BuildBinary(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The passwords hold every character the shell approach broke on.
const (
	apiEmail    = "ops@example.com"
	apiPassword = "Api-Pass:word/?#%@0123"
	keystorePW  = "Keystore-@:/?#%-0123456"
	dbUser      = "cl_node" // the prefix of each database's own role
)

// database is a fresh database owned by a role of its own whose password needs percent-encoding. Its own: the
// tests run in parallel, and one role shared by their databases would get each new database's password.
type database struct {
	pg       *testenv.Postgres
	name     string
	user     string
	password string
}

func newDatabase(t *testing.T, pg *testenv.Postgres) database {
	t.Helper()
	suffix := testenv.RandomHex(4)
	db := database{pg: pg, name: "standin_" + suffix, user: dbUser + "_" + suffix, password: "Db@:/?#%-" + testenv.RandomHex(8)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pg.CreateDatabase(ctx, db.name, db.user, db.password); err != nil {
		t.Fatal(err)
	}
	return db
}

// url is the node's URL: user and password percent-encoded, the server verified with caFile.
func (d database) url(host, caFile string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(d.user, d.password),
		Host: net.JoinHostPort(host, strconv.Itoa(d.pg.Port)), Path: "/" + d.name,
		RawQuery: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {caFile}}.Encode()}
	return u.String()
}

// superuser connects to the database as postgres, for assertions.
func (d database) superuser(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.pg.URL(d.name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// interval is one row of standin_lease_intervals.
type interval struct {
	Host     string
	ClientID string
	Started  time.Time
	Ended    time.Time
}

func (d database) intervals(t *testing.T) []interval {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := d.superuser(t).Query(ctx, `SELECT host, client_id::text, started_at, ended_at FROM standin_lease_intervals ORDER BY started_at`)
	if err != nil {
		t.Fatal(err)
	}
	var out []interval
	for rows.Next() {
		var iv interval
		if err := rows.Scan(&iv.Host, &iv.ClientID, &iv.Started, &iv.Ended); err != nil {
			t.Fatal(err)
		}
		out = append(out, iv)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// assertNoOverlap fails when two holders' intervals overlap.
func assertNoOverlap(t *testing.T, ivs []interval) {
	t.Helper()
	for i, a := range ivs {
		if a.Ended.Before(a.Started) {
			t.Errorf("interval %+v ends before it starts", a)
		}
		for _, b := range ivs[i+1:] {
			if a.ClientID != b.ClientID && a.Started.Before(b.Ended) && b.Started.Before(a.Ended) {
				t.Errorf("holders overlap: %+v and %+v", a, b)
			}
		}
	}
}

// nodeFiles are one node's inputs: a secrets dir (config.toml, secrets.toml, .password, .api) and a data dir.
type nodeFiles struct {
	Secrets string
	Data    string
}

func (f nodeFiles) path(name string) string { return filepath.Join(f.Secrets, name) }

// tomlFiles writes 2.x inputs. rootDir is the data dir as the node sees it.
func tomlFiles(t *testing.T, dbURL, rootDir string, port int, lease, refresh time.Duration) nodeFiles {
	t.Helper()
	f := nodeFiles{Secrets: t.TempDir(), Data: t.TempDir()}
	if rootDir == "" {
		rootDir = f.Data
	}
	config := fmt.Sprintf("RootDir = %q\n[Log]\nJSONConsole = true\nLevel = 'info'\n[WebServer]\nHTTPPort = %d\n"+
		"[Database.Lock]\nEnabled = true\nLeaseDuration = '%s'\nLeaseRefreshInterval = '%s'\n"+
		"[Feature]\nLogPoller = true\n", rootDir, port, lease, refresh) // an unknown key, tolerated
	secrets := fmt.Sprintf("[Database]\nURL = %q\n[Password]\nKeystore = %q\n", dbURL, keystorePW)
	writeFiles(t, f.Secrets, map[string]string{"config.toml": config, "secrets.toml": secrets,
		".password": keystorePW + "\n", ".api": apiEmail + "\n" + apiPassword + "\n"})
	return f
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// args2x is the 2.x command line the agent uses, with the files under dir.
func args2x(dir string) []string {
	return []string{"node", "-config", dir + "/config.toml", "-secrets", dir + "/secrets.toml",
		"start", "-p", dir + "/.password", "-a", dir + "/.api"}
}

// node is a stand-in process; its stdout is kept for the test to wait on log lines.
type node struct {
	name string
	port int
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
	err  error // the exit status, once done is closed
}

func startNode(t *testing.T, name string, port int, env []string, args ...string) *node {
	t.Helper()
	n := &node{name: name, port: port, out: &logBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(binary, args...)
	n.cmd.Env = append([]string{"CL_STANDIN_HOST=" + name}, env...)
	n.cmd.Stdout = n.out
	n.cmd.Stderr = n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.err = n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() {
		_ = n.cmd.Process.Kill()
		<-n.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, n.out.String())
		}
	})
	return n
}

// waitLog waits for a log line whose msg is msg and returns it.
func (n *node) waitLog(t *testing.T, msg string, bound time.Duration) map[string]any {
	t.Helper()
	var line map[string]any
	testenv.WaitFor(t, bound, fmt.Sprintf("%s to log %q", n.name, msg), func() bool {
		line = n.out.find(msg)
		return line != nil
	})
	return line
}

// exitCode waits for the process to end and returns its exit code.
func (n *node) exitCode(t *testing.T, bound time.Duration) int {
	t.Helper()
	select {
	case <-n.done:
	case <-time.After(bound):
		t.Fatalf("%s still running after %s", n.name, bound)
	}
	var ee *exec.ExitError
	if errors.As(n.err, &ee) {
		return ee.ExitCode()
	}
	if n.err != nil {
		t.Fatalf("%s: %v", n.name, n.err)
	}
	return 0
}

func (n *node) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// logBuffer is a concurrency-safe sink for a node's output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) find(msg string) map[string]any {
	return findLog(b.String(), msg)
}

// findLog returns the first JSON log line of out whose msg is msg.
func findLog(out, msg string) map[string]any {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			return line
		}
	}
	return nil
}

// httpGet returns the status of GET url (0 when nothing answers).
func httpGet(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// portOpen tells whether something accepts connections on 127.0.0.1:port.
func portOpen(port int) bool {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
