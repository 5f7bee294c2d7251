package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Chain is one EVM chain of node.chains, rendered as one [[EVM]] table of config.toml.
type Chain struct {
	// Network is a built-in network name (see Networks). Give it or ChainID, not both.
	Network string `yaml:"network"`
	// ChainID is the chain's id, for a chain the table does not know.
	ChainID uint64 `yaml:"chain_id"`
	// LinkContract is the LINK token's address in EIP-55 checksum case. Optional: with Network, the table's
	// address; with ChainID and none, the node's own default for that chain (if it has one).
	LinkContract string `yaml:"link_contract"`
	// Nodes are the chain's RPC clients ([[EVM.Nodes]]); at least one is not send-only.
	Nodes []ChainNode `yaml:"nodes"`
}

// ChainNode is one RPC client of a chain.
type ChainNode struct {
	// Name is unique across all chains (the node's rule). Required.
	Name string `yaml:"name"`
	// WSURL (ws:// or wss://) is required unless SendOnly.
	WSURL string `yaml:"ws_url"`
	// HTTPURL (http:// or https://) is required for every node, send-only included.
	HTTPURL string `yaml:"http_url"`
	// SendOnly: the node only broadcasts transactions through it (HTTP); it never follows heads there.
	SendOnly bool `yaml:"send_only"`
}

// ShorthandNodeName is the name of the one chain client of the one-chain shorthand (node.ws_url, node.http_url).
const ShorthandNodeName = "primary"

// EVMChains is the node's chains as the agent renders them: node.chains with each network resolved to its chain
// id (and, unless link_contract is set, its LINK contract), or the one-chain shorthand as a chain with one client
// named "primary". The result is a copy.
func (n Node) EVMChains() []Chain {
	if len(n.Chains) == 0 {
		id, link := n.Chain()
		return []Chain{{ChainID: id, LinkContract: link,
			Nodes: []ChainNode{{Name: ShorthandNodeName, WSURL: n.WSURL, HTTPURL: n.HTTPURL}}}}
	}
	out := make([]Chain, len(n.Chains))
	for i, c := range n.Chains {
		if net, ok := LookupNetwork(c.Network); ok && c.ChainID == 0 {
			c.ChainID = net.ChainID
			if c.LinkContract == "" {
				c.LinkContract = net.LinkContract
			}
		}
		c.Nodes = append([]ChainNode(nil), c.Nodes...)
		out[i] = c
	}
	return out
}

// shorthandSet lists the one-chain shorthand keys the file sets (node.network counts when it is written at all,
// since it has a default).
func (v *validator) shorthandSet(n Node) []string {
	var set []string
	if _, ok := v.lines["node.network"]; ok {
		set = append(set, "node.network")
	}
	for key, val := range map[string]bool{
		"node.chain_id": n.ChainID != 0, "node.link_contract": n.LinkContract != "",
		"node.ws_url": n.WSURL != "", "node.http_url": n.HTTPURL != "",
	} {
		if val {
			set = append(set, key)
		}
	}
	return set
}

