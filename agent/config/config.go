// Package config owns cl-agent's configuration: the YAML schema (README, Configuration), its defaults, strict decoding
// (an unknown key is an error that names the key and its line), environment overrides, and validation, including
// the leader-election timing invariant. A Config returned by Parse or Load is complete and valid; nothing else in
// the agent re-checks it.
//
// Errors are *FieldError values that wrap one of the exported sentinels (ErrUnknownKey, ErrRequired, ErrInvalid,
// ErrTiming, …), so callers and tests use errors.Is. The configuration holds no secret values (only the ids of
// Secrets Manager secrets), so a FieldError may quote the value it rejects.
package config

import "time"

// DefaultPath is where the daemon looks for its configuration unless --config or CL_AGENT_CONFIG says otherwise.
const DefaultPath = "/etc/cl-agent/config.yaml"

// NodeLockID1x is the session advisory lock id that Chainlink 1.x nodes take themselves
// (DATABASE_LOCKING_MODE=advisorylock|dual). The agent's own lock key must never equal it.
const NodeLockID1x int64 = 1027321974924625846

// Config is the whole agent configuration. The zero value is not useful: start from Default().
type Config struct {
	Instance  Instance  `yaml:"instance"`
	AWS       AWS       `yaml:"aws"`
	Secrets   Secrets   `yaml:"secrets"`
	Node      Node      `yaml:"node"`
	Image     Image     `yaml:"image"`
	Container Container `yaml:"container"`
	Leader    Leader    `yaml:"leader"`
	Health    Health    `yaml:"health"`
	Control   Control   `yaml:"control"`
	// StateDir keeps what must survive a restart of the agent (the last resolved image). Default /var/lib/cl-agent.
	StateDir string `yaml:"state_dir"`
	// LogLevel of the agent's own log: debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
}

// Instance overrides what IMDS would say. Both empty (the default): ask IMDS.
type Instance struct {
	ID     string `yaml:"id"`
	Region string `yaml:"region"`
}

// AWS points the SDK at non-default endpoints (tests use moto and the IMDS mock) and bounds the calls.
type AWS struct {
	// EndpointURL replaces the Secrets Manager, CloudWatch and CloudWatch Logs endpoints. Default: the real ones.
	EndpointURL string `yaml:"endpoint_url"`
	// IMDSEndpoint replaces http://169.254.169.254. Default: the real one.
	IMDSEndpoint string `yaml:"imds_endpoint"`
	// IMDSTimeout bounds the wait for the instance metadata service at start. Default 30s.
	IMDSTimeout time.Duration `yaml:"imds_timeout"`
	// CallTimeout bounds one AWS API call including its retries. Default 20s.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// MaxAttempts is the number of tries for a retryable AWS error (throttling, 5xx). Default 5.
	MaxAttempts int `yaml:"max_attempts"`
}

// Secrets names the three Secrets Manager secrets the node needs.
type Secrets struct {
	DatabasePassword SecretRef `yaml:"database_password"`
	APIPassword      SecretRef `yaml:"api_password"`
	KeystorePassword SecretRef `yaml:"keystore_password"`
	// PollInterval is how often the agent looks for rotated secrets (new version ids): the standby refreshes what
	// it holds, the active restarts its node with the new values. Default 5m; 0 turns rotation checks off.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// SecretRef is a Secrets Manager secret id (name or ARN) and, for a JSON secret, the key whose string value to use.
type SecretRef struct {
	ID      string `yaml:"id"`
	JSONKey string `yaml:"json_key"`
}

// Node describes the Chainlink node the agent renders files for.
type Node struct {
	// Format of the node's configuration: auto (from the image version: 1.x env, 2.x toml), env or toml.
	Format string `yaml:"format"`
	// Network is a built-in network name (see Networks); ChainID + LinkContract override it.
	Network string `yaml:"network"`
	ChainID uint64 `yaml:"chain_id"`
	// LinkContract is the LINK token's address, required with ChainID, in EIP-55 checksum case as the node requires
	// (an all-lower-case address is refused, and the error shows the checksummed form).
	LinkContract string `yaml:"link_contract"`
	// WSURL is the chain client's WebSocket URL (ws:// or wss://). Required.
	WSURL string `yaml:"ws_url"`
	// HTTPURL is the chain client's HTTP URL. Optional for 1.x, required for 2.x.
	HTTPURL string `yaml:"http_url"`
	// APIEmail is the e-mail of the node's first admin user (line 1 of .api). Required.
	APIEmail string   `yaml:"api_email"`
	Database Database `yaml:"database"`
	// ExtraTOML is merged into config.toml (2.x): it may add keys and tables, never change or replace what the agent
	// writes or relies on (AgentTOMLKeys), hold a secret, or give an address out of EIP-55 case. See extratoml.go.
	ExtraTOML string `yaml:"extra_toml"`
	// ExtraEnv is added to .env (1.x). It may not override the variables the agent owns.
	ExtraEnv map[string]string `yaml:"extra_env"`
	// Chains are the EVM chains of a 2.x node, each with its chain clients (see chains.go). Empty: the one-chain
	// shorthand above (network or chain_id + link_contract, ws_url, http_url); setting both is an error.
	Chains []Chain `yaml:"chains"`
	// P2P is the node's peer-to-peer networking (OCR, OCR2, CCIP, Functions, Automation). Default off.
	P2P P2P `yaml:"p2p"`
}

// Database is where the node's PostgreSQL lives. The password comes from secrets.database_password.
type Database struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	Name string `yaml:"name"`
	User string `yaml:"user"`
	// SSLMode is libpq's sslmode. Default require; use verify-full with SSLRootCert against RDS.
	SSLMode string `yaml:"sslmode"`
	// SSLRootCert is a host path to the CA bundle; it is mounted read-only into the container at the same path.
	SSLRootCert string `yaml:"sslrootcert"`
}

