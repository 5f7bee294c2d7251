package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// Peer IDs from the node's own documentation (chainlink v2.19.0 docs/CONFIG.md, P2P.V2.DefaultBootstrappers).
const (
	peerA = "12D3KooWMHMRLQkgPbFSYHwD3NBuwtS1AmxhvKVUrcfyaGDASR4U"
	peerB = "12D3KooWM55u5Swtpw9r8aFLQHEtw7HR4t44GdNs654ej5gRs2Dh"
)

// networkingBase is the rest of a valid file around node.chains / node.p2p lines.
const networkingBase = "node:\n  api_email: ops@example.com\n  database: {host: db, name: chainlink, user: chainlink}\n"

const twoChains = `  chains:
    - network: Ethereum-Sepolia
      nodes:
        - {name: sepolia-a, ws_url: "wss://a.example.com", http_url: "https://a.example.com"}
        - {name: sepolia-tx, http_url: "https://tx.example.com", send_only: true}
    - chain_id: 80002
      link_contract: "0x0Fd9e8d3aF1aaee056EB9e802c3A762a667b1904"
      nodes:
        - {name: amoy-a, ws_url: "wss://b.example.com", http_url: "https://b.example.com"}
`

func TestNetworkingAccepted(t *testing.T) {
	t.Parallel()
	for name, lines := range map[string]string{
		"TwoChains":             twoChains,
		"ShorthandWithP2P":      "  ws_url: wss://x\n  http_url: https://x\n  p2p: {enabled: true, announce: 203.0.113.7:6690}\n",
		"IPv6Announce":          twoChains + "  p2p: {enabled: true, listen_port: 7000, announce: \"[2001:db8::1]:7000\"}\n",
		"Bootstrappers":         twoChains + "  p2p:\n    enabled: true\n    announce: 203.0.113.7:6690\n    bootstrappers: [\"" + peerA + "@boot.example.com:6690\", \"" + peerB + "@198.51.100.1:6690/[2001:db8::2]:6690\"]\n",
		"OCR2WithP2P":           twoChains + "  p2p: {enabled: true, announce: 203.0.113.7:6690}\n  extra_toml: |\n    [OCR2]\n    Enabled = true\n",
		"ExtraTOMLAddsChain":    twoChains + "  extra_toml: |\n    [[EVM]]\n    [[EVM]]\n    [[EVM]]\n    ChainID = '43113'\n",
		"ExtraTOMLAddsToSecond": twoChains + "  extra_toml: |\n    [[EVM]]\n    [[EVM]]\n    MinContractPayment = '0.1 link'\n    [[EVM.Nodes]]\n    Order = 2\n",
		"ExtraTOMLAddsClient":   twoChains + "  extra_toml: |\n    [[EVM]]\n    [[EVM]]\n    [[EVM.Nodes]]\n    [[EVM.Nodes]]\n    Name = 'amoy-b'\n    WSURL = 'wss://c'\n    HTTPURL = 'https://c'\n",
		"SendOnlyWithWS":        "  chains:\n    - network: BSC-Mainnet\n      nodes:\n        - {name: a, ws_url: wss://a, http_url: https://a}\n        - {name: b, ws_url: wss://b, http_url: https://b, send_only: true}\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse([]byte(networkingBase + lines)); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// TestNetworkingRules: each rule the node applies to [[EVM]] and [P2P.V2] (and the agent's own about the pair and
// the ports) is refused at load with a FieldError naming the field, wrapping the sentinel and exiting 2.
func TestNetworkingRules(t *testing.T) {
	t.Parallel()
	chain := func(nodes string) string { return "  chains:\n    - network: Ethereum-Sepolia\n      nodes:\n" + nodes }
	p2p := func(s string) string { return twoChains + "  p2p: {enabled: true, " + s + "}\n" }
	cases := []struct {
		name, lines string
		field       string
		sentinel    error
		says        string
	}{
		{"ChainsAndShorthandWS", twoChains + "  ws_url: wss://x\n", "node.ws_url", ErrInvalid, "exclude each other"},
		{"ChainsAndShorthandNetwork", twoChains + "  network: Ethereum-Mainnet\n", "node.network", ErrInvalid, "exclude each other"},
		{"ChainsAndShorthandChainID", twoChains + "  chain_id: 5\n", "node.chain_id", ErrInvalid, "exclude each other"},
		{"ChainsWithEnvFormat", twoChains + "  format: env\n", "node.chains", ErrInvalid, "toml"},
		{"DuplicateChainID", twoChains + "    - chain_id: 11155111\n      nodes: [{name: c, ws_url: wss://c, http_url: https://c}]\n", "node.chains[2].chain_id", ErrInvalid, "node.chains[0]"},
		{"NetworkAndChainID", "  chains:\n    - {network: Ethereum-Sepolia, chain_id: 11155111, nodes: [{name: a, ws_url: wss://a, http_url: https://a}]}\n", "node.chains[0].chain_id", ErrInvalid, "not both"},
		{"NoChainID", "  chains:\n    - nodes: [{name: a, ws_url: wss://a, http_url: https://a}]\n", "node.chains[0].network", ErrRequired, "chain_id"},
		{"UnknownNetwork", "  chains:\n    - {network: Mars-Mainnet, nodes: [{name: a, ws_url: wss://a, http_url: https://a}]}\n", "node.chains[0].network", ErrUnknownNetwork, "Ethereum-Mainnet"},
		{"RetiredNetwork", "  chains:\n    - {network: Ethereum-Goerli, nodes: [{name: a, ws_url: wss://a, http_url: https://a}]}\n", "node.chains[0].network", ErrUnknownNetwork, "shut down"},
		{"LowerCaseLink", "  chains:\n    - {chain_id: 80002, link_contract: \"0x0fd9e8d3af1aaee056eb9e802c3a762a667b1904\", nodes: [{name: a, ws_url: wss://a, http_url: https://a}]}\n", "node.chains[0].link_contract", ErrChecksum, "0x0Fd9e8d3aF1aaee056EB9e802c3A762a667b1904"},
		{"NoClients", "  chains:\n    - {network: Ethereum-Sepolia}\n", "node.chains[0].nodes", ErrRequired, "at least one"},
		{"OnlySendOnly", chain("        - {name: a, http_url: https://a, send_only: true}\n"), "node.chains[0].nodes", ErrInvalid, "primary"},
		{"NoName", chain("        - {ws_url: wss://a, http_url: https://a}\n"), "node.chains[0].nodes[0].name", ErrRequired, ""},
		{"NameTwiceAcrossChains", twoChains + "    - chain_id: 43113\n      nodes: [{name: sepolia-a, ws_url: wss://c, http_url: https://c}]\n", "node.chains[2].nodes[0].name", ErrInvalid, "node.chains[0].nodes[0].name"},
		{"WSURLTwice", chain("        - {name: a, ws_url: wss://a, http_url: https://a}\n        - {name: b, ws_url: wss://a, http_url: https://b}\n"), "node.chains[0].nodes[1].ws_url", ErrInvalid, "ws_url"},
		{"HTTPURLTwice", chain("        - {name: a, ws_url: wss://a, http_url: https://a}\n        - {name: b, http_url: https://a, send_only: true}\n"), "node.chains[0].nodes[1].http_url", ErrInvalid, "http_url"},
		{"PrimaryWithoutWS", chain("        - {name: a, http_url: https://a}\n"), "node.chains[0].nodes[0].ws_url", ErrRequired, "send_only"},
		{"SendOnlyWithoutHTTP", chain("        - {name: a, ws_url: wss://a, http_url: https://a}\n        - {name: b, send_only: true}\n"), "node.chains[0].nodes[1].http_url", ErrRequired, ""},
		{"WSWithHTTPScheme", chain("        - {name: a, ws_url: https://a, http_url: https://a}\n"), "node.chains[0].nodes[0].ws_url scheme", ErrInvalid, "ws, wss"},
		{"HTTPWithWSScheme", chain("        - {name: a, ws_url: wss://a, http_url: wss://b}\n"), "node.chains[0].nodes[0].http_url scheme", ErrInvalid, "http, https"},
		{"UnknownKeyInChain", "  chains:\n    - {network: Ethereum-Sepolia, node: []}\n", "node.chains[0].node", ErrUnknownKey, "nodes"},
		{"UnknownKeyInClient", chain("        - {name: a, wsurl: wss://a}\n"), "node.chains[0].nodes[0].wsurl", ErrUnknownKey, "ws_url"},
		{"ChainsNotAList", "  chains: {network: Ethereum-Sepolia}\n", "node.chains", ErrInvalid, "a list"},

		{"AnnounceMissing", p2p("listen_port: 6690"), "node.p2p.announce", ErrRequired, ""},
		{"AnnounceHostName", p2p("announce: p2p.example.com:6690"), "node.p2p.announce", ErrInvalid, "host name"},
		{"AnnounceUnspecified", p2p("announce: 0.0.0.0:6690"), "node.p2p.announce", ErrInvalid, "same on both hosts"},
		{"AnnouncePortZero", p2p("announce: 203.0.113.7:0"), "node.p2p.announce", ErrOutOfRange, "65535"},
		{"AnnounceNoPort", p2p("announce: 203.0.113.7"), "node.p2p.announce", ErrInvalid, "ip:port"},
		{"AnnounceZone", p2p("announce: \"[fe80::1%eth0]:6690\""), "node.p2p.announce", ErrInvalid, "zone"},
		{"ListenPortOutOfRange", p2p("listen_port: 70000, announce: 203.0.113.7:6690"), "node.p2p.listen_port", ErrOutOfRange, ""},
		{"ListenPortIsNodeHTTP", p2p("listen_port: 6688, announce: 203.0.113.7:6690"), "node.p2p.listen_port", ErrInvalid, "HTTP port"},
		{"ListenPortIsHostPort", p2p("listen_port: 7000, announce: 203.0.113.7:6690") + "container: {host_port: 7000}\n", "node.p2p.listen_port", ErrInvalid, "container.host_port"},
		{"ListenPortIsHealth", p2p("listen_port: 9180, announce: 203.0.113.7:6690"), "node.p2p.listen_port", ErrInvalid, "health.listen"},
		{"BootstrapperWithoutPeerID", p2p("announce: 203.0.113.7:6690, bootstrappers: [\"boot.example.com:6690\"]"), "node.p2p.bootstrappers[0]", ErrInvalid, "peerID@host:port"},
		{"BootstrapperP2PPrefix", p2p("announce: 203.0.113.7:6690, bootstrappers: [\"p2p_" + peerA + "@b:6690\"]"), "node.p2p.bootstrappers[0]", ErrInvalid, "p2p_ prefix"},
		{"BootstrapperBadPeerID", p2p("announce: 203.0.113.7:6690, bootstrappers: [\"12D3KooWnotapeer@b:6690\"]"), "node.p2p.bootstrappers[0]", ErrInvalid, "peer ID"},
		{"BootstrapperNoAddress", p2p("announce: 203.0.113.7:6690, bootstrappers: [\"" + peerA + "@\"]"), "node.p2p.bootstrappers[0]", ErrInvalid, "no address"},
		{"BootstrapperNoPort", p2p("announce: 203.0.113.7:6690, bootstrappers: [\"" + peerA + "@b\"]"), "node.p2p.bootstrappers[0]", ErrInvalid, "host:port"},
		{"BootstrapperPortOutOfRange", p2p("announce: 203.0.113.7:6690, bootstrappers: [\"" + peerB + "@b:6690/c:65536\"]"), "node.p2p.bootstrappers[0]", ErrOutOfRange, "c:65536"},
		{"AnnounceWithP2POff", twoChains + "  p2p: {announce: 203.0.113.7:6690}\n", "node.p2p.announce", ErrInvalid, "enabled is false"},
		{"BootstrappersWithP2POff", twoChains + "  p2p: {bootstrappers: [\"" + peerA + "@b:1\"]}\n", "node.p2p.bootstrappers", ErrInvalid, "enabled is false"},
		{"P2PWithEnvFormat", "  format: env\n  ws_url: wss://x\n  p2p: {enabled: true, announce: 203.0.113.7:6690}\n", "node.p2p.enabled", ErrInvalid, "toml"},
		{"OCR2WithoutP2P", twoChains + "  extra_toml: |\n    [OCR2]\n    Enabled = true\n", "node.extra_toml", ErrInvalid, "OCR2.Enabled = true needs P2P"},
		{"OCRWithoutP2P", twoChains + "  extra_toml: |\n    [OCR]\n    Enabled = true\n", "node.extra_toml", ErrInvalid, "OCR.Enabled = true needs P2P"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(networkingBase + tc.lines))
			var fe *FieldError
			if err == nil {
				t.Fatal("accepted")
			}
			found := false
			for _, e := range joined(err) {
				if errors.As(e, &fe) && fe.Field == tc.field && errors.Is(e, tc.sentinel) && fe.ExitCode() == 2 &&
					strings.Contains(e.Error(), tc.says) {
					found = true
				}
			}
			if !found {
				t.Fatalf("got %v\nwant a %s error wrapping %v that says %q", err, tc.field, tc.sentinel, tc.says)
			}
			if fe.Line == 0 && !strings.HasPrefix(tc.field, "node.extra_toml") && tc.field != "node.p2p.announce" {
				t.Errorf("%v: no line", fe)
			}
		})
	}
}

