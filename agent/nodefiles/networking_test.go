package nodefiles

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/cl-agent/cl-agent/agent/config"
)

// Peer IDs from the node's own documentation (chainlink v2.19.0 docs/CONFIG.md, P2P.V2.DefaultBootstrappers).
const (
	peerA = "12D3KooWMHMRLQkgPbFSYHwD3NBuwtS1AmxhvKVUrcfyaGDASR4U"
	peerB = "12D3KooWM55u5Swtpw9r8aFLQHEtw7HR4t44GdNs654ej5gRs2Dh"
)

// severalChains is node.chains with two chains: Sepolia by name with a primary and a send-only client, and
// Polygon Amoy by chain id with no link_contract (the node's own default applies) and one client.
const severalChains = `  chains:
    - network: Ethereum-Sepolia
      nodes:
        - {name: sepolia-a, ws_url: "wss://sepolia-a.example.com/ws", http_url: "https://sepolia-a.example.com"}
        - {name: sepolia-tx, http_url: "https://sepolia-tx.example.com", send_only: true}
    - chain_id: 80002
      nodes:
        - {name: amoy-a, ws_url: "wss://amoy-a.example.com/ws", http_url: "https://amoy-a.example.com"}
`

const p2pOn = `  p2p:
    enabled: true
    announce: 203.0.113.7:6690
    bootstrappers: ["` + peerA + `@bootstrap.example.com:6690", "` + peerB + `@198.51.100.4:6690/198.51.100.5:6690"]
`

// networkingConfig is a configuration with the node: lines given (node.chains, node.p2p); with chains "" it keeps the
// one-chain shorthand of testConfig.
func networkingConfig(t testing.TB, chains, p2p string) *config.Config {
	t.Helper()
	head := "node:\n"
	if chains == "" {
		head += "  network: Ethereum-Sepolia\n  ws_url: wss://sepolia.example.com/ws\n  http_url: https://sepolia.example.com\n"
	}
	c, err := config.Parse([]byte(head + chains + p2p +
		"  api_email: ops@example.com\n  database: {host: db.internal, name: chainlink, user: cl}\n"))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// renderedTOML is config.toml as the node decodes the parts the agent writes.
type renderedTOML struct {
	EVM []struct {
		ChainID, LinkContractAddress, MinContractPayment string
		Nodes                                            []struct {
			Name, WSURL, HTTPURL string
			SendOnly             *bool
		}
	}
	P2P struct {
		V2 struct {
			Enabled                                                  *bool
			ListenAddresses, AnnounceAddresses, DefaultBootstrappers []string
		}
	}
}

func renderTOML(t *testing.T, c *config.Config) renderedTOML {
	t.Helper()
	r, err := Render(c, testID, testSecrets(), FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	var got renderedTOML
	raw := file(t, r, ConfigFile)
	if err := toml.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	return got
}

// TestRenderNetworking renders one chain and several, with P2P off and on: one [[EVM]] per chain with its
// [[EVM.Nodes]], and [P2P.V2] either Enabled = false alone or listening on the container's every address at
// listen_port, announcing the pair's one address, with the bootstrappers as given.
func TestRenderNetworking(t *testing.T) {
	t.Parallel()
	type client struct {
		name, ws, http string
		sendOnly       bool
	}
	type chain struct {
		id, link string
		clients  []client
	}
	one := []chain{{"11155111", "0x779877A7B0D9E8603169DdbD7836e478b4624789",
		[]client{{"primary", "wss://sepolia.example.com/ws", "https://sepolia.example.com", false}}}}
	several := []chain{
		{"11155111", "0x779877A7B0D9E8603169DdbD7836e478b4624789", []client{
			{"sepolia-a", "wss://sepolia-a.example.com/ws", "https://sepolia-a.example.com", false},
			{"sepolia-tx", "", "https://sepolia-tx.example.com", true},
		}},
		{"80002", "", []client{{"amoy-a", "wss://amoy-a.example.com/ws", "https://amoy-a.example.com", false}}},
	}
	for _, tc := range []struct {
		name, chains, p2p string
		want              []chain
	}{
		{"OneChainP2POff", "", "", one},
		{"OneChainP2POn", "", p2pOn, one},
		{"SeveralChainsP2POff", severalChains, "", several},
		{"SeveralChainsP2POn", severalChains, p2pOn, several},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := renderTOML(t, networkingConfig(t, tc.chains, tc.p2p))
			if len(got.EVM) != len(tc.want) {
				t.Fatalf("%d [[EVM]] tables, want %d: %+v", len(got.EVM), len(tc.want), got.EVM)
			}
			for i, w := range tc.want {
				g := got.EVM[i]
				if g.ChainID != w.id || g.LinkContractAddress != w.link || len(g.Nodes) != len(w.clients) {
					t.Errorf("EVM[%d] = %+v, want chain %s link %q with %d clients", i, g, w.id, w.link, len(w.clients))
					continue
				}
				for j, wc := range w.clients {
					n := g.Nodes[j]
					if n.Name != wc.name || n.WSURL != wc.ws || n.HTTPURL != wc.http || n.SendOnly == nil || *n.SendOnly != wc.sendOnly {
						t.Errorf("EVM[%d].Nodes[%d] = %+v, want %+v", i, j, n, wc)
					}
				}
			}
			p := got.P2P.V2
			if tc.p2p == "" {
				if p.Enabled == nil || *p.Enabled || p.ListenAddresses != nil || p.AnnounceAddresses != nil || p.DefaultBootstrappers != nil {
					t.Errorf("P2P.V2 = %+v, want Enabled = false alone", p)
				}
				return
			}
			wantBoot := []string{peerA + "@bootstrap.example.com:6690", peerB + "@198.51.100.4:6690/198.51.100.5:6690"}
			if p.Enabled == nil || !*p.Enabled || !slices.Equal(p.ListenAddresses, []string{"0.0.0.0:6690"}) ||
				!slices.Equal(p.AnnounceAddresses, []string{"203.0.113.7:6690"}) || !slices.Equal(p.DefaultBootstrappers, wantBoot) {
				t.Errorf("P2P.V2 = %+v", p)
			}
		})
	}
}

