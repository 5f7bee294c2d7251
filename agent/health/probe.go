package health

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ProbeChainHTTP is the HTTP chain check of one client done once, for `cl-agent check`: at c.HTTPURL,
// eth_chainId must be c.ChainID (0: any) and eth_blockNumber answer, all within timeout (a send-only client the
// same: no head is tracked here). It returns one line; its errors name the URL (without credentials) and wrap
// ErrWrongChain or ErrWrongEndpoint when the configuration is at fault.
func ProbeChainHTTP(ctx context.Context, c ChainClient, timeout time.Duration) (string, error) {
	rawURL := c.HTTPURL
	registerURLSecrets(rawURL)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := newHTTPClient()
	defer client.CloseIdleConnections()
	got, head, took, err := probeHTTP(ctx, client, rawURL, c.ChainID, c.source())
	if err != nil {
		return "", probeError(ctx, rawURL, timeout, err)
	}
	return fmt.Sprintf("%s: chain %d, head %d (eth_blockNumber in %s)", redactURL(rawURL), got, head,
		took.Round(time.Millisecond)), nil
}

// ProbeChainWS is the WebSocket chain check of one client done once, for `cl-agent check`: connect to c.WSURL,
// eth_chainId must be c.ChainID (0: any), eth_subscribe newHeads be granted (all within timeout), and a head
// arrive on the subscription within headWithin. It returns one line; errors as ProbeChainHTTP's.
func ProbeChainWS(ctx context.Context, c ChainClient, timeout, headWithin time.Duration) (string, error) {
	rawURL := c.WSURL
	registerURLSecrets(rawURL)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, got, err := connectWS(cctx, rawURL, c.ChainID, c.source())
	if err != nil {
		return "", probeError(cctx, rawURL, timeout, err)
	}
	defer conn.Close()
	start := time.Now()
	if !conn.waitHead(ctx, 0, start.Add(headWithin)) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if gone, err := conn.ended(); gone {
			return "", wsError(fmt.Errorf("the connection ended: %w", err), rawURL)
		}
		return "", fmt.Errorf("%s: newHeads subscription granted, but no head arrived within %s (health.head_stall_after)",
			redactURL(rawURL), headWithin)
	}
	_, head, _ := conn.lastHead()
	return fmt.Sprintf("%s: chain %d, newHeads subscription delivered head %d after %s", redactURL(rawURL), got,
		head, time.Since(start).Round(time.Millisecond)), nil
}

// probeError names the URL and the bound of a probe that ran out of time.
func probeError(ctx context.Context, rawURL string, bound time.Duration, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: no answer within %s", redactURL(rawURL), bound)
	}
	return err
}
