package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/internal/chainsim"
	"github.com/cl-agent/cl-agent/internal/netns"
	"github.com/cl-agent/cl-agent/internal/standin"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// prefix names every Docker object, database, secret and temp dir these tests create.
const prefix = "clagent-ha-"

// The agents' timings: fast, and valid (config.CheckTiming accepts them; the loader would refuse the agent
// otherwise). The bounds below are what the invariant promises with them.
const (
	pingInterval  = 200 * time.Millisecond
	pingTimeout   = 150 * time.Millisecond
	fenceAfter    = 1 * time.Second
	deadPeer      = 2 * time.Second
	takeoverGuard = 4500 * time.Millisecond
	stepdownHold  = 2 * time.Second
	stopTimeout   = 2 * time.Second

	// killBound: an active that lost the lock has stopped its node within this (fence_after + stop_timeout +
	// the kill margin); the takeover guard exceeds it.
	killBound = fenceAfter + stopTimeout + config.KillMargin
	// cutBound: after a cut, the server frees the lock within dead_peer_timeout and the new active starts its node
	// at the latest a takeover guard after taking it.
	cutBound = deadPeer + takeoverGuard
)

// The node's secrets. The database password holds every character that breaks naive URL building. Both passwords
// below pass the real node's rules too (v2.19.0 VerifyPasswordComplexity, which agent/secrets mirrors: at least 16
// bytes, no white space at either end; the API password at most 50 bytes), so the real-node cluster uses them as
// they are.
const (
	dbUser      = "chainlink"
	apiEmail    = "ops@example.com"
	apiPassword = "Api-Pass:word/?#%@0123"
	keystore    = "Keystore-@:/?#%-0123456"
	// standinTag is the tag the stand-in image is pushed as (cluster.tag, the agents' image.tag): a 2.x version,
	// so node.format auto renders TOML as for the real node.
	standinTag = "2.10.0"
	// sepoliaChainID is node.network Ethereum-Sepolia's chain id, which the simulated chain client answers.
	sepoliaChainID = 11155111
)

// Bounds of the harness's own waits.
const (
	setupBound    = 3 * time.Minute
	settleBound   = 60 * time.Second
	agentStopWait = 20 * time.Second
	cmdBound      = 30 * time.Second
	pushBound     = 2 * time.Minute // docker push of the node image: the real node's is over 300 MB
)

// cluster is the shared world of the two hosts: one PostgreSQL, moto, a registry holding the node image (the
// stand-in, or the real node: withRealNode), and two hosts each with its own metadata mock, agent configuration and
// agent process.
type cluster struct {
	tb         testing.TB
	pg         *testenv.Postgres
	moto       *testenv.Moto
	reg        *testenv.Registry
	repo       string // the node image's repository in the registry
	tag        string // the node image's tag there: the agents' image.tag
	realImage  string // the local real node image pushed as repo:tag; "" for the stand-in
	db         string // the node's database
	dbPassword string
	hosts      [2]*host
	bridge     string           // the docker bridge's interface (docker0), where the node containers' packets come from
	chain      *chainsim.Server // the chain client the agents' health checks ask
	// nodeBoot is added to the harness's bounds on a node becoming ready: 0 for the stand-in (ready at once); the
	// real node migrates, unlocks its key ring and boots for seconds, more on a loaded machine.
	nodeBoot time.Duration
}

// clusterOption changes what newCluster builds.
type clusterOption func(*cluster)

