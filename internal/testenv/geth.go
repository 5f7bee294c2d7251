package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Geth is a real chain client: go-ethereum v1.17.10 in developer mode (`geth --dev`) on loopback, built from its
// Go module by test/images/geth/build.sh. Chain id 1337; JSON-RPC (eth, net, web3) over HTTP and WebSocket on two
// ports, so a swapped pair of URLs fails as it does against a real client (404 for a POST to the WebSocket port,
// HTTP 200 instead of 101 for a WebSocket dial to the HTTP port). The dev account is funded and unlocked: Fund
// sends from it. The chain lives in dir and dies with Stop.
type Geth struct {
	HTTPURL string // http://127.0.0.1:PORT
	WSURL   string // ws://127.0.0.1:PORT2
	ChainID uint64 // 1337
	Dev     string // the unlocked dev account's address

	proc   *proc
	client *http.Client
}

// GethChainID is the chain id of geth's developer mode.
const GethChainID = 1337

// gethBuildTimeout bounds build.sh: a cold build (module download and a cgo compile) takes minutes on 2 cores.
const gethBuildTimeout = 15 * time.Minute

// GethOption changes how StartGeth and GethT run geth.
type GethOption func(*gethOptions)

type gethOptions struct {
	period int    // --dev.period
	vhosts string // --http.vhosts
}

// GethPeriod sets the block period in seconds (default 1). 0 mines only when a transaction is pending: the head
// stays where it is, and a newHeads subscription is granted but never notified.
func GethPeriod(seconds int) GethOption { return func(o *gethOptions) { o.period = seconds } }

// GethVHosts sets --http.vhosts (default "*"). A request naming another host (by name: IP addresses always pass)
// gets 403 "invalid host specified".
func GethVHosts(hosts string) GethOption { return func(o *gethOptions) { o.vhosts = hosts } }

var gethBinary struct {
	sync.Mutex
	path string
}

// GethBinary returns the geth executable, running test/images/geth/build.sh (from the module root) once per
// process: it builds geth into a content-keyed cache directory the first time and prints the cached path after.
func GethBinary(ctx context.Context) (string, error) {
	gethBinary.Lock()
	defer gethBinary.Unlock()
	if gethBinary.path != "" {
		if _, err := os.Stat(gethBinary.path); err == nil {
			return gethBinary.path, nil
		}
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, gethBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "test/images/geth/build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("test/images/geth/build.sh (bound %s): %w: %s", gethBuildTimeout, err, strings.TrimSpace(stderr.String()))
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("test/images/geth/build.sh printed %q: %w", p, err)
	}
	gethBinary.path = p
	return p, nil
}

// StartGeth builds geth if needed, starts it on two free loopback ports with its data and log (geth.log) in dir,
// and returns once both ports are geth's own and it answers eth_chainId over HTTP and a WebSocket handshake.
func StartGeth(ctx context.Context, dir string, opts ...GethOption) (*Geth, error) {
	o := gethOptions{period: 1, vhosts: "*"}
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := GethBinary(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("geth dir: %w", err)
	}
	for range bindAttempts {
		var g *Geth
		if g, err = startGeth(ctx, bin, dir, o); err == nil || !errors.Is(err, errAddrInUse) {
			return g, err
		}
	}
	return nil, err
}

