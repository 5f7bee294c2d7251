package realnode

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Bounds of the node's own steps, generous for a loaded 2-core machine (measured: ready 3 s after a first start
// on an empty database, 1.2–1.5 s after a restart; a waiting node ready 1.2 s after a clean stop of the holder).
const (
	readyBound    = 90 * time.Second
	leaseLogBound = 60 * time.Second
	stopBound     = 15 * time.Second // docker stop -t 10 plus the engine's own time
)

// TestValidate runs the node's own `validate` on what the agent renders. The agent's checks are a subset of the
// node's: the cases that the agent lets through but the node refuses are pinned here so the gap is visible.
func TestValidate(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)

	for _, tc := range []struct {
		name     string
		opts     []realnode.SetupOption
		wantOK   bool
		wantText string // in the node's output
		// lowercase: an address the agent renders, written in lower case before the node sees it.
		lowercase string
	}{
		{name: "RenderedFilesAccepted", wantOK: true, wantText: "Valid configuration."},
		{
			name:     "UnknownKeyInExtraTOMLRefused",
			opts:     []realnode.SetupOption{realnode.ExtraConfig("  extra_toml: |\n    [Log]\n    Colour = true\n")},
			wantText: "Colour = true\n  | ~~~~~~ missing field",
		},
		{
			// The agent refuses it at load (TestAgentRefusesWhatTheNodeRefuses); the node, given it anyway, too.
			name: "LinkContractWithoutChecksumRefused",
			opts: []realnode.SetupOption{realnode.ExtraConfig(
				"  chain_id: 11155111\n  link_contract: \"" + sepoliaLink + "\"\n")},
			lowercase: sepoliaLink,
			wantText:  "is not a valid EIP55 formatted address",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := realnode.Render(t, pg, tc.opts...)
			if tc.lowercase != "" {
				path := filepath.Join(s.Files.SecretsDir, "config.toml")
				raw, err := os.ReadFile(path)
				if err != nil || !strings.Contains(string(raw), tc.lowercase) {
					t.Fatalf("config.toml lacks %s: %v", tc.lowercase, err)
				}
				if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(raw), tc.lowercase, strings.ToLower(tc.lowercase))), 0o400); err != nil {
					t.Fatal(err)
				}
			}
			out, err := realnode.Validate(t, image, realnode.Files{SecretsDir: s.Files.SecretsDir, ReadOnly: s.Files.ReadOnly})
			if (err == nil) != tc.wantOK {
				t.Fatalf("validate: err = %v, want ok = %t; output:\n%s", err, tc.wantOK, out)
			}
			t.Logf("validate output (tail): %s", tail(out, 3))
			if !strings.Contains(out, tc.wantText) {
				t.Errorf("validate output lacks %q:\n%s", tc.wantText, out)
			}
			for _, secret := range s.Secrets.Values() {
				if strings.Contains(out, secret) {
					t.Errorf("validate printed a secret value")
				}
			}
		})
	}
}

// sepoliaLink is Sepolia's LINK contract with its EIP-55 checksum.
const sepoliaLink = "0x779877A7B0D9E8603169DdbD7836e478b4624789"

// TestAgentRefusesWhatTheNodeRefuses: what TestValidate shows the node refusing, the agent refuses at load (exit 2),
// naming the field and the checksummed form.
func TestAgentRefusesWhatTheNodeRefuses(t *testing.T) {
	t.Parallel()
	_, err := config.Parse([]byte("node: {ws_url: ws://x, chain_id: 11155111, link_contract: \"" + strings.ToLower(sepoliaLink) + "\"}\n"))
	if err == nil || !strings.Contains(err.Error(), "node.link_contract") || !strings.Contains(err.Error(), sepoliaLink) {
		t.Fatalf("config.Parse of a lower-case link_contract: %v; want a refusal naming the field and %s", err, sepoliaLink)
	}
}