// newCluster builds everything but starts no agent; by default the hosts run the stand-in node. Cleanup stops the
// agents, fences both hosts, removes the containers and the namespaces, and stops the services.
func newCluster(tb testing.TB, opts ...clusterOption) *cluster {
	tb.Helper()
	testenv.DockerT(tb)
	tag := testenv.RandomHex(4)
	c := &cluster{tb: tb, tag: standinTag, db: "clagent_ha_" + tag, dbPassword: "Db@:/?#%-" + testenv.RandomHex(10)}
	for _, o := range opts {
		o(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupBound)
	defer cancel()
	nss := [2]*netns.Host{netns.CreateT(tb), netns.CreateT(tb)}
	c.pg = testenv.PostgresT(tb,
		testenv.ExtraListen(nss[0].RootIP, nss[0].Subnet), testenv.ExtraListen(nss[1].RootIP, nss[1].Subnet))
	bridge, err := docker(ctx, "network", "inspect", "bridge", "--format", `{{index .Options "com.docker.network.bridge.name"}}`)
	if err != nil || bridge == "" {
		tb.Fatalf("the docker bridge's interface: %q, %v", bridge, err)
	}
	c.bridge = bridge
	c.chain = chainsim.StartT(tb, chainsim.Options{ChainID: sepoliaChainID})
	c.moto = testenv.MotoT(tb)
	c.reg = testenv.RegistryT(tb)
	if err := c.pg.CreateDatabase(ctx, c.db, dbUser, c.dbPassword); err != nil {
		tb.Fatal(err)
	}
	c.serverKeepalives(ctx)
	secretIDs := c.createSecrets(ctx, prefix+tag)
	c.pushImage(ctx, tag)

	for i, ns := range nss {
		id := testenv.Identity{
			InstanceID: fmt.Sprintf("i-0%s%08x", tag, i+1), Region: "us-east-1",
			AZ: "us-east-1" + string(rune('a'+i)), PrivateIP: fmt.Sprintf("10.0.%d.10", i+1),
		}
		c.hosts[i] = c.newHost(fmt.Sprintf("host%d", i+1), ns, id, prefix+tag, secretIDs)
	}
	// Registered after every service, so it runs before they stop.
	tb.Cleanup(c.cleanup)
	return c
}

// serverKeepalives makes the server notice dead clients within seconds, as a managed database does within
// minutes (RDS sets TCP keepalives; a stock server leaves the kernel's two hours). The agent's lock session sets
// its own, shorter values; this matters for the node's sessions left behind by a host that was cut off: after the
// link comes back, the server's next keepalive meets a reset and drops them, and a later takeover can again prove
// the previous node gone instead of waiting out the guard.
func (c *cluster) serverKeepalives(ctx context.Context) {
	c.superExec(ctx, "postgres",
		"ALTER SYSTEM SET tcp_keepalives_idle = 2",
		"ALTER SYSTEM SET tcp_keepalives_interval = 1",
		"ALTER SYSTEM SET tcp_keepalives_count = 2",
		"SELECT pg_reload_conf()")
}

// superExec runs statements as the superuser in database db.
func (c *cluster) superExec(ctx context.Context, db string, stmts ...string) {
	c.tb.Helper()
	if err := c.superExecErr(ctx, db, stmts...); err != nil {
		c.tb.Fatal(err)
	}
}

func (c *cluster) superExecErr(ctx context.Context, db string, stmts ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdBound)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.pg.URL(db))
	if err != nil {
		return fmt.Errorf("connect to %s as superuser (bound %s): %w", db, cmdBound, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// createSecrets stores the node's three secrets in moto (the database password inside a JSON secret, as the
// template's generated secret is) and returns their ids.
func (c *cluster) createSecrets(ctx context.Context, name string) [3]string {
	c.tb.Helper()
	sm := secretsmanager.NewFromConfig(aws.Config{
		Region: "us-east-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
	}, func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(c.moto.URL) })
	dbSecret, err := json.Marshal(map[string]string{"username": dbUser, "password": c.dbPassword})
	if err != nil {
		c.tb.Fatal(err)
	}
	ids := [3]string{name + "-db", name + "-api", name + "-keystore"}
	for i, v := range []string{string(dbSecret), apiPassword, keystore} {
		sctx, cancel := context.WithTimeout(ctx, cmdBound)
		_, err := sm.CreateSecret(sctx, &secretsmanager.CreateSecretInput{Name: aws.String(ids[i]), SecretString: aws.String(v)})
		cancel()
		if err != nil {
			c.tb.Fatalf("create secret %s in moto: %v", ids[i], err)
		}
	}
	return ids
}

// pushImage pushes the node image to the registry as repo:tag, where the agents resolve and pull it by digest as in
// production: the stand-in, built here, or the real node image, tagged. Cleanup removes that tag only (the real
// node's own image stays: its build takes minutes).
func (c *cluster) pushImage(ctx context.Context, tag string) {
	c.tb.Helper()
	c.repo = fmt.Sprintf("%s/%s%s/chainlink", c.reg.Addr, prefix, tag)
	ref := c.repo + ":" + c.tag
	var err error
	if c.realImage != "" {
		_, err = docker(ctx, "tag", c.realImage, ref)
	} else {
		err = standin.BuildImage(ctx, ref)
	}
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(func() { _, _ = docker(context.Background(), "rmi", ref) })
	if _, err := runWithin(ctx, pushBound, "docker", "push", ref); err != nil {
		c.tb.Fatal(err)
	}
}

// host is one "EC2 instance": a network namespace, an identity served by its own metadata mock, the agent's
// configuration and directories (the secrets directory a real tmpfs), and the agent process when it runs.
type host struct {
	c         *cluster
	name      string // host1, host2
	ns        *netns.Host
	id        testenv.Identity
	dir       string
	cfgPath   string
	container string
	port      int // the node's published port (container.host_port)
	imdsURL   string
	ca        string // the database CA, readable by the node's uid
	secretIDs [3]string
	socket    string
	logPath   string
	starts    int

	agent *agentProc // nil when not running
}

func (c *cluster) newHost(name string, ns *netns.Host, id testenv.Identity, objPrefix string, secretIDs [3]string) *host {
	tb := c.tb
	tb.Helper()
	imds := testenv.IMDST(tb, id)
	dir := filepath.Join(tb.TempDir(), name)
	h := &host{
		c: c, name: name, ns: ns, id: id, dir: dir,
		cfgPath:   filepath.Join(dir, "config.yaml"),
		container: objPrefix + "-" + name,
		port:      testenv.FreePort(tb),
		socket:    filepath.Join(dir, "control.sock"),
		logPath:   filepath.Join(dir, "agent.log"),
		imdsURL:   imds.URL,
		ca:        filepath.Join(dir, "db-ca.pem"),
		secretIDs: secretIDs,
	}
	for _, d := range []string{dir, filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	mountTmpfs(tb, filepath.Join(dir, "secrets"))
	copyFile(tb, c.pg.CAFile, h.ca, 0o444)
	if err := os.WriteFile(h.cfgPath, []byte(h.config(h.imdsURL, h.ca, secretIDs, c.db, h.container, h.port, true)), 0o600); err != nil {
		tb.Fatal(err)
	}
	for _, p := range []int{portOf(tb, c.moto.URL), portOf(tb, "http://"+c.reg.Addr), portOf(tb, imds.URL), portOf(tb, c.chain.URL), h.port} {
		forwardLoopback(tb, ns.Name, p)
	}
	return h
}

// config is the agent's configuration on this host. The node's database host is the host's own end of its link
// (10.211.n.1): the agent reaches it through the namespace, the node container through the docker bridge.
func (h *host) config(imdsURL, ca string, secretIDs [3]string, db, container string, port int, leader bool) string {
	return fmt.Sprintf(`# %s: written by the HA tests
aws: {endpoint_url: %q, imds_endpoint: %q, call_timeout: 10s}
secrets:
  database_password: {id: %q, json_key: password}
  api_password: {id: %q}
  keystore_password: {id: %q}
node:
  network: Ethereum-Sepolia
  ws_url: %q
  http_url: %q
  api_email: %s
  database: {host: %s, port: %d, name: %s, user: %s, sslmode: verify-full, sslrootcert: %q}
image: {repository: %q, tag: %q}
container:
  name: %s
  host_port: %d
  data_dir: %q
  secrets_dir: %q
  stop_timeout: %s
  log: {driver: json-file, group: ChainlinkLogs, options: {max-size: 1m}}
leader:
  enabled: %t
  ping_interval: %s
  ping_timeout: %s
  fence_after: %s
  dead_peer_timeout: %s
  takeover_guard: %s
  stepdown_hold: %s
health: {listen: "%s:%d"}
control: {socket: %q}
state_dir: %q
`, h.name, h.c.moto.URL, imdsURL, secretIDs[0], secretIDs[1], secretIDs[2], h.c.chain.WSURL, h.c.chain.URL, apiEmail, h.ns.RootIP, h.c.pg.Port, db,
		dbUser, ca, h.c.repo, h.c.tag, container, port, filepath.Join(h.dir, "data-"+container),
		filepath.Join(h.dir, "secrets"), stopTimeout, leader, pingInterval, pingTimeout, fenceAfter, deadPeer,
		takeoverGuard, stepdownHold, h.ns.IP, healthPort, h.socket, filepath.Join(h.dir, "state"))
}

// other is the peer of h.
func (c *cluster) other(h *host) *host {
	if c.hosts[0] == h {
		return c.hosts[1]
	}
	return c.hosts[0]
}

// appName is the application_name of this host's agent lock session.
func (h *host) appName() string { return "cl-agent/" + h.id.InstanceID }

// logsOnFailure shows the tails of both agents' logs (and their nodes') once tb has failed, while they still tell
// what happened in the scenario that failed.
func (c *cluster) logsOnFailure(tb testing.TB) {
	if !tb.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdBound)
	defer cancel()
	lines := "20"
	if c.realImage != "" {
		lines = "80" // the real node logs far more per step than the stand-in
	}
	for _, h := range c.hosts {
		tb.Logf("--- %s agent log (tail) ---\n%s", h.name, fileTail(h.logPath, 150))
		if out, err := containerLogs(ctx, h.container, "--tail", lines); err == nil {
			tb.Logf("--- %s node log (tail) ---\n%s", h.name, out)
		}
	}
}

// cleanup stops what runs and shows the agents' logs when the test failed.
func (c *cluster) cleanup() {
	c.logsOnFailure(c.tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, h := range c.hosts {
		if h != nil && h.agent != nil {
			_ = h.agent.terminate(agentStopWait)
		}
	}
	for _, h := range c.hosts {
		if h == nil {
			continue
		}
		if _, err := h.fence(ctx); err != nil {
			c.tb.Errorf("fence %s at cleanup: %v", h.name, err)
		}
		_, _ = docker(ctx, "rm", "--force", h.container)
		h.uncut()
	}
}

// agentProc is one `cl-agent run` inside a host's namespace.
type agentProc struct {
	pid  int
	proc *os.Process
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// start launches the agent in the host's namespace, logging to the host's agent.log. It does not wait for
// anything: callers wait for the role they expect.
func (h *host) start(tb testing.TB) {
	tb.Helper()
	a, err := h.launch()
	if err != nil {
		tb.Fatal(err)
	}
	h.agent = a
}

func (h *host) launch() (*agentProc, error) {
	if h.agent != nil {
		return nil, fmt.Errorf("%s: agent already running (pid %d)", h.name, h.agent.pid)
	}
	h.starts++
	logFile, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== start #%d at %s\n", h.starts, time.Now().Format(time.RFC3339Nano))
	// Not CommandContext: the agent is stopped by signals the test chooses. Pdeathsig survives the exec of
	// `ip netns exec`, so an agent never outlives a test binary that died.
	cmd := h.ns.Command(context.Background(), agentBin, "run", "--config", h.cfgPath)
	cmd.Env = agentEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the agent on %s: %w", h.name, err)
	}
	a := &agentProc{pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		close(a.done)
	}()
	return a, nil
}

// agentEnv is the agent's environment: the machine's, without systemd's notify socket, plus the credentials moto
// accepts (on EC2 the instance role provides them).
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test")
}

// terminate sends SIGTERM and waits up to bound for the exit (then SIGKILL); it returns the exit error.
func (a *agentProc) terminate(bound time.Duration) error {
	_ = a.proc.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		return a.err
	case <-time.After(bound):
		_ = a.proc.Kill()
		<-a.done
		return fmt.Errorf("the agent (pid %d) did not exit within %s of SIGTERM", a.pid, bound)
	}
}

