package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// The node's secrets in the Docker tests: each holds characters that break naive URL building and shell
// quoting, and each is long enough for the node's rules.
const (
	dockerAPIPassword = "Api-Pass:word/?#%@0123"
	dockerKeystore    = "Keystore-@:/?#%-0123456"
	dockerDBUser      = "cl_node"
	testPrefix        = "clagent-rt-" // Docker objects and directories the tests create
)

// nodeEnv is everything one supervised stand-in node needs: its database, image in a registry, directories,
// configuration, secrets and the real Docker engine.
type nodeEnv struct {
	cfg     *config.Config
	id      identity.Identity
	img     image.Image
	secrets secrets.NodeSecrets
	engine  *DockerEngine
	pg      *testenv.Postgres
	dbName  string
	logs    *syncBuffer // the agent's log output
	logger  *zap.Logger
}

type envOptions struct {
	moto *testenv.Moto // ship logs with awslogs to this moto; nil: json-file
	id   identity.Identity
}

// newNodeEnv prepares a node: a PostgreSQL database whose password needs percent-encoding, the stand-in
// image pushed to a loopback registry under several tags and resolved (and not present locally, so the
// supervisor pulls it by digest), a data dir and a tmpfs secrets dir, a free host port, the CA copied where the
// node's uid can read it, and a configuration parsed from YAML as the daemon would.
func newNodeEnv(t testing.TB, ctx context.Context, o envOptions) *nodeEnv {
	t.Helper()
	testenv.DockerT(t)
	pg := testenv.PostgresT(t)
	reg := testenv.RegistryT(t)
	e := &nodeEnv{pg: pg, id: o.id, dbName: "cl_" + testenv.RandomHex(4), logs: &syncBuffer{}}
	if e.id.InstanceID == "" {
		e.id = identity.Identity{InstanceID: "i-" + testenv.RandomHex(8) + "0", Region: "us-east-1", AZ: "us-east-1a"}
	}
	dbPassword := "Db@:/?#%-" + testenv.RandomHex(8)
	if err := pg.CreateDatabase(ctx, e.dbName, dockerDBUser, dbPassword); err != nil {
		t.Fatal(err)
	}
	e.secrets = secrets.NodeSecrets{
		DatabasePassword: secrets.NewSecret(dbPassword, "v1"),
		APIPassword:      secrets.NewSecret(dockerAPIPassword, "v1"),
		KeystorePassword: secrets.NewSecret(dockerKeystore, "v1"),
	}
	e.img = pushStandin(t, ctx, reg)

	base := t.TempDir()
	dataDir, secretsDir := filepath.Join(base, "data"), filepath.Join(base, "secrets")
	mountTmpfs(t, secretsDir)
	caFile := filepath.Join(base, "rds-ca.pem")
	copyFile(t, pg.CAFile, caFile, 0o444)

	name := testPrefix + testenv.RandomHex(4)
	t.Cleanup(func() { removeContainer(name) })
	logYAML := "{driver: json-file, options: {max-size: 1m}}"
	if o.moto != nil {
		logYAML = fmt.Sprintf("{driver: awslogs, group: %s, options: {awslogs-endpoint: %q}}", name, o.moto.URL)
	}
	yaml := fmt.Sprintf(`
instance: {id: %s, region: %s}
node:
  network: Ethereum-Sepolia
  ws_url: ws://127.0.0.1:8546
  http_url: http://127.0.0.1:8545
  api_email: ops@example.com
  database: {host: %s, port: %d, name: %s, user: %s, sslmode: verify-full, sslrootcert: %s}
  # A killed node's lease blocks its successor until it expires: keep that short for the tests.
  extra_toml: "[Database.Lock]\nLeaseDuration = '4s'\nLeaseRefreshInterval = '1s'\n"
image: {repository: %q, tag: %q}
container:
  name: %s
  host_port: %d
  data_dir: %s
  secrets_dir: %s
  stop_timeout: 5s
  log: %s
leader: {enabled: false}
state_dir: %s
`, e.id.InstanceID, e.id.Region, pg.BridgeHost, pg.Port, e.dbName, dockerDBUser, caFile, e.img.Repository, e.img.Tag,
		name, testenv.FreePort(t), dataDir, secretsDir, logYAML, base)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	e.cfg = cfg

	e.engine, err = NewDockerEngine(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.engine.Close() })
	e.logger = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(e.logs), zap.DebugLevel))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", e.logs.String())
			t.Logf("container log:\n%s", dockerOut(name, "logs", "--tail", "30", name))
		}
	})
	return e
}

