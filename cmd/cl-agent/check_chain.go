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

// checkChain contacts the chain client on both URLs as the node will and prints one line for each:
//
//	chain-http  node.http_url: eth_chainId is the configured chain (node.chain_id or node.network's), and
//	            eth_blockNumber answers, within checkTimeout
//	chain-ws    node.ws_url: connect, eth_chainId, eth_subscribe newHeads within checkTimeout, and a head arrives
//	            on the subscription within health.head_stall_after (at most chainHeadWait)
//
// A wrong chain or a URL of the other transport (the two swapped) is the configuration's fault: exit 2. Anything
// else (refused, timed out, no head) may pass on a retry: exit 1. Lines show URLs with scheme and host only.
func checkChain(ctx context.Context, c *config.Config, line func(name string, err error, detail string) bool, out io.Writer) {
	chainID, _ := c.Node.Chain()
	if c.Node.HTTPURL == "" {
		fmt.Fprintf(out, "skip  %-9s node.http_url is not set\n", "chain-http")
	} else {
		detail, err := health.ProbeChainHTTP(ctx, c.Node.HTTPURL, chainID, checkTimeout)
		line("chain-http", chainCheckError(err), detail)
	}
	wait := chainHeadWait
	if b := c.Health.HeadStallAfter; b > 0 && b < wait {
		wait = b
	}
	detail, err := health.ProbeChainWS(ctx, c.Node.WSURL, chainID, checkTimeout, wait)
	line("chain-ws", chainCheckError(err), detail)
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
