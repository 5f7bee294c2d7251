package health

import (
	"context"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// defaultNamespace is the CloudWatch namespace of the agent's metrics; the template's alarms read it.
const defaultNamespace = "ChainlinkNode/Agent"

// dimensionInstance is the dimension every datum carries: the EC2 instance id.
const dimensionInstance = "InstanceId"

// The dimensions that keep the chain clients of node.chains apart (ChainHead, RPCLatency): the labels chain_id
// and node.
const (
	dimensionChainID = "ChainId"
	dimensionNode    = "Node"
)

// PutMetricData limits: at most 1000 datums and 1 MB per call. The size is estimated; the margin covers the
// encoding's overhead.
const (
	maxBatchDatums = 1000
	maxBatchBytes  = 900 << 10
)

// CloudWatchAPI is the one CloudWatch call the publisher makes.
type CloudWatchAPI interface {
	PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error)
}

// NewCloudWatchClient builds a CloudWatch client for the publisher: endpoint overrides the service's (aws.
// endpoint_url, for tests); two tries per call and a per-attempt HTTP timeout, since the next interval brings
// fresh figures anyway. It speaks CloudWatch's awsJson1_0 protocol rather than the SDK's default
// (Smithy RPCv2 CBOR): the service takes both, and local stand-ins such as moto take only JSON or query.
// Request compression is off: moto fails on gzip bodies, and a minute's batch is a few kB anyway.
func NewCloudWatchClient(cfg aws.Config, endpoint string, attemptTimeout time.Duration) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.Protocol = awsjson.New10(schemas.GraniteServiceVersion20100801)
		o.DisableRequestCompression = true
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = 2 })
		o.HTTPClient = awshttp.NewBuildableClient().WithTimeout(attemptTimeout)
	})
}

// cwMetric says how one Prometheus metric goes to CloudWatch.
type cwMetric struct {
	name  string
	unit  types.StandardUnit
	dim   string  // CloudWatch dimension for the metric's one label ("" for none)
	label string  // that label's Prometheus name
	scale float64 // multiply by (ratio to percent); 0 means 1
	delta bool    // a counter: publish the increase since the last publish
	// sparse: a delta counter sent only in an interval in which it grew (an event, not a figure: UpgradeOutcome
	// exists in CloudWatch once an outcome was seen, and alarms treat missing data as nothing happened).
	sparse bool
	// chain: the metric has the labels chain_id and node; with a per-client publisher they go as the ChainId and
	// Node dimensions, else (the one-chain shorthand) they are left out, as before node.chains.
	chain bool
}

// cloudWatchMetrics maps the registry to CloudWatch. ActiveNodes, Failovers, WalletBalanceLow and
// KeystoreRotationHeld are the names the template's alarms use; keep them. UpgradeInProgress and UpgradeOutcome
// (Outcome: done, refused, rolled_back, failed) are named in the README's Upgrades section.
var cloudWatchMetrics = map[string]cwMetric{
	metricActiveNode:    {name: "ActiveNodes", unit: types.StandardUnitCount},
	metricFailovers:     {name: "Failovers", unit: types.StandardUnitCount, delta: true},
	metricWalletLow:     {name: "WalletBalanceLow", unit: types.StandardUnitNone},
	metricKeystoreHeld:  {name: "KeystoreRotationHeld", unit: types.StandardUnitNone},
	metricLockHeld:      {name: "LockHeld", unit: types.StandardUnitNone},
	metricNodeUp:        {name: "NodeUp", unit: types.StandardUnitNone},
	metricNodeReady:     {name: "NodeReady", unit: types.StandardUnitNone},
	metricBeatAge:       {name: "HeartbeatAge", unit: types.StandardUnitSeconds},
	metricWalletBalance: {name: "WalletBalance", unit: types.StandardUnitNone, dim: "Address", label: "address"},
	metricLinkBalance:   {name: "LinkBalance", unit: types.StandardUnitNone, dim: "Address", label: "address"},
	metricErroredRuns:   {name: "ErroredRuns", unit: types.StandardUnitCount},
	metricChainHead:     {name: "ChainHead", unit: types.StandardUnitNone, chain: true},
	metricRPCLatency:    {name: "RPCLatency", unit: types.StandardUnitSeconds, dim: "Transport", label: "transport", chain: true},
	metricDiskUsed:      {name: "DiskUsedPercent", unit: types.StandardUnitPercent, dim: "Path", label: "path", scale: 100},
	metricMemoryUsed:    {name: "MemoryUsedPercent", unit: types.StandardUnitPercent, scale: 100},
	metricCPUUsed:       {name: "CPUUsedPercent", unit: types.StandardUnitPercent, scale: 100},
	metricCheckOK:       {name: "CheckOK", unit: types.StandardUnitNone, dim: "Check", label: "check"},
	metricSecretFetches: {name: "SecretFetches", unit: types.StandardUnitCount, dim: "Result", label: "result", delta: true},
	metricUpgrading:     {name: "UpgradeInProgress", unit: types.StandardUnitNone},
	metricUpgrades:      {name: "UpgradeOutcome", unit: types.StandardUnitCount, dim: "Outcome", label: "outcome", delta: true, sparse: true},
	// metricSecretFetch (a histogram) goes as SecretFetchDuration: the mean over the interval, when there were any.
}

