package config

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// The rules of node.extra_toml (2.x). The agent renders config.toml from its own settings (package bootstrap) and
// merges extra_toml over them: tables key by key, arrays of tables element by element (so `[[EVM]]` in extra_toml
// adds to the agent's chain and a second `[[EVM]]` adds a chain). extra_toml may add keys and tables; it may never
// replace or change what the agent writes or relies on, nor hold a secret. Whether the node knows a key it adds is
// the node's own rule (its TOML decoding is strict): nodefiles.Validator runs the node's `validate` for that.
//
// A path is dotted; "[0]" is an element of an array of tables, "[]" any element.

// AgentTOMLKeys are the config.toml keys the agent writes, with the reason. Package bootstrap's renderer writes
// exactly these (its test holds it to this table).
var AgentTOMLKeys = map[string]string{
	"RootDir":                    "the node's root is container.data_dir, mounted at /chainlink",
	"Log.JSONConsole":            "the log driver's multi-line pattern reads the node's log as JSON lines",
	"WebServer.HTTPPort":         "the container publishes the node's port 6688 at container.host_port, where the agent checks the node",
	"WebServer.SecureCookies":    "the node serves plain HTTP, over which a secure session cookie never comes back (false)",
	"WebServer.TLS.HTTPSPort":    "the node serves plain HTTP only (0: TLS off); the agent mounts no certificate and checks the node over HTTP, so terminate TLS in front of it",
	"EVM[0].ChainID":             "it comes from node.network or node.chain_id",
	"EVM[0].LinkContractAddress": "it comes from node.network or node.link_contract",
	"EVM[0].Nodes[0].Name":       "it names the agent's chain client (primary)",
	"EVM[0].Nodes[0].WSURL":      "it comes from node.ws_url",
	"EVM[0].Nodes[0].HTTPURL":    "it comes from node.http_url",
}

// agentTables are the tables (and arrays of tables) that hold AgentTOMLKeys: extra_toml may add to them, never
// replace them with another kind of value.
var agentTables = map[string]bool{ // true: an array of tables
	"Log": false, "WebServer": false, "WebServer.TLS": false, "Database": false, "Database.Lock": false,
	"EVM": true, "EVM[0].Nodes": true,
}

// secretTOML are secrets.toml keys (chainlink v2.19.0 core/config/toml/types.go Secrets): never in config.toml.
var secretTOML = []string{"Database.URL", "Database.BackupURL", "Database.AllowSimplePasswords", "Password",
	"WebServer.LDAP.ServerAddress", "WebServer.LDAP.ReadOnlyUserLogin", "WebServer.LDAP.ReadOnlyUserPass",
	"Pyroscope.AuthToken", "Prometheus.AuthToken", "Mercury", "Threshold"}

// addressTOML are the config.toml keys the node decodes as an EIP-55 address (chainlink v2.19.0
// core/chains/evm/config/toml/config.go and core/config/toml/types.go: *types.EIP55Address).
var addressTOML = []string{"EVM[].LinkContractAddress", "EVM[].FlagsContractAddress", "EVM[].OperatorFactoryAddress",
	"EVM[].Workflow.FromAddress", "EVM[].Workflow.ForwarderAddress", "EVM[].GasEstimator.DAOracle.OracleAddress",
	"EVM[].KeySpecific[].Key", "OCR.TransmitterAddress"}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// ExtraTOMLProblems lists what is wrong with extra_toml, one error per key, each naming the key and the rule
// (sorted by key, so the report is stable). Empty text has no problem.
func ExtraTOMLProblems(extra string) []error {
	if extra == "" {
		return nil
	}
	var m map[string]any
	if err := toml.Unmarshal([]byte(extra), &m); err != nil {
		return []error{detail(ErrInvalid, "is not valid TOML: %v", err)}
	}
	var errs []error
	walkExtra(m, "", &errs)
	return append(errs, leaseProblems(m)...)
}

// The node's lease defaults (chainlink v2.19.0 docs/CONFIG.md [Database.Lock]).
const (
	nodeLeaseDuration        = 10 * time.Second
	nodeLeaseRefreshInterval = time.Second
)

