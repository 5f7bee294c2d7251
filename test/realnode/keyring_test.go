package realnode

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/keyring"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// refusedExitBound bounds a node that cannot open its key ring: it exits 1 about 1.2 s after its start.
const refusedExitBound = 60 * time.Second

// TestKeyringCheckAgreesWithTheRealNode: keyring.Check reads the key ring the real node made, at the node's own
// scrypt parameters, and decides as the node does. Before the node's first start its fresh database is Empty; once
// the node has run with its keystore password, that password Opens the key ring and another DoesNotOpen; and the
// node itself, started with that other password, refuses to start, leaving the key ring as it was, and starts again
// with its own.
func TestKeyringCheckAgreesWithTheRealNode(t *testing.T) {
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	s := realnode.Render(t, pg)
	held := s.Secrets.KeystorePassword.Reveal()
	other := "keystore-Other-P@ssword-" + testenv.RandomHex(8) // passes the node's strength rule too

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := nodeSession(t, ctx, pg, s)
	checkAll := func(step string, want map[string]keyring.Verdict) {
		t.Helper()
		for _, password := range []string{held, other} {
			start := time.Now()
			got, err := keyring.Check(ctx, db, password)
			name := map[string]string{held: "the node's password", other: "another password"}[password]
			if err != nil || got != want[password] {
				t.Errorf("%s: Check(%s) = %s, %v; want %s", step, name, got, err, want[password])
				continue
			}
			t.Logf("%s: Check(%s) = %s in %s", step, name, got, time.Since(start).Round(time.Millisecond))
		}
	}

	checkAll("fresh database (not migrated)", map[string]keyring.Verdict{held: keyring.Empty, other: keyring.Empty})

	node := realnode.Start(t, image, s.Files, s.Cmd)
	node.WaitReady(readyBound) // its keys are made and saved before its HTTP server opens
	var n, r, p int
	if err := db.QueryRow(ctx, `SELECT (encrypted_keys->'kdfparams'->>'n')::int, (encrypted_keys->'kdfparams'->>'r')::int,
		(encrypted_keys->'kdfparams'->>'p')::int FROM `+keyring.Table).Scan(&n, &r, &p); err != nil {
		t.Fatalf("the node's key ring parameters: %v", err)
	}
	if n != keyring.DefaultN || r != keyring.DefaultR || p != keyring.DefaultP {
		t.Errorf("the node sealed with N=%d r=%d p=%d, want its defaults N=%d r=%d p=%d", n, r, p,
			keyring.DefaultN, keyring.DefaultR, keyring.DefaultP)
	}
	checkAll("after the node's first start", map[string]keyring.Verdict{held: keyring.Opens, other: keyring.DoesNotOpen})
	node.Stop() // the lease: a node with the other password would otherwise wait for it, not try the key ring

	refused := startWithKeystorePassword(t, image, s, other)
	testenv.WaitFor(t, refusedExitBound, "the node with another keystore password to exit", func() bool { return !refused.Running() })
	if code := refused.ExitCode(); code == 0 {
		t.Errorf("the node with another keystore password exited 0; want a refusal")
	}
	const nodeRefusal = "could not decrypt key with given password"
	if logs := refused.Logs(); !strings.Contains(logs, nodeRefusal) {
		t.Errorf("the node with another keystore password did not say %q:\n%s", nodeRefusal, tail(logs, 20))
	} else {
		t.Logf("the node, given another password, exited %d: %s", refused.ExitCode(), lineWith(logs, nodeRefusal))
	}
	checkAll("after the refused start", map[string]keyring.Verdict{held: keyring.Opens, other: keyring.DoesNotOpen})

	// And the password Check said opens does: the node starts on it again.
	again := realnode.Start(t, image, s.Files, s.Cmd)
	t.Logf("the node, given its own password again: ready in %s", again.WaitReady(readyBound).Round(time.Millisecond))
}

// nodeSession connects to the node's database as the node's own role, as the agent's check would.
func nodeSession(t *testing.T, ctx context.Context, pg *testenv.Postgres, s *realnode.Setup) *pgx.Conn {
	t.Helper()
	d := s.Config.Node.Database
	conn, err := pgx.Connect(ctx, pg.RoleURL(d.Name, d.User, s.Secrets.DatabasePassword.Reveal()))
	if err != nil {
		t.Fatalf("connect to the node's database as %s: %v", d.User, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// startWithKeystorePassword starts the node of s on its database with its files rendered again with another
// keystore password, as after a rotation handed on blindly.
func startWithKeystorePassword(t *testing.T, image string, s *realnode.Setup, password string) *realnode.Node {
	t.Helper()
	rotated := s.Secrets
	rotated.KeystorePassword = secrets.NewSecret(password, "rotated")
	r, err := nodefiles.Render(s.Config, s.Identity, rotated, nodefiles.FormatTOML)
	if err != nil {
		t.Fatalf("render with another keystore password: %v", err)
	}
	files := s.Files
	files.SecretsDir = filepath.Join(t.TempDir(), "node-secrets-rotated")
	if err := nodefiles.Write(files.SecretsDir, r, nodefiles.Owner(s.Config.Container)); err != nil {
		t.Fatalf("write node files: %v", err)
	}
	return realnode.Start(t, image, files, r.Cmd)
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
