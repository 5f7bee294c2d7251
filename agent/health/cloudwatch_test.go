package health

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/cl-agent/cl-agent/agent/state"
	"github.com/cl-agent/cl-agent/internal/testenv"
)

func motoCloudWatch(t *testing.T) *cloudwatch.Client {
	t.Helper()
	moto := testenv.MotoT(t)
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	return NewCloudWatchClient(cfg, moto.URL, 10*time.Second)
}

func TestPublisherToMoto(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 60*time.Second)
	cw := motoCloudWatch(t)
	const instance = "i-0123456789abcdef0"
	box := &stateBox{st: AgentState{Role: state.Active, LockEnabled: true, LockHeld: true, NodeUp: true, NodeReady: true, LastBeat: time.Now()}}
	m := newMetrics(box.get)
	m.RecordFailover()
	m.RecordFailover()
	m.RecordSecretFetch(nil, 300*time.Millisecond)
	m.RecordSecretFetch(nil, 100*time.Millisecond)
	m.observe(Result{Name: "node_wallet_balance", OK: false, Samples: []Sample{
		{Metric: metricWalletBalance, Label: "0xaaa", Value: 0.05},
		{Metric: metricWalletBalance, Label: "0xbbb", Value: 2},
		{Metric: metricWalletLow, Value: 1},
	}})
	m.observe(Result{Name: "host", OK: true, Samples: []Sample{{Metric: metricDiskUsed, Label: "/", Value: 0.25}}})
	log, sink := newTestLogger()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(sink.String())
		}
	})
	p := newPublisher(publisherOptions{api: cw, metrics: m, instanceID: instance, interval: time.Minute, log: log})

	start := time.Now().Add(-time.Minute)
	if sent := p.publish(ctx); sent == 0 {
		t.Fatal("the first publish sent nothing")
	}
	m.RecordFailover() // one more failover: the next publish carries 1, not 3
	if sent := p.publish(ctx); sent == 0 {
		t.Fatal("the second publish sent nothing")
	}

	t.Run("ListMetrics", func(t *testing.T) {
		out, err := cw.ListMetrics(ctx, &cloudwatch.ListMetricsInput{Namespace: aws.String(defaultNamespace)})
		if err != nil {
			t.Fatal(err)
		}
		names := map[string][]types.Dimension{}
		for _, mt := range out.Metrics {
			names[aws.ToString(mt.MetricName)] = mt.Dimensions
		}
		for _, want := range []string{"ActiveNodes", "Failovers", "WalletBalanceLow", "KeystoreRotationHeld", "WalletBalance", "LockHeld",
			"NodeReady", "DiskUsedPercent", "SecretFetches", "SecretFetchDuration"} {
			dims, ok := names[want]
			if !ok {
				t.Errorf("ListMetrics has no %s; it has %v", want, keys(names))
				continue
			}
			if dimValue(dims, dimensionInstance) != instance {
				t.Errorf("%s dimensions %v: want InstanceId=%s", want, dims, instance)
			}
		}
		if d := names["ActiveNodes"]; len(d) != 1 {
			t.Errorf("ActiveNodes dimensions %v: the template's SCHEMA(…, InstanceId) needs InstanceId alone", d)
		}
	})

	t.Run("GetMetricData", func(t *testing.T) {
		q := func(id, name, stat string, dims ...types.Dimension) types.MetricDataQuery {
			return types.MetricDataQuery{Id: aws.String(id), MetricStat: &types.MetricStat{Stat: aws.String(stat), Period: aws.Int32(60),
				Metric: &types.Metric{Namespace: aws.String(defaultNamespace), MetricName: aws.String(name),
					Dimensions: append([]types.Dimension{{Name: aws.String(dimensionInstance), Value: aws.String(instance)}}, dims...)}}}
		}
		out, err := cw.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{
			StartTime: aws.Time(start), EndTime: aws.Time(time.Now().Add(time.Minute)),
			MetricDataQueries: []types.MetricDataQuery{
				q("failovers", "Failovers", "Sum"),
				q("active", "ActiveNodes", "Maximum"),
				q("low", "WalletBalanceLow", "Maximum"),
				q("balance", "WalletBalance", "Minimum", types.Dimension{Name: aws.String("Address"), Value: aws.String("0xaaa")}),
				q("disk", "DiskUsedPercent", "Maximum", types.Dimension{Name: aws.String("Path"), Value: aws.String("/")}),
				q("fetch", "SecretFetchDuration", "Average"),
			}})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]float64{"failovers": 3, "active": 1, "low": 1, "balance": 0.05, "disk": 25, "fetch": 0.2}
		for _, r := range out.MetricDataResults {
			id := aws.ToString(r.Id)
			if len(r.Values) == 0 {
				t.Errorf("%s: no values", id)
				continue
			}
			sum := 0.0
			for _, v := range r.Values {
				sum += v
			}
			if diff := sum - want[id]; diff > 1e-9 || diff < -1e-9 {
				t.Errorf("%s = %v (values %v); want %v", id, sum, r.Values, want[id])
			}
		}
	})
}

