// Package chainsim plays an Ethereum chain client (the JSON-RPC of geth and its kin) on loopback, for tests and
// the demo. One port answers HTTP JSON-RPC (POST) and WebSocket JSON-RPC (GET with an upgrade), as a client
// configured with http_url and ws_url pointing at the same host would see it.
//
// # Methods
//
//	eth_blockNumber        the head, hex
//	eth_chainId            the chain id, hex; net_version the same in decimal
//	web3_clientVersion     "chainsim/v1"
//	eth_getBlockByNumber   a minimal block (number, hash, parentHash, timestamp) for "latest" or a number
//	eth_subscribe          WebSocket only: "newHeads" (a head notification on every increase of the head)
//	eth_unsubscribe        WebSocket only
//
// Anything else answers the JSON-RPC error -32601. Batches (a JSON array) are answered as a batch.
//
// # Controls
//
// SetHead and Advance move the head (subscribers get one newHeads notification per new block); Stall makes
// every request, and every WebSocket handshake, wait without an answer until Resume or Close (a hung client);
// FailWith makes every call answer a JSON-RPC error, FailHTTP every HTTP request a bare status, until Heal.
// Calls counts the calls of a method, so tests can wait for a client to have asked.
package chainsim
