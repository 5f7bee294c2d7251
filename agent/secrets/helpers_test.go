package secrets

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/cl-agent/cl-agent/agent/config"
)

// Passwords the node accepts, with characters that break naive URL building and quoting.
const (
	testDBPassword  = `p@ss:w/rd?#%&+= 'x"y\z`
	testAPIPassword = "api-Password-0123456789"
	testKeystore    = "keystore-Password-0123456789"
)

func testSecrets() NodeSecrets {
	return NodeSecrets{
		DatabasePassword: NewSecret(testDBPassword, "v1"),
		APIPassword:      NewSecret(testAPIPassword, "v1"),
		KeystorePassword: NewSecret(testKeystore, "v1"),
	}
}

// testConfig is a valid configuration with the default secret ids (keystore_password is "WalletSecret").
func testConfig(t testing.TB) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`
node:
  network: Ethereum-Sepolia
  ws_url: wss://sepolia.example.com/ws
  http_url: https://sepolia.example.com
  api_email: ops@example.com
  database: {host: db.internal, name: chain link, user: "cl@user", sslmode: verify-full}
`))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