// stop is a clean stop (SIGTERM): the agent must exit 0 having stopped its node.
func (h *host) stop(tb testing.TB) {
	tb.Helper()
	if h.agent == nil {
		return
	}
	err := h.agent.terminate(agentStopWait)
	h.agent = nil
	if err != nil {
		tb.Fatalf("%s: agent after SIGTERM: %v; want exit 0", h.name, err)
	}
}

// kill9 is kill -9 of the agent: no clean-up runs, its node keeps running.
func (h *host) kill9(tb testing.TB) {
	tb.Helper()
	if err := h.agent.proc.Kill(); err != nil {
		tb.Fatalf("kill -9 %s agent: %v", h.name, err)
	}
	<-h.agent.done
	h.agent = nil
}

// fence runs `cl-agent fence` on the host, as systemd's ExecStopPost does after every end of the agent.
func (h *host) fence(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdBound)
	defer cancel()
	cmd := h.ns.Command(ctx, agentBin, "fence", "--config", h.cfgPath)
	cmd.Env = agentEnv()
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cl-agent fence on %s (bound %s): %w: %s", h.name, cmdBound, err, out)
	}
	return string(out), nil
}

// cli runs a cl-agent subcommand inside the host's namespace, against its configuration unless args name one.
func (h *host) cli(ctx context.Context, bound time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	if !slices.Contains(args, "--config") {
		args = append(args, "--config", h.cfgPath)
	}
	cmd := h.ns.Command(ctx, agentBin, args...)
	cmd.Env = agentEnv()
	cmd.WaitDelay = time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("cl-agent %s on %s (bound %s): %w: %s", args[0], h.name, bound, err, stderr.String())
	}
	return stdout.String(), nil
}

