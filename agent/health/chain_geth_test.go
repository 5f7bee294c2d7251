package health

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Tests of the chain checks against a real chain client: geth in developer mode (internal/testenv).

func gethChecks(g *testenv.Geth, chainID uint64, stall time.Duration) (Check, Check) {
	return newChainHTTP(chainOptions{url: g.HTTPURL, chainID: chainID, stallAfter: stall, interval: time.Second, timeout: 3 * time.Second}),
		newChainWS(chainOptions{url: g.WSURL, chainID: chainID, stallAfter: stall, interval: time.Second, timeout: 3 * time.Second})
}

func TestChainAgainstGethPasses(t *testing.T) {
	t.Parallel()
	g := testenv.GethT(t)
	ctx := testContext(t, time.Minute)
	httpCheck, wsCheck := gethChecks(g, testenv.GethChainID, time.Minute)
	t.Cleanup(func() { _ = closeCheck(wsCheck) })
	for _, c := range []Check{httpCheck, wsCheck} {
		res, _ := RunOnce(ctx, c, nil)
		if !res.OK {
			t.Errorf("%s against geth: %q", res.Name, res.Detail)
		}
	}
	// With a block a second, heads arrive on the subscription: the run reports one, not "no head yet".
	res, _ := RunOnce(ctx, wsCheck, nil)
	if !res.OK || !strings.Contains(res.Detail, "arrived") || !strings.Contains(res.Detail, "on the newHeads subscription") {
		t.Errorf("chain_ws: ok=%v %q; want a head that arrived on the subscription", res.OK, res.Detail)
	}
	if strings.Contains(res.Detail, "reconnected") {
		t.Errorf("chain_ws: %q; want the subscription kept open across runs", res.Detail)
	}
}

func TestChainWrongChainIDFailsNamingBothIDsAndTheURL(t *testing.T) {
	t.Parallel()
	g := testenv.GethT(t)
	ctx := testContext(t, time.Minute)
	httpCheck, wsCheck := gethChecks(g, 1, time.Minute) // configured for Ethereum mainnet, pointed at geth's 1337
	t.Cleanup(func() { _ = closeCheck(wsCheck) })
	for c, url := range map[Check]string{httpCheck: g.HTTPURL, wsCheck: g.WSURL} {
		res, _ := RunOnce(ctx, c, nil)
		if res.OK {
			t.Fatalf("%s passed against chain 1337 configured for 1", res.Name)
		}
		for _, want := range []string{"wrong chain", url, "eth_chainId 1337", "expects 1 "} {
			if !strings.Contains(res.Detail, want) {
				t.Errorf("%s: %q lacks %q", res.Name, res.Detail, want)
			}
		}
	}
	if _, err := ProbeChainHTTP(ctx, ChainClient{ChainID: 1, HTTPURL: g.HTTPURL}, 5*time.Second); !errors.Is(err, ErrWrongChain) {
		t.Errorf("ProbeChainHTTP on the wrong chain: %v; want ErrWrongChain", err)
	}
	if _, err := ProbeChainWS(ctx, ChainClient{ChainID: 1, WSURL: g.WSURL}, 5*time.Second, 5*time.Second); !errors.Is(err, ErrWrongChain) {
		t.Errorf("ProbeChainWS on the wrong chain: %v; want ErrWrongChain", err)
	}
}