// TestRenderP2PListenPort: a listen_port other than 6690 is the port the node listens on in its container.
func TestRenderP2PListenPort(t *testing.T) {
	t.Parallel()
	c := networkingConfig(t, "", "  p2p: {enabled: true, listen_port: 7700, announce: \"[2001:db8::7]:7700\"}\n")
	p := renderTOML(t, c).P2P.V2
	if !slices.Equal(p.ListenAddresses, []string{"0.0.0.0:7700"}) || !slices.Equal(p.AnnounceAddresses, []string{"[2001:db8::7]:7700"}) ||
		len(p.DefaultBootstrappers) != 0 {
		t.Errorf("P2P.V2 = %+v", p)
	}
}

// TestRenderExtraTOMLOnSeveralChains: extra_toml's [[EVM]] elements merge into the agent's chains in order, and an
// element past them adds a chain.
func TestRenderExtraTOMLOnSeveralChains(t *testing.T) {
	t.Parallel()
	c := networkingConfig(t, severalChains+"  extra_toml: |\n    [[EVM]]\n    [[EVM]]\n    MinContractPayment = '0.2 link'\n"+
		"    [[EVM]]\n    ChainID = '43113'\n    [[EVM.Nodes]]\n    Name = 'fuji'\n    WSURL = 'wss://fuji'\n    HTTPURL = 'https://fuji'\n", "")
	got := renderTOML(t, c)
	if len(got.EVM) != 3 || got.EVM[0].MinContractPayment != "" || got.EVM[1].MinContractPayment != "0.2 link" ||
		got.EVM[1].ChainID != "80002" || got.EVM[2].ChainID != "43113" || got.EVM[2].Nodes[0].Name != "fuji" {
		t.Errorf("EVM: %+v", got.EVM)
	}
}

// TestRenderHoldsNetworkingToTheRules: a Config built without Parse still may not replace the P2P.V2 keys or a
// second chain's keys through extra_toml, and a 1.x node (.env) gets neither several chains nor P2P.
func TestRenderHoldsNetworkingToTheRules(t *testing.T) {
	t.Parallel()
	for name, extra := range map[string]string{
		"EnablesP2P":            "[P2P.V2]\nEnabled = true",
		"ListensElsewhere":      "[P2P.V2]\nListenAddresses = ['0.0.0.0:9999']",
		"AnnouncesElsewhere":    "[P2P.V2]\nAnnounceAddresses = ['198.51.100.1:6690']",
		"ReplacesBootstrappers": "[P2P.V2]\nDefaultBootstrappers = []",
		"ReplacesP2PTable":      "[P2P]\nV2 = 1",
		"SecondChainID":         "[[EVM]]\n[[EVM]]\nChainID = '5'",
		"SendOnlyClientURL":     "[[EVM]]\n[[EVM.Nodes]]\n[[EVM.Nodes]]\nWSURL = 'wss://x'",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := networkingConfig(t, severalChains, "")
			c.Node.ExtraTOML = extra
			_, err := Render(c, testID, testSecrets(), FormatTOML)
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != "node.extra_toml" || !errors.Is(err, config.ErrAgentOwned) {
				t.Fatalf("got %v, want a node.extra_toml error wrapping ErrAgentOwned", err)
			}
		})
	}
	for name, c := range map[string]*config.Config{
		"SeveralChains": networkingConfig(t, severalChains, ""),
		"P2P":           networkingConfig(t, "", p2pOn),
	} {
		t.Run("Env"+name, func(t *testing.T) {
			t.Parallel()
			_, err := Render(c, testID, testSecrets(), FormatEnv)
			var fe *config.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "node.") || !strings.Contains(err.Error(), "2.x") {
				t.Fatalf("got %v, want a configuration error saying it needs a 2.x node", err)
			}
		})
	}
}