// joined splits an errors.Join result into its errors.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// TestExtraTOMLKeepsOffNetworking: extra_toml may not set what the agent now writes for P2P (on or off) or for
// any of its chains and clients, nor add a chain or client that repeats the agent's chain ids or client names.
func TestExtraTOMLKeepsOffNetworking(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, p2p, toml string
		sentinel        error
		key             string
	}{
		{"EnablesP2P", "", "[P2P.V2]\nEnabled = true", ErrAgentOwned, "P2P.V2.Enabled"},
		{"ListenAddresses", "", "[P2P.V2]\nListenAddresses = ['0.0.0.0:6690']", ErrAgentOwned, "P2P.V2.ListenAddresses"},
		{"AnnounceAddresses", "on", "[P2P.V2]\nAnnounceAddresses = ['198.51.100.1:6690']", ErrAgentOwned, "P2P.V2.AnnounceAddresses"},
		{"DefaultBootstrappers", "on", "[P2P.V2]\nDefaultBootstrappers = []", ErrAgentOwned, "P2P.V2.DefaultBootstrappers"},
		{"ReplacesP2P", "", "P2P = 5", ErrAgentOwned, "P2P"},
		{"ReplacesP2PV2", "on", "[P2P]\nV2 = 'x'", ErrAgentOwned, "P2P.V2"},
		{"SecondChainID", "", "[[EVM]]\n[[EVM]]\nChainID = '5'", ErrAgentOwned, "EVM[1].ChainID"},
		{"SecondChainLink", "", "[[EVM]]\n[[EVM]]\nLinkContractAddress = '0x779877A7B0D9E8603169DdbD7836e478b4624789'", ErrAgentOwned, "EVM[1].LinkContractAddress"},
		{"SendOnlyFlag", "", "[[EVM]]\n[[EVM.Nodes]]\n[[EVM.Nodes]]\nSendOnly = false", ErrAgentOwned, "EVM[0].Nodes[1].SendOnly"},
		{"SecondChainClients", "", "[[EVM]]\n[[EVM]]\nNodes = 'x'", ErrAgentOwned, "EVM[1].Nodes"},
		{"AddedChainRepeatsID", "", "[[EVM]]\n[[EVM]]\n[[EVM]]\nChainID = '80002'", ErrInvalid, "EVM[2].ChainID"},
		{"AddedClientRepeatsName", "", "[[EVM]]\n[[EVM]]\n[[EVM.Nodes]]\n[[EVM.Nodes]]\nName = 'sepolia-a'", ErrInvalid, "EVM[1].Nodes[1].Name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lines := twoChains
			if tc.p2p == "on" {
				lines += "  p2p: {enabled: true, announce: 203.0.113.7:6690}\n"
			}
			lines += "  extra_toml: |\n    " + strings.ReplaceAll(tc.toml, "\n", "\n    ") + "\n"
			_, err := Parse([]byte(networkingBase + lines))
			var fe *FieldError
			if !errors.Is(err, tc.sentinel) || !errors.As(err, &fe) || fe.Field != "node.extra_toml" || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("got %v, want a node.extra_toml error wrapping %v naming %s", err, tc.sentinel, tc.key)
			}
		})
	}
}

