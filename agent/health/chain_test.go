package health

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/chainsim"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

func TestChainHealthy(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 30*time.Second)
	sim := chainsim.StartT(t, chainsim.Options{Head: 100})
	ws := newChainWS(chainOptions{url: sim.WSURL, chainID: 1, stallAfter: time.Minute, reportHead: true, interval: time.Second, timeout: 2 * time.Second})
	for _, c := range []Check{
		newChainHTTP(chainOptions{url: sim.URL, chainID: 1, stallAfter: time.Minute, interval: time.Second, timeout: 2 * time.Second}),
		ws,
	} {
		res, _ := RunOnce(ctx, c, nil)
		if !res.OK {
			t.Errorf("%s: %s", res.Name, res.Detail)
		}
		transport := strings.TrimPrefix(res.Name, "chain_")
		if v, ok := sampleValue(res, metricChainHead, ""); !ok || v != 100 {
			t.Errorf("%s: chain head sample %v %v; want 100", res.Name, v, ok)
		}
		if v, ok := sampleValue(res, metricRPCLatency, transport); !ok || v <= 0 || v > 2 {
			t.Errorf("%s: latency sample %v %v; want a positive number of seconds under the deadline", res.Name, v, ok)
		}
	}
	if sim.Calls("eth_subscribe") != 1 || sim.Subscribers() != 1 {
		t.Errorf("eth_subscribe calls = %d, open = %d; want 1 subscription, kept open by the WebSocket check",
			sim.Calls("eth_subscribe"), sim.Subscribers())
	}
	if err := closeCheck(ws); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the WebSocket check's subscription to end when it is closed", func() bool {
		return sim.Subscribers() == 0
	})
}

func TestChainErrors(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 30*time.Second)
	sim := chainsim.StartT(t, chainsim.Options{})
	checks := []Check{
		newChainHTTP(chainOptions{url: sim.URL, stallAfter: time.Minute, interval: time.Second, timeout: 2 * time.Second}),
		newChainWS(chainOptions{url: sim.WSURL, interval: time.Second, timeout: 2 * time.Second}),
	}
	t.Cleanup(func() { _ = closeCheck(checks[1]) })

	sim.FailWith(-32000, "header not found")
	for _, c := range checks {
		res, _ := RunOnce(ctx, c, nil)
		if res.OK || !strings.Contains(res.Detail, "-32000") || !strings.Contains(res.Detail, "header not found") {
			t.Errorf("%s with a JSON-RPC error: ok=%v %q; want a failure quoting the error", res.Name, res.OK, res.Detail)
		}
	}
	sim.Heal()
	sim.FailHTTP(http.StatusBadGateway)
	for _, c := range checks {
		res, _ := RunOnce(ctx, c, nil)
		if res.OK || !strings.Contains(res.Detail, "502") {
			t.Errorf("%s with HTTP 502: ok=%v %q; want a failure naming 502", res.Name, res.OK, res.Detail)
		}
	}
	sim.Heal()
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		res, _ := RunOnce(ctx, c, nil)
		if res.OK || !strings.Contains(res.Detail, strings.TrimPrefix(sim.URL, "http://")) {
			t.Errorf("%s with the server gone: ok=%v %q; want a failure naming the server", res.Name, res.OK, res.Detail)
		}
	}
}

func TestChainStalledServerTimesOutAndHealthzStaysResponsive(t *testing.T) {
	t.Parallel()
	sim := chainsim.StartT(t, chainsim.Options{})
	sim.Stall()
	box := &stateBox{st: AgentState{Role: state.Active, NodeReady: true, LastBeat: time.Now()}}
	const deadline = 500 * time.Millisecond
	svc, base := startService(t, Options{State: box.get, Chains: shorthand(0, sim.URL, sim.WSURL),
		CheckInterval: 100 * time.Millisecond, CheckTimeout: deadline, BeatBound: time.Minute})
	// While both checks hang on the stalled server, the probes answer at once.
	testenv.WaitFor(t, 5*time.Second, "both checks to be waiting on the stalled server", func() bool { return sim.Held() >= 2 })
	for i := range 5 {
		start := time.Now()
		code, body := probe(t, base+"/healthz", time.Second)
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("/healthz #%d took %s while a check hangs; want under 100ms", i, took)
		}
		if code != 200 {
			t.Errorf("/healthz = %d %q", code, body)
		}
		if code, _ := probe(t, base+"/readyz", time.Second); code != 200 {
			t.Errorf("/readyz = %d", code)
		}
	}
	for _, name := range []string{"chain_http", "chain_ws"} {
		res := waitResult(t, svc.runner, name, time.Time{}, 5*time.Second, func(r Result) bool { return !r.OK })
		if !strings.Contains(res.Detail, "timed out after "+deadline.String()) {
			t.Errorf("%s: %q; want a timeout naming the %s deadline", name, res.Detail, deadline)
		}
		if res.Took > deadline+300*time.Millisecond {
			t.Errorf("%s took %s; its deadline is %s", name, res.Took, deadline)
		}
	}
	// The server answers again: the checks recover on their next run.
	sim.Resume()
	for _, name := range []string{"chain_http", "chain_ws"} {
		waitResult(t, svc.runner, name, time.Now(), 5*time.Second, func(r Result) bool { return r.OK })
	}
}

