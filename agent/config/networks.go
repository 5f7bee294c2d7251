package config

import (
	"sort"
	"strings"
)

// Network is a chain the agent knows by name: its chain id and the LINK token contract on it.
type Network struct {
	ChainID      uint64
	LinkContract string
	// Retired marks a network that no longer runs (the old Quick Start's testnets); choosing one is refused.
	Retired bool
}

// Networks is the built-in table: the old Quick Start's networks plus today's mainnets and testnets. Names are
// matched without regard to case. chain_id + link_contract in the configuration override the table.
var Networks = map[string]Network{
	// The old Quick Start's names, kept so its parameter values still work.
	"ETH-Mainnet":         {ChainID: 1, LinkContract: "0x514910771AF9Ca656af840dff83E8264EcF986CA"},
	"xDai-Mainnet":        {ChainID: 100, LinkContract: "0xE2e73A1c69ecF83F464EFCE6A5be353a37cA09b2"},
	"Matic-Mainnet":       {ChainID: 137, LinkContract: "0xb0897686c545045aFc77CF20eC7A532E3120E0F1"},
	"Kovan-ETH-Testnet":   {ChainID: 42, LinkContract: "0xa36085F69e2889c224210F603D836748e7dC0088", Retired: true},
	"Rinkeby-ETH-Testnet": {ChainID: 4, LinkContract: "0x01BE23585060835E02B77ef475b0Cc51aA1e0709", Retired: true},
	// Retired Ethereum testnets under today's naming.
	"Ethereum-Rinkeby": {ChainID: 4, LinkContract: "0x01BE23585060835E02B77ef475b0Cc51aA1e0709", Retired: true},
	"Ethereum-Kovan":   {ChainID: 42, LinkContract: "0xa36085F69e2889c224210F603D836748e7dC0088", Retired: true},
	"Ethereum-Ropsten": {ChainID: 3, LinkContract: "0x20fE562d797A42Dcb3399062AE9546cd06f63280", Retired: true},
	"Ethereum-Goerli":  {ChainID: 5, LinkContract: "0x326C977E6efc84E512bB9C30f76E30c160eD06FB", Retired: true},
	// Today's networks.
	"Ethereum-Mainnet":  {ChainID: 1, LinkContract: "0x514910771AF9Ca656af840dff83E8264EcF986CA"},
	"Ethereum-Sepolia":  {ChainID: 11155111, LinkContract: "0x779877A7B0D9E8603169DdbD7836e478b4624789"},
	"BSC-Mainnet":       {ChainID: 56, LinkContract: "0x404460C6A5EdE2D891e8297795264fDe62ADBB75"},
	"BSC-Testnet":       {ChainID: 97, LinkContract: "0x84b9B910527Ad5C03A9Ca831909E21e236EA7b06"},
	"Polygon-Mainnet":   {ChainID: 137, LinkContract: "0xb0897686c545045aFc77CF20eC7A532E3120E0F1"},
	"Polygon-Amoy":      {ChainID: 80002, LinkContract: "0x0Fd9e8d3aF1aaee056EB9e802c3A762a667b1904"},
	"Arbitrum-Mainnet":  {ChainID: 42161, LinkContract: "0xf97f4df75117a78c1A5a0DBb814Af92458539FB4"},
	"Arbitrum-Sepolia":  {ChainID: 421614, LinkContract: "0xb1D4538B4571d411F07960EF2838Ce337FE1E80E"},
	"Optimism-Mainnet":  {ChainID: 10, LinkContract: "0x350a791Bfc2C21F9Ed5d10980Dad2e2638ffa7f6"},
	"Optimism-Sepolia":  {ChainID: 11155420, LinkContract: "0xE4aB69C077896252FAFBD49EFD26B5D171A32410"},
	"Base-Mainnet":      {ChainID: 8453, LinkContract: "0x88Fb150BDc53A65fe94Dea0c9BA0a6dAf8C6e196"},
	"Base-Sepolia":      {ChainID: 84532, LinkContract: "0xE4aB69C077896252FAFBD49EFD26B5D171A32410"},
	"Avalanche-Mainnet": {ChainID: 43114, LinkContract: "0x5947BB275c521040051D82396192181b413227A3"},
	"Avalanche-Fuji":    {ChainID: 43113, LinkContract: "0x0b9d5D9136855f6FEc3c0993feE6E9CE8a297846"},
	"Gnosis-Mainnet":    {ChainID: 100, LinkContract: "0xE2e73A1c69ecF83F464EFCE6A5be353a37cA09b2"},
	"Fantom-Mainnet":    {ChainID: 250, LinkContract: "0x6F43FF82CCA38001B6699a8AC47A2d0E66939407"},
}

// LookupNetwork finds a built-in network by name, ignoring case.
func LookupNetwork(name string) (Network, bool) {
	for k, n := range Networks {
		if strings.EqualFold(k, name) {
			return n, true
		}
	}
	return Network{}, false
}

// NetworkNames lists the usable built-in networks, sorted.
func NetworkNames() []string {
	var names []string
	for k, n := range Networks {
		if !n.Retired {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

// Chain resolves the configured chain: chain_id + link_contract when set, else the named network. With node.chains
// it is the first chain (see EVMChains for all of them).
func (n Node) Chain() (chainID uint64, link string) {
	if len(n.Chains) > 0 {
		first := n.EVMChains()[0]
		return first.ChainID, first.LinkContract
	}
	if n.ChainID != 0 {
		return n.ChainID, n.LinkContract
	}
	net, _ := LookupNetwork(n.Network)
	return net.ChainID, net.LinkContract
}