// TestEVMChains: node.chains resolve each network to its chain id and LINK contract (link_contract wins); the
// shorthand is one chain whose one client is "primary".
func TestEVMChains(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(networkingBase + twoChains))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Node.EVMChains()
	if len(got) != 2 || got[0].ChainID != 11155111 || got[0].LinkContract != "0x779877A7B0D9E8603169DdbD7836e478b4624789" ||
		got[1].ChainID != 80002 || got[1].LinkContract != "0x0Fd9e8d3aF1aaee056EB9e802c3A762a667b1904" ||
		len(got[0].Nodes) != 2 || !got[0].Nodes[1].SendOnly || got[1].Nodes[0].Name != "amoy-a" {
		t.Errorf("chains %+v", got)
	}
	if id, _ := c.Node.Chain(); id != 11155111 {
		t.Errorf("Chain() = %d, want the first chain's", id)
	}
	s, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	one := s.Node.EVMChains()
	want := []ChainNode{{Name: "primary", WSURL: "wss://mainnet.example.com"}}
	if len(one) != 1 || one[0].ChainID != 1 || !slices.Equal(one[0].Nodes, want) || s.Node.P2P.ListenPort != DefaultP2PPort || s.Node.P2P.Enabled {
		t.Errorf("shorthand chains %+v, p2p %+v", one, s.Node.P2P)
	}
}