// leaseProblems refuses Database.Lock settings that undo the node's database lease, the node's own guard against
// a second node on its database under the agent's election: turning it off, a lease of no length,
// or a refresh slower than half the lease (which the node refuses too: core/config/toml/types.go
// DatabaseLock.ValidateConfig). A shorter or longer lease is allowed; a longer one makes a successor wait longer
// after a node is killed.
func leaseProblems(m map[string]any) []error {
	db, _ := m["Database"].(map[string]any)
	lock, _ := db["Lock"].(map[string]any)
	if lock == nil {
		return nil
	}
	const why = "the node's database lease guards the database against a second node under the agent's election"
	var errs []error
	if v, set := lock["Enabled"]; set && v != true {
		errs = append(errs, keyError("Database.Lock.Enabled", ErrAgentOwned, "must stay true: %s", why))
	}
	duration := func(key string, def time.Duration) (time.Duration, bool) {
		v, set := lock[key]
		if !set {
			return def, true
		}
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errs = append(errs, keyError("Database.Lock."+key, ErrInvalid, "must be a positive duration such as '10s': %s", why))
			return 0, false
		}
		return d, true
	}
	lease, leaseOK := duration("LeaseDuration", nodeLeaseDuration)
	refresh, refreshOK := duration("LeaseRefreshInterval", nodeLeaseRefreshInterval)
	if leaseOK && refreshOK && refresh > lease/2 {
		errs = append(errs, keyError("Database.Lock.LeaseRefreshInterval", ErrInvalid,
			"%s must be at most half of LeaseDuration (%s), or the lease lapses between refreshes (the node refuses it too)", refresh, lease))
	}
	return errs
}

func walkExtra(m map[string]any, prefix string, errs *[]error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		if err := checkExtraKey(path, m[k]); err != nil {
			*errs = append(*errs, err)
			continue
		}
		switch v := m[k].(type) {
		case map[string]any:
			walkExtra(v, path, errs)
		case []any:
			for i, e := range v {
				if t, ok := e.(map[string]any); ok {
					walkExtra(t, fmt.Sprintf("%s[%d]", path, i), errs)
				}
			}
		}
	}
}

// checkExtraKey applies the rules to one key of extra_toml with its value.
func checkExtraKey(path string, v any) error {
	if why, ok := AgentTOMLKeys[path]; ok {
		return keyError(path, ErrAgentOwned, "extra_toml may add keys but not set this one: %s", why)
	}
	if slices.Contains(secretTOML, path) {
		return keyError(path, ErrInvalid, "a secret belongs in secrets.toml, which the agent writes from Secrets Manager; never put one in config.toml")
	}
	if array, ok := agentTables[path]; ok {
		if array && !allTablesValue(v) {
			return keyError(path, ErrAgentOwned, "the agent writes an array of tables here; extra_toml may add to it ([[%s]]) but not replace it with another kind of value", indexRE.ReplaceAllString(path, ""))
		}
		if _, isTable := v.(map[string]any); !array && !isTable {
			return keyError(path, ErrAgentOwned, "the agent writes a table here; extra_toml may add keys to it ([%s]) but not replace it with a value", path)
		}
	}
	if slices.Contains(addressTOML, indexRE.ReplaceAllString(path, "[]")) {
		s, isString := v.(string)
		if !isString {
			return keyError(path, ErrInvalid, "must be an address string in EIP-55 checksum case")
		}
		if err := CheckAddress(s); err != nil {
			return fmt.Errorf("%s = %q %w", path, s, err)
		}
	}
	return nil
}

// keyError names the key first: "WebServer.HTTPPort is the agent's: …".
func keyError(path string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("%s %w: %s", path, sentinel, fmt.Sprintf(format, args...))
}

// allTablesValue reports whether v is a non-empty array whose elements are all tables.
func allTablesValue(v any) bool {
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return false
	}
	for _, e := range a {
		if _, ok := e.(map[string]any); !ok {
			return false
		}
	}
	return true
}