// TestNodeStartsAndRestarts starts the node on the agent's files with no chain client, then stops it the agent's
// way and starts it again on the same data: both starts answer /readyz 200, the stop exits 0.
func TestNodeStartsAndRestarts(t *testing.T) {
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	s := realnode.Render(t, pg)

	first := realnode.Start(t, image, s.Files, s.Cmd)
	t.Logf("first start (empty database, migrations): start → /readyz 200 in %s", first.WaitReady(readyBound).Round(time.Millisecond))
	if took := first.Stop(); took > stopBound {
		t.Errorf("docker stop took %s, want at most %s", took, stopBound)
	} else {
		t.Logf("docker stop: %s", took.Round(time.Millisecond))
	}
	if code := first.ExitCode(); code != 0 {
		t.Errorf("the node exited %d on SIGTERM, want 0", code)
	}

	again := realnode.Start(t, image, s.Files, s.Cmd)
	t.Logf("restart (same data): start → /readyz 200 in %s", again.WaitReady(readyBound).Round(time.Millisecond))
	if code, err := again.Get("/health"); code != 200 && code != 207 {
		t.Errorf("/health = %d (%v), want 200 or 207 (207: some check failing, e.g. the closed chain port)", code, err)
	}
}

// TestSecondNodeWaitsForLease is the node's own lock (the old model's only one): a second node on the same
// database, with its own data directory as on another host, blocks before opening its HTTP port while the first
// runs, and becomes ready once the first stops cleanly (its stop releases the lease).
func TestSecondNodeWaitsForLease(t *testing.T) {
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	s := realnode.Render(t, pg)

	holder := realnode.Start(t, image, s.Files, s.Cmd)
	holder.WaitReady(readyBound)

	other := s.Files
	other.DataDir = realnode.DataDir(t)
	waiter := realnode.Start(t, image, other, s.Cmd)
	// The node logs its wait at tries 0, 1, 2, 4, 8 …, one try per LeaseRefreshInterval (1 s): try 4 means it has
	// been held off for about four seconds.
	line := waiter.WaitLog(leaseLogBound, "of a lease wait at try 4", func(l string) bool {
		return strings.Contains(l, "Another application is currently holding the database lease") &&
			strings.Contains(l, `"tryCount":4`)
	})
	t.Logf("waiting node: %s", line)
	if code, err := waiter.Get("/readyz"); err == nil {
		t.Errorf("the waiting node answered /readyz %d; want no HTTP server while the lease is held", code)
	}
	if !holder.Ready() {
		t.Fatal("the holder stopped answering /readyz 200 while the other node waited")
	}

	stopped := time.Now()
	holder.Stop()
	waiter.WaitReady(readyBound)
	t.Logf("holder stopped (exit %d): the waiting node ready %s after the stop returned",
		holder.ExitCode(), time.Since(stopped).Round(time.Millisecond))
}

// appNameRE is the application_name the node gives its database sessions (core/static.SetConsumerName: "Chainlink",
// the version, "|App|" and the application's id; at most 63 bytes).
var appNameRE = regexp.MustCompile(`^Chainlink ` + regexp.QuoteMeta(realnode.Version) + ` \|App\|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// TestSessionApplicationName pins how the node's sessions look in pg_stat_activity: every one is named
// "Chainlink <version> |App|<uuid>" with one uuid per node, so the application_name of the agent's database URL
// (chainlink/<instance-id>) never reaches the server.
func TestSessionApplicationName(t *testing.T) {
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	s := realnode.Render(t, pg)

	node := realnode.Start(t, image, s.Files, s.Cmd)
	node.WaitReady(readyBound)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatalf("connect as superuser: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND usename = $2`,
		s.Config.Node.Database.Name, s.Config.Node.Database.User)
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	if len(names) == 0 {
		t.Fatal("the ready node has no session in pg_stat_activity")
	}
	t.Logf("%d node sessions, e.g. %q", len(names), names[0])
	ids := map[string]bool{}
	for _, name := range names {
		m := appNameRE.FindStringSubmatch(name)
		if m == nil {
			t.Errorf("session application_name %q, want %s", name, appNameRE)
			continue
		}
		ids[m[1]] = true
	}
	if len(ids) > 1 {
		t.Errorf("one node's sessions carry %d application ids, want 1: %v", len(ids), ids)
	}

	// The takeover proof sees them: counted from the node's database as an agent's session would.
	cfg, err := pgx.ParseConfig(pg.URL(s.Config.Node.Database.Name))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = leader.AgentAppNamePrefix + "-takeover/i-test"
	agentConn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to the node's database: %v", err)
	}
	defer agentConn.Close(context.WithoutCancel(ctx))
	if n, err := leader.NodeSessions(ctx, agentConn); err != nil || n != len(names) {
		t.Errorf("leader.NodeSessions = %d, %v; want the node's %d sessions (42eff39 counted none)", n, err, len(names))
	}
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
