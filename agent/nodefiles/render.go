package nodefiles

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/pelletier/go-toml/v2"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/fsutil"
	"github.com/cl-agent/cl-agent/agent/identity"
	"github.com/cl-agent/cl-agent/agent/secrets"
)

// Format is the node's configuration generation.
type Format string

const (
	// FormatEnv is 1.x: settings in environment variables, started with `local n`.
	FormatEnv Format = "env"
	// FormatTOML is 2.x: config.toml + secrets.toml, started with `node … start`.
	FormatTOML Format = "toml"
)

// Paths inside the container.
const (
	// DataMount is where container.data_dir is mounted read-write: the node's RootDir / ROOT.
	DataMount = "/chainlink"
	// SecretsMount is where container.secrets_dir is mounted read-only. It is outside DataMount so that Docker
	// never creates a mount point on the persistent disk.
	SecretsMount = "/run/chainlink"
	// NodePort is the node's HTTP port inside the container.
	NodePort = 6688
)

// File names in the secrets directory.
const (
	EnvFile      = ".env"
	ConfigFile   = "config.toml"
	SecretsFile  = "secrets.toml"
	PasswordFile = ".password"
	APIFile      = ".api"
)

// AllFiles is every name the renderers may write, for shredding.
var AllFiles = []string{EnvFile, ConfigFile, SecretsFile, PasswordFile, APIFile}

// FormatFor decides the generation: the configured node.format, or with "auto" the major version of the image
// tag (1.x → env, 2.x and later → toml).
func FormatFor(setting, imageTag string) (Format, error) {
	switch setting {
	case string(FormatEnv), string(FormatTOML):
		return Format(setting), nil
	}
	v, err := semver.NewVersion(imageTag)
	if err != nil {
		return "", &config.FieldError{Field: "node.format", Value: "auto", Err: fmt.Errorf(
			"%w: cannot tell the node generation from the image tag %q; set node.format to env (1.x) or toml (2.x)", config.ErrInvalid, imageTag)}
	}
	if v.Major() < 2 {
		return FormatEnv, nil
	}
	return FormatTOML, nil
}

// Rendered is everything the node needs: the files for the secrets directory, the container's environment and
// the arguments after the image's `chainlink` entrypoint.
type Rendered struct {
	Format Format
	Files  []fsutil.File
	// Env is the container's environment. 1.x reads its whole configuration from it (DATABASE_URL included: the
	// 1.x generation has no other way); 2.x gets none, so no secret appears in `docker inspect`.
	Env []string
	Cmd []string
}

// Wipe zeroes the rendered bytes once they are written.
func (r *Rendered) Wipe() {
	for _, f := range r.Files {
		clear(f.Data)
	}
}

// Render produces the node's files for format f. It does not touch the disk. It checks the three passwords against
// the node's rules first (secrets.Check) and node.extra_toml against the agent's (config.ExtraTOMLProblems); the
// keystore's strength rule, which depends on the node's database, is CheckKeystore's.
func Render(c *config.Config, id identity.Identity, s secrets.NodeSecrets, f Format) (*Rendered, error) {
	if err := secrets.Check(c, s); err != nil {
		return nil, err
	}
	dbURL := DatabaseURL(c.Node.Database, s.DatabasePassword.Reveal(), id.InstanceID)
	r := &Rendered{Format: f, Files: []fsutil.File{
		{Name: PasswordFile, Data: []byte(s.KeystorePassword.Reveal())},
		{Name: APIFile, Data: []byte(c.Node.APIEmail + "\n" + s.APIPassword.Reveal() + "\n")},
	}}
	passwordArgs := []string{"-p", SecretsMount + "/" + PasswordFile, "-a", SecretsMount + "/" + APIFile}
	switch f {
	case FormatEnv:
		if err := envCapable(c.Node); err != nil {
			return nil, err
		}
		r.Env = envSettings(c, dbURL)
		r.Files = append(r.Files, fsutil.File{Name: EnvFile, Data: []byte(strings.Join(r.Env, "\n") + "\n")})
		r.Cmd = append([]string{"local", "n"}, passwordArgs...)
	case FormatTOML:
		cfgTOML, err := configTOML(c)
		if err != nil {
			return nil, err
		}
		secTOML, err := toml.Marshal(map[string]any{
			"Database": map[string]any{"URL": dbURL},
			"Password": map[string]any{"Keystore": s.KeystorePassword.Reveal()},
		})
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", SecretsFile, err)
		}
		r.Files = append(r.Files, fsutil.File{Name: ConfigFile, Data: cfgTOML}, fsutil.File{Name: SecretsFile, Data: secTOML})
		r.Cmd = append([]string{"node", "-config", SecretsMount + "/" + ConfigFile, "-secrets", SecretsMount + "/" + SecretsFile, "start"}, passwordArgs...)
	default:
		return nil, fmt.Errorf("render: unknown node format %q", f)
	}
	return r, nil
}

