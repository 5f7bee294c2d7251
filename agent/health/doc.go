// Package health is the agent's view of itself, its node and the chain, for load balancers, Prometheus,
// CloudWatch and `cl-agent status`.
//
// # Endpoint (health.listen, default 127.0.0.1:9180)
//
//	/healthz  200 "ok" while the daemon's main loop ticks (within BeatBound) and the host is not fencing (an
//	          active that can no longer prove its lock and has not stopped its node yet); else 503 and the reason.
//	/readyz   200 "ok" only on the active host with its node ready: the load balancer's target check, so only
//	          the active gets traffic; else 503 and the reason ("standby: another host runs the node", …).
//	/metrics  Prometheus text from the agent's own registry.
//
// The probes read only the daemon's state (a func() AgentState), never a check: a hung node or chain client
// cannot slow them.
//
// # Checks
//
// Each check runs in its own goroutine, on its own interval, under its own deadline (runner.go). A run past its
// deadline is recorded as timed out (naming the URL and the bound) and abandoned; the check is not started again
// until it returns. Results() keeps the last result of each for `cl-agent status`. Each change is logged once:
// passing to failing, failing for another reason (a failure's reason leaves out the figures that change from run
// to run), and back to passing.
//
//	node_readyz          GET /readyz of the node: only 200 passes                      (active host only)
//	node_health          GET /health: 200 passes; 207 fails and names the failing checks (active host only)
//	node_wallet_balance  GET /v2/keys/eth with an API session: balances in wei (juels for LINK), compared exactly
//	                     with the minimum; a key under it fails, sets WalletBalanceLow and logs one warning
//	                                                                                    (active host only)
//	node_errored_runs    GET /v2/pipeline/runs: errored runs among the newest 100       (active host only)
//	chain_http           HTTP: eth_chainId is the configured chain; eth_blockNumber: latency, and the head must
//	                     rise within HeadStallAfter (not for a send-only client: chain id and an answer only)
//	chain_ws             WebSocket, one connection kept open: eth_chainId is the configured chain, newHeads
//	                     subscribed, and a new head must arrive on it within HeadStallAfter; eth_blockNumber: latency
//	                     (no WebSocket check for a send-only client, which the node uses only to broadcast)
//	host                 disk (statfs), memory (/proc/meminfo), CPU (/proc/stat); fails over 90% disk, 95% memory
//
// The chain checks run for every RPC client of every chain (Options.Chains, chains.go). The one-chain shorthand's
// client keeps the ids chain_http and chain_ws; with node.chains each check is named for its client,
// chain_http/<chain id>/<client name> and chain_ws/<chain id>/<client name>, the name path-escaped so that the id
// is one word of printable ASCII: a Prometheus label value and a CloudWatch dimension value as it is.
//
// The node's API session logs in with the credentials the daemon holds in memory (Credentials) and logs in
// again on 401; the password goes to the node only. Chain URLs are shown with scheme and host only: providers
// put API keys in the user info, the path or the query; those parts are also registered with the logging
// redactor, and masked in what a server sends back. A swapped pair of chain URLs, or a client on another chain,
// fails with a message that says so (ErrWrongEndpoint, ErrWrongChain). ProbeChainHTTP and ProbeChainWS are the
// chain checks done once, for `cl-agent check`.
//
// # Metrics
//
// Prometheus names (cl_agent_…) are the metric* constants. The same figures go to CloudWatch (cloudwatch.go) under
// the namespace ChainlinkNode/Agent with the dimension InstanceId (and Address, Transport, Path, Check, Result or
// Outcome where the Prometheus metric has that label), every interval, in PutMetricData batches of at most 1000 datums,
// each call with a deadline. The template's alarms read ActiveNodes (1 on the active host with a ready node),
// Failovers (takeovers in the interval) and WalletBalanceLow. Counters go as their increase since the last
// publish that CloudWatch took (UpgradeOutcome only in an interval in which an upgrade ended); ratios go as
// percent. A failing CloudWatch drops the datums, counts them in
// cl_agent_cloudwatch_dropped_total and logs; it never blocks the checks or the daemon.
//
// The chain figures, cl_agent_chain_head{chain_id,node} and cl_agent_rpc_latency_seconds{chain_id,node,transport},
// have one series per client (the head from its HTTP check, or from its WebSocket check when it has no http_url;
// none for a send-only client). In CloudWatch, ChainHead and RPCLatency carry ChainId and Node dimensions with
// node.chains, one metric per client; the shorthand's datums keep InstanceId (and Transport) only, as they were.
//
// No label holds a secret: labels are roles, check names, paths, transports, chain ids, chain client names,
// public key addresses and image references.
//
// # What the daemon calls
//
//	svc, err := health.New(health.Options{State: …, NodeURL: …, Credentials: …, CloudWatch: …, InstanceID: …})
//	go svc.Run(ctx)                                  // or svc.Listen() first to fail early on a used port
//	svc.Metrics().RecordSecretFetch(err, took)       // after each Secrets Manager fetch
//	svc.Metrics().RecordFailover()                   // when this host takes the node over from another
//	svc.Metrics().SetImage(repository, tag, digest)  // when it starts a node image
//	svc.Metrics().SetUpgrade(phase, candidate)       // when it reads a new phase of the pair's upgrade
//	svc.Results()                                    // for `cl-agent status`
package health
