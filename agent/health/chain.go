package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cl-agent/cl-agent/agent/logging"

	"github.com/cl-agent/cl-agent/agent/state"
)

// Kinds of chain failures that are the configuration's, not the moment's (`cl-agent check` exits 2 on them).
var (
	// ErrWrongChain: the chain client answers eth_chainId with another chain than the configured one.
	ErrWrongChain = errors.New("the chain client serves another chain")
	// ErrWrongEndpoint: the URL is not an endpoint of its transport, typically node.http_url and node.ws_url
	// swapped (geth serves HTTP and WebSocket on two ports).
	ErrWrongEndpoint = errors.New("not a JSON-RPC endpoint of this transport")
)

// chainError is a chain failure: its text names the URL (redacted) and what was seen. kind is ErrWrongChain or
// ErrWrongEndpoint when the configuration is at fault; cause is the underlying error, kept for errors.Is/As
// only (its own text may quote the URL with its credentials).
type chainError struct {
	kind  error
	msg   string
	cause error
}

func (e *chainError) Error() string { return e.msg }

func (e *chainError) Unwrap() []error {
	var out []error
	for _, err := range []error{e.kind, e.cause} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// urlError is err prefixed with the redacted URL, with every spelling of the URL and its credentials scrubbed.
func urlError(rawURL string, err error) error {
	return &chainError{msg: redactURL(rawURL) + ": " + scrubURL(err, rawURL), cause: err}
}

// chainOptions configure newChainHTTP and newChainWS.
type chainOptions struct {
	// name is the check's name; "" is the one-chain shorthand's state.ChainHTTP or state.ChainWS.
	name string
	// url is the client's http_url or ws_url. It may carry credentials (user info, an API key in the path or the
	// query): results, errors and logs show only its scheme and host.
	url string
	// chainID is the chain the node is configured for (node.chain_id, or node.network's; a node.chains entry's).
	// The client's eth_chainId must match it; 0 leaves the comparison out.
	chainID uint64
	// source says where the configuration names the chain, for a wrong chain's message; "" is the shorthand's
	// "node.chain_id or node.network".
	source string
	// node is the client's name as the metrics' node label has it (ChainClient.label); "" for none.
	node string
	// stallAfter: over HTTP the head (eth_blockNumber) must rise within it (0: the head is not tracked); over
	// WebSocket a new head must arrive on the newHeads subscription within it (0: defaultHeadStallAfter).
	stallAfter time.Duration
	// reportHead makes the WebSocket check publish cl_agent_chain_head (when no HTTP check does).
	reportHead bool
	interval   time.Duration
	timeout    time.Duration
}

// newChainHTTP checks the chain client over HTTP (node.http_url): eth_chainId is the configured chain,
// eth_blockNumber answers (its round trip is cl_agent_rpc_latency_seconds{transport="http"}), and with
// stallAfter > 0 the head must rise within stallAfter (a client stuck on an old block fails even though it
// answers).
func newChainHTTP(o chainOptions) Check {
	registerURLSecrets(o.url)
	c := &chainHTTP{spec: spec{cmp.Or(o.name, string(state.ChainHTTP)), o.interval, o.timeout}, url: o.url,
		chainID: o.chainID, source: o.source, labels: labelsOf(o), client: newHTTPClient()}
	if o.stallAfter > 0 {
		c.heads = &headTracker{stallAfter: o.stallAfter}
	}
	return c
}

type chainHTTP struct {
	spec
	url     string
	chainID uint64
	source  string
	labels  clientLabels
	client  *http.Client
	heads   *headTracker // nil: the head is not tracked by this check
}

// clientLabels are the chain_id and node labels of a chain check's figures.
type clientLabels struct{ chainID, node string }

func labelsOf(o chainOptions) clientLabels {
	return clientLabels{chainID: strconv.FormatUint(o.chainID, 10), node: o.node}
}

// sample is one figure of this client.
func (l clientLabels) sample(metric, label string, value float64) Sample {
	return Sample{Metric: metric, Label: label, ChainID: l.chainID, Node: l.node, Value: value}
}

// target is the URL without its credentials.
func (c *chainHTTP) target() string { return redactURL(c.url) }

func (c *chainHTTP) Run(ctx context.Context) Result {
	_, head, took, err := probeHTTP(ctx, c.client, c.url, c.chainID, c.source)
	if err != nil {
		return chainFailure(ctx, c.name, c.url, c.timeout, err)
	}
	return headResult(c.name, c.labels, head, took, c.heads)
}

// probeHTTP checks the chain id (unless want is 0; source as compareChainID's) and returns it, the head and the
// round trip of eth_blockNumber.
func probeHTTP(ctx context.Context, client *http.Client, rawURL string, want uint64, source string) (chainID, head uint64, took time.Duration, err error) {
	key := urlKey(source, "http")
	if err := requireScheme(rawURL, key, "http", "https"); err != nil {
		return 0, 0, 0, err
	}
	var id string
	if err := callHTTP(ctx, client, rawURL, "eth_chainId", &id); err != nil {
		return 0, 0, 0, httpError(err, rawURL, key)
	}
	if err := compareChainID(rawURL, id, want, source); err != nil {
		return 0, 0, 0, err
	}
	chainID, _ = parseQuantity(id) // compareChainID has parsed it
	start := time.Now()
	var quantity string
	if err := callHTTP(ctx, client, rawURL, "eth_blockNumber", &quantity); err != nil {
		return chainID, 0, 0, httpError(err, rawURL, key)
	}
	took = time.Since(start)
	if head, err = parseQuantity(quantity); err != nil {
		return chainID, 0, took, fmt.Errorf("%s: eth_blockNumber: %w", redactURL(rawURL), err)
	}
	return chainID, head, took, nil
}

// httpError names the URL and, for a status that says "not a JSON-RPC HTTP endpoint", what is likely wrong with
// the configuration key (urlKey).
func httpError(err error, rawURL, key string) error {
	var se *httpStatusError
	if errors.As(err, &se) && (se.code == http.StatusNotFound || se.code == http.StatusMethodNotAllowed) {
		return &chainError{kind: ErrWrongEndpoint, msg: fmt.Sprintf("%s: %s: not a JSON-RPC HTTP endpoint "+
			"(is %s the WebSocket port, or the path wrong?)", redactURL(rawURL), scrubURL(err, rawURL), key), cause: err}
	}
	return urlError(rawURL, err)
}

// compareChainID checks an eth_chainId answer against the configured chain (0: any). source says where the
// configuration names that chain ("": the shorthand's node.chain_id or node.network).
func compareChainID(rawURL, quantity string, want uint64, source string) error {
	got, err := parseQuantity(quantity)
	if err != nil {
		return fmt.Errorf("%s: eth_chainId: %w", redactURL(rawURL), err)
	}
	if want != 0 && got != want {
		return &chainError{kind: ErrWrongChain, msg: fmt.Sprintf("wrong chain: %s answers eth_chainId %d; the "+
			"configuration expects %d (%s)", redactURL(rawURL), got, want, cmp.Or(source, "node.chain_id or node.network"))}
	}
	return nil
}

// urlKey names the configuration key of a client's URL for a hint (source as compareChainID's): the shorthand's
// node.http_url or node.ws_url, or the http_url or ws_url of a node.chains client.
func urlKey(source, transport string) string {
	if source == "" {
		return "node." + transport + "_url"
	}
	return transport + "_url of " + source
}

// requireScheme fails a URL of the other transport with a message that says so.
func requireScheme(rawURL, key string, schemes ...string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%s is not a URL", key)
	}
	for _, s := range schemes {
		if strings.EqualFold(u.Scheme, s) {
			return nil
		}
	}
	return &chainError{kind: ErrWrongEndpoint, msg: fmt.Sprintf("%s: %s must be %s:// (swapped with the other "+
		"chain URL?)", redactURL(rawURL), key, strings.Join(schemes, ":// or "))}
}

