package health

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cl-agent/cl-agent/agent/state"
)

// newChainWS checks the chain client over WebSocket (node.ws_url, the transport the node lives on). Like the node,
// it keeps one connection with a newHeads subscription open across runs:
//
//   - on each new connection, eth_chainId must be the configured chain and eth_subscribe newHeads be granted;
//   - every run, eth_blockNumber must answer (cl_agent_rpc_latency_seconds{transport="ws"});
//   - a new head must arrive on the subscription within stallAfter of the last one. Before the first head the
//     bound runs from the first subscription, or from the one that followed a failure to connect. A granted
//     subscription that never delivers (geth --dev.period 0, a wedged provider) fails once the bound has
//     passed, however well eth_blockNumber answers.
//
// While a connection has delivered no head yet, a run waits for one until shortly before its deadline. A
// connection that ended between runs is dialled again; after a stall the subscription is dropped, so the next
// run subscribes afresh. Close ends the connection (the runner closes its checks when it stops).
func newChainWS(o chainOptions) Check {
	registerURLSecrets(o.url)
	if o.stallAfter <= 0 {
		o.stallAfter = defaultHeadStallAfter
	}
	return &chainWS{spec: spec{cmp.Or(o.name, string(state.ChainWS)), o.interval, o.timeout}, url: o.url,
		chainID: o.chainID, source: o.source, labels: labelsOf(o), stallAfter: o.stallAfter, reportHead: o.reportHead}
}

type chainWS struct {
	spec
	url        string
	chainID    uint64
	source     string
	labels     clientLabels
	stallAfter time.Duration
	reportHead bool

	mu         sync.Mutex // one run at a time; Close waits for it
	conn       *wsRPC     // nil: dial on the next run
	since      time.Time  // start of the bound while no head has come (see newChainWS)
	lastHeadAt time.Time  // when the newest head arrived, on any connection
	lastHead   uint64
	connFailed bool // the last run could not connect: the next connection starts the bound afresh
}

// target is the URL without its credentials.
func (c *chainWS) target() string { return redactURL(c.url) }

func (c *chainWS) Run(ctx context.Context) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	note, err := c.ensureConn(ctx)
	if err != nil {
		return chainFailure(ctx, c.name, c.url, c.timeout, err)
	}
	start := time.Now()
	var quantity string
	if err := c.conn.call(ctx, "eth_blockNumber", &quantity); err != nil {
		c.drop()
		return chainFailure(ctx, c.name, c.url, c.timeout, wsError(err, c.url))
	}
	took := time.Since(start)
	head, err := parseQuantity(quantity)
	if err != nil {
		return fail(c.name, fmt.Sprintf("%s: eth_blockNumber: %v", redactURL(c.url), err))
	}
	samples := []Sample{c.labels.sample(metricRPCLatency, "ws", took.Seconds())}
	if c.reportHead {
		samples = append(samples, c.labels.sample(metricChainHead, "", float64(head)))
	}
	answered := fmt.Sprintf("eth_blockNumber %d in %s", head, took.Round(time.Millisecond))
	return c.judgeHeads(ctx, answered, note, samples)
}

// ensureConn keeps one connection across runs, dialling again when the last one ended; note says so.
func (c *chainWS) ensureConn(ctx context.Context) (note string, err error) {
	if c.conn != nil {
		if gone, err := c.conn.ended(); gone {
			note = "; reconnected (the last connection ended: " + scrubURL(err, c.url) + ")"
			c.conn = nil
		}
	}
	if c.conn != nil {
		return note, nil
	}
	conn, _, err := connectWS(ctx, c.url, c.chainID, c.source)
	if err != nil {
		c.connFailed = true
		return "", err
	}
	c.conn = conn
	if c.since.IsZero() || c.connFailed {
		c.since = time.Now()
	}
	c.connFailed = false
	return note, nil
}

// judgeHeads passes while new heads arrive on the subscription within the stall bound (the first one too).
func (c *chainWS) judgeHeads(ctx context.Context, answered, note string, samples []Sample) Result {
	if n, _, _ := c.conn.lastHead(); n == 0 {
		c.conn.waitHead(ctx, 0, waitLimit(ctx, c.since.Add(c.stallAfter)))
	}
	if n, h, at := c.conn.lastHead(); n > 0 && at.After(c.lastHeadAt) {
		c.lastHead, c.lastHeadAt = h, at
	}
	from := c.since
	if c.lastHeadAt.After(from) {
		from = c.lastHeadAt
	}
	quiet := time.Since(from)
	switch {
	case quiet > c.stallAfter:
		c.drop() // a wedged subscription and a stalled chain look alike from here: subscribe afresh next run
		last := "none since subscribing"
		if !c.lastHeadAt.IsZero() {
			last = fmt.Sprintf("the last, %d, at %s", c.lastHead, c.lastHeadAt.UTC().Format(time.RFC3339))
		}
		return failBecause(c.name, "no new head on the newHeads subscription",
			fmt.Sprintf("%s: no new head on the newHeads subscription for %s (bound %s; %s), though %s",
				redactURL(c.url), quiet.Round(time.Second/10), c.stallAfter, last, answered)+note, samples...)
	case !c.lastHeadAt.After(c.since):
		return pass(c.name, fmt.Sprintf("newHeads subscribed %s ago, no head yet (one must arrive within %s); %s",
			quiet.Round(time.Second/10), c.stallAfter, answered)+note, samples...)
	}
	return pass(c.name, fmt.Sprintf("head %d arrived %s ago on the newHeads subscription; %s", c.lastHead,
		quiet.Round(time.Millisecond), answered)+note, samples...)
}

// Close ends the connection and its subscription.
func (c *chainWS) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
	return nil
}

func (c *chainWS) drop() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// waitLimit is how long a run may wait for a head: until shortly before its deadline (so that the run reports
// what it saw rather than being cut off), or until bound when the context has no deadline.
func waitLimit(ctx context.Context, bound time.Time) time.Time {
	deadline, ok := ctx.Deadline()
	if !ok {
		return bound
	}
	margin := min(time.Until(deadline)/5, 500*time.Millisecond)
	return deadline.Add(-margin)
}

// connectWS dials, checks the chain id (unless want is 0; source as compareChainID's) and subscribes to newHeads.
// It returns the chain id the client answered.
func connectWS(ctx context.Context, rawURL string, want uint64, source string) (*wsRPC, uint64, error) {
	key := urlKey(source, "ws")
	if err := requireScheme(rawURL, key, "ws", "wss"); err != nil {
		return nil, 0, err
	}
	conn, err := dialWS(ctx, rawURL, key)
	if err != nil {
		return nil, 0, err
	}
	var id string
	if err := conn.call(ctx, "eth_chainId", &id); err != nil {
		_ = conn.Close()
		return nil, 0, wsError(err, rawURL)
	}
	if err := compareChainID(rawURL, id, want, source); err != nil {
		_ = conn.Close()
		return nil, 0, err
	}
	if err := conn.subscribeHeads(ctx); err != nil {
		_ = conn.Close()
		return nil, 0, wsError(err, rawURL)
	}
	got, _ := parseQuantity(id) // compareChainID has parsed it
	return conn, got, nil
}

func wsError(err error, rawURL string) error { return urlError(rawURL, err) }
