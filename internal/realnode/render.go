package realnode

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// A chain client address nothing listens on (port 1 of the node container's own loopback): the node starts
// without a chain, its chain checks failing.
const (
	ClosedChainWS   = "ws://127.0.0.1:1"
	ClosedChainHTTP = "http://127.0.0.1:1"
)

// Setup is a node's files as the agent renders them (nodefiles.Render, TOML generation) for a fresh database in a
// test PostgreSQL, written the way the agent writes them (nodefiles.Write: 0400, owned by the node).
type Setup struct {
	Config   *config.Config
	Identity identity.Identity
	// Secrets are the values rendered into the files (the database password also owns the database's role).
	Secrets secrets.NodeSecrets
	// Files are the rendered secrets directory, the database CA, and an empty data directory. Start more nodes on
	// the same database with Files.DataDir replaced by a fresh DataDir(t), as a second host would.
	Files Files
	// Cmd is the node's command line after the entrypoint (`node -config … -secrets … start -p … -a …`).
	Cmd []string
}

// SetupOption changes the agent configuration Render uses.
type SetupOption func(*setupOptions)

type setupOptions struct {
	wsURL, httpURL string
	extraYAML      string
}

// ChainURLs points the node at a chain client (default: ClosedChainWS and ClosedChainHTTP).
func ChainURLs(ws, http string) SetupOption {
	return func(o *setupOptions) { o.wsURL, o.httpURL = ws, http }
}

// ExtraConfig adds lines to the node: section of the agent's YAML configuration (indented by two spaces), e.g.
// "  extra_toml: |\n    [Log]\n    Level = 'debug'\n".
func ExtraConfig(nodeYAML string) SetupOption {
	return func(o *setupOptions) { o.extraYAML = nodeYAML }
}

// Render creates a database with its own role in pg and renders the node's files for it with the agent's own
// renderer: the node reaches pg at its docker bridge address with sslmode=verify-full against pg's CA, which is
// mounted at its host path as agent/container.Spec mounts node.database.sslrootcert. The passwords are random and
// hold URL-special characters, so the real node also checks the agent's percent-encoding.
func Render(t testing.TB, pg *testenv.Postgres, opts ...SetupOption) *Setup {
	t.Helper()
	o := setupOptions{wsURL: ClosedChainWS, httpURL: ClosedChainHTTP}
	for _, opt := range opts {
		opt(&o)
	}
	suffix := testenv.RandomHex(6)
	dbName, dbUser := "chainlink_"+suffix, "node_"+suffix
	nodeSecrets := secrets.NodeSecrets{
		DatabasePassword: secrets.NewSecret("db:p@ss/w?rd#"+testenv.RandomHex(8), "test"),
		APIPassword:      secrets.NewSecret("api-P@ssword-"+testenv.RandomHex(8), "test"),
		KeystorePassword: secrets.NewSecret("keystore-P@ssword-"+testenv.RandomHex(8), "test"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.CreateDatabase(ctx, dbName, dbUser, nodeSecrets.DatabasePassword.Reveal()); err != nil {
		t.Fatalf("realnode: %v", err)
	}

	cfg, err := config.Parse([]byte(fmt.Sprintf(`
instance: {id: i-0realnode%s, region: us-east-1}
node:
  format: toml
  ws_url: %q
  http_url: %q
  api_email: ops@example.com
  database: {host: %q, port: %d, name: %q, user: %q, sslmode: verify-full, sslrootcert: %q}
%s`, suffix, o.wsURL, o.httpURL, pg.BridgeHost, pg.Port, dbName, dbUser, pg.CAFile, o.extraYAML)))
	if err != nil {
		t.Fatalf("realnode: agent config: %v", err)
	}
	id := identity.Identity{InstanceID: cfg.Instance.ID, Region: cfg.Instance.Region}
	r, err := nodefiles.Render(cfg, id, nodeSecrets, nodefiles.FormatTOML)
	if err != nil {
		t.Fatalf("realnode: render: %v", err)
	}
	cmd := r.Cmd
	secretsDir := filepath.Join(t.TempDir(), "node-secrets")
	if err := nodefiles.Write(secretsDir, r, nodefiles.Owner(cfg.Container)); err != nil {
		t.Fatalf("realnode: write node files: %v", err)
	}
	return &Setup{
		Config:   cfg,
		Identity: id,
		Secrets:  nodeSecrets,
		Files:    Files{SecretsDir: secretsDir, DataDir: DataDir(t), ReadOnly: []string{pg.CAFile}},
		Cmd:      cmd,
	}
}