func startGeth(ctx context.Context, bin, dir string, o gethOptions) (*Geth, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	wsPort, err := freePort()
	for err == nil && wsPort == httpPort {
		wsPort, err = freePort()
	}
	if err != nil {
		return nil, err
	}
	// A fresh data directory per start: the dev chain begins at block 0 with a new funded account.
	data, err := os.MkdirTemp(dir, "data-")
	if err != nil {
		return nil, fmt.Errorf("geth data dir: %w", err)
	}
	cmd := exec.Command(bin, "--dev", "--dev.period", strconv.Itoa(o.period), "--datadir", data,
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(httpPort), "--http.api", "eth,net,web3",
		"--http.vhosts", o.vhosts,
		"--ws", "--ws.addr", "127.0.0.1", "--ws.port", strconv.Itoa(wsPort), "--ws.api", "eth,net,web3", "--ws.origins", "*",
		"--ipcdisable", "--nodiscover", "--maxpeers", "0", "--cache", "64")
	cmd.Dir = dir
	p, err := startProc("geth", filepath.Join(dir, "geth.log"), cmd)
	if err != nil {
		return nil, err
	}
	g := &Geth{HTTPURL: "http://127.0.0.1:" + strconv.Itoa(httpPort), WSURL: "ws://127.0.0.1:" + strconv.Itoa(wsPort),
		ChainID: GethChainID, proc: p, client: &http.Client{Transport: &http.Transport{Proxy: nil}}}
	if err := p.waitReady(ctx, httpPort, func(ctx context.Context) error {
		var id string
		if err := g.Call(ctx, "eth_chainId", &id); err != nil {
			return err
		}
		if n, err := strconv.ParseUint(strings.TrimPrefix(id, "0x"), 16, 64); err != nil || n != GethChainID {
			return fmt.Errorf("eth_chainId %q; want %d", id, GethChainID)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, wsPort, func(ctx context.Context) error {
		conn, _, err := websocket.Dial(ctx, g.WSURL, nil)
		if err != nil {
			return err
		}
		return conn.Close(websocket.StatusNormalClosure, "")
	}); err != nil {
		return nil, err
	}
	var accounts []string
	if err := g.Call(ctx, "eth_accounts", &accounts); err != nil || len(accounts) == 0 {
		_ = g.Stop()
		return nil, fmt.Errorf("geth: no dev account (eth_accounts: %v %v)", accounts, err)
	}
	g.Dev = accounts[0]
	return g, nil
}

// Stop terminates geth. Safe to call more than once.
func (g *Geth) Stop() error {
	g.client.CloseIdleConnections()
	return g.proc.stop(syscall.SIGTERM, stopGrace)
}

// LogTail is the end of geth's log, for a failing test's message.
func (g *Geth) LogTail() string { return g.proc.logTail() }

var gethCallID atomic.Uint64

// Call makes one JSON-RPC call over HTTP and decodes its result into out (may be nil).
func (g *Geth) Call(ctx context.Context, method string, out any, params ...any) error {
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": gethCallID.Add(1), "method": method, "params": params})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.HTTPURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("geth %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("geth %s: %w", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("geth %s: HTTP %d: %s", method, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("geth %s: %w: %s", method, err, b)
	}
	if r.Error != nil {
		return fmt.Errorf("geth %s: error %d: %s", method, r.Error.Code, r.Error.Message)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Result, out)
}

// Fund sends wei from the dev account to the address and waits until the transaction is mined (successfully).
func (g *Geth) Fund(ctx context.Context, to string, wei *big.Int) error {
	var tx string
	if err := g.Call(ctx, "eth_sendTransaction", &tx, map[string]string{"from": g.Dev, "to": to, "value": "0x" + wei.Text(16)}); err != nil {
		return err
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		var receipt *struct {
			Status string `json:"status"`
		}
		// A fresh geth answers "transaction indexing is in progress" until its indexer has caught up: not yet.
		if err := g.Call(ctx, "eth_getTransactionReceipt", &receipt, tx); err != nil && !strings.Contains(err.Error(), "indexing is in progress") {
			return err
		}
		if receipt != nil {
			if receipt.Status != "0x1" {
				return fmt.Errorf("geth: funding transaction %s failed (status %s)", tx, receipt.Status)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("geth: funding transaction %s not mined: %w", tx, ctx.Err())
		case <-tick.C:
		}
	}
}

// Balance is eth_getBalance of the address at the latest block, in wei.
func (g *Geth) Balance(ctx context.Context, addr string) (*big.Int, error) {
	var hex string
	if err := g.Call(ctx, "eth_getBalance", &hex, addr, "latest"); err != nil {
		return nil, err
	}
	n, ok := new(big.Int).SetString(strings.TrimPrefix(hex, "0x"), 16)
	if !ok {
		return nil, fmt.Errorf("geth eth_getBalance: %q is not a hex quantity", hex)
	}
	return n, nil
}

// Head is eth_blockNumber.
func (g *Geth) Head(ctx context.Context) (uint64, error) {
	var hex string
	if err := g.Call(ctx, "eth_blockNumber", &hex); err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimPrefix(hex, "0x"), 16, 64)
}

// GethT starts geth for the test (building it first if it is not cached) and stops it at cleanup. A geth that
// cannot be built or started fails the test; it is never skipped.
func GethT(t testing.TB, opts ...GethOption) *Geth {
	t.Helper()
	bctx, bcancel := context.WithTimeout(context.Background(), gethBuildTimeout)
	defer bcancel()
	if _, err := GethBinary(bctx); err != nil {
		t.Fatalf("testenv: build geth: %v", err)
	}
	ctx, cancel := tContext()
	defer cancel()
	g, err := StartGeth(ctx, t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("testenv: start geth: %v", err)
	}
	t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			t.Errorf("testenv: stop geth: %v", err)
		}
	})
	return g
}
