package realnode

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cl-agent/cl-agent/agent/config"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// Peer IDs from the node's own documentation (docs/CONFIG.md, P2P.V2.DefaultBootstrappers).
const (
	peerA = "12D3KooWMHMRLQkgPbFSYHwD3NBuwtS1AmxhvKVUrcfyaGDASR4U"
	peerB = "12D3KooWM55u5Swtpw9r8aFLQHEtw7HR4t44GdNs654ej5gRs2Dh"
)

// severalChains: Sepolia by name with a primary and a send-only client, Polygon Amoy by chain id with no
// link_contract (the node's default for 80002), and Avalanche Fuji by name. Nothing listens at the URLs: validate
// does not dial.
const severalChains = `  chains:
    - network: Ethereum-Sepolia
      nodes:
        - {name: sepolia-a, ws_url: "ws://127.0.0.1:1/a", http_url: "http://127.0.0.1:1/a"}
        - {name: sepolia-tx, http_url: "http://127.0.0.1:1/tx", send_only: true}
    - chain_id: 80002
      nodes:
        - {name: amoy-a, ws_url: "ws://127.0.0.1:1/b", http_url: "http://127.0.0.1:1/b"}
        - {name: amoy-b, ws_url: "ws://127.0.0.1:1/c", http_url: "http://127.0.0.1:1/c"}
    - network: Avalanche-Fuji
      nodes:
        - {name: fuji-a, ws_url: "ws://127.0.0.1:1/d", http_url: "http://127.0.0.1:1/d"}
`

const p2pOn = `  p2p:
    enabled: true
    announce: 203.0.113.7:6690
    bootstrappers: ["` + peerA + `@bootstrap.example.com:6690", "` + peerB + `@198.51.100.4:6690/198.51.100.5:7000"]
`

