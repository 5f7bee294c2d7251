package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/logging"

	"github.com/cl-agent/cl-agent/agent/state"
)

// Defaults of Options (and of the config keys that feed them).
const (
	defaultListen             = "127.0.0.1:9180"
	defaultBeatBound          = 3 * time.Second // 3 × the daemon's 1s tick
	defaultCheckInterval      = 15 * time.Second
	defaultCheckTimeout       = 5 * time.Second
	defaultAPIInterval        = time.Minute
	defaultHostInterval       = 30 * time.Second
	defaultHeadStallAfter     = 2 * time.Minute
	defaultMinBalanceETH      = 0.1
	defaultCloudWatchInterval = time.Minute
)

// Options wire the health service. State is required; every check whose input is empty is left out.
type Options struct {
	Listen    string            // health.listen; default 127.0.0.1:9180
	State     func() AgentState // the daemon's state; cheap, never blocking
	Log       *zap.Logger
	BeatBound time.Duration // /healthz fails when the main loop has not ticked for this long; default 3s
	// MetricsTokenFile is health.metrics_token_file: New reads it once (config.ReadTokenFile), and /metrics then
	// answers only its bearer token. "" leaves /metrics open.
	MetricsTokenFile string

	NodeURL string // http://127.0.0.1:<container.host_port>; "" leaves out the node checks
	// NodeP2PAddr is the node's P2P port as published (127.0.0.1:<node.p2p.listen_port>); "" (P2P off) leaves
	// out the P2P check. Not among the checks that hand a sick node over (state.NodeServes).
	NodeP2PAddr string
	Credentials Credentials // the API login, held by the daemon; nil leaves out the wallet and runs checks
	// MinBalanceETH: a key under it fails the wallet check and raises WalletBalanceLow. 0 never warns; the
	// configuration's default is 0.1.
	MinBalanceETH float64
	// Chains are every chain's RPC clients (config.Node.EVMChains), each checked over HTTP when it has an
	// http_url and over WebSocket when it has a ws_url and is not send-only (chainChecks); a check fails when its
	// client's eth_chainId is not the client's chain. Empty leaves out the chain checks. The shorthand's one
	// client (Shorthand) keeps the check ids chain_http and chain_ws; with node.chains every check is named for
	// its client (ChainClient.CheckName).
	Chains []ChainClient
	// HeadStallAfter: the head must rise (HTTP) and a new head arrive on the newHeads subscription (WebSocket)
	// within this; default 2m. Send-only clients are not held to it.
	HeadStallAfter time.Duration
	DiskPaths      []string // file systems to watch; default ["/"]

	CheckInterval time.Duration // node and chain checks; default 15s
	CheckTimeout  time.Duration // deadline of every check run; default 5s
	APIInterval   time.Duration // wallet balances and errored runs; default 60s
	HostInterval  time.Duration // disk, memory, CPU; default 30s

	CloudWatch         CloudWatchAPI // nil: nothing goes to CloudWatch
	InstanceID         string        // the InstanceId dimension; required with CloudWatch
	CloudWatchInterval time.Duration // default 60s
	Namespace          string        // default ChainlinkNode/Agent
}

// Service is the agent's health side: the checks, the metrics, the HTTP endpoint and the CloudWatch publisher.
type Service struct {
	o         Options
	metrics   *Metrics
	runner    *runner
	server    *server
	publisher *publisher // nil without CloudWatch
}

// New builds the service from o; Run starts it.
func New(o Options) (*Service, error) {
	if o.State == nil {
		return nil, errors.New("health: Options.State is required")
	}
	if o.CloudWatch != nil && o.InstanceID == "" {
		return nil, errors.New("health: Options.InstanceID is required to publish to CloudWatch")
	}
	o = withDefaults(o)
	token, err := metricsToken(o.MetricsTokenFile)
	if err != nil {
		return nil, err
	}
	all := checks(o)
	if err := uniqueNames(all); err != nil {
		return nil, err
	}
	s := &Service{o: o, metrics: newMetrics(o.State)}
	s.runner = newRunner(o.Log, s.metrics.observe, all...)
	s.server = newServer(o.Listen, handler(o.State, o.BeatBound, s.metrics.gatherer(), token, o.Log))
	if o.CloudWatch != nil {
		s.publisher = newPublisher(publisherOptions{api: o.CloudWatch, metrics: s.metrics, instanceID: o.InstanceID,
			namespace: o.Namespace, interval: o.CloudWatchInterval, log: o.Log, perClient: perClientDimensions(o.Chains)})
	}
	return s, nil
}

