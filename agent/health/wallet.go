package health

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// WalletBalances checks the ETH balance of each of the node's keys (GET /v2/keys/eth) against minETH: any
// enabled key under it fails the check, sets cl_agent_wallet_balance_low (CloudWatch WalletBalanceLow) and logs
// one warning when the key goes under (not again while it stays there).
func WalletBalances(api *NodeAPI, minETH float64, interval, timeout time.Duration, log *zap.Logger) Check {
	if log == nil {
		log = zap.NewNop()
	}
	return &walletBalances{spec: spec{"node_wallet_balance", interval, timeout}, api: api, min: minETH, log: log,
		low: map[string]bool{}}
}

type walletBalances struct {
	spec
	api *NodeAPI
	min float64
	log *zap.Logger

	mu  sync.Mutex
	low map[string]bool // addresses under the minimum at the last run
}

// ethKeysDocument is the node's answer of GET /v2/keys/eth.
type ethKeysDocument struct {
	Data []struct {
		ID         string `json:"id"`
		Attributes struct {
			Address    string  `json:"address"`
			EVMChainID string  `json:"evmChainID"`
			ETHBalance *string `json:"ethBalance"` // decimal ETH; null while the node does not know it
			Disabled   bool    `json:"disabled"`
		} `json:"attributes"`
	} `json:"data"`
}

func (c *walletBalances) Run(ctx context.Context) Result {
	var doc ethKeysDocument
	if err := c.api.getJSON(ctx, "/v2/keys/eth", &doc); err != nil {
		return fail(c.name, err.Error())
	}
	var samples []Sample
	var low, unknown []string
	lowNow := map[string]bool{}
	for _, k := range doc.Data {
		addr := k.Attributes.Address
		if addr == "" {
			addr = k.ID
		}
		if k.Attributes.ETHBalance == nil {
			unknown = append(unknown, addr)
			continue
		}
		eth, err := strconv.ParseFloat(strings.TrimSpace(*k.Attributes.ETHBalance), 64)
		if err != nil {
			return fail(c.name, fmt.Sprintf("the balance of %s is not a number: %q", addr, oneLine(*k.Attributes.ETHBalance, 40)))
		}
		samples = append(samples, Sample{Metric: MetricWalletBalance, Label: addr, Value: eth})
		if !k.Attributes.Disabled && eth < c.min {
			low = append(low, fmt.Sprintf("%s has %s ETH", addr, strconv.FormatFloat(eth, 'f', -1, 64)))
			lowNow[addr] = true
			c.warnOnce(addr, eth)
		}
	}
	c.mu.Lock()
	c.low = lowNow
	c.mu.Unlock()
	samples = append(samples, Sample{Metric: MetricWalletLow, Value: boolFloat(len(low) > 0)})
	minText := strconv.FormatFloat(c.min, 'f', -1, 64)
	if len(low) > 0 {
		sort.Strings(low)
		return fail(c.name, fmt.Sprintf("under the %s ETH minimum: %s", minText, strings.Join(low, "; ")), samples...)
	}
	detail := fmt.Sprintf("%d key(s), all at or above %s ETH", len(samples)-1, minText)
	if len(unknown) > 0 {
		detail += fmt.Sprintf("; balance not known yet for %s", strings.Join(unknown, ", "))
	}
	return pass(c.name, detail, samples...)
}

// warnOnce logs the low balance of addr if it was not low at the last run.
func (c *walletBalances) warnOnce(addr string, eth float64) {
	c.mu.Lock()
	was := c.low[addr]
	c.mu.Unlock()
	if !was {
		c.log.Warn("wallet balance low: fund the node's address", zap.String("address", addr),
			zap.Float64("balance_eth", eth), zap.Float64("minimum_eth", c.min))
	}
}