// publisher sends the registry's figures to CloudWatch every interval, in its own goroutine. CloudWatch being
// slow or down blocks nothing else: each call has a deadline, and what it does not take is dropped, counted in
// cl_agent_cloudwatch_dropped_total and logged.
type publisher struct {
	api        CloudWatchAPI
	gatherer   prometheus.Gatherer
	namespace  string
	instanceID string
	interval   time.Duration
	timeout    time.Duration
	log        *zap.Logger
	dropped    prometheus.Counter
	perClient  bool // chain figures carry ChainId and Node (publisherOptions.perClient)

	mu   sync.Mutex         // one publish at a time
	prev map[string]float64 // counters as last taken by CloudWatch, by series
}

// publisherOptions configure a publisher. api, metrics and instanceID are required.
type publisherOptions struct {
	api        CloudWatchAPI
	metrics    *Metrics
	instanceID string
	namespace  string        // default defaultNamespace
	interval   time.Duration // default 60s
	timeout    time.Duration // one PutMetricData call, retries included; default 15s, at most interval/2
	log        *zap.Logger
	// perClient sends ChainHead and RPCLatency with the ChainId and Node dimensions, one metric per chain client
	// (node.chains). false keeps the one-chain shorthand's InstanceId (and Transport) only.
	perClient bool
}

// newPublisher returns a publisher; run starts it.
func newPublisher(o publisherOptions) *publisher {
	if o.namespace == "" {
		o.namespace = defaultNamespace
	}
	if o.interval <= 0 {
		o.interval = time.Minute
	}
	if o.timeout <= 0 {
		o.timeout = 15 * time.Second
	}
	o.timeout = min(o.timeout, o.interval/2)
	if o.log == nil {
		o.log = zap.NewNop()
	}
	return &publisher{api: o.api, gatherer: o.metrics.gatherer(), namespace: o.namespace, instanceID: o.instanceID,
		interval: o.interval, timeout: o.timeout, log: o.log, dropped: o.metrics.cwDropped, perClient: o.perClient,
		prev: map[string]float64{}}
}

// run publishes every interval until ctx ends, then once more with a small budget so the last figures (a
// failover just before a stop) are not lost.
func (p *publisher) run(ctx context.Context) {
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownBudget)
			p.publish(fctx)
			cancel()
			return
		case <-tick.C:
			p.publish(ctx)
		}
	}
}

// publish gathers the figures and puts them, in batches, each call bounded by the timeout. It returns how many
// datums CloudWatch took.
func (p *publisher) publish(ctx context.Context) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	mfs, err := p.gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		p.log.Warn("cloudwatch: gathering the metrics failed", zap.Error(err))
		return 0
	}
	points := p.points(mfs, time.Now())
	sent := 0
	for _, batch := range batches(points) {
		in := &cloudwatch.PutMetricDataInput{Namespace: aws.String(p.namespace), MetricData: make([]types.MetricDatum, len(batch))}
		for i, pt := range batch {
			in.MetricData[i] = pt.datum
		}
		cctx, cancel := context.WithTimeout(ctx, p.timeout)
		_, err := p.api.PutMetricData(cctx, in)
		cancel()
		if err != nil {
			p.dropped.Add(float64(len(batch)))
			p.log.Warn("cloudwatch: PutMetricData failed; datums dropped", zap.Int("datums", len(batch)),
				zap.Duration("bound", p.timeout), zap.Error(err))
			continue
		}
		for _, pt := range batch {
			for k, v := range pt.commit {
				p.prev[k] = v
			}
		}
		sent += len(batch)
	}
	return sent
}

