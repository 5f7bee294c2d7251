package health

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cl-agent/cl-agent/agent/pair"
	"github.com/cl-agent/cl-agent/agent/state"
)

// Names of the metrics checks feed through their Samples. Ratios are 0..1; balances in ETH (LINK for the LINK
// balance); latency in seconds.
const (
	metricWalletBalance = "cl_agent_wallet_balance_eth"     // label address
	metricWalletLow     = "cl_agent_wallet_balance_low"     // 1 when any balance is under the minimum
	metricLinkBalance   = "cl_agent_wallet_link_balance"    // label address; LINK
	metricErroredRuns   = "cl_agent_errored_runs"           // errored runs among the newest the node lists
	metricChainHead     = "cl_agent_chain_head"             // labels chain_id, node; block number
	metricRPCLatency    = "cl_agent_rpc_latency_seconds"    // labels chain_id, node, transport: http | ws
	metricDiskUsed      = "cl_agent_host_disk_used_ratio"   // label path
	metricMemoryUsed    = "cl_agent_host_memory_used_ratio" // (MemTotal - MemAvailable) / MemTotal
	metricCPUUsed       = "cl_agent_host_cpu_used_ratio"    // busy share of all CPUs since the last run
)

// Names of the metrics the agent itself feeds.
const (
	metricRole          = "cl_agent_role"                          // label role; 1 for the current one
	metricLockHeld      = "cl_agent_lock_held"                     // 1 while this host holds the advisory lock
	metricNodeUp        = "cl_agent_node_up"                       // 1 while this host's node container runs
	metricNodeReady     = "cl_agent_node_ready"                    // 1 while it is ready
	metricActiveNode    = "cl_agent_active_node"                   // 1 on the active host with a ready node
	metricBeatAge       = "cl_agent_heartbeat_age_seconds"         // since the main loop last ticked
	metricFailovers     = "cl_agent_failovers_total"               // takeovers by this host
	metricSecretFetches = "cl_agent_secret_fetches_total"          // label result: ok | error
	metricSecretFetch   = "cl_agent_secret_fetch_duration_seconds" // histogram
	metricImageInfo     = "cl_agent_image_info"                    // labels repository, tag, digest; always 1
	metricCheckOK       = "cl_agent_check_ok"                      // label check; absent while skipped
	metricCWDropped     = "cl_agent_cloudwatch_dropped_total"      // datums CloudWatch did not take
	metricKeystoreHeld  = "cl_agent_keystore_rotation_held"        // 1 while a rotated keystore password is held back
	metricUpgradePhase  = "cl_agent_upgrade_phase"                 // labels phase, candidate; 1 for the current one
	metricUpgrading     = "cl_agent_upgrade_in_progress"           // 1 while an upgrade is under way
	metricUpgrades      = "cl_agent_upgrades_total"                // label outcome: done | refused | rolled_back | failed
)

// The labels that say which chain client a chain figure is about (Sample.ChainID, Sample.Node): the chain's id in
// decimal and the client's name (ChainClient.Name, path-escaped), so each client is its own series.
const (
	labelChainID = "chain_id"
	labelNode    = "node"
)

// sampleLabels are the labels of each sample-fed metric, in order (none for an unlabelled metric): chain_id and node
// from the sample's ChainID and Node, any other from its Label.
var sampleLabels = map[string][]string{
	metricWalletBalance: {"address"},
	metricWalletLow:     nil,
	metricLinkBalance:   {"address"},
	metricErroredRuns:   nil,
	metricChainHead:     {labelChainID, labelNode},
	metricRPCLatency:    {labelChainID, labelNode, "transport"},
	metricDiskUsed:      {"path"},
	metricMemoryUsed:    nil,
	metricCPUUsed:       nil,
}

var sampleHelp = map[string]string{
	metricWalletBalance: "ETH balance of each of the node's keys.",
	metricWalletLow:     "1 when any of the node's ETH balances is under the configured minimum.",
	metricLinkBalance:   "LINK balance of each of the node's keys.",
	metricErroredRuns:   "Errored job runs among the newest runs the node lists.",
	metricChainHead:     "Latest block number of each chain client (chain_id, node) that follows heads.",
	metricRPCLatency:    "Round trip of the last eth_blockNumber call to each chain client (chain_id, node), by transport.",
	metricDiskUsed:      "Used share of the file system holding each path.",
	metricMemoryUsed:    "Used share of the host's memory ((MemTotal - MemAvailable) / MemTotal).",
	metricCPUUsed:       "Busy share of the host's CPUs since the previous host check.",
}

