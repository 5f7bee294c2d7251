package health

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/cl-agent/cl-agent/agent/state"
)

// ChainClient is one RPC client of one of the node's chains (config.Node.EVMChains: a node.chains entry's
// client, or the one-chain shorthand's), as the chain checks see it.
type ChainClient struct {
	// ChainID is the client's chain: its eth_chainId must answer this id (0 leaves the comparison out).
	ChainID uint64
	// Name is the client's name (node.chains[].nodes[].name; "primary" for the shorthand).
	Name string
	// HTTPURL is its http_url ("" leaves out its HTTP check); WSURL its ws_url ("" leaves out its WebSocket
	// check). Either may carry credentials: results, errors and logs show only scheme and host.
	HTTPURL, WSURL string
	// SendOnly: the node only broadcasts transactions through this client and never follows heads there, so it
	// gets the HTTP check's chain id and reachability only: no head tracking and no WebSocket check.
	SendOnly bool
	// Shorthand marks the one-chain shorthand's client (node.network, ws_url, http_url): its checks keep the ids
	// chain_http and chain_ws, and its CloudWatch datums the dimensions they had before node.chains existed.
	Shorthand bool
}

// CheckName is the name of this client's check called base (state.ChainHTTP or state.ChainWS; `cl-agent check`
// passes its own "chain-http" and "chain-ws"): base itself for the shorthand's client, else
// base/<chain id>/<name> with the name path-escaped ("chain_http/137/polygon-a"). Names are unique across all
// chains and path escaping is one-to-one, so every client's checks have their own names; and the escaped form is
// printable ASCII without white space, which both a Prometheus label value and a CloudWatch dimension value take
// as it is (CloudWatch refuses non-ASCII dimension values).
func (c ChainClient) CheckName(base string) string {
	if c.Shorthand {
		return base
	}
	return base + "/" + strconv.FormatUint(c.ChainID, 10) + "/" + c.label()
}

// label is the client's name as the metrics' node label and CloudWatch's Node dimension have it (see CheckName).
func (c ChainClient) label() string { return url.PathEscape(c.Name) }

// source says where the configuration names the client's chain, for a wrong chain's message.
func (c ChainClient) source() string {
	if c.Shorthand {
		return "" // compareChainID's "node.chain_id or node.network"
	}
	return fmt.Sprintf("node.chains, client %q", c.Name)
}

// options are the chain checks' options for this client, without the URL and the name of either check.
func (c ChainClient) options(o Options) chainOptions {
	return chainOptions{chainID: c.ChainID, source: c.source(), node: c.label(), stallAfter: o.HeadStallAfter,
		interval: o.CheckInterval, timeout: o.CheckTimeout}
}

// chainChecks builds every client's checks: over HTTP when it has an http_url (chain id, eth_blockNumber and its
// latency, the head rising within HeadStallAfter), and over WebSocket when it has a ws_url and is not send-only
// (chain id, a kept-open newHeads subscription that delivers within HeadStallAfter).
func chainChecks(o Options) []Check {
	var out []Check
	for _, c := range o.Chains {
		if c.HTTPURL != "" {
			h := c.options(o)
			h.name, h.url = c.CheckName(string(state.ChainHTTP)), c.HTTPURL
			if c.SendOnly {
				// A send-only client only broadcasts: the node never reads heads from it, so a head standing still
				// there harms nothing. What matters is that it is on the right chain and answers.
				h.stallAfter = 0
			}
			out = append(out, newChainHTTP(h))
		}
		if c.WSURL != "" && !c.SendOnly {
			w := c.options(o)
			w.name, w.url = c.CheckName(string(state.ChainWS)), c.WSURL
			w.reportHead = c.HTTPURL == "" // the HTTP check publishes the client's head when there is one
			out = append(out, newChainWS(w))
		}
	}
	return out
}

// perClientDimensions reports whether the chain figures go to CloudWatch with the ChainId and Node dimensions:
// with node.chains, yes (each client its own metric); the shorthand's one client keeps the dimensions it had.
func perClientDimensions(clients []ChainClient) bool {
	for _, c := range clients {
		if !c.Shorthand {
			return true
		}
	}
	return false
}
