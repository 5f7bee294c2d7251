package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent"
	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/container"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/daemon"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/agent/image"
	"github.com/cl-agent/cl-agent/agent/leader"
	"github.com/cl-agent/cl-agent/agent/nodefiles"
	"github.com/cl-agent/cl-agent/agent/secrets"
	"github.com/cl-agent/cl-agent/agent/takeover"
)

// runDaemon is `cl-agent run`: the daemon systemd starts. Logs are JSON lines on stdout (journald).
func runDaemon(ctx context.Context, args []string, out, errOut io.Writer) error {
	f := newFlags("run", errOut)
	if err := f.parse(args); err != nil {
		return err
	}
	h, err := agent.Open(*f.configPath, out)
	if err != nil {
		return err
	}
	armTestPanic(ctx)
	cfg := h.Config
	h.Log.Info("cl-agent starting", zap.String("version", version), zap.String("config", cfg.Describe()))
	h.WarnIfNotTmpfs(cfg.Container.SecretsDir)
	if w := cfg.Node.P2PIdleWarning(); w != "" {
		h.Log.Warn(w)
	}
	if err := fsutil.EnsureDir(cfg.StateDir, 0o700, fsutil.NoOwner); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if err := h.Learn(ctx); err != nil {
		return err
	}
	engine, err := container.NewDockerEngine(0)
	if err != nil {
		return err
	}
	defer engine.Close()

	o := daemonOptions(h, engine)
	// The health service needs the daemon's state and the daemon its checks: build the daemon first, with a
	// late-bound view of the checks.
	var svc *health.Service
	o.Checks = func() []control.Check { return checkResults(svc) }
	d, err := daemon.New(o)
	if err != nil {
		return err
	}
	if svc, err = healthService(h, d); err != nil {
		return err
	}
	o.Host.OnSecretFetch = svc.Metrics().RecordSecretFetch
	if err := svc.Listen(); err != nil {
		return err
	}
	go func() {
		if err := svc.Run(ctx); err != nil {
			h.Log.Error("health service", zap.Error(err))
		}
	}()
	go func() {
		if err := control.Serve(ctx, cfg.Control.Socket, d); err != nil {
			h.Log.Error("control socket", zap.Error(err))
		}
	}()
	return d.Run(ctx)
}

// daemonOptions wires the daemon to this host's engine, database and node: everything but its health checks.
func daemonOptions(h *agent.Host, engine *container.DockerEngine) daemon.Options {
	cfg := h.Config
	o := daemon.Options{
		Host:     h,
		Notify:   systemd{},
		Warm:     h.Warm(engine),
		Validate: h.ValidateCandidate(engine),
		Pull:     h.Pull(engine),
		Resolve:  h.ResolveTarget,
		NewNode: func(img image.Image, hooks daemon.NodeHooks) (daemon.Node, error) {
			return container.NewSupervisor(container.Options{
				Engine: engine, Logger: h.Log, Config: cfg, Identity: h.Identity, Image: img,
				Render: hooks.Render, BeforeStart: hooks.BeforeStart, OnStatus: hooks.OnStatus,
			})
		},
	}
	if cfg.Leader.Enabled {
		o.Election = election(h)
	} else {
		o.Database = databaseOnly(h)
	}
	o.ChangeAPIPassword = func(ctx context.Context, held, rotated secrets.Secret) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return health.ChangeAPIPassword(ctx, fmt.Sprintf("http://127.0.0.1:%d", cfg.Container.HostPort), cfg.Node.APIEmail,
			held.Reveal(), rotated.Reveal())
	}
	o.Fence = func(ctx context.Context) error {
		k := cfg.Container
		ctx, cancel := context.WithTimeout(ctx, k.StopTimeout+3*container.DefaultCallTimeout)
		defer cancel()
		return container.Fence(ctx, engine, k.Name, k.SecretsDir, k.StopTimeout)
	}
	return o
}

// reachableFromOtherHosts reports whether a listen address is more than loopback (0.0.0.0, "", a host's address).
func reachableFromOtherHosts(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false // the config loader refuses it before
	}
	ip := net.ParseIP(host)
	return host != "localhost" && (ip == nil || !ip.IsLoopback())
}