// Metrics is the agent's own Prometheus registry (no global state): the daemon's state read at every gather,
// the checks' results, and the events the daemon records. No label ever holds a secret: labels are roles, check
// names, paths, transports, chain ids, chain client names, public key addresses and image references.
type Metrics struct {
	reg     *prometheus.Registry
	samples map[string]*prometheus.GaugeVec
	checkOK *prometheus.GaugeVec

	failovers     prometheus.Counter
	secretFetches *prometheus.CounterVec
	secretLatency prometheus.Histogram
	image         *prometheus.GaugeVec
	cwDropped     prometheus.Counter
	keystoreHeld  prometheus.Gauge
	upgradePhase  *prometheus.GaugeVec
	upgrading     prometheus.Gauge
	upgrades      *prometheus.CounterVec

	mu     sync.Mutex
	series map[string][]series // per check: the sample series it set last

	upMu   sync.Mutex
	upSeen bool   // SetUpgrade was called: upLast is what this process saw last
	upLast string // phase and candidate of the last SetUpgrade
}

// upgradeOutcomes are the phases that end an upgrade: the values of cl_agent_upgrades_total's label outcome.
var upgradeOutcomes = []pair.Phase{pair.Done, pair.Refused, pair.RolledBack, pair.Failed}

// series is one sample-fed time series: a sample without its value.
type series struct{ metric, label, chainID, node string }

func seriesOf(s Sample) series { return series{s.Metric, s.Label, s.ChainID, s.Node} }

