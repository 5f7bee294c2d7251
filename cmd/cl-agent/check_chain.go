package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/exitcode"
	"github.com/cl-agent/cl-agent/agent/health"
)

// chainHeadWait caps how long `check` waits for a head on the newHeads subscription (health.head_stall_after,
// 2m by default, is the daemon's bound; a preflight should not take that long).
const chainHeadWait = 30 * time.Second

// checkChain contacts every chain client (chainClients) as the node will and prints one line for each transport:
//
//	chain-http  http_url: eth_chainId is the client's chain (node.chain_id or node.network's; its node.chains
//	            entry's), and eth_blockNumber answers, within checkTimeout
//	chain-ws    ws_url: connect, eth_chainId, eth_subscribe newHeads within checkTimeout, and a head arrives on
//	            the subscription within health.head_stall_after (at most chainHeadWait); skipped for a send-only
//	            client, which the node uses only to broadcast transactions over HTTP
//
// The one-chain shorthand's lines are named chain-http and chain-ws; with node.chains each line carries the
// client's chain id and name as the daemon's checks do (chain-http/137/polygon-a). A wrong chain or a URL of the
// other transport (the two swapped) is the configuration's fault: exit 2. Anything else (refused, timed out, no
// head) may pass on a retry: exit 1. Lines show URLs with scheme and host only.
func checkChain(ctx context.Context, c *config.Config, line func(name string, err error, detail string) bool, out io.Writer) {
	wait := chainHeadWait
	if b := c.Health.HeadStallAfter; b > 0 && b < wait {
		wait = b
	}
	for _, cl := range chainClients(c.Node) {
		checkChainClient(ctx, cl, wait, line, out)
	}
}

// checkChainClient prints the chain-http and chain-ws lines of one client.
func checkChainClient(ctx context.Context, cl health.ChainClient, wait time.Duration, line func(string, error, string) bool, out io.Writer) {
	httpName, wsName := cl.CheckName("chain-http"), cl.CheckName("chain-ws")
	if cl.HTTPURL == "" { // only the shorthand's: a node.chains client without one is refused at load
		fmt.Fprintf(out, "skip  %-9s node.http_url is not set\n", httpName)
	} else {
		detail, err := health.ProbeChainHTTP(ctx, cl, checkTimeout)
		line(httpName, chainCheckError(err), detail)
	}
	if cl.SendOnly {
		fmt.Fprintf(out, "skip  %-9s send_only: the node only broadcasts transactions through this client, over HTTP\n", wsName)
		return
	}
	detail, err := health.ProbeChainWS(ctx, cl, checkTimeout, wait)
	line(wsName, chainCheckError(err), detail)
}

// chainConfigError is a chain failure the configuration causes: exit 2.
type chainConfigError struct{ error }

func (e chainConfigError) ExitCode() int { return exitcode.Config }
func (e chainConfigError) Unwrap() error { return e.error }

func chainCheckError(err error) error {
	if errors.Is(err, health.ErrWrongChain) || errors.Is(err, health.ErrWrongEndpoint) {
		return chainConfigError{err}
	}
	return err
}