// healthService builds /healthz, /readyz, /metrics, the checks and the CloudWatch publisher.
func healthService(h *agent.Host, d *daemon.Daemon) (*health.Service, error) {
	c := h.Config
	hc := c.Health
	disks := hc.DiskPaths
	if len(disks) == 0 {
		disks = []string{"/", c.StateDir}
	}
	o := health.Options{
		Listen: hc.Listen, State: d.HealthState, Log: h.Log, BeatBound: hc.BeatBound,
		NodeURL:     fmt.Sprintf("http://127.0.0.1:%d", c.Container.HostPort),
		Credentials: d.APICredentials, MinBalanceETH: hc.MinBalanceETH,
		Chains: chainClients(c.Node), HeadStallAfter: hc.HeadStallAfter, DiskPaths: disks,
		CheckInterval: hc.CheckInterval, CheckTimeout: hc.CheckTimeout, APIInterval: hc.APIInterval, HostInterval: hc.HostInterval,
		InstanceID: h.Identity.InstanceID, MetricsTokenFile: hc.MetricsTokenFile,
	}
	if p := c.Node.P2P; p.Enabled { // published at the same port on the host (agent/container)
		o.NodeP2PAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ListenPort))
	}
	if hc.CloudWatch.Enabled {
		o.CloudWatch = health.NewCloudWatchClient(h.AWS, c.AWS.EndpointURL, 10*time.Second)
		o.CloudWatchInterval, o.Namespace = hc.CloudWatch.Interval, hc.CloudWatch.Namespace
	}
	if reachableFromOtherHosts(hc.Listen) {
		open := "/healthz, /readyz and /metrics answer"
		if hc.MetricsTokenFile != "" {
			open = "/healthz and /readyz answer" // /metrics wants the bearer token
		}
		h.Log.Warn("health.listen is reachable from other hosts: "+open+" without authentication there; let only "+
			"the load balancer reach it (the template's security group does)", zap.String("listen", hc.Listen))
	}
	svc, err := health.New(o)
	if err != nil {
		return nil, err
	}
	d.SetObserver(svc.Metrics())
	return svc, nil
}

// chainClients is every RPC client of every chain the node is configured for (node.chains, or the one-chain
// shorthand as one chain with one client), for the chain checks of the daemon and of `cl-agent check`.
func chainClients(n config.Node) []health.ChainClient {
	shorthand := len(n.Chains) == 0
	var out []health.ChainClient
	for _, ch := range n.EVMChains() {
		for _, nd := range ch.Nodes {
			out = append(out, health.ChainClient{ChainID: ch.ChainID, Name: nd.Name, HTTPURL: nd.HTTPURL,
				WSURL: nd.WSURL, SendOnly: nd.SendOnly, Shorthand: shorthand})
		}
	}
	return out
}

func checkResults(svc *health.Service) []control.Check {
	if svc == nil {
		return nil
	}
	var out []control.Check
	for _, r := range svc.Results() {
		out = append(out, control.Check{Name: r.Name, OK: r.OK, Skipped: r.Skipped, Detail: r.Detail, At: r.At})
	}
	return out
}

// election builds the elector and the database side of a handover for a database password: the lock session logs
// in as the node does (same database, user and password).
func election(h *agent.Host) func(secrets.Secret) (daemon.Elector, daemon.Takeover, error) {
	cfg := h.Config
	return func(password secrets.Secret) (daemon.Elector, daemon.Takeover, error) {
		connConfig, err := nodeDatabase(cfg, password)
		if err != nil {
			return nil, nil, err
		}
		l := cfg.Leader
		e, err := leader.New(leader.Options{
			ConnConfig: connConfig, Key: leader.LockKey(l.LockKey, cfg.Node.Database.Name), InstanceID: h.Identity.InstanceID,
			PingInterval: l.PingInterval, PingTimeout: l.PingTimeout, FenceAfter: l.FenceAfter, DeadPeerTimeout: l.DeadPeerTimeout,
			Logger: h.Log,
		})
		if err != nil {
			return nil, nil, err
		}
		return daemon.ElectorFrom(e), database(h, connConfig), nil
	}
}

// databaseOnly is the database side alone, for a host without leader election (the key ring checks).
func databaseOnly(h *agent.Host) func(secrets.Secret) (daemon.Takeover, error) {
	return func(password secrets.Secret) (daemon.Takeover, error) {
		connConfig, err := nodeDatabase(h.Config, password)
		if err != nil {
			return nil, err
		}
		return database(h, connConfig), nil
	}
}

func nodeDatabase(cfg *config.Config, password secrets.Secret) (*pgx.ConnConfig, error) {
	connConfig, err := pgx.ParseConfig(nodefiles.DatabaseURL(cfg.Node.Database, password.Reveal(), ""))
	if err != nil {
		return nil, fmt.Errorf("node.database: %w", err)
	}
	return connConfig, nil
}

func database(h *agent.Host, connConfig *pgx.ConnConfig) daemon.Takeover {
	c := h.Config
	return daemon.TakeoverFrom(takeover.New(connConfig, h.Identity.InstanceID, c.Leader.TakeoverGuard, c.AWS.CallTimeout))
}

// systemd sends sd_notify messages; outside systemd (no NOTIFY_SOCKET) they are dropped.
type systemd struct{}

func (systemd) Notify(state string) { _, _ = sd.SdNotify(false, state) }
