package main

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/agent/control"
	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// chainEdits points the fixture's configuration at a chain client: the two URLs and the chain id.
func chainEdits(httpURL, wsURL, chainID string) []string {
	return []string{
		"  network: Ethereum-Sepolia\n  chain_id: " + chainID + "\n  link_contract: 0x514910771AF9Ca656af840dff83E8264EcF986CA",
		"  http_url: " + httpURL,
		"  ws_url: " + wsURL,
		"health: {head_stall_after: 3s}",
	}
}

func TestCheckChainAgainstGeth(t *testing.T) {
	repo := pushStandin(t, "2.10.0")
	image := "image: {repository: " + repo + ", tag: 2.10.0}"
	g := testenv.GethT(t)
	host := func(u string) string { return u[strings.Index(u, "//")+2:] }
	_, httpPort, _ := net.SplitHostPort(host(g.HTTPURL))
	_, wsPort, _ := net.SplitHostPort(host(g.WSURL))
	const key = "Chain-Provider-Key-0123456789"

	cases := []struct {
		name  string
		edits []string
		code  int
		want  []string
	}{
		{"BothURLsOnTheConfiguredChain", chainEdits(g.HTTPURL, g.WSURL+"/?key="+key, "1337"), 0, []string{
			"ok    chain-http " + g.HTTPURL + ": chain 1337, head ",
			"ok    chain-ws  " + g.WSURL + "/?…: chain 1337, newHeads subscription delivered head ",
		}},
		{"WrongChainIsAConfigurationError", chainEdits(g.HTTPURL, g.WSURL, "1"), 2, []string{
			"FAIL  chain-http wrong chain: " + g.HTTPURL + " answers eth_chainId 1337; the configuration expects 1 ",
			"FAIL  chain-ws  wrong chain: " + g.WSURL + " answers eth_chainId 1337; the configuration expects 1 ",
		}},
		{"SwappedURLsAreAConfigurationError", chainEdits("http://127.0.0.1:"+wsPort, "ws://127.0.0.1:"+httpPort, "1337"), 2, []string{
			"FAIL  chain-http http://127.0.0.1:" + wsPort + ": eth_chainId: HTTP 404: not a JSON-RPC HTTP endpoint (is node.http_url the WebSocket port",
			"FAIL  chain-ws  connect to ws://127.0.0.1:" + httpPort + ": answered HTTP 200 instead of switching to WebSocket (101)",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, append([]string{"check", "--config"}, writeConfig(t, "toml", append([]string{image}, tc.edits...)...))...)
			if code != tc.code {
				t.Errorf("exit %d; want %d\n%s\n%s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
			if strings.Contains(stdout+stderr, key) {
				t.Errorf("the chain URL's key is in the output:\n%s", stdout)
			}
			assertNoSecret(t, "stdout", stdout)
		})
	}

	t.Run("NoHeadOnTheSubscriptionIsRetryable", func(t *testing.T) {
		idle := testenv.GethT(t, testenv.GethPeriod(0))
		code, stdout, _ := cli(t, "check", "--config", writeConfig(t, "toml", append([]string{image}, chainEdits(idle.HTTPURL, idle.WSURL, "1337")...)...))
		if code != 1 || !strings.Contains(stdout, "ok    chain-http") ||
			!strings.Contains(stdout, "FAIL  chain-ws  "+idle.WSURL+": newHeads subscription granted, but no head arrived within 3s") {
			t.Errorf("exit %d; want 1 with the WebSocket line failing for want of a head:\n%s", code, stdout)
		}
	})

	t.Run("ClientDownIsRetryable", func(t *testing.T) {
		down := testenv.GethT(t)
		if err := down.Stop(); err != nil {
			t.Fatal(err)
		}
		code, stdout, _ := cli(t, "check", "--config", writeConfig(t, "toml", append([]string{image}, chainEdits(down.HTTPURL, down.WSURL, "1337")...)...))
		if code != 1 || !strings.Contains(stdout, "FAIL  chain-http "+down.HTTPURL+": ") || !strings.Contains(stdout, "FAIL  chain-ws  connect to "+down.WSURL) ||
			!strings.Contains(stdout, "connection refused") {
			t.Errorf("exit %d; want 1 with both lines naming their URL and the refusal:\n%s", code, stdout)
		}
	})
}

// chainsConfig is the fixture's configuration with node.chains (a YAML block under node:) in place of the one-chain
// shorthand (node.network, ws_url, http_url).
func chainsConfig(t *testing.T, image, chains string) string {
	t.Helper()
	path := writeConfig(t, "toml", image, "health: {head_stall_after: 3s}")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if k, _, _ := strings.Cut(l, ":"); k == "  network" || k == "  ws_url" || k == "  http_url" {
			continue
		}
		lines = append(lines, l)
		if l == "node:" {
			lines = append(lines, chains)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckChainsEveryClientAgainstGeth(t *testing.T) {
	repo := pushStandin(t, "2.10.0")
	image := "image: {repository: " + repo + ", tag: 2.10.0}"
	g := testenv.GethT(t)
	_, httpPort, _ := net.SplitHostPort(strings.TrimPrefix(g.HTTPURL, "http://"))
	_, wsPort, _ := net.SplitHostPort(strings.TrimPrefix(g.WSURL, "ws://"))
	// geth answers on 127.0.0.1 and localhost alike: two URLs of one client, as the configuration wants them unique.
	otherHTTP, otherWS := "http://localhost:"+httpPort, "ws://localhost:"+wsPort
	gethA := "        - {name: geth-a, http_url: " + g.HTTPURL + ", ws_url: " + g.WSURL + "}\n"

	cases := []struct {
		name   string
		chains string
		code   int
		want   []string
	}{
		{"EveryClientOnItsChainAndSendOnlyOverHTTPOnly", "  chains:\n    - chain_id: 1337\n      nodes:\n" + gethA +
			"        - {name: geth-send, http_url: " + otherHTTP + ", send_only: true}", 0, []string{
			"ok    chain-http/1337/geth-a " + g.HTTPURL + ": chain 1337, head ",
			"ok    chain-ws/1337/geth-a " + g.WSURL + ": chain 1337, newHeads subscription delivered head ",
			"ok    chain-http/1337/geth-send " + otherHTTP + ": chain 1337, head ",
			"skip  chain-ws/1337/geth-send send_only: the node only broadcasts transactions through this client, over HTTP",
		}},
		{"ClientOnAnotherChainIsAConfigurationError", "  chains:\n    - chain_id: 1337\n      nodes:\n" + gethA +
			"    - chain_id: 1\n      nodes:\n        - {name: wrong-b, http_url: " + otherHTTP + ", ws_url: " + otherWS + "}", 2, []string{
			"ok    chain-http/1337/geth-a ",
			"ok    chain-ws/1337/geth-a ",
			"FAIL  chain-http/1/wrong-b wrong chain: " + otherHTTP + ` answers eth_chainId 1337; the configuration expects 1 (node.chains, client "wrong-b")`,
			"FAIL  chain-ws/1/wrong-b wrong chain: " + otherWS + ` answers eth_chainId 1337; the configuration expects 1 (node.chains, client "wrong-b")`,
		}},
		{"SwappedPortsAreAConfigurationError", "  chains:\n    - chain_id: 1337\n      nodes:\n" +
			"        - {name: swapped, http_url: 'http://127.0.0.1:" + wsPort + "', ws_url: 'ws://127.0.0.1:" + httpPort + "'}", 2, []string{
			"FAIL  chain-http/1337/swapped http://127.0.0.1:" + wsPort + ": eth_chainId: HTTP 404: not a JSON-RPC HTTP endpoint",
			"FAIL  chain-ws/1337/swapped connect to ws://127.0.0.1:" + httpPort + ": answered HTTP 200 instead of switching to WebSocket (101)",
		}},
		{"ClientDownIsRetryable", "  chains:\n    - chain_id: 1337\n      nodes:\n" + gethA +
			"        - {name: down, http_url: 'http://127.0.0.1:1', ws_url: 'ws://127.0.0.1:1'}", 1, []string{
			"ok    chain-http/1337/geth-a ",
			"FAIL  chain-http/1337/down http://127.0.0.1:1: ",
			"FAIL  chain-ws/1337/down connect to ws://127.0.0.1:1",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, "check", "--config", chainsConfig(t, image, tc.chains))
			if code != tc.code {
				t.Errorf("exit %d; want %d\n%s\n%s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
			// With node.chains every line names its client: none has the shorthand's bare name.
			if strings.Contains(stdout, " chain-http ") || strings.Contains(stdout, " chain-ws  ") {
				t.Errorf("a chain line without its client's name:\n%s", stdout)
			}
			assertNoSecret(t, "stdout", stdout)
		})
	}
}

func TestChainClientsFromTheConfiguration(t *testing.T) {
	cases := []struct {
		name string
		node config.Node
		want []health.ChainClient
	}{
		{"ShorthandIsOneClientThatKeepsTodaysNames",
			config.Node{Network: "Ethereum-Sepolia", WSURL: "wss://s.example/ws", HTTPURL: "https://s.example"},
			[]health.ChainClient{{ChainID: 11155111, Name: "primary", WSURL: "wss://s.example/ws", HTTPURL: "https://s.example", Shorthand: true}}},
		{"NodeChainsEveryClientOfEveryChain", config.Node{Chains: []config.Chain{
			{Network: "Polygon-Mainnet", Nodes: []config.ChainNode{
				{Name: "polygon-a", WSURL: "wss://p.example/ws", HTTPURL: "https://p.example"},
				{Name: "polygon-send", HTTPURL: "https://p2.example", SendOnly: true}}},
			{ChainID: 10, Nodes: []config.ChainNode{{Name: "op-a", WSURL: "wss://o.example/ws", HTTPURL: "https://o.example"}}},
		}}, []health.ChainClient{
			{ChainID: 137, Name: "polygon-a", WSURL: "wss://p.example/ws", HTTPURL: "https://p.example"},
			{ChainID: 137, Name: "polygon-send", HTTPURL: "https://p2.example", SendOnly: true},
			{ChainID: 10, Name: "op-a", WSURL: "wss://o.example/ws", HTTPURL: "https://o.example"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := chainClients(tc.node); !slices.Equal(got, tc.want) {
				t.Errorf("chainClients = %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestStatusListsEveryChainCheck(t *testing.T) {
	at := time.Now()
	s := control.Status{Role: "standby", Since: at, Checks: []control.Check{
		{Name: "chain_http/10/op-a", OK: true, Detail: "head 50", At: at},
		{Name: "chain_http/137/polygon-a", OK: false, Detail: "wrong chain", At: at},
		{Name: "chain_ws/137/polygon-a", OK: true, Detail: "head 7 arrived", At: at},
	}}
	var out strings.Builder
	printStatus(&out, s)
	for _, want := range []string{"  ok   chain_http/10/op-a ", "  FAIL chain_http/137/polygon-a ", "  ok   chain_ws/137/polygon-a "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}