// The values of image.upgrade.
const (
	// UpgradeManual (the default): the agent never moves the node to a newer release by itself.
	UpgradeManual = "manual"
	// UpgradeAuto: the active looks for a newer stable release every image.poll_interval and upgrades to it within
	// image.upgrade_window. It requires image.tag empty.
	UpgradeAuto = "auto"
)

// Image chooses the Chainlink image, and whether and when the agent upgrades it.
type Image struct {
	Repository string `yaml:"repository"`
	// Tag pins a tag. Empty: the newest stable X.Y.Z release. Either way the agent runs it by digest.
	Tag string `yaml:"tag"`
	// Major keeps an unpinned choice within one major version (0: any).
	Major  uint64 `yaml:"major"`
	HubURL string `yaml:"hub_url"`
	// Upgrade is UpgradeManual (the default) or UpgradeAuto. Auto needs Tag empty, and lets each new stable release
	// (within Major) reach the node without an operator: the risk is a release with a fault that the node's
	// readiness does not show.
	Upgrade string `yaml:"upgrade"`
	// PollInterval is how often, with Upgrade auto, the active looks for a newer stable release (one registry
	// query each). Default 1h; at least 1m. Unused with Upgrade manual, but still checked.
	PollInterval time.Duration `yaml:"poll_interval"`
	// UpgradeWindow limits auto upgrades to a daily range in UTC ("22:00-02:00"). Default: any time. Set with
	// Upgrade manual, it is refused (it would do nothing).
	UpgradeWindow Window `yaml:"upgrade_window"`
	// ReadyTimeout is how long the node may take to become ready on a new image during an upgrade before the agent
	// rolls back to the previous one. Default 10m, because a node's first start on a new release runs its database
	// migrations; too short rolls back a good release whose migrations are slow. At least 5s.
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
}

// Container is how the node runs on this host.
type Container struct {
	Name     string `yaml:"name"`
	HostPort int    `yaml:"host_port"`
	// User is "uid:gid" for the node process; the node's files are owned by it. Default 14933:14933.
	User string `yaml:"user"`
	// DataDir is persistent and mounted read-write at /chainlink.
	DataDir string `yaml:"data_dir"`
	// SecretsDir holds the rendered files while the node starts. It should be a tmpfs; it must not be under DataDir.
	SecretsDir string `yaml:"secrets_dir"`
	// StopTimeout is how long the node gets after SIGTERM before it is killed. Default 10s.
	StopTimeout time.Duration `yaml:"stop_timeout"`
	Log         LogDriver     `yaml:"log"`
}

// LogDriver is the container's Docker log driver.
type LogDriver struct {
	Driver string `yaml:"driver"`
	// Group is the CloudWatch Logs group (awslogs-group).
	Group string `yaml:"group"`
	// Options are extra log-opts, e.g. awslogs-endpoint.
	Options map[string]string `yaml:"options"`
}

// Leader configures the advisory-lock election. See package agent/leader for the invariant the timings keep.
type Leader struct {
	Enabled bool `yaml:"enabled"`
	// LockKey is the advisory lock key. 0: derived from the database name.
	LockKey int64 `yaml:"lock_key"`
	// PingInterval is how often the active proves it still holds the lock. Default 1s.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PingTimeout bounds one proof. Default 800ms.
	PingTimeout time.Duration `yaml:"ping_timeout"`
	// FenceAfter: with no proof for this long (from the start of the last good one), the active stops its node.
	// Default 4s.
	FenceAfter time.Duration `yaml:"fence_after"`
	// TakeoverGuard: a new active waits this long after taking the lock before it starts its node, unless it has
	// proof the old node is gone. Must exceed fence_after + container.stop_timeout. Default 16s.
	TakeoverGuard time.Duration `yaml:"takeover_guard"`
	// DeadPeerTimeout bounds how long the server keeps the session of a host it can no longer reach (TCP
	// keepalives and tcp_user_timeout on the lock session). Default 10s.
	DeadPeerTimeout time.Duration `yaml:"dead_peer_timeout"`
	// StepdownHold keeps a host that stepped down out of the election this long. Default 30s.
	StepdownHold time.Duration `yaml:"stepdown_hold"`
}

