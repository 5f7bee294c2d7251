package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// The rules of node.extra_toml (2.x). The agent renders config.toml from its own settings (package bootstrap) and
// merges extra_toml over them: tables key by key, arrays of tables element by element (so the first `[[EVM]]` in
// extra_toml adds keys to the agent's first chain, and an element after the agent's chains adds a chain). extra_toml may add keys and tables; it may never
// replace or change what the agent writes or relies on, nor hold a secret. Whether the node knows a key it adds is
// the node's own rule (its TOML decoding is strict): nodefiles.Validator runs the node's `validate` for that.
//
// A path is dotted; "[0]" is an element of an array of tables, "[]" any element.

// AgentTOMLKeys are the config.toml keys the agent writes, with the reason. "[]" stands for an element the agent
// writes: EVM[i] for each of its chains (node.chains, or the one-chain shorthand's single chain) and EVM[i].Nodes[j]
// for each of that chain's clients; extra_toml may add keys to those elements and add elements after them.
// Package nodefiles' renderer writes exactly these (its test holds it to this table); LinkContractAddress only when
// the chain has one, WSURL only when the client has one, and the P2P.V2 addresses only when P2P is on.
var AgentTOMLKeys = map[string]string{
	"RootDir":                     "the node's root is container.data_dir, mounted at /chainlink",
	"Log.JSONConsole":             "the log driver's multi-line pattern reads the node's log as JSON lines",
	"WebServer.HTTPPort":          "the container publishes the node's port 6688 at container.host_port, where the agent checks the node",
	"WebServer.SecureCookies":     "the node serves plain HTTP, over which a secure session cookie never comes back (false)",
	"WebServer.TLS.HTTPSPort":     "the node serves plain HTTP only (0: TLS off); the agent mounts no certificate and checks the node over HTTP, so terminate TLS in front of it",
	"EVM[].ChainID":               "it comes from node.chains[].network or chain_id (or the shorthand node.network / node.chain_id)",
	"EVM[].LinkContractAddress":   "it comes from node.chains[].link_contract or network (or the shorthand node.link_contract / node.network)",
	"EVM[].Nodes[].Name":          "it comes from node.chains[].nodes[].name (the shorthand's client is primary)",
	"EVM[].Nodes[].WSURL":         "it comes from node.chains[].nodes[].ws_url (or node.ws_url)",
	"EVM[].Nodes[].HTTPURL":       "it comes from node.chains[].nodes[].http_url (or node.http_url)",
	"EVM[].Nodes[].SendOnly":      "it comes from node.chains[].nodes[].send_only",
	"P2P.V2.Enabled":              "it comes from node.p2p.enabled",
	"P2P.V2.ListenAddresses":      "it comes from node.p2p.listen_port, the port the container publishes",
	"P2P.V2.AnnounceAddresses":    "it comes from node.p2p.announce, the address both hosts of the pair announce",
	"P2P.V2.DefaultBootstrappers": "it comes from node.p2p.bootstrappers",
}

// agentTables are the tables (and arrays of tables) that hold AgentTOMLKeys, in the same notation: extra_toml may
// add to them, never replace them with another kind of value.
var agentTables = map[string]bool{ // true: an array of tables
	"Log": false, "WebServer": false, "WebServer.TLS": false, "Database": false, "Database.Lock": false,
	"EVM": true, "EVM[].Nodes": true, "P2P": false, "P2P.V2": false,
}

// agentElementRE splits a path into the chain index, the client index (when there is one) and the rest.
var agentElementRE = regexp.MustCompile(`^EVM\[(\d+)\](?:\.Nodes\[(\d+)\])?`)

// agentPattern writes path in AgentTOMLKeys' notation: an index of an element the agent writes becomes "[]"
// (shape[i] is the number of clients of the agent's chain i); an index past the agent's stays, so an element that
// extra_toml adds is its own.
func agentPattern(path string, shape []int) string {
	m := agentElementRE.FindStringSubmatchIndex(path)
	if m == nil {
		return path
	}
	chain, _ := strconv.Atoi(path[m[2]:m[3]])
	if chain >= len(shape) {
		return path
	}
	out := "EVM[]"
	if m[4] >= 0 {
		if client, _ := strconv.Atoi(path[m[4]:m[5]]); client < shape[chain] {
			out += ".Nodes[]"
		} else {
			out += path[m[3]+1 : m[5]+1]
		}
	}
	return out + path[m[1]:]
}

// AgentTOMLKey tells whether the agent writes the config.toml key path (in "EVM[0].Nodes[1].WSURL" notation) for
// node n, and why.
func (n Node) AgentTOMLKey(path string) (why string, owned bool) {
	why, owned = AgentTOMLKeys[agentPattern(path, n.shape())]
	return why, owned
}