// TestValidateNetworking runs the node's own validate on what the agent renders for one chain and several, with
// P2P off and on: the node accepts each, and its effective configuration holds the chains and P2P.V2 as written.
func TestValidateNetworking(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)

	for _, tc := range []struct {
		name string
		opts []realnode.SetupOption
		want []string // in the node's output (its effective configuration)
	}{
		{name: "OneChainP2POff", want: []string{"ChainID = '1'", "Name = 'primary'", "[P2P.V2]\nEnabled = false"}},
		{name: "OneChainP2POn", opts: []realnode.SetupOption{realnode.ExtraConfig(p2pOn)},
			want: []string{"Name = 'primary'", "[P2P.V2]\nEnabled = true", "AnnounceAddresses = ['203.0.113.7:6690']",
				"ListenAddresses = ['0.0.0.0:6690']", peerA + "@bootstrap.example.com:6690", peerB + "@198.51.100.4:6690/198.51.100.5:7000"}},
		{name: "SeveralChainsP2POff", opts: []realnode.SetupOption{realnode.ChainURLs("", ""), realnode.ExtraConfig(severalChains)},
			want: []string{"ChainID = '11155111'", "ChainID = '80002'", "ChainID = '43113'", "Name = 'sepolia-tx'", "SendOnly = true",
				"Name = 'amoy-b'", "[P2P.V2]\nEnabled = false"}},
		{name: "SeveralChainsP2POn", opts: []realnode.SetupOption{realnode.ChainURLs("", ""), realnode.ExtraConfig(severalChains + p2pOn)},
			want: []string{"ChainID = '11155111'", "ChainID = '80002'", "ChainID = '43113'", "Name = 'fuji-a'",
				"[P2P.V2]\nEnabled = true", "AnnounceAddresses = ['203.0.113.7:6690']", "ListenAddresses = ['0.0.0.0:6690']"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := realnode.Render(t, pg, tc.opts...)
			out, err := realnode.Validate(t, image, realnode.Files{SecretsDir: s.Files.SecretsDir, ReadOnly: s.Files.ReadOnly})
			if err != nil {
				t.Fatalf("validate refused the agent's files: %v\n%s", err, out)
			}
			t.Logf("validate output (tail): %s", tail(out, 2))
			for _, w := range append(tc.want, "Valid configuration.") {
				if !strings.Contains(out, w) {
					t.Errorf("validate output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestNetworkingRulesMatchTheNode: for rules the agent checks at load, the node refuses the same thing when it is
// written into the rendered config.toml behind the agent's back, and the agent refuses the YAML that would say it.
func TestNetworkingRulesMatchTheNode(t *testing.T) {
	t.Parallel()
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)

	for _, tc := range []struct {
		name       string
		extra      string // agent YAML (node: lines) rendered before the edit
		from, to   string // the edit of config.toml
		nodeSays   string
		agentYAML  string // node: lines the agent refuses
		agentField string
	}{
		{
			name: "DuplicateChainID", extra: severalChains, from: "ChainID = '80002'", to: "ChainID = '11155111'",
			nodeSays:   "duplicate - must be unique",
			agentYAML:  strings.Replace(severalChains, "chain_id: 80002", "chain_id: 11155111", 1),
			agentField: "node.chains[1].chain_id",
		},
		{
			name: "DuplicateClientName", extra: severalChains, from: "Name = 'fuji-a'", to: "Name = 'sepolia-a'",
			nodeSays:   "duplicate - must be unique",
			agentYAML:  strings.Replace(severalChains, "name: fuji-a", "name: sepolia-a", 1),
			agentField: "node.chains[2].nodes[0].name",
		},
		{
			name: "BootstrapperWithP2PPrefix", extra: p2pOn, from: "'" + peerA + "@", to: "'p2p_" + peerA + "@",
			nodeSays:   "invalid peer id",
			agentYAML:  strings.Replace(p2pOn, peerA+"@", "p2p_"+peerA+"@", 1),
			agentField: "node.p2p.bootstrappers[0]",
		},
		{
			name: "OCR2WithoutP2P", from: "[P2P.V2]\nEnabled = false", to: "[OCR2]\nEnabled = true\n\n[P2P.V2]\nEnabled = false",
			nodeSays:   "P2P required for OCR or OCR2",
			agentYAML:  "  extra_toml: |\n    [OCR2]\n    Enabled = true\n",
			agentField: "node.extra_toml",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []realnode.SetupOption
			if tc.extra == severalChains {
				opts = append(opts, realnode.ChainURLs("", ""))
			}
			s := realnode.Render(t, pg, append(opts, realnode.ExtraConfig(tc.extra))...)
			path := filepath.Join(s.Files.SecretsDir, "config.toml")
			raw, err := os.ReadFile(path)
			if err != nil || !strings.Contains(string(raw), tc.from) {
				t.Fatalf("config.toml lacks %q (%v):\n%s", tc.from, err, raw)
			}
			if err := os.WriteFile(path, []byte(strings.Replace(string(raw), tc.from, tc.to, 1)), 0o400); err != nil {
				t.Fatal(err)
			}
			out, err := realnode.Validate(t, image, realnode.Files{SecretsDir: s.Files.SecretsDir, ReadOnly: s.Files.ReadOnly})
			if err == nil || !strings.Contains(out, tc.nodeSays) {
				t.Errorf("validate: err = %v, want a refusal saying %q:\n%s", err, tc.nodeSays, out)
			}
			t.Logf("the node: %s", outputLine(out, tc.nodeSays))

			yaml := "node:\n  api_email: ops@example.com\n  database: {host: db, name: chainlink, user: chainlink}\n" + tc.agentYAML
			if !strings.Contains(tc.agentYAML, "chains:") {
				yaml += "  ws_url: ws://127.0.0.1:1\n  http_url: http://127.0.0.1:1\n"
			}
			_, err = config.Parse([]byte(yaml))
			var fe *config.FieldError
			found := false
			for _, e := range unjoin(err) {
				if errors.As(e, &fe) && fe.Field == tc.agentField && fe.ExitCode() == 2 {
					found = true
					t.Logf("the agent: %v", e)
				}
			}
			if !found {
				t.Errorf("config.Parse: %v; want a %s error (exit 2)", err, tc.agentField)
			}
		})
	}
}

// unjoin splits an errors.Join result.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// outputLine is the first line of out that contains s.
func outputLine(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
