package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// ChainHTTP checks the chain client over HTTP (node.http_url): eth_blockNumber answers, its round trip is
// cl_agent_rpc_latency_seconds{transport="http"}, and with stallAfter > 0 the head must rise within stallAfter
// (a client stuck on an old block fails even though it answers).
func ChainHTTP(rpcURL string, stallAfter, interval, timeout time.Duration) Check {
	c := &chainHTTP{spec: spec{"chain_http", interval, timeout}, url: rpcURL, client: newHTTPClient()}
	if stallAfter > 0 {
		c.heads = &headTracker{stallAfter: stallAfter}
	}
	return c
}

type chainHTTP struct {
	spec
	url    string
	client *http.Client
	heads  *headTracker // nil: the head is not tracked by this check
}

func (c *chainHTTP) Run(ctx context.Context) Result {
	start := time.Now()
	var quantity string
	if err := callHTTP(ctx, c.client, c.url, "eth_blockNumber", &quantity); err != nil {
		return fail(c.name, redactURL(c.url)+": "+scrubURL(err, c.url))
	}
	return headResult(c.name, "http", quantity, time.Since(start), c.heads)
}

// headResult turns an eth_blockNumber answer into a result with the latency and, when tracked, the head.
func headResult(name, transport, quantity string, took time.Duration, heads *headTracker) Result {
	samples := []Sample{{Metric: MetricRPCLatency, Label: transport, Value: took.Seconds()}}
	head, err := parseQuantity(quantity)
	if err != nil {
		return fail(name, "eth_blockNumber: "+err.Error(), samples...)
	}
	if heads == nil {
		return pass(name, fmt.Sprintf("head %d in %s", head, took.Round(time.Millisecond)), samples...)
	}
	samples = append(samples, Sample{Metric: MetricChainHead, Value: float64(head)})
	ok, detail := heads.observe(head, time.Now())
	detail += fmt.Sprintf(", answered in %s", took.Round(time.Millisecond))
	if !ok {
		return fail(name, detail, samples...)
	}
	return pass(name, detail, samples...)
}

// ChainWS checks the chain client over WebSocket (node.ws_url, the one the node needs): connect, eth_blockNumber
// (its round trip is cl_agent_rpc_latency_seconds{transport="ws"}), and eth_subscribe newHeads must be granted.
// With stallAfter > 0 it also tracks the head (use it when there is no http_url).
func ChainWS(wsURL string, stallAfter, interval, timeout time.Duration) Check {
	c := &chainWS{spec: spec{"chain_ws", interval, timeout}, url: wsURL}
	if stallAfter > 0 {
		c.heads = &headTracker{stallAfter: stallAfter}
	}
	return c
}

type chainWS struct {
	spec
	url   string
	heads *headTracker
}

func (c *chainWS) Run(ctx context.Context) Result {
	conn, _, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{HTTPClient: newHTTPClient()})
	if err != nil {
		return fail(c.name, fmt.Sprintf("connect to %s: %s", redactURL(c.url), scrubURL(err, c.url)))
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxBody)
	start := time.Now()
	var quantity string
	if err := callWS(ctx, conn, "eth_blockNumber", &quantity); err != nil {
		return fail(c.name, redactURL(c.url)+": "+scrubURL(err, c.url))
	}
	took := time.Since(start)
	var subID string
	if err := callWS(ctx, conn, "eth_subscribe", &subID, "newHeads"); err != nil {
		return fail(c.name, redactURL(c.url)+": "+scrubURL(err, c.url))
	}
	if subID == "" {
		return fail(c.name, redactURL(c.url)+": eth_subscribe newHeads granted no subscription id")
	}
	var ok bool
	_ = callWS(ctx, conn, "eth_unsubscribe", &ok, subID) // courtesy: closing the connection ends it anyway
	_ = conn.Close(websocket.StatusNormalClosure, "")
	res := headResult(c.name, "ws", quantity, took, c.heads)
	if res.OK {
		res.Detail += "; newHeads subscription granted"
	}
	return res
}

// callWS makes one JSON-RPC call on conn and reads until its answer, skipping notifications.
func callWS(ctx context.Context, conn *websocket.Conn, method string, out any, params ...any) error {
	req := newRPCRequest(method, params...)
	if err := wsjson.Write(ctx, conn, req); err != nil {
		return fmt.Errorf("%s: send: %w", method, err)
	}
	for {
		var r rpcResponse
		if err := wsjson.Read(ctx, conn, &r); err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		if r.ID != nil && *r.ID == req.ID {
			return r.result(method, out)
		}
	}
}

// redactURL keeps the scheme and host of a chain URL and drops the rest: providers put API keys in the user
// info, the path (…/v3/KEY) or the query.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the chain client"
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" {
		out += "/…"
	}
	return out
}

// scrubURL is err's text with every spelling of the chain URL (as given, as the HTTP request the WebSocket dial
// makes, as net/http's url.Error quotes it) replaced by its redacted form.
func scrubURL(err error, raw string) string {
	text := err.Error()
	spellings := []string{raw, strings.Replace(strings.Replace(raw, "wss://", "https://", 1), "ws://", "http://", 1)}
	var ue *url.Error
	if errors.As(err, &ue) {
		spellings = append(spellings, ue.URL)
	}
	for _, s := range spellings {
		if s != "" {
			text = strings.ReplaceAll(text, s, redactURL(raw))
		}
	}
	return text
}