// render is the daemon's Render callback: the format from the image tag, the files from the secrets.
func (e *nodeEnv) render(context.Context) (*nodefiles.Rendered, error) {
	f, err := nodefiles.FormatFor(e.cfg.Node.Format, e.img.Tag)
	if err != nil {
		return nil, err
	}
	return nodefiles.Render(e.cfg, e.id, e.secrets, f)
}

// options are the supervisor's options for this node, with timings fit for tests.
func (e *nodeEnv) options() Options {
	return Options{
		Engine:            e.engine,
		Logger:            e.logger,
		Config:            e.cfg,
		Identity:          e.id,
		Image:             e.img,
		Render:            e.render,
		ReadyTimeout:      60 * time.Second,
		ReadyPoll:         50 * time.Millisecond,
		BackoffInitial:    200 * time.Millisecond,
		BackoffMax:        2 * time.Second,
		ReconcileInterval: 2 * time.Second,
	}
}

// secretValues are the raw secrets that must never show up in inspect output or logs.
func (e *nodeEnv) secretValues() []string { return e.secrets.Values() }

// pushStandin pushes the stand-in image to a fresh repository under several tags, removes every local
// reference to that repository (so the supervisor's pull really happens), and resolves the newest release.
func pushStandin(t testing.TB, ctx context.Context, reg *testenv.Registry) image.Image {
	t.Helper()
	repo := fmt.Sprintf("%s/%s%s/chainlink", reg.Addr, testPrefix, testenv.RandomHex(4))
	var refs []string
	for _, tag := range []string{"2.9.1", "2.10.0", "2.10.0-rc.1", "latest"} {
		refs = append(refs, repo+":"+tag)
	}
	if err := standin.BuildImage(ctx, refs...); err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		dockerT(t, ctx, "push", ref)
	}
	dockerT(t, ctx, append([]string{"rmi"}, refs...)...) // the last tag of the repository takes its digest along
	img, err := image.Resolve(ctx, image.Options{Repository: repo, StateDir: t.TempDir(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if img.Tag != "2.10.0" {
		t.Fatalf("resolved %s; want the newest release 2.10.0", img)
	}
	t.Cleanup(func() { _, _ = dockerCmd("rmi", img.Ref()) })
	return img
}

// mountTmpfs mounts a small tmpfs at dir, as secrets_dir is in production, and unmounts it at cleanup.
func mountTmpfs(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if ok, err := isTmpfs(dir); err != nil || !ok {
		t.Fatalf("%s is not a tmpfs (%v)", dir, err)
	}
}

func isTmpfs(dir string) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false, err
	}
	const tmpfsMagic = 0x01021994
	return st.Type == tmpfsMagic, nil
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		t.Fatal(err)
	}
}

// dockerCmd runs the docker CLI with a deadline.
func dockerCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func dockerT(t testing.TB, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dockerOut is docker's output, or the error, for diagnostics.
func dockerOut(_ string, args ...string) string {
	out, err := dockerCmd(args...)
	if err != nil {
		return err.Error()
	}
	return out
}

func removeContainer(name string) { _, _ = dockerCmd("rm", "--force", "--volumes", name) }

// awsCredentials makes sure dockerd finds credentials for its awslogs driver (moto accepts any): when root has
// no shared credentials file, one with a [default] profile is written and removed once the last test using it
// is done. An existing file is used as is.
var awsCreds struct {
	sync.Mutex
	users   int
	created bool
}

func awsCredentialsT(t testing.TB) {
	t.Helper()
	const path = "/root/.aws/credentials"
	awsCreds.Lock()
	defer awsCreds.Unlock()
	if awsCreds.users == 0 {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("[default]\naws_access_key_id = test\naws_secret_access_key = test\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			awsCreds.created = true
		}
	}
	awsCreds.users++
	t.Cleanup(func() {
		awsCreds.Lock()
		defer awsCreds.Unlock()
		awsCreds.users--
		if awsCreds.users == 0 && awsCreds.created {
			_ = os.Remove(path)
			_ = os.Remove(filepath.Dir(path)) // only if empty
			awsCreds.created = false
		}
	})
}

// runSupervisor runs s until the test ends (or stop is called) and reports Run's error on done.
func runSupervisor(t testing.TB, s *Supervisor) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = errors.New("Run did not return within 60s of the cancel")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return stop
}

// waitReady waits until the supervisor reports the node ready in a container other than notID.
func waitNodeReady(t testing.TB, s *Supervisor, bound time.Duration, notID string) Status {
	t.Helper()
	var st Status
	testenv.WaitFor(t, bound, "the node to be ready", func() bool {
		st = s.Status()
		return st.State == StateReady && st.ContainerID != notID
	})
	return st
}