// Health is the agent's own HTTP endpoint (/healthz, /readyz, /metrics), its checks and its metrics.
type Health struct {
	// Listen is host:port of /healthz, /readyz (the load balancer's check) and /metrics. Default 127.0.0.1:9180.
	Listen string `yaml:"listen"`
	// BeatBound: /healthz fails when the main loop has not ticked for this long. Default 3s.
	BeatBound time.Duration `yaml:"beat_bound"`
	// CheckInterval and CheckTimeout pace the node and chain checks. Defaults 15s and 5s.
	CheckInterval time.Duration `yaml:"check_interval"`
	CheckTimeout  time.Duration `yaml:"check_timeout"`
	// APIInterval paces the wallet-balance and errored-runs checks through the node's API. Default 60s.
	APIInterval time.Duration `yaml:"api_interval"`
	// HostInterval paces the disk, memory and CPU check. Default 30s.
	HostInterval time.Duration `yaml:"host_interval"`
	// HeadStallAfter: the chain head must rise within this. Default 2m.
	HeadStallAfter time.Duration `yaml:"head_stall_after"`
	// MinBalanceETH: a node key under it raises WalletBalanceLow. Default 0.1; 0 never warns.
	MinBalanceETH float64 `yaml:"min_balance_eth"`
	// DiskPaths are the file systems the host check watches. Default ["/", state_dir's file system].
	DiskPaths []string `yaml:"disk_paths"`
	// UnhealthyStepdown: an active whose node fails its checks this long hands over to a healthy standby.
	// Default 5m; 0 turns the policy off.
	UnhealthyStepdown time.Duration `yaml:"unhealthy_stepdown"`
	// MetricsTokenFile is the path of a file holding a bearer token (see ReadTokenFile): when set, /metrics answers
	// only requests with "Authorization: Bearer <token>" (401 otherwise); /healthz and /readyz stay open for the
	// load balancer. Read at start. Default "": /metrics is open to whoever reaches health.listen.
	MetricsTokenFile string     `yaml:"metrics_token_file"`
	CloudWatch       CloudWatch `yaml:"cloudwatch"`
}

// CloudWatch is where the agent's metrics go (PutMetricData), besides /metrics.
type CloudWatch struct {
	Enabled bool `yaml:"enabled"`
	// Interval between publishes. Default 60s.
	Interval time.Duration `yaml:"interval"`
	// Namespace of the metrics; the template's alarms read ChainlinkNode/Agent. Default ChainlinkNode/Agent.
	Namespace string `yaml:"namespace"`
}

// Control is the operator's control socket (status, restart, stepdown).
type Control struct {
	Socket string `yaml:"socket"`
}

// Default returns the configuration with every default filled in; decoding overlays the file on it.
func Default() Config {
	return Config{
		AWS: AWS{IMDSTimeout: 30 * time.Second, CallTimeout: 20 * time.Second, MaxAttempts: 5},
		Secrets: Secrets{
			DatabasePassword: SecretRef{ID: "DBSecret"},
			APIPassword:      SecretRef{ID: "ApiSecret"},
			KeystorePassword: SecretRef{ID: "WalletSecret"},
			PollInterval:     5 * time.Minute,
		},
		Node: Node{
			Format:   "auto",
			Network:  "Ethereum-Mainnet",
			Database: Database{Port: 5432, SSLMode: "require"},
			P2P:      P2P{ListenPort: DefaultP2PPort},
		},
		Image: Image{
			Repository:   "smartcontract/chainlink",
			HubURL:       "https://hub.docker.com",
			Upgrade:      UpgradeManual,
			PollInterval: time.Hour,
			ReadyTimeout: 10 * time.Minute,
		},
		Container: Container{
			Name:        "chainlink",
			HostPort:    6688,
			User:        "14933:14933",
			DataDir:     "/var/lib/cl-agent/node",
			SecretsDir:  "/run/cl-agent/node",
			StopTimeout: 10 * time.Second,
			Log:         LogDriver{Driver: "awslogs", Group: "ChainlinkLogs"},
		},
		Leader: Leader{
			Enabled:         true,
			PingInterval:    time.Second,
			PingTimeout:     800 * time.Millisecond,
			FenceAfter:      4 * time.Second,
			TakeoverGuard:   16 * time.Second,
			DeadPeerTimeout: 10 * time.Second,
			StepdownHold:    30 * time.Second,
		},
		Health: Health{
			Listen: "127.0.0.1:9180", BeatBound: 3 * time.Second,
			CheckInterval: 15 * time.Second, CheckTimeout: 5 * time.Second, APIInterval: time.Minute,
			HostInterval: 30 * time.Second, HeadStallAfter: 2 * time.Minute, MinBalanceETH: 0.1,
			UnhealthyStepdown: 5 * time.Minute,
			CloudWatch:        CloudWatch{Enabled: true, Interval: time.Minute, Namespace: "ChainlinkNode/Agent"},
		},
		Control:  Control{Socket: "/run/cl-agent/control.sock"},
		StateDir: "/var/lib/cl-agent",
		LogLevel: "info",
	}
}