// DatabaseURL builds the node's PostgreSQL URL. User and password are percent-encoded byte by byte (everything
// but RFC 3986 unreserved characters), so any password survives any URL parser; application_name lets the peer
// recognise this host's node sessions in pg_stat_activity.
func DatabaseURL(db config.Database, password, instanceID string) string {
	q := url.Values{}
	q.Set("sslmode", db.SSLMode)
	if db.SSLRootCert != "" {
		q.Set("sslrootcert", db.SSLRootCert)
	}
	if instanceID != "" {
		q.Set("application_name", NodeApplicationName(instanceID))
	}
	return "postgresql://" + secrets.PercentEncode(db.User) + ":" + secrets.PercentEncode(password) + "@" +
		net.JoinHostPort(db.Host, strconv.Itoa(db.Port)) + "/" + url.PathEscape(db.Name) + "?" + q.Encode()
}

// NodeApplicationName is the application_name of the node's database sessions on the host instanceID.
func NodeApplicationName(instanceID string) string { return "chainlink/" + instanceID }

// envCapable refuses what the 1.x .env cannot say: several chains (node.chains) and P2P.V2. Load refuses them
// with node.format env; with auto the image tag decides, so the check is here too.
func envCapable(n config.Node) error {
	if len(n.Chains) > 0 {
		return &config.FieldError{Field: "node.chains", Err: fmt.Errorf("%w: the image is a 1.x node (.env, one chain); node.chains needs a 2.x node", config.ErrInvalid)}
	}
	if n.P2P.Enabled {
		return &config.FieldError{Field: "node.p2p.enabled", Err: fmt.Errorf("%w: the image is a 1.x node (.env), which the agent renders no P2P settings for; P2P needs a 2.x node", config.ErrInvalid)}
	}
	return nil
}

