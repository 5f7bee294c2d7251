package config

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// KillMargin is the time the invariant allows between SIGKILL and the node's process being gone.
const KillMargin = time.Second

// The shipped unit's bounds (packaging/systemd/cl-agent.service; a test keeps them equal). When systemd stops the
// agent, the node gets container.stop_timeout from the agent and then again from ExecStopPost's fence, all within
// UnitStopTimeout; and no single stop may outlast UnitWatchdog. Hence stop_timeout < UnitWatchdog = UnitStopTimeout/2.
const (
	UnitWatchdog    = 30 * time.Second // WatchdogSec
	UnitStopTimeout = 60 * time.Second // TimeoutStopSec
)

var (
	envNameRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	containerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	imageTagRE      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// OwnedEnv are the .env variables the agent sets itself; extra_env may not override them.
var OwnedEnv = []string{"ROOT", "DATABASE_URL", "CHAINLINK_PORT", "ETH_CHAIN_ID", "ETH_URL", "ETH_HTTP_URL",
	"LINK_CONTRACT_ADDRESS", "DATABASE_LOCKING_MODE"}

// validator collects every problem, so an operator fixes the file in one pass.
type validator struct {
	lines lineMap
	errs  []error
}

func (v *validator) fail(field, value string, err error) {
	v.errs = append(v.errs, &FieldError{Field: field, Line: v.lineOf(field), Value: value, Err: err})
}

// lineOf is the line of field, or, for a key the file does not write inside a list element it does
// ("node.chains[0].nodes[1].http_url", "… scheme"), the line of the nearest element or list that it writes.
func (v *validator) lineOf(field string) int {
	if l, ok := v.lines[field]; ok || !strings.Contains(field, "[") {
		return l
	}
	for f := field; f != ""; {
		if l, ok := v.lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[ ")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

func (v *validator) required(field, value string) bool {
	if strings.TrimSpace(value) == "" {
		v.fail(field, "", ErrRequired)
		return false
	}
	return true
}

func (v *validator) oneOf(field, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.fail(field, value, detail(ErrInvalid, "must be one of %s", strings.Join(allowed, ", ")))
}

func (v *validator) port(field string, p int) {
	if p < 1 || p > 65535 {
		v.fail(field, strconv.Itoa(p), detail(ErrOutOfRange, "must be a TCP port from 1 to 65535"))
	}
}

func (v *validator) absPath(field, p string) {
	if v.required(field, p) && !filepath.IsAbs(p) {
		v.fail(field, p, detail(ErrInvalid, "must be an absolute path"))
	}
}

func (v *validator) positive(field string, d time.Duration) bool {
	if d <= 0 {
		v.fail(field, d.String(), detail(ErrOutOfRange, "must be a positive duration such as 1s"))
		return false
	}
	return true
}

// url checks an absolute URL with one of the schemes and reports whether it passed.
func (v *validator) url(field, raw string, schemes ...string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		v.fail(field, raw, detail(ErrInvalid, "is not a well-formed URL with a host"))
		return false
	}
	if !slices.Contains(schemes, u.Scheme) {
		v.oneOf(field+" scheme", u.Scheme, schemes...)
		return false
	}
	return true
}

func validate(c *Config, lines lineMap) error {
	v := &validator{lines: lines}
	v.instance(c)
	v.secrets(c)
	v.node(c)
	v.image(c)
	v.container(c)
	v.leader(c)
	v.health(c)
	v.paths(c)
	v.oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error")
	return errors.Join(v.errs...)
}

func (v *validator) health(c *Config) {
	h := c.Health
	if _, _, err := net.SplitHostPort(h.Listen); err != nil {
		v.fail("health.listen", h.Listen, detail(ErrInvalid, "must be host:port"))
	}
	v.positive("health.beat_bound", h.BeatBound)
	v.positive("health.check_interval", h.CheckInterval)
	if v.positive("health.check_timeout", h.CheckTimeout) && h.CheckTimeout > h.CheckInterval {
		v.fail("health.check_timeout", h.CheckTimeout.String(), detail(ErrOutOfRange, "must not exceed health.check_interval (%s)", h.CheckInterval))
	}
	v.positive("health.api_interval", h.APIInterval)
	v.positive("health.host_interval", h.HostInterval)
	v.positive("health.head_stall_after", h.HeadStallAfter)
	if h.MinBalanceETH < 0 {
		v.fail("health.min_balance_eth", fmt.Sprint(h.MinBalanceETH), detail(ErrOutOfRange, "must be 0 (off) or more"))
	}
	for i, p := range h.DiskPaths {
		v.absPath(fmt.Sprintf("health.disk_paths[%d]", i), p)
	}
	if h.UnhealthyStepdown < 0 {
		v.fail("health.unhealthy_stepdown", h.UnhealthyStepdown.String(), detail(ErrOutOfRange, "must be 0 (off) or a positive duration"))
	}
	if h.MetricsTokenFile != "" {
		v.absPath("health.metrics_token_file", h.MetricsTokenFile)
		if _, err := ReadTokenFile(h.MetricsTokenFile); err != nil {
			v.fail("health.metrics_token_file", h.MetricsTokenFile, err)
		}
	}
	if h.CloudWatch.Enabled {
		v.positive("health.cloudwatch.interval", h.CloudWatch.Interval)
		v.required("health.cloudwatch.namespace", h.CloudWatch.Namespace)
	}
}

func (v *validator) instance(c *Config) {
	if c.Instance.ID != "" && !strings.HasPrefix(c.Instance.ID, "i-") {
		v.fail("instance.id", c.Instance.ID, detail(ErrInvalid, "an EC2 instance id starts with i-"))
	}
	if c.AWS.EndpointURL != "" {
		v.url("aws.endpoint_url", c.AWS.EndpointURL, "http", "https")
	}
	if c.AWS.IMDSEndpoint != "" {
		v.url("aws.imds_endpoint", c.AWS.IMDSEndpoint, "http", "https")
	}
	v.positive("aws.imds_timeout", c.AWS.IMDSTimeout)
	v.positive("aws.call_timeout", c.AWS.CallTimeout)
	if c.AWS.MaxAttempts < 1 || c.AWS.MaxAttempts > 20 {
		v.fail("aws.max_attempts", strconv.Itoa(c.AWS.MaxAttempts), detail(ErrOutOfRange, "must be from 1 to 20"))
	}
}

func (v *validator) secrets(c *Config) {
	for name, ref := range map[string]SecretRef{
		"secrets.database_password": c.Secrets.DatabasePassword,
		"secrets.api_password":      c.Secrets.APIPassword,
		"secrets.keystore_password": c.Secrets.KeystorePassword,
	} {
		v.required(name+".id", ref.ID)
	}
	if p := c.Secrets.PollInterval; p != 0 && p < 10*time.Second {
		v.fail("secrets.poll_interval", p.String(), detail(ErrOutOfRange, "must be 0 (off) or at least 10s"))
	}
}

func (v *validator) node(c *Config) {
	n := c.Node
	v.oneOf("node.format", n.Format, "auto", "env", "toml")
	if len(n.Chains) > 0 {
		v.chains(c)
	} else {
		v.shorthand(n)
	}
	v.p2p(c)
	if v.required("node.api_email", n.APIEmail) {
		if a, err := mail.ParseAddress(n.APIEmail); err != nil || a.Address != n.APIEmail {
			v.fail("node.api_email", n.APIEmail, detail(ErrInvalid, "must be a bare e-mail address such as ops@example.com"))
		}
	}
	db := n.Database
	if v.required("node.database.host", db.Host) && strings.ContainsFunc(db.Host, badHostRune) {
		v.fail("node.database.host", db.Host, detail(ErrInvalid, "must be a bare host name or IP address: no /, ?, #, @ or white space (the port, database and user have keys of their own)"))
	}
	v.port("node.database.port", db.Port)
	v.required("node.database.name", db.Name)
	v.required("node.database.user", db.User)
	v.oneOf("node.database.sslmode", db.SSLMode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
	if db.SSLRootCert != "" {
		v.absPath("node.database.sslrootcert", db.SSLRootCert)
	}
	for _, err := range ExtraTOMLProblems(n) {
		v.fail("node.extra_toml", "", err)
	}
	for k, val := range n.ExtraEnv {
		field := "node.extra_env." + k
		switch {
		case !envNameRE.MatchString(k):
			v.fail(field, k, detail(ErrInvalid, "an environment variable name is letters, digits and _"))
		case slices.Contains(OwnedEnv, k):
			v.fail(field, k, detail(ErrInvalid, "the agent sets %s itself", k))
		case strings.ContainsAny(val, "\n\r\x00"):
			v.fail(field, "", detail(ErrInvalid, "a value may not contain a newline or NUL"))
		}
	}
}

// shorthand checks the one-chain form: node.network, or node.chain_id + node.link_contract; node.ws_url; node.http_url
// (optional for 1.x, required by the 2.x renderer).
func (v *validator) shorthand(n Node) {
	if n.ChainID != 0 {
		if n.LinkContract == "" {
			v.fail("node.link_contract", "", detail(ErrRequired, "with node.chain_id set, the LINK contract address (0x and 40 hex digits in EIP-55 checksum case)"))
		} else if err := CheckAddress(n.LinkContract); err != nil {
			v.fail("node.link_contract", n.LinkContract, err)
		}
	} else if n.LinkContract != "" {
		v.fail("node.chain_id", "0", detail(ErrRequired, "node.link_contract is set, so node.chain_id must be too"))
	} else if net, ok := LookupNetwork(n.Network); !ok {
		v.fail("node.network", n.Network, detail(ErrUnknownNetwork, "use one of %s, or set node.chain_id and node.link_contract", strings.Join(NetworkNames(), ", ")))
	} else if net.Retired {
		v.fail("node.network", n.Network, detail(ErrUnknownNetwork, "this network has been shut down; use one of %s", strings.Join(NetworkNames(), ", ")))
	}
	if v.required("node.ws_url", n.WSURL) {
		v.url("node.ws_url", n.WSURL, "ws", "wss")
	}
	if n.HTTPURL != "" {
		v.url("node.http_url", n.HTTPURL, "http", "https")
	}
}

func (v *validator) image(c *Config) {
	v.required("image.repository", c.Image.Repository)
	if c.Image.Tag != "" && !imageTagRE.MatchString(c.Image.Tag) {
		v.fail("image.tag", c.Image.Tag, detail(ErrInvalid, "a tag is up to 128 letters, digits, _ . and -"))
	}
	if c.Image.Tag != "" && c.Image.Major != 0 {
		v.fail("image.major", strconv.FormatUint(c.Image.Major, 10), detail(ErrInvalid, "applies only when image.tag is empty"))
	}
	v.url("image.hub_url", c.Image.HubURL, "http", "https")
	v.upgrade(c.Image)
}

// upgrade checks image.upgrade and the keys that pace it. poll_interval is checked with manual too, so that
// switching to auto never turns a value the file already holds into an error.
func (v *validator) upgrade(im Image) {
	switch im.Upgrade {
	case UpgradeAuto:
		if im.Tag != "" {
			v.fail("image.upgrade", im.Upgrade, detail(ErrInvalid, "auto upgrades choose the newest stable release: leave image.tag empty"))
		}
	case UpgradeManual:
		if !im.UpgradeWindow.IsZero() {
			v.fail("image.upgrade_window", im.UpgradeWindow.String(), detail(ErrInvalid, "applies only when image.upgrade is auto"))
		}
	default:
		v.oneOf("image.upgrade", im.Upgrade, UpgradeManual, UpgradeAuto)
	}
	if im.PollInterval < time.Minute {
		v.fail("image.poll_interval", im.PollInterval.String(), detail(ErrOutOfRange, "must be at least 1m"))
	}
	if im.ReadyTimeout < 5*time.Second {
		v.fail("image.ready_timeout", im.ReadyTimeout.String(), detail(ErrOutOfRange, "must be at least 5s"))
	}
}

func (v *validator) container(c *Config) {
	k := c.Container
	if !containerNameRE.MatchString(k.Name) {
		v.fail("container.name", k.Name, detail(ErrInvalid, "a container name is letters, digits, _ . and -, starting with a letter or digit"))
	}
	v.port("container.host_port", k.HostPort)
	if _, _, err := k.UIDGID(); err != nil {
		v.fail("container.user", k.User, err)
	}
	if v.positive("container.stop_timeout", k.StopTimeout) && k.StopTimeout >= UnitWatchdog {
		v.fail("container.stop_timeout", k.StopTimeout.String(), detail(ErrInvalid,
			"must be below %s: the unit's WatchdogSec, and half its TimeoutStopSec (%s), which holds the agent's stop and "+
				"then ExecStopPost's fence, each up to stop_timeout", UnitWatchdog, UnitStopTimeout))
	}
	if v.required("container.log.driver", k.Log.Driver) && k.Log.Driver == "awslogs" {
		v.required("container.log.group", k.Log.Group)
		if _, set := k.Log.Options["awslogs-group"]; set {
			v.fail("container.log.options.awslogs-group", k.Log.Options["awslogs-group"], detail(ErrInvalid, "set container.log.group instead"))
		}
	}
}

// badHostRune: characters that would end or re-shape the host part of the database URL the node gets.
func badHostRune(r rune) bool {
	return strings.ContainsRune("/?#@", r) || unicode.IsSpace(r) || unicode.IsControl(r)
}

// UIDGID parses Container.User ("uid:gid", numeric).
func (k Container) UIDGID() (uid, gid int, err error) {
	u, g, ok := strings.Cut(k.User, ":")
	uid, uerr := strconv.Atoi(u)
	gid, gerr := strconv.Atoi(g)
	if !ok || uerr != nil || gerr != nil || uid < 0 || gid < 0 {
		return 0, 0, detail(ErrInvalid, "must be numeric uid:gid such as 14933:14933")
	}
	return uid, gid, nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && (rel == "." || !strings.HasPrefix(rel, ".."))
}

func (v *validator) leader(c *Config) {
	l := c.Leader
	if l.LockKey == NodeLockID1x {
		v.fail("leader.lock_key", strconv.FormatInt(l.LockKey, 10), detail(ErrInvalid, "is the advisory lock id Chainlink 1.x nodes take themselves"))
	}
	ok := v.positive("leader.ping_interval", l.PingInterval)
	ok = v.positive("leader.ping_timeout", l.PingTimeout) && ok
	ok = v.positive("leader.fence_after", l.FenceAfter) && ok
	ok = v.positive("leader.takeover_guard", l.TakeoverGuard) && ok
	ok = v.positive("leader.dead_peer_timeout", l.DeadPeerTimeout) && ok
	v.positive("leader.stepdown_hold", l.StepdownHold)
	if !ok || c.Container.StopTimeout <= 0 {
		return
	}
	if err := CheckTiming(l, c.Container.StopTimeout); err != nil {
		v.fail("leader", "", err)
	}
}

// CheckTiming enforces the election invariant (the derivation is in package agent/leader's doc):
//
//	ping_timeout ≤ ping_interval                          one proof in flight at a time
//	fence_after  ≥ 2 × ping_interval + ping_timeout       one lost ping never fences
//	takeover_guard > fence_after + stop_timeout + 1s      the old node is dead before the new one starts
//	dead_peer_timeout ≥ fence_after                       the server does not drop an active that still trusts itself
func CheckTiming(l Leader, stopTimeout time.Duration) error {
	switch {
	case l.PingTimeout > l.PingInterval:
		return detail(ErrTiming, "ping_timeout (%s) must not exceed ping_interval (%s)", l.PingTimeout, l.PingInterval)
	case l.FenceAfter < 2*l.PingInterval+l.PingTimeout:
		return detail(ErrTiming, "fence_after (%s) must be at least 2 × ping_interval (%s) + ping_timeout (%s) = %s",
			l.FenceAfter, l.PingInterval, l.PingTimeout, 2*l.PingInterval+l.PingTimeout)
	case l.TakeoverGuard <= l.FenceAfter+stopTimeout+KillMargin:
		return detail(ErrTiming, "takeover_guard (%s) must exceed fence_after (%s) + container.stop_timeout (%s) + %s = %s, or the old node may still run when the new one starts",
			l.TakeoverGuard, l.FenceAfter, stopTimeout, KillMargin, l.FenceAfter+stopTimeout+KillMargin)
	case l.DeadPeerTimeout < l.FenceAfter:
		return detail(ErrTiming, "dead_peer_timeout (%s) must be at least fence_after (%s)", l.DeadPeerTimeout, l.FenceAfter)
	}
	return nil
}

// Describe is a one-line summary for logs: no secrets, the settings an operator checks first.
func (c *Config) Describe() string {
	chainID, _ := c.Node.Chain()
	upgrade := c.Image.Upgrade
	if w := c.Image.UpgradeWindow; !w.IsZero() {
		upgrade += " window=" + w.String()
	}
	return fmt.Sprintf("node %s format=%s chain_id=%d image=%s:%s upgrade=%s leader=%t", c.Container.Name, c.Node.Format,
		chainID, c.Image.Repository, c.Image.Tag, upgrade, c.Leader.Enabled)
}