func TestPublisherBatchesToMoto(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 60*time.Second)
	cw := motoCloudWatch(t)
	rec := &recordingCW{next: cw}
	m := newMetrics(func() AgentState { return AgentState{Role: "standby", LastBeat: time.Now()} })
	var samples []Sample
	for i := range 1500 {
		samples = append(samples, Sample{Metric: metricWalletBalance, Label: fmt.Sprintf("0x%040x", i), Value: float64(i)})
	}
	m.observe(Result{Name: "node_wallet_balance", OK: true, Samples: samples})
	p := newPublisher(publisherOptions{api: rec, metrics: m, instanceID: "i-batches", interval: time.Minute})
	sent := p.publish(ctx)
	if sent < 1500 {
		t.Fatalf("sent %d datums; want at least 1500", sent)
	}
	if len(rec.batches) < 2 {
		t.Fatalf("%d PutMetricData calls for %d datums; want batches", len(rec.batches), sent)
	}
	for i, n := range rec.batches {
		if n > maxBatchDatums {
			t.Errorf("batch %d has %d datums; CloudWatch takes at most %d", i, n, maxBatchDatums)
		}
	}
	var names []string
	var token *string
	for {
		out, err := cw.ListMetrics(ctx, &cloudwatch.ListMetricsInput{Namespace: aws.String(defaultNamespace), MetricName: aws.String("WalletBalance"), NextToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, mt := range out.Metrics {
			names = append(names, dimValue(mt.Dimensions, "Address"))
		}
		if token = out.NextToken; token == nil {
			break
		}
	}
	if len(names) != 1500 {
		t.Errorf("moto lists %d WalletBalance series; want 1500", len(names))
	}
}

// recordingCW passes calls on and records each batch's size.
type recordingCW struct {
	next    CloudWatchAPI
	batches []int
}

func (r *recordingCW) PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, opt ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error) {
	r.batches = append(r.batches, len(in.MetricData))
	return r.next.PutMetricData(ctx, in, opt...)
}

// hungCW never answers until the call's context ends.
type hungCW struct{ calls chan struct{} }