func TestCheckPeerID(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{peerA, peerB} {
		if err := CheckPeerID(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "12D3KooW", peerA + "1", peerA[:len(peerA)-1], "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", strings.Replace(peerA, "M", "0", 1)} {
		if err := CheckPeerID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", bad, err)
		}
	}
}

// TestP2PIdleWarning: P2P enabled without OCR or OCR2 loads, with a warning (the node makes its key but starts no
// P2P listener then: measured on v2.19.0 by test/ha's TestP2PFollowsTheActive); with either, or P2P off, none.
func TestP2PIdleWarning(t *testing.T) {
	t.Parallel()
	p2p := twoChains + "  p2p: {enabled: true, announce: 203.0.113.7:6690}\n"
	for name, tc := range map[string]struct {
		lines string
		warns bool
	}{
		"P2PAlone":    {p2p, true},
		"P2PWithOCR2": {p2p + "  extra_toml: |\n    [OCR2]\n    Enabled = true\n", false},
		"P2PWithOCR":  {p2p + "  extra_toml: |\n    [OCR]\n    Enabled = true\n", false},
		"P2POff":      {twoChains, false},
	} {
		c, err := Parse([]byte(networkingBase + tc.lines))
		if err != nil {
			t.Fatalf("%s: refused: %v", name, err)
		}
		if w := c.Node.P2PIdleWarning(); (w != "") != tc.warns || (tc.warns && !strings.Contains(w, "no P2P listener")) {
			t.Errorf("%s: warning %q; want one: %t", name, w, tc.warns)
		}
	}
}