// shape is the number of clients of each chain the agent writes.
func (n Node) shape() []int {
	var shape []int
	for _, c := range n.EVMChains() {
		shape = append(shape, len(c.Nodes))
	}
	return shape
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

// ExtraTOMLProblems lists what is wrong with node n's extra_toml, one error per key, each naming the key and the
// rule (sorted by key, so the report is stable). Empty text has no problem.
func ExtraTOMLProblems(n Node) []error {
	if n.ExtraTOML == "" {
		return nil
	}
	var m map[string]any
	if err := toml.Unmarshal([]byte(n.ExtraTOML), &m); err != nil {
		return []error{detail(ErrInvalid, "is not valid TOML: %v", err)}
	}
	var errs []error
	walkExtra(m, "", n.shape(), &errs)
	errs = append(errs, addedChainProblems(m, n)...)
	return append(errs, leaseProblems(m)...)
}

// addedChainProblems: a chain or client that extra_toml adds after the agent's may not repeat a chain id or a client
// name the agent writes (the node refuses duplicates: core/chains/evm/config/toml/config.go:42 and :50).
func addedChainProblems(m map[string]any, n Node) []error {
	chains := n.EVMChains()
	ids, names := map[string]bool{}, map[string]bool{}
	for _, c := range chains {
		ids[strconv.FormatUint(c.ChainID, 10)] = true
		for _, nd := range c.Nodes {
			names[nd.Name] = true
		}
	}
	evm, _ := m["EVM"].([]any)
	var errs []error
	for i, e := range evm {
		chain, _ := e.(map[string]any)
		if id := fmt.Sprint(chain["ChainID"]); i >= len(chains) && ids[id] {
			errs = append(errs, keyError(fmt.Sprintf("EVM[%d].ChainID", i), ErrInvalid, "chain %s is one of the agent's chains already; the node refuses two chains with one id (add its settings to that chain's [[EVM]] element instead)", id))
		}
		clients, _ := chain["Nodes"].([]any)
		for j, c := range clients {
			client, _ := c.(map[string]any)
			name, _ := client["Name"].(string)
			if name != "" && names[name] && (i >= len(chains) || j >= len(chains[i].Nodes)) {
				errs = append(errs, keyError(fmt.Sprintf("EVM[%d].Nodes[%d].Name", i, j), ErrInvalid, "%q names one of the agent's chain clients already; the node refuses two clients with one name", name))
			}
		}
	}
	return errs
}

// P2PIdleWarning says, when node.p2p is enabled but extra_toml turns on neither OCR nor OCR2, that the node will
// not listen on its P2P port: v2.19.0 makes its P2P key but starts the P2P stack only for OCR or OCR2
// (core/services/chainlink/application.go: "P2P stack not needed"), measured on the real node (test/ha
// TestP2PFollowsTheActive). "" otherwise. A warning, not an error: the node starts all the same.
func (n Node) P2PIdleWarning() string {
	if !n.P2P.Enabled || len(ocrEnabled(n.ExtraTOML)) > 0 {
		return ""
	}
	return "node.p2p.enabled is true but extra_toml turns on neither [OCR] nor [OCR2] Enabled: the node starts no " +
		"P2P listener without them, so its announced address reaches nothing"
}

// ocrEnabled lists the OCR switches that extra_toml turns on (OCR.Enabled, OCR2.Enabled).
func ocrEnabled(extra string) []string {
	var m map[string]any
	if extra == "" || toml.Unmarshal([]byte(extra), &m) != nil {
		return nil
	}
	var on []string
	for _, table := range []string{"OCR", "OCR2"} {
		if t, _ := m[table].(map[string]any); t["Enabled"] == true {
			on = append(on, table+".Enabled")
		}
	}
	return on
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

func walkExtra(m map[string]any, prefix string, shape []int, errs *[]error) {
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
		if err := checkExtraKey(path, agentPattern(path, shape), m[k]); err != nil {
			*errs = append(*errs, err)
			continue
		}
		switch v := m[k].(type) {
		case map[string]any:
			walkExtra(v, path, shape, errs)
		case []any:
			for i, e := range v {
				if t, ok := e.(map[string]any); ok {
					walkExtra(t, fmt.Sprintf("%s[%d]", path, i), shape, errs)
				}
			}
		}
	}
}

// checkExtraKey applies the rules to one key of extra_toml with its value; pattern is the path in AgentTOMLKeys'
// notation.
func checkExtraKey(path, pattern string, v any) error {
	if why, ok := AgentTOMLKeys[pattern]; ok {
		return keyError(path, ErrAgentOwned, "extra_toml may add keys but not set this one: %s", why)
	}
	if slices.Contains(secretTOML, path) {
		return keyError(path, ErrInvalid, "a secret belongs in secrets.toml, which the agent writes from Secrets Manager; never put one in config.toml")
	}
	if array, ok := agentTables[pattern]; ok {
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