func TestChainWSNeedsHeadsNotJustAGrantedSubscription(t *testing.T) {
	t.Parallel()
	idle := testenv.GethT(t, testenv.GethPeriod(0)) // grants newHeads, never mines without a transaction
	const stall = 1500 * time.Millisecond
	box := &stateBox{st: AgentState{Role: "standby", LastBeat: time.Now()}}
	svc, _ := startService(t, Options{State: box.get, Chains: shorthand(testenv.GethChainID, "", idle.WSURL),
		HeadStallAfter: stall, CheckInterval: 100 * time.Millisecond, CheckTimeout: time.Second})
	began := time.Now()
	res := waitResult(t, svc.runner, "chain_ws", time.Time{}, 15*time.Second, func(r Result) bool { return !r.OK })
	if since := time.Since(began); since < stall {
		t.Errorf("failed after %s; the bound is %s", since, stall)
	}
	if !strings.Contains(res.Detail, "no new head on the newHeads subscription") || !strings.Contains(res.Detail, "none since subscribing") {
		t.Errorf("chain_ws on an idle chain: %q; want no head since subscribing", res.Detail)
	}
	ctx := testContext(t, time.Minute)
	if _, err := ProbeChainWS(ctx, ChainClient{ChainID: testenv.GethChainID, WSURL: idle.WSURL}, 5*time.Second, stall); err == nil ||
		!strings.Contains(err.Error(), "no head arrived within "+stall.String()) {
		t.Errorf("ProbeChainWS on an idle chain: %v; want no head within %s", err, stall)
	}

	mining := testenv.GethT(t) // a block a second
	line, err := ProbeChainWS(ctx, ChainClient{ChainID: testenv.GethChainID, WSURL: mining.WSURL}, 5*time.Second, 10*time.Second)
	if err != nil || !strings.Contains(line, "chain 1337, newHeads subscription delivered head") {
		t.Errorf("ProbeChainWS on a mining chain = %q, %v", line, err)
	}
	svc2, _ := startService(t, Options{State: box.get, Chains: shorthand(testenv.GethChainID, "", mining.WSURL),
		HeadStallAfter: stall, CheckInterval: 100 * time.Millisecond, CheckTimeout: time.Second})
	// Several bounds long: it keeps passing on the heads it receives.
	after := time.Now().Add(3 * stall)
	res = waitResult(t, svc2.runner, "chain_ws", after, 15*time.Second, func(Result) bool { return true })
	if !res.OK || !strings.Contains(res.Detail, "arrived") {
		t.Errorf("chain_ws on a mining chain after %s: ok=%v %q", 3*stall, res.OK, res.Detail)
	}
}

func TestChainSwappedURLsFailClearly(t *testing.T) {
	t.Parallel()
	g := testenv.GethT(t)
	ctx := testContext(t, time.Minute)
	_, httpPort, _ := net.SplitHostPort(strings.TrimPrefix(g.HTTPURL, "http://"))
	_, wsPort, _ := net.SplitHostPort(strings.TrimPrefix(g.WSURL, "ws://"))
	cases := []struct {
		name string
		c    Check
		want []string
	}{
		{"HTTPCheckOnTheWebSocketPort", newChainHTTP(chainOptions{url: "http://127.0.0.1:" + wsPort, interval: time.Second, timeout: 3 * time.Second}),
			[]string{"HTTP 404", "is node.http_url the WebSocket port", "127.0.0.1:" + wsPort}},
		{"WebSocketCheckOnTheHTTPPort", newChainWS(chainOptions{url: "ws://127.0.0.1:" + httpPort, interval: time.Second, timeout: 3 * time.Second}),
			[]string{"answered HTTP 200 instead of switching to WebSocket", "is node.ws_url the HTTP port", "127.0.0.1:" + httpPort}},
		{"HTTPCheckGivenTheWebSocketURL", newChainHTTP(chainOptions{url: g.WSURL, interval: time.Second, timeout: 3 * time.Second}),
			[]string{"node.http_url must be http:// or https://"}},
		{"WebSocketCheckGivenTheHTTPURL", newChainWS(chainOptions{url: g.HTTPURL, interval: time.Second, timeout: 3 * time.Second}),
			[]string{"node.ws_url must be ws:// or wss://"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer closeCheck(tc.c)
			res, _ := RunOnce(ctx, tc.c, nil)
			if res.OK {
				t.Fatalf("passed: %q", res.Detail)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.Detail, w) {
					t.Errorf("%q lacks %q", res.Detail, w)
				}
			}
		})
	}
	if _, err := ProbeChainHTTP(ctx, ChainClient{HTTPURL: "http://127.0.0.1:" + wsPort}, 5*time.Second); !errors.Is(err, ErrWrongEndpoint) {
		t.Errorf("ProbeChainHTTP on the WebSocket port: %v; want ErrWrongEndpoint", err)
	}
	if _, err := ProbeChainWS(ctx, ChainClient{WSURL: "ws://127.0.0.1:" + httpPort}, 5*time.Second, time.Second); !errors.Is(err, ErrWrongEndpoint) {
		t.Errorf("ProbeChainWS on the HTTP port: %v; want ErrWrongEndpoint", err)
	}
}