// newMetrics registers the agent's metrics; state is read at every gather (scrape or CloudWatch publish).
func newMetrics(state func() AgentState) *Metrics {
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		samples: map[string]*prometheus.GaugeVec{},
		checkOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricCheckOK,
			Help: "1 when the check's last run passed, 0 when it failed; absent while the check is skipped."}, []string{"check"}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{Name: metricFailovers,
			Help: "Times this host took over the node from another host."}),
		secretFetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricSecretFetches,
			Help: "Secrets Manager fetches by result (ok or error)."}, []string{"result"}),
		secretLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricSecretFetch,
			Help: "Duration of Secrets Manager fetches, retries included.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}),
		image: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricImageInfo,
			Help: "The node image this host runs or last ran (always 1)."}, []string{"repository", "tag", "digest"}),
		cwDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: metricCWDropped,
			Help: "Metric datums dropped because CloudWatch did not take them in time."}),
		keystoreHeld: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricKeystoreHeld,
			Help: "1 while a rotated keystore password is held back because it does not open the node's key ring."}),
		upgradePhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricUpgradePhase,
			Help: "1 for the phase of the pair's upgrade under way or last ended, with its candidate tag; no series before any upgrade."},
			[]string{"phase", "candidate"}),
		upgrading: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricUpgrading,
			Help: "1 while an upgrade of the pair's image is under way (requested, validated, switching or starting)."}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricUpgrades,
			Help: "Upgrades of the pair's image this agent saw end, by outcome (done, refused, rolled_back, failed)."},
			[]string{"outcome"}),
		series: map[string][]series{},
	}
	for name, labels := range sampleLabels {
		m.samples[name] = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: sampleHelp[name]}, labels)
		m.reg.MustRegister(m.samples[name])
	}
	m.secretFetches.WithLabelValues("ok")
	m.secretFetches.WithLabelValues("error")
	for _, o := range upgradeOutcomes {
		m.upgrades.WithLabelValues(string(o))
	}
	m.reg.MustRegister(m.checkOK, m.failovers, m.secretFetches, m.secretLatency, m.image, m.cwDropped, m.keystoreHeld,
		m.upgradePhase, m.upgrading, m.upgrades,
		&stateCollector{state: state},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// gatherer is the registry, for /metrics and the CloudWatch publisher.
func (m *Metrics) gatherer() prometheus.Gatherer { return m.reg }

// RecordSecretFetch counts one Secrets Manager fetch (err nil: ok) and its duration, retries included.
func (m *Metrics) RecordSecretFetch(err error, took time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.secretFetches.WithLabelValues(result).Inc()
	m.secretLatency.Observe(took.Seconds())
}

// SetKeystoreHeld says whether a rotated keystore password is held back (it does not open the node's key ring).
func (m *Metrics) SetKeystoreHeld(held bool) { m.keystoreHeld.Set(boolFloat(held)) }

// RecordFailover counts one takeover: this host became active after another host had held the node. The
// template's FailoverAlarm sums it across hosts per interval.
func (m *Metrics) RecordFailover() { m.failovers.Inc() }

// SetImage records the node image this host runs (repository, tag, digest: "sha256:…"), replacing the last one.
func (m *Metrics) SetImage(repository, tag, digest string) {
	m.image.Reset()
	m.image.WithLabelValues(repository, tag, digest).Set(1)
}

// SetUpgrade records the phase of the pair's upgrade (agent/pair: requested … done, refused, rolled_back, failed;
// "" none ever asked for) and its candidate's tag, replacing the last. An outcome is counted once, when the phase
// changes to it; one already there at this process's first call ended before the agent started (or was counted
// by the agent that ran then) and is not counted again. Both hosts of a pair read the record, so each counts
// every upgrade it sees end: aggregate across hosts with Maximum, not Sum.
func (m *Metrics) SetUpgrade(phase, candidate string) {
	m.upMu.Lock()
	defer m.upMu.Unlock()
	now := phase + "\x00" + candidate
	changed := m.upSeen && now != m.upLast
	m.upSeen, m.upLast = true, now
	m.upgradePhase.Reset()
	if phase != "" {
		m.upgradePhase.WithLabelValues(phase, candidate).Set(1)
	}
	m.upgrading.Set(boolFloat(pair.Phase(phase).InProgress()))
	if changed && slices.Contains(upgradeOutcomes, pair.Phase(phase)) {
		m.upgrades.WithLabelValues(phase).Inc()
	}
}

// observe turns a check's result into metrics: check_ok, and its samples. Series the check set before but not
// now are removed (a key that went away, a skipped check).
func (m *Metrics) observe(res Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if res.Skipped {
		m.checkOK.DeleteLabelValues(res.Name)
	} else {
		m.checkOK.WithLabelValues(res.Name).Set(boolFloat(res.OK))
	}
	now := make([]series, 0, len(res.Samples))
	for _, s := range res.Samples {
		vec, ok := m.samples[s.Metric]
		if !ok {
			continue // a check's programming error; never panic in the agent
		}
		vec.WithLabelValues(labelValues(seriesOf(s))...).Set(s.Value)
		now = append(now, seriesOf(s))
	}
	for _, old := range m.series[res.Name] {
		if !containsSeries(now, old) {
			m.samples[old.metric].DeleteLabelValues(labelValues(old)...)
		}
	}
	m.series[res.Name] = now
}

// labelValues are the values of s's metric's labels, in the metric's order.
func labelValues(s series) []string {
	names := sampleLabels[s.metric]
	out := make([]string, len(names))
	for i, name := range names {
		switch name {
		case labelChainID:
			out[i] = s.chainID
		case labelNode:
			out[i] = s.node
		default:
			out[i] = s.label
		}
	}
	return out
}

func containsSeries(list []series, s series) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// stateCollector reads the daemon's state at every gather, so the figures are never older than the scrape.
type stateCollector struct{ state func() AgentState }

var (
	descRole       = prometheus.NewDesc(metricRole, "1 for the daemon's current role, 0 for the others.", []string{"role"}, nil)
	descLockHeld   = prometheus.NewDesc(metricLockHeld, "1 while this host holds the leader lock (always 0 with leader.enabled false).", nil, nil)
	descNodeUp     = prometheus.NewDesc(metricNodeUp, "1 while this host's node container runs.", nil, nil)
	descNodeReady  = prometheus.NewDesc(metricNodeReady, "1 while this host's node is ready (/readyz 200).", nil, nil)
	descActiveNode = prometheus.NewDesc(metricActiveNode, "1 on the active host with a ready node, else 0; sum across hosts: must be 1.", nil, nil)
	descBeatAge    = prometheus.NewDesc(metricBeatAge, "Seconds since the agent's main loop last ticked.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRole, descLockHeld, descNodeUp, descNodeReady, descActiveNode, descBeatAge} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state()
	for _, r := range state.Roles {
		ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, boolFloat(st.Role == r), string(r))
	}
	ch <- prometheus.MustNewConstMetric(descLockHeld, prometheus.GaugeValue, boolFloat(st.LockEnabled && st.LockHeld))
	ch <- prometheus.MustNewConstMetric(descNodeUp, prometheus.GaugeValue, boolFloat(st.NodeUp))
	ch <- prometheus.MustNewConstMetric(descNodeReady, prometheus.GaugeValue, boolFloat(st.NodeReady))
	ch <- prometheus.MustNewConstMetric(descActiveNode, prometheus.GaugeValue, boolFloat(st.serving()))
	if !st.LastBeat.IsZero() {
		ch <- prometheus.MustNewConstMetric(descBeatAge, prometheus.GaugeValue, time.Since(st.LastBeat).Seconds())
	}
}
