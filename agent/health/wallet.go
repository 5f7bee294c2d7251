package health

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cl-agent/cl-agent/agent/state"
)

// WalletBalances checks the ETH balance of each of the node's keys (GET /v2/keys/eth) against minETH: any
// enabled key under it fails the check, sets cl_agent_wallet_balance_low (CloudWatch WalletBalanceLow) and logs
// one warning when the key goes under (not again while it stays there).
//
// The node gives balances as whole wei (ethBalance) and juels (linkBalance) in decimal strings; the decision is
// taken on those integers, against minETH converted to wei from its decimal form (0.1 is exactly 10^17 wei), so a
// key holding exactly the minimum passes. Only the published figures (cl_agent_wallet_balance_eth,
// cl_agent_wallet_link_balance) are floats.
func WalletBalances(api *NodeAPI, minETH float64, interval, timeout time.Duration, log *zap.Logger) Check {
	if log == nil {
		log = zap.NewNop()
	}
	return &walletBalances{spec: spec{string(state.NodeWalletBalance), interval, timeout}, api: api, min: minimumWei(minETH),
		log: log, low: map[string]bool{}}
}

type walletBalances struct {
	spec
	api *NodeAPI
	min *big.Int // wei
	log *zap.Logger

	mu  sync.Mutex
	low map[string]bool // addresses under the minimum at the last run
}

// ethKeysDocument is the node's answer of GET /v2/keys/eth.
type ethKeysDocument struct {
	Data []struct {
		ID         string `json:"id"`
		Attributes struct {
			Address     string  `json:"address"`
			EVMChainID  string  `json:"evmChainID"`
			ETHBalance  *string `json:"ethBalance"`  // wei; null while the node does not know it
			LINKBalance *string `json:"linkBalance"` // juels; null while the node does not know it
			Disabled    bool    `json:"disabled"`
		} `json:"attributes"`
	} `json:"data"`
}

// target is where the check looks, for its timeout message.
func (c *walletBalances) target() string { return c.api.base + "/v2/keys/eth" }

func (c *walletBalances) Run(ctx context.Context) Result {
	var doc ethKeysDocument
	if err := c.api.getJSON(ctx, "/v2/keys/eth", &doc); err != nil {
		return fail(c.name, err.Error())
	}
	var samples []Sample
	var low, lowAddrs, unknown []string
	lowNow := map[string]bool{}
	keys := 0
	for _, k := range doc.Data {
		addr := k.Attributes.Address
		if addr == "" {
			addr = k.ID
		}
		if k.Attributes.LINKBalance != nil {
			juels, err := parseWei(*k.Attributes.LINKBalance)
			if err != nil {
				return fail(c.name, fmt.Sprintf("the LINK balance of %s: %v", addr, err))
			}
			samples = append(samples, Sample{Metric: metricLinkBalance, Label: addr, Value: unitsFloat(juels)})
		}
		if k.Attributes.ETHBalance == nil {
			unknown = append(unknown, addr)
			continue
		}
		wei, err := parseWei(*k.Attributes.ETHBalance)
		if err != nil {
			return fail(c.name, fmt.Sprintf("the ETH balance of %s: %v", addr, err))
		}
		keys++
		samples = append(samples, Sample{Metric: metricWalletBalance, Label: addr, Value: unitsFloat(wei)})
		if !k.Attributes.Disabled && wei.Cmp(c.min) < 0 {
			low = append(low, fmt.Sprintf("%s has %s ETH", addr, formatUnits(wei)))
			lowAddrs = append(lowAddrs, addr)
			lowNow[addr] = true
			c.warnOnce(addr, wei)
		}
	}
	c.mu.Lock()
	c.low = lowNow
	c.mu.Unlock()
	samples = append(samples, Sample{Metric: metricWalletLow, Value: boolFloat(len(low) > 0)})
	minText := formatUnits(c.min)
	if len(low) > 0 {
		sort.Strings(low)
		sort.Strings(lowAddrs)
		// The reason is the set of low keys: a balance that keeps falling is not news, another key going low is.
		return failBecause(c.name, "under the minimum: "+strings.Join(lowAddrs, ", "),
			fmt.Sprintf("under the %s ETH minimum: %s", minText, strings.Join(low, "; ")), samples...)
	}
	detail := fmt.Sprintf("%d key(s), all at or above %s ETH", keys, minText)
	if len(unknown) > 0 {
		detail += fmt.Sprintf("; balance not known yet for %s", strings.Join(unknown, ", "))
	}
	return pass(c.name, detail, samples...)
}

// warnOnce logs the low balance of addr if it was not low at the last run.
func (c *walletBalances) warnOnce(addr string, wei *big.Int) {
	c.mu.Lock()
	was := c.low[addr]
	c.mu.Unlock()
	if !was {
		c.log.Warn("wallet balance low: fund the node's address", zap.String("address", addr),
			zap.Float64("balance_eth", unitsFloat(wei)), zap.String("balance_wei", wei.String()),
			zap.Float64("minimum_eth", unitsFloat(c.min)))
	}
}