func TestChainFailuresAreLoggedOncePerReasonWithURLAndServerMessage(t *testing.T) {
	t.Parallel()
	// geth refuses host names outside --http.vhosts: 403 "invalid host specified". The URL carries credentials
	// in its user info and query, which must stay out of everything.
	g := testenv.GethT(t, testenv.GethVHosts("chain.invalid"))
	const secret = "Pr0vider-K3y-0123456789"
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(g.HTTPURL, "http://"))
	rawURL := "http://ops:" + secret + "@localhost:" + port + "/?apikey=" + secret
	log, sink := newTestLogger()
	box := &stateBox{st: AgentState{Role: "standby", LastBeat: time.Now()}}
	svc, _ := startService(t, Options{State: box.get, Log: log, Chains: shorthand(testenv.GethChainID, rawURL, ""),
		CheckInterval: 50 * time.Millisecond, CheckTimeout: time.Second})
	res := waitResult(t, svc.runner, "chain_http", time.Time{}, 10*time.Second, func(r Result) bool { return !r.OK })
	for _, want := range []string{"http://localhost:" + port, "HTTP 403", "invalid host specified"} {
		if !strings.Contains(res.Detail, want) {
			t.Errorf("detail %q lacks %q", res.Detail, want)
		}
	}
	// Many runs on the same failure: one line.
	waitResult(t, svc.runner, "chain_http", time.Now().Add(300*time.Millisecond), 5*time.Second, func(r Result) bool { return !r.OK })
	if n := strings.Count(sink.String(), `"check failing"`); n != 1 {
		t.Errorf("%d failing lines for one unchanged failure; want 1:\n%s", n, sink.String())
	}
	if !strings.Contains(sink.String(), "invalid host specified") || !strings.Contains(sink.String(), "http://localhost:"+port) {
		t.Errorf("the log does not name the URL and the server's message:\n%s", sink.String())
	}

	// The reason changes (geth goes away): logged again, once.
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	res = waitResult(t, svc.runner, "chain_http", time.Now(), 10*time.Second, func(r Result) bool {
		return !r.OK && strings.Contains(r.Detail, "connection refused")
	})
	waitResult(t, svc.runner, "chain_http", time.Now().Add(300*time.Millisecond), 5*time.Second, func(r Result) bool { return !r.OK })
	logs := sink.String()
	// While geth shuts down a run may see a reset connection first: a reason of its own, logged once too.
	if n := strings.Count(logs, "connection refused"); n != 1 {
		t.Errorf("the refused connection is logged %d times over many runs; want once:\n%s", n, logs)
	}
	if n := strings.Count(logs, `"check failing for another reason"`); n < 1 || n > 2 {
		t.Errorf("%d reason-change lines; want 1 (2 with a reset on the way):\n%s", n, logs)
	}
	for _, text := range []string{logs, res.Detail} {
		if strings.Contains(text, secret) || strings.Contains(text, "ops:") {
			t.Errorf("a credential of the chain URL leaked:\n%s", text)
		}
	}
}

func TestChainTimeoutNamesTheURLAndTheBound(t *testing.T) {
	t.Parallel()
	// A listener that never accepts: connections complete in the kernel's backlog and then hear nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx := testContext(t, 30*time.Second)
	const bound = 300 * time.Millisecond
	for _, c := range []Check{
		newChainHTTP(chainOptions{url: "http://" + ln.Addr().String() + "/v3/" + "Secret-Path-Key-0123456789", interval: time.Second, timeout: bound}),
		newChainWS(chainOptions{url: "ws://" + ln.Addr().String(), interval: time.Second, timeout: bound}),
	} {
		res, _ := RunOnce(ctx, c, nil)
		if res.OK || !strings.Contains(res.Detail, "timed out after 300ms") || !strings.Contains(res.Detail, ln.Addr().String()) {
			t.Errorf("%s against a silent server: ok=%v %q; want a timeout naming the bound and the address", res.Name, res.OK, res.Detail)
		}
		if strings.Contains(res.Detail, "Secret-Path-Key") {
			t.Errorf("%s: the path's key leaked: %q", res.Name, res.Detail)
		}
		_ = closeCheck(c)
	}
}