// uniqueNames refuses two checks with one name: results, logs and metrics are keyed by it (two shorthand
// clients, or two clients of one chain with one name, which the configuration refuses anyway).
func uniqueNames(checks []Check) error {
	seen := map[string]bool{}
	for _, c := range checks {
		if seen[c.Name()] {
			return fmt.Errorf("health: two checks named %q (Options.Chains holds one client twice?)", c.Name())
		}
		seen[c.Name()] = true
	}
	return nil
}

// metricsToken reads the bearer token of /metrics ("" when no file is set) and registers it with the log
// redactor, so it never reaches a log line even by accident.
func metricsToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	token, err := config.ReadTokenFile(path)
	if err != nil {
		return "", &config.FieldError{Field: "health.metrics_token_file", Value: path, Err: err}
	}
	logging.Register(token)
	return token, nil
}

func withDefaults(o Options) Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Listen == "" {
		o.Listen = defaultListen
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if len(o.DiskPaths) == 0 {
		o.DiskPaths = []string{"/"}
	}
	def(&o.BeatBound, defaultBeatBound)
	def(&o.HeadStallAfter, defaultHeadStallAfter)
	def(&o.CheckInterval, defaultCheckInterval)
	def(&o.CheckTimeout, defaultCheckTimeout)
	def(&o.APIInterval, defaultAPIInterval)
	def(&o.HostInterval, defaultHostInterval)
	def(&o.CloudWatchInterval, defaultCloudWatchInterval)
	return o
}

// checks builds the checks o has inputs for. The node's checks run only on the active host: elsewhere there is
// no node to ask.
func checks(o Options) []Check {
	var out []Check
	active := func() bool { return o.State().Role == state.Active }
	const standby = "this host is not active: no node to check"
	if o.NodeURL != "" {
		out = append(out,
			onlyWhen(newNodeReadyz(o.NodeURL, o.CheckInterval, o.CheckTimeout), active, standby),
			onlyWhen(newNodeHealth(o.NodeURL, o.CheckInterval, o.CheckTimeout), active, standby))
		if o.Credentials != nil {
			api := NewNodeAPI(o.NodeURL, o.Credentials)
			out = append(out,
				onlyWhen(WalletBalances(api, o.MinBalanceETH, o.APIInterval, o.CheckTimeout, o.Log), active, standby),
				onlyWhen(newErroredRuns(api, 100, o.APIInterval, o.CheckTimeout), active, standby))
		}
		if o.NodeP2PAddr != "" {
			out = append(out, onlyWhen(newNodeP2P(o.NodeP2PAddr, o.CheckInterval, o.CheckTimeout), active, standby))
		}
	}
	out = append(out, chainChecks(o)...)
	return append(out, newHost(o.DiskPaths, o.HostInterval, o.CheckTimeout))
}

// Metrics is the registry, for the daemon's RecordSecretFetch, RecordFailover and SetImage.
func (s *Service) Metrics() *Metrics { return s.metrics }

// Results is the last result of every check, for `cl-agent status`.
func (s *Service) Results() []Result { return s.runner.results() }

// Listen binds health.listen, so a port in use fails at start-up. Run calls it when needed.
func (s *Service) Listen() error { return s.server.listen() }

// boundAddr is the endpoint's address (the bound one after Listen).
func (s *Service) boundAddr() string { return s.server.boundAddr() }

// Run serves the endpoint, runs the checks and publishes to CloudWatch until ctx ends. It returns nil on a
// cancelled ctx and an error when the endpoint cannot serve.
func (s *Service) Run(ctx context.Context) error {
	if err := s.server.listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.runner.run(ctx) })
	if s.publisher != nil {
		wg.Go(func() { s.publisher.run(ctx) })
	}
	err := s.server.serve(ctx)
	cancel()
	wg.Wait()
	return err
}
