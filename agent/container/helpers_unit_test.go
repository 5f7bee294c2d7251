package container

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
)

// testImage is a pinned image for unit tests.
var testImage = image.Image{Repository: "smartcontract/chainlink", Tag: "2.10.0",
	Digest: "sha256:" + fmt.Sprintf("%064x", 0xc1a9e47)}

var testIdentity = identity.Identity{InstanceID: "i-0123456789abcdef0", Region: "eu-west-1", AZ: "eu-west-1a"}

// unitConfig is a configuration whose directories are the test's and whose node user is this process's
// (so the files can be owned by it without root).
func unitConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Container.DataDir = filepath.Join(dir, "data")
	cfg.Container.SecretsDir = filepath.Join(dir, "secrets")
	cfg.Container.User = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	cfg.Container.StopTimeout = 3 * time.Second
	return &cfg
}

// tomlRendered is a 2.x rendering with recognisable fake secrets.
func tomlRendered() *nodefiles.Rendered {
	return &nodefiles.Rendered{
		Format: nodefiles.FormatTOML,
		Files: []fsutil.File{
			{Name: nodefiles.ConfigFile, Data: []byte("RootDir = '/chainlink'\n")},
			{Name: nodefiles.SecretsFile, Data: []byte("[Password]\nKeystore = 'fake-keystore-password-0123'\n")},
			{Name: nodefiles.PasswordFile, Data: []byte("fake-keystore-password-0123")},
			{Name: nodefiles.APIFile, Data: []byte("ops@example.com\nfake-api-password-0123456\n")},
		},
		Cmd: []string{"node", "-config", "/run/chainlink/config.toml", "-secrets", "/run/chainlink/secrets.toml",
			"start", "-p", "/run/chainlink/.password", "-a", "/run/chainlink/.api"},
	}
}

// nodeFiles lists the node files present in dir.
func nodeFiles(t testing.TB, dir string) []string {
	t.Helper()
	var present []string
	for _, name := range nodefiles.AllFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			present = append(present, name)
		}
	}
	return present
}
