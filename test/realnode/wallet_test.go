package realnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/health"
	"github.com/cl-agent/cl-agent/internal/realnode"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

// linkOnGeth is a LINK contract address with its EIP-55 checksum (mainnet's; geth --dev has no LINK, and the node
// only needs a well-formed one).
const linkOnGeth = "0x514910771AF9Ca656af840dff83E8264EcF986CA"

// TestWalletBalanceOnTheRealNode: the real node on a real chain client (geth --dev). The node makes its own key,
// geth funds it with 0.05 ETH, and the agent's wallet check reads the node's own /v2/keys/eth. The figure must be
// exactly geth's eth_getBalance, and 0.05 ETH must fail a 0.1 ETH minimum: on 42eff39 the wei figure was read as
// ETH and called far above it.
func TestWalletBalanceOnTheRealNode(t *testing.T) {
	testenv.DockerT(t)
	image := realnode.Image(t)
	pg := testenv.PostgresT(t)
	g := testenv.GethT(t)
	// The node's container reaches geth through the docker bridge's gateway.
	chainHTTP, chainWS := forwardToBridge(t, pg.BridgeHost, g.HTTPURL), forwardToBridge(t, pg.BridgeHost, g.WSURL)
	s := realnode.Render(t, pg, realnode.ChainURLs("ws://"+chainWS, "http://"+chainHTTP),
		realnode.ExtraConfig(fmt.Sprintf("  chain_id: %d\n  link_contract: %s\n", testenv.GethChainID, linkOnGeth)))
	node := realnode.Start(t, image, s.Files, s.Cmd)
	node.WaitReady(readyBound)

	email, password := s.Config.Node.APIEmail, s.Secrets.APIPassword.Reveal()
	key := nodeETHKey(t, node.URL, email, password)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := g.Fund(ctx, key, big.NewInt(50_000_000_000_000_000)); err != nil { // 0.05 ETH
		t.Fatal(err)
	}
	onChain, err := g.Balance(ctx, key)
	if err != nil {
		t.Fatal(err)
	}

	api := health.NewNodeAPI(node.URL, func() (string, string, bool) { return email, password, true })
	check := health.WalletBalances(api, 0.1, time.Second, 5*time.Second, zap.NewNop())
	var res health.Result
	// The node's balance monitor reads the balance on new heads: wait for it to catch up with the funding.
	testenv.WaitFor(t, time.Minute, "the node to report the funded balance", func() bool {
		res, _ = health.RunOnce(ctx, check, nil)
		return strings.Contains(res.Detail, key) && strings.Contains(res.Detail, "has 0.05 ETH")
	})
	if onChain.String() != "50000000000000000" {
		t.Fatalf("geth says %s wei after funding 0.05 ETH", onChain)
	}
	if res.OK || !strings.Contains(res.Detail, "under the 0.1 ETH minimum") {
		t.Errorf("the real node's 0.05 ETH against a 0.1 minimum: ok=%v %q; want the alarm", res.OK, res.Detail)
	}
	if res, _ := health.RunOnce(ctx, health.WalletBalances(api, 0.05, time.Second, 5*time.Second, zap.NewNop()), nil); !res.OK {
		t.Errorf("the real node's 0.05 ETH against a 0.05 minimum: %q; want a pass", res.Detail)
	}
}

// forwardToBridge relays the bridge's gateway to a loopback URL's host:port and returns the gateway address.
func forwardToBridge(t *testing.T, gateway, rawURL string) string {
	t.Helper()
	target := rawURL[strings.Index(rawURL, "//")+2:]
	f, err := testenv.Forward(gateway, strings.TrimSuffix(target, "/"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f.Addr
}

// login opens an operator's session with the node's API (POST /sessions), as the web UI does.
func login(ctx context.Context, base, email, password string) (*http.Client, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/sessions", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST /sessions: %s", resp.Status)
	}
	return c, nil
}

// nodeETHKey logs in to the node's API as the operator and returns the address of its (only) EVM key.
func nodeETHKey(t *testing.T, base, email, password string) string {
	t.Helper()
	c, err := login(context.Background(), base, email, password)
	if err != nil {
		t.Fatal(err)
	}
	var keys struct {
		Data []struct {
			Attributes struct {
				Address string `json:"address"`
			} `json:"attributes"`
		} `json:"data"`
	}
	testenv.WaitFor(t, time.Minute, "the node's EVM key", func() bool {
		resp, err := c.Get(base + "/v2/keys/eth")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&keys) == nil && len(keys.Data) > 0
	})
	return keys.Data[0].Attributes.Address
}