func TestChainStuckHeadFailsAfterStallBound(t *testing.T) {
	t.Parallel()
	sim := chainsim.StartT(t, chainsim.Options{Head: 7})
	const stall = 400 * time.Millisecond
	box := &stateBox{st: AgentState{Role: "standby", LastBeat: time.Now()}}
	svc, _ := startService(t, Options{State: box.get, Chains: shorthand(0, sim.URL, ""), HeadStallAfter: stall,
		CheckInterval: 50 * time.Millisecond, CheckTimeout: time.Second})
	began := time.Now()
	res := waitResult(t, svc.runner, "chain_http", time.Time{}, 5*time.Second, func(r Result) bool { return !r.OK })
	if since := time.Since(began); since < stall {
		t.Errorf("the head was called stuck after %s; the bound is %s", since, stall)
	}
	if !strings.Contains(res.Detail, "stuck at 7") {
		t.Errorf("detail %q; want it to say the head is stuck at 7", res.Detail)
	}
	if v, _ := sampleValue(res, metricChainHead, ""); v != 7 {
		t.Errorf("chain head sample %v; want 7", v)
	}
	sim.Advance(1)
	res = waitResult(t, svc.runner, "chain_http", time.Now(), 5*time.Second, func(r Result) bool { return r.OK })
	if !strings.Contains(res.Detail, "head 8") {
		t.Errorf("after the head moved: %q; want head 8", res.Detail)
	}
}

func TestChainWSNeedsHeadsOnItsSubscription(t *testing.T) {
	t.Parallel()
	sim := chainsim.StartT(t, chainsim.Options{Head: 3})
	box := &stateBox{st: AgentState{Role: "standby", LastBeat: time.Now()}}
	svc, _ := startService(t, Options{State: box.get, Chains: shorthand(0, "", sim.WSURL), HeadStallAfter: 300 * time.Millisecond,
		CheckInterval: 50 * time.Millisecond, CheckTimeout: 200 * time.Millisecond})
	// eth_blockNumber answers at once, but no head comes on the subscription: that fails once the bound passes.
	res := waitResult(t, svc.runner, "chain_ws", time.Time{}, 5*time.Second, func(r Result) bool { return !r.OK })
	if !strings.Contains(res.Detail, "no new head on the newHeads subscription") || !strings.Contains(res.Detail, "bound 300ms") {
		t.Errorf("detail %q; want no new head within the 300ms bound", res.Detail)
	}
	if v, ok := sampleValue(res, metricChainHead, ""); !ok || v != 3 {
		t.Errorf("chain head sample %v %v; want 3 from the WebSocket check when there is no http_url", v, ok)
	}
	// Heads on the subscription: passing again. (The check dropped the stalled subscription and subscribes anew
	// on its next run: heads keep coming until one lands on a subscription the check reads.)
	after := time.Now()
	testenv.WaitFor(t, 5*time.Second, "the check to pass on a head from its subscription", func() bool {
		sim.Advance(1)
		res, ok := svc.runner.result("chain_ws")
		return ok && res.At.After(after) && res.OK && strings.Contains(res.Detail, "arrived")
	})
}

func TestChainURLSecretsStayOut(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 10*time.Second)
	const key = "s3cr3t-provider-key-0123456789"
	// Nothing listens on port 1: the error quotes the URL it could not reach.
	for _, c := range []Check{
		newChainHTTP(chainOptions{url: "http://user:" + key + "@127.0.0.1:1/v3/" + key + "?apikey=" + key, interval: time.Second, timeout: time.Second}),
		newChainWS(chainOptions{url: "ws://127.0.0.1:1/ws/v3/" + key, interval: time.Second, timeout: time.Second}),
	} {
		res, _ := RunOnce(ctx, c, nil)
		if res.OK {
			t.Fatalf("%s passed against a closed port", res.Name)
		}
		if strings.Contains(res.Detail, key) {
			t.Errorf("%s detail leaks the provider key: %q", res.Name, res.Detail)
		}
		if !strings.Contains(res.Detail, "127.0.0.1:1") {
			t.Errorf("%s detail %q: want the host named", res.Name, res.Detail)
		}
	}
}

// shorthand is the one-chain shorthand's one client (node.http_url, node.ws_url; "" leaves a transport out).
func shorthand(chainID uint64, httpURL, wsURL string) []ChainClient {
	return []ChainClient{{ChainID: chainID, Name: "primary", HTTPURL: httpURL, WSURL: wsURL, Shorthand: true}}
}

func sampleValue(res Result, metric, label string) (float64, bool) {
	for _, s := range res.Samples {
		if s.Metric == metric && s.Label == label {
			return s.Value, true
		}
	}
	return 0, false
}
