package main

import (
	"context"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// Bounds of the modelled chain client (standin-dial-chain).
const (
	chainDialBound  = 5 * time.Second // one WebSocket dial
	chainRedialWait = time.Second     // between the end of a connection (or a failed dial) and the next dial
)

// chainClient models the node's connection to its chain client, when standin-dial-chain asks for it: it keeps a
// WebSocket open to every primary node of the chain (the WSURLs of [[EVM.Nodes]], or 1.x ETH_URL), redialling
// while one is down, and counts the open ones in state. The real node's head listener is "connected" while
// one is; /health then passes EVM.<id>.HeadTracker.HeadListener and /v2/keys/eth knows balances. It only
// connects: it reads no heads (the node's "Listener is not receiving heads" is not modelled).
type chainClient struct {
	urls  []string
	state *nodeState
	log   *zap.Logger
}

// run keeps the connections until ctx ends and returns once every one is closed.
func (c *chainClient) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, u := range c.urls {
		wg.Go(func() { c.keep(ctx, u) })
	}
	wg.Wait()
}

// keep dials rawURL, holds the connection until it ends, and dials again, until ctx ends. It logs each change.
func (c *chainClient) keep(ctx context.Context, rawURL string) {
	wasDown := false
	for ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(ctx, chainDialBound)
		conn, _, err := websocket.Dial(dctx, rawURL, nil)
		cancel()
		if err == nil {
			c.state.chainConns.Add(1)
			c.log.Info("chain client connected", zap.String("node", redactedURL(rawURL)))
			for err == nil {
				_, _, err = conn.Read(ctx) // answers pings; returns when the connection or ctx ends
			}
			c.state.chainConns.Add(-1)
			_ = conn.CloseNow()
			wasDown = false
		}
		if !wasDown && ctx.Err() == nil {
			// Not the error: it quotes the whole URL, whose path or query may hold the provider's key.
			c.log.Warn("chain client not connected", zap.String("node", redactedURL(rawURL)))
			wasDown = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(chainRedialWait):
		}
	}
}

// redactedURL is a chain URL fit for a log line: scheme and host only (a provider's key may be in the path, the
// query or the user info).
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	return u.Scheme + "://" + u.Host
}