func (h *hungCW) PutMetricData(ctx context.Context, _ *cloudwatch.PutMetricDataInput, _ ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error) {
	select {
	case h.calls <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestPublisherHungCloudWatchDropsAndCounts(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 30*time.Second)
	log, sink := newTestLogger()
	m := newMetrics(func() AgentState { return AgentState{Role: state.Active, NodeReady: true, LastBeat: time.Now()} })
	m.RecordFailover()
	p := newPublisher(publisherOptions{api: &hungCW{calls: make(chan struct{}, 1)}, metrics: m, instanceID: "i-hung",
		interval: 400 * time.Millisecond, log: log})
	start := time.Now()
	if sent := p.publish(ctx); sent != 0 {
		t.Fatalf("sent %d datums to a CloudWatch that never answers", sent)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Publish took %s against a hung CloudWatch; its bound is %s", took, p.timeout)
	}
	if got := counterValue(t, m, metricCWDropped); got == 0 {
		t.Error("no datum counted as dropped")
	}
	if !contains(sink.String(), "PutMetricData failed") {
		t.Errorf("no log line about the failure:\n%s", sink.String())
	}
	// The failover was not taken: the next successful publish still carries it.
	if pts := p.points(gather(t, m), time.Now()); pointValue(pts, "Failovers") != 1 {
		t.Errorf("Failovers after a dropped publish = %v; want 1 carried over", pointValue(pts, "Failovers"))
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func dimValue(dims []types.Dimension, name string) string {
	for _, d := range dims {
		if aws.ToString(d.Name) == name {
			return aws.ToString(d.Value)
		}
	}
	return ""
}

func pointValue(pts []point, name string) float64 {
	for _, p := range pts {
		if strings.EqualFold(aws.ToString(p.datum.MetricName), name) {
			return aws.ToFloat64(p.datum.Value)
		}
	}
	return -1
}

// countingCW takes every call and counts the datums per metric name.
type countingCW struct {
	mu    sync.Mutex
	calls int
	sums  map[string]float64
}

func (c *countingCW) PutMetricData(_ context.Context, in *cloudwatch.PutMetricDataInput, _ ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	for _, d := range in.MetricData {
		c.sums[aws.ToString(d.MetricName)] += aws.ToFloat64(d.Value)
	}
	return &cloudwatch.PutMetricDataOutput{}, nil
}

func (c *countingCW) snapshot() (int, map[string]float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]float64{}
	for k, v := range c.sums {
		out[k] = v
	}
	return c.calls, out
}

func TestServicePublishesEveryIntervalAndOnStop(t *testing.T) {
	t.Parallel()
	cw := &countingCW{sums: map[string]float64{}}
	box := &stateBox{st: AgentState{Role: state.Active, NodeReady: true, LastBeat: time.Now()}}
	o := Options{State: box.get, Listen: "127.0.0.1:0", CloudWatch: cw, InstanceID: "i-svc", CloudWatchInterval: 50 * time.Millisecond}
	if _, err := New(Options{State: box.get, CloudWatch: cw}); err == nil {
		t.Error("New with CloudWatch and no InstanceID succeeded")
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	testenv.WaitFor(t, 5*time.Second, "two publishes", func() bool { n, _ := cw.snapshot(); return n >= 2 })
	svc.Metrics().RecordFailover() // just before the stop: the final publish must carry it
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s")
	}
	_, sums := cw.snapshot()
	if sums["Failovers"] != 1 {
		t.Errorf("Failovers published in total = %v; want 1 (sent once, as an increase)", sums["Failovers"])
	}
	if sums["ActiveNodes"] < 2 {
		t.Errorf("ActiveNodes summed over the publishes = %v; want one 1 per publish", sums["ActiveNodes"])
	}
}

// capturingCW passes calls on and keeps each call's datums.
type capturingCW struct {
	next  CloudWatchAPI
	mu    sync.Mutex
	calls [][]types.MetricDatum
}

func (c *capturingCW) PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, opt ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error) {
	c.mu.Lock()
	c.calls = append(c.calls, in.MetricData)
	c.mu.Unlock()
	return c.next.PutMetricData(ctx, in, opt...)
}

// last is the named datums of the last call, as "Dim=value,…" (InstanceId left out) → value.
func (c *capturingCW) last(name string) map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]float64{}
	if len(c.calls) == 0 {
		return out
	}
	for _, d := range c.calls[len(c.calls)-1] {
		if aws.ToString(d.MetricName) != name {
			continue
		}
		var dims []string
		for _, dim := range d.Dimensions {
			if aws.ToString(dim.Name) != dimensionInstance {
				dims = append(dims, aws.ToString(dim.Name)+"="+aws.ToString(dim.Value))
			}
		}
		out[strings.Join(dims, ",")] = aws.ToFloat64(d.Value)
	}
	return out
}

// TestPublisherUpgradeMetrics: UpgradeInProgress goes every interval, 1 while an upgrade is under way; UpgradeOutcome
// (dimension Outcome) goes only in the interval in which an upgrade ended, and moto takes both.
func TestPublisherUpgradeMetrics(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 60*time.Second)
	cw := motoCloudWatch(t)
	rec := &capturingCW{next: cw}
	const instance = "i-upgrades"
	m := newMetrics(func() AgentState { return AgentState{Role: state.Active, LastBeat: time.Now()} })
	p := newPublisher(publisherOptions{api: rec, metrics: m, instanceID: instance, interval: time.Minute})
	steps := []struct {
		name, phase string
		inProgress  float64
		outcome     map[string]float64
	}{
		{"NoUpgrade", "", 0, map[string]float64{}},
		{"Requested", "requested", 1, map[string]float64{}},
		{"Starting", "starting", 1, map[string]float64{}},
		{"Done", "done", 0, map[string]float64{"Outcome=done": 1}},
		{"StillDoneSendsNoOutcome", "done", 0, map[string]float64{}},
	}
	for _, st := range steps {
		m.SetUpgrade(st.phase, "2.20.0")
		if sent := p.publish(ctx); sent == 0 {
			t.Fatalf("%s: the publish sent nothing", st.name)
		}
		if got := rec.last("UpgradeInProgress"); !maps.Equal(got, map[string]float64{"": st.inProgress}) {
			t.Errorf("%s: UpgradeInProgress %v; want %v with InstanceId alone", st.name, got, st.inProgress)
		}
		if got := rec.last("UpgradeOutcome"); !maps.Equal(got, st.outcome) {
			t.Errorf("%s: UpgradeOutcome %v; want %v", st.name, got, st.outcome)
		}
	}
	out, err := cw.ListMetrics(ctx, &cloudwatch.ListMetricsInput{Namespace: aws.String(defaultNamespace), MetricName: aws.String("UpgradeOutcome")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Metrics) != 1 || dimValue(out.Metrics[0].Dimensions, "Outcome") != "done" || dimValue(out.Metrics[0].Dimensions, dimensionInstance) != instance {
		t.Errorf("moto lists UpgradeOutcome as %+v; want one metric with Outcome=done and InstanceId=%s", out.Metrics, instance)
	}
}
