package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

// presentEngine has every image; validateForStart asks the engine nothing else (the validator runs the node).
type presentEngine struct{ container.RunEngine }

func (presentEngine) ImagePresent(context.Context, string) (bool, error) { return true, nil }

const testDBPassword = "Db-Password-0123456789-@:/?#"

func testHost(t *testing.T, format string) *Host {
	t.Helper()
	c, err := config.Parse([]byte(`
node:
  format: ` + format + `
  network: Ethereum-Sepolia
  ws_url: wss://sepolia.example.com/ws
  http_url: https://sepolia.example.com
  api_email: ops@example.com
  database: {host: db.internal, name: chainlink, user: chainlink}
container:
  secrets_dir: ` + filepath.Join(t.TempDir(), "node") + `
`))
	if err != nil {
		t.Fatal(err)
	}
	return &Host{Config: c, Log: zap.NewNop(),
		Identity: identity.Identity{InstanceID: "i-0123456789abcdef0", Region: "us-east-1", AZ: "us-east-1a", PrivateIP: "10.0.1.10"}}
}

var (
	testImage   = image.Image{Repository: "smartcontract/chainlink", Tag: "2.19.0", Digest: "sha256:" + strings.Repeat("a", 64)}
	testSecrets = secrets.NodeSecrets{
		DatabasePassword: secrets.NewSecret(testDBPassword, "v1"),
		APIPassword:      secrets.NewSecret("Api-Password-0123456789", "v1"),
		KeystorePassword: secrets.NewSecret("Keystore-PASSword-012!@#", "v1"),
	}
)

// TestValidateForStart: before a host can become active, the node's validate judges the files a start would
// write: accepted is nil; the node's refusal ends the agent (exit 2, not restarted) with the node's reason; a run
// that reached no verdict is worth retrying (exit 1); 1.x has no validate and is not asked. The files are gone
// from secrets_dir afterwards whatever the outcome, and the validator saw the secrets as the node would.
func TestValidateForStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		format   string
		answer   error
		code     int
		askedFor bool
	}{
		{"AcceptedStarts", "toml", nil, exitcode.OK, true},
		{"RefusalEndsTheAgent", "toml", &nodefiles.RefusedError{Err: errors.New("Invalid configuration: WebServer.NoSuchKey: unknown")}, exitcode.Config, true},
		{"NoVerdictIsRetried", "toml", errors.Join(nodefiles.ErrNoVerdict, errors.New("engine: connection refused")), exitcode.Retry, true},
		{"EnvFormatHasNoValidate", "env", errors.New("must not be called"), exitcode.OK, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := testHost(t, tc.format)
			asked := false
			v := nodefiles.ValidatorFunc(func(_ context.Context, w nodefiles.Written) error {
				asked = true
				secretsTOML, err := os.ReadFile(filepath.Join(w.SecretsDir, nodefiles.SecretsFile))
				if err != nil || !strings.Contains(string(secretsTOML), "Keystore = ") {
					t.Errorf("the validator cannot read the secrets a start writes: %v", err)
				}
				return tc.answer
			})
			err := h.validateForStart(context.Background(), presentEngine{}, v, testImage, testSecrets)
			if got := exitcode.Of(err); got != tc.code || asked != tc.askedFor {
				t.Fatalf("exit code %d (%v), validator asked %v; want %d, asked %v", got, err, asked, tc.code, tc.askedFor)
			}
			if err != nil && strings.Contains(err.Error(), testDBPassword) {
				t.Errorf("the error quotes the database password: %v", err)
			}
			left, _ := os.ReadDir(h.Config.Container.SecretsDir)
			if len(left) != 0 {
				t.Errorf("secrets_dir holds %d entries after the validate; want none", len(left))
			}
		})
	}
}