// envSettings are the 1.x variables the old Quick Start wrote (minus ALLOW_ORIGINS=*, which let any web page
// drive the operator API), with extra_env added and allowed to replace the non-owned defaults.
func envSettings(c *config.Config, dbURL string) []string {
	chainID, link := c.Node.Chain()
	settings := [][2]string{
		{"ROOT", DataMount},
		{"LOG_LEVEL", "info"},
		{"JSON_CONSOLE", "true"},
		{"ETH_CHAIN_ID", strconv.FormatUint(chainID, 10)},
		{"LINK_CONTRACT_ADDRESS", link},
		{"ETH_URL", c.Node.WSURL},
		{"ETH_HTTP_URL", c.Node.HTTPURL},
		{"DATABASE_URL", dbURL},
		{"DATABASE_LOCKING_MODE", "lease"},
		{"CHAINLINK_PORT", strconv.Itoa(NodePort)},
		{"CHAINLINK_TLS_PORT", "0"},
		{"SECURE_COOKIES", "false"},
	}
	extra := maps.Clone(c.Node.ExtraEnv)
	var env []string
	for _, kv := range settings {
		if v, ok := extra[kv[0]]; ok {
			kv[1] = v
			delete(extra, kv[0])
		}
		if kv[1] != "" {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// configTOML renders config.toml: the agent's settings (exactly the written keys of config.AgentTOMLKeys) with
// node.extra_toml merged over them. Log.Level is left to the node's default (info) so extra_toml may set it.
func configTOML(c *config.Config) ([]byte, error) {
	if len(c.Node.Chains) == 0 && c.Node.HTTPURL == "" {
		return nil, &config.FieldError{Field: "node.http_url", Err: fmt.Errorf("%w: 2.x nodes need the chain client's HTTP URL ([[EVM.Nodes]] HTTPURL)", config.ErrRequired)}
	}
	base := agentTOML(c)
	if c.Node.ExtraTOML != "" {
		// Parse has checked it already; a Config built another way is held to the same rules here.
		if errs := config.ExtraTOMLProblems(c.Node); len(errs) > 0 {
			return nil, &config.FieldError{Field: "node.extra_toml", Err: errors.Join(errs...)}
		}
		var extra map[string]any
		if err := toml.Unmarshal([]byte(c.Node.ExtraTOML), &extra); err != nil {
			return nil, &config.FieldError{Field: "node.extra_toml", Err: fmt.Errorf("%w: %v", config.ErrInvalid, err)}
		}
		if err := mergeTOML(base, extra, ""); err != nil {
			return nil, &config.FieldError{Field: "node.extra_toml", Err: fmt.Errorf("%w: %v", config.ErrAgentOwned, err)}
		}
	}
	out, err := toml.Marshal(base)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ConfigFile, err)
	}
	return out, nil
}

// agentTOML is what the agent writes into config.toml before extra_toml: the keys of config.AgentTOMLKeys, with
// one [[EVM]] per chain (LinkContractAddress when the chain has one) and one [[EVM.Nodes]] per client (WSURL when
// it has one), and [P2P.V2]: Enabled = false when node.p2p is off, else listening on every address of the
// container at node.p2p.listen_port, announcing node.p2p.announce, with node.p2p.bootstrappers.
func agentTOML(c *config.Config) map[string]any {
	var evm []any
	for _, ch := range c.Node.EVMChains() {
		var nodes []any
		for _, n := range ch.Nodes {
			node := map[string]any{"Name": n.Name, "HTTPURL": n.HTTPURL, "SendOnly": n.SendOnly}
			if n.WSURL != "" {
				node["WSURL"] = n.WSURL
			}
			nodes = append(nodes, node)
		}
		chain := map[string]any{"ChainID": strconv.FormatUint(ch.ChainID, 10), "Nodes": nodes}
		if ch.LinkContract != "" {
			chain["LinkContractAddress"] = ch.LinkContract
		}
		evm = append(evm, chain)
	}
	return map[string]any{
		"RootDir": DataMount,
		"Log":     map[string]any{"JSONConsole": true},
		"WebServer": map[string]any{
			"HTTPPort":      NodePort,
			"SecureCookies": false,
			"TLS":           map[string]any{"HTTPSPort": 0},
		},
		"EVM": evm,
		"P2P": map[string]any{"V2": p2pTOML(c.Node.P2P)},
	}
}

// p2pTOML is the [P2P.V2] table. ListenAddresses is 0.0.0.0 inside the container: the container's own interface,
// which the engine publishes at the same port on the host.
func p2pTOML(p config.P2P) map[string]any {
	if !p.Enabled {
		return map[string]any{"Enabled": false}
	}
	return map[string]any{
		"Enabled":              true,
		"ListenAddresses":      []string{net.JoinHostPort("0.0.0.0", strconv.Itoa(p.ListenPort))},
		"AnnounceAddresses":    []string{p.Announce},
		"DefaultBootstrappers": append([]string{}, p.Bootstrappers...),
	}
}

// mergeTOML merges src into dst: tables merge key by key, arrays of tables merge element by element (so
// `[[EVM]]` in extra_toml adds to the first chain), and any other value in src is added. A key of src that dst
// already holds is never replaced (config.ExtraTOMLProblems refuses it first; this is the backstop).
func mergeTOML(dst, src map[string]any, path string) error {
	for k, sv := range src {
		key := strings.TrimPrefix(path+"."+k, ".")
		switch s := sv.(type) {
		case map[string]any:
			switch d := dst[k].(type) {
			case nil:
				dst[k] = s
			case map[string]any:
				if err := mergeTOML(d, s, key); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%s is a table in extra_toml but not in the rendered config", key)
			}
		case []any:
			d, isArray := dst[k].([]any)
			if _, held := dst[k]; held && (!isArray || !allTables(d) || !allTables(s)) {
				return fmt.Errorf("%s is written by the agent; extra_toml may not replace it", key)
			}
			if !isArray {
				dst[k] = s
				continue
			}
			for i, elem := range s {
				if i >= len(d) {
					d = append(d, elem)
					continue
				}
				if err := mergeTOML(d[i].(map[string]any), elem.(map[string]any), fmt.Sprintf("%s[%d]", key, i)); err != nil {
					return err
				}
			}
			dst[k] = d
		default:
			if _, held := dst[k]; held {
				return fmt.Errorf("%s is written by the agent; extra_toml may not replace it", key)
			}
			dst[k] = sv
		}
	}
	return nil
}

func allTables(a []any) bool {
	for _, e := range a {
		if _, ok := e.(map[string]any); !ok {
			return false
		}
	}
	return len(a) > 0
}