// chains applies to node.chains the rules the node applies to [[EVM]] (chainlink v2.19.0
// core/chains/evm/config/toml/config.go): unique chain ids (:42), unique client names across all chains (:50),
// unique WS and HTTP URLs (:60, :71), a chain id for every chain (:295), at least one client (:313) and at least
// one that is not send-only (:347), a WS URL on every primary client (:338: the log broadcaster is on by default,
// defaults/fallback.toml), a name on every client (:1069), WS URLs ws/wss (:1079), an HTTP URL on every client,
// http/https (:1084, :1091); and EIP-55 link addresses (core/chains/evm/types/address.go). node.chains is the 2.x
// form: node.format env (1.x, one chain in .env) is refused with it.
func (v *validator) chains(c *Config) {
	n := c.Node
	for _, key := range v.shorthandSet(n) {
		v.fail(key, "", detail(ErrInvalid, "node.chains and the one-chain shorthand (node.network, chain_id, link_contract, ws_url, http_url) exclude each other: move this chain into node.chains"))
	}
	if n.Format == "env" {
		v.fail("node.chains", "", detail(ErrInvalid, "node.format env (1.x) configures one chain in .env; node.chains needs toml (2.x)"))
	}
	chainAt := map[uint64]int{}
	nameAt, wsAt, httpAt := map[string]string{}, map[string]string{}, map[string]string{}
	for i, ch := range n.Chains {
		field := fmt.Sprintf("node.chains[%d]", i)
		id := v.chainID(field, ch)
		if id != 0 {
			if j, dup := chainAt[id]; dup {
				v.fail(field+".chain_id", strconv.FormatUint(id, 10), detail(ErrInvalid, "node.chains[%d] has this chain id too; the node refuses two chains with one id", j))
			} else {
				chainAt[id] = i
			}
		}
		if ch.LinkContract != "" {
			if err := CheckAddress(ch.LinkContract); err != nil {
				v.fail(field+".link_contract", ch.LinkContract, err)
			}
		}
		if len(ch.Nodes) == 0 {
			v.fail(field+".nodes", "", detail(ErrRequired, "a chain needs at least one RPC client (name, ws_url, http_url)"))
			continue
		}
		primary := false
		for j, nd := range ch.Nodes {
			nf := fmt.Sprintf("%s.nodes[%d]", field, j)
			primary = primary || !nd.SendOnly
			if v.required(nf+".name", nd.Name) {
				v.unique(nameAt, nd.Name, nf+".name", "name")
			}
			switch {
			case nd.WSURL != "":
				if v.url(nf+".ws_url", nd.WSURL, "ws", "wss") {
					v.unique(wsAt, canonicalURL(nd.WSURL), nf+".ws_url", "ws_url")
				}
			case !nd.SendOnly:
				v.fail(nf+".ws_url", "", detail(ErrRequired, "a client that is not send_only needs a WebSocket URL: the node follows heads and logs over it"))
			}
			if !v.required(nf+".http_url", nd.HTTPURL) {
				continue
			}
			if v.url(nf+".http_url", nd.HTTPURL, "http", "https") {
				v.unique(httpAt, canonicalURL(nd.HTTPURL), nf+".http_url", "http_url")
			}
		}
		if !primary {
			v.fail(field+".nodes", "", detail(ErrInvalid, "every client is send_only; the node needs at least one primary (send_only: false) per chain"))
		}
	}
}

// chainID resolves one entry's chain id (network xor chain_id), reporting what is wrong; 0 when it cannot.
func (v *validator) chainID(field string, ch Chain) uint64 {
	switch {
	case ch.Network != "" && ch.ChainID != 0:
		v.fail(field+".chain_id", strconv.FormatUint(ch.ChainID, 10), detail(ErrInvalid, "give network or chain_id, not both"))
		return 0
	case ch.ChainID != 0:
		return ch.ChainID
	case ch.Network == "":
		v.fail(field+".network", "", detail(ErrRequired, "a built-in network name (%s) or chain_id", strings.Join(NetworkNames(), ", ")))
		return 0
	}
	net, ok := LookupNetwork(ch.Network)
	switch {
	case !ok:
		v.fail(field+".network", ch.Network, detail(ErrUnknownNetwork, "use one of %s, or chain_id", strings.Join(NetworkNames(), ", ")))
		return 0
	case net.Retired:
		v.fail(field+".network", ch.Network, detail(ErrUnknownNetwork, "this network has been shut down; use one of %s", strings.Join(NetworkNames(), ", ")))
		return 0
	}
	return net.ChainID
}

// unique records value under field in seen, or reports the field that already has it.
func (v *validator) unique(seen map[string]string, value, field, what string) {
	if other, dup := seen[value]; dup {
		v.fail(field, value, detail(ErrInvalid, "%s has this %s too; the node refuses two chain clients with one %s, across all chains", other, what, what))
		return
	}
	seen[value] = field
}

// canonicalURL is the form the node compares URLs in (url.URL's String).
func canonicalURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.String()
}