// point is one datum and the counter values to remember once CloudWatch has taken it.
type point struct {
	datum  types.MetricDatum
	commit map[string]float64
	size   int
}

// points turns gathered families into datums. Families not in cloudWatchMetrics (Go runtime, role, image) stay
// in Prometheus only.
func (p *publisher) points(mfs []*dto.MetricFamily, at time.Time) []point {
	var out []point
	for _, mf := range mfs {
		name := mf.GetName()
		if name == metricSecretFetch {
			if pt, ok := p.histogramMean(mf, at); ok {
				out = append(out, pt)
			}
			continue
		}
		spec, ok := cloudWatchMetrics[name]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			label := labelValue(m, spec.label)
			dims := p.dimensions(spec, m, label)
			key := name + "|" + label + "|" + dims[dimensionChainID] + "|" + dims[dimensionNode]
			value := metricValue(m)
			commit := map[string]float64(nil)
			if spec.delta {
				commit = map[string]float64{key: value}
				value = increase(value, p.prev[key])
				if spec.sparse && value == 0 {
					continue
				}
			}
			if spec.scale != 0 {
				value *= spec.scale
			}
			if pt, ok := p.point(spec.name, spec.unit, value, dims, at); ok {
				pt.commit = commit
				out = append(out, pt)
			}
		}
	}
	return out
}

// dimensions are a series' dimensions beside InstanceId: the metric's own label, and for a chain figure of a
// per-client publisher the client's chain id and name.
func (p *publisher) dimensions(spec cwMetric, m *dto.Metric, label string) map[string]string {
	dims := map[string]string{}
	if spec.dim != "" {
		dims[spec.dim] = label
	}
	if spec.chain && p.perClient {
		dims[dimensionChainID] = labelValue(m, labelChainID)
		dims[dimensionNode] = labelValue(m, labelNode)
	}
	return dims
}

// histogramMean is the mean of the observations since the last publish.
func (p *publisher) histogramMean(mf *dto.MetricFamily, at time.Time) (point, bool) {
	if len(mf.GetMetric()) == 0 {
		return point{}, false
	}
	h := mf.GetMetric()[0].GetHistogram()
	count, sum := float64(h.GetSampleCount()), h.GetSampleSum()
	dc := increase(count, p.prev[metricSecretFetch+"|count"])
	ds := increase(sum, p.prev[metricSecretFetch+"|sum"])
	if dc == 0 {
		return point{}, false
	}
	pt, ok := p.point("SecretFetchDuration", types.StandardUnitSeconds, ds/dc, nil, at)
	pt.commit = map[string]float64{metricSecretFetch + "|count": count, metricSecretFetch + "|sum": sum}
	return pt, ok
}

func (p *publisher) point(name string, unit types.StandardUnit, value float64, dims map[string]string, at time.Time) (point, bool) {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return point{}, false
	}
	if math.Abs(value) < 8.515920e-109 { // CloudWatch's smallest magnitude; below it only 0 is accepted
		value = 0
	}
	d := types.MetricDatum{MetricName: aws.String(name), Unit: unit, Value: aws.Float64(value), Timestamp: aws.Time(at),
		Dimensions: []types.Dimension{{Name: aws.String(dimensionInstance), Value: aws.String(p.instanceID)}}}
	size := len(name) + len(unit) + len(dimensionInstance) + len(p.instanceID) + 64
	keys := make([]string, 0, len(dims))
	for k := range dims {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d.Dimensions = append(d.Dimensions, types.Dimension{Name: aws.String(k), Value: aws.String(dims[k])})
		size += len(k) + len(dims[k]) + 16
	}
	return point{datum: d, size: size}, true
}

// batches splits points into PutMetricData calls within the count and size limits.
func batches(points []point) [][]point {
	var out [][]point
	start, size := 0, 0
	for i, pt := range points {
		if i-start == maxBatchDatums || size+pt.size > maxBatchBytes {
			out = append(out, points[start:i])
			start, size = i, 0
		}
		size += pt.size
	}
	if start < len(points) {
		out = append(out, points[start:])
	}
	return out
}

// increase is a counter's growth since prev (the whole value after a reset).
func increase(now, prev float64) float64 {
	if now < prev {
		return now
	}
	return now - prev
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

func labelValue(m *dto.Metric, name string) string {
	if name == "" {
		return ""
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return strings.TrimSpace(l.GetValue())
		}
	}
	return ""
}
