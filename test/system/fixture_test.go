package system

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cl-agent/cl-agent/internal/chainsim"
	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// prefix names every Docker object, database, user and secret these tests create.
const prefix = "clagent-sys-"

// The node's image as the hosts see it: served by the registry on each host's own loopback.
const (
	innerRegistry = "127.0.0.1:5000"
	imageRepo     = innerRegistry + "/chainlink/chainlink"
	imageTag      = "2.10.0"
	// sepoliaChainID is node.network Ethereum-Sepolia's chain id, which the simulated chain client answers.
	sepoliaChainID = 11155111
)

// fx is what every test shares: the machine's services and the artifacts installed on each host.
var fx struct {
	dir         string
	rigImage    string // the systemd host image
	agentBin    string // cl-agent, built as `make build` does
	unitFile    string // packaging/systemd/cl-agent.service, as shipped
	registryBin string
	storage     string // the outer registry's storage, served read-only on every host
	gateway     string // the docker bridge's gateway: this machine as the hosts see it
	pg          *testenv.Postgres
	sm          *secretsmanager.Client
	motoURL     string // moto through the gateway
	chainURL    string // the chain simulator through the gateway (HTTP and WebSocket on one port)
	closers     []func() error
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		err := setUp(ctx)
		defer tearDown()
		if err != nil {
			fmt.Fprintln(os.Stderr, "system-test fixture:", err) // a missing service fails the run; it never skips
			return 1
		}
		return m.Run()
	}())
}

func setUp(ctx context.Context) (err error) {
	// Not /tmp (the hosts' docker directories are large) and traversable by the postgres user.
	if fx.dir, err = os.MkdirTemp("/var/tmp", prefix); err != nil {
		return err
	}
	if err := os.Chmod(fx.dir, 0o755); err != nil {
		return err
	}
	if err := testenv.EnsureDocker(ctx); err != nil {
		return err
	}
	if fx.rigImage, err = command(ctx, "bash", "../images/systemd/build.sh"); err != nil {
		return fmt.Errorf("systemd host image: %w", err)
	}
	fx.agentBin = filepath.Join(fx.dir, "cl-agent")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", fx.agentBin, "../../cmd/cl-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build cl-agent: %w\n%s", err, out)
	}
	if fx.unitFile, err = filepath.Abs("../../packaging/systemd/cl-agent.service"); err != nil {
		return err
	}
	if fx.registryBin, err = testenv.ToolPath(ctx, "registry"); err != nil {
		return err
	}
	if err := startServices(ctx); err != nil {
		return err
	}
	return pushNodeImage(ctx)
}

// startServices starts PostgreSQL and the chain simulator on the bridge's gateway, and moto relayed from it.
func startServices(ctx context.Context) (err error) {
	if fx.pg, err = testenv.StartPostgres(ctx, filepath.Join(fx.dir, "pg")); err != nil {
		return err
	}
	fx.closers = append(fx.closers, fx.pg.Stop)
	fx.gateway = fx.pg.BridgeHost
	moto, err := testenv.StartMoto(ctx, filepath.Join(fx.dir, "moto"))
	if err != nil {
		return err
	}
	fx.closers = append(fx.closers, moto.Stop)
	if fx.motoURL, err = relay(strings.TrimPrefix(moto.URL, "http://")); err != nil {
		return err
	}
	fx.sm = secretsmanager.New(secretsmanager.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	chain, err := chainsim.Start(chainsim.Options{Addr: fx.gateway + ":0", ChainID: sepoliaChainID, Head: 100})
	if err != nil {
		return err
	}
	fx.closers = append(fx.closers, chain.Close)
	fx.chainURL = chain.URL
	return nil
}

// relay makes a loopback service reachable from the hosts at the gateway; it returns the URL they use.
func relay(target string) (string, error) {
	f, err := testenv.Forward(fx.gateway, target)
	if err != nil {
		return "", err
	}
	fx.closers = append(fx.closers, f.Close)
	return "http://" + f.Addr, nil
}

// pushNodeImage puts the stand-in node under imageTag in a registry whose storage the hosts serve.
func pushNodeImage(ctx context.Context) error {
	reg, err := testenv.StartRegistry(ctx, filepath.Join(fx.dir, "registry"))
	if err != nil {
		return err
	}
	fx.closers = append(fx.closers, reg.Stop)
	fx.storage = reg.Storage
	ref := reg.Addr + "/chainlink/chainlink:" + imageTag
	if err := standin.BuildImage(ctx, ref); err != nil {
		return err
	}
	defer exec.Command("docker", "rmi", ref).Run()
	if _, err := command(ctx, "docker", "push", ref); err != nil {
		return err
	}
	return nil
}

func tearDown() {
	for i := len(fx.closers) - 1; i >= 0; i-- {
		_ = fx.closers[i]()
	}
	if fx.dir != "" {
		os.RemoveAll(fx.dir)
	}
}

// command runs a program and returns its trimmed stdout; the error carries stderr.
func command(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	return strings.TrimSpace(string(out)), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// secrets creates the node's three secrets for one test and returns their ids.
type nodeSecrets struct{ db, api, keystore string }

func createSecrets(t *testing.T, dbPassword string) nodeSecrets {
	t.Helper()
	name := prefix + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	s := nodeSecrets{db: name + "-db", api: name + "-api", keystore: name + "-keystore"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for id, value := range map[string]string{
		s.db: `{"password":"` + dbPassword + `"}`, s.api: "Api-Pass:word/?#%@0123", s.keystore: "Keystore-@:/?#%-0123456",
	} {
		if _, err := fx.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(id), SecretString: aws.String(value)}); err != nil {
			t.Fatalf("create secret %s: %v", id, err)
		}
	}
	return s
}