// cut severs the host from the database: its namespace's link (the agent's sessions) and the node container's
// packets to the host's database address (the container sits on the docker bridge, outside the namespace).
// Nothing is closed; both ends only stop hearing from each other.
func (h *host) cut(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdBound)
	defer cancel()
	if err := h.ns.Cut(ctx); err != nil {
		tb.Fatal(err)
	}
	for _, rule := range h.nodeRules() {
		if err := iptables(ctx, append([]string{"-I"}, rule...)...); err != nil {
			tb.Fatal(err)
		}
	}
}

// uncut restores the link; a no-op when it is not cut.
func (h *host) uncut() error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdBound)
	defer cancel()
	err := h.ns.Restore(ctx)
	for _, rule := range h.nodeRules() {
		for iptables(ctx, append([]string{"-C"}, rule...)...) == nil { // -C: the rule is there
			if derr := iptables(ctx, append([]string{"-D"}, rule...)...); derr != nil {
				return derr
			}
		}
	}
	return err
}

// nodeRules drop, in the root namespace, what passes between the docker bridge and this host's database address.
func (h *host) nodeRules() [][]string {
	return [][]string{
		{"INPUT", "-i", h.c.bridge, "-d", h.ns.RootIP, "-j", "DROP"},
		{"OUTPUT", "-o", h.c.bridge, "-s", h.ns.RootIP, "-j", "DROP"},
	}
}

func iptables(ctx context.Context, args ...string) error {
	_, err := run(ctx, "iptables", append([]string{"-w", "5"}, args...)...)
	return err
}

// ---- small helpers ----

// portOf is the port of an http://host:port URL.
func portOf(tb testing.TB, url string) int {
	tb.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(url, "http://"))
	if err != nil {
		tb.Fatalf("port of %s: %v", url, err)
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		tb.Fatalf("port of %s: %v", url, err)
	}
	return p
}

// mountTmpfs mounts a small tmpfs at dir, as the secrets directory is in production, until the test ends.
func mountTmpfs(tb testing.TB, dir string) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "size=1m,mode=0700"); err != nil {
		tb.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
}

func copyFile(tb testing.TB, src, dst string, mode os.FileMode) {
	tb.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		tb.Fatal(err)
	}
}

// fileTail is the last n lines of a file, for failure reports.
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
