package main

import (
	"net"
	"strings"
	"testing"

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