// chainFailure turns a chain error into a failed result. A run that hit its deadline reads like the runner's
// own timeout (same detail, same reason), whichever of the two saw it first. A network error's reason leaves out
// the addresses that change from run to run (the local port of "read tcp 127.0.0.1:53842->…").
func chainFailure(ctx context.Context, name, rawURL string, bound time.Duration, err error) Result {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return timedOut(name, redactURL(rawURL), bound)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return failBecause(name, redactURL(rawURL)+": "+op.Op+": "+op.Err.Error(), err.Error())
	}
	return fail(name, err.Error())
}

// headResult turns an eth_blockNumber answer over HTTP into a result with the latency and, when tracked, the head.
func headResult(name string, labels clientLabels, head uint64, took time.Duration, heads *headTracker) Result {
	samples := []Sample{labels.sample(metricRPCLatency, "http", took.Seconds())}
	if heads == nil {
		return pass(name, fmt.Sprintf("head %d in %s", head, took.Round(time.Millisecond)), samples...)
	}
	samples = append(samples, labels.sample(metricChainHead, "", float64(head)))
	ok, detail := heads.observe(head, time.Now())
	detail += fmt.Sprintf(", answered in %s", took.Round(time.Millisecond))
	if !ok {
		return failBecause(name, fmt.Sprintf("head stuck at %d", heads.current()), detail, samples...)
	}
	return pass(name, detail, samples...)
}

// redactURL keeps the scheme and host of a chain URL and drops the rest, marking a path or a query with "…":
// providers put API keys in the user info, the path (…/v3/KEY) or the query.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the chain client"
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" {
		out += "/…"
	}
	if u.RawQuery != "" { // say there is more, without showing it
		if !strings.HasSuffix(out, "…") {
			out += "/"
		}
		out += "?…"
	}
	return out
}

// scrubURL is err's text with every spelling of the chain URL (as given, as the HTTP request the WebSocket dial
// makes, as net/http's url.Error quotes it) replaced by its redacted form, and any credential of the URL that a
// server echoed in its answer masked.
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
	for _, s := range urlSecrets(raw) {
		text = strings.ReplaceAll(text, s, logging.Mask)
	}
	return text
}

// urlSecrets are the parts of a chain URL that may be credentials: the user info, the query's values and the
// path's long segments (API keys: "/v3/KEY"). Short parts ("/ws", "?v=2") are left alone: masking them would
// mangle ordinary text.
func urlSecrets(raw string) []string {
	const minLen = 8
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if len(s) >= minLen {
			out = append(out, s)
		}
	}
	if u.User != nil {
		add(u.User.Username())
		if p, ok := u.User.Password(); ok {
			add(p)
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if len(seg) >= 16 {
			add(seg)
		}
	}
	return out
}

// registerURLSecrets hands a chain URL's credentials to the process's redactor, so that no log line or output of
// the agent shows them, whoever writes it.
func registerURLSecrets(raw string) { logging.Register(urlSecrets(raw)...) }
